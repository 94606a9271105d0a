"""The explicit shapes of everything booking-etl produces: frame columns and Arrow schemas."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

TS_TYPE = pa.timestamp("us", tz="UTC")

RUN_COLUMNS = ["machine_code", "order_code", "product_code", "start", "end", "flags"]
ANOMALY_COLUMNS = ["kind", "machine_code", "order_code", "ts", "detail"]

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
    ],
    metadata={"description": "booking-etl anomalies found while mapping and folding"},
)


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
