"""The months a backfill writes, kept in memory so that they are published without reading the
store back.

A backfill starts by asking the store where the job's stored runs begin from its first chunk on
(one indexed query). Every month from the first chunk's month up to the month of that first
stored run held nothing of the job; for such a month, what the store holds after each chunk is
exactly what the chunks wrote minus what they removed (``Changes.written`` / ``Changes.removed``,
under the job's lock no one else writes). ``MonthRuns`` applies those diffs month by month and
hands the result to ``publish``, which then has nothing to read. Every other month (the runs
carried in from before the first chunk, a month that held runs already, a resumed backfill's
months written before the kill) is read back from the store as before.

Memory stays that of the months not yet published: a published month is forgotten, and if a
later chunk changes it again (a run carried back across the month's end), it is read back.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from etl.shapes import STORED_RUN_COLUMNS, empty_runs
from etl.store.db import Store
from etl.store.diff import KEY, Changes
from etl.store.months import month_bounds, month_of

NEVER = "~"  # sorts after every "YYYY-MM": no month is known


class MonthRuns:
    """A backfill's months that were empty in the store when it started, with their runs so far."""

    def __init__(self, first: str, stored_from: str | None) -> None:
        #: months ``first`` <= m < ``stored_from`` (None: no end) held no run of the job
        self.first, self.stored_from = first, stored_from
        self.frames: dict[str, pd.DataFrame] = {}
        self.forgotten: set[str] = set()

    @classmethod
    def start(cls, store: Store, job: str, lo: datetime) -> MonthRuns:
        """The months from ``lo``'s on that hold no stored run of ``job`` (asks the store once)."""
        first = month_of(lo)
        stored = store.first_start(job, month_bounds(first)[0])
        return cls(first, month_of(stored) if stored is not None else None)

    @classmethod
    def off(cls) -> MonthRuns:
        """Keeps nothing (a job that publishes no Parquet)."""
        return cls(NEVER, None)

    def known(self, month: str) -> bool:
        """Whether ``month``'s stored runs are all in memory."""
        if month in self.forgotten or month < self.first:
            return False
        return self.stored_from is None or month < self.stored_from

    def apply(self, changes: Changes) -> None:
        """Account for one chunk's commit: drop the runs it removed, add the ones it wrote."""
        written, removed = changes.written, changes.removed
        if written is None or removed is None:  # no diff to go by: read everything back
            self.first = NEVER
            self.frames.clear()
            return
        codes_written, codes_removed = _month_codes(written), _month_codes(removed)
        for code in sorted(set(np.unique(codes_written)) | set(np.unique(codes_removed))):
            month = _month_text(code)
            if not self.known(month):
                continue
            held = self.frames.get(month)
            gone = removed[codes_removed == code]
            if held is not None and not gone.empty:
                keys = pd.MultiIndex.from_frame(held[KEY])
                held = held[~keys.isin(pd.MultiIndex.from_frame(gone[KEY]))]
            at = codes_written == code
            # with the context columns; a chunk within one month is taken whole, not copied
            new = written[STORED_RUN_COLUMNS] if at.all() else written.loc[at, STORED_RUN_COLUMNS]
            parts = [frame for frame in (held, new) if frame is not None and not frame.empty]
            self.frames[month] = (
                pd.concat(parts, ignore_index=True) if len(parts) > 1 else _own(parts, new)
            )

    def runs(self, months: list[str]) -> dict[str, pd.DataFrame]:
        """The in-memory runs of those of ``months`` that are known (an empty frame: none)."""
        return {
            month: self.frames.get(month, empty_runs()) for month in months if self.known(month)
        }

    def forget(self, months: list[str]) -> None:
        """Drop published months: if a later chunk changes one again, it is read back."""
        for month in months:
            self.frames.pop(month, None)
            self.forgotten.add(month)


def _month_codes(runs: pd.DataFrame) -> np.ndarray:
    """The month (UTC) each run starts in, as NumPy month numbers (no text per run)."""
    if runs.empty:
        return np.empty(0, dtype="int64")
    utc = pd.to_datetime(runs["start"], utc=True).dt.tz_convert(None).to_numpy()
    return utc.astype("datetime64[M]").astype("int64")


def _month_text(code: int) -> str:
    """``'2026-03'`` for a NumPy month number (``month_of``'s text)."""
    return str(np.datetime_as_string(np.datetime64(int(code), "M"), unit="M"))


def _own(parts: list[pd.DataFrame], fallback: pd.DataFrame) -> pd.DataFrame:
    return (parts[0] if parts else fallback).reset_index(drop=True)
