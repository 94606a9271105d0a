"""Pure fold: canonical bookings (+ runs still open from earlier windows) -> runs + anomalies.

Rules, per (machine, order), events in time order, an END before a START at equal times:

* START while closed opens a run; START while open is a ``duplicate_start`` (the run keeps its
  first start);
* END while open closes the run; END while closed is an ``orphan_end``;
* the run's product is the one booked with its START.

Vectorized: the state after an event is simply "open" for a START and "closed" for an END, so the
state before each event is the previous event's kind within its group: no per-row Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .schema import ANOMALY_COLUMNS, RUN_COLUMNS, empty_anomalies, empty_runs


@dataclass
class FoldResult:
    """Runs (``end`` NaT while open) and the anomalies found on the way."""

    runs: pd.DataFrame
    anomalies: pd.DataFrame


def fold(bookings: pd.DataFrame, carried: pd.DataFrame | None = None) -> FoldResult:
    """Fold canonical bookings into runs; ``carried`` are runs open at the window's start."""
    events = bookings[["ts", "machine_code", "order_code", "product_code", "event"]]
    if carried is not None and not carried.empty:
        opened = pd.DataFrame(
            {
                "ts": carried["start"],
                "machine_code": carried["machine_code"],
                "order_code": carried["order_code"],
                "product_code": carried["product_code"],
                "event": "START",
            }
        )
        events = pd.concat([opened, events], ignore_index=True) if not events.empty else opened
    if events.empty:
        return FoldResult(empty_runs(), empty_anomalies())

    events = events.assign(_rank=(events["event"] == "START").astype("int8"))
    events = events.sort_values(
        ["machine_code", "order_code", "ts", "_rank", "product_code"],
        kind="stable",
        na_position="last",
    ).reset_index(drop=True)

    machine = events["machine_code"].to_numpy()
    order = events["order_code"].to_numpy()
    new_group = np.ones(len(events), dtype=bool)
    new_group[1:] = (machine[1:] != machine[:-1]) | (order[1:] != order[:-1])
    group_id = np.cumsum(new_group)
    is_start = (events["event"] == "START").to_numpy()
    prev_open = np.zeros(len(events), dtype=bool)
    prev_open[1:] = is_start[:-1]
    prev_open &= ~new_group

    run_start = is_start & ~prev_open
    duplicate = is_start & prev_open
    run_end = ~is_start & prev_open
    orphan = ~is_start & ~prev_open

    ts = events["ts"]
    groups = pd.Series(group_id, index=events.index)
    next_end = ts.where(run_end).groupby(groups).bfill()
    open_since = ts.where(run_start).groupby(groups).ffill()

    runs = events.loc[run_start, ["machine_code", "order_code", "product_code"]].copy()
    runs["start"] = ts[run_start]
    runs["end"] = next_end[run_start]
    runs = runs[RUN_COLUMNS].reset_index(drop=True)

    anomalies = pd.concat(
        [
            _anomaly(
                events,
                duplicate,
                "duplicate_start",
                "START while the run started at "
                + open_since[duplicate].astype("string")
                + " is open",
            ),
            _anomaly(events, orphan, "orphan_end", "END without an open START"),
        ],
        ignore_index=True,
    )
    return FoldResult(runs=runs, anomalies=anomalies[ANOMALY_COLUMNS])


def _anomaly(
    events: pd.DataFrame, mask: np.ndarray, kind: str, detail: pd.Series | str
) -> pd.DataFrame:
    picked = events.loc[mask]
    return pd.DataFrame(
        {
            "kind": pd.Series(kind, index=picked.index, dtype="string"),
            "machine_code": picked["machine_code"],
            "order_code": picked["order_code"],
            "ts": picked["ts"],
            "detail": detail,
        }
    )
