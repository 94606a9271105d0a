"""The store's tables and their versions: the schema the tool creates on first use, checks on
every start (table ``schema_info``) and upgrades in place when an older booking-etl wrote it.

Timestamps are aware UTC datetimes on every backend (``UTCDateTime``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.errors import StoreError
from etl.failpoints import failpoint
from etl.shapes import DEFAULT_PHASE
from etl.store.backends import backend_for
from etl.store.months import month_of

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
#: ``production_runs``' key from version 3 on (before: machine, start, order): runs written in
#: start order (a backfill's chunks, a sync's window) go to the right edge of the key, as of the
#: (job, end) index, instead of one place per machine, and the key serves the start ranges the
#: (job, start) index served before; with one index fewer, a backfill's COPY of 2.5M runs
#: into PostgreSQL takes 5.8 s instead of 14.8 s
RUN_KEY = ["job", "start", "machine_code", "order_code"]
#: Columns each schema version added to existing tables (``upgrade`` adds them in place).
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
    sa.Column("job", sa.String(200), nullable=False),
    sa.Column("machine_code", sa.String(200), nullable=False),
    sa.Column("start", UTCDateTime(), nullable=False),
    sa.Column("order_code", sa.String(200), nullable=False),
    sa.Column("product_code", sa.String(200)),
    sa.Column("end", UTCDateTime()),
    sa.Column("flags", sa.String(200)),
    sa.Column("sync_id", sa.Integer),
    sa.Column("phase", sa.String(50)),
    sa.Column("plant", sa.String(200)),
    sa.Column("zone", sa.String(64)),
    sa.Column("attributes", sa.Text),
    sa.PrimaryKeyConstraint(*RUN_KEY),
    sa.Index("ix_production_runs_job_end", "job", "end"),
)
DROPPED_INDEXES = ["ix_production_runs_job_start"]  # version 3: the key serves its ranges

#: Per run a later window may carry in: the fields of its bookings before a carry point (the
#: next sync run's ``lo``, the window's ``hi``), so that the re-read bookings are not counted
#: twice (etl/pipeline/attributes.py). The last commit's; schema version 3.
run_carry = sa.Table(
    "run_carry",
    metadata,
    sa.Column("job", sa.String(200), primary_key=True),
    sa.Column("machine_code", sa.String(200), primary_key=True),
    sa.Column("start", UTCDateTime(), primary_key=True),
    sa.Column("order_code", sa.String(200), primary_key=True),
    sa.Column("carry_at", UTCDateTime(), primary_key=True),
    sa.Column("attributes", sa.Text),
    sa.Column("basis", sa.String(64)),
    #: ``logins: count``: the logins open at ``carry_at`` (NULL: the mapping counts none)
    sa.Column("logins", sa.Integer),
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


class CreateExclusively(Exception):
    """The schema is missing or unfinished: look again holding the store's write lock."""


def ensure(conn: Connection, lock: str | None, exclusive: bool, display: str) -> None:
    """Create the tables on first use, upgrade an older schema, refuse a newer one, in the
    caller's transaction. ``lock``: the backend's statement that takes the store's write lock
    (None: the backend needs none); without ``exclusive``, CreateExclusively asks the caller to
    look again in a transaction that takes it first."""
    if exclusive and lock is not None:
        # the write lock first, so a concurrent first run waits for the whole schema and
        # its version row, never sees half of it
        conn.exec_driver_sql(lock)
    inspector = sa.inspect(conn)
    if not inspector.has_table("schema_info"):
        if lock is not None and not exclusive:
            raise CreateExclusively
        metadata.create_all(conn)
        conn.execute(schema_info.insert().values(key="version", value=str(SCHEMA_VERSION)))
        log.info("created store schema version %s in %s", SCHEMA_VERSION, display)
        return
    version = conn.execute(
        sa.select(schema_info.c.value).where(schema_info.c.key == "version")
    ).scalar()
    if version is None and not exclusive:
        raise CreateExclusively  # being created by a booking-etl without this fix
    if version is None or int(version) > SCHEMA_VERSION:
        raise StoreError(
            f"store {display} has schema version {version}, this booking-etl knows "
            f"{SCHEMA_VERSION}: upgrade booking-etl"
        )
    if int(version) < SCHEMA_VERSION:
        if lock is not None and not exclusive:
            raise CreateExclusively  # the upgrade too, under the write lock
        upgrade(conn, int(version), display)
    metadata.create_all(conn)  # tables added within the same version
    for index in production_runs.indexes:  # and indexes added to existing tables
        index.create(conn, checkfirst=True)


def upgrade(conn: Connection, version: int, display: str) -> None:
    """Move the store from ``version`` to ``SCHEMA_VERSION`` in place, in the caller's
    transaction, one version's step after the other (``_add_context``, ``_rekey_runs``).
    Tables a version added (3: ``run_carry``) are created by ``ensure``; a store without carries
    reads the bookings of the runs open at the next window's start again from their start, once."""
    if version < 2:
        _add_context(conn, version)
    if version < 3:
        _rekey_runs(conn)
    failpoint("upgrade")  # a process killed here leaves the old version, nothing half-moved
    conn.execute(
        schema_info.update().where(schema_info.c.key == "version").values(value=str(SCHEMA_VERSION))
    )
    log.info("upgraded store %s from schema version %s to %s", display, version, SCHEMA_VERSION)


def _add_context(conn: Connection, version: int) -> None:
    """Version 2: the columns it added (existing rows keep their values; a run's phase becomes
    ``production``, plant, zone and attributes stay NULL until a run re-derives it), and every
    month of every job is marked to be republished, so the Parquet gets the new columns in all
    its partitions with the job's next run."""
    inspector = sa.inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    tables = {t.name: t for t in (production_runs, anomalies)}
    for step in range(version + 1, 3):
        for name, columns in ADDED_COLUMNS.get(step, {}).items():
            have = {c["name"] for c in inspector.get_columns(name)}
            for column in columns:
                if column in have:
                    continue
                kind = tables[name].c[column].type.compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {quote(name)} ADD COLUMN {quote(column)} {kind}")
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


def _rekey_runs(conn: Connection) -> None:
    """Version 3: ``production_runs`` keyed by ``RUN_KEY``, without the (job, start) index.
    Where the database alters a key in place (PostgreSQL), the key is dropped and added;
    SQLite fixes a table's key when it creates it, so the runs move to a new table. The rows,
    and with them the Parquet, stay what they were."""
    inspector = sa.inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    table = quote(production_runs.name)
    indexes = {str(ix["name"]) for ix in inspector.get_indexes(production_runs.name)}
    for name in DROPPED_INDEXES:
        if name in indexes:
            conn.exec_driver_sql(f"DROP INDEX {quote(name)}")
    key = inspector.get_pk_constraint(production_runs.name)
    if key["constrained_columns"] == RUN_KEY:
        return
    columns = ", ".join(quote(name) for name in RUN_KEY)
    if backend_for(conn.dialect.name).alters_keys:
        conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT {quote(str(key['name']))}")
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD PRIMARY KEY ({columns})")
        return
    old = quote(f"{production_runs.name}_v2")
    conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {old}")
    for name in indexes - set(DROPPED_INDEXES):  # renamed with the table: made anew below
        conn.exec_driver_sql(f"DROP INDEX {quote(name)}")
    production_runs.create(conn)
    names = ", ".join(quote(column.name) for column in production_runs.columns)
    conn.exec_driver_sql(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {old} ORDER BY {columns}"
    )
    conn.exec_driver_sql(f"DROP TABLE {old}")
