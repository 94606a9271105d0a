"""The SELECT a mapping and a window stand for, and streaming it out of the source in batches.

Every name from YAML is a quoted identifier and every value a bound parameter. The window predicate
compares the raw source column (no function around it), so the source can use its index.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.config.models import ColumnSpec, ConnectorSpec, FilterSpec, MappingSpec
from etl.config.queries import check_custom_query
from etl.errors import DataError, SourceError
from etl.sources.reader import SHAPES, Points, Shape, Spans, Window
from etl.sources.sql.arrow import (
    ArrowPathFailed,
    FetchChoice,
    arrow_schema,
    catalog_columns,
    choose,
    record_batches,
)
from etl.sources.sql.engine import Source, open_source

log = logging.getLogger(__name__)

#: The path that actually delivered the rows of the latest ``read_frames`` in this context
#: (``fetch: auto`` may fall back to SQLAlchemy): what ``etl preview`` reports.

_SORTABLE = ["%Y", "%m", "%d", "%H", "%M", "%S", "%f"]


def _needed_columns(mapping: MappingSpec) -> list[str]:
    names: list[str] = []
    for spec in mapping.column_specs().values():
        names += spec.source_columns()
    names += [f.column for f in mapping.fields.values()]
    names += [f.column for f in mapping.filters]
    return list(dict.fromkeys(names))


def _selected_columns(mapping: MappingSpec) -> list[str]:
    names: list[str] = []
    for spec in mapping.column_specs().values():
        names += spec.source_columns()
    names += [
        f.column for f in mapping.fields.values()
    ]  # run attributes (etl/pipeline/attributes.py)
    return list(dict.fromkeys(names))


def _query_text(sql: str) -> sa.TextClause:
    """A custom query as a subquery body: no trailing ';', and ':name' is text, not a parameter."""
    body = sql.strip().rstrip(";").rstrip()
    return sa.text(re.sub(r"(?<!:):(?!:)", r"\:", body))


def _from_clause(mapping: MappingSpec) -> sa.FromClause:
    cols: list[sa.ColumnClause[Any]] = [sa.column(name) for name in _needed_columns(mapping)]
    if mapping.source.query is not None:
        return _query_text(mapping.source.query).columns(*cols).subquery("src")
    return sa.table(mapping.source.table or "", *cols, schema=mapping.source.schema_)


class _Text(sa.types.TypeDecorator[Any]):
    """A text filter value bound without a type, so the server reads it as the column's type
    (``'1'`` against an integer column), as it does the literal the Arrow paths render; typed
    as VARCHAR (psycopg's ``::VARCHAR``), PostgreSQL refuses ``integer <> character varying``."""

    impl = sa.types.NullType
    cache_ok = True

    def process_literal_param(self, value: Any, dialect: sa.Dialect) -> str:
        render = dialect.type_descriptor(sa.String()).literal_processor(dialect)
        assert render is not None
        return str(render(value))


def _value(value: Any) -> sa.BindParameter[Any]:
    return sa.bindparam(None, value, type_=_Text() if isinstance(value, str) else None)


def _values(column: str, values: list[Any]) -> sa.BindParameter[Any]:
    text = all(isinstance(v, str) for v in values)
    # named after the column, as col.in_() names it: STATUS_1_1 in the previewed parameters
    return sa.bindparam(
        column, values, unique=True, expanding=True, type_=_Text() if text else None
    )


def _filter(src: sa.FromClause, spec: FilterSpec) -> sa.ColumnElement[bool]:
    """One filter as SQL. ``ne`` and ``not_in`` keep the rows whose column is NULL (they are the
    complement of ``eq`` and ``in``: a NULL flag is "not cancelled"); every other comparison
    drops them, as SQL does (docs/configuration.md, filters)."""
    col = src.c[spec.column]
    value = spec.operand
    match spec.op:
        case "eq":
            return col == _value(value)
        case "ne":
            return sa.or_(col != _value(value), col.is_(None))
        case "lt":
            return col < _value(value)
        case "le":
            return col <= _value(value)
        case "gt":
            return col > _value(value)
        case "ge":
            return col >= _value(value)
        case "in":
            return col.in_(_values(spec.column, value))
        case "not_in":
            return sa.or_(col.not_in(_values(spec.column, value)), col.is_(None))
        case _:
            return col.is_(None) if value else col.is_not(None)


def sortable(fmt: str) -> bool:
    """Whether text in ``fmt`` sorts like the time it stands for (``%Y-%m-%d %H:%M``: yes)."""
    directives = re.findall(r"%[a-zA-Z]", fmt)
    return bool(directives) and directives == _SORTABLE[: len(directives)]


def _bound(spec: ColumnSpec, value: datetime, text_datetimes: bool = False) -> Any:
    """The bind value comparing a raw column with a local time, or None if it cannot be done."""
    if spec.column is not None:
        if spec.format:
            return value.strftime(spec.format) if sortable(spec.format) else None
        if text_datetimes:  # 'YYYY-MM-DD' sorts before any text time of that day, ' ' or 'T'
            return value.strftime("%Y-%m-%d")
        return value
    if spec.date_format:
        return value.strftime(spec.date_format) if sortable(spec.date_format) else None
    return value.date()


def _range(
    src: sa.FromClause,
    spec: ColumnSpec,
    lo: datetime | None,
    hi: datetime | None,
    utc: tuple[datetime, datetime] | None = None,
    text_datetimes: bool = False,
    prefix: str = "window",
) -> list[sa.ColumnElement[bool]]:
    """``col >= lo AND col < hi`` on the raw column (the date column for date + time).

    ``text_datetimes`` (SQLite): a column without ``format`` may hold text times with either
    separator, so the bounds widen to whole days; rows are cut exactly after mapping.
    """
    text_datetimes = text_datetimes and spec.column is not None and not spec.format
    name = spec.column if spec.column is not None else spec.date
    if name is None:
        return []
    if utc is not None and spec.column is not None:  # an instant column: compare in UTC
        lo = utc[0] if lo is not None else None
        hi = utc[1] if hi is not None else None
    col = src.c[name]
    out: list[sa.ColumnElement[bool]] = []
    if lo is not None:
        bound = _bound(spec, lo, text_datetimes)
        if bound is not None:
            out.append(col >= sa.bindparam(f"{prefix}_lo", bound))
    if hi is not None:
        bound = _bound(spec, hi + timedelta(days=1) if text_datetimes else hi, text_datetimes)
        if bound is not None:
            upper = isinstance(bound, date) and not isinstance(bound, datetime)
            upper = upper or (spec.column is None)  # a date column: the whole last day
            out.append(
                col <= sa.bindparam(f"{prefix}_hi", bound)
                if upper
                else col < sa.bindparam(f"{prefix}_hi", bound)
            )
    return out


def _utc(
    spec: ColumnSpec, instants: frozenset[str], lo: datetime, hi: datetime
) -> tuple[datetime, datetime] | None:
    return (lo, hi) if spec.column is not None and spec.column in instants else None


def instant_columns(conn: Connection, mapping: MappingSpec, dialect: Any) -> frozenset[str]:
    """The mapped columns whose type holds instants (from the catalog; a custom query: none)."""
    if mapping.source.query is not None:
        return frozenset()
    try:
        columns = catalog_columns(conn, mapping.source.table or "", mapping.source.schema_)
    except sa.exc.SQLAlchemyError:
        return frozenset()
    return frozenset(c["name"] for c in columns if dialect.is_instant(c["type"]))


def build_query(
    mapping: MappingSpec,
    window: Window | None,
    zone: ZoneInfo,
    instants: frozenset[str] = frozenset(),
    text_datetimes: bool = False,
    shape: Shape | None = None,
) -> sa.Select[Any]:
    """The SELECT for ``mapping`` over ``window`` (None: the whole table), for rows of ``shape``
    (None: the shape of the mapping's structure).

    Columns named in ``instants`` hold instants (timestamptz, MySQL TIMESTAMP, datetimeoffset):
    they are compared with UTC bounds instead of the plant's wall clock.
    """
    src = _from_clause(mapping)
    query = sa.select(*[src.c[name] for name in _selected_columns(mapping)])
    for spec in mapping.filters:
        query = query.where(_filter(src, spec))
    if window is None:
        return query
    if shape is None:
        shape = SHAPES[mapping.structure]
    cond = _in_window(src, mapping.column_specs(), shape, window, zone, instants, text_datetimes)
    return query if cond is None else query.where(cond)


def _in_window(
    src: sa.FromClause,
    specs: dict[str, ColumnSpec],
    shape: Shape,
    window: Window,
    zone: ZoneInfo,
    instants: frozenset[str],
    text_datetimes: bool,
) -> sa.ColumnElement[bool] | None:
    """The WHERE condition for the rows of ``shape`` that matter to ``window`` (None: all)."""
    lo, hi = window.local(zone)
    utc_lo, utc_hi = window.local(ZoneInfo("UTC"))
    if isinstance(shape, Points):
        ts = specs[shape.at]
        bounds = _range(src, ts, lo, hi, _utc(ts, instants, utc_lo, utc_hi), text_datetimes)
        if not bounds:
            return None
        # rows without a timestamp (or date) are re-read every run and reported as anomalies
        return sa.or_(sa.and_(*bounds), src.c[ts.column or ts.date or ""].is_(None))
    assert isinstance(shape, Spans)
    start, end = specs[shape.start], specs[shape.end]
    start_utc = _utc(start, instants, utc_lo, utc_hi)
    before_hi = _range(src, start, None, hi, start_utc, text_datetimes)
    from_lo = _range(src, start, lo, None, start_utc, text_datetimes)
    end_from_lo = _range(src, end, lo, None, _utc(end, instants, utc_lo, utc_hi), text_datetimes)
    updated = specs.get(shape.changed) if shape.changed else None
    changed: list[sa.ColumnElement[bool]] = []
    if updated is not None:  # rows changed since lo, however old (corrections)
        changed = _range(
            src,
            updated,
            lo,
            None,
            _utc(updated, instants, utc_lo, utc_hi),
            text_datetimes,
            prefix="changed",
        )
    if not (before_hi and from_lo and end_from_lo and start.column and end.column):
        return None
    recent = [sa.and_(*from_lo), src.c[end.column].is_(None), sa.and_(*end_from_lo)]
    if changed:
        recent.append(sa.and_(*changed))
    return sa.or_(sa.and_(*before_hi, sa.or_(*recent)), src.c[start.column].is_(None))


def withdrawn_query(
    mapping: MappingSpec,
    window: Window,
    zone: ZoneInfo,
    instants: frozenset[str] = frozenset(),
    text_datetimes: bool = False,
    shape: Shape | None = None,
) -> sa.Select[Any] | None:
    """The rows of an order table (spans of ``shape``) changed since the window's ``lo`` (``updated_at``) that now
    fail one of the mapping's filters (an order set to DELETED, moved to another plant): their
    runs leave the store, however old they are. None when the mapping has no ``updated_at``, no
    filters, or an ``updated_at`` the source cannot compare (text in an unsortable format)."""
    shape = shape or SHAPES[mapping.structure]
    if not isinstance(shape, Spans) or shape.changed is None or not mapping.filters:
        return None
    updated = mapping.column_specs().get(shape.changed)
    if updated is None:
        return None
    src = _from_clause(mapping)
    changed = _changed_since(src, updated, window, zone, instants, text_datetimes)
    if not changed:
        return None
    passes = sa.and_(*[_filter(src, spec) for spec in mapping.filters])
    # a NULL comparison fails the filter too: CASE, not NOT(...), so NULL counts as failing
    fails = sa.case((passes, 1), else_=0) == 0
    return sa.select(*[src.c[name] for name in _selected_columns(mapping)]).where(
        sa.and_(*changed), fails
    )


def _changed_since(
    src: sa.FromClause,
    updated: ColumnSpec,
    window: Window,
    zone: ZoneInfo,
    instants: frozenset[str],
    text_datetimes: bool,
) -> list[sa.ColumnElement[bool]]:
    """The conditions "``updated`` at or after the window's ``lo``" (empty: not comparable)."""
    lo, _ = window.local(zone)
    utc_lo, utc_hi = window.local(ZoneInfo("UTC"))
    return _range(
        src,
        updated,
        lo,
        None,
        _utc(updated, instants, utc_lo, utc_hi),
        text_datetimes,
        prefix="changed",
    )


def changed_bookings_query(
    mapping: MappingSpec,
    window: Window,
    zone: ZoneInfo,
    instants: frozenset[str] = frozenset(),
    text_datetimes: bool = False,
    shape: Shape | None = None,
) -> sa.Select[Any] | None:
    """The timestamps of the booking rows (points of ``shape``) changed since the window's ``lo`` (``updated_at``),
    whether or not they pass the filters: a cancellation flag set on an old booking, a corrected
    time. The run reaches back to the oldest of them. None without ``updated_at`` (or one the
    source cannot compare)."""
    shape = shape or SHAPES[mapping.structure]
    if not isinstance(shape, Points) or shape.changed is None:
        return None
    specs = mapping.column_specs()
    updated = specs.get(shape.changed)
    if updated is None:
        return None
    src = _from_clause(mapping)
    changed = _changed_since(src, updated, window, zone, instants, text_datetimes)
    if not changed:
        return None
    names = specs[shape.at].source_columns()
    return sa.select(*[src.c[name] for name in names]).where(*changed)


#: rows read per run whose text time does not have its format's shape (reported as anomalies)
MALFORMED_LIMIT = 10_000
_WIDTHS = {"Y": 4, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2, "y": 2, "j": 3}


def text_shape(fmt: str) -> str | None:
    """A LIKE pattern every text written in the strptime ``fmt`` matches (``%Y-%m-%d`` ->
    ``____-__-__``; ``%f``: any digits), or None when the format has no fixed shape."""
    out = []
    for literal, directive in re.findall(r"([^%]*)(?:%(.))?", fmt):
        if "_" in literal:
            return None
        out.append(literal)
        if directive == "f":
            out.append("%")
        elif directive in _WIDTHS:
            out.append("_" * _WIDTHS[directive])
        elif directive:
            return None
    return "".join(out)


def malformed_query(
    mapping: MappingSpec,
    window: Window,
    zone: ZoneInfo,
    instants: frozenset[str] = frozenset(),
    text_datetimes: bool = False,
    shape: Shape | None = None,
) -> sa.Select[Any] | None:
    """The rows the mapping's filters select whose text time (a ``format`` or ``date_format``
    the window compares as text) does not have the format's shape: garbage, '', blanks, another
    format. The window's text comparison never reads them; this bounded query (at most
    ``MALFORMED_LIMIT`` rows, once per run) does, so they are reported. Rows the window reads
    anyway are left out. None when the time is not compared as formatted text."""
    shape = shape or SHAPES[mapping.structure]
    specs = mapping.column_specs()
    spec = specs[shape.at if isinstance(shape, Points) else shape.start]
    fmt = spec.format if spec.column is not None else spec.date_format
    name = spec.column if spec.column is not None else spec.date
    if not fmt or name is None or not sortable(fmt):
        return None
    pattern = text_shape(fmt)
    if pattern is None:
        return None
    src = _from_clause(mapping)
    query = sa.select(*[src.c[n] for n in _selected_columns(mapping)])
    for filt in mapping.filters:
        query = query.where(_filter(src, filt))
    # as text: a date_format column may be an integer (20261203), and LIKE wants text
    text = sa.cast(src.c[name], sa.String(64))
    query = query.where(text.not_like(sa.bindparam("malformed_shape", pattern)))
    read = _in_window(src, specs, shape, window, zone, instants, text_datetimes)
    if read is not None:  # CASE, not NOT(...): a NULL condition means "not read" too
        query = query.where(sa.case((read, 1), else_=0) == 0)
    return query.limit(MALFORMED_LIMIT)


def compiled_sql(query: sa.Select[Any], dialect: sa.Dialect) -> str:
    """The SQL text as the given dialect sends it (parameters as placeholders)."""
    return str(query.compile(dialect=dialect))


def read_batches(
    conn: Connection, query: sa.Select[Any], batch_size: int, where: str
) -> Iterator[pd.DataFrame]:
    """Stream the query's rows as DataFrames of at most ``batch_size`` rows."""
    log.debug("source query:\n%s", compiled_sql(query, conn.dialect))
    try:
        result = conn.execution_options(stream_results=True, max_row_buffer=batch_size).execute(
            query
        )
        columns = list(result.keys())
        for rows in result.partitions(batch_size):
            yield pd.DataFrame.from_records(rows, columns=columns, coerce_float=False)
        if not columns:
            return
    except sa.exc.ProgrammingError as exc:
        raise DataError(f"{where}: the source refused the query: {_first_line(exc)}") from None
    except sa.exc.OperationalError as exc:
        message = _first_line(exc)
        if "no such column" in message or "no such table" in message or "Unknown column" in message:
            raise DataError(f"{where}: {message}") from None
        raise SourceError(f"{where}: reading from the source failed: {message}") from None
    except sa.exc.DBAPIError as exc:
        raise SourceError(f"{where}: reading from the source failed: {_first_line(exc)}") from None


def read_frames(
    source: Source,
    conn: Connection,
    mapping: MappingSpec,
    query: sa.Select[Any],
    instants: frozenset[str],
    batch_size: int,
    where: str,
    choice: FetchChoice | None = None,
    delivered: list[FetchChoice] | None = None,
) -> Iterator[pd.DataFrame]:
    """The query's rows as DataFrames of at most ``batch_size`` rows, through the connector's
    extraction path: Arrow record batches (explicit schema) where the dialect has a driver for
    it, else SQLAlchemy. Frames from Arrow carry the types the SQLAlchemy path's values have
    (datetime64[us] / UTC-aware for instants, text, Int64-like floats, Decimal, date, time).

    ``delivered`` (when given) receives the path the rows actually came through, which is not the
    chosen one when ``fetch: auto`` fell back to SQLAlchemy."""
    source.verify_read_only(conn, "before the extraction")
    choice = choice or choose(source)
    through = delivered if delivered is not None else []
    through.append(choice)
    if choice.path is None:
        log.debug("%s: fetch: %s", source.where, choice.label)
        yield from read_batches(conn, query, batch_size, where)
        return
    wanted = arrow_schema(conn, mapping, _selected_columns(mapping), instants, source.dialect)
    started = False
    try:
        for batch in record_batches(source, choice, conn, query, wanted, batch_size, where):
            started = True
            yield batch.to_pandas(date_as_object=True)
    except ArrowPathFailed as exc:
        if started or source.spec.fetch == "arrow":
            raise
        # nothing read yet: the same rows through SQLAlchemy (its failures say what they say today)
        log.warning("%s; reading through SQLAlchemy instead", exc.message)
        through.append(FetchChoice(None, f"{choice.reason} failed, fetch: auto fell back"))
        yield from read_batches(conn, query, batch_size, where)


def _first_line(exc: sa.exc.DBAPIError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def empty_frame(mapping: MappingSpec) -> pd.DataFrame:
    """A frame with the selected columns and no rows."""
    return pd.DataFrame({name: pd.Series([], dtype=object) for name in _selected_columns(mapping)})


def check_columns(conn: Connection, mapping: MappingSpec, where: str) -> list[str]:
    """Fail early, naming the column and listing what exists, if a mapped column is missing."""
    if mapping.source.query is not None:
        probe = sa.select(sa.text("*")).select_from(
            _query_text(mapping.source.query).columns().subquery("src")
        )
        try:
            available = list(conn.execute(probe.where(sa.false())).keys())
        except sa.exc.DBAPIError as exc:
            raise DataError(f"{where}: source.query failed: {_first_line(exc)}") from None
    else:
        inspector = sa.inspect(conn)
        table, schema = mapping.source.table or "", mapping.source.schema_
        try:
            available = [c["name"] for c in catalog_columns(conn, table, schema)]
        except sa.exc.NoSuchTableError:
            names = inspector.get_table_names(schema=schema) + inspector.get_view_names(
                schema=schema
            )
            raise DataError(
                f"{where}: source.table: table {mapping.source.describe()!r} not found "
                f"(tables: {', '.join(sorted(names)[:30]) or 'none'})"
            ) from None
        except sa.exc.DBAPIError as exc:
            raise SourceError(
                f"{where}: cannot inspect {mapping.source.describe()}: {_first_line(exc)}"
            ) from None
    missing = [name for name in _needed_columns(mapping) if name not in available]
    if missing:
        lower = {a.lower(): a for a in available}
        details = []
        for name in missing:
            hint = f" (did you mean {lower[name.lower()]!r}?)" if name.lower() in lower else ""
            details.append(f"column {name!r} not found in {mapping.source.describe()}{hint}")
        raise DataError(f"{where}: {'; '.join(details)} (columns: {', '.join(available)})")
    return available


class SqlRequest:
    """A SELECT over one reach, streamed through the connector's extraction path."""

    def __init__(self, reading: SqlReading, query: sa.Select[Any], arrow: bool = True) -> None:
        self._reading = reading
        self.query = query
        self.arrow = arrow  # False: through SQLAlchemy whatever the connector's fetch

    def batches(self, size: int) -> Iterator[pd.DataFrame]:
        """The rows in frames of at most ``size`` rows (see ``read_frames``)."""
        reading = self._reading
        if not self.arrow:
            return read_batches(reading.conn, self.query, size, reading.where)
        return read_frames(
            reading.source,
            reading.conn,
            reading.mapping,
            self.query,
            reading.instants,
            size,
            reading.where,
            delivered=reading.delivered,
        )


class SqlReading:
    """A connection to the job's source database for one run."""

    def __init__(self, reader: SqlReader, source: Source, conn: Connection) -> None:
        self.source, self.conn = source, conn
        self.mapping, self.where = reader.mapping, reader.where
        self.zone = source.spec.zone
        self.delivered = reader.delivered
        self.instants = instant_columns(conn, reader.mapping, source.dialect)

    def now_utc(self) -> datetime:
        """The database's clock."""
        return self.source.now_utc(self.conn)

    def request(self, reach: Window, shape: Shape) -> SqlRequest:
        """The SELECT for the rows of ``shape`` that matter to ``reach``."""
        text_datetimes = self.source.dialect.datetimes_as_text
        query = build_query(self.mapping, reach, self.zone, self.instants, text_datetimes, shape)
        return SqlRequest(self, query)

    def changed(self, window: Window, shape: Shape) -> SqlRequest | None:
        """The times of the rows changed since ``window.lo`` (``changed_bookings_query``)."""
        return self._extra(changed_bookings_query, window, shape)

    def withdrawn(self, window: Window, shape: Shape) -> SqlRequest | None:
        """The rows changed since ``window.lo`` that now fail a filter (``withdrawn_query``)."""
        return self._extra(withdrawn_query, window, shape)

    def malformed(self, reach: Window, shape: Shape) -> SqlRequest | None:
        """The rows whose text time has the wrong shape (``malformed_query``)."""
        return self._extra(malformed_query, reach, shape)

    def _extra(
        self, build: Callable[..., sa.Select[Any] | None], window: Window, shape: Shape
    ) -> SqlRequest | None:
        text_datetimes = self.source.dialect.datetimes_as_text
        query = build(self.mapping, window, self.zone, self.instants, text_datetimes, shape)
        return None if query is None else SqlRequest(self, query, arrow=False)


class SqlReader:
    """A job's rows from a SQL table (or the mapping's custom query) through its connector.

    ``open()`` checks the custom query, connects, and checks that the mapped columns exist;
    ``delivered`` collects the extraction paths the rows actually came through (``fetch: auto``
    may fall back to SQLAlchemy): what ``etl preview`` reports.
    """

    def __init__(
        self,
        connector_name: str,
        connector: ConnectorSpec,
        mapping: MappingSpec,
        where: str,
        root: Path,
        secrets: list[str],
    ) -> None:
        self.connector_name, self.connector = connector_name, connector
        self.mapping, self.where = mapping, where
        self.root, self.secrets = root, secrets
        self.delivered: list[FetchChoice] = []

    @contextmanager
    def open(self) -> Iterator[SqlReading]:
        """The source, connected and checked; closed when the block ends."""
        if self.mapping.source.query is not None:
            check_custom_query(
                self.mapping.source.query,
                self.connector.sql_dialect,
                self.where,
                self.mapping.source.allow_functions,
            )
        source = open_source(self.connector_name, self.connector, self.root, self.secrets)
        try:
            with source.connect() as conn:
                check_columns(conn, self.mapping, self.where)
                yield SqlReading(self, source, conn)
        finally:
            source.close()

    @property
    def fetched(self) -> FetchChoice | None:
        """The path the latest rows came through (None: nothing read)."""
        return self.delivered[-1] if self.delivered else None
