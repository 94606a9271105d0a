"""Arrow-native extraction: the generated SELECT streamed as ``pyarrow.RecordBatch``es.

Each dialect names the Arrow path a well-kept driver offers it (``SourceDialect.arrow_path``):
PostgreSQL -> ADBC's libpq driver (COPY BINARY, streamed), MySQL/MariaDB -> connectorx
(``arrow_stream``), SQL Server and any ``+pyodbc`` URL -> arrow-odbc, Oracle -> python-oracledb's
``fetch_df_batches``. The SQLAlchemy path (etl/sources/sql/query.py ``read_batches``) stays the fallback:
when the driver is not installed, for SQLite, or when the connector says ``fetch: sqlalchemy``.

The read-only layers hold on every path: the exact SQL text handed to the native driver passes the
statement guard (``refusal``); the native session is set up read-only with the dialect's own
``session_statements`` (or the ADBC URI's startup options); values are bound parameters where the
driver binds while streaming (arrow-odbc, oracledb) and otherwise rendered by SQLAlchemy's literal
renderer of the live connection's dialect (quotes doubled, backslashes escaped where the server
reads them). Every batch is cast to one explicit schema taken from the source catalog.
"""

from __future__ import annotations

import datetime
import decimal
import importlib
import importlib.metadata
import logging
import math
import os
import urllib.parse
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as _pg
from sqlalchemy.engine import Connection

from etl.config.models import MappingSpec
from etl.errors import DataError, SourceError
from etl.extras import extra_for, install_command
from etl.redact import redact
from etl.sources.sql.dialects import SourceDialect
from etl.sources.sql.engine import ReadOnlyViolation, Source, check_read_only, refusal

log = logging.getLogger(__name__)

# connectorx's pool (r2d2) writes its own text lines to stderr, past --log-format json; its
# errors reach us as exceptions and are reported from there (RUST_LOG set by the user still wins)
os.environ.setdefault("RUST_LOG", "off")

TEXT_LIMIT = 8192  # bytes per value buffered for unbounded text columns (arrow-odbc)
US = "us"


# ---------------------------------------------------------------------------- the schema


def arrow_type(type_: sa.types.TypeEngine[Any], instant: bool) -> pa.DataType | None:
    """The Arrow type a catalog column is read as (None: as the driver reports it)."""
    if instant:
        return pa.timestamp(US, tz="UTC")
    if isinstance(type_, sa.DateTime):  # also Oracle DATE, which holds a time of day
        return pa.timestamp(US)
    if isinstance(type_, sa.Date):
        return pa.date32()
    if isinstance(type_, sa.Time):
        return pa.time64(US)
    if isinstance(type_, sa.Boolean):
        return pa.bool_()
    if isinstance(type_, sa.Integer):
        return pa.int64()
    if isinstance(type_, sa.Float):
        return pa.float64()
    if isinstance(type_, sa.Numeric):
        precision, scale = getattr(type_, "precision", None), getattr(type_, "scale", None)
        if precision is not None and 0 < precision <= 38:
            return pa.decimal128(precision, scale or 0)  # as Decimal, like the DBAPI drivers
        return pa.string()  # unconstrained NUMERIC: its exact text
    if isinstance(type_, sa.String | sa.Enum):
        return pa.string()
    return None


_CATALOG: weakref.WeakKeyDictionary[Connection, dict[tuple[str, str | None], list[Any]]] = (
    weakref.WeakKeyDictionary()
)


def catalog_columns(conn: Connection, table: str, schema: str | None) -> list[Any]:
    """``Inspector.get_columns`` of ``table``, reflected once per connection (a run checks the
    columns, finds the instants and builds the Arrow schema from the same reflection); raises
    as ``get_columns`` does, and a failure is not remembered."""
    cached = _CATALOG.setdefault(conn, {})
    key = (table, schema)
    if key not in cached:
        try:
            cached[key] = sa.inspect(conn).get_columns(table, schema=schema)
        except sa.exc.DBAPIError as exc:
            # a MariaDB view reflects through SHOW CREATE, which needs SHOW VIEW; its columns
            # are in information_schema for any account that may SELECT all of it
            conn.rollback()
            found = information_schema_columns(conn, table, schema)
            if not found or not _selectable(conn, table, schema):
                raise exc from None
            cached[key] = found
    return cached[key]


def _selectable(conn: Connection, table: str, schema: str | None) -> bool:
    """Whether the account may read every column (information_schema lists only the columns
    it has a privilege on, so a column-level grant must not pass for the whole table)."""
    probe = sa.select(sa.text("*")).select_from(sa.table(table, schema=schema)).limit(0)
    try:
        conn.execute(probe).close()
    except sa.exc.DBAPIError:
        conn.rollback()
        return False
    return True


def information_schema_columns(conn: Connection, table: str, schema: str | None) -> list[Any]:
    """A table's or view's columns from ``information_schema.columns`` as ``get_columns`` gives
    them (name, type, nullable); [] when the server has no such view or shows nothing."""
    cols = sa.table(
        "columns",
        sa.column("table_schema"),
        sa.column("table_name"),
        sa.column("column_name"),
        sa.column("data_type"),
        sa.column("is_nullable"),
        sa.column("ordinal_position"),
        schema="information_schema",
    )
    owner = schema if schema is not None else conn.dialect.default_schema_name
    where = cols.c.table_name == table
    if owner is not None:
        where &= cols.c.table_schema == owner
    query = (
        sa.select(cols.c.column_name, cols.c.data_type, cols.c.is_nullable)
        .where(where)
        .order_by(cols.c.ordinal_position)
    )
    try:
        rows = conn.execute(query).all()
    except sa.exc.DBAPIError:
        conn.rollback()
        return []
    types = getattr(conn.dialect, "ischema_names", {})
    return [
        {
            "name": str(name),
            "type": types.get(str(data_type).lower(), sa.types.NullType)(),
            "nullable": str(nullable).upper() == "YES",
        }
        for name, data_type, nullable in rows
    ]


def arrow_schema(
    conn: Connection,
    mapping: MappingSpec,
    columns: list[str],
    instants: frozenset[str],
    dialect: Any,
    reflected: list[Any] | None = None,
) -> dict[str, pa.DataType | None]:
    """Column -> Arrow type from the source catalog (a custom query: as its driver reports);
    ``reflected``: the table's columns already reflected (else taken from ``catalog_columns``)."""
    out: dict[str, pa.DataType | None] = dict.fromkeys(columns)
    if mapping.source.query is not None:
        return out
    if reflected is None:
        try:
            reflected = catalog_columns(conn, mapping.source.table or "", mapping.source.schema_)
        except sa.exc.SQLAlchemyError:
            return out
    types = {c["name"]: c["type"] for c in reflected}
    for name in columns:
        if name in types:
            out[name] = arrow_type(types[name], name in instants or dialect.is_instant(types[name]))
    return out


def _settle(type_: pa.DataType) -> pa.DataType:
    """A driver-reported type as booking-etl keeps it: microsecond timestamps and times."""
    if pa.types.is_timestamp(type_):
        return pa.timestamp(US, tz="UTC" if type_.tz else None)
    if pa.types.is_time(type_):
        return pa.time64(US)
    if pa.types.is_date64(type_):
        return pa.date32()
    if pa.types.is_integer(type_):
        return pa.int64()
    if pa.types.is_large_string(type_) or pa.types.is_string_view(type_):
        return pa.string()
    return type_


def conform(batch: pa.RecordBatch, wanted: dict[str, pa.DataType | None]) -> pa.RecordBatch:
    """``batch`` cast to the explicit schema (names as in the SELECT, types from the catalog)."""
    arrays, fields = [], []
    for name, array in zip(wanted, batch.columns, strict=True):
        if isinstance(array.type, pa.ExtensionType):  # ADBC's opaque PostgreSQL types
            array = array.storage
        target = wanted[name] or _settle(array.type)
        if (
            array.type != target
            and pa.types.is_timestamp(target)
            and pa.types.is_string(array.type)
        ):
            parsed = _text_times(array, target)
            if parsed is None:  # the raw text goes on: the mapping reports it as bad_timestamp
                target = pa.string()
            else:
                array = parsed
        elif array.type != target and pa.types.is_date(target) and pa.types.is_string(array.type):
            try:
                array = array.cast(target)
            except pa.ArrowInvalid:  # a zero date: the text goes on, as for a timestamp
                target = pa.string()
        if array.type != target:
            if pa.types.is_timestamp(target) and target.tz and pa.types.is_timestamp(array.type):
                if array.type.tz is None:  # an instant the driver hands over as naive UTC
                    array = pc.assume_timezone(array, "UTC")
            elif (
                pa.types.is_timestamp(target)
                and not target.tz
                and pa.types.is_timestamp(array.type)
                and array.type.tz
            ):
                array = pc.local_timestamp(array.cast(pa.timestamp(array.type.unit, tz="UTC")))
            array = array.cast(target, safe=not pa.types.is_timestamp(target))
        arrays.append(array)
        fields.append(pa.field(name, target))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _text_times(array: pa.Array, target: pa.TimestampType) -> pa.Array | None:
    """Times a driver hands over as text (SQL Server datetimeoffset through ODBC:
    '2024-01-01 00:00:00.1234567 +01:00'), parsed as ISO 8601; an offset converts to UTC.

    None if any value does not parse: the column then stays text, as the SQLAlchemy path hands
    it over, and the mapping reports those rows as ``bad_timestamp`` with the raw value (never a
    silent NULL)."""
    import pandas as pd

    text = pd.Series(array.to_pandas(), dtype="string")
    parsed = pd.to_datetime(text, format="ISO8601", utc=target.tz is not None, errors="coerce")
    if (parsed.isna() & text.notna()).any():
        return None
    return pa.array(parsed.dt.floor("us"), type=target, from_pandas=True)


# ---------------------------------------------------------------------------- the paths


class ArrowPath:
    """One native driver that streams a SELECT as Arrow record batches."""

    name: ClassVar[str]  # key named by SourceDialect.arrow_path
    title: ClassVar[str]  # for ``etl check``: "ADBC PostgreSQL driver"
    module: ClassVar[str]  # what is imported
    package: ClassVar[str]  # what pip installs
    binds: ClassVar[bool] = True  # values as bound parameters (else rendered literals)

    def version(self) -> str | None:
        """The installed driver's version, None if it cannot be imported."""
        try:
            importlib.import_module(self.module)
        except ImportError:
            return None
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    def unusable(self, source: Source) -> str | None:
        """Why this driver cannot honour the connector as configured (None: it can)."""
        return None

    def statement(
        self, query: sa.Select[Any], conn: Connection, dialect: SourceDialect
    ) -> tuple[str, Any]:
        """The exact SQL text the driver gets and its parameters (``dialect``: the source's)."""
        if not self.binds:
            compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            return str(compiled), None
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        params = compiled.params
        if compiled.positiontup is not None:
            return str(compiled), [params[name] for name in compiled.positiontup]
        return str(compiled), dict(params)

    def batches(
        self, source: Source, sql: str, params: Any, batch_size: int, probe: str | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Open a read-only session of the native driver, verify it with ``probe`` (the dialect's
        read-only question, None: none) before reading, stream, close."""
        raise NotImplementedError


class AdbcPostgres(ArrowPath):
    """ADBC's libpq driver: COPY (query) TO STDOUT BINARY, read as it arrives.

    A query with bound parameters is executed as a prepared statement whose whole result libpq
    holds in memory; values are therefore rendered as literals so the COPY path streams.
    """

    name = "adbc_postgresql"
    title = "ADBC PostgreSQL driver"
    module = "adbc_driver_postgresql.dbapi"
    package = "adbc-driver-postgresql"
    binds = False

    def uri(self, source: Source) -> str:
        url = source.engine.url
        query = {k: v for k, v in url.query.items() if isinstance(v, str)}
        query["options"] = (
            "-c default_transaction_read_only=on -c TimeZone=UTC -c standard_conforming_strings=on"
        )
        version = source.engine.dialect.server_version_info  # known once SQLAlchemy connected
        if version is not None and version >= (11,):  # no JIT for a plain scan (see on_connect)
            query["options"] += " -c jit=off"
        query.setdefault("application_name", "booking-etl")
        seconds = max(1, int(source.spec.connect_timeout.total_seconds()))
        query.setdefault("connect_timeout", str(seconds))
        # libpq decodes %XX in a URI but not '+': every part percent-encoded
        login = urllib.parse.quote(url.username or "", safe="")
        if url.password:
            login += ":" + urllib.parse.quote(url.password, safe="")
        host = url.host or ""
        host = f"[{host}]" if ":" in host else host
        port = f":{url.port}" if url.port else ""
        database = urllib.parse.quote(url.database or "", safe="")
        options = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        return f"postgresql://{login}@{host}{port}/{database}?{options}"

    def statement(
        self, query: sa.Select[Any], conn: Connection, dialect: SourceDialect
    ) -> tuple[str, Any]:
        # the session pins standard_conforming_strings=on: a fresh dialect renders for that
        fresh = _pg.psycopg.dialect()
        compiled = query.compile(dialect=fresh, compile_kwargs={"literal_binds": True})
        return str(compiled), None

    def batches(
        self, source: Source, sql: str, params: Any, batch_size: int, probe: str | None = None
    ) -> Iterator[pa.RecordBatch]:
        import adbc_driver_postgresql.dbapi as adbc

        with adbc.connect(self.uri(source)) as conn, conn.cursor() as cursor:
            cursor.adbc_statement.set_options(
                **{"adbc.postgresql.batch_size_hint_bytes": str(max(1, batch_size) * 256)}
            )
            if probe is not None:
                cursor.execute(probe)
                row = cursor.fetchone()
                check_read_only(source, probe, row[0] if row else None, "before the extraction")
            cursor.execute(sql)
            reader = cursor.fetch_record_batch()
            yield from _rebatch(reader, batch_size)
            conn.rollback()


class ConnectorXMySQL(ArrowPath):
    """connectorx's MySQL source (binary protocol), ``return_type="arrow_stream"``.

    connectorx binds no parameters: values are rendered by the live connection's dialect, which
    knows whether the server reads backslashes as escapes (sql_mode NO_BACKSLASH_ESCAPES).
    """

    name = "connectorx_mysql"
    title = "connectorx"
    module = "connectorx"
    package = "connectorx"
    binds = False

    def unusable(self, source: Source) -> str | None:
        # TLS and other PyMySQL options have no connectorx equivalent: never read without them
        extra = sorted(k for k in source.engine.url.query if k != "charset")
        return f"connectorx takes no connection options ({', '.join(extra)})" if extra else None

    def uri(self, source: Source) -> str:
        url = source.engine.url
        # the connector's connect_timeout bounds each TCP connect; connectorx's connection pool
        # still retries a failing connect for about 30 s (r2d2's timeout, not settable from here)
        ms = max(1000, int(source.spec.connect_timeout.total_seconds() * 1000))
        return sa.URL.create(
            "mysql",
            username=url.username,
            password=url.password,
            host=url.host or "localhost",
            port=url.port or source.dialect.default_port,
            database=url.database,
            query={"tcp_connect_timeout_ms": str(ms)},
        ).render_as_string(hide_password=False)

    def statement(
        self, query: sa.Select[Any], conn: Connection, dialect: SourceDialect
    ) -> tuple[str, Any]:
        """The SELECT with its date and time columns guarded against zero dates (``zero_guard``)."""
        sql, _ = super().statement(query, conn, dialect)
        return zero_guard(sql, conn), None

    def batches(
        self, source: Source, sql: str, params: Any, batch_size: int, probe: str | None = None
    ) -> Iterator[pa.RecordBatch]:
        import connectorx

        _second_connection(source)
        if probe is not None:
            # connectorx runs nothing of ours after its pre-execution statements: the session's
            # read-only flag comes along as an extra column, checked on every batch
            value = probe.removeprefix("SELECT ")
            sql = f"SELECT etl_q.*, {value} AS etl_read_only FROM ({sql}) AS etl_q"
        reader = connectorx.read_sql(
            self.uri(source),
            sql,
            return_type="arrow_stream",
            batch_size=batch_size,
            pre_execution_query=list(source.dialect.session_statements),
        )
        for batch in _rebatch(reader, batch_size):
            if probe is not None:
                flags = batch.column(batch.num_columns - 1)
                if batch.num_rows and not pc.all(pc.equal(flags.cast(pa.int64()), 1)).as_py():
                    check_read_only(source, probe, 0, "during the extraction")
                batch = batch.drop_columns(["etl_read_only"])
            yield zero_restore(batch)


#: MySQL's column types that can hold a zero date (DATE, DATETIME, TIMESTAMP, NEWDATE)
_DATE_TYPES = frozenset({7, 10, 12, 14})
_RAW = "etl_zero_"


def zero_guard(sql: str, conn: Connection) -> str:
    """``sql`` with MySQL/MariaDB zero dates kept from connectorx, which panics on them.

    A zero date is one with a zero year, month or day (``0000-00-00``, ``2026-00-15``). Each
    DATE, DATETIME or TIMESTAMP column of the SELECT (its types from a ``LIMIT 0`` run on the
    SQLAlchemy connection) is handed over with such values as NULL, followed by a text column
    ``etl_zero_<n>`` holding them; ``zero_restore`` puts them back. ``sql`` itself when it has
    no such column (or the describing query fails: connectorx then reports why)."""
    try:
        described = conn.exec_driver_sql(f"SELECT * FROM ({sql}) AS etl_q LIMIT 0")
    except sa.exc.DBAPIError:
        conn.rollback()
        return sql
    columns = [(str(d[0]), d[1]) for d in described.cursor.description or ()]
    described.close()
    if not any(code in _DATE_TYPES for _, code in columns):
        return sql
    quote = conn.dialect.identifier_preparer.quote
    selected = []
    for name, code in columns:
        column = f"etl_q.{quote(name)}"
        if code not in _DATE_TYPES:
            selected.append(column)
            continue
        zero = f"(YEAR({column}) = 0 OR MONTH({column}) = 0 OR DAYOFMONTH({column}) = 0)"
        selected.append(f"IF({zero}, NULL, {column}) AS {quote(name)}")
        selected.append(f"IF({zero}, CAST({column} AS CHAR), NULL) AS {_RAW}{len(selected)}")
    return f"SELECT {', '.join(selected)} FROM ({sql}) AS etl_q"


def zero_restore(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch read with ``zero_guard``'s SELECT as the original SELECT's columns: a date/time
    column that held a zero date becomes text (ISO 8601 where it held a value), so the mapping
    reports it, or reads a sentinel, exactly as it does the text PyMySQL hands over for it."""
    names = batch.schema.names
    if not any(name.startswith(_RAW) for name in names):
        return batch
    arrays: list[pa.Array] = []
    kept: list[str] = []
    for name, array in zip(names, batch.columns, strict=True):
        if not name.startswith(_RAW):
            arrays.append(array)
            kept.append(name)
            continue
        if array.null_count == len(array):
            continue
        value = arrays[-1]
        shape = "%Y-%m-%d" if pa.types.is_date(value.type) else "%Y-%m-%d %H:%M:%S"
        arrays[-1] = pc.if_else(
            pc.is_valid(array), array.cast(pa.string()), pc.strftime(value, shape)
        )
    return pa.RecordBatch.from_arrays(arrays, names=kept)


class ArrowOdbc(ArrowPath):
    """arrow-odbc: the ODBC driver's block cursor filled straight into Arrow buffers.

    The connection string is the one SQLAlchemy's pyodbc connector builds from the connector.
    Parameters are bound (arrow-odbc sends every value as text; the server converts it). For a
    dialect with ``odbc_typed_times`` (SQL Server) date/time parameters are cast in the statement
    (``_typed_times``), so the conversion does not depend on the session's DATEFORMAT or language.
    """

    name = "arrow_odbc"
    title = "arrow-odbc"
    module = "arrow_odbc"
    package = "arrow-odbc"

    def statement(
        self, query: sa.Select[Any], conn: Connection, dialect: SourceDialect
    ) -> tuple[str, Any]:
        typed = dialect.odbc_typed_times
        if typed:  # the server converts a typed value, never text it reads by DATEFORMAT
            query = _typed_times(query)
        sql, params = super().statement(query, conn, dialect)
        return sql, [_odbc_text(v, iso=typed) for v in params or []]

    def batches(
        self, source: Source, sql: str, params: Any, batch_size: int, probe: str | None = None
    ) -> Iterator[pa.RecordBatch]:
        import arrow_odbc

        args, _ = source.engine.dialect.create_connect_args(source.engine.url)
        seconds = max(1, int(source.spec.connect_timeout.total_seconds()))
        # autocommit: the session statements apply to every following (one-statement) transaction
        conn = arrow_odbc.connect(str(args[0]), login_timeout_sec=seconds, autocommit=True)
        reader = None
        try:
            for statement in source.dialect.session_statements:  # below the guard: fixed
                conn.execute(statement)
            if probe is not None:
                answer = conn.read_arrow_batches(probe)
                values = [v for b in answer for v in b.column(0).to_pylist()]
                del answer
                check_read_only(source, probe, values[0] if values else None, "before reading")
            reader = conn.read_arrow_batches(
                sql,
                batch_size=batch_size,
                parameters=params or None,
                max_text_size=TEXT_LIMIT,
                max_binary_size=TEXT_LIMIT,
            )
            yield from reader
        finally:
            # on early exit or failure too, not when the garbage collector gets to the frame
            # (an exception's traceback keeps it alive): the statement, then the connection
            del reader
            _close_odbc(conn)


class OracleDataFrames(ArrowPath):
    """python-oracledb ``Connection.fetch_df_batches``: Arrow-backed frames, bound parameters."""

    name = "oracledb"
    title = "python-oracledb fetch_df_batches"
    module = "oracledb"
    package = "oracledb"

    def batches(
        self, source: Source, sql: str, params: Any, batch_size: int, probe: str | None = None
    ) -> Iterator[pa.RecordBatch]:
        import oracledb

        # as the engine connects: its URL's arguments plus the connector's connect_args
        # (tcp_connect_timeout); thick mode, if the engine uses it, is process-wide already
        args, kwargs = source.engine.dialect.create_connect_args(source.engine.url)
        kwargs = {**kwargs, **source.dialect.dbapi_connect_args(source.spec, source.engine.url)}
        with oracledb.connect(*args, **kwargs) as conn:
            if source.dialect.begin_statement is not None:
                cursor = conn.cursor()
                cursor.execute(source.dialect.begin_statement)  # SET TRANSACTION READ ONLY
                cursor.close()
            frames = conn.fetch_df_batches(
                sql, parameters=params, size=batch_size, fetch_decimals=True
            )
            for frame in frames:
                yield from pa.table(frame).to_batches()
            conn.rollback()


PATHS: dict[str, ArrowPath] = {
    p.name: p for p in (AdbcPostgres(), ConnectorXMySQL(), ArrowOdbc(), OracleDataFrames())
}


def _close_odbc(conn: Any) -> None:
    """Free an arrow-odbc connection now (its ``__del__`` frees it only when collected)."""
    from arrow_odbc.arrow_odbc import lib

    handle, conn.handle = conn.handle, None
    if handle:
        lib.arrow_odbc_connection_free(handle)


def _rebatch(reader: Any, batch_size: int) -> Iterator[pa.RecordBatch]:
    """Batches of at most ``batch_size`` rows, whatever size the driver chose."""
    for batch in reader:
        for start in range(0, batch.num_rows, batch_size):
            yield batch.slice(start, batch_size)


class _SqlType(sa.types.UserDefinedType[Any]):
    """A type rendered exactly as named in a CAST."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **kw: Any) -> str:
        return self.name


def _typed_times(query: sa.Select[Any]) -> sa.Select[Any]:
    """``query`` with every date/time parameter as ``CAST(? AS datetime2(7))`` (``date``,
    ``time(7)``), for SQL Server through arrow-odbc, which sends every value as text.

    Text converted to ``datetime``/``smalldatetime`` is read by the session's DATEFORMAT
    ('2024-03-04 05:06:07' is year-day-month for a German login) and refused with more than three
    fractional digits (error 241); text cast to ``datetime2`` in ISO 8601 form is read the same
    under every language and keeps 7 digits. The column is then compared with a ``datetime2``:
    exact for a datetime2 column, and for a ``datetime`` column the window is a range (``>=``,
    ``<``) that SQL Server 2016+'s exact datetime-to-datetime2 comparison does not change.
    """
    from sqlalchemy.sql import visitors
    from sqlalchemy.sql.elements import BindParameter

    def typed(element: Any) -> Any:
        if not isinstance(element, BindParameter) or element.expanding:
            return None
        value = element.value
        if isinstance(value, datetime.datetime):
            kind = "datetime2(7)"
        elif isinstance(value, datetime.date):
            kind = "date"  # SQLAlchemy's Date renders DATETIME before it knows the server
        elif isinstance(value, datetime.time):
            kind = "time(7)"
        else:
            return None
        return sa.cast(element._clone(), _SqlType(kind))

    return visitors.replacement_traverse(query, {}, typed)  # type: ignore[call-overload]


def _odbc_text(value: Any, iso: bool = False) -> str | None:
    """A parameter as the text arrow-odbc sends: times in ISO 8601 ('T' with ``iso``), a whole
    float or decimal as an integer ('1', not '1.0', which an int column refuses: error 245)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep="T" if iso else " ")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    whole = isinstance(value, float | decimal.Decimal) and math.isfinite(value)
    if whole and value == int(value) and abs(value) < 2**63:
        return str(int(value))
    return str(value)


class ArrowPathFailed(SourceError):
    """The native driver failed for a reason other than the query (connect, setup, protocol)."""


def _second_connection(source: Source) -> None:
    """Open and close one more connection with the connector's ``connect_timeout`` before
    connectorx opens its own: connectorx holds the GIL while its pool retries a refused connect
    for about 30 s (an account limited to one connection, a server at max_connections), which
    would freeze every thread of the process (other jobs, the daemon's signal handling). A
    refusal here fails the Arrow path at once (``fetch: auto`` falls back to SQLAlchemy)."""
    try:
        raw = source.engine.raw_connection()
    except Exception as exc:  # the DBAPI driver's own error: the pool does not wrap it
        cause = getattr(exc, "orig", None) or exc
        text = redact((str(cause).strip() or type(cause).__name__).splitlines()[0], source.secrets)
        raise ArrowPathFailed(
            f"{source.where}: the Arrow path (connectorx) needs a second connection and the "
            f"server refused it: {text}",
            hint="allow the account two connections (MAX_USER_CONNECTIONS), or set "
            "'fetch: sqlalchemy' in the connector",
        ) from None
    raw.invalidate()  # closed for real, not kept in the pool: its slot is connectorx's now


# ---------------------------------------------------------------------------- the choice


@dataclass(frozen=True)
class FetchChoice:
    """How a connector's rows are read: an Arrow path, or SQLAlchemy and why."""

    path: ArrowPath | None
    reason: str  # "ADBC PostgreSQL driver 1.13.0" or "arrow-odbc not installed"

    @property
    def label(self) -> str:
        """``arrow (ADBC PostgreSQL driver 1.13.0)`` / ``sqlalchemy (SQLite: no Arrow path)``."""
        return f"{'arrow' if self.path else 'sqlalchemy'} ({self.reason})"


def choose(source: Source) -> FetchChoice:
    """The extraction path for ``source`` by its ``fetch`` option, its dialect and its URL.

    ``fetch: arrow`` with no usable driver is a configuration error; ``auto`` falls back.
    """
    mode = source.spec.fetch
    if mode == "sqlalchemy":
        return FetchChoice(None, f"fetch: sqlalchemy in {source.where}")
    key = source.dialect.arrow_path(source.engine.url)
    if key is None:
        why = f"{source.dialect.product} has no Arrow path"
    else:
        path = PATHS[key]
        version = path.version()
        unusable = path.unusable(source) if version is not None else None
        if version is not None and unusable is None:
            return FetchChoice(path, f"{path.title} {version}")
        extra = extra_for(path.module)
        why = unusable or f"{path.package} not installed" + (
            f" ({install_command(extra)})" if extra else ""
        )
    if mode == "arrow":
        raise SourceError(
            f"{source.where}: fetch: arrow, but {why}",
            hint="install the driver, or set fetch: auto",
        )
    return FetchChoice(None, why)


def record_batches(
    source: Source,
    choice: FetchChoice,
    conn: Connection,
    query: sa.Select[Any],
    wanted: dict[str, pa.DataType | None],
    batch_size: int,
    where: str,
) -> Iterator[pa.RecordBatch]:
    """Stream ``query`` through the chosen Arrow path, each batch cast to ``wanted``.

    Raises DataError for a missing table or column, PermissionDenied, ReadOnlyViolation, and
    SourceError otherwise; no message carries the password.
    """
    path = choice.path
    assert path is not None
    sql, params = path.statement(query, conn, source.dialect)
    why = refusal(sql, source.dialect.name)
    if why is not None:
        raise ReadOnlyViolation(
            f"refused to send {why} to a source database: booking-etl only reads from sources"
        )
    log.debug("source query (%s):\n%s", choice.label, redact(sql, source.secrets))
    probe = source.dialect.read_only_probe(conn)
    try:
        for batch in path.batches(source, sql, params, batch_size, probe):
            if batch.num_rows:
                yield conform(batch, wanted)
    except (DataError, SourceError):
        raise
    except BaseException as exc:  # connectorx raises a PanicException, a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
            raise
        raise _explain(source, path, exc, where) from None


def _explain(source: Source, path: ArrowPath, exc: BaseException, where: str) -> Exception:
    secrets = [*source.secrets, *_encoded(source.engine.url.password)]
    text = redact(str(exc).strip() or type(exc).__name__, secrets)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = lines[0] if lines else type(exc).__name__
    for line in lines:  # libpq puts the server's ERROR on the next line
        if "ERROR:" in line:
            message = line[line.index("ERROR:") :]
            break
    kind = source.dialect.classify(exc)
    if kind == "permission":
        return source.denied(exc)
    if kind in ("table", "column"):
        return DataError(f"{where}: the source refused the query: {message}")
    return ArrowPathFailed(
        f"{where}: reading from the source failed ({path.title}): {message}",
        hint="'fetch: sqlalchemy' in the connector reads through the DBAPI driver instead",
    )


def _encoded(password: str | None) -> list[str]:
    """The forms a native driver's URI or message may carry the password in: as is,
    percent-encoded (the ADBC URI), form-encoded, and as SQLAlchemy renders it in a URL (the
    connectorx URI: ':@/%' encoded, a space or '+' left as is)."""
    if not password:
        return []
    rendered = sa.URL.create("x", username="u", password=password, host="h").render_as_string(
        hide_password=False
    )
    in_url = rendered[len("x://u:") : -len("@h")]
    forms = [
        password,
        urllib.parse.quote(password, safe=""),
        urllib.parse.quote(password),
        urllib.parse.quote_plus(password),
        in_url,
    ]
    return list(dict.fromkeys(forms))
