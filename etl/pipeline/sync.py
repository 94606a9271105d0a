"""``etl run``: one sync run of a job (the run itself is etl/pipeline/run.py).

The names here are the ones callers have imported from this module; they are the job run's.
"""

from __future__ import annotations

from etl.pipeline.run import (
    Derived,
    RunResult,
    derive,
    lease,
    leased,
    lost_after_commit,
    open_store,
    parquet_base,
    parquet_output,
    publishes,
    run_job,
    start_utc,
)

__all__ = [
    "Derived",
    "RunResult",
    "derive",
    "lease",
    "leased",
    "lost_after_commit",
    "open_store",
    "parquet_base",
    "parquet_output",
    "publishes",
    "run_job",
    "start_utc",
]
