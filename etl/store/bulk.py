"""Bulk moves between run/anomaly frames and the store's tables, without a Python call per value.

Writing: the rows as one Arrow table, inserted the store backend's way (etl/store/backends.py):
PostgreSQL through psycopg gets one ``COPY ... FROM STDIN (FORMAT csv)`` fed with CSV that Arrow
writes; SQLite one ``executemany`` of values converted column by column (timestamps as the naive
UTC text SQLAlchemy's SQLite dialect stores, so that range predicates compare alike); any other
backend SQLAlchemy's own executemany. Reading: the driver's rows straight into columns, the
timestamps converted once per column.

Both run inside the caller's transaction (the same DBAPI connection), so a bulk write commits or
rolls back with the rest of a sync.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.store.backends import backend_for

STAMPS = frozenset({"start", "end", "ts"})  # the UTC timestamp columns of the store's tables
TEXT = frozenset(
    {"job", "machine_code", "order_code", "product_code", "flags", "kind", "detail"}
    | {"phase", "plant", "zone", "attributes"}  # store schema version 2
)


def utc_stamps(values: Any) -> pd.Series:
    """Timestamps (UTC text as SQLite stores it, datetimes, pandas timestamps, None) as UTC
    microseconds."""
    return pd.to_datetime(pd.Series(values), utc=True, format="ISO8601").astype(
        "datetime64[us, UTC]"
    )


def stamp_array(series: pd.Series) -> pa.Array:
    """A timestamp column (any zone, datetimes or text) as Arrow UTC microseconds, NaT as null."""
    stamps = utc_stamps(series.to_numpy() if series.dtype == object else series)
    return pa.array(stamps, pa.timestamp("us", tz="UTC"))


def text_array(series: pd.Series) -> pa.Array:
    """A text column as an Arrow string array, NA as null."""
    return pa.array(series.astype("string"), pa.string(), from_pandas=True)


def arrow_rows(frame: pd.DataFrame, columns: Sequence[str], extra: dict[str, Any]) -> pa.Table:
    """``frame[columns]`` plus the constant ``extra`` columns as an Arrow table: text as strings,
    timestamps as UTC microseconds, NA as null."""
    arrays: dict[str, pa.Array] = {}
    for name in columns:
        series = frame[name]
        if name in STAMPS:
            arrays[name] = stamp_array(series)
        elif name in TEXT:
            arrays[name] = text_array(series)
        else:
            arrays[name] = pa.array(series.astype(object).where(series.notna(), None))
    for name, value in extra.items():
        arrays[name] = pa.array([value] * len(frame))
    return pa.table(arrays)


def insert_frame(
    conn: Connection,
    table: sa.Table,
    frame: pd.DataFrame,
    columns: Sequence[str],
    extra: dict[str, Any],
    order_by: Sequence[str] = (),
) -> None:
    """Insert ``frame[columns]`` with the constant ``extra`` values into ``table`` in bulk, in
    ``order_by`` order when given (rows sorted like an index go into it with few page visits)."""
    if frame.empty:
        return
    rows = arrow_rows(frame, columns, extra)
    if order_by:
        rows = rows.sort_by([(name, "ascending") for name in order_by])
    backend_for(conn.dialect.name).insert(conn, table, rows)


def read_frame(
    conn: Connection, query: sa.Select[Any] | sa.CompoundSelect[Any], columns: Sequence[str]
) -> pd.DataFrame:
    """The rows of ``query`` (selecting ``columns``, timestamps as the driver returns them) as a
    frame: text columns as pandas strings, timestamps as UTC microseconds."""
    result = conn.execute(query)
    cursor = result.cursor
    rows = cursor.fetchall() if cursor is not None else [tuple(row) for row in result]
    result.close()
    table = numpy.empty((len(rows), len(columns)), dtype=object)
    if rows:
        table[:] = rows
    return pd.DataFrame(
        {name: _column(name, table[:, at]) for at, name in enumerate(columns)},
        index=pd.RangeIndex(len(rows)),
    )


def _column(name: str, values: numpy.ndarray) -> pd.Series:
    if name in TEXT:
        return pd.Series(values, dtype="string")
    if name not in STAMPS:
        return pd.Series(values)
    try:  # UTC text (SQLite) or aware datetimes: Arrow converts the whole column at once
        stamps = pa.array(values, from_pandas=True)
        if pa.types.is_string(stamps.type):
            stamps = stamps.cast(pa.timestamp("us"))
        stamps = stamps.cast(pa.timestamp("us", tz="UTC"))
        return pd.Series(stamps.to_pandas(types_mapper=None), dtype="datetime64[us, UTC]")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return utc_stamps(values)


def read_frames(
    conn: Connection, query: sa.Select[Any], columns: Sequence[str], size: int
) -> Iterator[pd.DataFrame]:
    """``read_frame`` in frames of at most ``size`` rows, streamed from the database (a
    server-side cursor where the driver has one)."""
    result = conn.execute(query.execution_options(stream_results=True, max_row_buffer=size))
    try:
        while True:
            rows = result.fetchmany(size)  # (not the cursor's: the result may hold some already)
            if not rows:
                break
            table = numpy.empty((len(rows), len(columns)), dtype=object)
            table[:] = [tuple(row) for row in rows]  # numpy probes a Row for attributes
            yield pd.DataFrame(
                {name: _column(name, table[:, at]) for at, name in enumerate(columns)},
                index=pd.RangeIndex(len(rows)),
            )
    finally:
        result.close()
