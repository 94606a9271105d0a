"""Diffing a derived window against the stored one: which runs are new, changed or gone (by
machine, order and start), which months that touches, and which months' anomalies differ.
Set-based, on frames; no database access."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from etl.shapes import DEFAULT_PHASE, STORED_ANOMALY_COLUMNS, STORED_RUN_COLUMNS
from etl.store.bulk import utc_stamps
from etl.store.months import month_set

KEY = ["machine_code", "order_code", "start"]
CONTEXT_TEXT = ("phase", "plant", "zone", "attributes")
VALUE = ["product_code", "end", "flags", "phase", "plant", "zone", "attributes"]


@dataclass
class Changes:
    """How a sync changed the stored runs."""

    inserted: int
    updated: int
    deleted: int
    months: list[str]
    #: the runs written (new or changed) and the stored runs they replaced or that are gone
    #: (changed or removed), as they were; STORED_RUN_COLUMNS each (set by ``commit_sync``)
    written: pd.DataFrame | None = field(default=None, repr=False)
    removed: pd.DataFrame | None = field(default=None, repr=False)


def compare(old: pd.DataFrame, new: pd.DataFrame) -> tuple[Changes, pd.DataFrame, pd.DataFrame]:
    """Set-based diff of two run frames by (machine, order, start): the counts and months that
    changed, the rows of ``new`` to write (new or changed) and the rows of ``old`` to delete
    (gone or changed)."""
    new = _normalized(new)
    if old.duplicated(KEY).any():  # the window and the runs looked up by key may overlap
        old = old.drop_duplicates(KEY, keep="last")
    if old.empty:  # a first load: everything is new
        months = month_set(new["start"])
        changes = Changes(inserted=len(new), updated=0, deleted=0, months=months)
        return changes, new.reset_index(drop=True), old[STORED_RUN_COLUMNS]
    both = old.merge(new, on=KEY, how="outer", suffixes=("_old", "_new"), indicator=True)
    same = pd.Series(True, index=both.index)
    for col in VALUE:
        a, b = both[f"{col}_old"], both[f"{col}_new"]
        same &= (a == b).fillna(False).astype(bool) | (a.isna() & b.isna())
    matched = both["_merge"] == "both"
    changed = matched & ~same
    gone = both["_merge"] == "left_only"
    added = both["_merge"] == "right_only"
    touched = both.loc[gone | added | changed, "start"]
    months = month_set(touched)
    changes = Changes(
        inserted=int(added.sum()),
        updated=int(changed.sum()),
        deleted=int(gone.sum()),
        months=months,
    )
    return changes, _side(both[added | changed], "_new"), _side(both[gone | changed], "_old")


def _side(both: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """One side (``_old`` or ``_new``) of merged runs as a run frame."""
    frame = both[KEY + [f"{c}{suffix}" for c in VALUE]]
    frame.columns = pd.Index(KEY + VALUE)
    return frame[STORED_RUN_COLUMNS].reset_index(drop=True)


def as_stored(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs as the store reads them back (STORED_RUN_COLUMNS, strings, UTC microseconds)."""
    return _normalized(runs)


def _normalized(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with the dtypes the store reads back (strings, UTC microseconds)."""
    frame = runs.reindex(columns=STORED_RUN_COLUMNS).copy()
    for col in ("machine_code", "order_code", "product_code", "flags", *CONTEXT_TEXT):
        frame[col] = frame[col].astype("string")
    frame["phase"] = frame["phase"].fillna(DEFAULT_PHASE)
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    return frame


class AnomalyDigest:
    """Per month (None: undated), a fingerprint of a multiset of anomalies that can be built
    batch by batch: the count and two 64-bit sums of a hash of each (kind, machine, order, ts,
    detail, plant, zone). Two sides with equal fingerprints hold the same anomalies (up to a
    hash collision, about 2^-128), so a window's anomalies are compared with the stored ones
    without holding either side whole."""

    def __init__(self) -> None:
        self.months: dict[str | None, tuple[int, int, int]] = {}

    def add(self, frame: pd.DataFrame) -> None:
        """Count the anomalies of ``frame`` (``STORED_ANOMALY_COLUMNS``) in."""
        if frame.empty:
            return
        side = pd.DataFrame(
            {
                name: frame[name].astype("string").fillna("\x00")  # NULL as a value of its own
                for name in STORED_ANOMALY_COLUMNS
                if name != "ts"
            }
        )
        stamps = utc_stamps(frame["ts"]).dt.tz_convert(None)
        side["ts"] = stamps.to_numpy().view("i8")  # NaT: int64 min, a value of its own too
        first = pd.util.hash_pandas_object(side, index=False).to_numpy()
        second = pd.util.hash_pandas_object(
            side, index=False, hash_key="booking-etl-anom"
        ).to_numpy()
        months = stamps.to_numpy().astype("datetime64[M]").view("i8")  # NaT: int64 min
        groups = pd.DataFrame({"month": months, "a": first, "b": second}).groupby(
            "month", sort=False
        )
        nat = np.iinfo(np.int64).min
        for key, part in groups:
            month = int(key)
            name = None if month == nat else str(np.datetime64(month, "M"))
            count, a, b = self.months.get(name, (0, 0, 0))
            self.months[name] = (
                count + len(part),
                (a + int(part["a"].to_numpy().sum(dtype=np.uint64))) % 2**64,
                (b + int(part["b"].to_numpy().sum(dtype=np.uint64))) % 2**64,
            )

    def differ(self, other: AnomalyDigest) -> set[str | None]:
        """The months whose anomalies differ between the two sides."""
        names = set(self.months) | set(other.months)
        empty = (0, 0, 0)
        return {m for m in names if self.months.get(m, empty) != other.months.get(m, empty)}
