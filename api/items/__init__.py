"""Items: the documents, their query language, writes and conditional requests."""
