"""What the store does differently on SQLite, PostgreSQL and any other SQLAlchemy database.

The store (etl/store/db.py, schema.py) and its bulk moves (etl/store/bulk.py) never branch on a
backend name: they ask the ``StoreBackend`` chosen once for their URL (``backend_for``). SQLite is a
file next to the project, with WAL pragmas, naive UTC text for timestamps, ``executemany`` of values
converted column by column, and planner statistics refreshed after large writes. PostgreSQL has a
clock all workers share, sessions that can be made read-only at connect, and ``COPY`` through
psycopg. Any other backend gets SQLAlchemy's defaults.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

COPY_BATCH = 50_000  # rows per CSV piece sent to COPY: memory bounded by the piece, not the frame
#: rows turned into Python values at a time by the row-wise inserts (SQLite, others)
INSERT_SLICE = 50_000
SQLITE_ROWS = 50  # rows per SQLite INSERT statement
SQLITE_PARAMETERS = 999  # bound values per statement: SQLite's lowest SQLITE_MAX_VARIABLE_NUMBER


class StoreBackend:
    """A store database as SQLAlchemy reaches it: the defaults, overridden per backend."""

    name: ClassVar[str] = ""  # SQLAlchemy's backend name ("" for the generic one)
    # timestamps are bound as naive UTC (the backend has no time zone type)
    naive_utc: ClassVar[bool] = False
    # run after a large write, in their own transaction, to refresh the planner's statistics
    statistics_statements: ClassVar[tuple[str, ...]] = ()
    # taken before the schema is created, where DDL commits on its own (None: DDL is
    # transactional, a concurrent creation fails and is looked at again)
    create_lock_statement: ClassVar[str | None] = None
    # ALTER TABLE drops and adds a table's primary key (False: the table is made anew)
    alters_keys: ClassVar[bool] = True

    def resolve(self, url: URL, root: Path) -> URL:
        """``url`` with a project-relative location made absolute (nothing is created)."""
        return url

    def prepare(self, url: URL) -> None:
        """Create what must exist before the engine connects (SQLite: the file's folder)."""

    def connect_args(self) -> dict[str, Any]:
        """Extra keyword arguments for the DBAPI ``connect()``."""
        return {}

    def configure(self, engine: Engine) -> None:
        """Set up every new connection of a read-write store engine."""

    def path(self, url: URL) -> Path | None:
        """The store's file, when it is one."""
        return None

    def may_exist(self, url: URL, root: Path) -> bool:
        """False when there is certainly no store behind ``url`` yet (a missing SQLite file);
        True when only connecting can tell."""
        return True

    def make_read_only(self, engine: Engine) -> None:
        """Make every session of ``engine`` refuse writes where the backend itself can."""

    def now(self, conn: Connection) -> datetime:
        """The clock leases are measured by: this host's, unless the server has a shared one."""
        return datetime.now(UTC)

    def insert(self, conn: Connection, table: sa.Table, rows: pa.Table) -> None:
        """Insert the Arrow ``rows`` (columns named as in ``table``) in the caller's transaction."""
        for part in _slices(rows):  # Python values for one slice at a time, not for every row
            conn.execute(table.insert(), part.to_pylist())


class GenericBackend(StoreBackend):
    """Any SQLAlchemy database without a backend of its own: SQLAlchemy's defaults."""


class SqliteBackend(StoreBackend):
    """An SQLite file (relative to the project), in WAL mode; timestamps as naive UTC text."""

    name = "sqlite"
    naive_utc = True
    statistics_statements = ("PRAGMA analysis_limit = 1000", "ANALYZE production_runs")
    create_lock_statement = "BEGIN IMMEDIATE"  # pysqlite commits every CREATE on its own
    alters_keys = False

    def resolve(self, url: URL, root: Path) -> URL:
        database = url.database or ""
        if database and database != ":memory:" and not Path(database).is_absolute():
            return url.set(database=str(root / database))
        return url

    def prepare(self, url: URL) -> None:
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)

    def connect_args(self) -> dict[str, Any]:
        return {"timeout": 60}

    def configure(self, engine: Engine) -> None:
        sa.event.listen(engine, "connect", _sqlite_pragmas)

    def path(self, url: URL) -> Path | None:
        if url.database not in (None, ":memory:"):
            return Path(url.database or "")
        return None

    def may_exist(self, url: URL, root: Path) -> bool:
        database = url.database or ""
        if database in ("", ":memory:"):
            return False
        return (Path(database) if Path(database).is_absolute() else root / database).is_file()

    def make_read_only(self, engine: Engine) -> None:
        sa.event.listen(engine, "connect", _sqlite_query_only)

    def insert(self, conn: Connection, table: sa.Table, rows: pa.Table) -> None:
        # executemany of values converted column by column, timestamps as the naive UTC text
        # SQLAlchemy's SQLite dialect stores (so that range predicates compare alike). Binding
        # is most of what it costs: a column with one value in every row (the job, the sync id,
        # a plant's zone, no attributes) is written into the statement instead of bound per row
        # (a third less with 5 values per row instead of 12), and each statement inserts
        # SQLITE_ROWS rows (a fifth less than one statement per row)
        quote = conn.dialect.identifier_preparer.quote
        target = _target(conn, table)
        for part in _slices(rows):  # Python values for one slice at a time, not for every row
            names, marks, values = [], [], []
            for name, column in zip(part.column_names, part.columns, strict=True):
                names.append(quote(name))
                constant = _sqlite_constant(column)
                marks.append("?" if constant is None else constant)
                if constant is None:
                    values.append(_sqlite_values(column))
            head = f"INSERT INTO {target} ({', '.join(names)}) VALUES "
            one = f"({', '.join(marks)})"
            if not values:
                conn.exec_driver_sql(head + one, [()] * part.num_rows)
                continue
            width, count = len(values), part.num_rows
            per = max(1, min(SQLITE_ROWS, SQLITE_PARAMETERS // width))
            flat: list[Any] = [None] * (count * width)
            for at, column_values in enumerate(values):  # row-major, one slice per column
                flat[at::width] = column_values
            whole = count // per * per * width
            step = per * width
            if whole:
                groups = [tuple(flat[at : at + step]) for at in range(0, whole, step)]
                conn.exec_driver_sql(head + ", ".join([one] * per), groups)
            if whole < len(flat):
                rest = flat[whole:]
                conn.exec_driver_sql(
                    head + one, [tuple(rest[at : at + width]) for at in range(0, len(rest), width)]
                )


class PostgresBackend(StoreBackend):
    """PostgreSQL: the server's clock, read-only sessions at connect, COPY through psycopg."""

    name = "postgresql"

    def make_read_only(self, engine: Engine) -> None:
        sa.event.listen(engine, "do_connect", _postgres_read_only)

    def now(self, conn: Connection) -> datetime:
        # the store server's clock, so that workers on hosts with skewed clocks agree when a
        # lock expires
        value = conn.execute(sa.select(sa.func.statement_timestamp())).scalar()
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return datetime.now(UTC)

    def insert(self, conn: Connection, table: sa.Table, rows: pa.Table) -> None:
        if conn.dialect.driver != "psycopg":
            super().insert(conn, table, rows)
            return
        _copy(
            conn,
            f"COPY {_target(conn, table)} ({_names(conn, rows)}) FROM STDIN (FORMAT csv)",
            rows,
        )


_BACKENDS: dict[str, StoreBackend] = {b.name: b for b in (SqliteBackend(), PostgresBackend())}
_GENERIC = GenericBackend()


def backend_for(name: str) -> StoreBackend:
    """The backend for a SQLAlchemy backend name (``URL.get_backend_name()``, ``Dialect.name``)."""
    return _BACKENDS.get(name, _GENERIC)


def _target(conn: Connection, table: sa.Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


def _names(conn: Connection, rows: pa.Table) -> str:
    quote = conn.dialect.identifier_preparer.quote
    return ", ".join(quote(name) for name in rows.column_names)


def _slices(rows: pa.Table) -> Iterator[pa.Table]:
    for offset in range(0, rows.num_rows, INSERT_SLICE):
        yield rows.slice(offset, INSERT_SLICE)


def _sqlite_constant(column: pa.ChunkedArray) -> str | None:
    """The SQL literal of a text or integer column holding one value (or only nulls) in every
    row, None otherwise (other types are always bound)."""
    if len(column) == 0:
        return None
    if column.null_count == len(column):
        return "NULL"
    if column.null_count or not (
        pa.types.is_string(column.type) or pa.types.is_integer(column.type)
    ):
        return None
    first = column[0].as_py()
    if not pc.all(pc.equal(column, pa.scalar(first, column.type))).as_py():
        return None
    if isinstance(first, str):
        if "\x00" in first:  # SQLite's text literal ends there: bound instead
            return None
        return "'" + first.replace("'", "''") + "'"
    return str(int(first))


def _sqlite_values(column: pa.ChunkedArray) -> list[Any]:
    if pa.types.is_timestamp(column.type):
        # the naive UTC wall time as the text SQLAlchemy's SQLite DateTime stores ("2026-03-01
        # 12:00:00.000000", microseconds always): Arrow's cast writes it 10x faster than strftime
        column = column.cast(pa.timestamp("us")).cast(pa.string())
    if pa.types.is_string(column.type):  # NumPy's object array is built faster than a pylist
        values: list[Any] = column.to_numpy(zero_copy_only=False).tolist()
        return values
    return column.to_pylist()


def _copy(conn: Connection, statement: str, rows: pa.Table) -> None:
    """COPY ``rows`` through the connection's psycopg cursor, as CSV written by Arrow: strings
    quoted, nulls as empty unquoted fields, timestamps as UTC text with ``+00``."""
    from psycopg.copy import QueuedLibpqWriter
    from pyarrow import csv

    driver = conn.connection.driver_connection
    assert driver is not None
    options = csv.WriteOptions(include_header=False, quoting_style="needed")
    try:
        # the queued writer sends each piece from its own thread while the next one is written:
        # Arrow's CSV writer and the server's parsing and index work overlap
        with (
            driver.cursor() as cursor,
            cursor.copy(statement, writer=QueuedLibpqWriter(cursor)) as copy,
        ):
            for batch in _utc_text(rows).to_batches(max_chunksize=COPY_BATCH):
                sink = io.BytesIO()
                csv.write_csv(pa.Table.from_batches([batch]), sink, options)
                copy.write(sink.getbuffer())
    except Exception as exc:
        # psycopg's own error (this path bypasses SQLAlchemy's execute): wrapped like any other
        # statement's, so the store reports it the same way and the transaction rolls back
        error = type(exc).__module__.split(".")[0]
        if error != "psycopg":
            raise
        raise sa.exc.DBAPIError(statement, None, exc) from None


def _utc_text(rows: pa.Table) -> pa.Table:
    """``rows`` with each timestamp column as UTC text with an explicit offset
    (``2026-03-01 12:00:00.000000+00``): Arrow's cast writes it ten times faster than its CSV
    writer formats a timestamp with a time zone (most of a backfill's ``COPY`` time before)."""
    columns = []
    for column in rows.columns:
        if pa.types.is_timestamp(column.type):
            naive = column.cast(pa.timestamp("us")).cast(pa.string())  # the UTC wall time
            column = pc.binary_join_element_wise(naive, pa.scalar("+00"), "")
        columns.append(column)
    return pa.table(columns, names=rows.column_names)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_query_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only = ON")
    cursor.close()


def _postgres_read_only(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
    params["options"] = f"{params.get('options', '')} -c default_transaction_read_only=on".strip()
