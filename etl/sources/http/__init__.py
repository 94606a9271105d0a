"""HTTP API sources: paged JSON (REST, OData v2 and v4) read with GET only."""
