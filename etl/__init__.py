"""booking-etl: production runs from MES/BDE/ERP booking tables, read-only and incremental."""

__version__ = "0.1.0"
