"""SQL sources: the engine and its read-only guard (``engine``), the queries
(``query``), the Arrow readers (``arrow``) and one small module per database (``dialects/``)."""
