"""The explicit shapes of everything booking-etl produces: frame columns and Arrow schemas."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import pandas as pd
import pyarrow as pa

TS_TYPE = pa.timestamp("us", tz="UTC")

RUN_COLUMNS = ["machine_code", "order_code", "product_code", "start", "end", "flags"]
ANOMALY_COLUMNS = ["kind", "machine_code", "order_code", "ts", "detail"]

#: What a run carries beside the fold's columns (store schema version 2): the phase of its START
#: (``production`` unless the mapping declares phases), the plant and its IANA time zone, and the
#: mapping's ``fields`` as one JSON object (``attributes``; NULL when the mapping has none).
CONTEXT_COLUMNS = ["phase", "plant", "zone", "attributes"]
#: A run as the store holds it.
STORED_RUN_COLUMNS = [*RUN_COLUMNS, *CONTEXT_COLUMNS]
#: An anomaly as the store holds it: with the plant and zone of the job that found it.
STORED_ANOMALY_COLUMNS = [*ANOMALY_COLUMNS, "plant", "zone"]
DEFAULT_PHASE = "production"

#: The Arrow type of each mapping field ``type`` in the Parquet (docs/parquet.md).
FIELD_TYPES: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "decimal": pa.float64(),
    "text": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}

#: One production run per row; partitioned by ``job`` and ``month`` (of ``start``, UTC) on disk.
RUNS_SCHEMA = pa.schema(
    [
        pa.field("machine_code", pa.string(), nullable=False),
        pa.field("order_code", pa.string(), nullable=False),
        pa.field("product_code", pa.string()),
        pa.field("start", TS_TYPE, nullable=False),
        pa.field("end", TS_TYPE),
        pa.field("duration_s", pa.float64()),
        pa.field("is_open", pa.bool_(), nullable=False),
        pa.field("flags", pa.string()),
        pa.field("phase", pa.string(), nullable=False),
        pa.field("plant", pa.string()),
        pa.field("zone", pa.string()),
        pa.field("local_start_date", pa.date32()),
    ],
    metadata={"description": "booking-etl production runs; end is null while the run is open"},
)

#: One anomaly per row: what deviated from the rules, where and when.
ANOMALIES_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("machine_code", pa.string()),
        pa.field("order_code", pa.string()),
        pa.field("ts", TS_TYPE),
        pa.field("detail", pa.string()),
        pa.field("plant", pa.string()),
        pa.field("zone", pa.string()),
    ],
    metadata={"description": "booking-etl anomalies found while mapping and folding"},
)


def field_type(kind: str, aggregation: str | None) -> pa.DataType:
    """The Arrow type of a mapping field: its ``type``; ``count`` is an integer and
    ``distinct`` a list of its values."""
    if aggregation == "count":
        return pa.int64()
    if aggregation == "distinct":
        return pa.list_(FIELD_TYPES[kind])
    return FIELD_TYPES[kind]


def runs_schema(fields: dict[str, pa.DataType] | None = None) -> pa.Schema:
    """The runs schema of a job: ``RUNS_SCHEMA`` and then the mapping's fields in their order
    (one column each, named like the field)."""
    schema = RUNS_SCHEMA
    for name, kind in (fields or {}).items():
        schema = schema.append(pa.field(name, kind))
    return schema


def empty_runs() -> pd.DataFrame:
    """A canonical runs frame with no rows."""
    return pd.DataFrame(
        {
            "machine_code": pd.Series([], dtype="string"),
            "order_code": pd.Series([], dtype="string"),
            "product_code": pd.Series([], dtype="string"),
            "start": pd.Series([], dtype="datetime64[us, UTC]"),
            "end": pd.Series([], dtype="datetime64[us, UTC]"),
            "flags": pd.Series([], dtype="string"),
        }
    )


def empty_anomalies() -> pd.DataFrame:
    """A canonical anomalies frame with no rows."""
    return pd.DataFrame(
        {
            "kind": pd.Series([], dtype="string"),
            "machine_code": pd.Series([], dtype="string"),
            "order_code": pd.Series([], dtype="string"),
            "ts": pd.Series([], dtype="datetime64[us, UTC]"),
            "detail": pd.Series([], dtype="string"),
        }
    )


@dataclass(frozen=True)
class FoldPolicy:
    """The mapping's fold options (see the module docstring)."""

    logins: Literal["single", "count"] = "single"
    on_new_order: Literal["close", "overlap"] = "close"
    merge_gap: timedelta = timedelta(0)
    zero_length: Literal["drop", "keep"] = "drop"
    max_open: timedelta | None = None
    clock_skew: timedelta = timedelta(0)
