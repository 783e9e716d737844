"""Docstore: a JSON document-store API on MongoDB."""
