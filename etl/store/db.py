"""The production-context store: production runs, anomalies, per-job state and one audit row per
sync run, in any SQLAlchemy database (an SQLite file by default, PostgreSQL for shared setups).

The schema is created and versioned by the tool (table ``schema_info``). A sync's runs, anomalies,
watermark and audit row commit in one transaction; the per-job lock lives in ``job_state``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.config.durations import format_duration
from etl.errors import LockHeldError, LockLost, StoreError
from etl.extras import missing_driver
from etl.redact import redact
from etl.shapes import (
    DEFAULT_PHASE,
    STORED_ANOMALY_COLUMNS,
    STORED_RUN_COLUMNS,
)
from etl.store.audit import Audit
from etl.store.backends import backend_for
from etl.store.bulk import STAMPS, insert_frame, read_frame, utc_stamps

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
#: Columns each schema version added to existing tables (``_upgrade`` adds them in place).
ADDED_COLUMNS: dict[int, dict[str, list[str]]] = {
    2: {
        "production_runs": ["phase", "plant", "zone", "attributes"],
        "anomalies": ["plant", "zone"],
    },
}


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (naive UTC text in SQLite, timestamptz elsewhere)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, pd.Timestamp):
            value = value.to_pydatetime()
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if backend_for(dialect.name).naive_utc else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

schema_info = sa.Table(
    "schema_info",
    metadata,
    sa.Column("key", sa.String(50), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)

production_runs = sa.Table(
    "production_runs",
    metadata,
    sa.Column("job", sa.String(200), primary_key=True),
    sa.Column("machine_code", sa.String(200), primary_key=True),
    sa.Column("start", UTCDateTime(), primary_key=True),
    sa.Column("order_code", sa.String(200), primary_key=True),
    sa.Column("product_code", sa.String(200)),
    sa.Column("end", UTCDateTime()),
    sa.Column("flags", sa.String(200)),
    sa.Column("sync_id", sa.Integer),
    sa.Column("phase", sa.String(50)),
    sa.Column("plant", sa.String(200)),
    sa.Column("zone", sa.String(64)),
    sa.Column("attributes", sa.Text),
    sa.Index("ix_production_runs_job_end", "job", "end"),
    sa.Index("ix_production_runs_job_start", "job", "start"),
)

anomalies = sa.Table(
    "anomalies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(100), nullable=False),
    sa.Column("machine_code", sa.String(200)),
    sa.Column("order_code", sa.String(200)),
    sa.Column("ts", UTCDateTime()),
    sa.Column("detail", sa.Text),
    sa.Column("sync_id", sa.Integer),
    sa.Column("plant", sa.String(200)),
    sa.Column("zone", sa.String(64)),
    sa.Index("ix_anomalies_job_ts", "job", "ts"),
)

job_state = sa.Table(
    "job_state",
    metadata,
    sa.Column("job", sa.String(200), primary_key=True),
    sa.Column("watermark", UTCDateTime()),
    sa.Column("last_sync_id", sa.Integer),
    sa.Column("publish_pending", sa.Text),
    sa.Column("lock_owner", sa.String(300)),
    sa.Column("lock_expires", UTCDateTime()),
    sa.Column("backfill_range", sa.String(100)),
    sa.Column("backfill_next", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime()),
)

sync_runs = sa.Table(
    "sync_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job", sa.String(200), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime()),
    sa.Column("duration_s", sa.Float),
    sa.Column("window_lo", UTCDateTime()),
    sa.Column("window_hi", UTCDateTime()),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("rows_read", sa.Integer),
    sa.Column("runs_inserted", sa.Integer),
    sa.Column("runs_updated", sa.Integer),
    sa.Column("runs_deleted", sa.Integer),
    sa.Column("runs_open", sa.Integer),
    sa.Column("anomalies", sa.Integer),
    sa.Column("anomalies_by_kind", sa.Text),
    sa.Column("error", sa.Text),
    sa.Index("ix_sync_runs_job_id", "job", "id"),
)


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


@dataclass
class Changes:
    """How a sync changed the stored runs."""

    inserted: int
    updated: int
    deleted: int
    months: list[str]
    #: the runs written (new or changed) and the stored runs they replaced or that are gone
    #: (changed or removed), as they were; STORED_RUN_COLUMNS each (set by ``commit_sync``)
    written: pd.DataFrame | None = field(default=None, repr=False)
    removed: pd.DataFrame | None = field(default=None, repr=False)


def month_of(stamp: datetime) -> str:
    """``'2026-03'``: the partition a UTC timestamp belongs to."""
    utc = stamp.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"  # strftime writes the year 1 as "1"


def months_of(stamps: pd.Series) -> pd.Series:
    """``month_of`` for a column of timestamps (aware or UTC), in C instead of one ``strftime``
    per value (a third of a second per 160k runs)."""
    utc = pd.to_datetime(stamps, utc=True).dt.tz_localize(None).to_numpy()
    months = np.datetime_as_string(utc.astype("datetime64[M]"), unit="M")
    return pd.Series(months, index=stamps.index, dtype=object)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """UTC start of ``month`` and of the month after."""
    year, mon = (int(part) for part in month.split("-"))
    lo = datetime(year, mon, 1, tzinfo=UTC)
    hi = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return lo, hi


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


class _CreateExclusively(Exception):
    """The schema is missing or unfinished: look again holding the store's write lock."""


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
        except _CreateExclusively:
            self._ensure_schema(exclusive=True)
        except StoreError:
            # several workers starting on an empty PostgreSQL store at once: another one created
            # the tables a moment ago (its CREATE won); a second look finds them
            self._ensure_schema(exclusive=True)

    def _ensure_schema(self, exclusive: bool) -> None:
        lock = self.backend.create_lock_statement
        with self.begin() as conn:
            if exclusive and lock is not None:
                # the write lock first, so a concurrent first run waits for the whole schema and
                # its version row, never sees half of it
                conn.exec_driver_sql(lock)
            inspector = sa.inspect(conn)
            if not inspector.has_table("schema_info"):
                if lock is not None and not exclusive:
                    raise _CreateExclusively
                metadata.create_all(conn)
                conn.execute(schema_info.insert().values(key="version", value=str(SCHEMA_VERSION)))
                log.info("created store schema version %s in %s", SCHEMA_VERSION, self.display)
                return
            version = conn.execute(
                sa.select(schema_info.c.value).where(schema_info.c.key == "version")
            ).scalar()
            if version is None and not exclusive:
                raise _CreateExclusively  # being created by a booking-etl without this fix
            if version is None or int(version) > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.display} has schema version {version}, this booking-etl knows "
                    f"{SCHEMA_VERSION}: upgrade booking-etl"
                )
            if int(version) < SCHEMA_VERSION:
                if lock is not None and not exclusive:
                    raise _CreateExclusively  # the upgrade too, under the write lock
                self._upgrade(conn, int(version))
            metadata.create_all(conn)  # tables added within the same version
            for index in production_runs.indexes:  # and indexes added to existing tables
                index.create(conn, checkfirst=True)

    def _upgrade(self, conn: Connection, version: int) -> None:
        """Move the store from ``version`` to ``SCHEMA_VERSION`` in place, in the caller's
        transaction: the columns each version added (existing rows keep their values; a run's
        phase becomes ``production``, plant, zone and attributes stay NULL until a run re-derives
        it), and every month of every job is marked to be republished, so the Parquet gets the
        new columns in all its partitions with the job's next run."""
        inspector = sa.inspect(conn)
        quote = conn.dialect.identifier_preparer.quote
        tables = {t.name: t for t in (production_runs, anomalies)}
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for name, columns in ADDED_COLUMNS.get(step, {}).items():
                have = {c["name"] for c in inspector.get_columns(name)}
                for column in columns:
                    if column in have:
                        continue
                    kind = tables[name].c[column].type.compile(dialect=conn.dialect)
                    conn.exec_driver_sql(
                        f"ALTER TABLE {quote(name)} ADD COLUMN {quote(column)} {kind}"
                    )
        conn.execute(
            production_runs.update()
            .where(production_runs.c.phase.is_(None))
            .values(phase=DEFAULT_PHASE)
        )
        for job, pending in conn.execute(sa.select(job_state.c.job, job_state.c.publish_pending)):
            starts = conn.execute(
                sa.select(production_runs.c.start).where(production_runs.c.job == job)
            ).scalars()
            months = {month_of(value) for value in starts} | set(json.loads(pending or "[]"))
            conn.execute(
                job_state.update()
                .where(job_state.c.job == job)
                .values(publish_pending=json.dumps(sorted(months)))
            )
        conn.execute(
            schema_info.update()
            .where(schema_info.c.key == "version")
            .values(value=str(SCHEMA_VERSION))
        )
        log.info(
            "upgraded store %s from schema version %s to %s", self.display, version, SCHEMA_VERSION
        )

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
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        if _pid_space():
            owner += f":{_pid_space()}"
        with self.begin() as conn:
            now = self._now(conn)
            exists = conn.execute(sa.select(job_state.c.job).where(job_state.c.job == job)).first()
            if exists is None:
                try:
                    with conn.begin_nested():
                        conn.execute(job_state.insert().values(job=job, updated_at=now))
                except sa.exc.IntegrityError:
                    pass  # another process created it a moment ago
            before = conn.execute(
                sa.select(job_state.c.lock_owner).where(job_state.c.job == job)
            ).scalar()
            taken = conn.execute(
                job_state.update()
                .where(job_state.c.job == job)
                .where(sa.or_(job_state.c.lock_owner.is_(None), job_state.c.lock_expires < now))
                .values(lock_owner=owner, lock_expires=now + ttl)
            ).rowcount
            if taken == 1 and before is not None:
                log.warning("%s: took over the expired lock of %s", job, before)
            if taken != 1:
                holder = conn.execute(
                    sa.select(job_state.c.lock_owner, job_state.c.lock_expires).where(
                        job_state.c.job == job
                    )
                ).first()
                if holder is not None and _dead_local_owner(holder[0]):
                    # the holder ran on this host and its process is gone (killed): take over
                    taken = conn.execute(
                        job_state.update()
                        .where(job_state.c.job == job, job_state.c.lock_owner == holder[0])
                        .values(lock_owner=owner, lock_expires=now + ttl)
                    ).rowcount
                    if taken == 1:
                        log.warning("%s: took over the lock of %s (process gone)", job, holder[0])
        if taken != 1:
            who, until = holder if holder else ("?", None)
            raise LockHeldError(
                f"job {job!r} is already running ({who}, lock expires "
                f"{until.isoformat(timespec='seconds') if until else '?'})",
                hint="wait for it to finish; a crashed run's lock expires by itself",
            )
        return owner

    def _now(self, conn: Connection) -> datetime:
        """The clock leases are measured by: the store server's, so that workers on hosts with
        skewed clocks agree when a lock expires (SQLite: this host's, the only one)."""
        return self.backend.now(conn)

    def renew_lock(self, job: str, owner: str, ttl: timedelta) -> bool:
        """Extend our lock to now + ``ttl``; False when it is no longer ours (expired and taken)."""
        with self.begin() as conn:
            now = self._now(conn)
            renewed = conn.execute(
                job_state.update()
                .where(job_state.c.job == job, job_state.c.lock_owner == owner)
                .values(lock_expires=now + ttl)
            ).rowcount
        return renewed == 1

    def holds_lock(self, job: str, owner: str) -> bool:
        """Whether ``owner`` holds the job's lock and its lease has not run out (store clock)."""
        with self.begin() as conn:
            now = self._now(conn)
            held = conn.execute(
                sa.select(job_state.c.job).where(
                    job_state.c.job == job,
                    job_state.c.lock_owner == owner,
                    job_state.c.lock_expires >= now,
                )
            ).first()
        return held is not None

    def release_lock(self, job: str, owner: str) -> None:
        """Give the lock back (only if we still hold it)."""
        with self.begin() as conn:
            conn.execute(
                job_state.update()
                .where(job_state.c.job == job, job_state.c.lock_owner == owner)
                .values(lock_owner=None, lock_expires=None)
            )

    def reset(self, job: str) -> int:
        """Forget a job: its runs, anomalies and state (audit rows stay). Returns runs removed."""
        with self.begin() as conn:
            removed = conn.execute(
                production_runs.delete().where(production_runs.c.job == job)
            ).rowcount
            conn.execute(anomalies.delete().where(anomalies.c.job == job))
            conn.execute(job_state.delete().where(job_state.c.job == job))
        return removed

    # ------------------------------------------------------------------ runs

    def carried_runs(
        self, job: str, lo: datetime, margin: timedelta = timedelta(0)
    ) -> pd.DataFrame:
        """Runs that started before ``lo`` and were open at ``lo - margin`` (end NULL or later)."""
        t = production_runs
        query = sa.select(*_run_columns()).where(
            t.c.job == job,
            t.c.start < lo,
            sa.or_(t.c.end.is_(None), t.c.end >= lo - margin),
        )
        with self.begin() as conn:
            return read_frame(conn, query, STORED_RUN_COLUMNS)

    def _replaced(
        self, job: str, lo: datetime, margin: timedelta, hi: datetime | None = None
    ) -> sa.ColumnElement[bool]:
        """The stored runs a derivation of ``[lo, hi)`` replaces (``hi`` None: everything after)."""
        t = production_runs
        reach = lo - margin
        replaced = sa.and_(
            t.c.job == job, sa.or_(t.c.start >= lo, t.c.end.is_(None), t.c.end >= reach)
        )
        return replaced if hi is None else sa.and_(replaced, t.c.start < hi)

    def commit_sync(
        self,
        job: str,
        lo: datetime,
        hi: datetime,
        runs: pd.DataFrame,
        found: pd.DataFrame,
        audit: Audit,
        margin: timedelta = timedelta(0),
        *,
        bounded: bool = False,
        backfill: tuple[str | None, datetime | None] | None = None,
        owner: str | None = None,
        withdrawn: pd.DataFrame | None = None,
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
        ``also(conn)``: the source's own writes (a file drop's ledger), in the same transaction.
        """
        row = {**audit.values(), "window_lo": lo, "window_hi": hi}
        upto = hi if bounded else None
        found = found.reindex(columns=STORED_ANOMALY_COLUMNS)  # plant and zone NULL if absent
        t = production_runs
        with self.begin() as conn:
            stored = sa.select(*_run_columns())
            olds = [
                read_frame(
                    conn, stored.where(self._replaced(job, lo, margin, upto)), STORED_RUN_COLUMNS
                )
            ]
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
            changes, write, gone = _compare(old, runs)
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
                conn.execute(t.delete().where(self._replaced(job, lo, margin, upto)))
                for chunk in _by_key(job, keys):
                    conn.execute(t.delete().where(chunk))
                write = _normalized(runs)
            else:
                # write only what changed: a rerun that finds the same runs writes none
                for chunk in _by_key(job, _keys(gone)):
                    conn.execute(t.delete().where(chunk))
            # by start: the (job, start) and (job, end) indexes take the rows near their right
            # edge and the key's pages are visited once per machine (30 % less SQLite B-tree work
            # for a backfill chunk)
            insert_frame(
                conn, t, write, STORED_RUN_COLUMNS, {"job": job, "sync_id": sync_id}, BY_START
            )
            # anomalies of the window (and the undated ones) are replaced when they differ
            in_window = anomalies.c.ts >= lo
            if upto is not None:
                in_window = sa.and_(in_window, anomalies.c.ts < upto)
            replaced = sa.and_(anomalies.c.job == job, sa.or_(in_window, anomalies.c.ts.is_(None)))
            held = read_frame(
                conn, sa.select(*_anomaly_columns()).where(replaced), STORED_ANOMALY_COLUMNS
            )
            differ = _anomaly_months(held, found)
            if differ:
                conn.execute(anomalies.delete().where(replaced))
                insert_frame(
                    conn, anomalies, found, STORED_ANOMALY_COLUMNS, {"job": job, "sync_id": sync_id}
                )
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
        out: dict[str, dict[str, Any]] = {}
        with self.begin() as conn:
            for row in conn.execute(sa.select(job_state)).mappings():
                out[row["job"]] = {
                    "job": row["job"],
                    "watermark": row["watermark"],
                    "publish_pending": json.loads(row["publish_pending"] or "[]"),
                    "running": bool(
                        row["lock_owner"]
                        and row["lock_expires"]
                        and row["lock_expires"] > datetime.now(UTC)
                    ),
                }
            latest = (
                sa.select(sync_runs.c.job, sa.func.max(sync_runs.c.id).label("id"))
                .group_by(sync_runs.c.job)
                .subquery()
            )
            for row in conn.execute(
                sa.select(sync_runs).join(latest, latest.c.id == sync_runs.c.id)
            ).mappings():
                entry = out.setdefault(
                    row["job"], {"job": row["job"], "watermark": None, "running": False}
                )
                entry["last_run"] = {
                    key: row[key]
                    for key in (
                        "status",
                        "started_at",
                        "finished_at",
                        "duration_s",
                        "window_lo",
                        "window_hi",
                        "rows_read",
                        "runs_inserted",
                        "runs_updated",
                        "runs_deleted",
                        "anomalies",
                        "error",
                    )
                }
                entry["last_run"]["anomalies_by_kind"] = json.loads(
                    row["anomalies_by_kind"] or "{}"
                )
            succeeded = (
                sa.select(sync_runs.c.job, sa.func.max(sync_runs.c.id).label("id"))
                .where(sync_runs.c.status == "ok")
                .group_by(sync_runs.c.job)
                .subquery()
            )
            for job, started, finished in conn.execute(
                sa.select(sync_runs.c.job, sync_runs.c.started_at, sync_runs.c.finished_at).join(
                    succeeded, succeeded.c.id == sync_runs.c.id
                )
            ):
                entry = out.setdefault(job, {"job": job, "watermark": None, "running": False})
                entry["last_success"] = finished or started
            counts = conn.execute(
                sa.select(
                    production_runs.c.job,
                    sa.func.count(),
                    sa.func.sum(sa.case((production_runs.c.end.is_(None), 1), else_=0)),
                ).group_by(production_runs.c.job)
            ).all()
            for job, total, open_runs in counts:
                entry = out.setdefault(job, {"job": job, "watermark": None, "running": False})
                entry["runs"], entry["open_runs"] = int(total), int(open_runs or 0)
            kinds = conn.execute(
                sa.select(anomalies.c.job, anomalies.c.kind, sa.func.count()).group_by(
                    anomalies.c.job, anomalies.c.kind
                )
            ).all()
            for job, kind, count in kinds:
                entry = out.setdefault(job, {"job": job, "watermark": None, "running": False})
                entry.setdefault("anomalies", {})[kind] = int(count)
        for entry in out.values():
            entry.setdefault("runs", 0)
            entry.setdefault("open_runs", 0)
            entry.setdefault("anomalies", {})
            entry.setdefault("last_run", None)
            entry.setdefault("last_success", None)
            entry.setdefault("publish_pending", [])
        return [out[k] for k in sorted(out)]


class Lease:
    """A job's lock held for the length of a ``with`` block and kept alive by a heartbeat.

    The lock is taken with an expiry of now + ``lease`` (store clock); a background thread
    renews it every ``heartbeat`` while the block runs. A process that dies stops renewing, so
    its lock expires ``lease`` after the last heartbeat at the latest and the next run of the job,
    on any host, takes it over. ``check()`` raises once a renewal found the lock taken, and also
    by time alone: once no renewal has succeeded for ``lease`` minus a safety margin (the store
    was unreachable), the lock may have expired and been taken without this process hearing of it.
    ``verify()`` additionally asks the store (before each partition is published).
    """

    def __init__(self, store: Store, job: str, lease: timedelta, heartbeat: timedelta) -> None:
        self.store, self.job, self.lease, self.heartbeat = store, job, lease, heartbeat
        self.owner = ""
        self.lost = False
        self._last_ok = 0.0  # time.monotonic() when the last successful take/renewal was sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def margin(self) -> timedelta:
        """How long before the lease runs out (by this host's clock) ``check()`` gives up: one
        heartbeat, at most half the lease; room for clock drift and one partition's upload."""
        return min(self.heartbeat, self.lease / 2)

    def acquire(self) -> Lease:
        """Take the lock (LockHeldError when another run holds it) and start the heartbeat."""
        sent = time.monotonic()
        self.owner = self.store.acquire_lock(self.job, self.lease)
        self._last_ok = sent
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.job}", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Stop the heartbeat and give the lock back (if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.owner and not self.lost:
            self.store.release_lock(self.job, self.owner)

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat.total_seconds()):
            sent = time.monotonic()
            try:
                held = self.store.renew_lock(self.job, self.owner, self.lease)
            except StoreError as exc:  # the store may come back before the lease runs out
                log.warning("%s: could not renew the lock: %s", self.job, exc)
                continue
            except Exception:  # never let the heartbeat die silently; check() expires by time
                log.exception("%s: could not renew the lock (unexpected error)", self.job)
                continue
            if not held:
                self.lost = True
                log.error("%s: lost the lock: the lease expired and another run took it", self.job)
                return
            self._last_ok = sent

    def expired(self) -> bool:
        """Whether the lock may have run out by time: no renewal succeeded for ``lease - margin``."""
        return time.monotonic() - self._last_ok > (self.lease - self.margin).total_seconds()

    def check(self) -> None:
        """Raise LockHeldError when the lock is no longer ours, or may no longer be: a renewal
        found it taken, or none succeeded for nearly a lease."""
        if self.lost:
            raise LockLost(
                f"job {self.job!r} lost its lock (its lease expired and another run took it)",
                hint="raise 'lock.lease' in etl.yaml if the store was unreachable for long",
            )
        if self.expired():
            raise LockLost(
                f"job {self.job!r} lost its lock (no renewal reached the store for "
                f"{format_duration(self.lease - self.margin)}; its lease may have run out)",
                hint="raise 'lock.lease' in etl.yaml if the store was unreachable for long",
            )

    def verify(self) -> None:
        """``check()``, then ask the store that the lock is still ours and not expired (by the
        store's clock): the test before each partition is published."""
        self.check()
        if not self.store.holds_lock(self.job, self.owner):
            self.lost = True
            raise LockLost(
                f"job {self.job!r} lost its lock (its lease expired and another run took it)",
                hint="raise 'lock.lease' in etl.yaml if the store was unreachable for long",
            )


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


@functools.cache
def _pid_space() -> str:
    """Which process-ID space this process lives in: a short digest of the kernel's boot id and
    the PID namespace, or "" where /proc does not tell. Two containers with the same hostname
    (on two hosts, or on one host in two PID namespaces) have different ones, so a PID in a lock
    owner token is only looked up where it means the same process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        space = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}/{space}".encode()).hexdigest()[:8]


def _dead_local_owner(owner: str | None) -> bool:
    """Whether a lock owner token (``host:pid:token:pidspace``) names a process of this host and
    PID namespace that no longer exists. Tokens without a PID space (older versions, systems
    without /proc) are never taken over early: their lease runs out instead."""
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) != 4:
        return False
    host, pid_text, _token, space = parts
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    if not space or space != _pid_space():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


ANALYZE_AFTER = 10_000  # runs written in one sync after which SQLite's statistics are refreshed
KEY_CHUNK = 500  # keys per statement: 3 bound values each, far below every backend's limit


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


def _anomaly_months(old: pd.DataFrame, new: pd.DataFrame) -> set[str | None]:
    """The months (None: undated) whose anomalies differ between ``old`` and ``new``, each
    compared as a multiset of (kind, machine, order, ts, detail): counted by group, not a Python
    tuple per anomaly (a run may bring millions)."""
    sides = []
    for frame, step in ((old, 1), (new, -1)):
        if frame.empty:
            continue
        side = pd.DataFrame(
            {
                name: frame[name].astype("string").fillna("\x00")  # NULL as a value of its own
                for name in STORED_ANOMALY_COLUMNS
                if name != "ts"
            }
        )
        micros = utc_stamps(frame["ts"]).dt.tz_convert(None).to_numpy().view("i8")
        side["ts"] = micros  # NaT: int64 min, a value of its own too
        side["step"] = step
        sides.append(side)
    if not sides:
        return set()
    both = pd.concat(sides, ignore_index=True)
    net = both.groupby([*STORED_ANOMALY_COLUMNS], sort=False)["step"].sum()
    differ = net[net != 0].index.get_level_values("ts").unique()
    nat = np.iinfo(np.int64).min
    return {
        None if value == nat else month_of(pd.Timestamp(value, unit="us", tz=UTC).to_pydatetime())
        for value in differ.tolist()
    }


KEY = ["machine_code", "order_code", "start"]
CONTEXT_TEXT = ("phase", "plant", "zone", "attributes")
BY_START = ("start", "machine_code", "order_code")  # the order runs are written in
VALUE = ["product_code", "end", "flags", "phase", "plant", "zone", "attributes"]


def _compare(old: pd.DataFrame, new: pd.DataFrame) -> tuple[Changes, pd.DataFrame, pd.DataFrame]:
    """Set-based diff of two run frames by (machine, order, start): the counts and months that
    changed, the rows of ``new`` to write (new or changed) and the rows of ``old`` to delete
    (gone or changed)."""
    new = _normalized(new)
    if old.duplicated(KEY).any():  # the window and the runs looked up by key may overlap
        old = old.drop_duplicates(KEY, keep="last")
    if old.empty:  # a first load: everything is new
        months = sorted(set(months_of(new["start"])))
        changes = Changes(inserted=len(new), updated=0, deleted=0, months=months)
        return changes, new.reset_index(drop=True), old[STORED_RUN_COLUMNS]
    both = old.merge(new, on=KEY, how="outer", suffixes=("_old", "_new"), indicator=True)
    same = pd.Series(True, index=both.index)
    for col in VALUE:
        a, b = both[f"{col}_old"], both[f"{col}_new"]
        same &= (a == b).fillna(False).astype(bool) | (a.isna() & b.isna())
    matched = both["_merge"] == "both"
    changed = matched & ~same
    gone = both["_merge"] == "left_only"
    added = both["_merge"] == "right_only"
    touched = both.loc[gone | added | changed, "start"]
    months = sorted(set(months_of(touched)))
    changes = Changes(
        inserted=int(added.sum()),
        updated=int(changed.sum()),
        deleted=int(gone.sum()),
        months=months,
    )
    return changes, _side(both[added | changed], "_new"), _side(both[gone | changed], "_old")


def _side(both: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """One side (``_old`` or ``_new``) of merged runs as a run frame."""
    frame = both[KEY + [f"{c}{suffix}" for c in VALUE]]
    frame.columns = pd.Index(KEY + VALUE)
    return frame[STORED_RUN_COLUMNS].reset_index(drop=True)


def as_stored(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs as the store reads them back (STORED_RUN_COLUMNS, strings, UTC microseconds)."""
    return _normalized(runs)


def _normalized(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with the dtypes the store reads back (strings, UTC microseconds)."""
    frame = runs.reindex(columns=STORED_RUN_COLUMNS).copy()
    for col in ("machine_code", "order_code", "product_code", "flags", *CONTEXT_TEXT):
        frame[col] = frame[col].astype("string")
    frame["phase"] = frame["phase"].fillna(DEFAULT_PHASE)
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    return frame
