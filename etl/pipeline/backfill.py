"""Re-derive a job's range chunk by chunk: ``etl backfill JOB --since --until [--chunk 7d]``.

Each chunk ``[a, b)`` is read from the source, folded with the runs open at ``a`` carried in, and
committed like a sync run, except that runs starting at or after ``b`` are left alone (the next
chunk replaces them) and the watermark never moves backwards. After ``--until``, the chunks go on
up to the job's watermark, so runs that cross ``--until`` close exactly as before. The next chunk
start is stored with each commit: an interrupted backfill of the same range resumes there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any

import pandas as pd

from etl.config.durations import parse_when, resolve_when
from etl.config.models import Project
from etl.errors import StoreError, UsageError
from etl.failpoints import failpoint
from etl.pipeline.ahead import Ahead, carried_from
from etl.pipeline.monthly import MonthRuns
from etl.pipeline.run import Derived, JobRun, leased, parquet_output
from etl.sources.reader import Window
from etl.store.audit import Audit
from etl.store.diff import KEY, VALUE, Changes
from etl.store.lease import Lease
from etl.store.months import month_bounds, month_of

log = logging.getLogger(__name__)


@dataclass
class Chunk:
    """What one chunk did."""

    lo: datetime
    hi: datetime
    rows_read: int
    runs: int
    inserted: int
    updated: int
    deleted: int
    anomalies: int


@dataclass
class BackfillResult:
    """What a backfill did, chunk by chunk."""

    job: str
    since: datetime
    until: datetime
    resumed_at: datetime | None
    chunks: list[Chunk] = field(default_factory=list)
    duration_s: float = 0.0
    inserted: int = 0  # net, over the whole backfill (chunks also count runs they re-opened
    updated: int = 0  # for the next chunk to close)
    deleted: int = 0

    def summary(self) -> str:
        """One human line for the whole backfill."""
        rows = sum(c.rows_read for c in self.chunks)
        ins, upd, dele = self.inserted, self.updated, self.deleted
        resumed = f" (resumed at {_stamp(self.resumed_at)})" if self.resumed_at else ""
        return (
            f"{self.job}: backfilled {_stamp(self.since)} .. {_stamp(self.until)}{resumed} in "
            f"{len(self.chunks)} chunk(s): {rows:,} rows read, +{ins} new, {upd} changed, "
            f"-{dele} removed [{self.duration_s:.1f}s]"
        )


def backfill(
    project: Project,
    job_name: str,
    since: str,
    until: str | None,
    chunk: timedelta,
    *,
    restart: bool = False,
    progress: Callable[[Chunk, int], None] | None = None,
) -> BackfillResult:
    """Re-derive ``[since, until)`` of ``job_name`` chunk by chunk (see the module docstring)."""
    job = project.job(job_name)
    project.require_env([job_name])
    if chunk <= timedelta(0):
        raise UsageError("--chunk must be longer than 0s")
    zone = job.connector.zone
    since_at = parse_when(since, zone, "--since")
    until_at = parse_when(until, zone, "--until") if until else timedelta(0)
    clock = time.monotonic()
    with leased(project, job_name) as (_store, held), Ahead() as ahead:
        return _run(
            project,
            job_name,
            held,
            ahead,
            since_at,
            until_at,
            since,
            until,
            chunk,
            restart,
            progress,
            clock,
        )


def _run(
    project: Project,
    job_name: str,
    held: Lease,
    ahead: Ahead,
    since_at: datetime | timedelta,
    until_at: datetime | timedelta,
    since_text: str,
    until_text: str | None,
    chunk: timedelta,
    restart: bool,
    progress: Callable[[Chunk, int], None] | None,
    clock: float,
) -> BackfillResult:
    job = project.job(job_name)
    run = JobRun(project, job, held)
    state = held.store.state(job_name)
    began = datetime.now(UTC)
    try:
        run.publish_pending(state)
    except Exception as exc:
        run.publish_failed(exc, _finished(Audit(started_at=began)), None)
        raise

    # the range needs the source clock for "now"/durations: read it with an empty first probe
    bounds: dict[str, datetime] = {}

    def resolve(now: datetime) -> None:
        if not bounds:
            latest = now - job.safety_lag
            bounds["since"] = resolve_when(since_at, now)
            bounds["until"] = min(resolve_when(until_at, now), latest)
            bounds["latest"] = latest

    key = f"{since_text}|{until_text or ''}"
    net = Net()
    resumed: datetime | None = None
    a: datetime | None = None
    result: BackfillResult | None = None
    months: MonthRuns | None = None
    total_chunks = 0

    def check(_rows: int) -> None:  # the read ahead stops at its next batch when we fail
        ahead.check()

    while True:

        def window_for(now: datetime, a_: datetime | None = a) -> Window:
            resolve(now)
            lo = a_ if a_ is not None else bounds["since"]
            return Window(lo=lo, hi=min(lo + chunk, stop()))

        def stop() -> datetime:
            watermark = state.watermark if state and state.watermark else None
            end = bounds["until"]
            return max(end, min(watermark, bounds["latest"])) if watermark else end

        if a is None:
            # first chunk: decide the start (resume?) once the clock is known
            probe_start = None
            if not restart and state and state.backfill_range == key and state.backfill_next:
                probe_start = state.backfill_next
            a = probe_start
            resumed = probe_start
        started = ahead.started or datetime.now(UTC)  # the chunk's read began then
        ahead_of_time = ahead.take()  # the chunk read while the last one committed
        derived = (
            ahead_of_time if isinstance(ahead_of_time, Derived) else run.derive(window_for, check)
        )
        window = derived.window
        if result is None:
            if bounds["since"] >= bounds["until"]:
                raise UsageError(
                    f"--since {since_text} is not before --until {until_text or 'now'} "
                    f"({_stamp(bounds['since'])} >= {_stamp(bounds['until'])})"
                )
            result = BackfillResult(job_name, bounds["since"], bounds["until"], resumed)
            span = stop() - (a or bounds["since"])
            total_chunks = max(1, -(-span // chunk))
        if window.hi <= window.lo:
            break
        if months is None:  # before the first commit: which months the store has nothing of
            months = (
                MonthRuns.start(held.store, job_name, window.lo)
                if run.output is not None
                else MonthRuns.off()
            )
        done = window.hi >= stop()
        finished = datetime.now(UTC)
        audit = Audit(
            started_at=started,
            finished_at=finished,
            duration_s=(finished - started).total_seconds(),
        )
        audit.count(derived.rows_read, derived.runs_open, derived.kinds())
        if not done and run.structure.reads_ahead:  # read the next chunk while this commits
            ahead.start(_next_chunk(run, window.hi, chunk, stop, derived, check))
        sync_id, changes = run.commit(
            derived,
            audit,
            bounded=True,
            backfill=(key, window.hi) if not done else (None, None),
        )
        net.add(changes, window.hi, run.margin)
        months.apply(changes)
        # a month is published once the chunks have passed it and no run starting in it is
        # still open for the next chunk to change (it would be read back from the store then);
        # the months left pending stay recorded in the store
        until = _first_changeable(derived.runs, window.hi, run.margin)
        ready = [m for m in changes.months if done or m < until]
        try:
            run.publish(sync_id, ready, months.runs(ready))
        except Exception as exc:  # the chunk's audit row says so, as a sync run's does
            run.publish_failed(exc, _finished(audit), sync_id)
            raise
        months.forget(ready)
        piece = Chunk(
            window.lo,
            window.hi,
            derived.rows_read,
            len(derived.runs),
            changes.inserted,
            changes.updated,
            changes.deleted,
            len(derived.anomalies),
        )
        result.chunks.append(piece)
        failpoint("backfill_chunk")
        log.info(
            "%s: backfill chunk %s .. %s: %d rows, +%d ~%d -%d",
            job_name,
            _stamp(window.lo),
            _stamp(window.hi),
            piece.rows_read,
            piece.inserted,
            piece.updated,
            piece.deleted,
        )
        if progress is not None:
            progress(piece, total_chunks)
        if done:
            break
        a = window.hi
    assert result is not None
    net.finish()
    result.inserted, result.updated, result.deleted = net.inserted, net.updated, net.deleted
    result.duration_s = time.monotonic() - clock
    return result


def _finished(audit: Audit) -> Audit:
    """``audit`` ending now."""
    audit.finished_at = datetime.now(UTC)
    audit.duration_s = (audit.finished_at - audit.started_at).total_seconds()
    return audit


def _next_chunk(
    run: JobRun,
    lo: datetime,
    chunk: timedelta,
    stop: Callable[[], datetime],
    derived: Derived,
    check: Callable[[int], None],
) -> Callable[[], Derived]:
    """The derivation of the chunk from ``lo`` on, with the runs ``derived`` leaves open carried
    in (nothing read from the store: it runs beside the commit of ``derived``)."""

    def carried(lo_: datetime, margin: timedelta) -> pd.DataFrame:
        return carried_from(derived.runs, lo_, margin)

    def window_for(_now: datetime) -> Window:
        return Window(lo=lo, hi=min(lo + chunk, stop()))

    return lambda: run.derive(window_for, check, carried=carried)


def _first_changeable(runs: pd.DataFrame, hi: datetime, margin: timedelta) -> str:
    """The first month a backfill publishes no more after the chunk that ends at ``hi``:
    ``hi``'s, or the month before when a run starting in it is carried into the next chunk
    (open at ``hi`` or ending within the carry margin), which re-derives it. A run open since
    an older month does not hold that month back (memory stays that of two months): when it
    changes, its month is read back."""
    first = month_of(hi)
    if runs.empty:
        return first
    begins = month_bounds(first)[0]
    if begins == datetime.min.replace(tzinfo=UTC):
        return first  # no month before the year 1's January
    previous = month_of(begins - timedelta(days=1))
    start = pd.to_datetime(runs["start"], utc=True)
    end = pd.to_datetime(runs["end"], utc=True)
    carried = (start >= pd.Timestamp(month_bounds(previous)[0])) & (start < pd.Timestamp(begins))
    carried &= end.isna() | (end >= pd.Timestamp(hi - margin))
    return previous if carried.any() else first


Key = tuple[Any, ...]


@dataclass
class Net:
    """Net changes over a whole backfill, from each chunk's written and removed runs (without
    reading the range before and after): a run counts once, by what the store held before the
    backfill and after it. A run the next chunk may change again (open at the chunk's end, or
    ending within the carry margin) waits; the others count at once."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    waiting: dict[Key, tuple[Key | None, Key | None]] = field(default_factory=dict)

    def add(self, changes: Changes, hi: datetime, margin: timedelta) -> None:
        """Account for one chunk's commit (``changes.written``/``removed``)."""
        written, removed = changes.written, changes.removed
        if written is None or removed is None:
            return
        touched: dict[Key, tuple[Key | None, Key | None]] = {}
        for key, value in _items(removed):
            original = self.waiting.pop(key)[0] if key in self.waiting else value
            touched[key] = (original, None)
        reach = pd.Timestamp(hi - margin)
        special = written["end"].isna() | (written["end"] >= reach)
        if touched or self.waiting:
            keys = pd.MultiIndex.from_frame(written[KEY])
            special |= keys.isin([*touched, *self.waiting])
        self.inserted += int((~special).sum())  # new, and no later chunk can touch them
        for key, value in _items(written[special]):
            if key in touched:
                original = touched[key][0]
            elif key in self.waiting:
                original = self.waiting.pop(key)[0]
            else:
                original = None
            touched[key] = (original, value)
        waiting, self.waiting = self.waiting, {}
        end_at = VALUE.index("end")
        for key, (original, current) in chain(waiting.items(), touched.items()):
            if current is not None and (current[end_at] is None or current[end_at] >= reach):
                self.waiting[key] = (original, current)
            else:
                self._count(original, current)

    def finish(self) -> None:
        """Count the runs still waiting (after the last chunk)."""
        for original, current in self.waiting.values():
            self._count(original, current)
        self.waiting = {}

    def _count(self, original: Key | None, current: Key | None) -> None:
        if original is None and current is not None:
            self.inserted += 1
        elif original is not None and current is None:
            self.deleted += 1
        elif original != current:
            self.updated += 1


def _items(frame: pd.DataFrame) -> list[tuple[Key, Key]]:
    """(key, value) tuples of a run frame, NA as None."""
    columns = [
        frame[name].astype(object).where(frame[name].notna(), None).tolist() for name in KEY + VALUE
    ]
    rows = zip(*columns, strict=True)
    return [(row[: len(KEY)], row[len(KEY) :]) for row in rows]


def _stamp(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


def reset(project: Project, job_name: str) -> int:
    """Forget a job: its runs, anomalies, state and Parquet partitions. Returns runs removed.

    All of it under the job's lock, the Parquet first: no run of the job can publish between the
    two, and when the partitions cannot be removed the store is left as it was (StoreError).
    """
    from etl.outputs.parquet import remove_job

    project.job(job_name)
    with leased(project, job_name) as (store, held):
        base = parquet_output(project)
        if base is not None:
            try:
                remove_job(job_name, base)
            except StoreError as exc:
                raise StoreError(
                    f"{job_name}: could not remove its Parquet partitions ({exc.message}); "
                    "nothing was reset: the store still holds the job, and partitions already "
                    "removed are rewritten by its next run",
                    hint=f"fix the output, then run 'etl state reset {job_name}' again",
                ) from exc
        held.check()
        return store.reset(job_name)
