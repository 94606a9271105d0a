"""Pure fold: canonical bookings (+ runs carried from earlier windows) -> production runs + anomalies.

Rules per (machine, order), events in time order (an END before a START at equal times):

* ``logins: single`` (default): START while closed opens a run; START while open is a
  ``duplicate_start`` (the run keeps its first start); END while open closes the run; END while
  closed is an ``orphan_end``.
* ``logins: count``: every START is one operator's login and every END one logout; the run lasts
  while at least one login is open (overlapping logins give one run over their union). An END
  with no login open is an ``orphan_end``.
* the run's product is the one booked with its START; a later booking of the same run with
  another product is a ``product_changed`` anomaly and flags the run.

Then per machine, runs in start order:

* ``on_new_order: close`` (default): a run still open (or ending later) when another order starts
  on the same machine ends at that start (flag ``closed_by_next_order``; its own END, if it came
  later, is an ``orphan_end``). ``overlap`` keeps both.
* ``merge_gap``: consecutive runs of the same order on a machine with a gap up to this long are
  one run (flag ``merged``); 0 (default) merges nothing.
* ``zero_length: drop`` (default) drops runs whose end equals their start (``zero_length_run``);
  ``keep`` keeps them.
* ``max_open``: a run open longer than this at the window's end is flagged ``stale`` (and a
  ``stale_open_run`` anomaly is recorded); it stays open.
* ``clock_skew``: an END that comes at most this long before a START of the same order on the
  same machine, with no run open, is that run's END from a terminal whose clock was behind:
  the pair is a zero-length run (flag ``clock_skew``) instead of an orphan END and a run that
  never closes.

Vectorized with numpy: the state before an event is derived from the previous event of its group
(or, for ``count``, from a reflected running sum), so there is no Python loop per booking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from .schema import ANOMALY_COLUMNS, RUN_COLUMNS, empty_anomalies, empty_runs

FLAGS = ("closed_by_next_order", "merged", "product_changed", "stale", "clock_skew")
_BIT = {name: 1 << i for i, name in enumerate(FLAGS)}
_NAT = np.iinfo(np.int64).min


@dataclass(frozen=True)
class FoldPolicy:
    """The mapping's fold options (see the module docstring)."""

    logins: Literal["single", "count"] = "single"
    on_new_order: Literal["close", "overlap"] = "close"
    merge_gap: timedelta = timedelta(0)
    zero_length: Literal["drop", "keep"] = "drop"
    max_open: timedelta | None = None
    clock_skew: timedelta = timedelta(0)


@dataclass
class FoldResult:
    """Runs (``end`` NaT while open, ``flags`` comma-separated or NA) and anomalies."""

    runs: pd.DataFrame
    anomalies: pd.DataFrame


def carry_margin(policy: FoldPolicy) -> timedelta:
    """How far before ``lo`` closed runs must be carried so that a split fold equals a whole one."""
    return policy.merge_gap


def fold(
    bookings: pd.DataFrame,
    carried: pd.DataFrame | None = None,
    *,
    policy: FoldPolicy | None = None,
    lo: datetime | None = None,
    hi: datetime | None = None,
) -> FoldResult:
    """Fold canonical bookings into runs.

    ``carried`` are stored runs that began before ``lo`` and were open at ``lo`` (or ended within
    ``carry_margin`` of it); they enter the fold as their START (and, when they ended before
    ``lo``, their END). ``hi`` is the window's end, used for ``max_open``.
    """
    policy = policy or FoldPolicy()
    events = _events(bookings, carried, lo)
    if events.empty:
        return FoldResult(empty_runs(), empty_anomalies())

    # Codes sorted by value (factorize(sort=True)), so the result never depends on row order.
    m_codes, machines = pd.factorize(events["machine_code"], sort=True)
    o_codes, orders = pd.factorize(events["order_code"], sort=True)
    p_codes, products = pd.factorize(events["product_code"], sort=True)  # NA -> -1
    names = (_arrow(machines), _arrow(orders), _arrow(products))
    ev = _Events(
        m=m_codes.astype(np.int64),
        o=o_codes.astype(np.int64),
        p=p_codes.astype(np.int32),
        t=events["ts"].to_numpy(dtype="datetime64[us]").view("int64").copy(),
        s=(events["event"] == "START").to_numpy(),
        f=events["_flags"].to_numpy(dtype=np.int64),
    )
    exclusive = policy.on_new_order == "close" and policy.logins == "single"
    # Per machine for the exclusive state machine, else per (machine, order); END before START.
    n_o, n_p = len(orders) + 1, len(products) + 2
    if exclusive:
        order = _sort(ev.m, ev.t, (ev.s * n_o + ev.o) * n_p + ev.p + 1)
    else:
        order = _sort(ev.m * n_o + ev.o, ev.t, ev.s * n_p + ev.p + 1)
    ev = ev.take(order)
    skew_pair = _clock_skew(ev, policy.clock_skew) if policy.clock_skew > timedelta(0) else None

    state = _machine_states(ev) if exclusive else _group_states(ev, policy.logins)
    anomalies: list[pd.DataFrame] = [
        _anomalies(
            "duplicate_start", ev.m, ev.o, ev.t, state.duplicate, names, state.duplicate_detail(ev)
        ),
        _anomalies(
            "orphan_end", ev.m, ev.o, ev.t, state.orphan, names, "END without an open START"
        ),
        _anomalies(
            "product_changed",
            ev.m,
            ev.o,
            ev.t,
            state.changed,
            names,
            "booked with another product than the run's START",
        ),
    ]

    starts = state.starts
    rm, ro, rp, rs, re_ = ev.m[starts], ev.o[starts], ev.p[starts], ev.t[starts], state.ends
    # flags a carried run already had stay with it (the others are recomputed)
    flags = ev.f[starts] & (_BIT["product_changed"] | _BIT["clock_skew"] | _BIT["merged"])
    flags |= np.where(state.closed_by_next, _BIT["closed_by_next_order"], 0)
    flags |= np.where(
        np.isin(np.arange(len(starts)), np.unique(state.run_of[state.changed])),
        _BIT["product_changed"],
        0,
    )
    if skew_pair is not None and skew_pair.any():
        flags |= np.where(
            np.isin(np.arange(len(starts)), np.unique(state.run_of[skew_pair])),
            _BIT["clock_skew"],
            0,
        )

    if policy.on_new_order == "close" and not exclusive and len(starts):
        rm, ro, rp, rs, re_, flags, late = _close_by_next_order(rm, ro, rp, rs, re_, flags)
        anomalies.append(
            _anomalies(
                "orphan_end",
                late[0],
                late[1],
                late[2],
                np.ones(len(late[0]), bool),
                names,
                "END without an open START",
            )
        )
    if policy.merge_gap > timedelta(0) and len(rs):
        gap = int(policy.merge_gap / timedelta(microseconds=1))
        rm, ro, rp, rs, re_, flags = _merge(rm, ro, rp, rs, re_, flags, gap)
    skewed = (flags & _BIT["clock_skew"]) != 0
    zero = (re_ != _NAT) & (re_ == rs)
    if skew_pair is not None and (skewed & zero).any():
        anomalies.append(
            _anomalies(
                "clock_skew",
                rm,
                ro,
                rs,
                skewed & zero,
                names,
                "END booked just before its START (clock skew): kept as a zero-length run",
            )
        )
    zero &= ~skewed
    if policy.zero_length == "drop" and zero.any():
        anomalies.append(
            _anomalies(
                "zero_length_run",
                rm,
                ro,
                rs,
                zero,
                names,
                "START and END at the same time (dropped)",
            )
        )
        keep = ~zero
        rm, ro, rp, rs, re_, flags = rm[keep], ro[keep], rp[keep], rs[keep], re_[keep], flags[keep]
    if policy.max_open is not None and hi is not None and len(rs):
        limit = int(policy.max_open / timedelta(microseconds=1))
        hi_us = int(pd.Timestamp(hi).tz_convert("UTC").value // 1000)
        stale = (re_ == _NAT) & (hi_us - rs > limit)
        flags = np.where(stale, flags | _BIT["stale"], flags)
        anomalies.append(
            _anomalies(
                "stale_open_run",
                rm,
                ro,
                np.full(len(rs), hi_us),
                stale,
                names,
                f"open for more than {policy.max_open} at the window's end",
            )
        )

    runs = pd.DataFrame(
        {
            "machine_code": _names(names[0], rm),
            "order_code": _names(names[1], ro),
            "product_code": _names(names[2], rp),
            "start": _stamps(rs),
            "end": _stamps(re_),
            "flags": _flag_text(flags),
        }
    )
    found = [a for a in anomalies if not a.empty]
    return FoldResult(
        runs=runs[RUN_COLUMNS].reset_index(drop=True),
        anomalies=pd.concat(found, ignore_index=True)[ANOMALY_COLUMNS]
        if found
        else empty_anomalies(),
    )


@dataclass
class _Events:
    """Events as parallel integer arrays: machine, order, product codes, time (us), START?, flags."""

    m: np.ndarray
    o: np.ndarray
    p: np.ndarray
    t: np.ndarray
    s: np.ndarray
    f: np.ndarray

    def take(self, index: np.ndarray) -> _Events:
        return _Events(*(getattr(self, k)[index] for k in ("m", "o", "p", "t", "s", "f")))


@dataclass
class _State:
    """What the state machine made of each event, and the runs it started."""

    starts: np.ndarray  # positions of run-opening STARTs
    ends: np.ndarray  # end time (us) per run, _NAT while open
    closed_by_next: np.ndarray  # per run
    duplicate: np.ndarray  # per event
    orphan: np.ndarray
    changed: np.ndarray
    run_of: np.ndarray  # per event: index of its run (valid where it belongs to one)
    open_since: np.ndarray  # per event: start time of the run it belongs to
    late_end: np.ndarray | None = None

    def duplicate_detail(self, ev: _Events) -> pd.Series:
        since = _stamps(self.open_since[self.duplicate]).astype("string")
        return "START while the run started at " + since + " is open"


def _clock_skew(ev: _Events, tolerance: timedelta) -> np.ndarray:
    """Swap END..START pairs of one (machine, order) closer than ``tolerance`` with nothing open.

    The END is taken to be the START's own END from a terminal whose clock was behind: the
    START comes first and the END moves to its time. Returns a mask of the moved ENDs.
    """
    skew = int(tolerance / timedelta(microseconds=1))
    n = len(ev.t)
    pair = np.zeros(n, dtype=bool)
    if n < 2:
        return pair
    same = (ev.m[1:] == ev.m[:-1]) & (ev.o[1:] == ev.o[:-1])
    prev_start = np.zeros(n, dtype=bool)
    prev_start[1:] = ev.s[:-1] & same
    candidate = np.zeros(n, dtype=bool)
    candidate[:-1] = (
        (~ev.s[:-1]) & ~prev_start[:-1] & ev.s[1:] & same & (ev.t[1:] - ev.t[:-1] <= skew)
    )
    # never chain: an END already moved cannot start another pair
    idx = np.flatnonzero(candidate)
    idx = idx[np.concatenate(([True], np.diff(idx) > 1))] if idx.size else idx
    a, b = idx, idx + 1
    for name in ("m", "o", "p", "s", "f"):
        arr = getattr(ev, name)
        arr[a], arr[b] = arr[b].copy(), arr[a].copy()
    ev.t[a] = ev.t[b]
    pair[b] = True
    return pair


def _group_states(ev: _Events, logins: str) -> _State:
    """Per (machine, order) state machine; events sorted by (machine, order, time, END first)."""
    n = len(ev.t)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (ev.m[1:] != ev.m[:-1]) | (ev.o[1:] != ev.o[:-1])
    group = np.cumsum(new_group) - 1
    if logins == "count":
        prefix = _group_cumsum(np.where(ev.s, 1, -1), new_group)
        floor = np.minimum(_group_cummin(prefix, new_group), 0)
        count = prefix - floor
        before = np.zeros(n, dtype=np.int64)
        before[1:] = count[:-1]
        before[new_group] = 0
        run_start = ev.s & (before == 0)
        duplicate = np.zeros(n, dtype=bool)
        closes = ~ev.s & (before == 1)
        orphan = ~ev.s & (before == 0)
        inside = before > 0
    else:
        prev_open = np.zeros(n, dtype=bool)
        prev_open[1:] = ev.s[:-1]
        prev_open &= ~new_group
        run_start = ev.s & ~prev_open
        duplicate = ev.s & prev_open
        closes = ~ev.s & prev_open
        orphan = ~ev.s & ~prev_open
        inside = prev_open
    starts = np.flatnonzero(run_start)
    end_pos = _next_after(np.flatnonzero(closes), starts, group)
    run_of = np.cumsum(run_start) - 1
    run_product = _ffill_in_group(np.where(run_start, ev.p, -2), group)
    open_since = _ffill_in_group(np.where(run_start, ev.t, -2), group)
    changed = inside & (ev.p >= 0) & (run_product >= 0) & (ev.p != run_product)
    return _State(
        starts=starts,
        ends=np.where(end_pos < n, ev.t[np.minimum(end_pos, n - 1)], _NAT),
        closed_by_next=np.zeros(len(starts), dtype=bool),
        duplicate=duplicate,
        orphan=orphan,
        changed=changed,
        run_of=run_of,
        open_since=open_since,
    )


def _machine_states(ev: _Events) -> _State:
    """One open order per machine; events sorted by (machine, time, END first, order, product).

    The latest START before an event decides the state: its order is open unless an END of that
    order has come since. A START of another order closes the open run at its own time. All in
    O(n) array passes over the machine-sorted events: no per-row loop, no second sort.
    """
    n = len(ev.t)
    pos = np.arange(n)
    new_machine = np.ones(n, dtype=bool)
    new_machine[1:] = ev.m[1:] != ev.m[:-1]
    machine_first = np.maximum.accumulate(np.where(new_machine, pos, 0))

    # latest START strictly before each event on its machine (-1: none)
    latest = np.maximum.accumulate(np.where(ev.s, pos, -1))
    prev = np.empty(n, dtype=np.int64)
    prev[0] = -1
    prev[1:] = latest[:-1]
    has_prev = prev >= machine_first
    prev = np.where(has_prev, prev, 0)
    same_order = has_prev & (ev.o[prev] == ev.o)
    # ENDs of the latest START's order since that START (the first one closes its run)
    matching = ~ev.s & same_order
    seen = np.cumsum(matching)
    before = np.empty(n, dtype=np.int64)
    before[0] = 0
    before[1:] = seen[:-1]
    still_open = same_order & (before - seen[prev] == 0)
    run_start = ev.s & ~still_open
    duplicate = ev.s & still_open
    closes = ~ev.s & still_open
    orphan = ~ev.s & ~still_open

    # the run each event belongs to: the latest run-opening START at or before it
    opener = np.maximum.accumulate(np.where(run_start, pos, -1))
    belongs = np.where(ev.s | closes, opener, -1)
    belongs = np.where(belongs >= machine_first, belongs, -1)
    starts = np.flatnonzero(run_start)
    run_index = np.full(n, -1)
    run_index[starts] = np.arange(len(starts))
    run_of = np.where(belongs >= 0, run_index[np.maximum(belongs, 0)], -1)

    # a run ends at its closing END or at the next START of another order, whichever comes first
    machine_id = np.cumsum(new_machine)
    # for each run start: the next closing END and the next START of another order (same machine)
    own = _next_after(np.flatnonzero(closes), starts, machine_id)
    other = _next_after(
        np.flatnonzero(_other_order_starts(ev, run_start, opener, machine_first)),
        starts,
        machine_id,
    )
    by_next = other < own
    end_pos = np.minimum(own, other)
    ends = np.where(end_pos < n, ev.t[np.minimum(end_pos, n - 1)], _NAT)

    run_product = np.where(belongs >= 0, ev.p[np.maximum(belongs, 0)], -1)
    changed = (duplicate | closes) & (ev.p >= 0) & (run_product >= 0) & (ev.p != run_product)
    open_since = np.where(belongs >= 0, ev.t[np.maximum(belongs, 0)], _NAT)
    return _State(
        starts=starts,
        ends=ends,
        closed_by_next=by_next,
        duplicate=duplicate,
        orphan=orphan,
        changed=changed,
        run_of=run_of,
        open_since=open_since,
    )


def _other_order_starts(
    ev: _Events, run_start: np.ndarray, opener: np.ndarray, machine_first: np.ndarray
) -> np.ndarray:
    """STARTs that open a run of another order than the run opened before them on the machine."""
    n = len(ev.t)
    before = np.empty(n, dtype=np.int64)
    before[0] = -1
    before[1:] = opener[:-1]
    has = before >= machine_first
    return run_start & has & (ev.o[np.maximum(before, 0)] != ev.o)


def _next_after(candidates: np.ndarray, positions: np.ndarray, group: np.ndarray) -> np.ndarray:
    """For each position, the first candidate position after it in the same group (n if none).

    ``candidates`` is sorted; a vectorized binary search per position, no pass over all events.
    """
    n = len(group)
    if len(candidates) == 0 or len(positions) == 0:
        return np.full(len(positions), n, dtype=np.int64)
    idx = np.searchsorted(candidates, positions, side="right")
    found = idx < len(candidates)
    after = np.where(found, candidates[np.minimum(idx, len(candidates) - 1)], n)
    same = found.copy()
    same[found] = group[after[found]] == group[positions[found]]
    return np.where(same, after, n).astype(np.int64)


def _events(
    bookings: pd.DataFrame, carried: pd.DataFrame | None, lo: datetime | None
) -> pd.DataFrame:
    cols = ["ts", "machine_code", "order_code", "product_code", "event"]
    parts = [bookings[cols].assign(_flags=0)] if not bookings.empty else []
    if carried is not None and not carried.empty:
        parts.append(
            pd.DataFrame(
                {
                    "ts": carried["start"],
                    "machine_code": carried["machine_code"],
                    "order_code": carried["order_code"],
                    "product_code": carried["product_code"],
                    "event": "START",
                    "_flags": _flag_bits(carried.get("flags"), len(carried)),
                }
            )
        )
        if lo is not None:
            # closed runs carried for merging: their END lies before the window, so add it
            lo_ts = pd.Timestamp(lo)
            ended = carried[carried["end"].notna() & (carried["end"] < lo_ts)]
            if not ended.empty:
                parts.append(
                    pd.DataFrame(
                        {
                            "ts": ended["end"],
                            "machine_code": ended["machine_code"],
                            "order_code": ended["order_code"],
                            "product_code": ended["product_code"],
                            "event": "END",
                            "_flags": 0,
                        }
                    )
                )
    if not parts:
        return pd.DataFrame(columns=[*cols, "_flags"])
    events = (
        pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    )
    return events.astype({"ts": "datetime64[us, UTC]"})


def _sort(primary: np.ndarray, t: np.ndarray, tail: np.ndarray) -> np.ndarray:
    """Order by (primary, t, tail). Packs primary and time into one int64 key when they fit."""
    if len(t) == 0:
        return np.arange(0)
    t_rel = t - t.min()
    t_bits = max(int(t_rel.max()).bit_length(), 1)
    p_bits = max(int(primary.max()).bit_length(), 1)
    if t_bits + p_bits > 62:
        return np.lexsort((tail, t, primary))
    key = (primary.astype(np.int64) << t_bits) | t_rel
    order = np.argsort(key, kind="stable")  # one int64 key: much faster than a multi-key sort
    ranked = key[order]
    tie = np.zeros(len(key), dtype=bool)
    tie[1:] = ranked[1:] == ranked[:-1]
    if tie.any():
        # equal (machine, time): order those few by the tie-break key, within their slots
        tie[:-1] |= tie[1:]
        slots = np.flatnonzero(tie)
        members = order[slots]
        order[slots] = members[np.lexsort((tail[members], ranked[slots]))]
    return order


def _flag_bits(flags: pd.Series | None, n: int) -> np.ndarray:
    """Comma-separated flag names -> bit masks."""
    out = np.zeros(n, dtype=np.int64)
    if flags is None:
        return out
    text = flags.astype(object).where(flags.notna(), "").astype(str).to_numpy()
    for name, bit in _BIT.items():
        out |= np.where(np.char.find(text.astype(str), name) >= 0, bit, 0)
    return out


# ----------------------------------------------------------------------------- group helpers

# ----------------------------------------------------------------------------- group helpers


def _group_cumsum(values: np.ndarray, new_group: np.ndarray) -> np.ndarray:
    """Running sum that restarts at every group start."""
    total = np.cumsum(values)
    return total - _ffill(np.where(new_group, total - values, _NAT))


def _group_cummin(values: np.ndarray, new_group: np.ndarray) -> np.ndarray:
    return pd.Series(values).groupby(np.cumsum(new_group)).cummin().to_numpy()


def _ffill(values: np.ndarray) -> np.ndarray:
    """Forward-fill the _NAT holes of an int64 array (the first element is never a hole here)."""
    idx = np.where(values != _NAT, np.arange(len(values)), 0)
    np.maximum.accumulate(idx, out=idx)
    return values[idx]


def _ffill_in_group(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Forward-fill -2 holes within groups (``group`` ascending); -2 where nothing precedes."""
    n = len(values)
    if n == 0:
        return values.astype(np.int64)
    pos = np.arange(n)
    first = np.ones(n, dtype=bool)
    first[1:] = group[1:] != group[:-1]
    group_first = np.maximum.accumulate(np.where(first, pos, 0))
    last = np.maximum.accumulate(np.where(values != -2, pos, -1))
    return np.where(last >= group_first, values[np.maximum(last, 0)], -2).astype(np.int64)


def _by_machine_and_start(*columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Run columns (machine, order, product, start, end, flags) ordered by machine, start, order."""
    rm, ro, _rp, rs = columns[:4]
    order = np.lexsort((ro, rs, rm))
    return tuple(column[order] for column in columns)


def _close_by_next_order(
    rm: np.ndarray,
    ro: np.ndarray,
    rp: np.ndarray,
    rs: np.ndarray,
    re_: np.ndarray,
    flags: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """End each run at the next start of another order on its machine (``logins: count``)."""
    rm, ro, rp, rs, re_, flags = _by_machine_and_start(rm, ro, rp, rs, re_, flags)
    n = len(rs)
    next_start = np.full(n, _NAT)
    same_machine = np.zeros(n, dtype=bool)
    same_machine[:-1] = rm[1:] == rm[:-1]
    next_start[:-1] = rs[1:]
    different = np.zeros(n, dtype=bool)
    different[:-1] = ro[1:] != ro[:-1]
    cut = same_machine & different & ((re_ == _NAT) | (re_ > next_start))
    late_mask = cut & (re_ != _NAT)
    late = (rm[late_mask], ro[late_mask], re_[late_mask].copy())
    re_ = np.where(cut, next_start, re_)
    flags = np.where(cut, flags | _BIT["closed_by_next_order"], flags)
    return rm, ro, rp, rs, re_, flags, late  # type: ignore[return-value]


def _merge(
    rm: np.ndarray,
    ro: np.ndarray,
    rp: np.ndarray,
    rs: np.ndarray,
    re_: np.ndarray,
    flags: np.ndarray,
    gap: int,
) -> tuple[np.ndarray, ...]:
    """Merge consecutive runs of the same order on a machine separated by at most ``gap``."""
    rm, ro, rp, rs, re_, flags = _by_machine_and_start(rm, ro, rp, rs, re_, flags)
    n = len(rs)
    joins = np.zeros(n, dtype=bool)
    joins[1:] = (
        (rm[1:] == rm[:-1])
        & (ro[1:] == ro[:-1])
        & (re_[:-1] != _NAT)
        & (rs[1:] - re_[:-1] <= gap)
        & (rs[1:] >= re_[:-1])
    )
    if not joins.any():
        return rm, ro, rp, rs, re_, flags
    head = ~joins
    last = np.append(np.flatnonzero(head)[1:] - 1, n - 1)
    merged_flags = np.bitwise_or.reduceat(flags, np.flatnonzero(head))
    merged_any = np.add.reduceat(joins.astype(np.int64), np.flatnonzero(head)) > 0
    merged_flags = np.where(merged_any, merged_flags | _BIT["merged"], merged_flags)
    keep = np.flatnonzero(head)
    return rm[keep], ro[keep], rp[keep], rs[keep], re_[last], merged_flags


# ----------------------------------------------------------------------------- outputs


def _names(dictionary: pa.Array, codes: np.ndarray) -> pd.Series:
    """Codes back to text (-1: NA), with Arrow's take: no Python object per row."""
    taken = (
        dictionary.take(pa.array(codes, mask=codes < 0))
        if len(dictionary)
        else pa.nulls(len(codes), pa.string())
    )
    return pd.Series(pd.arrays.ArrowStringArray(taken))


def _arrow(uniques: pd.Index) -> pa.Array:
    """Factorized uniques as an Arrow string array, the dictionary ``_names`` takes from."""
    try:
        return pa.array(uniques.array, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array(np.asarray(uniques, dtype=object), type=pa.string())


def _stamps(values: np.ndarray) -> pd.Series:
    return (
        pd.Series(values.view("datetime64[us]")).dt.tz_localize("UTC").astype("datetime64[us, UTC]")
    )


def _flag_text(flags: np.ndarray) -> pd.Series:
    out = pd.Series(pd.NA, index=range(len(flags)), dtype="string")
    for value in np.unique(flags[flags != 0]):
        text = ",".join(name for name in FLAGS if value & _BIT[name])
        out[flags == value] = text
    return out


def _anomalies(
    kind: str,
    m: np.ndarray,
    o: np.ndarray,
    t: np.ndarray,
    mask: np.ndarray,
    names: tuple[pa.Array, pa.Array, pa.Array],
    detail: str | pd.Series,
) -> pd.DataFrame:
    if not mask.any():
        return empty_anomalies()
    machines, orders, _ = names
    return pd.DataFrame(
        {
            "kind": pd.Series(kind, index=range(int(mask.sum())), dtype="string"),
            "machine_code": _names(machines, m[mask]),
            "order_code": _names(orders, o[mask]),
            "ts": _stamps(t[mask]),
            "detail": pd.Series(
                detail.to_numpy() if isinstance(detail, pd.Series) else detail,
                index=range(int(mask.sum())),
                dtype="string",
            ),
        }
    )
