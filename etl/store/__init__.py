"""The store: production runs, anomalies, watermarks, the run audit and the job lock
(SQLite or PostgreSQL), written and read in bulk."""
