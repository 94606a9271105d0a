"""Raw source rows -> the canonical booking or order shape, vectorized; bad rows become anomalies.

Canonical bookings: ``ts`` (UTC, microseconds), ``machine_code``, ``order_code``, ``product_code``,
``event`` (START/END). Canonical runs (order tables): ``machine_code``, ``order_code``,
``product_code``, ``start``, ``end`` (NaT while running).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.config.models import ColumnSpec, DstPolicy, MappingSpec, normalize_code, sentinel_text
from etl.shapes import ANOMALY_COLUMNS, DEFAULT_PHASE, empty_anomalies

TS = "datetime64[us, UTC]"
#: what Python's datetime, and so every store, report and Parquet reader, can hold
FIRST = pd.Timestamp("0001-01-01", tz="UTC")
LAST = pd.Timestamp("9999-12-31 23:59:59.999999", tz="UTC")
CODE_FIELDS = ("machine_code", "order_code", "product_code", "event")


@dataclass
class Mapped:
    """The result of mapping one batch: canonical rows, anomalies, and event-code counts."""

    rows: pd.DataFrame
    anomalies: pd.DataFrame
    codes: Counter[tuple[str, str]] = field(
        default_factory=Counter
    )  # (code, START/END/IGNORE/UNKNOWN)
    rows_read: int = 0


def _arrow_text(series: pd.Series) -> pa.Array | pa.ChunkedArray | None:
    """The column as Arrow text where that costs no Python call per value: Arrow-backed text,
    integers, and floats that are all whole or NaN (an integer column with NULLs after
    ``to_pandas``). None for anything else (objects, booleans, fractional floats)."""
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        return pa.array(series.array)
    if isinstance(dtype, pd.ArrowDtype) and (
        pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype)
    ):
        return pa.array(series.array)
    if pd.api.types.is_integer_dtype(dtype):  # bool is not an integer dtype here
        return pc.cast(pa.array(series), pa.string())
    if pd.api.types.is_float_dtype(dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(values)
        present = values[~missing]
        # whole and exactly representable: the same digits as Int64's text; else the slow way
        with np.errstate(invalid="ignore"):  # inf % 1
            exact = np.all(present % 1 == 0) and np.all(np.abs(present) < 2**53)
        if not exact:
            return None
        whole = np.where(missing, 0, values).astype(np.int64)
        return pc.cast(pa.array(whole, mask=missing), pa.string())
    return None


def text_values(series: pd.Series, trim: bool) -> pd.Series:
    """Codes as text: 10 -> '10', 10.0 -> '10', ' M-01 ' -> 'M-01' (trim); '' -> NA."""
    target = pd.StringDtype()  # what ``astype("string")`` gives: Arrow-backed where pyarrow is
    fast = _arrow_text(series) if target.storage == "pyarrow" else None
    if fast is not None:
        # the kernels pandas' own ``.str.strip()`` and ``== ""`` use, without a pandas object
        # per step (the slow path below gives the same values)
        if trim:
            fast = pc.utf8_trim_whitespace(fast)
        empty = pc.equal(pc.binary_length(fast), 0)
        if pc.any(empty).as_py():
            fast = pc.if_else(empty, pa.scalar(None, fast.type), fast)
        return pd.Series(target.__from_arrow__(fast), index=series.index, name=series.name)
    if pd.api.types.is_bool_dtype(series):
        out = series.astype("string")
    elif pd.api.types.is_integer_dtype(series):
        out = series.astype("Int64").astype("string")
    elif pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype="float64", na_value=np.nan)  # pd.ArrowDtype has no %
        with np.errstate(invalid="ignore"):  # inf % 1
            whole = pd.Series(np.isfinite(values) & (values % 1 == 0), index=series.index)
        out = series.astype("string")
        out[whole] = series[whole].astype("Int64").astype("string")
    elif pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        out = series.astype("string")  # plain text: no Python call per value
    else:
        out = series.map(
            lambda v: (
                v
                if v is None or isinstance(v, str)
                else normalize_code(v)
                if not (isinstance(v, float) and np.isnan(v))
                else None
            )
        ).astype("string")
    if trim:
        out = out.str.strip()
    return out.mask(out == "")


def localize(naive: pd.Series, zone: ZoneInfo, dst: DstPolicy) -> pd.Series:
    """Naive wall-clock times of ``zone`` -> UTC, by the mapping's DST policy."""
    if naive.dt.tz is not None:
        return naive.dt.tz_convert("UTC").astype(TS)
    if zone.key == "UTC":
        return naive.dt.tz_localize("UTC").astype(TS)
    if naive.dtype == "datetime64[us]":
        by_hour = _utc_by_hour(naive, zone)
        if by_hour is not None:
            micros, edge = by_hour
            if edge.any():  # by position: the index may repeat labels (concatenated batches)
                each = _localize_each(naive[edge].reset_index(drop=True), zone, dst)
                micros[edge] = each.dt.tz_convert(None).to_numpy().view(np.int64)
            return pd.Series(micros.view("datetime64[us]"), index=naive.index).dt.tz_localize("UTC")
    return _localize_each(naive, zone, dst)


_HOUR_US = 3_600_000_000
_NAT = np.iinfo(np.int64).min


def _utc_by_hour(naive: pd.Series, zone: ZoneInfo) -> tuple[np.ndarray, np.ndarray] | None:
    """UTC microseconds of naive ``datetime64[us]`` wall-clock times, from one UTC offset per
    wall-clock hour (pandas' ``tz_localize`` run on the hours the batch spans, not per value),
    and the values that need ``_localize_each``: those in an hour whose start or end is
    ambiguous or skipped, or whose offset differs at its two ends (a change inside the hour).

    Exact as long as a zone never changes its offset twice within one hour (tzdata's closest
    changes are a week apart). None when the batch spans more hours than it has values, or
    holds no value: then localizing each value is as cheap.
    """
    values = naive.to_numpy().view(np.int64)
    present = values != _NAT
    if not present.any():
        return None
    hours = values // _HOUR_US
    first, last = int(hours[present].min()), int(hours[present].max())
    if last - first + 2 > max(len(values), 64):
        return None
    grid = np.arange(first, last + 2, dtype=np.int64) * _HOUR_US
    local = pd.DatetimeIndex(grid.view("datetime64[us]")).tz_localize(
        zone.key, ambiguous="NaT", nonexistent="NaT"
    )
    utc = local.as_unit("us").asi8
    offset = grid - utc
    known = utc != _NAT
    steady = known[:-1] & known[1:] & (offset[:-1] == offset[1:])
    slot = np.where(present, hours - first, 0)
    with np.errstate(over="ignore"):
        micros = values - offset[:-1][slot]
    micros[~present] = _NAT
    return micros, present & ~steady[slot]


def _localize_each(naive: pd.Series, zone: ZoneInfo, dst: DstPolicy) -> pd.Series:
    """``localize`` value by value (pandas' ``tz_localize``; skipped times moved in Python)."""
    ambiguous = np.full(len(naive), dst.ambiguous == "earlier")
    local = naive.dt.tz_localize(zone.key, ambiguous=ambiguous, nonexistent="NaT")
    skipped = local.isna() & naive.notna()
    utc = local.dt.tz_convert("UTC").astype(TS)
    if skipped.any():
        # Wall-clock times in a skipped hour move by the zone's own gap: fold=0 reads them with
        # the offset before the change (shift_forward), fold=1 with the offset after it.
        fold = 0 if dst.nonexistent == "shift_forward" else 1
        moved = [
            pd.Timestamp(stamp.to_pydatetime().replace(tzinfo=zone, fold=fold)).tz_convert("UTC")
            for stamp in naive[skipped]
        ]
        utc[skipped] = pd.Series(moved, index=naive.index[skipped]).astype(TS)
    return utc


def _datetimes(series: pd.Series, fmt: str | None) -> pd.Series:
    """Parse a column of datetimes, dates or text into datetime64 (NaT where unparseable)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    if series.empty:
        return pd.Series([], dtype="datetime64[us]", index=series.index)
    if fmt:
        return pd.to_datetime(series.astype("string"), format=fmt, errors="coerce")
    values = series.where(series.notna(), None)
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind == "string" or (
        kind.startswith("mixed") and values.map(lambda v: isinstance(v, str)).any()
    ):
        text = values.astype("string").str.strip()
        # text with an offset ('...+02:00', '...Z') is an instant: convert, never shift
        offset = text.str.contains(r"(?:[+-]\d{2}:?\d{2}|Z)$", regex=True, na=False).any()
        return pd.to_datetime(text, format="ISO8601", errors="coerce", utc=bool(offset))
    aware = values.map(lambda v: getattr(v, "tzinfo", None) is not None).any()
    return pd.to_datetime(values, errors="coerce", utc=bool(aware))


def _time_of_day(series: pd.Series, fmt: str | None) -> pd.Series:
    """Parse a time-of-day column (TIME, timedelta, 'HH:MM[:SS]', 'HHMMSS', int HHMMSS)."""
    if pd.api.types.is_timedelta64_dtype(series):
        return series
    if pd.api.types.is_numeric_dtype(series):
        whole = series.astype("Float64")
        hours, rest = whole // 10000, whole % 10000
        minutes, seconds = rest // 100, rest % 100
        ok = (hours < 24) & (minutes < 60) & (seconds < 60) & (whole >= 0)
        total = (hours * 3600 + minutes * 60 + seconds).where(ok)
        return pd.to_timedelta(total.astype("float64"), unit="s")
    text = series.astype("string").str.strip()  # NULL/NaN -> NA, TIME objects -> 'HH:MM:SS'

    if fmt:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        return parsed - parsed.dt.normalize()
    text = text.str.replace(r"^(\d{2})(\d{2})(\d{2})$", r"\1:\2:\3", regex=True)
    text = text.str.replace(r"^(\d{1,2}):(\d{2})$", r"\1:\2:00", regex=True)
    # Arrow's regex kernel, not a Python call per value
    parts = pc.extract_regex(
        pa.array(text.array),
        r"^(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d):(?P<s>[0-5]\d)(?:\.(?P<f>\d{1,6}))?$",
    )
    seconds = pc.add(
        pc.add(
            pc.multiply(pc.cast(pc.struct_field(parts, "h"), pa.int64()), 3600),
            pc.multiply(pc.cast(pc.struct_field(parts, "m"), pa.int64()), 60),
        ),
        pc.cast(pc.struct_field(parts, "s"), pa.int64()),
    )
    fraction = pc.cast(pc.utf8_rpad(pc.struct_field(parts, "f"), width=6, padding="0"), pa.int64())
    micros = pc.add(pc.multiply(seconds, 1_000_000), fraction)
    total = pd.Series(micros.to_numpy(zero_copy_only=False), index=series.index, dtype="float64")
    return pd.to_timedelta(total, unit="us")  # unmatched -> NaN -> NaT


def _carries_offset(column: pd.Series) -> pd.Series | None:
    """Per value: does it carry its own UTC offset? None for typed (non-object) columns."""
    if column.dtype != object and not pd.api.types.is_string_dtype(column):
        return None
    if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        text = column.astype("string").str.strip()
        return text.str.contains(r"(?:[+-]\d{2}:?\d{2}|Z)$", regex=True).fillna(False).astype(bool)
    return column.map(
        lambda v: (
            (getattr(v, "tzinfo", None) is not None)
            if not isinstance(v, str)
            else bool(re.search(r"(?:[+-]\d{2}:?\d{2}|Z)$", v.strip()))
        )
    ).astype(bool)


def timestamps(
    frame: pd.DataFrame,
    spec: ColumnSpec,
    zone: ZoneInfo,
    dst: DstPolicy,
    instants: frozenset[str] = frozenset(),
) -> pd.Series:
    """One timestamp field (a column, or date + time) as UTC; NaT where missing, unparseable,
    one of the field's ``sentinels``, or outside what every store and reader can hold (the years
    1 to 9999 in UTC: PostgreSQL's ``infinity`` and a far end moved past 9999 by the zone)."""
    utc = _timestamps(frame, spec, zone, dst, instants)
    unusable = utc.notna() & ((utc < FIRST) | (utc > LAST))
    if spec.sentinels:
        unusable |= sentinel_rows(frame, spec)
    return utc.mask(unusable) if unusable.any() else utc


def sentinel_rows(frame: pd.DataFrame, spec: ColumnSpec) -> pd.Series:
    """Rows whose raw value is one of the field's ``sentinels`` (a date matches any time of that
    day; 'infinity', '-infinity' and '0000-00-00' match the raw text)."""
    hit = pd.Series(False, index=frame.index)
    names = spec.source_columns()
    if not spec.sentinels or not names:
        return hit
    days: list[pd.Timestamp] = []
    moments: list[pd.Timestamp] = []
    words: list[str] = []
    for value in spec.sentinels:
        parsed = sentinel_text(value)
        if isinstance(parsed, str):
            words.append(parsed)
        elif parsed is not None and len(value.strip()) <= 10:
            days.append(pd.Timestamp(parsed.date()))
        elif parsed is not None:
            moments.append(pd.Timestamp(parsed.replace(tzinfo=None)))
    column = frame[names[0]]
    if words and pd.api.types.is_datetime64_any_dtype(column):
        wanted = [k for k, v in _ADBC_INFINITY.items() if v.strip("'") in words]
        if "+infinity" in words:
            wanted.append(min(_ADBC_INFINITY))
        micros = column.dt.tz_localize(None) if column.dt.tz is not None else column
        ints = micros.astype("datetime64[us]").to_numpy().view("i8")
        hit |= pd.Series(np.isin(ints, wanted), index=frame.index)
    elif words:
        text = column.astype("string").str.strip().str.lower()
        zero = text.str.fullmatch(r"0000-00-00(?:[ t]00:00(?::00(?:\.0+)?)?)?", na=False)
        hit |= text.isin([w for w in words if not w.startswith("0000")]).fillna(False)
        if any(w.startswith("0000") for w in words):
            hit |= zero.astype(bool)
    if days or moments:
        fmt = spec.format if spec.column is not None else spec.date_format
        wall = _datetimes(column, fmt)
        if wall.dt.tz is not None:
            wall = wall.dt.tz_localize(None)
        wall = wall.astype("datetime64[us]")
        if days:
            hit |= wall.dt.normalize().isin(days).fillna(False)
        if moments and spec.column is not None:
            hit |= wall.isin(moments).fillna(False)
    return hit.astype(bool)


def _timestamps(
    frame: pd.DataFrame,
    spec: ColumnSpec,
    zone: ZoneInfo,
    dst: DstPolicy,
    instants: frozenset[str],
) -> pd.Series:
    if spec.value is not None:
        naive = pd.Series(pd.to_datetime(str(spec.value)), index=frame.index)
    elif spec.column is not None:
        column = frame[spec.column]
        aware = _carries_offset(column) if spec.format is None else None
        if aware is not None and aware.any() and not aware.all():
            # a column mixing instants and wall-clock values: each kind read on its own terms
            out = pd.Series(pd.NaT, index=frame.index, dtype=TS)
            out[aware] = _datetimes(column[aware], None).dt.tz_convert("UTC").astype(TS)
            rest = _datetimes(column[~aware], None).astype("datetime64[us]")
            out[~aware] = localize(rest, zone, dst)
            return out
        naive = _datetimes(column, spec.format)
    else:
        assert spec.date is not None and spec.time is not None
        day = _datetimes(frame[spec.date], spec.date_format)
        if day.dt.tz is not None:
            day = day.dt.tz_localize(None)
        naive = day.dt.normalize() + _time_of_day(frame[spec.time], spec.time_format)
    if naive.dt.tz is None:
        naive = naive.astype("datetime64[us]")
    if spec.column is not None and spec.column in instants:
        zone = ZoneInfo("UTC")  # the driver hands over instants as naive UTC (MySQL TIMESTAMP)
    return _localize_far(naive, zone, dst)


# wall-clock times between these localize as any other; the first and last day a datetime holds
# (0001-01-01, 9999-12-31: favourite "no date" values) and anything beyond is moved by the zone's
# offset on the nearest safe day, in integers: pandas refuses to localize a time whose UTC instant
# may leave the years 1 to 9999
_SAFE_LO = pd.Timestamp("0001-01-02")
_SAFE_HI = pd.Timestamp("9999-12-30")


def _localize_far(naive: pd.Series, zone: ZoneInfo, dst: DstPolicy) -> pd.Series:
    if naive.dt.tz is not None or zone.key == "UTC":
        return localize(naive, zone, dst)
    far = (naive < _SAFE_LO) | (naive > _SAFE_HI)
    if not far.any():
        return localize(naive, zone, dst)
    utc = localize(naive.mask(far), zone, dst)
    values = naive[far].to_numpy().view(np.int64)
    shift = np.empty(len(values), dtype=np.int64)
    for edge, low in ((_SAFE_LO, True), (_SAFE_HI, False)):
        offset = edge.tz_localize(zone.key).utcoffset()
        micros = int(offset.total_seconds()) * 1_000_000 if offset is not None else 0
        shift[(values < _SAFE_LO.as_unit("us").asm8.view("i8")) == low] = micros
    with np.errstate(over="ignore"):
        moved = (values - shift).view("datetime64[us]")
    utc[far] = pd.Series(moved, index=naive.index[far]).dt.tz_localize("UTC")
    return utc


def texts(frame: pd.DataFrame, spec: ColumnSpec | None, trim_default: bool = True) -> pd.Series:
    """One text field: a column (trimmed unless ``trim: false``) or a constant."""
    if spec is None:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    if spec.value is not None:
        return pd.Series(str(spec.value), index=frame.index, dtype="string")
    if spec.column is None:
        raise ValueError("a text field cannot combine date and time columns")
    trim = trim_default if spec.trim is None else spec.trim
    return text_values(frame[spec.column], trim)


# ADBC's PostgreSQL driver hands over infinity and -infinity as PostgreSQL's int64 extremes
# moved to the Unix epoch (microseconds): the first wraps around, both land before the year 1
_ADBC_INFINITY = {-9222425352054775809: "'infinity'", -9222425352054775808: "'-infinity'"}


def _shown(value: object) -> str:
    """A raw value as an anomaly's detail shows it (anomalies only: a call per row is fine)."""
    if value is None or value is pd.NA or value != value:
        return "NULL"
    if isinstance(value, pd.Timestamp):
        if not FIRST.tz_localize(None) <= value.tz_localize(None) <= LAST.tz_localize(None):
            micros = int(value.as_unit("us").asm8.view("i8"))
            return _ADBC_INFINITY.get(micros, f"{value} (out of range)")
        return repr(value.isoformat(sep=" "))
    if isinstance(value, datetime):
        return repr(value.isoformat(sep=" "))
    return repr(value)


def _raw_detail(frame: pd.DataFrame, spec: ColumnSpec, mask: pd.Series) -> pd.Series:
    cols = spec.source_columns()
    detail = pd.Series("", index=frame.index[mask], dtype="string")
    for name in cols:
        shown = frame.loc[mask, name].map(_shown)
        detail = detail + f"{name}=" + shown.astype("string") + " "
    return detail.str.strip()


def _anomalies(
    kind: str,
    rows: pd.DataFrame,
    mask: pd.Series | np.ndarray,
    detail: pd.Series | str | Callable[[], pd.Series | str],
) -> pd.DataFrame | None:
    """The anomalies of the rows in ``mask``; ``detail`` may be a callable, built only if any."""
    if not mask.any():
        return None  # the common case: no frame built per check and batch
    out = pd.DataFrame(
        {
            "kind": kind,
            "machine_code": rows.loc[mask, "machine_code"],
            "order_code": rows.loc[mask, "order_code"],
            "ts": rows.loc[mask, "ts"] if "ts" in rows else pd.NaT,
            "detail": detail() if callable(detail) else detail,
        }
    )
    return out[ANOMALY_COLUMNS]


_KINDS = ("START", "END", "IGNORE", "UNKNOWN")


def _event_codes(
    frame: pd.DataFrame, spec: ColumnSpec | None
) -> tuple[np.ndarray, list[str | None]]:
    """The event field as codes: each row's position in the list of its distinct texts (as
    ``texts`` gives them; None for NULL or empty). A typed column is made text once per distinct
    value, not per row; Python objects (where 1, 1.0 and True would share a slot) per row."""
    if spec is None or spec.column is None or frame[spec.column].dtype == object:
        text = texts(frame, spec)
        positions, distinct = pd.factorize(text, use_na_sentinel=False)
        return positions, [None if pd.isna(code) else str(code) for code in distinct]
    trim = True if spec.trim is None else spec.trim
    raw_positions, raw_distinct = pd.factorize(frame[spec.column], use_na_sentinel=False)
    slots: dict[str | None, int] = {}
    remap = np.empty(len(raw_distinct), dtype=np.intp)
    for i, code in enumerate(text_values(pd.Series(raw_distinct), trim)):
        remap[i] = slots.setdefault(None if pd.isna(code) else str(code), len(slots))
    return remap[raw_positions], list(slots)


def map_bookings(
    frame: pd.DataFrame,
    mapping: MappingSpec,
    zone: ZoneInfo,
    instants: frozenset[str] = frozenset(),
) -> Mapped:
    """Raw booking rows -> canonical bookings (START/END only) + anomalies + code counts."""
    cols = mapping.booking_columns
    assert mapping.events is not None
    rows = pd.DataFrame(
        {
            "ts": timestamps(frame, cols.timestamp, zone, mapping.dst, instants),
            "machine_code": texts(frame, cols.machine_code),
            "order_code": texts(frame, cols.order_code),
            "product_code": texts(frame, cols.product_code),
        },
        index=frame.index,
    )
    if cols.plant is not None:
        rows["plant"] = texts(frame, cols.plant)
    # a handful of distinct codes: look each up once, then count and spread them by position
    positions, names = _event_codes(frame, cols.event)
    lookup = mapping.events.lookup()
    distinct_kinds = [
        lookup.get(code, "UNKNOWN") if code is not None else "UNKNOWN" for code in names
    ]
    kind_of = np.array([_KINDS.index(kind) for kind in distinct_kinds], dtype=np.int8)
    kinds = kind_of.take(positions)
    counts = np.bincount(positions, minlength=len(names))
    codes: Counter[tuple[str, str]] = Counter(
        {
            ("<NULL>" if code is None else code, str(kind)): int(n)
            for code, kind, n in zip(names, distinct_kinds, counts, strict=True)
            if n
        }
    )
    problems = []
    unknown = kinds == _KINDS.index("UNKNOWN")
    problems.append(
        _anomalies(
            "unknown_event",
            rows,
            unknown,
            lambda: pd.Series(
                # one text per distinct code, spread by position (no Python string per row)
                pd.array(
                    [
                        f"event code {'NULL' if code is None else repr(code)}"
                        " is not listed under events START, END or ignore"
                        for code in names
                    ],
                    dtype="string",
                ).take(positions[unknown]),
                index=frame.index[unknown],
            ),
        )
    )
    keep = kinds < _KINDS.index("IGNORE")
    no_ts = keep & rows["ts"].isna().to_numpy()
    if cols.timestamp.date is not None and no_ts.any():
        # a bad time on a known day is reported on that day, so windows find it again
        day = ColumnSpec(column=cols.timestamp.date, format=cols.timestamp.date_format)
        rows.loc[no_ts, "ts"] = timestamps(frame.loc[no_ts], day, zone, mapping.dst)
    problems.append(
        _anomalies(
            "bad_timestamp",
            rows,
            no_ts,
            lambda: (
                "missing or unparseable timestamp: " + _raw_detail(frame, cols.timestamp, no_ts)
            ),
        )
    )
    for name in ("machine_code", "order_code"):
        missing = keep & ~no_ts & rows[name].isna().to_numpy()
        problems.append(_anomalies(f"missing_{name}", rows, missing, f"{name} is empty or NULL"))
        no_ts |= missing
    good = keep & ~no_ts
    if mapping.fields:
        # ignored bookings (quantity postings) count toward a run's fields, not for the fold;
        # one without a time, machine or order belongs to no run and is left out as before
        extra = kinds == _KINDS.index("IGNORE")
        for name in ("ts", "machine_code", "order_code"):
            extra &= rows[name].notna().to_numpy()
        good |= extra
    if mapping.events.phases:
        phase_of = mapping.events.phase_of()
        distinct = [phase_of.get(code, DEFAULT_PHASE) if code else None for code in names]
        phases = pd.array(distinct, dtype="string").take(positions)
        rows["phase"] = pd.Series(phases, index=rows.index).where(
            kinds == _KINDS.index("START"), pd.NA
        )
    values: dict[str, pd.Series] = {}
    if mapping.fields:
        from etl.pipeline.attributes import field_values

        values, bad = field_values(frame[good], mapping, zone, instants, rows[good])
        problems.append(bad)
    if not good.all():
        rows = rows.loc[good]
    for name, value in values.items():  # indexed like the rows kept
        rows[name] = value
    rows = rows.reset_index(drop=True)
    rows["event"] = pd.array(_KINDS, dtype="string").take(kinds[good])
    return Mapped(
        rows=rows,
        anomalies=_concat(problems),
        codes=codes,
        rows_read=len(frame),
    )


def map_orders(
    frame: pd.DataFrame,
    mapping: MappingSpec,
    zone: ZoneInfo,
    instants: frozenset[str] = frozenset(),
) -> Mapped:
    """Raw order rows -> canonical runs + anomalies (NULL start, end before start)."""
    cols = mapping.order_columns
    rows = pd.DataFrame(
        {
            "machine_code": texts(frame, cols.machine_code),
            "order_code": texts(frame, cols.order_code),
            "product_code": texts(frame, cols.product_code),
            "start": timestamps(frame, cols.start, zone, mapping.dst, instants),
            "end": timestamps(frame, cols.end, zone, mapping.dst, instants),
        },
        index=frame.index,
    )
    rows["ts"] = rows["start"]
    problems = []
    bad_start = rows["start"].isna()
    problems.append(
        _anomalies(
            "bad_timestamp",
            rows,
            bad_start,
            "missing or unparseable start: " + _raw_detail(frame, cols.start, bad_start),
        )
    )
    raw_end_present = pd.Series(True, index=frame.index)
    for name in cols.end.source_columns():
        raw = frame[name]
        if pd.api.types.is_datetime64_any_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
            raw_end_present &= raw.notna()  # never blank text: no text made per row
        else:
            raw_end_present &= raw.notna() & (raw.astype("string").str.strip() != "")
    if cols.end.sentinels:  # an end such as 9999-12-31 that means "still open"
        raw_end_present &= ~sentinel_rows(frame, cols.end)
    bad_end = ~bad_start & rows["end"].isna() & raw_end_present
    problems.append(
        _anomalies(
            "bad_timestamp",
            rows,
            bad_end,
            "unparseable end: " + _raw_detail(frame, cols.end, bad_end),
        )
    )
    negative = ~bad_start & rows["end"].notna() & (rows["end"] < rows["start"])
    problems.append(
        _anomalies(
            "end_before_start",
            rows,
            negative,
            "end " + rows.loc[negative, "end"].astype("string") + " is before start",
        )
    )
    bad = bad_start | bad_end | negative
    for name in ("machine_code", "order_code"):
        missing = ~bad & rows[name].isna()
        problems.append(_anomalies(f"missing_{name}", rows, missing, f"{name} is empty or NULL"))
        bad |= missing
    runs = rows.loc[~bad, ["machine_code", "order_code", "product_code", "start", "end"]].copy()
    runs["flags"] = pd.Series(pd.NA, index=runs.index, dtype="string")
    if cols.plant is not None:
        runs["plant"] = texts(frame, cols.plant)[~bad]
    if cols.updated_at is not None:  # kept beside the run, for re-reading corrected rows
        runs["updated_at"] = timestamps(frame, cols.updated_at, zone, mapping.dst, instants)[~bad]
    if mapping.fields:
        from etl.pipeline.attributes import field_values, row_attributes

        kept = ~bad
        values, wrong = field_values(frame[kept], mapping, zone, instants, rows[kept])
        problems.append(wrong)
        runs["attributes"] = row_attributes(values, mapping)
    return Mapped(
        rows=runs.reset_index(drop=True), anomalies=_concat(problems), rows_read=len(frame)
    )


_NO_ANOMALIES = empty_anomalies()


def _concat(frames: list[pd.DataFrame | None]) -> pd.DataFrame:
    found = [f for f in frames if f is not None and not f.empty]
    if not found:
        return _NO_ANOMALIES.copy()  # building an empty frame costs more than copying one
    return pd.concat(found, ignore_index=True)[ANOMALY_COLUMNS]
