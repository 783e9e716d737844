"""Webhooks: every change to an item its owner can read, signed (Standard Webhooks) and
delivered at least once."""
