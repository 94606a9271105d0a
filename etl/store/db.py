"""The production-context store: production runs, anomalies, per-job state and one audit row per
sync run, in any SQLAlchemy database (an SQLite file by default, PostgreSQL for shared setups).

The schema is created and versioned by the tool (table ``schema_info``). A sync's runs, anomalies,
watermark and audit row commit in one transaction; the per-job lock lives in ``job_state``.

``Store`` is the face the pipeline and the commands use. Behind it: the tables and their versions
(``schema``), the lock's row (``lock``; ``lease`` holds it with a heartbeat), the diff of a
window against the stored one (``diff``), the per-job summaries (``status``), months
(``months``), and what each database does differently (``backends``, ``bulk``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.errors import LockLost, StoreError
from etl.extras import missing_driver
from etl.redact import redact
from etl.shapes import STORED_ANOMALY_COLUMNS, STORED_RUN_COLUMNS
from etl.store import lock, schema, status
from etl.store.audit import Audit
from etl.store.backends import backend_for
from etl.store.bulk import STAMPS, insert_frame, read_frame, read_frames, utc_stamps
from etl.store.diff import AnomalyDigest, Changes, as_stored, compare
from etl.store.months import month_bounds, month_of
from etl.store.schema import anomalies, job_state, production_runs, run_carry, sync_runs
from etl.store.spool import AnomalySpool

log = logging.getLogger(__name__)


@dataclass
class JobState:
    """What the store knows about a job between runs."""

    job: str
    watermark: datetime | None
    publish_pending: list[str]
    lock_owner: str | None
    lock_expires: datetime | None
    backfill_range: str | None = None
    backfill_next: datetime | None = None


def _keys(frame: pd.DataFrame) -> list[tuple[str, str, datetime]]:
    """(machine, order, start) keys of a run frame."""
    return list(
        zip(
            frame["machine_code"].tolist(),
            frame["order_code"].tolist(),
            pd.to_datetime(frame["start"], utc=True).dt.to_pydatetime().tolist(),
            strict=True,
        )
    )


class Store:
    """The production-context store behind one SQLAlchemy URL."""

    def __init__(self, url: str, root: Path, secrets: list[str] | None = None) -> None:
        self.secrets = secrets or []
        parsed = sa.make_url(url)
        self.backend = backend_for(parsed.get_backend_name())
        parsed = self.backend.resolve(parsed, root)
        self.backend.prepare(parsed)
        self.url = parsed
        try:
            self.engine: Engine = sa.create_engine(parsed, connect_args=self.backend.connect_args())
        except ImportError as exc:
            missing = missing_driver(exc)
            if missing is None:
                raise StoreError(f"etl.yaml: store: cannot use {self.display}: {exc}") from None
            raise StoreError(
                f"etl.yaml: store: cannot use {self.display}: {missing[0]}", hint=missing[1]
            ) from None
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise StoreError(f"etl.yaml: store: cannot use {self.display}: {exc}") from None
        self.backend.configure(self.engine)
        #: the clock leases are measured by (``_now``); tests replace it to let time pass
        self.clock: Callable[[Connection], datetime] = self.backend.now

    @property
    def display(self) -> str:
        """The store URL without its password."""
        return redact(self.url.render_as_string(hide_password=True), self.secrets)

    @property
    def path(self) -> Path | None:
        """The SQLite file, when the store is one."""
        return self.backend.path(self.url)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction; database failures become StoreError (exit 6) with secrets hidden."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except sa.exc.DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
            raise StoreError(f"store {self.display}: {redact(reason, self.secrets)}") from None

    def ensure_schema(self) -> None:
        """Create the tables on first use; refuse a store written by a newer booking-etl."""
        try:
            self._ensure_schema(exclusive=False)
        except schema.CreateExclusively:
            self._ensure_schema(exclusive=True)
        except StoreError:
            # several workers starting on an empty PostgreSQL store at once: another one created
            # the tables a moment ago (its CREATE won); a second look finds them
            self._ensure_schema(exclusive=True)

    def _ensure_schema(self, exclusive: bool) -> None:
        with self.begin() as conn:
            schema.ensure(conn, self.backend.create_lock_statement, exclusive, self.display)

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()

    # ------------------------------------------------------------------ state and lock

    def state(self, job: str) -> JobState | None:
        """The job's watermark, pending publications and lock holder, or None if never run."""
        with self.begin() as conn:
            row = (
                conn.execute(sa.select(job_state).where(job_state.c.job == job)).mappings().first()
            )
        if row is None:
            return None
        return JobState(
            job=job,
            watermark=row["watermark"],
            publish_pending=json.loads(row["publish_pending"] or "[]"),
            lock_owner=row["lock_owner"],
            lock_expires=row["lock_expires"],
            backfill_range=row["backfill_range"],
            backfill_next=row["backfill_next"],
        )

    def acquire_lock(self, job: str, ttl: timedelta) -> str:
        """Take the job's lock or raise LockHeldError naming the holder; returns the owner token."""
        owner = lock.owner_token()
        with self.begin() as conn:
            taken, holder = lock.take(conn, self._now(conn), job, ttl, owner)
        if not taken:
            raise lock.held_error(job, holder)
        return owner

    def _now(self, conn: Connection) -> datetime:
        """The clock leases are measured by: the store server's, so that workers on hosts with
        skewed clocks agree when a lock expires (SQLite: this host's, the only one)."""
        return self.clock(conn)

    def renew_lock(self, job: str, owner: str, ttl: timedelta) -> bool:
        """Extend our lock to now + ``ttl``; False when it is no longer ours (expired and taken)."""
        with self.begin() as conn:
            return lock.renew(conn, self._now(conn), job, owner, ttl)

    def holds_lock(self, job: str, owner: str) -> bool:
        """Whether ``owner`` holds the job's lock and its lease has not run out (store clock)."""
        with self.begin() as conn:
            return lock.holds(conn, self._now(conn), job, owner)

    def release_lock(self, job: str, owner: str) -> None:
        """Give the lock back (only if we still hold it)."""
        with self.begin() as conn:
            lock.release(conn, job, owner)

    def reset(self, job: str) -> int:
        """Forget a job: its runs, anomalies and state (audit rows stay). Returns runs removed."""
        with self.begin() as conn:
            removed = conn.execute(
                production_runs.delete().where(production_runs.c.job == job)
            ).rowcount
            conn.execute(anomalies.delete().where(anomalies.c.job == job))
            conn.execute(run_carry.delete().where(run_carry.c.job == job))
            conn.execute(job_state.delete().where(job_state.c.job == job))
        return removed

    # ------------------------------------------------------------------ runs

    def carried_runs(
        self, job: str, lo: datetime, margin: timedelta = timedelta(0), *, carries: bool = False
    ) -> pd.DataFrame:
        """Runs that started before ``lo`` and were open at ``lo - margin`` (end NULL or later).

        With ``carries``, each with its latest carry not after ``lo`` (``carry_at``,
        ``carry_attributes``, ``carry_basis``, ``carry_logins``; NULL where it has none)."""
        t = production_runs
        stored = sa.select(*_run_columns())
        query = sa.union_all(  # one index range each (see _replaced)
            stored.where(t.c.job == job, t.c.end.is_(None), t.c.start < lo),
            stored.where(t.c.job == job, t.c.end >= lo - margin, t.c.start < lo),
        )
        with self.begin() as conn:
            runs = read_frame(conn, query, STORED_RUN_COLUMNS)
            if not carries:
                return runs
            c = run_carry
            found = conn.execute(
                sa.select(
                    c.c.machine_code, c.c.order_code, c.c.start, c.c.carry_at, c.c.attributes,
                    c.c.basis, c.c.logins,
                ).where(c.c.job == job, c.c.carry_at <= lo)
            ).all()  # fmt: skip
        return _with_carries(runs, found)

    def _replaced(
        self, job: str, lo: datetime, margin: timedelta, hi: datetime | None = None
    ) -> list[sa.ColumnElement[bool]]:
        """The stored runs a derivation of ``[lo, hi)`` replaces (``hi`` None: everything after),
        as disjoint predicates that each read one index range: those starting in the window
        (the key), and those starting before it that are open or end within the margin (the
        end index). One ``start >= lo OR end IS NULL OR end >= reach`` had SQLite and an
        unanalyzed PostgreSQL read every run before ``hi`` instead, once per backfill chunk."""
        t = production_runs
        reach = lo - margin
        inside = sa.and_(t.c.job == job, t.c.start >= lo)
        if hi is not None:
            inside = sa.and_(inside, t.c.start < hi)
        return [
            inside,
            sa.and_(t.c.job == job, t.c.end.is_(None), t.c.start < lo),
            sa.and_(t.c.job == job, t.c.end >= reach, t.c.start < lo),
        ]

    def commit_sync(
        self,
        job: str,
        lo: datetime,
        hi: datetime,
        runs: pd.DataFrame,
        found: pd.DataFrame | AnomalySpool,
        audit: Audit,
        margin: timedelta = timedelta(0),
        *,
        bounded: bool = False,
        backfill: tuple[str | None, datetime | None] | None = None,
        owner: str | None = None,
        withdrawn: pd.DataFrame | None = None,
        carries: pd.DataFrame | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> tuple[int, Changes]:
        """Replace what the store holds for ``[lo, hi)`` and move the watermark, in one transaction.

        ``bounded`` (backfill chunks) leaves runs starting at or after ``hi`` alone and never moves
        the watermark backwards; ``backfill`` records (range, next chunk start) for resuming.
        Returns the audit row's id and what changed. Parquet months to rewrite are recorded in
        ``job_state.publish_pending`` in the same transaction. With ``owner``, the commit only
        happens while that owner still holds the job's lock and its lease has not run out by the
        store's clock (LockHeldError otherwise: a run whose lease expired commits nothing, whether
        or not another run took the lock yet). ``withdrawn``: runs (by key) the source no longer
        selects, however old (an order row changed since ``lo`` that now fails a filter).
        ``found``: the window's anomalies, compared with the stored ones and written batch by
        batch (an ``AnomalySpool``; a frame is one batch).
        ``carries`` (a job with fields): the derivation's carries, which replace the job's.
        ``also(conn)``: the source's own writes (a file drop's ledger), in the same transaction.
        """
        row = {**audit.values(), "window_lo": lo, "window_hi": hi}
        upto = hi if bounded else None
        if not isinstance(found, AnomalySpool):  # plant and zone NULL if absent
            found = AnomalySpool.of(
                found.reindex(columns=STORED_ANOMALY_COLUMNS), max(1, len(found))
            )
        t = production_runs
        with self.begin() as conn:
            stored = sa.select(*_run_columns())
            parts = self._replaced(job, lo, margin, upto)
            window = sa.union_all(*(stored.where(part) for part in parts))
            olds = [read_frame(conn, window, STORED_RUN_COLUMNS)]
            # runs re-derived from rows corrected long ago (an order table's updated_at) lie
            # outside the window: the stored run with the same key is the one they replace
            reach = pd.Timestamp(lo - margin)
            outside = runs[
                runs["end"].notna() & (runs["start"] < pd.Timestamp(lo)) & (runs["end"] < reach)
            ]
            keys = _keys(outside) + (_keys(withdrawn) if withdrawn is not None else [])
            for chunk in _by_key(job, keys):
                olds.append(read_frame(conn, stored.where(chunk), STORED_RUN_COLUMNS))
            old = (
                pd.concat(olds, ignore_index=True).drop_duplicates(
                    ["machine_code", "order_code", "start"]
                )
                if len(olds) > 1
                else olds[0]
            )
            state, old_watermark = conn.execute(
                sa.select(job_state.c.publish_pending, job_state.c.watermark).where(
                    job_state.c.job == job
                )
            ).one()
            changes, write, gone = compare(old, runs)
            changes.written, changes.removed = write, gone
            touched: set[str] = set(json.loads(state or "[]")) | set(changes.months)
            sync_id = conn.execute(
                sync_runs.insert().values(
                    job=job,
                    status="ok",
                    runs_inserted=changes.inserted,
                    runs_updated=changes.updated,
                    runs_deleted=changes.deleted,
                    **row,
                )
            ).inserted_primary_key[0]  # type: ignore[index]
            if len(gone) * 2 > len(old):
                # most of the window changed: replace it whole
                for part in parts:
                    conn.execute(t.delete().where(part))
                for chunk in _by_key(job, keys):
                    conn.execute(t.delete().where(chunk))
                write = as_stored(runs)
            else:
                # write only what changed: a rerun that finds the same runs writes none
                for chunk in _by_key(job, _keys(gone)):
                    conn.execute(t.delete().where(chunk))
            # by start: the key (job, start, machine, order) and the (job, end) index take the
            # rows at or near their right edge
            insert_frame(
                conn, t, write, STORED_RUN_COLUMNS, {"job": job, "sync_id": sync_id}, BY_START
            )
            # anomalies of the window (and the undated ones) are replaced when they differ
            in_window = anomalies.c.ts >= lo
            if upto is not None:
                in_window = sa.and_(in_window, anomalies.c.ts < upto)
            replaced = sa.and_(anomalies.c.job == job, sa.or_(in_window, anomalies.c.ts.is_(None)))
            # both sides by their digests, batch by batch: neither is held whole
            held, new = AnomalyDigest(), AnomalyDigest()
            query = sa.select(*_anomaly_columns()).where(replaced)
            for part in read_frames(conn, query, STORED_ANOMALY_COLUMNS, found.limit):
                held.add(part)
            for part in found.batches():
                new.add(part)
            differ = held.differ(new)
            if differ:
                conn.execute(anomalies.delete().where(replaced))
                for part in found.batches():
                    insert_frame(
                        conn,
                        anomalies,
                        part,
                        STORED_ANOMALY_COLUMNS,
                        {"job": job, "sync_id": sync_id},
                    )
            if carries is not None:  # a handful of rows: the runs open at the window's end
                conn.execute(run_carry.delete().where(run_carry.c.job == job))
                if not carries.empty:
                    conn.execute(run_carry.insert(), _carry_rows(job, carries))
            # the undated anomalies are published with any month: the window's first stands in
            pending = sorted(touched | {month or month_of(lo) for month in differ})
            watermark = hi
            if bounded and old_watermark is not None:
                watermark = max(old_watermark, hi)
            values: dict[str, Any] = {
                "watermark": watermark,
                "last_sync_id": sync_id,
                "publish_pending": json.dumps(pending),
                "updated_at": datetime.now(UTC),
            }
            if backfill is not None:
                values["backfill_range"], values["backfill_next"] = backfill
            update = job_state.update().where(job_state.c.job == job)
            if owner is not None:  # ours and not run out (store clock), even if nobody took it
                update = update.where(
                    job_state.c.lock_owner == owner, job_state.c.lock_expires >= self._now(conn)
                )
            if conn.execute(update.values(**values)).rowcount != 1 and owner is not None:
                raise LockLost(
                    f"job {job!r} lost its lock (its lease expired and another run took it): "
                    "nothing was committed",
                    hint="raise 'lock.lease' in etl.yaml if the store was unreachable for long",
                )
            if also is not None:
                also(conn)
        changes.months = pending
        if len(write) >= ANALYZE_AFTER and self.backend.statistics_statements:
            self._analyze()
        return int(sync_id), changes

    def _analyze(self) -> None:
        """Refresh SQLite's planner statistics (sampled: a few milliseconds) after a large write.
        Without them SQLite reads a job's whole history for the window's ``start >= lo OR end
        IS NULL OR end >= lo`` instead of one index range per term; PostgreSQL's autovacuum does
        this by itself."""
        try:
            with self.begin() as conn:
                for statement in self.backend.statistics_statements:
                    conn.exec_driver_sql(statement)
        except StoreError as exc:  # committed already: a slower plan is no reason to fail
            log.warning("could not refresh the store's statistics: %s", exc)

    def record_failure(self, job: str, audit: Audit, status: str = "failed") -> None:
        """Write a failed sync's audit row (its own transaction; never raises). ``status`` is
        ``failed``, or ``publish_failed`` when the run stopped while writing the Parquet."""
        try:
            with self.begin() as conn:
                conn.execute(sync_runs.insert().values(job=job, status=status, **audit.values()))
        except Exception as exc:  # the original error matters more than this one
            log.warning("could not record the failed run in the store: %s", exc)

    def mark_publish_failed(self, sync_id: int, audit: Audit) -> None:
        """Turn a committed sync's ``ok`` audit row into ``publish_failed`` with the error: the
        store holds the run's result, the Parquet does not yet (never raises)."""
        values = {
            "error": audit.error,
            "finished_at": audit.finished_at,
            "duration_s": audit.duration_s,
        }
        try:
            with self.begin() as conn:
                conn.execute(
                    sync_runs.update()
                    .where(sync_runs.c.id == sync_id)
                    .values(status="publish_failed", **values)
                )
        except Exception as exc:  # the original error matters more than this one
            log.warning("could not record the failed publication in the store: %s", exc)

    def clear_pending(self, job: str, months: list[str], owner: str | None = None) -> None:
        """Mark these months as published; with ``owner``, only while that run holds the lock
        (LockHeldError otherwise: another run took it and publishes the months itself)."""
        with self.begin() as conn:
            current = conn.execute(
                sa.select(job_state.c.publish_pending).where(job_state.c.job == job)
            ).scalar()
            left = sorted(set(json.loads(current or "[]")) - set(months))
            update = job_state.update().where(job_state.c.job == job)
            if owner is not None:
                update = update.where(
                    job_state.c.lock_owner == owner, job_state.c.lock_expires >= self._now(conn)
                )
            done = conn.execute(update.values(publish_pending=json.dumps(left))).rowcount
            if done != 1 and owner is not None:
                raise LockLost(
                    f"job {job!r} lost its lock (its lease expired and another run took it) "
                    "while publishing; the months stay pending for the next run",
                    hint="raise 'lock.lease' in etl.yaml if the store was unreachable for long",
                )

    def first_start(self, job: str, lo: datetime) -> datetime | None:
        """The earliest start of ``job``'s stored runs at or after ``lo`` (None: there are none)."""
        t = production_runs
        with self.begin() as conn:
            first = conn.execute(
                sa.select(sa.func.min(t.c.start)).where(t.c.job == job, t.c.start >= lo)
            ).scalar()
        if isinstance(first, str):  # SQLite's naive UTC text (an aggregate loses the type)
            return utc_stamps([first]).iloc[0].to_pydatetime()
        if isinstance(first, datetime):
            return first.replace(tzinfo=UTC) if first.tzinfo is None else first.astimezone(UTC)
        return None

    def runs_in_month(self, job: str, month: str) -> pd.DataFrame:
        """All stored runs of ``job`` starting in ``month`` (UTC), ordered."""
        lo, hi = month_bounds(month)
        t = production_runs
        query = (
            sa.select(*_run_columns())
            .where(t.c.job == job, t.c.start >= lo, t.c.start < hi)
            .order_by(t.c.machine_code, t.c.start, t.c.order_code)
        )
        with self.begin() as conn:
            return read_frame(conn, query, STORED_RUN_COLUMNS)

    def anomalies_in_month(self, job: str, month: str | None) -> pd.DataFrame:
        """Stored anomalies of ``job`` in ``month`` (None: those without a timestamp)."""
        a = anomalies
        query = sa.select(*_anomaly_columns()).where(a.c.job == job)
        if month is None:
            query = query.where(a.c.ts.is_(None))
        else:
            lo, hi = month_bounds(month)
            query = query.where(a.c.ts >= lo, a.c.ts < hi)
        with self.begin() as conn:
            return read_frame(conn, query.order_by(a.c.ts, a.c.id), STORED_ANOMALY_COLUMNS)

    def anomaly_batches(self, job: str, month: str | None, size: int) -> Iterator[pd.DataFrame]:
        """``anomalies_in_month`` in frames of at most ``size`` rows, streamed from the store."""
        a = anomalies
        query = sa.select(*_anomaly_columns()).where(a.c.job == job)
        if month is None:
            query = query.where(a.c.ts.is_(None))
        else:
            lo, hi = month_bounds(month)
            query = query.where(a.c.ts >= lo, a.c.ts < hi)
        with self.begin() as conn:
            yield from read_frames(
                conn, query.order_by(a.c.ts, a.c.id), STORED_ANOMALY_COLUMNS, size
            )

    def runs_between(
        self, job: str, lo: datetime | None = None, hi: datetime | None = None
    ) -> pd.DataFrame:
        """Stored runs of ``job`` overlapping ``[lo, hi)`` (open runs overlap everything after
        their start; None: unbounded), ordered by machine and start."""
        t = production_runs
        query = sa.select(*_run_columns()).where(t.c.job == job)
        if hi is not None:
            query = query.where(t.c.start < hi)
        if lo is not None:
            query = query.where(sa.or_(t.c.end.is_(None), t.c.end > lo, t.c.start >= lo))
        with self.begin() as conn:
            return read_frame(
                conn,
                query.order_by(t.c.machine_code, t.c.start, t.c.order_code),
                STORED_RUN_COLUMNS,
            )

    def anomalies_between(
        self,
        job: str,
        lo: datetime | None = None,
        hi: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """Stored anomalies of ``job`` with ``ts`` in ``[lo, hi)`` plus those without a ``ts``
        (the first ``limit`` by time, when given)."""
        query = sa.select(*_anomaly_columns()).where(_anomalies_in(job, lo, hi))
        query = query.order_by(anomalies.c.ts, anomalies.c.id)
        with self.begin() as conn:
            return read_frame(conn, query.limit(limit), STORED_ANOMALY_COLUMNS)

    def anomaly_counts_between(
        self, job: str, lo: datetime | None = None, hi: datetime | None = None
    ) -> dict[str, int]:
        """How many anomalies ``anomalies_between`` holds, by kind (counted by the database)."""
        a = anomalies
        query = sa.select(a.c.kind, sa.func.count()).where(_anomalies_in(job, lo, hi))
        with self.begin() as conn:
            return {str(k): int(n) for k, n in conn.execute(query.group_by(a.c.kind))}

    def all_months(self, job: str) -> list[str]:
        """Every month that holds runs or anomalies of the job."""
        with self.begin() as conn:
            starts = conn.execute(
                sa.select(production_runs.c.start).where(production_runs.c.job == job)
            ).scalars()
            months = {month_of(s) for s in starts}
            stamps = conn.execute(sa.select(anomalies.c.ts).where(anomalies.c.job == job)).scalars()
            months |= {month_of(s) for s in stamps if s is not None}
        return sorted(months)

    # ------------------------------------------------------------------ status

    def summary(self) -> list[dict[str, Any]]:
        """Per job: watermark, last sync's outcome, last success, stored runs (total/open),
        anomalies by kind."""
        with self.begin() as conn:
            return status.summary(conn)


def store_display(url: str, root: Path, secrets: list[str] | None = None) -> str:
    """The store URL as ``Store.display`` shows it (SQLite paths resolved against the
    project, no password), without creating or opening anything."""
    parsed = sa.make_url(url)
    parsed = backend_for(parsed.get_backend_name()).resolve(parsed, root)
    return redact(parsed.render_as_string(hide_password=True), secrets or [])


def open_read_only(url: str, root: Path, secrets: list[str] | None = None) -> Store | None:
    """The existing store behind ``url`` opened so that nothing can be written (for ``etl
    preview`` and ``etl report``), or None when it does not exist yet. Creates nothing.

    SQLite connections get ``PRAGMA query_only``, PostgreSQL sessions
    ``default_transaction_read_only``, and every backend a guard that refuses any statement
    other than a query.
    """
    parsed = sa.make_url(url)
    if not backend_for(parsed.get_backend_name()).may_exist(parsed, root):
        return None
    store = Store(url, root, secrets)
    store.backend.make_read_only(store.engine)
    sa.event.listen(store.engine, "before_cursor_execute", _refuse_writes)
    try:
        with store.begin() as conn:
            exists = sa.inspect(conn).has_table("schema_info")
    except BaseException:
        store.close()
        raise
    if not exists:
        store.close()
        return None
    return store


def _refuse_writes(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    first = (statement.lstrip().split(None, 1) or ["(empty)"])[0].upper()
    if first not in ("SELECT", "WITH", "PRAGMA", "SHOW"):
        raise StoreError(f"refused to send a {first} statement to a store opened read-only")


ANALYZE_AFTER = 10_000  # runs written in one sync after which SQLite's statistics are refreshed
KEY_CHUNK = 500  # keys per statement: 3 bound values each, far below every backend's limit


def _with_carries(runs: pd.DataFrame, found: Sequence[Any]) -> pd.DataFrame:
    """``runs`` with the latest of the carries ``found`` (rows of ``run_carry``) of each."""
    names = ["carry_at", "carry_attributes", "carry_basis", "carry_logins"]
    carry = pd.DataFrame(
        found, columns=["machine_code", "order_code", "start", *names], dtype=object
    )
    for name in ("machine_code", "order_code", "carry_attributes", "carry_basis"):
        carry[name] = carry[name].astype("string")
    for name in ("start", "carry_at"):
        carry[name] = utc_stamps(carry[name].to_numpy())
    carry["carry_logins"] = pd.array(carry["carry_logins"], dtype="Int64")
    carry = carry.sort_values("carry_at", kind="stable").drop_duplicates(
        ["machine_code", "order_code", "start"], keep="last"
    )
    return runs.merge(carry, on=["machine_code", "order_code", "start"], how="left")


def _carry_rows(job: str, carries: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``run_carry`` for a derivation's carries (None for NA)."""
    frame = carries.reindex(
        columns=["machine_code", "order_code", "start", "carry_at", "attributes", "basis", "logins"]
    )
    frame = frame.astype(object).where(frame.notna(), None)
    rows = frame.to_dict("records")
    for row in rows:
        row["job"] = job
        for name in ("start", "carry_at"):
            row[name] = pd.Timestamp(row[name]).to_pydatetime()
    return rows


def _anomalies_in(job: str, lo: datetime | None, hi: datetime | None) -> sa.ColumnElement[bool]:
    a = anomalies
    dated = []
    if lo is not None:
        dated.append(a.c.ts >= lo)
    if hi is not None:
        dated.append(a.c.ts < hi)
    if not dated:
        return a.c.job == job
    return sa.and_(a.c.job == job, sa.or_(a.c.ts.is_(None), sa.and_(*dated)))


def _by_key(job: str, keys: list[tuple[str, str, datetime]]) -> Iterator[sa.ColumnElement[bool]]:
    """``job``'s runs with these (machine, order, start) keys, as a few set-based predicates
    (a row-value IN list per chunk of keys) instead of one statement per key."""
    t = production_runs
    row = sa.tuple_(t.c.machine_code, t.c.order_code, t.c.start)
    for at in range(0, len(keys), KEY_CHUNK):
        yield sa.and_(t.c.job == job, row.in_(keys[at : at + KEY_CHUNK]))


def _stamps_as_stored(table: sa.Table, names: list[str]) -> list[sa.ColumnElement[Any]]:
    """``names`` of ``table``, timestamps as the driver returns them (UTC text in SQLite,
    datetimes elsewhere): ``read_frame`` converts them all at once instead of one Python call
    per value."""
    return [
        sa.type_coerce(table.c[name], sa.String()).label(name) if name in STAMPS else table.c[name]
        for name in names
    ]


def _run_columns() -> list[sa.ColumnElement[Any]]:
    """The run columns in STORED_RUN_COLUMNS order, as ``read_frame`` takes them."""
    return _stamps_as_stored(production_runs, STORED_RUN_COLUMNS)


def _anomaly_columns() -> list[sa.ColumnElement[Any]]:
    """The anomaly columns in STORED_ANOMALY_COLUMNS order, as ``read_frame`` takes them."""
    return _stamps_as_stored(anomalies, STORED_ANOMALY_COLUMNS)


BY_START = ("start", "machine_code", "order_code")  # the order runs are written in
