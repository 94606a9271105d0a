"""Months: the store's and the Parquet's partition of time (UTC calendar months, ``'2026-03'``)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd


def month_of(stamp: datetime) -> str:
    """``'2026-03'``: the partition a UTC timestamp belongs to."""
    utc = stamp.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"  # strftime writes the year 1 as "1"


def month_set(stamps: pd.Series) -> list[str]:
    """The distinct ``month_of`` of a column of timestamps, sorted: text for each month, not for
    each value."""
    if stamps.empty:
        return []
    utc = pd.to_datetime(stamps, utc=True).dt.tz_localize(None).to_numpy()
    months = np.unique(utc.astype("datetime64[M]"))
    return [str(month) for month in np.datetime_as_string(months, unit="M")]


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """UTC start of ``month`` and of the month after."""
    year, mon = (int(part) for part in month.split("-"))
    lo = datetime(year, mon, 1, tzinfo=UTC)
    hi = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return lo, hi
