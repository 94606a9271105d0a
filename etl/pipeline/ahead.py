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

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pandas as pd

from etl.store.diff import as_stored


def carried_from(runs: pd.DataFrame, lo: datetime, margin: timedelta) -> pd.DataFrame:
    """The runs of a chunk that the next one, starting at ``lo``, carries in: what
    ``Store.carried_runs(job, lo, margin)`` returns after the chunk committed."""
    stored = as_stored(runs)
    start, end = stored["start"], stored["end"]
    keep = (start < pd.Timestamp(lo)) & (end.isna() | (end >= pd.Timestamp(lo - margin)))
    return stored[keep].reset_index(drop=True)


class Abandoned(Exception):
    """Raised inside work that ``Ahead.close`` abandoned (the main thread failed or finished)."""


class Ahead:
    """At most one piece of work running in a background thread, its result taken later; a
    context manager that waits for the thread when the block ends."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-ahead")
        self._next: Future[object] | None = None
        self._closing = threading.Event()
        #: when the work started last began (None: nothing started)
        self.started: datetime | None = None

    def start(self, work: Callable[[], object]) -> None:
        """Start ``work`` now (nothing else may be running)."""
        assert self._next is None
        self.started = datetime.now(UTC)
        self._next = self._pool.submit(work)

    def take(self) -> object | None:
        """The result of the work started last (waits for it; raises what it raised), or None
        when nothing was started."""
        future, self._next, self.started = self._next, None, None
        return None if future is None else future.result()

    def check(self) -> None:
        """For the work to call as it goes: raises Abandoned once ``close`` was called, so a
        failed backfill does not wait for a whole chunk to be read for nothing."""
        if self._closing.is_set():
            raise Abandoned("the backfill stopped")

    def close(self) -> None:
        """Abandon running work (its result or error is dropped) and stop the thread."""
        self._closing.set()
        self._next = None
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Ahead:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
