"""File-drop sources: CSV/TSV, Excel and JSON-lines exports in a folder or under an s3:// prefix."""
