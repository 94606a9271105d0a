"""Where a job's rows come from besides a SQL table: file drops (``files/``) and HTTP APIs
(``http/``). ``registry.reader_for`` picks the Reader (etl/sources/reader.py) by the connector's ``kind``;
everything after the read (mapping, fold, windows, store, Parquet) is the same for every kind.

This package imports nothing on load: etl/config/models.py imports the connector specs from it.
"""
