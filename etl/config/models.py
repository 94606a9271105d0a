"""The project's models: ``etl.yaml`` (ProjectSpec), a connector, a mapping and a job as
validated pydantic models, and the loaded project (Project, with each Job resolved).

The loader (etl/config/loader.py) reads the files and validates them with these models; how a
validation error is worded is in etl/config/errors.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from etl.config.durations import format_duration, parse_duration
from etl.config.errors import SECRET_KEYS, suggest
from etl.config.readonly import allowed_options, option_refusals, url_option_refusals
from etl.config.yamlfile import YamlDoc
from etl.errors import ConfigError
from etl.sources.files.spec import FilesSpec
from etl.sources.http.spec import HttpSpec

PROJECT_FILE = "etl.yaml"
DIALECTS = ("mssql", "mysql", "mariadb", "oracle", "postgresql", "sqlite")
Dialect = Literal["mssql", "mysql", "mariadb", "oracle", "postgresql", "sqlite"]
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        import difflib
        import zoneinfo

        close = difflib.get_close_matches(value, sorted(zoneinfo.available_timezones()), n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(
            f"unknown time zone {value!r} ({guess}use an IANA name such as 'Europe/Berlin' "
            "or 'UTC')"
        ) from None
    return value


TimeZoneName = Annotated[str, BeforeValidator(lambda v: _check_timezone(str(v)))]


def _start_from(value: object) -> object:
    """A quoted ``start_from`` in ISO form, or one clear message (not pydantic's 'invalid
    character in year' for ``01.11.2026``)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "expected a date like 2026-11-01 or a date and time like 2026-11-01 06:00:00 "
            f"(plant wall-clock time), got {value!r}"
        ) from None
    return parsed if len(text) > 10 else parsed.date()


StartFrom = Annotated[date | datetime | None, BeforeValidator(_start_from)]


class Strict(BaseModel):
    """Base for config models: unknown keys are errors, values are not silently coerced to str."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)


# --------------------------------------------------------------------------- etl.yaml


class Defaults(Strict):
    """Job settings used where a job file does not set them."""

    safety_lag: Duration = timedelta(minutes=5)
    reread: Duration = timedelta(days=2)
    start_from: StartFrom = None
    batch_size: int = Field(default=50_000, ge=100, le=5_000_000)


class SchedulerSpec(Strict):
    """``etl schedule``: how many jobs run at once, how late a firing may start, how it stops."""

    workers: int = Field(default=2, ge=1, le=64)
    misfire_grace: Duration = timedelta(minutes=5)
    grace: Duration = timedelta(seconds=60)


class MetricsSpec(Strict):
    """Prometheus metrics for the node-exporter textfile collector."""

    textfile: str


class S3Spec(Strict):
    """Object storage for ``parquet: s3://bucket/prefix`` (credentials: environment only)."""

    endpoint: str
    region: str = "us-east-1"

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        from etl.config.locations import check_endpoint

        return check_endpoint(value)


class LockSpec(Strict):
    """The per-job lock in the store: a lease that a running job renews (heartbeat)."""

    lease: Duration = timedelta(minutes=10)

    @field_validator("lease")
    @classmethod
    def _lease(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=2):
            raise ValueError(f"expected at least 2s, got {format_duration(value)}")
        return value

    @property
    def heartbeat(self) -> timedelta:
        """How often a running job renews its lease: a quarter of it."""
        return self.lease / 4


class ProjectSpec(Strict):
    """``etl.yaml``: where the store and the Parquet output live, and job defaults."""

    name: str = "booking-etl project"
    store: str = "sqlite:///store.sqlite"
    parquet: str | None = "output/parquet"
    s3: S3Spec | None = None
    lock: LockSpec = LockSpec()
    defaults: Defaults = Defaults()
    scheduler: SchedulerSpec = SchedulerSpec()
    metrics: MetricsSpec | None = None

    @model_validator(mode="after")
    def _object_store(self) -> ProjectSpec:
        from etl.config.locations import S3Location

        try:
            location = S3Location.parse(self.parquet or "")
        except ValueError as exc:
            raise ValueError(f"@parquet: {exc}") from None
        if location is not None and self.s3 is None:
            raise ValueError(
                f"@s3: missing: parquet {location.uri} needs an 's3' section with the "
                "'endpoint' (and 'region') of the object store"
            )
        if location is None and self.s3 is not None:
            raise ValueError(
                "@s3: 's3' settings go with 'parquet: s3://bucket/prefix'; parquet is "
                f"{self.parquet!r}"
            )
        return self


# --------------------------------------------------------------------------- connectors


class ConnectorSpec(Strict):
    """``connectors/NAME.yaml``: how to reach one source, read-only: a database (``kind: sql``,
    the default), an HTTP API (``kind: http``) or a file drop (``kind: files``); see
    docs/sources.md for the last two."""

    kind: Literal["sql", "http", "files"] = "sql"
    dialect: Dialect | None = None
    http: HttpSpec | None = None
    files: FilesSpec | None = None
    description: str = ""
    url: SecretStr | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    database: str | None = None
    service_name: str | None = None
    sid: str | None = None
    path: str | None = None
    user: str | None = None
    password: SecretStr | None = None
    driver: str | None = None
    options: dict[str, str | int | float | bool] = {}
    timezone: TimeZoneName = "UTC"
    #: the plant label every run and anomaly read through this connector carries (a job's
    #: ``plant`` or a mapping field ``plant`` overrides it)
    plant: str | None = None
    connect_timeout: Duration = timedelta(seconds=15)
    # auto: the dialect's Arrow driver when installed, else SQLAlchemy; arrow: that driver or an
    # error; sqlalchemy: always the DBAPI driver through SQLAlchemy (docs/extraction.md)
    fetch: Literal["auto", "arrow", "sqlalchemy"] = "auto"

    @model_validator(mode="after")
    def _harmless_options(self) -> ConnectorSpec:
        # docs/read-only.md: only options that cannot run SQL or change the session
        if self.dialect is None:
            return self  # not a database connector, or no dialect: _where says which
        refused = option_refusals(self.dialect, self.options)
        if refused:
            key, why = refused[0]
            raise ValueError(
                f"@options.{key}: refused: {why} (allowed options for {self.dialect}: "
                f"{', '.join(allowed_options(self.dialect))})"
            )
        if self.url is not None:
            refused = url_option_refusals(self.dialect, self.url.get_secret_value())
            if refused:
                key, why = refused[0]
                raise ValueError(
                    f"@url: refused the option {key!r} in the URL's query string: {why} "
                    "(docs/read-only.md lists the allowed options)"
                )
        return self

    @model_validator(mode="after")
    def _where(self) -> ConnectorSpec:
        sections = {"http": self.http, "files": self.files}
        for key, section in sections.items():
            if section is not None and key != self.kind:
                raise ValueError(
                    f"@{key}: a '{key}' section goes with 'kind: {key}' (kind is {self.kind})"
                )
        if self.kind != "sql":
            if sections[self.kind] is None:
                raise ValueError(
                    f"@{self.kind}: missing: a kind {self.kind} connector needs a '{self.kind}' section"
                )
            sql = [
                k
                for k in (
                    "dialect",
                    "url",
                    "host",
                    "port",
                    "database",
                    "service_name",
                    "sid",
                    "path",
                    "user",
                    "password",
                    "driver",
                )
                if getattr(self, k) is not None
            ]
            if sql or self.options:
                key = sql[0] if sql else "options"
                raise ValueError(
                    f"@{key}: '{key}' belongs to a database connector (kind sql), not kind {self.kind}"
                )
            return self
        if self.dialect is None:
            raise ValueError(
                "@dialect: missing required key (a database connector needs it; a file drop or "
                "an HTTP API says 'kind: files' or 'kind: http')"
            )
        if self.url is not None:
            clash = [
                k
                for k in ("host", "port", "database", "service_name", "sid", "path")
                if getattr(self, k)
            ]
            if clash:
                raise ValueError(
                    f"@{clash[0]}: give either 'url' or {', '.join(repr(k) for k in clash)}, not both"
                )
            return self
        if self.dialect == "sqlite":
            if not self.path:
                raise ValueError(
                    "@path: missing: a sqlite connector needs 'path' (the database file) or 'url'"
                )
            return self
        if not self.host:
            raise ValueError(f"@host: missing: a {self.dialect} connector needs 'host' or 'url'")
        if self.dialect == "oracle":
            if bool(self.service_name) == bool(self.sid):
                raise ValueError(
                    "@service_name: an oracle connector needs exactly one of 'service_name' or 'sid'"
                )
        elif not self.database:
            raise ValueError(f"@database: missing: a {self.dialect} connector needs 'database'")
        return self

    @property
    def sql_dialect(self) -> str:
        """The dialect of a database connector (validated: every ``kind: sql`` has one)."""
        if self.dialect is None:
            raise ConfigError(f"a kind {self.kind} connector has no SQL dialect")
        return self.dialect

    @property
    def zone(self) -> ZoneInfo:
        """The plant time zone in which naive source timestamps are read."""
        return ZoneInfo(self.timezone)


# --------------------------------------------------------------------------- mappings


def _sentinel_texts(value: Any) -> Any:
    """YAML reads 9999-12-31 as a date: keep every sentinel as the text it was written as."""
    if not isinstance(value, list):
        return value
    return [
        v.isoformat(sep=" ")
        if isinstance(v, datetime)
        else v.isoformat()
        if isinstance(v, date)
        else v
        for v in value
    ]


class ColumnSpec(Strict):
    """One canonical field taken from the source: a column, a date + time pair, or a constant."""

    column: str | None = None
    date: str | None = None
    time: str | None = None
    value: StrictStr | StrictInt | None = None
    trim: bool | None = None
    date_format: str | None = None
    time_format: str | None = None
    format: str | None = None
    #: values that stand for "no value" (an ``end``: still open), e.g. 9999-12-31 or 1900-01-01:
    #: a date matches any time on that day; also 'infinity', '-infinity', '0000-00-00'
    sentinels: Annotated[list[StrictStr] | None, BeforeValidator(_sentinel_texts)] = None

    @model_validator(mode="after")
    def _one_source(self) -> ColumnSpec:
        kinds = [
            name
            for name, used in (
                ("column", self.column is not None),
                ("date/time", self.date is not None or self.time is not None),
                ("value", self.value is not None),
            )
            if used
        ]
        if len(kinds) != 1:
            raise ValueError("give exactly one of 'column', 'date' + 'time', or 'value'")
        if (self.date is None) != (self.time is None):
            raise ValueError("'date' and 'time' go together: name both columns")
        for value in self.sentinels or []:
            if isinstance(value, str) and sentinel_text(value) is None:
                raise ValueError(
                    f"@sentinels: {value!r} is not a date, a date and time, 'infinity', "
                    "'-infinity' or '0000-00-00'"
                )
        return self

    def source_columns(self) -> list[str]:
        """The source column names this field reads."""
        if self.column is not None:
            return [self.column]
        if self.date is not None and self.time is not None:
            return [self.date, self.time]
        return []


_SPECIAL_SENTINELS = ("infinity", "-infinity", "+infinity")


def sentinel_text(value: str) -> str | datetime | None:
    """A ``sentinels`` entry given as text: the special word (lower case, matched against the raw
    text), the date and time it stands for, or None if it is neither."""
    text = value.strip().lower()
    if text in _SPECIAL_SENTINELS or re.fullmatch(r"0000-00-00(?:[ t]00:00(?::00)?)?", text):
        return text
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def _column(value: Any) -> Any:
    return {"column": value} if isinstance(value, str) else value


Column = Annotated[ColumnSpec, BeforeValidator(_column)]
ScalarCode = StrictStr | StrictInt


class BookingColumns(Strict):
    """Columns of a booking table: one row per START/END event."""

    timestamp: Column
    order_code: Column
    machine_code: Column
    event: Column
    product_code: Column | None = None
    updated_at: Column | None = None
    #: the plant of each booking; a run takes its START's (else the job's or connector's label)
    plant: Column | None = None


class OrderColumns(Strict):
    """Columns of an order table: one row per production run; ``end`` NULL while running."""

    order_code: Column
    machine_code: Column
    start: Column
    end: Column
    product_code: Column | None = None
    updated_at: Column | None = None
    #: the plant of each run (else the job's or connector's label)
    plant: Column | None = None


#: The columns of each mapping ``structure``.
#: what ``etl discover`` writes where it recognised nothing: a mapping holding one is refused
PLACEHOLDERS = ("CHANGE_ME", "CHANGE_ME_TOO")

STRUCTURE_COLUMNS: dict[str, type[BookingColumns | OrderColumns]] = {
    "bookings": BookingColumns,
    "orders": OrderColumns,
}


class EventCodes(Strict):
    """Source event codes mapped to START and END; codes listed under ``ignore`` are dropped."""

    START: list[ScalarCode] = Field(min_length=1)
    END: list[ScalarCode] = Field(min_length=1)
    ignore: list[ScalarCode] = []
    #: phase name -> the START codes that begin a run of that phase (the others: production)
    phases: dict[str, list[ScalarCode]] = {}

    @model_validator(mode="after")
    def _disjoint(self) -> EventCodes:
        seen: dict[str, str] = {}
        for kind in ("START", "END", "ignore"):
            for code in getattr(self, kind):
                key = normalize_code(code)
                if key in seen:
                    raise ValueError(f"code {code!r} is listed under both {seen[key]} and {kind}")
                seen[key] = kind
        phased: dict[str, str] = {}
        for phase, codes in self.phases.items():
            for code in codes:
                key = normalize_code(code)
                if seen.get(key) != "START":
                    raise ValueError(
                        f"@phases.{phase}: code {code!r} is not listed under START: a phase "
                        "belongs to the START that begins a run"
                    )
                if key in phased:
                    raise ValueError(
                        f"@phases.{phase}: code {code!r} is in phase {phased[key]!r} already"
                    )
                phased[key] = phase
        return self

    def phase_of(self) -> dict[str, str]:
        """Normalized START code -> its declared phase (codes not listed: ``production``)."""
        return {
            normalize_code(code): phase for phase, codes in self.phases.items() for code in codes
        }

    def lookup(self) -> dict[str, str]:
        """Normalized code -> 'START' | 'END' | 'IGNORE'."""
        out = {normalize_code(c): "START" for c in self.START}
        out.update({normalize_code(c): "END" for c in self.END})
        out.update({normalize_code(c): "IGNORE" for c in self.ignore})
        return out


def normalize_code(code: object) -> str:
    """Codes compare as trimmed text: 10, 10.0, '10' and ' 10 ' are the same code."""
    if isinstance(code, float) and code.is_integer():
        code = int(code)
    return str(code).strip()


FieldType = Literal["integer", "decimal", "text", "timestamp"]
Aggregation = Literal["sum", "max", "min", "first", "last", "count", "distinct"]
#: canonical names a field may not take (they are run columns already)
RESERVED_FIELDS = frozenset(
    {
        "machine_code", "order_code", "product_code", "start", "end", "duration_s", "is_open",
        "flags", "phase", "zone", "local_start_date", "job", "month", "ts", "event", "attributes",
    }
)  # fmt: skip


class FieldSpec(Strict):
    """One run attribute from a source column (mapping ``fields``): its type and, for a
    bookings mapping, how the run's bookings are aggregated into it."""

    column: str
    type: FieldType
    agg: Aggregation | None = None

    @model_validator(mode="after")
    def _numeric(self) -> FieldSpec:
        if self.agg == "sum" and self.type not in ("integer", "decimal"):
            raise ValueError(
                f"@agg: 'sum' needs a number: type integer or decimal, not {self.type}"
            )
        return self


FilterValue = str | int | float | bool | date | datetime
_OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "is_null")


class FilterSpec(Strict):
    """One row filter, compiled into the WHERE clause: ``{column: WERK, eq: '1000'}``."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_alias=True, validate_by_name=False
    )

    column: str
    eq: FilterValue | None = None
    ne: FilterValue | None = None
    lt: FilterValue | None = None
    le: FilterValue | None = None
    gt: FilterValue | None = None
    ge: FilterValue | None = None
    in_: list[FilterValue] | None = Field(default=None, alias="in", min_length=1)
    not_in: list[FilterValue] | None = Field(default=None, min_length=1)
    is_null: bool | None = None

    @model_validator(mode="after")
    def _one_op(self) -> FilterSpec:
        used = [op for op in _OPS if getattr(self, "in_" if op == "in" else op) is not None]
        if len(used) != 1:
            raise ValueError(f"give exactly one operator of {', '.join(_OPS)} (got {len(used)})")
        return self

    @property
    def op(self) -> str:
        """The operator key used in this filter."""
        return next(op for op in _OPS if getattr(self, "in_" if op == "in" else op) is not None)

    @property
    def operand(self) -> Any:
        """The operand of the operator."""
        return getattr(self, "in_" if self.op == "in" else self.op)


class SourceSpec(Strict):
    """Where the rows come from: a table (optionally in a schema) or a custom read-only SELECT."""

    table: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    query: str | None = None
    # functions a custom query may call beyond the built-in pure ones (docs/read-only.md)
    allow_functions: list[str] = []

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_alias=True, validate_by_name=False
    )

    @model_validator(mode="after")
    def _one(self) -> SourceSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        if self.query is not None and self.schema_ is not None:
            raise ValueError(
                "@schema: 'schema' goes with 'table'; write the schema into the query instead"
            )
        if self.allow_functions and self.query is None:
            raise ValueError("@allow_functions: 'allow_functions' goes with 'query'")
        return self

    def describe(self) -> str:
        """``BDE.BUCHUNGEN`` or ``(custom query)`` for messages."""
        if self.table is None:
            return "(custom query)"
        return f"{self.schema_}.{self.table}" if self.schema_ else self.table


class DstPolicy(Strict):
    """How naive plant-local timestamps in a DST change are read.

    ``ambiguous`` (the repeated hour when clocks go back): ``earlier`` takes the first reading
    (summer time), ``later`` the second. ``nonexistent`` (a wall-clock time in the hour skipped
    when clocks go forward, written by a terminal that had not switched yet): ``shift_forward``
    moves it forward by the gap (02:30 -> 03:30, i.e. read with the offset before the change, as
    PostgreSQL does), ``shift_backward`` moves it back by the gap (02:30 -> 01:30, the offset
    after the change). Either way a duration across the change stays true.
    """

    ambiguous: Literal["earlier", "later"] = "earlier"
    nonexistent: Literal["shift_forward", "shift_backward"] = "shift_forward"


class FoldSpec(Strict):
    """Policies of the fold from bookings to runs (booking tables only); see etl/pipeline/fold.py."""

    logins: Literal["single", "count"] = "single"
    on_new_order: Literal["close", "overlap"] = "close"
    merge_gap: Duration = timedelta(0)
    zero_length: Literal["drop", "keep"] = "drop"
    max_open: Duration | None = None
    clock_skew: Duration = timedelta(0)
    #: bookings up to this long after a run's END still count toward its ``fields``
    grace: Duration = timedelta(0)

    def policy(self) -> Any:
        """The fold's FoldPolicy for these settings."""
        from etl.shapes import FoldPolicy

        return FoldPolicy(
            logins=self.logins,
            on_new_order=self.on_new_order,
            merge_gap=self.merge_gap,
            zero_length=self.zero_length,
            max_open=self.max_open,
            clock_skew=self.clock_skew,
        )


class MappingSpec(Strict):
    """``mappings/NAME.yaml``: how one source table layout maps to the canonical shape."""

    structure: Literal["bookings", "orders"]
    description: str = ""
    source: SourceSpec
    columns: dict[str, Any]
    events: EventCodes | None = None
    filters: list[FilterSpec] = []
    dst: DstPolicy = DstPolicy()
    fold: FoldSpec = FoldSpec()
    #: run attributes: name -> source column, type and (bookings) aggregation
    fields: dict[str, FieldSpec] = {}

    @model_validator(mode="after")
    def _fields(self) -> MappingSpec:
        for name, spec in self.fields.items():
            if name in RESERVED_FIELDS or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(
                    f"@fields.{name}: a field name is lower-case letters, digits and '_', "
                    "and not a run column"
                )
            # a layout of events aggregates its bookings into a run; a layout of runs has one
            # row per run
            aggregates = "event" in STRUCTURE_COLUMNS[self.structure].model_fields
            if aggregates and spec.agg is None:
                raise ValueError(
                    f"@fields.{name}.agg: missing: a {self.structure} field aggregates the "
                    "run's bookings: sum, max, min, first, last, count or distinct"
                )
            if not aggregates and spec.agg is not None:
                raise ValueError(
                    f"@fields.{name}.agg: an {self.structure} field is the row's value: no 'agg'"
                )
        return self

    def arrow_fields(self) -> dict[str, Any]:
        """Field name -> its Arrow type in the Parquet."""
        from etl.shapes import field_type

        return {name: field_type(spec.type, spec.agg) for name, spec in self.fields.items()}

    @model_validator(mode="after")
    def _structure(self) -> MappingSpec:
        # a layout with an event column needs the codes it holds, any other has none
        has_events = "event" in STRUCTURE_COLUMNS[self.structure].model_fields
        if has_events and self.events is None:
            raise ValueError(
                f"@events: missing: a {self.structure} mapping needs 'events' (source codes for "
                "START and END)"
            )
        if not has_events and self.events is not None:
            raise ValueError(
                f"@events: 'events' belongs to a bookings mapping; an {self.structure} mapping "
                "has none"
            )
        return self

    @property
    def booking_columns(self) -> BookingColumns:
        """Columns of a bookings mapping (validated on load)."""
        return BookingColumns.model_validate(self.columns)

    @property
    def order_columns(self) -> OrderColumns:
        """Columns of an orders mapping (validated on load)."""
        return OrderColumns.model_validate(self.columns)

    def column_specs(self) -> dict[str, ColumnSpec]:
        """Canonical field name -> its ColumnSpec, for the mapping's structure."""
        cols = STRUCTURE_COLUMNS[self.structure].model_validate(self.columns)
        return {
            name: getattr(cols, name) for name in type(cols).model_fields if getattr(cols, name)
        }


# --------------------------------------------------------------------------- jobs


class JobSpec(Strict):
    """``jobs/NAME.yaml``: one sync job wiring a connector to a mapping."""

    connector: str
    mapping: str
    description: str = ""
    enabled: bool = True
    schedule: str | None = None
    timezone: TimeZoneName | None = None
    start_from: StartFrom = None
    safety_lag: Duration | None = None
    reread: Duration | None = None
    parquet: bool = True
    #: the plant label of the job's runs and anomalies (overrides the connector's ``plant``)
    plant: str | None = None
    #: values for the ``${name}`` variables of the mapping (``${plant}`` defaults to ``plant``)
    variables: dict[str, StrictStr | StrictInt] = {}
    #: row filters appended to the mapping's own
    filters: list[FilterSpec] = []
    max_anomalies: StrictInt | StrictStr | None = None
    stale_after: int = Field(default=3, ge=1, le=1000)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from etl.config.cron import cron_seconds, cron_trigger

        fields = value.split()
        if len(fields) != 5 and not (len(fields) == 6 and cron_seconds()):
            raise ValueError(f"expected a 5-field cron expression like '0 * * * *', got {value!r}")
        if re.search(r"\d", fields[-1]):
            raise ValueError(
                f"write the day of week with names (mon-fri, sun), not numbers, in {value!r}: "
                "crontab counts 0 as Sunday, APScheduler as Monday"
            )
        try:
            cron_trigger(value, "UTC")
        except ValueError as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
        return value

    @field_validator("max_anomalies")
    @classmethod
    def _anomaly_limit(cls, value: int | str | None) -> int | str | None:
        if value is None or (isinstance(value, int) and value >= 0):
            return value
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", str(value))
        if match is None or float(match.group(1)) > 100:
            raise ValueError(
                f"expected a count (0 or more) or a percentage of the rows read like '5%', "
                f"got {value!r}"
            )
        return value

    def anomalies_allowed(self, rows_read: int) -> int | None:
        """How many anomalies a run that read ``rows_read`` rows may find (None: no limit)."""
        if self.max_anomalies is None:
            return None
        if isinstance(self.max_anomalies, int):
            return self.max_anomalies
        percent = float(self.max_anomalies.strip().rstrip("%"))
        return int(rows_read * percent / 100)


# --------------------------------------------------------------------------- the project


@dataclass(frozen=True)
class Job:
    """A job with its connector and mapping resolved and its defaults applied."""

    name: str
    spec: JobSpec
    connector_name: str
    connector: ConnectorSpec
    mapping_name: str
    mapping: MappingSpec
    start_from: datetime  # naive wall-clock in the connector's time zone
    safety_lag: timedelta
    reread: timedelta
    batch_size: int

    @property
    def plant(self) -> str | None:
        """The plant label of the job's runs: the job's ``plant``, else the connector's."""
        return self.spec.plant if self.spec.plant is not None else self.connector.plant

    @property
    def zone_name(self) -> str:
        """The IANA time zone of the plant (the connector's ``timezone``)."""
        return self.connector.timezone


@dataclass
class Project:
    """A loaded, validated project."""

    root: Path
    spec: ProjectSpec
    connectors: dict[str, ConnectorSpec]
    mappings: dict[str, MappingSpec]
    jobs: dict[str, Job]
    files: dict[str, YamlDoc] = field(default_factory=dict)  # "connectors/x" -> doc
    #: jobs left out because their own files (job, connector, mapping) have errors -> the errors
    #: (only when loaded with ``partial=True``; ``etl validate`` refuses the whole project)
    broken: dict[str, list[str]] = field(default_factory=dict)
    #: every problem found in the project's files (``partial=True``: the jobs above still run)
    problems: list[str] = field(default_factory=list)

    @property
    def secrets(self) -> list[str]:
        """Every secret value in the project (to redact from messages and logs)."""
        out: list[str] = []
        for doc in self.files.values():
            for loc, value in doc.substituted:
                if any(part in str(loc[-1]).lower() for part in SECRET_KEYS):
                    out.append(value)
        if self.spec.s3 is not None:
            from etl.config.locations import credential_secrets

            out += credential_secrets()
        for conn in self.connectors.values():
            extra = conn.http.secrets() if conn.http is not None else []
            for secret in (conn.password, conn.url, *extra):
                if secret is not None and secret.get_secret_value():
                    out.append(secret.get_secret_value())
        return sorted({s for s in out if len(s) >= 3}, key=len, reverse=True)

    def job(self, name: str) -> Job:
        """The job called ``name``, or a ConfigError listing the jobs that exist (or, for a job
        whose files have errors, those errors)."""
        if name in self.broken:
            raise ConfigError(
                self.broken[name],
                hint=f"fix the file(s) of job {name!r}; 'etl validate' lists every problem",
            )
        if name not in self.jobs:
            raise ConfigError(
                f"job {name!r} does not exist in {self.root / 'jobs'}",
                hint=suggest(name, list(self.jobs), "jobs"),
            )
        return self.jobs[name]

    def require_env(self, job_names: list[str] | None = None) -> None:
        """Raise for unset ``${ENV}`` variables in the files the given jobs use (None: all)."""
        names = list(self.jobs) if job_names is None else job_names
        keys: list[str] = [PROJECT_FILE]
        for name in names:
            job = self.job(name)
            keys += [
                f"jobs/{name}",
                f"connectors/{job.connector_name}",
                f"mappings/{job.mapping_name}",
            ]
        if job_names is None:
            keys += list(self.files)
        problems: list[str] = []
        for key in dict.fromkeys(keys):
            doc = self.files.get(key)
            if doc is None:
                continue
            for loc, var in doc.missing_env:
                problems.append(f"{doc.where(loc)}: environment variable {var} is not set")
        if problems:
            raise ConfigError(problems, hint="export the variables or use ${VAR:-default}")


__all__ = [
    "DIALECTS",
    "PROJECT_FILE",
    "BookingColumns",
    "ColumnSpec",
    "ConnectorSpec",
    "EventCodes",
    "FilterSpec",
    "Job",
    "JobSpec",
    "LockSpec",
    "MappingSpec",
    "MetricsSpec",
    "OrderColumns",
    "Project",
    "ProjectSpec",
    "S3Spec",
    "SchedulerSpec",
    "normalize_code",
]
