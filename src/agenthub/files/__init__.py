"""Uploaded files: streamed to a storage backend, sniffed, hashed."""
