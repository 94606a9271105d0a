"""A conformance suite any source database must pass (real servers only)."""
