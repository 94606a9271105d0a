"""One job run: window -> read -> map -> fold or dedupe -> diff -> commit -> publish.

``hi`` is the source's clock minus the job's safety lag; ``lo`` is the previous ``hi`` minus the
re-read window (the job's ``start_from`` on the first run). What the source now says about
``[lo, hi)`` replaces what the store holds for it; runs open at ``lo`` are carried into the fold.

The steps are the same for every run: ``derive`` reads the window from a ``Reader`` (etl/sources/reader.py;
a SQL table today) and turns the rows into runs through the mapping's ``Structure``
(etl/pipeline/structures.py: bookings are folded, order rows deduplicated); ``JobRun`` commits them under
the job's lease and publishes the months they changed. ``run_job`` is one sync run (``etl run``);
``etl backfill`` (etl/pipeline/backfill.py) runs the same steps chunk by chunk and ``etl preview``
(etl/commands/preview.py) stops after ``derive``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from etl.config.models import Job, Project
from etl.errors import DataError, EtlError, LockLost, StoreError, TooManyAnomalies
from etl.failpoints import failpoint
from etl.outputs.parquet import Output, open_output, publish
from etl.pipeline.mapping import localize
from etl.pipeline.structures import Carried, Structure, structure_for
from etl.redact import redact
from etl.shapes import DEFAULT_PHASE, STORED_ANOMALY_COLUMNS, STORED_RUN_COLUMNS
from etl.sources.reader import Reader, Reading, Window, extra_request
from etl.store.audit import Audit
from etl.store.db import JobState, Store
from etl.store.diff import Changes
from etl.store.lease import Lease
from etl.store.spool import AnomalySpool

log = logging.getLogger(__name__)
runs_log = logging.getLogger(
    "etl.runs"
)  # one line per run outcome, shown without -v by run/schedule

#: ``window_for(source_now_utc) -> Window``: how a caller picks the window from the source's clock
WindowFor = Callable[[datetime], Window]


@dataclass
class RunResult:
    """What one sync run did."""

    job: str
    window_lo: datetime
    window_hi: datetime
    rows_read: int = 0
    runs_inserted: int = 0
    runs_updated: int = 0
    runs_deleted: int = 0
    runs_open: int = 0
    runs_total: int = 0
    anomalies: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    parquet_files: list[str] = field(default_factory=list)
    sync_id: int | None = None
    skipped: list[str] = field(default_factory=list)  # e.g. a file drop's bad files

    def summary(self) -> str:
        """One human line: window, rows, run changes, anomalies, duration."""
        kinds = ", ".join(f"{k} {v}" for k, v in self.anomalies.items()) or "none"
        return (
            f"{self.job}: {_stamp(self.window_lo)} .. {_stamp(self.window_hi)}: "
            f"{self.rows_read:,} rows read, {self.runs_total:,} runs in window "
            f"(+{self.runs_inserted} new, {self.runs_updated} changed, -{self.runs_deleted} removed, "
            f"{self.runs_open} open), anomalies: {kinds} [{self.duration_s:.1f}s]"
        ) + "".join(f"\n  SKIPPED {line}" for line in self.skipped)

    def as_dict(self) -> dict[str, object]:
        """The result for ``--json`` output."""
        return {
            "job": self.job,
            "window_lo": self.window_lo.isoformat(),
            "window_hi": self.window_hi.isoformat(),
            "rows_read": self.rows_read,
            "runs_in_window": self.runs_total,
            "runs_inserted": self.runs_inserted,
            "runs_updated": self.runs_updated,
            "runs_deleted": self.runs_deleted,
            "runs_open": self.runs_open,
            "anomalies": self.anomalies,
            "duration_s": round(self.duration_s, 3),
            "skipped": self.skipped,
        }


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass
class Derived:
    """Runs and anomalies derived from the source for one window (nothing written yet)."""

    window: Window
    runs: pd.DataFrame
    #: the window's anomalies, in batches (``AnomalySpool.frame()``: as one frame)
    anomalies: AnomalySpool
    rows_read: int
    codes: Counter[tuple[str, str]]
    carried: int = 0  # runs carried in from the store because they were open at the window's start
    #: runs of order rows changed since lo that now fail a filter: they leave the store
    removed: pd.DataFrame | None = None
    #: the fields of the runs the next window may carry, before its possible starts (None: the
    #: mapping has no fields); committed with the runs (table ``run_carry``)
    carries: pd.DataFrame | None = None
    #: what the source skipped (a file drop's bad files), for the audit row and the output
    warnings: list[str] = field(default_factory=list)
    #: the source's own writes in the commit's transaction (a file drop's ledger)
    on_commit: Callable[[Any], None] | None = None
    #: rows that should give a booking or run (a START/END code, or an order row) and those of
    #: them that did, and the rows whose event code no events list names (see ``_check_usable``)
    expected: int = 0
    usable: int = 0
    unlisted: int = 0

    @property
    def runs_open(self) -> int:
        """Runs still open at the window's end."""
        return int(self.runs["end"].isna().sum())

    def kinds(self) -> Counter[str]:
        """Anomalies by kind."""
        return Counter(self.anomalies.kinds)


# --------------------------------------------------------------------------- the job's world


def open_store(project: Project) -> Store:
    """The project's store, schema ensured."""
    store = Store(project.spec.store, project.root, project.secrets)
    store.ensure_schema()
    return store


def parquet_base(project: Project) -> Path | None:
    """The local Parquet directory, or None when the project writes no Parquet or writes it to
    object storage."""
    if not project.spec.parquet or project.spec.s3 is not None:
        return None
    base = Path(project.spec.parquet)
    return base if base.is_absolute() else project.root / base


def parquet_output(project: Project) -> Output | None:
    """Where the project's Parquet dataset goes (a local directory or s3://), or None."""
    if not project.spec.parquet:
        return None
    return open_output(project.spec.parquet, project.root, project.spec.s3)


def publishes(project: Project, job: Job) -> bool:
    """Whether runs of ``job`` write Parquet (the project has a dataset and the job takes part)."""
    return bool(project.spec.parquet) and bool(job.spec.parquet)


def lease(project: Project, store: Store, job_name: str) -> Lease:
    """The job's lock with the project's lease, renewed by a heartbeat while held."""
    spec = project.spec.lock
    return Lease(store, job_name, spec.lease, spec.heartbeat)


def lost_after_commit(job_name: str, sync_id: int, exc: LockLost) -> LockLost:
    """The error of a run that committed, then lost its lease while publishing."""
    return LockLost(
        f"{job_name}: committed sync {sync_id}; publishing stopped because the lease was lost "
        f"({exc.message}); the next run republishes the months left pending",
        hint=exc.hint,
    )


@contextmanager
def leased(project: Project, job_name: str) -> Iterator[tuple[Store, Lease]]:
    """Open the project's store and hold ``job_name``'s lock for the ``with`` block: yields the
    store and the lease; the lease is released and the store closed however the block ends
    (also when the lock cannot be taken)."""
    store = open_store(project)
    try:
        with lease(project, store, job_name) as held:
            yield store, held
    finally:
        store.close()


def start_utc(job: Job) -> datetime:
    """The job's ``start_from`` in UTC (wall-clock of the connector's zone unless it has an offset)."""
    if job.start_from.tzinfo is not None:
        return job.start_from.astimezone(UTC)
    naive = pd.Series([pd.Timestamp(job.start_from)]).astype("datetime64[us]")
    return localize(naive, job.connector.zone, job.mapping.dst).iloc[0].to_pydatetime()


def next_window(job: Job, state: JobState | None, now: datetime) -> Window:
    """The window of the next sync run of ``job`` at the source's clock ``now``: from the
    watermark minus ``reread`` (not before ``start_from``; ``start_from`` on the first run) to
    ``now`` minus ``safety_lag`` (empty rather than reversed)."""
    first = start_utc(job)
    if state is not None and state.watermark is not None:
        lo = max(first, state.watermark - job.reread)
    else:
        lo = first
    return Window(lo=lo, hi=max(lo, now - job.safety_lag))


def reader_for(project: Project, job: Job) -> Reader:
    """The reader of the job's source rows: a SQL table or query, a file drop or an HTTP API,
    by the connector's kind (etl/sources/registry.py)."""
    from etl.sources.registry import reader_for as by_kind

    return by_kind(project, job)


# --------------------------------------------------------------------------- read -> map -> derive


def derive(
    project: Project,
    job: Job,
    window_for: WindowFor,
    store: Store | None,
    progress: Callable[[int], None] | None = None,
    reader: Reader | None = None,
    *,
    reach_back: bool = False,
    carried: Carried | None = None,
) -> Derived:
    """Read the source for the job's window and derive its runs (nothing written).

    ``window_for(source_now_utc) -> Window``; ``store`` (None: no store yet) supplies the runs
    carried over; ``reader`` (default: ``reader_for`` the job) the rows. ``progress(rows_read_so_far)``
    is called after every batch; it may raise to abandon the run. ``reach_back`` (a sync run): a
    source that stamps changes moves the window's ``lo`` back to the oldest row changed since
    ``lo`` (not before ``start_from``), so a booking cancelled long after it was read is folded
    anew, as one inside the re-read window is. ``carried``: the runs carried in when the caller
    knows them (a backfill's previous chunk), instead of the store's.
    """
    structure = structure_for(job.mapping)
    shape = structure.shape
    reader = reader if reader is not None else reader_for(project, job)
    if carried is None and store is not None:

        def carried(lo: datetime, margin: timedelta) -> pd.DataFrame:
            # with the carries of the runs' fields and open logins
            if job.mapping.fields or job.mapping.fold.logins == "count":
                return store.carried_runs(job.name, lo, margin, carries=True)
            return store.carried_runs(job.name, lo, margin)

    zone, size = job.connector.zone, job.batch_size
    rows: list[pd.DataFrame] = []
    codes: Counter[tuple[str, str]] = Counter()
    before: list[pd.DataFrame] = []
    withdrawn: list[pd.DataFrame] = []
    # the anomalies go to the spool as they are found: memory bounded by batches, not anomalies
    spool = AnomalySpool(size)
    read = rows_read = malformed = usable = 0
    with reader.open() as reading:
        window = window_for(reading.now_utc())
        if reach_back and window.hi > window.lo:
            window = _reached_back(job, structure, reading, window)
        keep = _anomalies_of(job, window, spool)
        reach = structure.reach(window, carried)
        so_far = 0
        if window.hi > window.lo and reach.before is not None:  # carried runs' fields only
            # (first: the window's request is the one a reader remembers, preview shows it)
            log.info(
                "%s: the fields of runs open at %s are read again from %s",
                job.name,
                window.lo.isoformat(timespec="seconds"),
                reach.before.lo.isoformat(timespec="seconds"),
            )
            for batch in reading.request(reach.before, shape).batches(size):
                mapped = structure.map(batch, zone, reading.instants)
                before.append(mapped.rows)
                rows_read += mapped.rows_read
                if progress is not None:  # the lease is checked as the read goes on
                    so_far += mapped.rows_read
                    progress(so_far)
        request = reading.request(reach.window, shape)
        if window.hi > window.lo:
            for batch in request.batches(size):
                mapped = structure.map(batch, zone, reading.instants)
                if not mapped.rows.empty:
                    rows.append(mapped.rows)
                codes.update(mapped.codes)
                keep(mapped.anomalies)
                read += mapped.rows_read
                if structure.has_codes:
                    usable += int(mapped.rows["event"].isin(("START", "END")).sum())
                else:
                    usable += len(mapped.rows)
                failpoint("extract")
                if progress is not None:
                    progress(so_far + read)
            leaving = extra_request(reading, "withdrawn", window, shape)
            if leaving is not None:  # one more query per run, over the changed rows only
                for batch in leaving.batches(size):
                    withdrawn.append(structure.map(batch, zone, reading.instants).rows)
            odd = extra_request(reading, "malformed", reach.window, shape)
            if odd is not None:  # text times the window's comparison cannot find
                try:
                    for batch in odd.batches(size):
                        mapped = structure.map(batch, zone, reading.instants)
                        undated = mapped.anomalies[mapped.anomalies["ts"].isna()]
                        keep(undated)
                        rows_read += len(batch)
                        malformed += len(undated)
                except DataError as exc:  # e.g. a date_format on an integer column
                    log.warning("%s; malformed text times not looked for", exc.message)
        kept = getattr(reading, "kept", None)
        spans = kept(reach.window) if kept is not None and window.hi > window.lo else []
        warned = getattr(reading, "warnings", None)
        warnings = warned() if warned is not None and window.hi > window.lo else []
        on_commit = getattr(reading, "on_commit", None)
    if structure.has_codes:
        expected = sum(n for (_, kind), n in codes.items() if kind in ("START", "END"))
    else:
        expected = read
    expected += malformed  # rows whose text time the window's comparison could not find
    unlisted = sum(n for (_, kind), n in codes.items() if kind == "UNKNOWN")
    # the next sync run starts at hi - reread, a backfill's next chunk at hi
    points = (max(start_utc(job), window.hi - job.reread), window.hi)
    derived = structure.derive(
        rows, window, reach, carried, withdrawn, before=before, points=points
    )
    for found in derived.anomalies:
        keep(found)
    runs = with_context(derived.runs, job, STORED_RUN_COLUMNS)
    if spans and store is not None:  # a file drop's bad file: rare, and the frames are small
        runs, kept_found = kept_as_stored(store, job.name, spans, runs, spool.frame(), window)
        spool = AnomalySpool.of(kept_found, size)
    return Derived(
        window=window,
        runs=runs,
        anomalies=spool,
        rows_read=rows_read + read,
        codes=codes,
        carried=derived.carried,
        removed=derived.removed,
        carries=derived.carries,
        warnings=warnings,
        on_commit=on_commit,
        expected=expected,
        usable=usable,
        unlisted=unlisted,
    )


def _anomalies_of(job: Job, window: Window, spool: AnomalySpool) -> Callable[[pd.DataFrame], None]:
    """What puts found anomalies into ``spool``: those of ``window`` (and the undated ones),
    with the job's context, one batch at a time."""
    lo, hi = pd.Timestamp(window.lo), pd.Timestamp(window.hi)

    def keep(found: pd.DataFrame) -> None:
        for start in range(0, len(found), spool.limit):
            part = found.iloc[start : start + spool.limit]
            in_window = part["ts"].isna() | ((part["ts"] >= lo) & (part["ts"] < hi))
            if in_window.any():
                spool.add(with_context(part[in_window], job, STORED_ANOMALY_COLUMNS))

    return keep


def kept_as_stored(
    store: Store,
    job: str,
    spans: list[tuple[datetime, datetime]],
    runs: pd.DataFrame,
    found: pd.DataFrame,
    window: Window,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``runs`` and anomalies with what the store holds for ``spans`` instead of what was
    derived there: the runs overlapping a span and the anomalies stamped in it (in the
    window) are the stored ones. A file drop's bad file keeps the runs it delivered so."""
    keep_runs, keep_found = [], []
    derived_in = pd.Series(False, index=runs.index)
    found_in = pd.Series(False, index=found.index)
    lo, hi = pd.Timestamp(window.lo), pd.Timestamp(window.hi)
    for first, last in spans:
        a, b = pd.Timestamp(first), pd.Timestamp(last)
        derived_in |= (runs["start"] <= b) & (runs["end"].isna() | (runs["end"] >= a))
        found_in |= (found["ts"] >= max(a, lo)) & (found["ts"] <= b) & (found["ts"] < hi)
        keep_runs.append(store.runs_between(job, first, last + timedelta(microseconds=1)))
        held = store.anomalies_between(job, max(first, window.lo), last + timedelta(microseconds=1))
        keep_found.append(held[held["ts"].notna() & (held["ts"] < hi)])
    stored = pd.concat(keep_runs, ignore_index=True).drop_duplicates(
        ["machine_code", "order_code", "start"]
    )
    # what the kept runs cover is theirs: e.g. the END (after the span) of a run whose START
    # the unreadable file holds is no orphan
    if not stored.empty and not found.empty:
        for run in stored.itertuples():
            end = pd.Timestamp.max.tz_localize("UTC") if pd.isna(run.end) else run.end
            found_in |= (
                (found["machine_code"] == run.machine_code)
                & (found["order_code"] == run.order_code)
                & (found["ts"] >= run.start)
                & (found["ts"] <= end)
            ).fillna(False)
    held = pd.concat(keep_found, ignore_index=True).drop_duplicates()
    runs = pd.concat([runs[~derived_in], stored.reindex(columns=runs.columns)], ignore_index=True)
    found = pd.concat([found[~found_in], held.reindex(columns=found.columns)], ignore_index=True)
    return runs, found


def with_context(frame: pd.DataFrame, job: Job, columns: list[str]) -> pd.DataFrame:
    """``frame`` with the job's plant and zone (a plant the rows carry already stays) and the
    runs' phase (``production`` where none was derived), in ``columns`` order."""
    out = frame.reset_index(drop=True).reindex(columns=columns)
    plant = pd.Series(job.plant, index=out.index, dtype="string")
    out["plant"] = out["plant"].astype("string").fillna(plant)
    out["zone"] = pd.Series(job.zone_name, index=out.index, dtype="string")
    if "phase" in out:
        out["phase"] = out["phase"].astype("string").fillna(DEFAULT_PHASE)
    return out


def _reached_back(job: Job, structure: Structure, reading: Reading, window: Window) -> Window:
    """``window`` reaching back to the oldest row changed since ``lo`` (``ExtraRequests``)."""
    since = getattr(reading, "changed_since", None)
    if since is not None:  # a source that knows what changed since it last delivered
        earliest = since(window)
        what = "files delivered again or first"
        oldest = None if earliest is None else pd.Timestamp(earliest)
    else:
        changed = extra_request(reading, "changed", window, structure.shape)
        if changed is None:
            return window
        what = "bookings changed since " + window.lo.isoformat(timespec="seconds")
        oldest = None
        for batch in changed.batches(job.batch_size):
            first = structure.oldest(batch, job.connector.zone, reading.instants)
            if first is not None and (oldest is None or first < oldest):
                oldest = first
    if oldest is None:
        return window
    lo = max(oldest.to_pydatetime(), start_utc(job))
    if lo >= window.lo:
        return window
    log.info(
        "%s: %s reach back to %s: the run folds from there",
        job.name,
        what,
        lo.isoformat(timespec="seconds"),
    )
    return Window(lo=lo, hi=window.hi)


# --------------------------------------------------------------------------- diff -> commit -> publish


class JobRun:
    """The steps of a job's runs that need its lease: carry-over from the store, commit (the diff
    against what the store holds, in one transaction with the watermark and the audit row), and
    publishing the months a commit changed. One per lease; a backfill commits many windows."""

    def __init__(self, project: Project, job: Job, held: Lease, reader: Reader | None = None):
        self.project, self.job, self.held = project, job, held
        self.store = held.store
        self.reader = reader
        self.structure = structure_for(job.mapping)
        self.margin = self.structure.carry_margin()
        base = parquet_output(project)
        self.output = base if job.spec.parquet else None
        #: True while Parquet is being written: a failure then is a failed publication
        self.publishing = False

    def publish_pending(self, state: JobState | None) -> None:
        """Publish the months an earlier run committed but did not publish."""
        if state is None or not state.publish_pending or self.output is None:
            return
        log.info(
            "%s: publishing months left over from an earlier run: %s",
            self.job.name,
            ", ".join(state.publish_pending),
        )
        self.publishing = True
        publish(
            self.store,
            self.job.name,
            state.publish_pending,
            self.output,
            self.held.verify,
            fields=self.job.mapping.arrow_fields(),
        )
        self.store.clear_pending(self.job.name, state.publish_pending, self.held.owner)
        self.publishing = False

    def publish_failed(self, exc: BaseException, audit: Audit, sync_id: int | None) -> bool:
        """Record ``exc`` if it stopped the Parquet being written (False otherwise): the store is
        fine, the Parquet is not, and every such run leaves an audit row saying so with the months
        still waiting for the next run. ``sync_id``: the committed sync whose ``ok`` row becomes
        ``publish_failed`` (None: a ``publish_failed`` row of its own). A lost lease is not this:
        the run that took the lock publishes the months and writes its own row."""
        if not self.publishing or isinstance(exc, LockLost):
            return False
        self.publishing = False
        error = _error_text(exc, self.project.secrets)
        audit.error = f"publishing failed: {error}" + _pending_note(self.store, self.job.name)
        if sync_id is not None:
            self.store.mark_publish_failed(sync_id, audit)
        else:
            self.store.record_failure(self.job.name, audit, status="publish_failed")
        return True

    def derive(
        self,
        window_for: WindowFor,
        progress: Callable[[int], None] | None = None,
        *,
        reach_back: bool = False,
        carried: Carried | None = None,
    ) -> Derived:
        """``derive`` the window, checking after every batch that the lease is still ours."""

        def still_ours(rows: int) -> None:
            self.held.check()
            if progress is not None:
                progress(rows)

        return derive(
            self.project,
            self.job,
            window_for,
            self.store,
            still_ours,
            self.reader,
            reach_back=reach_back,
            carried=carried,
        )

    def commit(
        self,
        derived: Derived,
        audit: Audit,
        *,
        bounded: bool = False,
        backfill: tuple[str | None, datetime | None] | None = None,
    ) -> tuple[int, Changes]:
        """Replace the window in the store with what was derived (see ``Store.commit_sync``)."""
        window = derived.window
        return self.store.commit_sync(
            self.job.name,
            window.lo,
            window.hi,
            derived.runs,
            derived.anomalies,
            audit,
            self.margin,
            bounded=bounded,
            backfill=backfill,
            owner=self.held.owner,
            # a backfill chunk changes nothing beyond its range: the withdrawn rows, however
            # old, are the sync runs' to remove
            withdrawn=None if bounded else derived.removed,
            carries=derived.carries,
            also=derived.on_commit,
        )

    def publish(
        self, sync_id: int, months: list[str], known: Mapping[str, pd.DataFrame] | None = None
    ) -> list[str]:
        """Rewrite the Parquet partitions of ``months`` (committed by sync ``sync_id``) and mark
        them published; the files written. ``known``: the runs of some months as the store holds
        them (not read back, see ``publish``). A lease lost here says the commit stands."""
        if self.output is None or not months:
            return []
        self.publishing = True
        try:
            files = publish(
                self.store,
                self.job.name,
                months,
                self.output,
                self.held.verify,
                known,
                fields=self.job.mapping.arrow_fields(),
            )
            self.store.clear_pending(self.job.name, months, self.held.owner)
        except LockLost as exc:
            raise lost_after_commit(self.job.name, sync_id, exc) from exc
        self.publishing = False
        return files


# --------------------------------------------------------------------------- one sync run


def run_job(
    project: Project, job_name: str, progress: Callable[[int], None] | None = None
) -> RunResult:
    """Run one sync of ``job_name``: lock, derive the window, replace it in the store, publish.

    ``progress(rows_read_so_far)`` is called after every batch read from the source; an exception
    it raises abandons the run (nothing is committed, a failed audit row is written).
    """
    job = project.job(job_name)
    project.require_env([job_name])
    clock = time.monotonic()
    with leased(project, job_name) as (store, held):
        # under the lock: runs of one job never overlap in sync_runs
        audit = Audit(started_at=datetime.now(UTC))
        committed = False
        sync_id: int | None = None
        run: JobRun | None = None
        try:
            run = JobRun(project, job, held)
            state = store.state(job_name)
            run.publish_pending(state)
            derived = run.derive(
                lambda now: next_window(job, state, now), progress, reach_back=True
            )
            window = derived.window
            audit.window_lo, audit.window_hi = window.lo, window.hi
            audit.finished_at = datetime.now(UTC)
            audit.duration_s = time.monotonic() - clock
            audit.count(derived.rows_read, derived.runs_open, derived.kinds())
            if derived.warnings:  # an ok run that skipped something says so in its audit row
                audit.error = redact("skipped: " + "; ".join(derived.warnings), project.secrets)
            _check_anomalies(job, derived)
            check_usable(job, derived)
            sync_id, changes = run.commit(derived, audit)
            committed = True  # the ok audit row is written: a later failure adds no failed one
            failpoint("commit")
            files = run.publish(sync_id, changes.months)
            result = RunResult(
                job=job_name,
                window_lo=window.lo,
                window_hi=window.hi,
                rows_read=derived.rows_read,
                runs_inserted=changes.inserted,
                runs_updated=changes.updated,
                runs_deleted=changes.deleted,
                runs_open=derived.runs_open,
                runs_total=len(derived.runs),
                anomalies=dict(sorted(derived.kinds().items())),
                duration_s=time.monotonic() - clock,
                parquet_files=files,
                sync_id=sync_id,
                skipped=derived.warnings,
            )
            _log_result(result)
            return result
        except Exception as exc:
            if audit.finished_at is None:
                audit.finished_at = datetime.now(UTC)
            audit.duration_s = time.monotonic() - clock
            if run is not None and run.publish_failed(exc, audit, sync_id if committed else None):
                pass
            elif not isinstance(exc, StoreError) and not committed:
                audit.error = _error_text(exc, project.secrets)
                store.record_failure(job_name, audit)
            raise


def _error_text(exc: BaseException, secrets: list[str]) -> str:
    """``Kind: message`` of a failed run for its audit row, secrets redacted."""
    message = exc.message if isinstance(exc, EtlError) else str(exc)
    return redact(f"{type(exc).__name__}: {message}", secrets)


def _pending_note(store: Store, job_name: str) -> str:
    """``; months still pending: 2026-10, 2026-11`` from the store (empty if it cannot say)."""
    try:
        state = store.state(job_name)
    except Exception:  # the store is down too: the original error says enough
        return ""
    if state is None or not state.publish_pending:
        return ""
    return "; months still pending: " + ", ".join(state.publish_pending)


def _check_anomalies(job: Job, derived: Derived) -> None:
    """TooManyAnomalies when the window has more than the job's ``max_anomalies`` allows."""
    allowed = job.spec.anomalies_allowed(derived.rows_read)
    if allowed is None or len(derived.anomalies) <= allowed:
        return
    found = ", ".join(f"{k} {v}" for k, v in sorted(derived.kinds().items()))
    raise TooManyAnomalies(
        f"{job.name}: too many anomalies: {len(derived.anomalies)} ({found}) in "
        f"{derived.rows_read:,} rows read, max_anomalies {job.spec.max_anomalies} in "
        f"jobs/{job.name}.yaml allows {allowed}; nothing was committed",
        hint=f"look at them with 'etl preview {job.name}', fix the mapping or the source, "
        "or raise max_anomalies",
    )


#: a window with this many rows of which not one is usable is a broken mapping, not bad data
UNUSABLE_ROWS = 10


def check_usable(job: Job, derived: Derived) -> None:
    """DataError (exit 4, nothing committed) when the window's rows fit the mapping not at all:
    every START/END row's time fails to parse (a wrong ``format``), or no row's code is listed
    under START or END while rows carry codes no list names (the starter's placeholder codes, a
    code list of another system; an ``ignore`` code that still matches does not hide it).
    Committing that would replace the window's stored runs with none. Fewer than
    ``UNUSABLE_ROWS`` such rows are reported as anomalies, as any bad row is."""
    where = f"mappings/{job.mapping_name}.yaml"
    hint = f"look at the rows with 'etl preview {job.name}' and fix {where}"
    kinds = derived.kinds()
    if derived.expected >= UNUSABLE_ROWS and derived.usable == 0:
        found = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"
        common = kinds.most_common(1)[0][0] if kinds else None
        sample = ""
        for part in derived.anomalies.batches():  # the first of them is enough
            example = part.loc[part["kind"] == common, "detail"].dropna()
            # a value that fails the format says more than a row whose time is NULL
            telling = example[~example.str.contains("=NULL", regex=False)]
            if len(telling) or len(example):
                sample = f"; e.g. {(telling if len(telling) else example).iloc[0]}"
                break
        raise DataError(
            f"{job.name}: not one of the {derived.expected:,} rows that should give a booking or "
            f"run fits {where} (anomalies: {found}){sample}; nothing was committed, the stored "
            "runs are kept",
            hint=hint + " (columns.timestamp and its format, the columns)",
        )
    if derived.unlisted >= UNUSABLE_ROWS and derived.expected == 0:
        seen = sorted({code for (code, kind) in derived.codes if kind == "UNKNOWN"})
        shown = ", ".join(repr(c) for c in seen[:8]) + (", ..." if len(seen) > 8 else "")
        raise DataError(
            f"{job.name}: none of the {derived.rows_read:,} rows read has an event code listed "
            f"under START or END in {where}, and {derived.unlisted:,} have codes no list names "
            f"(codes read: {shown}); nothing was committed, the stored runs are kept",
            hint=hint + " (events: START, END, ignore)",
        )


def _log_result(result: RunResult) -> None:
    runs_log.info(
        "%s: window %s .. %s, %d rows read, runs +%d ~%d -%d (%d open), anomalies %s, %.1fs",
        result.job,
        result.window_lo.isoformat(timespec="seconds"),
        result.window_hi.isoformat(timespec="seconds"),
        result.rows_read,
        result.runs_inserted,
        result.runs_updated,
        result.runs_deleted,
        result.runs_open,
        ", ".join(f"{k}={v}" for k, v in result.anomalies.items()) or "none",
        result.duration_s,
        extra={**result.as_dict(), "status": "ok"},
    )
