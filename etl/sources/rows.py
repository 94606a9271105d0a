"""What every non-SQL reader does to its raw rows: pick the mapping's columns, turn timestamp
text or numbers into datetimes, and apply the mapping's ``filters`` (SQL puts them into its
WHERE; here they run on the frame, vectorized)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from etl.config.models import FilterSpec, MappingSpec, normalize_code

#: canonical fields whose values are points in time
TIME_FIELDS = ("timestamp", "start", "end", "updated_at")


def wanted_columns(mapping: MappingSpec) -> list[str]:
    """The source columns the mapping reads (its columns, its run ``fields`` and its
    filters), in order."""
    names = [c for spec in mapping.column_specs().values() for c in spec.source_columns()]
    names += [f.column for f in mapping.fields.values()]
    names += [f.column for f in mapping.filters]
    return list(dict.fromkeys(names))


def time_columns(mapping: MappingSpec) -> list[str]:
    """The source columns holding a whole timestamp (not a date + time pair)."""
    specs = mapping.column_specs()
    return [
        s.column
        for name, s in specs.items()
        if name in TIME_FIELDS and s.column is not None and s.format is None
    ]


def apply_filters(frame: pd.DataFrame, filters: list[FilterSpec]) -> pd.DataFrame:
    """The rows that pass every filter, as the SQL sources' WHERE selects them: text values
    compare as codes do (``10`` == ``'10'``); ordering operators compare numerically when the
    operand is a number; a missing value (NULL, empty cell) fails every comparison except ``ne``
    and ``not_in``, which keep it (and ``is_null``)."""
    if not filters or frame.empty:
        return frame
    keep = pd.Series(True, index=frame.index)
    for spec in filters:
        keep &= _passes(frame[spec.column], spec)
    return frame[keep]


def _passes(column: pd.Series, spec: FilterSpec) -> pd.Series:
    op, operand = spec.op, spec.operand
    if op == "is_null":
        missing = column.isna() | (column.astype("string").str.strip() == "").fillna(True)
        return missing if operand else ~missing
    if op in ("in", "not_in"):
        codes = {normalize_code(v) for v in operand}
        found = _as_codes(column).isin(codes).fillna(False).astype(bool)
        return found if op == "in" else ~found
    missing = _as_codes(column).isna().to_numpy()
    if isinstance(operand, bool) or not isinstance(operand, int | float):
        left: pd.Series = _as_codes(column)
        right: object = normalize_code(operand)
    else:
        left, right = pd.to_numeric(column, errors="coerce"), operand
    if op == "ne":  # the complement of eq: a missing value is kept
        equal = pd.Series(left == right, index=column.index).fillna(False).astype(bool)
        return ~equal | missing
    result = {
        "eq": lambda: left == right,
        "lt": lambda: left < right,
        "le": lambda: left <= right,
        "gt": lambda: left > right,
        "ge": lambda: left >= right,
    }[op]()
    # a missing value fails (NaN compares False numerically, NA as text)
    return pd.Series(result, index=column.index).fillna(False).astype(bool) & ~missing


def _as_codes(column: pd.Series) -> pd.Series:
    from etl.pipeline.mapping import text_values

    return text_values(column, trim=True)


# --------------------------------------------------------------------------- timestamps

_MS_DATE = r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$"


def instants(column: pd.Series, epoch: str | None = None) -> pd.Series:
    """A timestamp column as a source hands it over, made readable by the mapping:

    - numbers are epoch seconds or milliseconds (``epoch``; None: milliseconds when above 1e11)
      and become UTC instants;
    - OData's ``/Date(1700000000000)/`` and ``/Date(1700000000000+0060)/`` (milliseconds since
      the epoch in UTC; the offset only says where it was written) become UTC instants;
    - other text (ISO 8601 with or without an offset) is left to the mapping, which reads an
      offset as an instant and text without one as the plant's wall-clock time.
    Anything else is returned unchanged.
    """
    if pd.api.types.is_bool_dtype(column):
        return column
    if pd.api.types.is_numeric_dtype(column):
        return _epoch(pd.to_numeric(column, errors="coerce"), epoch, column.index)
    if column.dtype == object or pd.api.types.is_string_dtype(column):
        present = column.dropna()
        if present.empty:
            return column
        if pd.api.types.infer_dtype(present, skipna=True) in (
            "integer",
            "floating",
            "mixed-integer-float",
        ):
            return _epoch(pd.to_numeric(column, errors="coerce"), epoch, column.index)
        text = column.astype("string").str.strip()
        ms = text.str.extract(_MS_DATE, expand=False)
        if ms.notna().any():
            # a column of /Date(...)/ values: the rest (empty, garbage) becomes NaT, an anomaly
            return _epoch(pd.to_numeric(ms, errors="coerce"), "ms", column.index)
    return column


def _epoch(values: pd.Series, unit: str | None, index: pd.Index) -> pd.Series:
    numbers = values.astype("float64").to_numpy()
    if unit is None:
        big = np.nanmax(np.abs(numbers)) if np.isfinite(numbers).any() else 0.0
        unit = "ms" if big > 1e11 else "s"
    micros = numbers * (1_000 if unit == "ms" else 1_000_000)
    ok = np.isfinite(micros) & (np.abs(micros) < 2**62)
    whole = np.where(ok, micros, 0).astype(np.int64)
    stamps = pd.Series(whole.view("datetime64[us]"), index=index).dt.tz_localize(UTC)
    return stamps.where(ok)


def utc_text(value: datetime, fmt: str) -> str | int:
    """A UTC instant as an API's query parameter: ISO 8601 with Z, or epoch s/ms."""
    value = value.astimezone(UTC)
    if fmt == "epoch_s":
        return int(value.timestamp())
    if fmt == "epoch_ms":
        return int(value.timestamp() * 1000)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")
