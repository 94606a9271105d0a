"""Run attributes: the mapping's ``fields`` read from the source and put on each run.

A field is one source column with a type (integer, decimal, text, timestamp). For an order table
it is the row's value. For a booking table it aggregates the bookings that count toward the run
(docs/concepts.md, "Run attributes"): a booking of the same machine and order counts toward the
latest run that started at or before it, when that run is still open or the booking is at most
``fold.grace`` after its END. START, END and ignored bookings (quantity postings) count alike.

Each run's fields travel as one JSON object (``attributes``) through the store; the Parquet has
one typed column per field (etl/outputs/parquet.py).

A run carried across windows is not summed up from its stored ``attributes``: those count the
bookings up to the previous window's end, and the next window re-reads some of them. Instead each
derivation also gives, for the runs the next one may carry, the *carry*: what their bookings
before a carry point gave (``carries``; the points are the next sync run's ``lo`` and this
window's ``hi``). A later window starting at or after a carry point combines that partial value
with the bookings from the point on; a carried run without a usable carry has its bookings read
again from its start (``_from``). Either way a split derivation gives what one window gives, for
every aggregation, however much the windows overlap.

Everything is a grouped array pass: bookings find their run with one ``merge_asof``, the
aggregations are pandas' grouped reductions over the runs, and distinct lists are built from
offsets; there is no Python loop per run or per booking.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pj

from etl.config.models import ColumnSpec, FieldSpec, MappingSpec
from etl.pipeline.mapping import text_values, timestamps
from etl.shapes import ANOMALY_COLUMNS, field_type

KEY = ["machine_code", "order_code", "start"]
_RUN = "_run"
_ORDER = "_order"
#: a carried run's column: from when its bookings are in the rows read (the rest is its
#: ``attributes``, the partial value of its bookings before that time)
FROM = "_from"
#: a carry as the store holds it (table ``run_carry``): the run, the point, the partial value
#: of the run's bookings before the point (NULL: none had a value), the mapping's digest
CARRY_COLUMNS = [*KEY, "carry_at", "attributes", "basis"]


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
    *,
    lo: datetime | None = None,
    points: Iterable[datetime] = (),
    margin: timedelta = timedelta(0),
) -> tuple[pd.Series, pd.DataFrame | None]:
    """The ``attributes`` of each run (JSON text, aligned with ``runs``) from the bookings that
    count toward it (see the module docstring), and the carries at ``points`` (None: no fields).

    ``held``: the runs carried in (same key). With a ``_from`` column, a carried run's bookings
    before ``lo`` count from that time on and its ``attributes`` are the partial value of those
    before it (NA: none); without one, its ``attributes`` stand for all its bookings before
    ``lo``. ``bookings`` may reach back before ``lo`` for them. The carries are for the runs
    started before a point and open at the point minus ``margin`` (what the next window carries
    in), for each point not before ``lo``."""
    fields = mapping.fields
    index = runs.index
    if not fields:
        return pd.Series(pd.NA, index=index, dtype="string"), None
    grace = pd.Timedelta(mapping.fold.grace)
    frame = runs[[*KEY, "end"]].reset_index(drop=True)
    frame[_RUN] = np.arange(len(frame))
    rows = _assigned(frame, bookings, list(fields), grace)
    rows[_ORDER] = 1
    if lo is not None and len(rows):
        rows = rows[_counted_from(frame, held, lo, rows)].reset_index(drop=True)
    if held is not None and not held.empty and "attributes" in held:
        partial = held[held["attributes"].notna()]
        if not partial.empty:
            rows = pd.concat([_held_rows(frame, partial, mapping), rows], ignore_index=True)
    out = _reduced(rows, fields, len(frame))
    text = _json(out)
    text.index = index
    carries = [
        _carry(frame, rows, fields, at, margin, out)
        for at in sorted(set(points))
        if lo is None or at >= lo
    ]
    carried = (
        pd.concat(carries, ignore_index=True)
        if carries
        else pd.DataFrame({c: pd.Series(dtype=object) for c in CARRY_COLUMNS})
    )
    return text, carried


def _reduced(rows: pd.DataFrame, fields: dict[str, FieldSpec], n: int) -> pd.DataFrame:
    out = pd.DataFrame(index=pd.RangeIndex(n))
    for name, spec in fields.items():
        out[name] = _reduce(rows, name, spec, n)
    return out


def _counted_from(
    frame: pd.DataFrame, held: pd.DataFrame | None, lo: datetime, rows: pd.DataFrame
) -> np.ndarray:
    """Which booking rows count: those from ``lo`` on, and those before it from the ``_from``
    of the carried run they belong to (a run without one takes none from before ``lo``)."""
    lo_us = int(pd.Timestamp(lo).value // 1000)
    since = np.full(len(frame), lo_us, dtype=np.int64)
    if held is not None and not held.empty and FROM in held:
        known = held[[*KEY, FROM]].copy()
        keys = frame[[*KEY, _RUN]].copy()
        for key in ("machine_code", "order_code"):
            keys[key] = keys[key].astype("string")
            known[key] = known[key].astype("string")
        for key in ("start", FROM):
            known[key] = pd.to_datetime(known[key], utc=True).astype("datetime64[us, UTC]")
        keys["start"] = pd.to_datetime(keys["start"], utc=True).astype("datetime64[us, UTC]")
        matched = keys.merge(known, on=KEY, how="inner")
        since[matched[_RUN].to_numpy()] = _micros(matched[FROM])
    return _micros(rows["ts"]) >= since[rows[_RUN].to_numpy(dtype=np.int64)]


def _carry(
    frame: pd.DataFrame,
    rows: pd.DataFrame,
    fields: dict[str, FieldSpec],
    at: datetime,
    margin: timedelta,
    whole: pd.DataFrame,
) -> pd.DataFrame:
    """The carries at ``at``: per run the next window carries in, the fields of its bookings
    before ``at`` (``whole``: the fields of all its rows, what they are when none is later)."""
    point = pd.Timestamp(at)
    start = pd.to_datetime(frame["start"], utc=True)
    end = pd.to_datetime(frame["end"], utc=True)
    taken = ((start < point) & (end.isna() | (end >= point - margin))).to_numpy()
    if not taken.any():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CARRY_COLUMNS})
    out = frame.loc[taken, KEY].reset_index(drop=True)
    out["carry_at"] = point
    ts = _micros(rows["ts"])
    later = ts >= int(point.value // 1000)
    if not later.any():  # the window's end: the fields are the runs' own
        out["attributes"] = _json(whole[taken]).to_numpy()
        return out
    # the taken runs only, renumbered densely: a handful of the window's runs
    dense = np.cumsum(taken) - 1
    mine = ~later & taken[rows[_RUN].to_numpy()]
    before = rows[mine].copy()
    before[_RUN] = dense[before[_RUN].to_numpy()]
    out["attributes"] = _json(_reduced(before, fields, int(taken.sum()))).to_numpy()
    return out


def _assigned(
    frame: pd.DataFrame, bookings: pd.DataFrame, names: list[str], grace: pd.Timedelta
) -> pd.DataFrame:
    """The bookings that count toward a run, with the run's position (``_run``).

    One sorted array pass: (machine, order) become dense group numbers and the times dense
    ranks, packed into one int64 key per run start and per booking, so one ``searchsorted``
    finds each booking's latest run of its group that started before (or at) it.
    """
    columns = ["ts", "machine_code", "order_code", *names]
    if bookings.empty or frame.empty:
        empty = {c: bookings[c].iloc[0:0] if c in bookings else pd.Series([]) for c in columns}
        return pd.DataFrame({**empty, _RUN: pd.Series([], dtype=np.int64)})
    n_runs = len(frame)
    group = _groups(
        pd.concat([frame["machine_code"], bookings["machine_code"]], ignore_index=True),
        pd.concat([frame["order_code"], bookings["order_code"]], ignore_index=True),
    )
    micros = np.concatenate([_micros(frame["start"]), _micros(bookings["ts"])])
    times, rank = np.unique(micros, return_inverse=True)
    shift = max(len(times).bit_length(), 1)
    key = (group << shift) | rank.astype(np.int64)
    run_key, booking_key = key[:n_runs], key[n_runs:]
    order = np.argsort(run_key, kind="stable")
    sorted_keys = run_key[order]
    start = _micros(frame["start"])
    end = _micros(frame["end"])
    limit = np.where(end == _NAT, np.iinfo(np.int64).max, end + int(grace / pd.Timedelta(1, "us")))
    ts = micros[n_runs:]
    booking_group = group[n_runs:]

    def latest(side: str) -> np.ndarray:
        """Per booking, its group's latest run starting before it (``left``) or at/before it
        (``right``) and covering it; -1 where there is none."""
        at = np.searchsorted(sorted_keys, booking_key, side=side) - 1  # type: ignore[call-overload]
        found = at >= 0
        run = np.where(found, order[np.maximum(at, 0)], 0)
        found &= group[run] == booking_group
        found &= ts <= limit[run]
        return np.where(found, run, -1)

    # A START belongs to the run it starts. Any other booking at the very time one run ends and
    # the next starts (an END, a quantity report) belongs to the run that was going on: the run
    # starting at its time takes it only when no earlier run covers it.
    at_or_before = latest("right")
    if "event" in bookings:
        starts = (bookings["event"].astype("string") == "START").fillna(False).to_numpy(bool)
        before = latest("left")
        starting_here = (at_or_before >= 0) & (start[np.maximum(at_or_before, 0)] == ts)
        other = np.where(before >= 0, before, np.where(starting_here, at_or_before, -1))
        run_of = np.where(starts, at_or_before, other)
    else:
        run_of = at_or_before
    counted = run_of >= 0
    out = bookings.loc[counted, columns].reset_index(drop=True)
    out[_RUN] = run_of[counted]
    return out


_NAT = np.iinfo(np.int64).min


def _micros(stamps: pd.Series) -> np.ndarray:
    """UTC microseconds (NaT: int64 min)."""
    values = pd.to_datetime(stamps, utc=True).astype("datetime64[us, UTC]")
    return values.to_numpy(dtype="datetime64[us]").view(np.int64)


def _groups(machines: pd.Series, orders: pd.Series) -> np.ndarray:
    """Dense int64 numbers of the (machine, order) pairs, compared as text."""
    m, _ = pd.factorize(machines.astype("string"), use_na_sentinel=False)
    o, distinct = pd.factorize(orders.astype("string"), use_na_sentinel=False)
    pair = m.astype(np.int64) * (len(distinct) + 1) + o
    _, dense = np.unique(pair, return_inverse=True)
    return dense.astype(np.int64)


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
