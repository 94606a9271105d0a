"""What each sampled column holds: type, distinct values, NULLs, shapes, and which columns (or
date + time pairs) hold times. Pure: a DataFrame sample in, profiles out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa

from etl.commands.discover.vocabulary import name_score
from etl.config.models import ColumnSpec, DstPolicy
from etl.pipeline.mapping import text_values, timestamps

DATETIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%Y%m%d%H%M%S",
    "%m/%d/%Y %H:%M:%S",
)
DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y")
TIME_FORMATS = ("%H:%M:%S.%f", "%H:%M:%S", "%H:%M", "%H%M%S")
_UTC = ZoneInfo("UTC")
HEAD = 200
PARSED_SHARE = 0.98  # text is a time when this share of its values parse (the rest: bad rows)


@dataclass
class Temporal:
    """A column that holds times: its kind and, for text, the strptime format its values fit.

    ``weak``: an integer column whose values all read as HHMMSS; a time only when paired with a
    date column.
    """

    kind: str  # "datetime", "date", "time"
    format: str | None = None
    weak: bool = False


@dataclass
class Column:
    """One column over the sample: the catalog's view plus what its values show."""

    name: str
    position: int
    sa_type: Any
    raw: pd.Series = field(repr=False)
    text: pd.Series = field(repr=False)  # codes as trimmed text, NA for NULL/blank
    n: int  # values present
    nulls: float  # share of rows NULL or blank
    distinct: int
    temporal: Temporal | None
    numeric: bool
    fractional: bool
    surrogate: str | None = None  # why this is a surrogate key, if it is one

    @property
    def ratio(self) -> float:
        """Distinct values per present value."""
        return self.distinct / max(self.n, 1)


@dataclass
class TimeField:
    """A source of times: a datetime column or a date + time pair, with its naive values."""

    spec: ColumnSpec
    naive: pd.Series = field(repr=False)  # wall-clock, NaT where missing
    columns: tuple[str, ...]
    note: str

    @property
    def label(self) -> str:
        """``BUCHDAT + BUCHZEIT`` or ``ZEITPUNKT``."""
        return " + ".join(self.columns)


def profile_columns(sample: pd.DataFrame, columns: list[Any], pk: set[str]) -> list[Column]:
    """Profile every column of ``sample`` (``columns``: the catalog's ColumnInfo list)."""
    out = []
    for position, info in enumerate(columns):
        raw = sample[info.name] if info.name in sample else pd.Series([], dtype=object)
        numeric = pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw)
        fractional = False
        if numeric:
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            present = values[~np.isnan(values)]
            fractional = bool(present.size) and bool(np.any(present % 1 != 0))
        elif raw.dtype == object and len(raw.dropna()):
            kinds = pd.api.types.infer_dtype(raw, skipna=True)
            if kinds == "decimal":
                values = pd.to_numeric(raw, errors="coerce")
                numeric = True
                fractional = bool((values.dropna() % 1 != 0).any())
        try:
            text = text_values(raw, True)
        except (TypeError, ValueError):
            text = raw.astype("string").str.strip()
        n = int(text.notna().sum())
        column = Column(
            name=info.name,
            position=position,
            sa_type=info.sa_type,
            raw=raw,
            text=text,
            n=n,
            nulls=1 - n / max(len(raw), 1),
            distinct=int(text.nunique()),
            temporal=temporal_kind(info.sa_type, raw),
            numeric=numeric,
            fractional=fractional,
        )
        column.surrogate = _surrogate(column, info.name in pk and len(pk) == 1)
        out.append(column)
    return out


def temporal_kind(type_: Any, values: pd.Series) -> Temporal | None:
    """Whether a column holds times, by its type or by its sampled values (text or integers)."""
    if isinstance(type_, sa.DateTime) or type(type_).__name__.upper() in (
        "DATETIME2",
        "SMALLDATETIME",
        "DATETIMEOFFSET",
    ):
        present = pd.to_datetime(values.dropna(), errors="coerce", utc=False)
        if len(present) and _all_midnight(present):
            return Temporal("date")  # a DATETIME that only ever holds days
        return Temporal("datetime")
    if isinstance(type_, sa.Date):
        return Temporal("date")
    if isinstance(type_, sa.Time):
        return Temporal("time")
    present = values.dropna()
    if present.empty:
        return None
    if pd.api.types.is_integer_dtype(present) or (
        pd.api.types.is_float_dtype(present) and bool((present % 1 == 0).all())
    ):
        ints = present.astype("int64")
        if ((ints >= 19000101) & (ints <= 21001231)).all():
            parsed = pd.to_datetime(ints.astype(str), format="%Y%m%d", errors="coerce")
            if parsed.notna().mean() >= PARSED_SHARE:
                return Temporal("date", "%Y%m%d")
        if ((ints >= 0) & (ints <= 235959)).all() and ints.nunique() > 12:
            hours, minutes, seconds = ints // 10000, ints // 100 % 100, ints % 100
            if ((hours < 24) & (minutes < 60) & (seconds < 60)).all():
                return Temporal("time", None, weak=True)
        return None
    if pd.api.types.infer_dtype(present, skipna=True) != "string":
        if all(hasattr(v, "hour") and not hasattr(v, "year") for v in present.head(50)):
            return Temporal("time")  # datetime.time objects from an untyped column
        return None
    text = present.astype("string").str.strip()
    # blank and SAP-style initial values ('00000000', '000000') mean "not set", not a bad time
    text = text[(text != "") & ~text.str.fullmatch(r"0+").fillna(False)]
    if text.empty:
        return None
    for kind, formats in (
        ("datetime", DATETIME_FORMATS),
        ("date", DATE_FORMATS),
        ("time", TIME_FORMATS),
    ):
        for fmt in formats:
            width = {"%H%M%S": 6, "%Y%m%d": 8, "%Y%m%d%H%M%S": 14}.get(fmt)
            if width is not None and not (text.str.len() == width).all():
                continue
            head = pd.to_datetime(text.head(HEAD), format=fmt, errors="coerce")
            if head.notna().mean() < PARSED_SHARE:
                continue  # a cheap look at the first values before parsing them all
            parsed = pd.to_datetime(text, format=fmt, errors="coerce")
            if parsed.notna().mean() >= PARSED_SHARE:
                if kind == "datetime" and _all_midnight(parsed):
                    continue
                # six digits read as HHMMSS are a time only when paired with a date
                return Temporal(kind, fmt, weak=fmt == "%H%M%S")
    return None


def _all_midnight(values: pd.Series) -> bool:
    stamps = pd.DatetimeIndex(values)
    return bool(((stamps.hour == 0) & (stamps.minute == 0) & (stamps.second == 0)).all())


def _surrogate(column: Column, primary_key: bool) -> str | None:
    """A key that identifies rows, not orders: unique in the sample and an integer sequence, a
    one-column primary key, or UUID-like text."""
    if column.n < 20 or column.distinct < column.n or column.temporal is not None:
        return None
    if column.numeric and not column.fractional:
        values = pd.to_numeric(column.raw, errors="coerce").dropna()
        span = float(values.max() - values.min() + 1)
        if span <= 1.5 * len(values) * max(1.0, 1.0):
            return "unique per row and a dense integer sequence (an autoincrement)"
    uuid = r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
    if column.text.str.fullmatch(uuid).fillna(False).all():
        return "unique per row and UUID-like"
    if primary_key:
        return PRIMARY_KEY
    return None


#: the surrogate reason of a one-column primary key that is neither an autoincrement nor a UUID:
#: in an order table that is the order number itself
PRIMARY_KEY = "the primary key, unique per row"


def time_fields(columns: list[Column], sample: pd.DataFrame) -> list[TimeField]:
    """Datetime columns and date + time pairs (every layout), each with its naive values."""
    out: list[TimeField] = []
    for column in columns:
        kind = column.temporal
        if kind is not None and kind.kind == "datetime":
            spec = ColumnSpec(column=column.name, format=kind.format)
            out.append(_field(spec, sample, (column.name,), "a datetime column"))
    dates = [c for c in columns if c.temporal is not None and c.temporal.kind == "date"]
    times = [c for c in columns if c.temporal is not None and c.temporal.kind == "time"]
    pairs: list[tuple[float, Column, Column]] = []
    for d in dates:
        for t in times:
            score = _pair_score(d, t)
            if score > 0:
                pairs.append((score, d, t))
    used: set[str] = set()
    for _, d, t in sorted(pairs, key=lambda p: -p[0]):
        if d.name in used or t.name in used:
            continue
        used |= {d.name, t.name}
        assert d.temporal is not None and t.temporal is not None
        spec = ColumnSpec(
            date=d.name,
            time=t.name,
            date_format=d.temporal.format,
            time_format=None if t.numeric else t.temporal.format,
        )
        shape = "integers" if t.numeric else "text" if t.temporal.format else "typed"
        out.append(_field(spec, sample, (d.name, t.name), f"date and time columns ({shape})"))
    return [f for f in out if f.naive.notna().any()]


def _pair_score(d: Column, t: Column) -> float:
    """How likely ``t`` is the time of day for date column ``d``: a shared name stem, adjacency."""
    assert t.temporal is not None
    stem_d, stem_t = _stem(d.name), _stem(t.name)
    score = 0.0
    if stem_d and stem_d == stem_t:
        score += 3
    elif stem_d and stem_t and (stem_d.startswith(stem_t) or stem_t.startswith(stem_d)):
        score += 2
    distance = abs(d.position - t.position)
    score += 2 if distance == 1 else 1 if distance == 2 else 0
    if t.temporal.weak and score < 2 and name_score(t.name, "time") == 0:
        return 0  # integers or six digits that merely fit HHMMSS, far from the date
    if name_score(t.name, "time"):
        score += 1
    return score


def _stem(name: str) -> str:
    """The name without its date/time words: ``BUCHDAT`` and ``BUCHZEIT`` share ``buch``."""
    from etl.commands.discover.vocabulary import strip_time_words

    return strip_time_words(name)


def _field(spec: ColumnSpec, sample: pd.DataFrame, cols: tuple[str, ...], note: str) -> TimeField:
    try:
        utc = timestamps(sample, spec, _UTC, DstPolicy())
        naive = utc.dt.tz_convert(None)
    except (KeyError, ValueError, TypeError):
        naive = pd.Series(pd.NaT, index=sample.index, dtype="datetime64[us]")
    return TimeField(spec=spec, naive=naive, columns=cols, note=note)
