"""``etl discover CONNECTOR``: what tables are there, and what mapping would read one of them?

Listing uses the catalog (SQLAlchemy's inspector) and the dialect's cheap row estimates. For one
table it reads a bounded sample and decides from the values (names only as a second signal):
column profiles (profile.py), roles and filters (roles.py), event codes scored by the real fold
(codes.py), and whether naive times are plant-local or UTC (timezone.py). The proposal is a
mapping as YAML with one comment per decision, plus a profile of the timestamp column for
incremental windows (NULLs, duplicates, range, real precision, index).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Connection

from etl.commands.discover.codes import CodeGuess, guess_codes
from etl.commands.discover.profile import Column, profile_columns, time_fields
from etl.commands.discover.roles import FilterProposal, Roles, decide
from etl.commands.discover.timezone import ZoneEvidence, changes, judge, warning, zone_to_test
from etl.commands.discover.vocabulary import name_score
from etl.config.models import PLACEHOLDERS, ColumnSpec, DstPolicy, Project
from etl.errors import DataError, UsageError
from etl.pipeline.mapping import sentinel_rows, timestamps
from etl.sources.sql.arrow import catalog_columns
from etl.sources.sql.engine import Source, open_connector
from etl.sources.sql.query import sortable

SAMPLE_ROWS = 10_000  # the newest rows, read when the window column is indexed
PROFILE_ROWS = 20_000  # the first rows as stored: what the roles are decided on
DAY_ROWS = 20_000  # rows of one DST change day, for the time zone evidence
FULL_PROFILE_ROWS = 1_000_000  # above this count, the timestamp profile uses the sample only
COUNT_LIMIT = FULL_PROFILE_ROWS  # rows counted exactly where the catalog has no estimate
SYSTEM_SCHEMAS = frozenset(
    ["information_schema", "pg_catalog", "pg_toast", "mysql", "performance_schema", "sys"]
)


@dataclass
class ColumnInfo:
    """One column as the catalog describes it."""

    name: str
    type: str
    nullable: bool
    sa_type: Any = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {"name": self.name, "type": self.type, "nullable": self.nullable}


@dataclass
class TableInfo:
    """A table or view with its estimated rows and columns."""

    schema: str | None
    name: str
    kind: str  # "table" or "view"
    rows: int | None
    columns: list[ColumnInfo]

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "schema": self.schema,
            "name": self.name,
            "kind": self.kind,
            "rows": self.rows,
            "columns": [c.as_dict() for c in self.columns],
        }


@dataclass
class Listing:
    """``etl discover CONNECTOR`` without ``--table``."""

    connector: str
    schema: str | None
    rows_source: str
    tables: list[TableInfo]
    other_schemas: list[tuple[str, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "connector": self.connector,
            "schema": self.schema,
            "rows_source": self.rows_source,
            "tables": [t.as_dict() for t in self.tables],
            "other_schemas": [{"schema": s, "tables": n} for s, n in self.other_schemas],
        }


@dataclass
class Profile:
    """What the timestamp column holds, judged for incremental windows."""

    columns: list[str]
    rows: int
    nulls: int
    duplicate_values: int
    duplicate_rows: int
    minimum: str | None
    maximum: str | None
    precision: str
    type_note: str | None
    scope: str  # "the whole table" or "the newest N rows"
    warnings: list[str] = field(default_factory=list)
    range_note: str | None = None  # how minimum/maximum were found when not by the column's order


@dataclass
class Proposal:
    """``etl discover CONNECTOR --table T``: the table, the proposed mapping and its profile."""

    table: TableInfo
    structure: str
    columns: dict[str, ColumnSpec]
    reasons: dict[str, str]
    events: dict[str, list[Any]]
    event_notes: dict[str, str]
    code_counts: list[tuple[Any, int]]
    sample_rows: int
    profile: Profile | None
    notes: list[str] = field(default_factory=list)
    filters: list[FilterProposal] = field(default_factory=list)
    guess: CodeGuess | None = None
    zone: ZoneEvidence | None = None
    warnings: list[str] = field(default_factory=list)
    profiled_rows: int = 0  # the first rows as stored, on which the roles were decided

    def placeholders(self) -> list[str]:
        """The keys where the proposal holds a placeholder (nothing recognised): the mapping
        does not load until they are named."""
        out = [
            f"columns.{name}"
            for name, spec in self.columns.items()
            if spec.value in PLACEHOLDERS or spec.column in PLACEHOLDERS
        ]
        out += [
            f"events.{kind}"
            for kind, codes in self.events.items()
            if any(str(c) in PLACEHOLDERS for c in codes)
        ]
        return out

    @property
    def filter_hints(self) -> list[tuple[str, list[tuple[Any, int]]]]:
        """(column, its most frequent values) for every proposed filter."""
        return [(f.column, f.values) for f in self.filters]

    def yaml(self, command: str) -> str:
        """The proposed mapping as commented YAML that ``etl validate`` accepts."""
        return render_yaml(self, command)


# ---------------------------------------------------------------------------- listing


def list_tables(project: Project, connector: str, schema: str | None = None) -> Listing:
    """Every table and view (in ``schema``) with estimated rows and columns; for a file drop
    or an HTTP API its tables (files.tables, http.endpoints) with a first look at each."""
    from etl.commands.discover import records

    if records.is_records_kind(project, connector):
        records.refuse_schema(schema, connector)
        listing: Listing = records.list_sources(project, connector)
        return listing
    source = open_connector(project, connector)
    try:
        with source.connect() as conn:
            tables = _tables(source, conn, schema)
            others = _schemas_with_tables(conn) if not tables else []  # also for a typo
            return Listing(
                connector=connector,
                schema=schema,
                rows_source=source.dialect.row_estimate_source,
                tables=tables,
                other_schemas=others,
            )
    finally:
        source.close()


def _tables(source: Source, conn: Connection, schema: str | None) -> list[TableInfo]:
    inspector = sa.inspect(conn)
    try:
        tables = inspector.get_table_names(schema=schema)
        views = inspector.get_view_names(schema=schema)
    except sa.exc.DBAPIError as exc:
        raise DataError(
            f"{source.where}: cannot list the tables of schema {schema!r}: {_first_line(exc)}",
            hint="check the schema name; 'etl discover' without --schema uses the account's default",
        ) from None
    try:
        estimates = source.dialect.row_estimates(conn, schema)
    except sa.exc.DBAPIError:
        conn.rollback()
        estimates = {}
    columns = _columns(conn, inspector, schema, tables + views)
    out = [
        TableInfo(
            schema,
            name,
            "table",
            estimates[name] if name in estimates else _bounded_count(conn, name, schema),
            columns.get(name, []),
        )
        for name in tables
    ]
    out += [TableInfo(schema, name, "view", None, columns.get(name, [])) for name in views]
    return sorted(out, key=lambda t: t.name.lower())


def _columns(
    conn: Connection, inspector: sa.Inspector, schema: str | None, names: Sequence[str]
) -> dict[str, list[ColumnInfo]]:
    out: dict[str, list[ColumnInfo]] = {}
    try:
        multi = inspector.get_multi_columns(schema=schema, kind=sa.engine.ObjectKind.ANY)
        for (_, name), cols in multi.items():
            out[name] = [_column_info(c) for c in cols]
    except (NotImplementedError, sa.exc.DBAPIError):
        conn.rollback()
        for name in names:
            out[name] = reflect_columns(conn, name, schema)
    return out


def reflect_columns(conn: Connection, name: str, schema: str | None) -> list[ColumnInfo]:
    """A table's or view's columns as ``etl run`` reflects them (fetch.catalog_columns: the
    inspector, else ``information_schema`` for a MariaDB view read without SHOW VIEW); []."""
    try:
        return [_column_info(c) for c in catalog_columns(conn, name, schema)]
    except (NotImplementedError, sa.exc.DBAPIError):
        conn.rollback()
        return []


def _bounded_count(conn: Connection, name: str, schema: str | None) -> int | None:
    """Exact rows up to COUNT_LIMIT (a table never ANALYZEd has no estimate); None above."""
    table = sa.table(name, schema=schema)
    head = (
        sa.select(sa.literal(1).label("one")).select_from(table).limit(COUNT_LIMIT + 1).subquery()
    )
    try:
        n = int(conn.execute(sa.select(sa.func.count()).select_from(head)).scalar_one())
    except sa.exc.DBAPIError:
        conn.rollback()
        return None
    return n if n <= COUNT_LIMIT else None


def _schema_names(conn: Connection) -> list[str]:
    """The schemas the account sees, system schemas left out ([] where the catalog says none)."""
    try:
        names = sa.inspect(conn).get_schema_names()
    except (NotImplementedError, sa.exc.DBAPIError):
        conn.rollback()
        return []
    return [n for n in names if n.lower() not in SYSTEM_SCHEMAS]


def _schemas_holding(conn: Connection, name: str, searched: str | None) -> list[str]:
    """The other schemas with a table or view called ``name`` (case-blind)."""
    inspector = sa.inspect(conn)
    out = []
    for schema in _schema_names(conn):
        if schema == searched:
            continue
        try:
            names = inspector.get_table_names(schema=schema) + inspector.get_view_names(
                schema=schema
            )
        except sa.exc.DBAPIError:
            conn.rollback()
            continue
        if any(n.lower() == name.lower() for n in names):
            out.append(schema)
    return out


def _schemas_with_tables(conn: Connection) -> list[tuple[str, int]]:
    """(schema, tables) for every schema the account sees that has tables or views."""
    inspector = sa.inspect(conn)
    out = []
    try:
        for name in inspector.get_schema_names():
            if name.lower() in SYSTEM_SCHEMAS:
                continue
            try:
                n = len(inspector.get_table_names(schema=name)) + len(
                    inspector.get_view_names(schema=name)
                )
            except sa.exc.DBAPIError:
                conn.rollback()
                continue
            if n:
                out.append((name, n))
    except (NotImplementedError, sa.exc.DBAPIError):
        conn.rollback()
    return out


def _column_info(column: Any) -> ColumnInfo:
    type_ = column["type"]
    try:
        text = str(type_)
    except Exception:  # a type SQLAlchemy cannot render: its class name will do
        text = type(type_).__name__
    return ColumnInfo(column["name"], text, bool(column.get("nullable", True)), type_)


def format_listing(listing: Listing) -> str:
    """One line per table: name, kind, estimated rows, columns with types."""
    if any(t.kind in ("files", "endpoint") for t in listing.tables):
        return _format_records(listing)
    where = f"schema {listing.schema}" if listing.schema else "the default schema"
    tables = [t for t in listing.tables if t.kind == "table"]
    views = [t for t in listing.tables if t.kind == "view"]
    lines = [
        f"connectors/{listing.connector}.yaml: {len(tables)} table(s), {len(views)} view(s) "
        f"in {where} (rows: {listing.rows_source})"
    ]
    width = max((len(t.name) for t in listing.tables), default=0)
    for table in listing.tables:
        rows = "?" if table.rows is None else f"{table.rows:,}"
        cols = ", ".join(f"{c.name} {c.type}" for c in table.columns[:12])
        if len(table.columns) > 12:
            cols += f", ... (+{len(table.columns) - 12})"
        lines.append(f"  {table.name:<{width}}  {table.kind:<5} {rows:>12} rows  {cols}")
    if listing.tables:
        lines.append("next: etl discover CONNECTOR --table NAME proposes a mapping for one table")
    elif listing.other_schemas:
        empty = "the default schema" if listing.schema is None else f"schema {listing.schema!r}"
        lines.append(f"{empty} is empty or does not exist; schemas with tables:")
        lines += [f"  {name}  {n} table(s) or view(s)" for name, n in listing.other_schemas]
        lines.append("next: etl discover CONNECTOR --schema NAME")
    return "\n".join(lines)


def _format_records(listing: Listing) -> str:
    """The tables of a file drop or an API, with the records of a first look at each."""
    what = "file table(s)" if listing.tables[0].kind == "files" else "endpoint(s)"
    lines = [
        f"connectors/{listing.connector}.yaml: {len(listing.tables)} {what} "
        f"(rows: {listing.rows_source})"
    ]
    width = max(len(t.name) for t in listing.tables)
    for table in listing.tables:
        cols = ", ".join(f"{c.name} {c.type}" for c in table.columns[:12])
        if len(table.columns) > 12:
            cols += f", ... (+{len(table.columns) - 12})"
        lines.append(f"  {table.name:<{width}}  {table.rows or 0:>8,} rows  {cols}")
    lines.append("next: etl discover CONNECTOR --table NAME proposes a mapping for one table")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- one table


def propose(project: Project, connector: str, table: str, schema: str | None = None) -> Proposal:
    """Sample ``table`` and propose a mapping for it, with a profile of its timestamp (a file
    drop's table or an API's endpoint: a sample of its records, etl/commands/discover/records.py)."""
    from etl.commands.discover import records

    if records.is_records_kind(project, connector):
        records.refuse_schema(schema, connector)
        proposal: Proposal = records.propose_records(project, connector, table)
        return proposal
    source = open_connector(project, connector)
    try:
        with source.connect() as conn:
            info = _find_table(source, conn, table, schema)
            return _propose(source, conn, info)
    finally:
        source.close()


def write_job(
    project: Project,
    connector: str,
    table: str,
    name: str,
    schema: str | None = None,
    command: str | None = None,
) -> tuple[Path, Path]:
    """Propose a mapping for ``table`` and write it as ``mappings/NAME.yaml`` with a job
    ``jobs/NAME.yaml`` that reads it through ``connector``; never overwrites either file."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise UsageError(f"--job {name!r}: use letters, digits, '_', '-' or '.' for a job name")
    mapping = project.root / "mappings" / f"{name}.yaml"
    job = project.root / "jobs" / f"{name}.yaml"
    for path in (mapping, job):
        if path.exists():
            raise UsageError(f"{path} exists; not overwritten", hint="choose another --job name")
    command = command or f"etl discover {connector} --table {table} --job {name}"
    proposal = propose(project, connector, table, schema)
    text = proposal.yaml(command)
    mapping.parent.mkdir(parents=True, exist_ok=True)
    job.parent.mkdir(parents=True, exist_ok=True)
    mapping.write_text(text)
    header = f"# written by `{command}`\nconnector: {connector}\nmapping: {name}\n"
    left = proposal.placeholders()
    if left:  # never run by 'etl run --all' before someone names them
        header += (
            f"# disabled: mappings/{name}.yaml has placeholders ({', '.join(left)}); name them, "
            "then set enabled: true\nenabled: false\n"
        )
    job.write_text(header)
    return mapping, job


def _find_table(source: Source, conn: Connection, name: str, schema: str | None) -> TableInfo:
    inspector = sa.inspect(conn)
    try:
        names = inspector.get_table_names(schema=schema) + inspector.get_view_names(schema=schema)
    except sa.exc.DBAPIError as exc:
        raise DataError(
            f"{source.where}: cannot list the tables of schema {schema!r}: {_first_line(exc)}"
        ) from None
    exact = [n for n in names if n == name] or [n for n in names if n.lower() == name.lower()]
    if not exact and schema is None and "." in name:
        # 'bde.v_buchung', as a SQL user writes it: schema and table
        first, _, rest = name.partition(".")
        schemas = _schema_names(conn)
        match = next((s for s in schemas if s == first), None) or next(
            (s for s in schemas if s.lower() == first.lower()), None
        )
        if match is not None:
            return _find_table(source, conn, rest, match)
    if not exact:
        listing = ", ".join(sorted(names)[:30]) or "none"
        elsewhere = _schemas_holding(conn, name, schema)
        hint = "'etl discover CONNECTOR' lists every table and view"
        if elsewhere:
            hint = (
                f"found in schema {', '.join(elsewhere)}: pass --schema {elsewhere[0]} "
                f"(or --table {elsewhere[0]}.{name})"
            )
        raise DataError(
            f"{source.where}: table {name!r} not found"
            + (f" in schema {schema!r}" if schema else "")
            + f" (tables: {listing})",
            hint=hint,
        )
    found = exact[0]
    kind = "view" if found in inspector.get_view_names(schema=schema) else "table"
    columns = reflect_columns(conn, found, schema)
    if not columns:
        raise DataError(
            f"{source.where}: cannot read the columns of {found!r}",
            hint="the account needs SELECT on it ('etl check' lists the GRANTs)",
        )
    rows: int | None = None
    if kind == "table":
        try:
            rows = source.dialect.row_estimates(conn, schema).get(found)
        except sa.exc.DBAPIError:
            conn.rollback()
    if rows is None:
        rows = _bounded_count(conn, found, schema)  # never ANALYZEd, or a view
    return TableInfo(schema, found, kind, rows, columns)


def _propose(source: Source, conn: Connection, info: TableInfo) -> Proposal:
    table = sa.table(info.name, *[sa.column(c.name) for c in info.columns], schema=info.schema)
    # a bounded read of the first rows as stored: no ORDER BY, so no scan of a big table
    probe = _read(conn, sa.select(table).limit(PROFILE_ROWS))
    profiled = profile_columns(probe, info.columns, _primary_key(conn, info))
    fields = time_fields(profiled, probe)
    roles = decide(profiled, fields, probe)
    structure, columns, reasons, notes = proposed_columns(roles, info, probe)
    window = columns["timestamp"] if structure == "bookings" else columns["start"]
    sample = probe
    if window.source_columns() and _indexed(conn, info, window.source_columns()[0]):
        sample = _sample(conn, table, columns, window)  # the newest rows, by the index
    guess = None
    events: dict[str, list[Any]] = {}
    if structure == "bookings":
        guess = guess_codes(sample, columns, source.spec.zone)
        events = guess.events
    profile = _profile(source, conn, table, info, window, sample, structure)
    span = (profile.minimum, profile.maximum) if profile is not None else (None, None)
    evidence, warnings = _zone(source, conn, info, table, window, probe, roles, profiled, span)
    return Proposal(
        table=info,
        structure=structure,
        columns=columns,
        reasons=reasons,
        events=events,
        event_notes=guess.notes if guess else {},
        code_counts=guess.counts if guess else [],
        sample_rows=len(sample),
        profile=profile,
        notes=notes,
        filters=roles.filters,
        guess=guess,
        zone=evidence,
        warnings=warnings,
        profiled_rows=len(probe),
    )


def proposed_columns(
    roles: Roles, info: TableInfo, probe: pd.DataFrame
) -> tuple[str, dict[str, ColumnSpec], dict[str, str], list[str]]:
    """(structure, the mapping's columns, why each, notes) from the decided roles, with a
    placeholder where no column was recognised, sentinels seen in an end column, and a note on
    blank-padded codes (shared by tables, file drops and HTTP APIs)."""
    structure = roles.structure
    notes = list(roles.notes)
    columns: dict[str, ColumnSpec] = {}
    reasons: dict[str, str] = {}
    wanted = (
        ("timestamp", "order_code", "machine_code", "product_code", "event")
        if structure == "bookings"
        else ("start", "end", "order_code", "machine_code", "product_code", "updated_at")
    )
    for name in wanted:
        decision = roles.decisions.get(name)
        if decision is not None:
            columns[name] = decision.spec
            reasons[name] = decision.comment()
        elif name not in ("product_code", "updated_at"):
            notes.append(f"no {name} column recognised: a placeholder is proposed")
            columns[name] = (
                ColumnSpec(column=PLACEHOLDERS[0])
                if name == "timestamp"
                else ColumnSpec(value=PLACEHOLDERS[0])
            )
            reasons[name] = "placeholder: name the column"
    if structure == "orders" and "end" in columns:
        found = _sentinels_seen(probe, columns["end"])
        if found:
            columns["end"] = columns["end"].model_copy(update={"sentinels": found})
            reasons["end"] = (
                f"{reasons.get('end', 'the end column')}; sampled ends {', '.join(found)} look "
                "like 'no end yet': read as open (remove them from sentinels if they are real)"
            )
    for name, spec in columns.items():
        if spec.column and name.endswith("_code"):
            values = probe.get(spec.column)
            if values is not None and _padded(values):
                reasons[name] += "; values are blank-padded (trimmed by default)"
    return structure, columns, reasons, notes


def _primary_key(conn: Connection, info: TableInfo) -> set[str]:
    if info.kind == "view":
        return set()
    try:
        pk = sa.inspect(conn).get_pk_constraint(info.name, schema=info.schema)
    except (NotImplementedError, sa.exc.DBAPIError):
        conn.rollback()
        return set()
    return set(pk.get("constrained_columns") or [])


def _zone(
    source: Source,
    conn: Connection,
    info: TableInfo,
    table: sa.TableClause,
    window: ColumnSpec,
    probe: pd.DataFrame,
    roles: Roles,
    profiled: list[Column],
    span: tuple[str | None, str | None],
) -> tuple[ZoneEvidence | None, list[str]]:
    """DST evidence from the probe plus the rows of each DST change day in the data's range."""
    if window.column is not None and window.column in probe:
        values = probe[window.column]
        if values.dropna().map(lambda v: getattr(v, "tzinfo", None) is not None).any():
            return None, []  # instants: no wall-clock question
    ref = roles.reference
    if ref is None or ref.spec != window:
        return None, []
    zone = zone_to_test(source.spec.zone)
    naive = ref.naive.dropna()
    frames = [naive]
    lo, hi = span
    first = _day(lo) or (naive.min().date() if len(naive) else None)
    last = _day(hi) or (naive.max().date() if len(naive) else None)
    # each DST day is a bounded range read: cheap with an index or on a small table
    cheap = not _big(info) or _indexed(conn, info, window.source_columns()[0])
    if first is not None and last is not None and cheap:
        for change in changes(zone, max(first, last - timedelta(days=800)), last)[-4:]:
            integer = any(c.numeric for c in profiled if c.name == window.date)
            day_rows = _day_rows(conn, table, window, change.day, integer)
            if day_rows is not None and not day_rows.empty:
                stamps = timestamps(day_rows, window, ZoneInfo("UTC"), DstPolicy())
                frames.append(stamps.dt.tz_convert(None))
    both = pd.concat(frames, ignore_index=True).drop_duplicates()
    evidence = judge(both, zone)
    message = warning(evidence, source.spec.zone)
    return evidence, [message] if message else []


def _day(text: str | None) -> date | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%d", "%Y%m%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y"):
        head = text.strip().split(" ")[0].split("T")[0]
        try:
            return datetime.strptime(head, fmt).date()
        except ValueError:
            continue
    return None


def _day_rows(
    conn: Connection, table: sa.TableClause, window: ColumnSpec, day: date, integer: bool
) -> pd.DataFrame | None:
    """The rows of one local day (bounded), by the raw window column(s)."""
    lo = datetime(day.year, day.month, day.day)
    hi = lo + timedelta(days=1)
    names = window.source_columns()
    first = table.c[names[0]]
    fmt = window.format if window.column is not None else window.date_format
    if window.column is not None:
        if fmt and not sortable(fmt):
            return None
        bounds: tuple[Any, Any] = (lo.strftime(fmt), hi.strftime(fmt)) if fmt else (lo, hi)
        where = sa.and_(first >= bounds[0], first < bounds[1])
    else:
        if fmt and not sortable(fmt):
            return None
        value: Any = day.strftime(fmt) if fmt else day
        if integer:
            value = int(value)
        where = first == value
    query = sa.select(*[table.c[n] for n in names]).where(where).limit(DAY_ROWS)
    try:
        return _read(conn, query)
    except sa.exc.DBAPIError:
        conn.rollback()
        return None


def _read(conn: Connection, query: sa.Select[Any]) -> pd.DataFrame:
    result = conn.execute(query)
    return pd.DataFrame.from_records(
        result.fetchall(), columns=list(result.keys()), coerce_float=False
    )


def _padded(values: pd.Series) -> bool:
    texts = [v for v in values.dropna() if isinstance(v, str)]
    return bool(texts) and any(v != v.strip() for v in texts)


#: "no date" values ERP systems write for an end that has not come yet
COMMON_SENTINELS = ("9999-12-31", "9999-01-01", "2999-12-31", "1900-01-01", "0001-01-01")


def _sentinels_seen(sample: pd.DataFrame, spec: ColumnSpec) -> list[str]:
    """The common "no date" values among the sampled values of an end column."""
    if spec.column is None or spec.column not in sample:
        return []
    values = sample[spec.column].dropna()
    if values.empty:
        return []
    probe = spec.model_copy(update={"sentinels": [*COMMON_SENTINELS, "infinity", "0000-00-00"]})
    frame = values.to_frame()
    seen = []
    for word in probe.sentinels or []:
        one = spec.model_copy(update={"sentinels": [word]})
        if sentinel_rows(frame, one).any():
            seen.append(word)
    return seen


def _sample(
    conn: Connection, table: sa.TableClause, columns: dict[str, ColumnSpec], window: ColumnSpec
) -> pd.DataFrame:
    """The newest ``SAMPLE_ROWS`` rows with a timestamp (by the raw window column(s))."""
    names = list(dict.fromkeys(n for spec in columns.values() for n in spec.source_columns()))
    order = [n for n in window.source_columns() if n in table.c]
    query = sa.select(*[table.c[n] for n in names])
    for name in order:
        query = query.where(table.c[name].is_not(None))
    query = query.order_by(*[table.c[n].desc() for n in order]).limit(SAMPLE_ROWS)
    return _read(conn, query)


# ---------------------------------------------------------------------------- the profile


def _profile(
    source: Source,
    conn: Connection,
    table: sa.TableClause,
    info: TableInfo,
    spec: ColumnSpec,
    sample: pd.DataFrame,
    structure: str = "bookings",
) -> Profile | None:
    names = [n for n in spec.source_columns() if n in table.c]
    if not names:
        return None
    cols = [table.c[n] for n in names]
    big = _big(info)
    warnings: list[str] = []
    any_null = sa.or_(*[c.is_(None) for c in cols])
    if big:
        scope = f"a sample of {len(sample):,} rows"
        rows, nulls = len(sample), 0
        shared = sample[names].dropna().duplicated(keep=False)
        dup_rows = int(shared.sum())
        dup_values = len(sample[names].dropna()[shared].drop_duplicates())
        warnings.append("large table or view: NULLs and duplicates were judged on the sample only")
    else:
        scope = "the whole table"
        try:
            rows, nulls = conn.execute(
                sa.select(
                    sa.func.count(), sa.func.sum(sa.case((any_null, 1), else_=0))
                ).select_from(table)
            ).one()
            groups = (
                sa.select(sa.func.count().label("n"))
                .select_from(table)
                .where(sa.not_(any_null))
                .group_by(*cols)
                .having(sa.func.count() > 1)
                .subquery()
            )
            dup_values, dup_rows = conn.execute(
                sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(groups.c.n), 0))
            ).one()
        except sa.exc.DBAPIError as exc:
            conn.rollback()
            raise DataError(
                f"{source.where}: profiling {info.name} failed: {_first_line(exc)}"
            ) from None
        rows, nulls, dup_values, dup_rows = (
            int(rows),
            int(nulls or 0),
            int(dup_values),
            int(dup_rows or 0),
        )
    stamps = pd.Series(dtype="datetime64[us, UTC]")
    try:
        stamps = timestamps(sample, spec, source.spec.zone, DstPolicy()).dropna()
    except (KeyError, ValueError, TypeError) as exc:
        warnings.append(f"the sampled values do not read as timestamps with this spec: {exc}")
    if big and not _indexed(conn, info, names[0]):
        # min/max would scan the whole table: the sample's range, said so
        lo = hi = None
        if not stamps.empty:
            raw = sample[names].dropna()
            ordered = raw.sort_values(names, kind="stable")
            lo = " ".join(str(v).strip() for v in ordered.iloc[0])
            hi = " ".join(str(v).strip() for v in ordered.iloc[-1])
        warnings.append("no index on it: the range is the sample's, not the table's")
    else:
        lo = _extreme(conn, table, names, ascending=True)
        hi = _extreme(conn, table, names, ascending=False)
    fmt = spec.format or spec.date_format
    range_note = None
    if fmt and not sortable(fmt) and lo is not None and hi is not None:
        # text that does not sort like time: its min/max are text order, not the time range
        parsed, scope_note = _parsed_range(conn, table, names, spec, sample, big)
        if parsed is not None:
            range_note = f"parsed with '{fmt}'{scope_note}; as text it sorts {lo} .. {hi}"
            lo, hi = parsed
    precision = _precision(stamps)
    column = next(c for c in info.columns if c.name == names[0])
    type_note = source.dialect.timestamp_note(column.sa_type) if spec.column else None
    if nulls:
        warnings.append(
            f"{nulls:,} row(s) ({nulls / max(rows, 1):.2%}) have no timestamp: they are re-read "
            "on every run and reported as bad_timestamp anomalies"
        )
    if structure == "bookings" and dup_rows and dup_rows / max(rows - nulls, 1) > 0.01:
        # the fold's order at equal times concerns bookings; an order row holds both times
        warnings.append(
            f"{dup_rows:,} rows share their timestamp with another row ({dup_values:,} values): "
            "at equal times the fold puts END before START; check that this is right for "
            "the source"
        )
    if precision in ("whole minutes", "whole days"):
        warnings.append(
            f"precision is {precision}: events of the same {precision.split()[-1][:-1]} "
            "cannot be ordered"
        )
    if spec.date is not None:
        warnings.append(
            f"date and time in separate columns: the window predicate compares {spec.date} "
            "(whole days); an index on it keeps syncs cheap"
        )
    if fmt and not sortable(fmt):
        warnings.append(
            f"text in '{fmt}' does not sort like time: the window cannot be pushed to the "
            "source, so every run reads the whole table"
        )
    if not _indexed(conn, info, names[0]):
        warnings.append(
            f"no index starts with {names[0]}: every sync scans the whole table to find its "
            "window (ask the DBA for one)"
        )
    if not stamps.empty:
        future = stamps.max() - pd.Timestamp(source.now_utc(conn))
        if future > pd.Timedelta(hours=1):
            warnings.append(
                f"the newest timestamp is {future} ahead of the server clock: terminal clocks "
                "or the connector's timezone may be wrong"
            )
    return Profile(
        columns=names,
        rows=rows,
        nulls=nulls,
        duplicate_values=dup_values,
        duplicate_rows=dup_rows,
        minimum=lo,
        maximum=hi,
        precision=precision,
        type_note=type_note,
        scope=scope,
        warnings=warnings,
        range_note=range_note,
    )


def _parsed_range(
    conn: Connection,
    table: sa.TableClause,
    names: list[str],
    spec: ColumnSpec,
    sample: pd.DataFrame,
    big: bool,
) -> tuple[tuple[str, str] | None, str]:
    """The earliest and latest time of a text timestamp, parsed: over every value of a table
    that is not big (at most FULL_PROFILE_ROWS), else over the sample."""
    frame, scope = sample, ", over the sample"
    if not big:
        cols = [table.c[n] for n in names]
        query = sa.select(*cols).where(*[c.is_not(None) for c in cols]).limit(FULL_PROFILE_ROWS)
        try:
            frame, scope = _read(conn, query), ""
        except sa.exc.DBAPIError:
            conn.rollback()
    try:
        stamps = timestamps(frame, spec, ZoneInfo("UTC"), DstPolicy()).dropna()
    except (KeyError, ValueError, TypeError):
        return None, scope
    if stamps.empty:
        return None, scope
    naive = stamps.dt.tz_convert(None)
    return (f"{naive.min():%Y-%m-%d %H:%M:%S}", f"{naive.max():%Y-%m-%d %H:%M:%S}"), scope


def _big(info: TableInfo) -> bool:
    """Too many rows (or unknown) for whole-table profile queries."""
    return info.rows is None or info.rows > FULL_PROFILE_ROWS


def _extreme(
    conn: Connection, table: sa.TableClause, names: list[str], ascending: bool
) -> str | None:
    cols = [table.c[n] for n in names]
    query = sa.select(*cols)
    for col in cols:
        query = query.where(col.is_not(None))
    query = query.order_by(*[c.asc() if ascending else c.desc() for c in cols]).limit(1)
    try:
        row = conn.execute(query).first()
    except sa.exc.DBAPIError:
        conn.rollback()
        return None
    return None if row is None else " ".join(str(v).strip() for v in row)


def _precision(stamps: pd.Series) -> str:
    """The finest unit the sampled timestamps use."""
    if stamps.empty:
        return "unknown (no values sampled)"
    values = pd.DatetimeIndex(stamps)
    micro = values.microsecond
    if (micro == 0).all():
        if (values.second == 0).all():
            if ((values.hour == 0) & (values.minute == 0)).all():
                return "whole days"
            return "whole minutes"
        return "whole seconds"
    if (micro % 1000 == 0).all():
        ms = micro // 1000
        if pd.Series(ms % 10).isin([0, 3, 7]).all() and (ms % 10 != 0).any():
            return "1/300 s ticks (SQL Server datetime)"
        return "milliseconds"
    return "microseconds"


def _indexed(conn: Connection, info: TableInfo, column: str) -> bool:
    if info.kind == "view":
        return True  # a view's indexes are its tables': nothing to say here
    inspector = sa.inspect(conn)
    try:
        indexes = inspector.get_indexes(info.name, schema=info.schema)
        pk = inspector.get_pk_constraint(info.name, schema=info.schema)
    except (NotImplementedError, sa.exc.DBAPIError):
        conn.rollback()
        return True
    firsts = [ix["column_names"][0] for ix in indexes if ix.get("column_names")]
    if pk and pk.get("constrained_columns"):
        firsts.append(pk["constrained_columns"][0])
    return any(f is not None and f.lower() == column.lower() for f in firsts)


# ---------------------------------------------------------------------------- YAML


def _y(value: Any) -> str:
    """A YAML scalar or flow collection."""
    text = yaml.safe_dump(
        value, default_flow_style=True, allow_unicode=True, width=1000, sort_keys=False
    ).strip()
    return text.removesuffix("...").strip()


def _spec_yaml(spec: ColumnSpec) -> str:
    if spec.column is not None and spec.format is None and not spec.sentinels:
        return _y(spec.column)
    data = {k: v for k, v in spec.model_dump(exclude_none=True).items()}
    return _y(data)


def render_yaml(proposal: Proposal, command: str) -> str:
    """The mapping file text: one comment per decision, with why and how sure."""
    info = proposal.table
    rows = "?" if info.rows is None else f"{info.rows:,}"
    out = [
        f"# Proposed by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%MZ}: check every line.",
        f"# {info.kind} {info.name}: ~{rows} rows, {len(info.columns)} columns: "
        + ", ".join(f"{c.name} {c.type}" for c in info.columns),
        f"# roles decided on {proposal.profiled_rows:,} sampled rows"
        + (
            f", event codes on the newest {proposal.sample_rows:,}"
            if proposal.sample_rows != proposal.profiled_rows
            else ""
        )
        + "; (NN%) is the confidence",
    ]
    out += [f"# note: {n}" for n in proposal.notes]
    if proposal.zone is not None:
        out.append(f"# time zone: {proposal.zone.line()}")
    out += [f"# WARNING: {w}" for w in proposal.warnings]
    profile = proposal.profile
    if profile is not None:
        cols = " + ".join(profile.columns)
        out += [
            f"# timestamp {cols}, profiled over {profile.scope}:",
            f"#   {profile.rows:,} rows, {profile.nulls:,} without a timestamp, "
            f"{profile.duplicate_values:,} values shared by {profile.duplicate_rows:,} rows",
            f"#   from {profile.minimum} to {profile.maximum}; precision: {profile.precision}",
        ]
        if profile.range_note:
            out.append(f"#   range {profile.range_note}")
        if profile.type_note:
            out.append(f"#   type: {profile.type_note}")
        out += [f"#   WARNING: {w}" for w in profile.warnings]
        if not profile.warnings:
            out.append("#   fit for incremental windows")
    out += [
        f"structure: {proposal.structure}",
        f"description: {_y(f'{info.name} (proposed by etl discover)')}",
        "source:",
        f"  table: {_y(info.name)}",
    ]
    if info.schema:
        out.append(f"  schema: {_y(info.schema)}")
    out.append("columns:")
    width = max(len(k) for k in proposal.columns)
    for name, spec in proposal.columns.items():
        why = proposal.reasons.get(name, "")
        comment = f"  # {why}" if why else ""
        out.append(f"  {name + ':':<{width + 1}} {_spec_yaml(spec)}{comment}")
    active = [f for f in proposal.filters if f.active]
    asked = [f for f in proposal.filters if not f.active]
    if active:
        out.append("filters:")
        for f in active:
            out.append(f"  # {f.column}: {f.why}")
            out.append(f"  - {_y(f.filter)}")
    if asked:
        if not active:
            out.append("# filters:")
        for f in asked:
            out.append(f"  # {f.column}: {f.why}")
            out.append(f"  # - {_y(f.filter)}")
    if proposal.structure == "bookings":
        total = sum(n for _, n in proposal.code_counts)
        listing = ", ".join(f"{_y(c)} ({n:,})" for c, n in proposal.code_counts[:20])
        out += [
            "events:",
            f"  # codes in {proposal.sample_rows:,} sampled rows ({total:,} with a code): {listing}",
        ]
        guess = proposal.guess
        if guess is not None and guess.sequences:
            out.append(
                f"  # scored by folding the sample ({guess.sequences:,} machine/order sequences)"
            )
        if guess is not None and guess.runner_up:
            out.append(f"  # runner-up: {guess.runner_up}")
        for kind in ("START", "END", "ignore"):
            codes = proposal.events.get(kind)
            if not codes:
                continue
            out.append(f"  {kind}: {_y(list(codes))}")
            for code in codes:
                note = proposal.event_notes.get(str(code))
                if note:
                    out.append(f"    # {_y(code)}: {note}")
        if guess is not None:
            for code in guess.unlisted:
                out.append(f"  # {_y(code)}: {proposal.event_notes.get(str(code), 'unlisted')}")
    return "\n".join(out) + "\n"


def _first_line(exc: sa.exc.DBAPIError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


__all__ = [
    "CodeGuess",
    "Listing",
    "Proposal",
    "format_listing",
    "guess_codes",
    "list_tables",
    "name_score",
    "propose",
    "write_job",
]
