"""Run attributes: the mapping's ``fields`` read from the source and put on each run.

A field is one source column with a type (integer, decimal, text, timestamp). For an order table
it is the row's value. For a booking table it aggregates the bookings that count toward the run
(docs/concepts.md, "Run attributes"): a booking of the same machine and order counts toward the
latest run that started at or before it, when that run is still open or the booking is at most
``fold.grace`` after its END. START, END and ignored bookings (quantity postings) count alike.

Each run's fields travel as one JSON object (``attributes``) through the store; the Parquet has
one typed column per field (etl/publish.py). A run carried across windows keeps what its
bookings before the window gave (the stored attributes), combined with those in the window, so a
split derivation gives what one window gives.

Everything is a grouped array pass: bookings find their run with one ``merge_asof``, the
aggregations are pandas' grouped reductions over the runs, and distinct lists are built from
offsets; there is no Python loop per run or per booking.
"""

from __future__ import annotations

import io
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pj

from .config import ColumnSpec, FieldSpec, MappingSpec
from .mapping import text_values, timestamps
from .schema import ANOMALY_COLUMNS, field_type

KEY = ["machine_code", "order_code", "start"]
_RUN = "_run"
_ORDER = "_order"


def field_values(
    frame: pd.DataFrame,
    mapping: MappingSpec,
    zone: ZoneInfo,
    instants: frozenset[str],
    where: pd.DataFrame,
) -> tuple[dict[str, pd.Series], pd.DataFrame]:
    """The typed values of each field of ``mapping`` in ``frame`` (raw rows), and a
    ``bad_field`` anomaly for every value that is present but not of the field's type (the value
    is left NULL; the row still counts). ``where`` supplies the anomalies' machine, order, ts."""
    values: dict[str, pd.Series] = {}
    found: list[pd.DataFrame] = []
    for name, spec in mapping.fields.items():
        raw = frame[spec.column]
        typed = _typed(raw, spec, mapping, zone, instants, frame)
        present = raw.notna()
        if raw.dtype == object or isinstance(raw.dtype, pd.StringDtype):
            present &= raw.astype("string").str.strip().fillna("") != ""
        bad = (present & typed.isna()).to_numpy()
        if bad.any():
            shown = raw[bad].astype("string")
            found.append(
                pd.DataFrame(
                    {
                        "kind": "bad_field",
                        "machine_code": where.loc[bad, "machine_code"],
                        "order_code": where.loc[bad, "order_code"],
                        "ts": where.loc[bad, "ts"] if "ts" in where else where.loc[bad, "start"],
                        "detail": f"field {name}: column {spec.column} value '"
                        + shown
                        + f"' is not {spec.type} (left empty)",
                    }
                )[ANOMALY_COLUMNS]
            )
        values[name] = typed
    anomalies = (
        pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=ANOMALY_COLUMNS)
    )
    return values, anomalies


def _typed(
    raw: pd.Series,
    spec: FieldSpec,
    mapping: MappingSpec,
    zone: ZoneInfo,
    instants: frozenset[str],
    frame: pd.DataFrame,
) -> pd.Series:
    if spec.type == "text":
        return text_values(raw, trim=True)
    if spec.type == "timestamp":
        return timestamps(frame, ColumnSpec(column=spec.column), zone, mapping.dst, instants)
    numbers = pd.to_numeric(
        raw if pd.api.types.is_numeric_dtype(raw) else raw.astype("string").str.strip(),
        errors="coerce",
    ).astype("float64")
    if spec.type == "integer":
        whole = numbers.notna() & (numbers % 1 == 0)
        return numbers.where(whole).astype("Int64")
    return numbers


def row_attributes(values: dict[str, pd.Series], mapping: MappingSpec) -> pd.Series:
    """Per row, the fields as one JSON object (order tables: a run's fields are its row's)."""
    if not mapping.fields:
        index = next(iter(values.values())).index if values else pd.RangeIndex(0)
        return pd.Series(pd.NA, index=index, dtype="string")
    return _json(pd.DataFrame(values))


def aggregate(
    runs: pd.DataFrame,
    bookings: pd.DataFrame,
    mapping: MappingSpec,
    held: pd.DataFrame | None,
) -> pd.Series:
    """The ``attributes`` of each run (JSON text, aligned with ``runs``) from the bookings that
    count toward it (see the module docstring) and, for a run carried in (``held``, same key),
    what its stored attributes say about its bookings before the window."""
    fields = mapping.fields
    index = runs.index
    if not fields:
        return pd.Series(pd.NA, index=index, dtype="string")
    grace = pd.Timedelta(mapping.fold.grace)
    frame = runs[[*KEY, "end"]].reset_index(drop=True)
    frame[_RUN] = np.arange(len(frame))
    rows = _assigned(frame, bookings, list(fields), grace)
    rows[_ORDER] = 1
    if held is not None and not held.empty and "attributes" in held:
        rows = pd.concat([_held_rows(frame, held, mapping), rows], ignore_index=True)
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for name, spec in fields.items():
        out[name] = _reduce(rows, name, spec, len(frame))
    text = _json(out)
    text.index = index
    return text


def _assigned(
    frame: pd.DataFrame, bookings: pd.DataFrame, names: list[str], grace: pd.Timedelta
) -> pd.DataFrame:
    """The bookings that count toward a run, with the run's position (``_run``)."""
    columns = ["ts", "machine_code", "order_code", *names]
    if bookings.empty or frame.empty:
        empty = {c: bookings[c].iloc[0:0] if c in bookings else pd.Series([]) for c in columns}
        return pd.DataFrame({**empty, _RUN: pd.Series([], dtype=np.int64)})
    left = bookings[columns].copy()
    if "event" in bookings:
        left["_event"] = bookings["event"].astype("string").to_numpy()
    for key in ("machine_code", "order_code"):
        left[key] = left[key].astype(object)
    left = left.sort_values("ts", kind="stable")
    right = frame[["machine_code", "order_code", "start", "end", _RUN]].copy()
    for key in ("machine_code", "order_code"):
        right[key] = right[key].astype(object)
    right = right.sort_values("start", kind="stable")

    def match(rows: pd.DataFrame, exact: bool) -> pd.DataFrame:
        joined = pd.merge_asof(
            rows,
            right,
            left_on="ts",
            right_on="start",
            by=["machine_code", "order_code"],
            direction="backward",
            allow_exact_matches=exact,
        )
        covered = joined["end"].isna() | (joined["ts"] <= joined["end"] + grace)
        return joined[joined[_RUN].notna() & covered]

    # A START belongs to the run it starts. Any other booking at the very time one run ends and
    # the next starts (an END, a quantity report) belongs to the run that was going on: the run
    # starting at its time takes it only when no earlier run covers it.
    left["_b"] = np.arange(len(left))
    if "event" in bookings:
        starts = (left.pop("_event") == "START").to_numpy()
    else:
        starts = np.ones(len(left), dtype=bool)
    others = left[~starts]
    earlier = match(others, False)
    at_start = match(others[~others["_b"].isin(earlier["_b"]).to_numpy()], True)
    joined = pd.concat([match(left[starts], True), earlier, at_start], ignore_index=True)
    joined[_RUN] = joined[_RUN].astype(np.int64)
    return joined[[*columns, _RUN]].reset_index(drop=True)


def _held_rows(frame: pd.DataFrame, held: pd.DataFrame, mapping: MappingSpec) -> pd.DataFrame:
    """One row per carried run that re-emerged (same key), holding its stored partial values
    (``_order`` 0: before every booking of the window). Distinct lists become one row per
    element; counts are added up, not counted."""
    stored = parse(held["attributes"], mapping)
    stored[KEY] = held[KEY].reset_index(drop=True)
    keys = frame[[*KEY, _RUN]].copy()
    for key in ("machine_code", "order_code"):
        keys[key] = keys[key].astype("string")
        stored[key] = stored[key].astype("string")
    matched = stored.merge(keys, on=KEY, how="inner")
    matched[_ORDER] = 0
    matched["ts"] = matched["start"]
    parts = [matched.drop(columns=[n for n, s in mapping.fields.items() if s.agg == "distinct"])]
    for name, spec in mapping.fields.items():
        if spec.agg == "distinct":
            exploded = matched[[_RUN, _ORDER, "ts", name]].explode(name)
            parts.append(exploded[exploded[name].notna()])
    return pd.concat(parts, ignore_index=True)


def _reduce(rows: pd.DataFrame, name: str, spec: FieldSpec, n: int) -> pd.Series:
    """One field of every run (position 0..n-1) from its rows."""
    agg = spec.agg
    if name not in rows:
        rows = rows.assign(**{name: pd.NA})
    held = rows[_ORDER] == 0
    if agg == "count":
        # a booking counts when it has a value; a carried run's stored count is added
        ones = rows[name].notna().astype(np.int64).where(~held, 0)
        stored = pd.to_numeric(rows[name].where(held), errors="coerce").fillna(0).astype(np.int64)
        total = (ones + stored).groupby(rows[_RUN]).sum()
        return total.reindex(range(n), fill_value=0).astype("Int64")
    present = rows[rows[name].notna()]
    values = _as_type(present[name], spec)
    by_run = present[_RUN]
    if agg in ("sum", "max", "min"):
        reduced = getattr(values.groupby(by_run), agg)()
        return reduced.reindex(range(n))
    if agg in ("first", "last"):
        ordered = present.assign(_v=values).sort_values([_RUN, _ORDER, "ts", "_v"], kind="stable")
        picked = ordered.groupby(_RUN)["_v"].first() if agg == "first" else None
        if agg == "last":
            picked = ordered.groupby(_RUN)["_v"].last()
        assert picked is not None
        return picked.reindex(range(n))
    # distinct: the sorted distinct values of each run, as lists built from offsets
    unique = pd.DataFrame({_RUN: by_run.to_numpy(), "_v": values.to_numpy()}).drop_duplicates()
    unique = unique.sort_values([_RUN, "_v"], kind="stable")
    counts = np.bincount(unique[_RUN].to_numpy(dtype=np.int64), minlength=n)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    kind = field_type(spec.type, None)
    flat = pa.array(_for_arrow(unique["_v"], spec), kind, from_pandas=True)
    lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat)
    mask = counts == 0
    out = pd.Series(lists.to_pandas(), dtype=object)
    out[mask] = None
    return out


def _as_type(values: pd.Series, spec: FieldSpec) -> pd.Series:
    """Values (from bookings or parsed back from the store) in the field's pandas type."""
    if spec.type == "integer":
        return pd.to_numeric(values).astype("Int64")
    if spec.type == "decimal":
        return pd.to_numeric(values).astype("float64")
    if spec.type == "timestamp":
        return pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
    return values.astype("string")


def _for_arrow(values: pd.Series, spec: FieldSpec) -> pd.Series:
    return _as_type(values, spec) if len(values) else values


def parse(attributes: pd.Series, mapping: MappingSpec) -> pd.DataFrame:
    """Stored ``attributes`` JSON as one typed column per field (Arrow's JSON reader)."""
    kinds = mapping.arrow_fields()
    schema = pa.schema([pa.field(name, kind) for name, kind in kinds.items()])
    text = attributes.astype("string").fillna("{}").reset_index(drop=True)
    if text.empty:
        return schema.empty_table().to_pandas()
    buffer = io.BytesIO("\n".join(text.to_numpy(dtype=object).tolist()).encode())
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    table = pj.read_json(buffer, parse_options=options).select(list(kinds))
    return table.to_pandas(types_mapper=_pandas_type)


def _pandas_type(kind: pa.DataType) -> object:
    if pa.types.is_integer(kind):
        return pd.Int64Dtype()
    if pa.types.is_string(kind):
        return pd.StringDtype()
    return None


def _json(values: pd.DataFrame) -> pd.Series:
    """Each row as a JSON object (pandas' C encoder; timestamps as ISO UTC with microseconds,
    lists as arrays, NULL as null); NA for a row whose fields are all NULL."""
    if values.empty:
        return pd.Series(pd.NA, index=values.index, dtype="string")
    frame = values.reset_index(drop=True)
    text = frame.to_json(
        orient="records", lines=True, date_format="iso", date_unit="us", double_precision=15
    )
    lines = pd.Series(text.rstrip("\n").split("\n"), dtype="string")
    empty = frame.isna().all(axis=1).to_numpy()
    lines[empty] = pd.NA
    lines.index = values.index
    return lines
