"""``etl discover`` on a file drop or an HTTP API: its tables are the connector's ``files.tables``
or ``http.endpoints``; for one of them a sample of records (the newest files by name, or the
first pages) becomes a DataFrame, and the mapping is proposed the same way as for a database
table: the column profiles (profile.py), roles and filters (roles.py), event codes scored by the
fold (codes.py) and the time zone evidence (timezone.py) all work on that frame.

Files hand over text: integer-looking text becomes integers (as a database column would be),
text in the connector's ``datetime_format`` becomes datetimes; APIs hand over JSON: OData's
``/Date(...)/``, ISO 8601 with an offset and epoch numbers in a time-named field become instants
(the reader reads them so, the mapping names only the field).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa

from etl.commands.discover.codes import guess_codes
from etl.commands.discover.profile import PARSED_SHARE, profile_columns, time_fields
from etl.commands.discover.roles import decide
from etl.commands.discover.timezone import judge, warning, zone_to_test
from etl.commands.discover.vocabulary import name_score
from etl.config.models import ColumnSpec, ConnectorSpec, DstPolicy, MappingSpec, Project
from etl.errors import DataError, EtlError, UsageError
from etl.pipeline.mapping import timestamps

SAMPLE_FILES = 20  # the newest files by name
SAMPLE_RECORDS = 20_000  # at most this many records (whole files, whole pages)
SAMPLE_PAGES = 20

_INTEGER = re.compile(r"-?(0|[1-9]\d{0,17})")
_DECIMAL = re.compile(r"-?\d+\.\d+")
_MS_DATE = re.compile(r"/Date\(-?\d+([+-]\d{4})?\)/")
_ISO_OFFSET = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)")


@dataclass
class Sample:
    """The records sampled from one file table or endpoint, as typed columns."""

    frame: pd.DataFrame
    columns: list[Any]  # ColumnInfo, as the catalog would give them
    instants: set[str]  # columns whose values are instants (not plant wall-clock)
    scope: str  # where the records came from
    notes: list[str] = field(default_factory=list)


def is_records_kind(project: Project, connector: str) -> bool:
    """Whether ``connector`` is a file drop or an HTTP API (not a database)."""
    spec = project.connectors.get(connector)
    return spec is not None and spec.kind in ("files", "http")


def tables_of(spec: ConnectorSpec) -> list[str]:
    """The connector's table names (files.tables or http.endpoints)."""
    if spec.files is not None:
        return list(spec.files.tables)
    assert spec.http is not None
    return list(spec.http.endpoints)


def list_sources(project: Project, connector: str) -> Any:
    """``etl discover CONNECTOR`` of a file drop or API: each table with the records of its
    newest file (or first page) and their columns."""
    from etl.commands.discover import Listing, TableInfo
    from etl.sources.sql.engine import connector_spec

    spec = connector_spec(project, connector)
    tables = []
    for name in tables_of(spec):
        sample = sampled(project, connector, spec, name, files=1, pages=1)
        tables.append(TableInfo(None, name, _kind(spec), len(sample.frame), sample.columns))
    what = "the newest file" if spec.kind == "files" else "the first page"
    return Listing(connector=connector, schema=None, rows_source=what, tables=tables)


def _kind(spec: ConnectorSpec) -> str:
    if spec.files is not None:
        return "files"
    return "endpoint"


def source_line(spec: ConnectorSpec, table: str) -> str:
    """``files 'b_*.csv' in drop`` or ``GET path``."""
    if spec.files is not None:
        return f"files {spec.files.tables[table].glob!r} in {spec.files.location}"
    assert spec.http is not None
    return f"GET {spec.http.endpoints[table].path}"


def propose_records(project: Project, connector: str, table: str) -> Any:
    """Sample ``table`` of a file drop or API and propose a mapping for it."""
    from etl.commands.discover import Proposal, TableInfo, proposed_columns
    from etl.sources.sql.engine import connector_spec

    spec = connector_spec(project, connector)
    names = tables_of(spec)
    if table not in names:
        exact = [n for n in names if n.lower() == table.lower()]
        if not exact:
            where = "files.tables" if spec.files is not None else "http.endpoints"
            raise DataError(
                f"connectors/{connector}.yaml: {where}: no entry {table!r} (entries: "
                f"{', '.join(names) or 'none'})",
                hint=f"'etl discover {connector}' lists them",
            )
        table = exact[0]
    sample = sampled(project, connector, spec, table)
    frame = sample.frame
    info = TableInfo(None, table, _kind(spec), len(frame), sample.columns)
    profiled = profile_columns(frame, sample.columns, set())
    fields = time_fields(profiled, frame)
    roles = decide(profiled, fields, frame)
    structure, columns, reasons, notes = proposed_columns(roles, info, frame)
    notes = [f"sampled {sample.scope}", *sample.notes, *notes]
    window = columns["timestamp"] if structure == "bookings" else columns["start"]
    guess = None
    events: dict[str, list[Any]] = {}
    if structure == "bookings":
        guess = guess_codes(frame, columns, spec.zone)
        events = guess.events
    profile = _profile(frame, window, spec.zone, sample, structure)
    warnings: list[str] = []
    evidence = None
    ref = roles.reference
    if (
        ref is not None
        and ref.spec == window
        and not set(window.source_columns()) & sample.instants
    ):
        evidence = judge(ref.naive.dropna(), zone_to_test(spec.zone))
        message = warning(evidence, spec.zone)
        warnings += [message] if message else []
    return Proposal(
        table=info,
        structure=structure,
        columns=columns,
        reasons=reasons,
        events=events,
        event_notes=guess.notes if guess else {},
        code_counts=guess.counts if guess else [],
        sample_rows=len(frame),
        profile=profile,
        notes=notes,
        filters=roles.filters,
        guess=guess,
        zone=evidence,
        warnings=warnings,
        profiled_rows=len(frame),
    )


# ---------------------------------------------------------------------------- the sample


def sampled(
    project: Project,
    connector: str,
    spec: ConnectorSpec,
    table: str,
    *,
    files: int = SAMPLE_FILES,
    pages: int = SAMPLE_PAGES,
) -> Sample:
    """The records of the newest ``files`` files, or of the first ``pages`` pages, typed."""
    if spec.files is not None:
        raw, scope, notes = _file_records(project, spec, table, files)
        formats = spec.files.tables[table].datetime_format
    else:
        raw, scope = _api_records(project, connector, spec, table, pages)
        formats, notes = None, []
    frame, columns, instants = typed(raw, formats)
    return Sample(frame, columns, instants, scope, notes)


def _file_records(
    project: Project, spec: ConnectorSpec, table: str, limit: int
) -> tuple[pd.DataFrame, str, list[str]]:
    from etl.sources.files.formats import read_file
    from etl.sources.files.reader import Drop

    assert spec.files is not None
    entry = spec.files.tables[table]
    drop = Drop(spec.files, project.root)
    listed = drop.list(entry.glob)
    if not listed:
        raise DataError(
            f"file drop {drop.display}: no file matches {entry.glob!r} (table {table})",
            hint="check 'location' and the table's 'glob' in the connector",
        )
    frames: list[pd.DataFrame] = []
    used: list[str] = []
    notes: list[str] = []
    rows = 0
    for file in reversed(listed):  # the newest by name first
        if len(used) >= limit or rows >= SAMPLE_RECORDS:
            break
        try:
            frame = read_file(drop.read(file.path), f"{drop.display}/{file.path}", entry, None, [])
        except DataError as exc:
            notes.append(f"not sampled: {exc.message}")
            continue
        frames.insert(0, frame)
        used.insert(0, file.path)
        rows += len(frame)
    if not frames:
        raise DataError(
            f"file drop {drop.display}: none of the newest files of {entry.glob!r} reads",
            hint="; ".join(notes),
        )
    frame = pd.concat(frames, ignore_index=True)
    which = used[0] if len(used) == 1 else f"{used[0]} .. {used[-1]}"
    scope = f"{len(frame):,} rows of {len(used)} of {len(listed)} file(s) ({which})"
    return frame, scope, notes


def _api_records(
    project: Project, connector: str, spec: ConnectorSpec, table: str, limit: int
) -> tuple[pd.DataFrame, str]:
    from etl.sources.http.reader import HttpReader, HttpRequest, flat_records

    # the reader needs a mapping only to name its endpoint: a placeholder that reads nothing
    placeholder = MappingSpec.model_validate(
        {
            "structure": "bookings",
            "source": {"table": table},
            "columns": {c: "x" for c in ("timestamp", "order_code", "machine_code", "event")},
            "events": {"START": ["1"], "END": ["2"]},
        }
    )
    where = f"connectors/{connector}.yaml"
    reader = HttpReader(connector, spec, placeholder, where, project.root, project.secrets)
    records: list[dict[str, Any]] = []
    first = ""
    count = 0
    with reader.open() as reading:
        request = HttpRequest(reading, None)  # no window: every page from the first
        for page, url in request.pages():
            first = first or url
            records += page
            count += 1
            if count >= limit or len(records) >= SAMPLE_RECORDS:
                break
    if not records:
        raise DataError(f"{where}: GET {first}: no records to sample")
    scope = f"{len(records):,} records of {count} page(s) from GET {first}"
    return flat_records(records), scope


def typed(
    raw: pd.DataFrame, formats: str | list[str] | None
) -> tuple[pd.DataFrame, list[Any], set[str]]:
    """The sample's columns as a database would type them: (frame, ColumnInfo list, the
    columns holding instants)."""
    from etl.commands.discover import ColumnInfo
    from etl.sources.files.formats import datetimes
    from etl.sources.rows import instants

    out: dict[str, pd.Series] = {}
    infos = []
    moments: set[str] = set()
    for name in raw.columns:
        values = raw[name].reset_index(drop=True)
        kind: tuple[str, Any]
        if pd.api.types.is_bool_dtype(values):
            kind = ("boolean", sa.Boolean())
        elif pd.api.types.is_datetime64_any_dtype(values):
            kind = ("datetime", sa.DateTime())
        elif pd.api.types.is_numeric_dtype(values):
            if _epoch_like(str(name), values):
                values = instants(values)
                moments.add(str(name))
                kind = ("instant", sa.DateTime())
            elif _whole(values):
                values = values.astype("Int64")
                kind = ("integer", sa.Integer())
            else:
                kind = ("decimal", sa.Float())
        else:
            values, kind, instant = _typed_text(values, formats, datetimes, instants)
            if instant:
                moments.add(str(name))
        out[str(name)] = values
        nullable = bool(values.isna().any())
        infos.append(ColumnInfo(str(name), kind[0], nullable, kind[1]))
    return pd.DataFrame(out), infos, moments


def _typed_text(
    values: pd.Series, formats: str | list[str] | None, datetimes: Any, instants: Any
) -> tuple[pd.Series, tuple[str, Any], bool]:
    present = values.dropna()
    inferred = pd.api.types.infer_dtype(present, skipna=True)
    if inferred in ("datetime", "datetime64") and present.map(_naive).all():
        parsed = pd.to_datetime(values, errors="coerce")  # Excel's date cells
        return parsed, ("datetime", sa.DateTime()), False
    if inferred not in ("string", "empty"):
        return values, ("text", sa.String()), False
    text = present.astype("string").str.strip()
    text = text[text != ""]
    if text.empty:
        return values, ("text", sa.String()), False
    share = len(text) * PARSED_SHARE
    if formats is not None:
        parsed = datetimes(values.astype("string").str.strip(), formats)
        if parsed.notna().sum() >= share:
            return parsed, ("datetime", sa.DateTime()), False
    if text.str.fullmatch(_MS_DATE.pattern).sum() >= share:
        return instants(values), ("instant", sa.DateTime()), True
    if text.str.fullmatch(_ISO_OFFSET.pattern).sum() >= share:
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
        return parsed, ("instant", sa.DateTime()), True
    if text.str.fullmatch(_INTEGER.pattern).all():
        return (
            pd.to_numeric(values, errors="coerce").astype("Int64"),
            ("integer", sa.Integer()),
            False,
        )
    if text.str.fullmatch(_DECIMAL.pattern).all():
        return pd.to_numeric(values, errors="coerce"), ("decimal", sa.Float()), False
    return values, ("text", sa.String()), False


def _naive(value: Any) -> bool:
    return getattr(value, "tzinfo", None) is None


def _whole(values: pd.Series) -> bool:
    present = values.dropna()
    return bool(pd.api.types.is_integer_dtype(values) or (present % 1 == 0).all())


def _epoch_like(name: str, values: pd.Series) -> bool:
    """Epoch seconds or milliseconds of the last decades in a field named like a time."""
    if name_score(name.rsplit(".", 1)[-1], "timestamp") <= 0:
        return False
    present = pd.to_numeric(values.dropna(), errors="coerce")
    if present.empty:
        return False
    seconds = present.where(present < 1e11, present / 1000)
    return bool(((seconds > 9.4e8) & (seconds < 4.1e9)).all())  # 1999 .. 2099


# ---------------------------------------------------------------------------- the profile


def _profile(
    frame: pd.DataFrame, spec: ColumnSpec, zone: ZoneInfo, sample: Sample, structure: str
) -> Any:
    """The window column's profile over the sample (what the table profile says of a table)."""
    from etl.commands.discover import Profile, _precision

    names = [n for n in spec.source_columns() if n in frame]
    if not names:
        return None
    warnings: list[str] = []
    rows = len(frame)
    present = frame[names].dropna()
    nulls = rows - len(present)
    shared = present.duplicated(keep=False)
    dup_rows = int(shared.sum())
    dup_values = len(present[shared].drop_duplicates())
    stamps = pd.Series(dtype="datetime64[us, UTC]")
    try:
        stamps = timestamps(frame, spec, zone, DstPolicy()).dropna()
    except (EtlError, KeyError, ValueError, TypeError) as exc:
        warnings.append(f"the sampled values do not read as timestamps with this spec: {exc}")
    lo = hi = None
    if not stamps.empty:
        lo = stamps.min().tz_convert(zone).strftime("%Y-%m-%d %H:%M:%S")
        hi = stamps.max().tz_convert(zone).strftime("%Y-%m-%d %H:%M:%S")
    precision = _precision(stamps)
    if nulls:
        warnings.append(
            f"{nulls:,} row(s) ({nulls / max(rows, 1):.2%}) have no timestamp: they are read on "
            "every run and reported as bad_timestamp anomalies"
        )
    if structure == "bookings" and dup_rows and dup_rows / max(rows - nulls, 1) > 0.01:
        warnings.append(  # the fold's order at equal times concerns bookings only
            f"{dup_rows:,} rows share their timestamp with another row ({dup_values:,} values): "
            "at equal times the fold puts END before START; check that this is right for "
            "the source"
        )
    if precision in ("whole minutes", "whole days"):
        warnings.append(
            f"precision is {precision}: events of the same {precision.split()[-1][:-1]} "
            "cannot be ordered"
        )
    if not stamps.empty:
        future = stamps.max() - pd.Timestamp(datetime.now(UTC))
        if future > pd.Timedelta(hours=1):
            warnings.append(
                f"the newest timestamp is {future} ahead of this machine's clock: terminal "
                "clocks or the connector's timezone may be wrong"
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
        type_note="instants (the zone is in the data)" if set(names) & sample.instants else None,
        scope=f"the sample ({sample.scope})",
        warnings=warnings,
    )


def refuse_schema(schema: str | None, connector: str) -> None:
    """A file drop or API has no schemas."""
    if schema is not None:
        raise UsageError(
            f"--schema {schema}: connector {connector!r} is a file drop or an HTTP API: it has "
            "tables (files.tables, http.endpoints), no schemas"
        )
