"""Reading a backfill's next chunk while the current one commits.

A chunk's work is two halves that need different cores: reading the source, mapping and folding
(this process, mostly in Arrow, NumPy and the driver) and committing to the store and publishing
(the store's server, or SQLite's B-tree work). ``Ahead`` runs the first half of chunk n+1 in one
background thread while the main thread does the second half of chunk n; the commits, the
Parquet, the failpoints and the progress lines stay in the main thread, in chunk order.

The fold of chunk n+1 needs the runs open at its start, which a sync reads from the store. Here
they come from chunk n's runs (``carried_from``): a run the store would return (started before
the chunk, open or ended within the carry margin of its start) lies in the range chunk n's
commit replaced, so it is one of chunk n's runs, stored as ``as_stored`` gives it. Only the first
chunk (and a resumed backfill's) reads them from the store.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta

import pandas as pd

from .store import as_stored


def carried_from(runs: pd.DataFrame, lo: datetime, margin: timedelta) -> pd.DataFrame:
    """The runs of a chunk that the next one, starting at ``lo``, carries in: what
    ``Store.carried_runs(job, lo, margin)`` returns after the chunk committed."""
    stored = as_stored(runs)
    start, end = stored["start"], stored["end"]
    keep = (start < pd.Timestamp(lo)) & (end.isna() | (end >= pd.Timestamp(lo - margin)))
    return stored[keep].reset_index(drop=True)


class Ahead:
    """At most one piece of work running in a background thread, its result taken later."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-ahead")
        self._next: Future[object] | None = None

    def start(self, work: Callable[[], object]) -> None:
        """Start ``work`` now (nothing else may be running)."""
        assert self._next is None
        self._next = self._pool.submit(work)

    def take(self) -> object | None:
        """The result of the work started last (waits for it; raises what it raised), or None
        when nothing was started."""
        future, self._next = self._next, None
        return None if future is None else future.result()

    def close(self) -> None:
        """Wait for running work (its result is dropped) and stop the thread."""
        self._next = None
        self._pool.shutdown(wait=True, cancel_futures=True)
