"""``etl discover CONNECTOR``: what tables are there, and what mapping would read one of them?

Listing uses the catalog (SQLAlchemy's inspector) and the dialect's cheap row estimates. For one
table it samples rows, recognises columns by English and German names (and by their values: a
text column of ``06:12:33`` is a time of day), proposes a mapping as YAML with comments, guesses
which event codes start and end a run from where they stand in each order's bookings, and profiles
the timestamp column for incremental windows (NULLs, duplicates, range, real precision, index).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Connection

from .config import ColumnSpec, DstPolicy, Project, normalize_code
from .errors import DataError
from .extract import sortable
from .mapping import sentinel_rows, text_values, timestamps
from .source import Source, open_connector

SAMPLE_ROWS = 10_000
PROBE_ROWS = 200
FULL_PROFILE_ROWS = 5_000_000  # above this estimate, the profile uses the sample only

DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%Y%m%d%H%M%S",
    "%m/%d/%Y %H:%M:%S",
)
DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%d.%m.%Y", "%m/%d/%Y")
TIME_FORMATS = ("%H:%M:%S.%f", "%H:%M:%S", "%H:%M", "%H%M%S")


def _words(text: str) -> set[str]:
    return set(text.split())


# Role -> (whole names, name parts). Lower case; a part matches a token or the start of a name.
ROLES: dict[str, tuple[set[str], set[str]]] = {
    "order_code": (
        _words(
            "aufnr auftrag auftragsnr auftragsnummer aunr ba_nr fa_nr fanr fauf order "
            "order_code order_id order_no order_nr order_number orderno pa_nr prod_order "
            "production_order wo work_order workorder"
        ),
        _words("aufnr auftrag aunr fanr order wo"),
    ),
    "machine_code": (
        _words(
            "anlage arbeitsplatz arbpl equipment line linie machine machine_code machine_id "
            "machine_no masch masch_nr maschine maschnr resource ressource station wc "
            "work_center workcenter workplace"
        ),
        _words(
            "anlage arbeitsplatz arbpl equipment machine masch maschine resource ressource "
            "workcenter"
        ),
    ),
    "product_code": (
        _words(
            "art_nr artikel artikelnr artikelnummer artnr item item_no mat_nr material matnr "
            "part part_no partnumber product product_code product_id product_no produkt "
            "sachnr sku teil teilenr"
        ),
        _words("artikel artnr item material matnr product produkt sku"),
    ),
    "event": (
        _words(
            "action art booking_type bu_art buchungsart code ereignis event event_code kind "
            "event_type eventtype kenn kennung satzart state status type vorgang"
        ),
        _words("buchungsart ereignis event kenn satzart status vorgang"),
    ),
    "start": (
        _words(
            "begin beginn date_start ist_start start start_datum start_time start_ts "
            "start_zeit started_at startzeit von"
        ),
        _words("begin beginn start"),
    ),
    "end": (
        _words(
            "bis date_end end end_time end_ts ende ende_datum ende_zeit ended_at endzeit "
            "finish finished_at ist_ende stop"
        ),
        _words("end ende finish stop"),
    ),
    "timestamp": (
        _words(
            "booked_at buchungszeit buchzeitpunkt created created_at datetime event_time "
            "timestamp ts zeitpunkt zeitstempel"
        ),
        _words("buch date datum time timestamp zeit zeitstempel"),
    ),
    "date": (
        _words("buchdat buchungsdatum budat date datum day ersda isdd tag"),
        _words("dat date datum"),
    ),
    "time": (
        _words("buchzeit erzet isdz time uhrzeit uzeit zeit"),
        _words("time uhr zeit"),
    ),
}
# Columns worth a filter: plant, cancellation flags, status (first name part starts with these).
FILTER_WORDS = tuple(
    _words(
        "werk plant site mandt storno stokz stzhl cancel delet geloescht loekz status valid "
        "aktiv active"
    )
)
START_WORDS = _words("A AN ANM B B10 BEGIN BEGINN LOGIN LOGON ON R10 RUN S START STARTED ZZS")
END_WORDS = _words(
    "AB ABM B30 B40 DONE E END ENDE F FIN FINISHED FM LOGOFF LOGOUT OFF R40 STOP U UNT ZZE"
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

    def as_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        return {
            "connector": self.connector,
            "schema": self.schema,
            "rows_source": self.rows_source,
            "tables": [t.as_dict() for t in self.tables],
        }


@dataclass
class Temporal:
    """A column that holds times: its kind and, for text, the strptime format its values fit."""

    kind: str  # "datetime", "date", "time"
    format: str | None = None


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
    filter_hints: list[tuple[str, list[tuple[Any, int]]]] = field(default_factory=list)

    def yaml(self, command: str) -> str:
        """The proposed mapping as commented YAML that ``etl validate`` accepts."""
        return render_yaml(self, command)


# ---------------------------------------------------------------------------- listing


def list_tables(project: Project, connector: str, schema: str | None = None) -> Listing:
    """Every table and view (in ``schema``) with estimated rows and columns."""
    source = open_connector(project, connector)
    try:
        with source.connect() as conn:
            return Listing(
                connector=connector,
                schema=schema,
                rows_source=source.dialect.row_estimate_source,
                tables=_tables(source, conn, schema),
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
    columns = _columns(inspector, schema, tables + views)
    out = [
        TableInfo(schema, name, "table", estimates.get(name), columns.get(name, []))
        for name in tables
    ]
    out += [TableInfo(schema, name, "view", None, columns.get(name, [])) for name in views]
    return sorted(out, key=lambda t: t.name.lower())


def _columns(
    inspector: sa.Inspector, schema: str | None, names: Sequence[str]
) -> dict[str, list[ColumnInfo]]:
    out: dict[str, list[ColumnInfo]] = {}
    try:
        multi = inspector.get_multi_columns(schema=schema, kind=sa.engine.ObjectKind.ANY)
        for (_, name), cols in multi.items():
            out[name] = [_column_info(c) for c in cols]
    except (NotImplementedError, sa.exc.DBAPIError):
        for name in names:
            try:
                out[name] = [_column_info(c) for c in inspector.get_columns(name, schema=schema)]
            except sa.exc.DBAPIError:
                out[name] = []
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
    return "\n".join(lines)


# ---------------------------------------------------------------------------- one table


def propose(project: Project, connector: str, table: str, schema: str | None = None) -> Proposal:
    """Sample ``table`` and propose a mapping for it, with a profile of its timestamp."""
    source = open_connector(project, connector)
    try:
        with source.connect() as conn:
            info = _find_table(source, conn, table, schema)
            return _propose(source, conn, info)
    finally:
        source.close()


def _find_table(source: Source, conn: Connection, name: str, schema: str | None) -> TableInfo:
    inspector = sa.inspect(conn)
    try:
        names = inspector.get_table_names(schema=schema) + inspector.get_view_names(schema=schema)
    except sa.exc.DBAPIError as exc:
        raise DataError(
            f"{source.where}: cannot list the tables of schema {schema!r}: {_first_line(exc)}"
        ) from None
    exact = [n for n in names if n == name] or [n for n in names if n.lower() == name.lower()]
    if not exact:
        listing = ", ".join(sorted(names)[:30]) or "none"
        raise DataError(
            f"{source.where}: table {name!r} not found"
            + (f" in schema {schema!r}" if schema else "")
            + f" (tables: {listing})",
            hint="'etl discover CONNECTOR' lists every table and view",
        )
    found = exact[0]
    kind = "view" if found in inspector.get_view_names(schema=schema) else "table"
    columns = [_column_info(c) for c in inspector.get_columns(found, schema=schema)]
    rows: int | None = None
    if kind == "table":
        try:
            rows = source.dialect.row_estimates(conn, schema).get(found)
        except sa.exc.DBAPIError:
            conn.rollback()
    return TableInfo(schema, found, kind, rows, columns)


def _propose(source: Source, conn: Connection, info: TableInfo) -> Proposal:
    table = sa.table(info.name, *[sa.column(c.name) for c in info.columns], schema=info.schema)
    probe = _read(conn, sa.select(table).limit(PROBE_ROWS))
    temporal = {
        c.name: t for c in info.columns if (t := _temporal(c, probe.get(c.name))) is not None
    }
    roles, reasons = assign_roles(info.columns, temporal, ORDER_ROLES)
    structure = "orders"
    if "start" not in roles or "end" not in roles:
        structure = "bookings"
        roles, reasons = assign_roles(info.columns, temporal, BOOKING_ROLES)
    ts_spec = _timestamp_spec(roles, temporal)
    columns: dict[str, ColumnSpec] = {}
    notes: list[str] = []
    if structure == "bookings":
        if ts_spec is None:
            notes.append("no timestamp column recognised: name one under columns.timestamp")
            ts_spec = ColumnSpec(column=_any_column(info, temporal))
        columns["timestamp"] = ts_spec
    else:
        columns["start"] = _time_column(roles["start"], temporal)
        columns["end"] = _time_column(roles["end"], temporal)
    for field_name in ("order_code", "machine_code", "product_code", "event"):
        if field_name == "event" and structure == "orders":
            continue
        if field_name in roles:
            columns[field_name] = ColumnSpec(column=roles[field_name])
        elif field_name != "product_code":
            notes.append(f"no {field_name} column recognised: a placeholder constant is proposed")
            columns[field_name] = ColumnSpec(value="CHANGE_ME")
            reasons[field_name] = "placeholder: name the column"
    window = columns["timestamp"] if structure == "bookings" else columns["start"]
    sample = _sample(conn, table, columns, window)
    if structure == "orders":
        found = _sentinels_seen(sample, columns["end"])
        if found:
            columns["end"] = columns["end"].model_copy(update={"sentinels": found})
            reasons["end"] = (
                f"{reasons.get('end', 'the end column')}; sampled ends {', '.join(found)} look "
                "like 'no end yet': read as open (remove them from sentinels if they are real)"
            )
    for name, spec in columns.items():
        if spec.column and name.endswith("_code") and name in roles:
            values = sample.get(spec.column)
            if values is not None and _padded(values):
                reasons[name] += "; values are blank-padded (trimmed by default)"
    events: dict[str, list[Any]] = {}
    event_notes: dict[str, str] = {}
    code_counts: list[tuple[Any, int]] = []
    if structure == "bookings":
        events, event_notes, code_counts = guess_events(sample, columns, source.spec.zone)
    profile = _profile(source, conn, table, info, window, sample)
    used = {n for spec in columns.values() for n in spec.source_columns()}
    hints = [
        (c.name, _values(conn, table, c.name, info))
        for c in info.columns
        if c.name not in used and any(_tokens(c.name)[0].startswith(w) for w in FILTER_WORDS)
    ]
    return Proposal(
        table=info,
        structure=structure,
        columns=columns,
        reasons=reasons,
        events=events,
        event_notes=event_notes,
        code_counts=code_counts,
        sample_rows=len(sample),
        profile=profile,
        notes=notes,
        filter_hints=[(name, values) for name, values in hints if 1 < len(values) <= 10],
    )


def _values(
    conn: Connection, table: sa.TableClause, name: str, info: TableInfo
) -> list[tuple[Any, int]]:
    """The most frequent values of a column (up to 11), whole table unless it is large."""
    col = table.c[name]
    n = sa.func.count().label("n")
    query: Any = sa.select(col, n).group_by(col).order_by(n.desc()).limit(11)
    if info.rows is None or info.rows > FULL_PROFILE_ROWS:
        newest = sa.select(col).limit(SAMPLE_ROWS).subquery()
        query = sa.select(newest.c[name], n).group_by(newest.c[name]).order_by(n.desc()).limit(11)
    try:
        return [(row[0], int(row[1])) for row in conn.execute(query)]
    except sa.exc.DBAPIError:
        conn.rollback()
        return []


def _read(conn: Connection, query: sa.Select[Any]) -> pd.DataFrame:
    result = conn.execute(query)
    return pd.DataFrame.from_records(
        result.fetchall(), columns=list(result.keys()), coerce_float=False
    )


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def name_score(name: str, role: str) -> int:
    """How well a column name fits a role: 100 the whole name, 60 a part, 40 a prefix, 0 none."""
    whole, parts = ROLES[role]
    lower = name.lower()
    if lower in whole or "_".join(_tokens(name)) in whole:
        return 100
    tokens = _tokens(name)
    if any(t in parts for t in tokens):
        return 60
    if any(lower.startswith(p) for p in parts if len(p) >= 3):
        return 40
    return 0


def _temporal(column: ColumnInfo, values: pd.Series | None) -> Temporal | None:
    """Whether a column holds times, by its type or, for text, by its sampled values."""
    type_ = column.sa_type
    if isinstance(type_, sa.DateTime) or type(type_).__name__.upper() in (
        "DATETIME2",
        "SMALLDATETIME",
        "DATETIMEOFFSET",
    ):
        return Temporal("datetime")
    if isinstance(type_, sa.Date):
        return Temporal("date")
    if isinstance(type_, sa.Time):
        return Temporal("time")
    if values is None:
        return None
    texts = [v.strip() for v in values.dropna() if isinstance(v, str) and v.strip()]
    if not texts or len(texts) < len(values.dropna()):
        return None
    for kind, formats in (
        ("datetime", DATETIME_FORMATS),
        ("date", DATE_FORMATS),
        ("time", TIME_FORMATS),
    ):
        for fmt in formats:
            if _all_parse(texts, fmt):
                return Temporal(kind, fmt)
    return None


def _all_parse(texts: list[str], fmt: str) -> bool:
    try:
        for text in texts:
            datetime.strptime(text, fmt)
    except ValueError:
        return False
    return True


ORDER_ROLES = ("start", "end", "order_code", "machine_code", "product_code")
BOOKING_ROLES = ("timestamp", "date", "time", "event", "order_code", "machine_code", "product_code")


def assign_roles(
    columns: Sequence[ColumnInfo], temporal: dict[str, Temporal], wanted: Sequence[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Role -> column, and why, from names (and whether a column holds times).

    Each column takes at most one role; the best name match wins, ties go to the role listed
    first in ``wanted``.
    """
    candidates: list[tuple[int, int, str, str]] = []
    for column in columns:
        t = temporal.get(column.name)
        for rank, role in enumerate(wanted):
            score = name_score(column.name, role)
            if role in ("timestamp", "start", "end"):
                if t is None or t.kind != "datetime":
                    continue
                if role == "timestamp":
                    score = max(score, 10)  # any datetime column can carry the time
            elif role in ("date", "time"):
                if t is None or t.kind != role:
                    continue
            elif t is not None:
                continue  # codes are not times
            if score:
                candidates.append((score, rank, role, column.name))
    roles: dict[str, str] = {}
    reasons: dict[str, str] = {}
    taken: set[str] = set()
    for score, _, role, name in sorted(candidates, key=lambda c: (-c[0], c[1])):
        if role in roles or name in taken:
            continue
        roles[role] = name
        taken.add(name)
        reasons[role] = "a datetime column" if score == 10 else f"name {name!r}"
    return roles, reasons


def _timestamp_spec(roles: dict[str, str], temporal: dict[str, Temporal]) -> ColumnSpec | None:
    if "timestamp" in roles:
        return _time_column(roles["timestamp"], temporal)
    if "date" in roles and "time" in roles:
        date, time = roles["date"], roles["time"]
        return ColumnSpec(
            date=date,
            time=time,
            date_format=temporal[date].format,
            time_format=temporal[time].format,
        )
    return None


def _time_column(name: str, temporal: dict[str, Temporal]) -> ColumnSpec:
    t = temporal.get(name)
    return ColumnSpec(column=name, format=t.format if t else None)


def _any_column(info: TableInfo, temporal: dict[str, Temporal]) -> str:
    for column in info.columns:
        if column.name in temporal:
            return column.name
    return info.columns[0].name if info.columns else "CHANGE_ME"


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


# ---------------------------------------------------------------------------- events


def guess_events(
    sample: pd.DataFrame, columns: dict[str, ColumnSpec], zone: Any
) -> tuple[dict[str, list[Any]], dict[str, str], list[tuple[Any, int]]]:
    """START/END/ignore guesses for the sampled event codes, with a reason for each code.

    Known words (A/E, START/END, ZZS/ZZE, B10/B40, ...) decide first. Other codes are judged by
    where they stand in each (machine, order)'s bookings in time order: the code that most often
    opens a sequence starts runs; a code that is mostly the last one, or mostly followed by a
    start (an interruption before a resume), ends them; the rest are ignored (quantity reports).
    """
    event = columns["event"].column
    if event is None or event not in sample:
        return {"START": ["CHANGE_ME"], "END": ["CHANGE_ME_TOO"]}, {}, []
    counts = Counter(sample[event].dropna().tolist())
    codes = [code for code, _ in counts.most_common()]
    seq = _sequences(sample, columns, zone)
    firsts = seq.groupby("code")["first"].mean().to_dict() if not seq.empty else {}
    start = [c for c in codes if normalize_code(c).upper() in START_WORDS]
    notes = {str(c): "START: a usual start code" for c in start}
    if not start and firsts:
        best = max(codes, key=lambda c: firsts.get(normalize_code(c), 0.0))
        if firsts.get(normalize_code(best), 0.0) >= 0.2:
            start = [best]
            notes[str(best)] = (
                f"START (guess): opens {firsts[normalize_code(best)]:.0%} of its order's sequences"
            )
    closing: dict[str, float] = {}
    if not seq.empty:
        starts = {normalize_code(c) for c in start}
        seq["closes"] = seq["last"] | seq["next"].isin(starts)
        closing = seq.groupby("code")["closes"].mean().to_dict()
    end: list[Any] = []
    ignore: list[Any] = []
    for code in codes:
        if code in start:
            continue
        share = closing.get(normalize_code(code))
        known = normalize_code(code).upper() in END_WORDS
        if known:
            end.append(code)
            notes[str(code)] = "END: a usual end code"
        elif share is not None and share >= 0.5:
            end.append(code)
            notes[str(code)] = (
                f"END (guess): {share:.0%} of its rows end a sequence or come before a start"
            )
        else:
            ignore.append(code)
            shown = "" if share is None else f": only {share:.0%} of its rows end a sequence"
            notes[str(code)] = f"ignore (guess{shown}): check"
    if not start:
        start = [ignore.pop(0)] if ignore else ["CHANGE_ME"]
        notes[str(start[0])] = "START: no code looks like a start: CHANGE THIS"
    if not end:
        end = [ignore.pop(0)] if ignore else ["CHANGE_ME_TOO"]
        notes[str(end[0])] = "END: no code looks like an end: CHANGE THIS"
    events: dict[str, list[Any]] = {"START": start, "END": end}
    if ignore:
        events["ignore"] = ignore
    return events, notes, [(c, counts[c]) for c in codes]


def _sequences(sample: pd.DataFrame, columns: dict[str, ColumnSpec], zone: Any) -> pd.DataFrame:
    """Sampled bookings in time order per (machine, order): code, first?, last?, next code."""
    needed = ("timestamp", "machine_code", "order_code", "event")
    empty = pd.DataFrame(columns=["code", "first", "last", "next"])
    if sample.empty or any(columns[n].column is None and columns[n].date is None for n in needed):
        return empty
    try:
        frame = pd.DataFrame(
            {
                "ts": timestamps(sample, columns["timestamp"], zone, DstPolicy()),
                "machine": text_values(sample[columns["machine_code"].column], True),
                "order": text_values(sample[columns["order_code"].column], True),
                "code": text_values(sample[columns["event"].column], True),
            }
        ).dropna()
    except (KeyError, ValueError, TypeError):
        return empty
    if frame.empty:
        return empty
    frame = frame.sort_values(["machine", "order", "ts"], kind="stable")
    groups = frame.groupby(["machine", "order"], sort=False)["code"]
    frame["first"] = groups.cumcount() == 0
    frame["last"] = groups.cumcount(ascending=False) == 0
    frame["next"] = groups.shift(-1)
    return frame


# ---------------------------------------------------------------------------- the profile


def _profile(
    source: Source,
    conn: Connection,
    table: sa.TableClause,
    info: TableInfo,
    spec: ColumnSpec,
    sample: pd.DataFrame,
) -> Profile | None:
    names = [n for n in spec.source_columns() if n in table.c]
    if not names:
        return None
    cols = [table.c[n] for n in names]
    big = info.rows is None or info.rows > FULL_PROFILE_ROWS
    warnings: list[str] = []
    any_null = sa.or_(*[c.is_(None) for c in cols])
    if big:
        scope = f"the newest {len(sample):,} rows"
        rows, nulls = len(sample), 0
        keys = sample[names].astype(str).agg("|".join, axis=1)
        repeats = keys.value_counts()
        dup_values = int((repeats > 1).sum())
        dup_rows = int(repeats[repeats > 1].sum())
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
    lo = _extreme(conn, table, names, ascending=True)
    hi = _extreme(conn, table, names, ascending=False)
    precision = _precision(stamps)
    column = next(c for c in info.columns if c.name == names[0])
    type_note = source.dialect.timestamp_note(column.sa_type) if spec.column else None
    if nulls:
        warnings.append(
            f"{nulls:,} row(s) ({nulls / max(rows, 1):.2%}) have no timestamp: they are re-read "
            "on every run and reported as bad_timestamp anomalies"
        )
    if dup_rows and dup_rows / max(rows - nulls, 1) > 0.01:
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
    fmt = spec.format or spec.date_format
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
    )


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
    """The mapping file text."""
    info = proposal.table
    rows = "?" if info.rows is None else f"{info.rows:,}"
    out = [
        f"# Proposed by `{command}` on {datetime.now(UTC):%Y-%m-%d %H:%MZ}: check every line.",
        f"# {info.kind} {info.name}: ~{rows} rows, {len(info.columns)} columns: "
        + ", ".join(f"{c.name} {c.type}" for c in info.columns),
    ]
    out += [f"# note: {n}" for n in proposal.notes]
    profile = proposal.profile
    if profile is not None:
        cols = " + ".join(profile.columns)
        out += [
            f"# timestamp {cols}, profiled over {profile.scope}:",
            f"#   {profile.rows:,} rows, {profile.nulls:,} without a timestamp, "
            f"{profile.duplicate_values:,} values shared by {profile.duplicate_rows:,} rows",
            f"#   from {profile.minimum} to {profile.maximum}; precision: {profile.precision}",
        ]
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
        why = proposal.reasons.get(name) or proposal.reasons.get(
            {"timestamp": "timestamp"}.get(name, name), ""
        )
        if name == "timestamp" and spec.date is not None:
            why = "date and time columns"
        comment = f"  # {why}" if why else ""
        out.append(f"  {name + ':':<{width + 1}} {_spec_yaml(spec)}{comment}")
    if proposal.filter_hints:
        out.append("# filters: uncomment what applies (most frequent values first)")
        out.append("# filters:")
        for name, values in proposal.filter_hints:
            seen = ", ".join(f"{_y(v)} ({n:,})" for v, n in values)
            out.append(f"#   - {{column: {_y(name)}, eq: {_y(values[0][0])}}}  # {name}: {seen}")
    if proposal.structure == "bookings":
        total = sum(n for _, n in proposal.code_counts)
        listing = ", ".join(f"{_y(c)} ({n:,})" for c, n in proposal.code_counts[:20])
        out += [
            "events:",
            f"  # codes in the newest {proposal.sample_rows:,} rows ({total:,} with a code): {listing}",
        ]
        for kind in ("START", "END", "ignore"):
            codes = proposal.events.get(kind)
            if not codes:
                continue
            out.append(f"  {kind}: {_y(list(codes))}")
            for code in codes:
                note = proposal.event_notes.get(str(code))
                if note:
                    out.append(f"    # {_y(code)}: {note}")
    return "\n".join(out) + "\n"


def _first_line(exc: sa.exc.DBAPIError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


__all__ = ["Listing", "Proposal", "format_listing", "list_tables", "propose"]
