"""One sync run of a job: window, read, map, fold, replace in the store, publish Parquet.

``hi`` is the source database's clock minus the job's safety lag; ``lo`` is the previous ``hi``
minus the re-read window (the job's ``start_from`` on the first run). What the source now says about
``[lo, hi)`` replaces what the store holds for it; runs open at ``lo`` are carried into the fold.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy.engine import Connection

from .config import Job, MappingSpec, Project
from .errors import DataError, EtlError, LockLost, StoreError, TooManyAnomalies
from .extract import (
    Window,
    build_query,
    changed_bookings_query,
    check_columns,
    check_custom_query,
    instant_columns,
    malformed_query,
    read_batches,
    read_frames,
    withdrawn_query,
)
from .failpoints import failpoint
from .fetch import FetchChoice
from .fold import carry_margin, fold
from .mapping import Mapped, localize, map_bookings, map_orders, timestamps
from .publish import Output, open_output, publish
from .redact import redact
from .schema import RUN_COLUMNS, empty_anomalies, empty_runs
from .source import open_source
from .store import Lease, Store

log = logging.getLogger(__name__)
runs_log = logging.getLogger(
    "etl.runs"
)  # one line per run outcome, shown without -v by run/schedule


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

    def summary(self) -> str:
        """One human line: window, rows, run changes, anomalies, duration."""
        kinds = ", ".join(f"{k} {v}" for k, v in self.anomalies.items()) or "none"
        return (
            f"{self.job}: {_stamp(self.window_lo)} .. {_stamp(self.window_hi)}: "
            f"{self.rows_read:,} rows read, {self.runs_total:,} runs in window "
            f"(+{self.runs_inserted} new, {self.runs_updated} changed, -{self.runs_deleted} removed, "
            f"{self.runs_open} open), anomalies: {kinds} [{self.duration_s:.1f}s]"
        )

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
        }


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass
class Derived:
    """Runs and anomalies derived from the source for one window (nothing written yet)."""

    window: Window
    runs: pd.DataFrame
    anomalies: pd.DataFrame
    rows_read: int
    codes: Counter[tuple[str, str]]
    sql: str
    fetched: FetchChoice | None = None  # the path the rows came through (None: nothing read)
    #: runs of order rows changed since lo that now fail a filter: they leave the store
    removed: pd.DataFrame | None = None


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


def derive(
    project: Project,
    job: Job,
    window_for: object,
    store: Store | None,
    progress: Callable[[int], None] | None = None,
    carried: pd.DataFrame | None = None,
    reach_back: bool = False,
) -> Derived:
    """Read the source for the job's window and fold it. ``window_for(now_utc) -> Window``.

    ``progress(rows_read_so_far)`` is called after every batch; it may raise to abandon the run.
    ``carried`` (bookings) are the runs open at the window's start when the caller knows them
    (a backfill's previous chunk); otherwise they are read from ``store``.
    ``reach_back`` (a sync run): a booking table with ``updated_at`` moves the window's ``lo``
    back to the oldest booking changed since ``lo`` (not before ``start_from``), so a booking
    cancelled long after it was read is folded anew, as one inside the re-read window is.
    """
    where = f"mappings/{job.mapping_name}.yaml"
    mapping = job.mapping
    if mapping.source.query is not None:
        check_custom_query(
            mapping.source.query, job.connector.dialect, where, mapping.source.allow_functions
        )
    source = open_source(job.connector_name, job.connector, project.root, project.secrets)
    zone = job.connector.zone
    try:
        with source.connect() as conn:
            check_columns(conn, mapping, where)
            window: Window = window_for(source.now_utc(conn))  # type: ignore[operator]
            instants = instant_columns(conn, mapping, source.dialect)
            if reach_back and window.hi > window.lo:
                back = changed_bookings_query(
                    mapping, window, zone, instants, source.dialect.datetimes_as_text
                )
                if back is not None:
                    window = _reached_back(conn, back, mapping, window, zone, instants, job, where)
            reread = window
            still_open = None
            if mapping.structure == "orders" and store is not None:
                # order rows the store holds as open are re-read until they close: the query
                # reaches back to the oldest of them
                held = store.carried_runs(job.name, window.lo)
                still_open = held[held["end"].isna()]
                if not still_open.empty:
                    oldest = still_open["start"].min().to_pydatetime()
                    reread = Window(lo=min(window.lo, oldest), hi=window.hi)
            query = build_query(mapping, reread, zone, instants, source.dialect.datetimes_as_text)
            sql = str(query.compile(dialect=conn.dialect))
            parts: list[Mapped] = []
            withdrawn: list[pd.DataFrame] = []
            found: list[pd.DataFrame] = []
            rows_read = 0
            delivered: list[FetchChoice] = []
            so_far = 0
            if window.hi > window.lo:
                mapper = map_bookings if mapping.structure == "bookings" else map_orders
                batches = read_frames(
                    source,
                    conn,
                    mapping,
                    query,
                    instants,
                    job.batch_size,
                    where,
                    delivered=delivered,
                )
                for batch in batches:
                    parts.append(mapper(batch, mapping, zone, instants))
                    failpoint("extract")
                    if progress is not None:
                        so_far += parts[-1].rows_read
                        progress(so_far)
                leaving = withdrawn_query(
                    mapping, window, zone, instants, source.dialect.datetimes_as_text
                )
                if leaving is not None:  # one more query per run, over the changed rows only
                    for batch in read_batches(conn, leaving, job.batch_size, where):
                        withdrawn.append(map_orders(batch, mapping, zone, instants).rows)
                odd = malformed_query(
                    mapping, reread, zone, instants, source.dialect.datetimes_as_text
                )
                if odd is not None:  # text times the window's comparison cannot find
                    try:
                        for batch in read_batches(conn, odd, job.batch_size, where):
                            mapped = mapper(batch, mapping, zone, instants)
                            found.append(mapped.anomalies[mapped.anomalies["ts"].isna()])
                            rows_read += len(batch)
                    except DataError as exc:  # e.g. a date_format on an integer column
                        log.warning("%s; malformed text times not looked for", exc.message)
    finally:
        source.close()
    rows_read += sum(p.rows_read for p in parts)
    codes: Counter[tuple[str, str]] = Counter()
    for part in parts:
        codes.update(part.codes)
    found += [p.anomalies for p in parts if not p.anomalies.empty]
    rows = [p.rows for p in parts if not p.rows.empty]
    lo, hi = pd.Timestamp(window.lo), pd.Timestamp(window.hi)
    removed: pd.DataFrame | None = None
    if mapping.structure == "bookings":
        bookings = pd.concat(rows, ignore_index=True) if rows else None
        if bookings is not None:
            bookings = bookings[(bookings["ts"] >= lo) & (bookings["ts"] < hi)]
        policy = mapping.fold.policy()
        margin = carry_margin(policy)
        if carried is None and store is not None:
            carried = store.carried_runs(job.name, window.lo, margin)
        if bookings is None or bookings.empty:
            bookings = pd.DataFrame(
                columns=["ts", "machine_code", "order_code", "product_code", "event"]
            )
        result = fold(bookings, carried, policy=policy, lo=window.lo, hi=window.hi)
        runs, fold_found = result.runs, result.anomalies
        found.append(fold_found)
    else:
        runs = pd.concat(rows, ignore_index=True) if rows else empty_runs()
        keep = (runs["start"] < hi) & (
            (runs["start"] >= lo) | runs["end"].isna() | (runs["end"] >= lo)
        )
        if "updated_at" in runs:  # rows corrected since lo, however old they are
            keep |= runs["updated_at"].notna() & (runs["updated_at"] >= lo) & (runs["start"] < hi)
        if still_open is not None and not still_open.empty:
            held_keys = pd.MultiIndex.from_frame(
                still_open[["machine_code", "order_code", "start"]]
            )
            row_keys = pd.MultiIndex.from_frame(runs[["machine_code", "order_code", "start"]])
            keep |= row_keys.isin(held_keys)
        runs = runs[keep]
        if withdrawn:
            gone = pd.concat(withdrawn, ignore_index=True)
            gone_keys = pd.MultiIndex.from_frame(gone[["machine_code", "order_code", "start"]])
            kept_keys = pd.MultiIndex.from_frame(runs[["machine_code", "order_code", "start"]])
            left = gone[~gone_keys.isin(kept_keys)]
            removed = left[RUN_COLUMNS].reset_index(drop=True) if not left.empty else None
        duplicated = runs.duplicated(["machine_code", "order_code", "start"], keep="first")
        if duplicated.any():
            dup = runs[duplicated]
            found.append(
                pd.DataFrame(
                    {
                        "kind": "duplicate_row",
                        "machine_code": dup["machine_code"],
                        "order_code": dup["order_code"],
                        "ts": dup["start"],
                        "detail": "a second row for this machine, order and start (first kept)",
                    }
                )
            )
            runs = runs[~duplicated]
    anomalies = (
        pd.concat([f for f in found if not f.empty], ignore_index=True)
        if any(not f.empty for f in found)
        else empty_anomalies()
    )
    in_window = anomalies["ts"].isna() | ((anomalies["ts"] >= lo) & (anomalies["ts"] < hi))
    return Derived(
        window=window,
        runs=runs[RUN_COLUMNS].reset_index(drop=True),
        anomalies=anomalies[in_window].reset_index(drop=True),
        rows_read=rows_read,
        codes=codes,
        sql=sql,
        fetched=delivered[-1] if delivered else None,
        removed=removed,
    )


def _reached_back(
    conn: Connection,
    query: object,
    mapping: MappingSpec,
    window: Window,
    zone: ZoneInfo,
    instants: frozenset[str],
    job: Job,
    where: str,
) -> Window:
    """``window`` reaching back to the oldest booking ``query`` finds (changed since ``lo``)."""
    spec = mapping.booking_columns.timestamp
    oldest: pd.Timestamp | None = None
    for batch in read_batches(conn, query, job.batch_size, where):  # type: ignore[arg-type]
        stamps = timestamps(batch, spec, zone, mapping.dst, instants).dropna()
        if len(stamps) and (oldest is None or stamps.min() < oldest):
            oldest = stamps.min()
    if oldest is None:
        return window
    lo = max(oldest.to_pydatetime(), start_utc(job))
    if lo >= window.lo:
        return window
    log.info(
        "%s: bookings changed since %s reach back to %s: the run folds from there",
        job.name,
        window.lo.isoformat(timespec="seconds"),
        lo.isoformat(timespec="seconds"),
    )
    return Window(lo=lo, hi=window.hi)


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
        started = datetime.now(UTC)  # under the lock: runs of one job never overlap in sync_runs
        audit: dict[str, object] = {"started_at": started}
        committed = False
        sync_id: int | None = None
        publishing = False  # a failure while True is a failed publication (status publish_failed)
        try:
            state = store.state(job_name)
            base = parquet_output(project)
            if state and state.publish_pending and base is not None and job.spec.parquet:
                log.info(
                    "%s: publishing months left over from an earlier run: %s",
                    job_name,
                    ", ".join(state.publish_pending),
                )
                publishing = True
                publish(store, job_name, state.publish_pending, base, held.verify)
                store.clear_pending(job_name, state.publish_pending, held.owner)
                publishing = False
            first = start_utc(job)

            def window_for(now: datetime) -> Window:
                hi = now - job.safety_lag
                if state is not None and state.watermark is not None:
                    lo = max(first, state.watermark - job.reread)
                else:
                    lo = first
                return Window(lo=lo, hi=max(lo, hi))

            def still_ours(rows: int) -> None:
                held.check()
                if progress is not None:
                    progress(rows)

            derived = derive(project, job, window_for, store, still_ours, reach_back=True)
            window = derived.window
            audit.update(window_lo=window.lo, window_hi=window.hi)
            kinds = Counter(derived.anomalies["kind"].tolist())
            finished = datetime.now(UTC)
            audit.update(
                finished_at=finished,
                duration_s=time.monotonic() - clock,
                rows_read=derived.rows_read,
                runs_open=int(derived.runs["end"].isna().sum()),
                anomalies=len(derived.anomalies),
                anomalies_by_kind=json.dumps(dict(sorted(kinds.items()))),
            )
            allowed = job.spec.anomalies_allowed(derived.rows_read)
            if allowed is not None and len(derived.anomalies) > allowed:
                found = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
                raise TooManyAnomalies(
                    f"{job_name}: too many anomalies: {len(derived.anomalies)} ({found}) in "
                    f"{derived.rows_read:,} rows read, max_anomalies {job.spec.max_anomalies} in "
                    f"jobs/{job_name}.yaml allows {allowed}; nothing was committed",
                    hint=f"look at them with 'etl preview {job_name}', fix the mapping or the source, "
                    "or raise max_anomalies",
                )
            margin = (
                carry_margin(job.mapping.fold.policy())
                if job.mapping.structure == "bookings"
                else timedelta(0)
            )
            sync_id, changes = store.commit_sync(
                job_name,
                window.lo,
                window.hi,
                derived.runs,
                derived.anomalies,
                audit,
                margin,
                owner=held.owner,
                withdrawn=derived.removed,
            )
            committed = True  # the ok audit row is written: a later failure adds no failed one
            failpoint("commit")
            files: list[str] = []
            if base is not None and job.spec.parquet and changes.months:
                publishing = True
                try:
                    files = publish(store, job_name, changes.months, base, held.verify)
                    store.clear_pending(job_name, changes.months, held.owner)
                except LockLost as exc:
                    raise lost_after_commit(job_name, sync_id, exc) from exc
                publishing = False
            result = RunResult(
                job=job_name,
                window_lo=window.lo,
                window_hi=window.hi,
                rows_read=derived.rows_read,
                runs_inserted=changes.inserted,
                runs_updated=changes.updated,
                runs_deleted=changes.deleted,
                runs_open=int(derived.runs["end"].isna().sum()),
                runs_total=len(derived.runs),
                anomalies=dict(sorted(kinds.items())),
                duration_s=time.monotonic() - clock,
                parquet_files=files,
                sync_id=sync_id,
            )
            runs_log.info(
                "%s: window %s .. %s, %d rows read, runs +%d ~%d -%d (%d open), anomalies %s, %.1fs",
                job_name,
                window.lo.isoformat(timespec="seconds"),
                window.hi.isoformat(timespec="seconds"),
                result.rows_read,
                result.runs_inserted,
                result.runs_updated,
                result.runs_deleted,
                result.runs_open,
                ", ".join(f"{k}={v}" for k, v in result.anomalies.items()) or "none",
                result.duration_s,
                extra={**result.as_dict(), "status": "ok"},
            )
            return result
        except Exception as exc:
            audit.setdefault("finished_at", datetime.now(UTC))
            audit["duration_s"] = time.monotonic() - clock
            message = exc.message if isinstance(exc, EtlError) else str(exc)
            audit["error"] = redact(f"{type(exc).__name__}: {message}", project.secrets)
            if publishing and not isinstance(exc, LockLost):
                # the store is fine, the Parquet is not: every such run leaves a row saying so,
                # with the months still waiting for the next run (a lost lease is not this: the
                # run that took the lock publishes them and writes its own row)
                audit["error"] = f"publishing failed: {audit['error']}" + _pending_note(
                    store, job_name
                )
                if committed and sync_id is not None:
                    store.mark_publish_failed(sync_id, audit)
                else:
                    store.record_failure(job_name, audit, status="publish_failed")
            elif not isinstance(exc, StoreError) and not committed:
                store.record_failure(job_name, audit)
            raise


def _pending_note(store: Store, job_name: str) -> str:
    """``; months still pending: 2026-10, 2026-11`` from the store (empty if it cannot say)."""
    try:
        state = store.state(job_name)
    except Exception:  # the store is down too: the original error says enough
        return ""
    if state is None or not state.publish_pending:
        return ""
    return "; months still pending: " + ", ".join(state.publish_pending)


def publishes(project: Project, job: Job) -> bool:
    """Whether runs of ``job`` write Parquet (the project has a dataset and the job takes part)."""
    return bool(project.spec.parquet) and bool(job.spec.parquet)
