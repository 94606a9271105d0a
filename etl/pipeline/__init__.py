"""One job run: read -> map -> fold (or dedupe) -> diff -> commit -> publish, and the
backfill over a range. The fold is pure: no I/O."""
