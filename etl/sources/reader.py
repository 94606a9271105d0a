"""Where a job run gets its source rows: the window, how rows sit in time, the Reader protocol.

A run asks its reader for the rows that matter to a half-open UTC window ``[lo, hi)``. Which rows
those are depends on how a row sits in time (its *shape*): a booking is a point in time (it
matters when it falls in the window), an order row is a span (it matters when it overlaps the
window, is still open, or was corrected since ``lo``). The reader turns window and shape into its
own request: a SQL ``WHERE`` (etl/sources/sql/query.py ``SqlReader``), and in time an HTTP query or a
file selection. The run itself knows nothing of SQL: it opens a ``Reader``, reads the source's
clock, and iterates the batches of one ``Request``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import pandas as pd

# Local wall-clock bounds are widened by this much and the rows filtered exactly in UTC after
# conversion, so DST offsets and the repeated hour never drop a row at the window's edge.
WINDOW_MARGIN = timedelta(hours=3)


@dataclass(frozen=True)
class Window:
    """Half-open UTC interval ``[lo, hi)`` of a sync run."""

    lo: datetime
    hi: datetime

    def local(self, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The window widened by the margin, as naive wall-clock times of ``zone``."""
        lo = (self.lo - WINDOW_MARGIN).astimezone(zone).replace(tzinfo=None)
        hi = (self.hi + WINDOW_MARGIN).astimezone(zone).replace(tzinfo=None)
        return lo, hi


@dataclass(frozen=True)
class Points:
    """Rows that are points in time: a row matters when its ``at`` field falls in the window
    (rows without one are read every time and reported as anomalies). ``changed``: the field
    stamping a row's last change, when the source has one (a run reaches back to the oldest
    point changed since its window's start)."""

    at: str
    changed: str | None = None


@dataclass(frozen=True)
class Spans:
    """Rows that are spans of time: a row matters when it starts before the window's end and
    starts in it, is still open (no ``end``), ends in or after it, or was ``changed`` since its
    start (rows without a start are read every time and reported as anomalies)."""

    start: str
    end: str
    changed: str | None = None


#: How a structure's rows sit in time (the canonical field names of its mapping's columns).
Shape = Points | Spans

#: The shape of each mapping ``structure``: a reader asks for rows by it (etl/pipeline/structures.py
#: implements the structures; the readers sit below it and find the shape here).
SHAPES: dict[str, Shape] = {
    "bookings": Points(at="timestamp", changed="updated_at"),
    "orders": Spans(start="start", end="end", changed="updated_at"),
}


class Request(Protocol):
    """The source's rows for one reach and shape, not read yet."""

    def batches(self, size: int) -> Iterator[pd.DataFrame]:
        """The raw rows in frames of at most ``size`` rows, one column per source field."""
        ...


class Reading(Protocol):
    """A source opened for one run (closed when the run has read what it needs)."""

    #: the raw fields whose values are instants (aware), not wall-clock times of the plant
    instants: frozenset[str]

    def now_utc(self) -> datetime:
        """The source's clock (the window's ``hi`` is taken from it, not from ours)."""
        ...

    def request(self, reach: Window, shape: Shape) -> Request:
        """The rows of ``shape`` that matter to ``reach``."""
        ...


class ExtraRequests(Protocol):
    """What a ``Reading`` may answer besides ``request``: each method is optional, and a reading
    without it (a file drop, whose rows are all it has) is asked for nothing. A SQL source needs
    them because its ``WHERE`` leaves rows out that a run must still see."""

    def changed(self, window: Window, shape: Shape) -> Request | None:
        """The rows changed since ``window.lo`` (``shape.changed``), whether or not the source's
        selection takes them: the run reaches back to the oldest (None: the source cannot say)."""
        ...

    def withdrawn(self, window: Window, shape: Shape) -> Request | None:
        """The rows changed since ``window.lo`` that the source's selection (the mapping's
        filters) now leaves out: their runs leave the store (None: none can be)."""
        ...

    def malformed(self, reach: Window, shape: Shape) -> Request | None:
        """Rows ``request`` cannot find because their time does not compare (text in the wrong
        shape): read once per run so they are reported (None: every row compares)."""
        ...


class SourceLedger(Protocol):
    """What a ``Reading`` that keeps a ledger of what it delivered (a file drop) may answer
    besides: each method is optional, and ``derive`` asks a reading without it for nothing."""

    def changed_since(self, window: Window) -> datetime | None:
        """The oldest time the source delivers or delivered rows at that changed since the
        last run, when before ``window.lo``: a sync run reaches back to it (None: none)."""
        ...

    def kept(self, window: Window) -> list[tuple[datetime, datetime]]:
        """UTC spans ``(first, last)`` whose stored runs and anomalies stay as they are this run
        (what the source delivered there cannot be read now)."""
        ...

    def warnings(self) -> list[str]:
        """What the run skipped, one line each, for the run's audit row and output."""
        ...

    def on_commit(self, conn: Any) -> None:
        """Record what the run delivered, in the transaction of its commit."""
        ...


def extra_request(reading: Reading, name: str, window: Window, shape: Shape) -> Request | None:
    """``reading.<name>(window, shape)`` of ``ExtraRequests``, None when the reading has no such
    method."""
    ask = getattr(reading, name, None)
    return None if ask is None else ask(window, shape)


class Reader(Protocol):
    """A job's source of raw rows: a SQL table or query today, an HTTP API or file drop later."""

    def open(self) -> AbstractContextManager[Reading]:
        """Connect (and check what can be checked before reading, e.g. that the columns exist)."""
        ...
