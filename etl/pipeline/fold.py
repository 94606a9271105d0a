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

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from etl.shapes import ANOMALY_COLUMNS, RUN_COLUMNS, FoldPolicy, empty_anomalies, empty_runs

FLAGS = ("closed_by_next_order", "merged", "product_changed", "stale", "clock_skew")
_BIT = {name: 1 << i for i, name in enumerate(FLAGS)}
_NAT = np.iinfo(np.int64).min
_ALL_FLAGS = range(1 << len(FLAGS))
_PARALLEL_FROM = 200_000  # events; below this, threads cost more than they save


@dataclass
class FoldResult:
    """Runs (``end`` NaT while open, ``flags`` comma-separated or NA) and anomalies, as the fold
    found them: one frame per kind (``found``), so a run hands them on in batches without
    copying them all into one frame first (``anomalies``: as one frame)."""

    runs: pd.DataFrame
    found: list[pd.DataFrame]
    #: ``logins: count`` with ``points``: per (machine, order) and point (``carry_at``), the
    #: logins open just before it (``logins``, only where some are); None otherwise
    logins: pd.DataFrame | None = None

    @property
    def anomalies(self) -> pd.DataFrame:
        """All anomalies as one frame (``ANOMALY_COLUMNS``)."""
        if not self.found:
            return empty_anomalies()
        return pd.concat(self.found, ignore_index=True)[ANOMALY_COLUMNS]


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
    points: Sequence[datetime] = (),
) -> FoldResult:
    """Fold canonical bookings into runs.

    ``carried`` are stored runs that began before ``lo`` and were open at ``lo`` (or ended within
    ``carry_margin`` of it); they enter the fold as their START (and, when they ended before
    ``lo``, their END). Under ``logins: count``, a carried run open at ``lo`` with a ``logins``
    column enters as that many STARTs: the logins its bookings before ``lo`` left open (NA or
    missing: one). ``hi`` is the window's end, used for ``max_open``. ``points`` (with
    ``logins: count``): where the next window may start; the result's ``logins`` are the
    logins open there, for the runs it will carry in.
    """
    policy = policy or FoldPolicy()
    ev, names, orders = _encode(_events(bookings, carried, lo, policy.logins == "count"))
    if len(ev.t) == 0:
        return FoldResult(empty_runs(), [])
    exclusive = policy.on_new_order == "close" and policy.logins == "single"
    # Per machine for the exclusive state machine, else per (machine, order); END before START,
    # then by order and product, compared by value (so the result never depends on row order).
    ev = _sorted(ev, orders)
    if not exclusive:
        ev = _by_group(ev, orders)
    skew_pair = _clock_skew(ev, policy.clock_skew) if policy.clock_skew > timedelta(0) else None

    state = _machine_states(ev) if exclusive else _group_states(ev, policy.logins)
    logins = None
    if state.logins is not None and points:
        logins = _open_logins(ev, state.logins, points, names)
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
    flags = np.zeros(len(starts), dtype=np.int64)
    if ev.f is not None:
        flags |= ev.f[starts] & (_BIT["product_changed"] | _BIT["clock_skew"] | _BIT["merged"])
    flags[state.closed_by_next] |= _BIT["closed_by_next_order"]
    flags[_valid(state.run_of[state.changed])] |= _BIT["product_changed"]
    if skew_pair is not None and skew_pair.any():
        flags[_valid(state.run_of[skew_pair])] |= _BIT["clock_skew"]

    if policy.on_new_order == "close" and not exclusive and len(starts):
        rm, ro, rp, rs, re_, flags, late = _close_by_next_order(
            rm, ro, rp, rs, re_, flags, orders.ranks()
        )
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
        rm, ro, rp, rs, re_, flags = _merge(rm, ro, rp, rs, re_, flags, gap, orders.ranks())
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
    return FoldResult(
        runs=runs[RUN_COLUMNS].reset_index(drop=True),
        found=[a for a in anomalies if not a.empty],  # each in ANOMALY_COLUMNS order
        logins=logins,
    )


def _open_logins(
    ev: _Events,
    count: np.ndarray,
    points: Sequence[datetime],
    names: tuple[pa.Array, pa.Array, pa.Array],
) -> pd.DataFrame:
    """Per (machine, order) group and point, the logins open just before it (events in group
    order, ``count``: the logins open after each event)."""
    new_group = np.ones(len(ev.t), dtype=bool)
    new_group[1:] = (ev.m[1:] != ev.m[:-1]) | (ev.o[1:] != ev.o[:-1])
    first = np.flatnonzero(new_group)
    parts = []
    for point in sorted(set(points)):
        point_us = int(pd.Timestamp(point).tz_convert("UTC").value // 1000)
        seen = np.add.reduceat((ev.t < point_us).astype(np.int64), first)
        last = first + seen - 1
        open_ = np.where(seen > 0, count[np.maximum(last, 0)], 0)
        keep = open_ > 0
        at = first[keep]
        parts.append(
            pd.DataFrame(
                {
                    "machine_code": _names(names[0], ev.m[at]),
                    "order_code": _names(names[1], ev.o[at]),
                    "carry_at": pd.Series(pd.Timestamp(point), index=range(len(at))).astype(
                        "datetime64[us, UTC]"
                    ),
                    "logins": open_[keep],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


@dataclass
class _Events:
    """Events as parallel arrays: machine, order, product codes (int32), time (us), START?, flags.

    ``f`` (the flags of carried runs, int8) is None when nothing was carried.
    """

    m: np.ndarray
    o: np.ndarray
    p: np.ndarray
    t: np.ndarray
    s: np.ndarray
    f: np.ndarray | None

    def take(self, index: np.ndarray) -> _Events:
        f = None if self.f is None else self.f[index]
        return _Events(self.m[index], self.o[index], self.p[index], self.t[index], self.s[index], f)


class _Orders:
    """The order dictionary; its codes follow first appearance, ranks (by value) come on demand.

    Equality is all the state machines need, so sorting the (large) order dictionary is paid only
    where the order of two orders matters: ties at one time, and the per-order policies.
    """

    def __init__(self, dictionary: pa.Array) -> None:
        self.dictionary = dictionary
        self._ranks: np.ndarray | None = None

    def ranks(self) -> np.ndarray:
        """Rank by value of every code."""
        if self._ranks is None:
            self._ranks = _ranks(self.dictionary)
        return self._ranks

    def rank_of(self, codes: np.ndarray) -> np.ndarray:
        """Ranks that order ``codes`` by value (dense among ``codes`` only: cheap for a few)."""
        if self._ranks is not None:
            return self._ranks[codes]
        unique, inverse = np.unique(codes, return_inverse=True)
        return _ranks(self.dictionary.take(pa.array(unique)))[inverse]


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
    logins: np.ndarray | None = None  # ``logins: count``: per event, the logins open after it

    def duplicate_detail(self, ev: _Events) -> pd.Series:
        # the start of the run each duplicate START fell into; formatted once per distinct time
        unique, inverse = np.unique(
            ev.t[self.starts[self.run_of[self.duplicate]]], return_inverse=True
        )
        text = pc.binary_join_element_wise(
            "START while the run started at ", _stamp_text(unique), " is open", ""
        )
        return pd.Series(pd.arrays.ArrowStringArray(text.take(pa.array(inverse))))


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
        if arr is not None:
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
        open_logins: np.ndarray | None = count
    else:
        open_logins = None
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
    changed = inside & (ev.p >= 0) & (run_product >= 0) & (ev.p != run_product)
    return _State(
        starts=starts,
        ends=np.where(end_pos < n, ev.t[np.minimum(end_pos, n - 1)], _NAT),
        closed_by_next=np.zeros(len(starts), dtype=bool),
        duplicate=duplicate,
        orphan=orphan,
        changed=changed,
        run_of=run_of,
        logins=open_logins,
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
    np.not_equal(ev.m[1:], ev.m[:-1], out=new_machine[1:])
    machine_first = np.where(new_machine, pos, 0)
    np.maximum.accumulate(machine_first, out=machine_first)
    del new_machine

    # latest START strictly before each event on its machine
    prev = np.empty(n, dtype=np.int64)
    prev[0] = -1
    latest = np.where(ev.s, pos, -1)
    np.maximum.accumulate(latest, out=latest)
    prev[1:] = latest[:-1]
    del latest, pos
    same_order = prev >= machine_first
    del machine_first
    np.maximum(prev, 0, out=prev)
    same_order &= ev.o[prev] == ev.o
    # ENDs of the latest START's order since that START (the first one closes its run)
    matching = same_order & ~ev.s
    seen = np.cumsum(matching, dtype=np.int32)
    still_open = same_order
    still_open &= (seen - matching) == seen[prev]
    del prev, seen, matching, same_order
    run_start = ev.s & ~still_open
    duplicate = ev.s & still_open
    closes = still_open
    closes &= ~ev.s
    orphan = ~ev.s
    orphan &= ~closes

    # each START and closing END belongs to the latest run-opening START at or before it, which
    # is on its machine (it is open there); a run has at most one closing END
    starts = np.flatnonzero(run_start)
    run_of = np.cumsum(run_start, dtype=np.int32)
    run_of -= 1
    belongs = ev.s | closes
    run_of[~belongs] = -1
    del run_start

    # a run ends at its closing END or, when the machine's next run is of another order and the
    # run is still open then, at that run's START
    close_pos = np.flatnonzero(closes)
    end_pos = np.full(len(starts), n, dtype=np.int64)
    end_pos[run_of[close_pos]] = close_pos
    by_next = np.zeros(len(starts), dtype=bool)
    if len(starts) > 1:
        rm, ro = ev.m[starts], ev.o[starts]
        by_next[:-1] = (rm[1:] == rm[:-1]) & (ro[1:] != ro[:-1]) & (end_pos[:-1] == n)
        end_pos[:-1][by_next[:-1]] = starts[1:][by_next[:-1]]
    ends = np.full(len(starts), _NAT, dtype=np.int64)
    ended = end_pos < n
    ends[ended] = ev.t[end_pos[ended]]

    # product_changed: a later booking of the run (duplicate START or closing END) names another
    candidates = np.flatnonzero((duplicate | closes) & (ev.p >= 0))
    run_product = ev.p[starts[run_of[candidates]]]
    changed = np.zeros(n, dtype=bool)
    changed[candidates[(run_product >= 0) & (run_product != ev.p[candidates])]] = True
    return _State(
        starts=starts,
        ends=ends,
        closed_by_next=by_next,
        duplicate=duplicate,
        orphan=orphan,
        changed=changed,
        run_of=run_of,
    )


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
    bookings: pd.DataFrame, carried: pd.DataFrame | None, lo: datetime | None, count: bool = False
) -> list[_Part]:
    """The bookings and the carried runs' STARTs (one per open login with ``count``) and their
    ENDs before ``lo``, as column parts."""
    parts = [_part(bookings, bookings["ts"], bookings["event"])] if not bookings.empty else []
    if carried is not None and not carried.empty:
        opening = carried
        if count and "logins" in carried:
            logins = pd.to_numeric(carried["logins"]).fillna(1).clip(lower=1).astype(np.int64)
            if lo is not None:  # a run that ended before lo has no login open at it
                logins = logins.where(~(carried["end"] < pd.Timestamp(lo)).fillna(False), 1)
            opening = carried.loc[carried.index.repeat(logins.to_numpy())]
        start = _part(opening, opening["start"], True)
        start.f = _flag_bits(opening.get("flags"), len(opening)).astype(np.int8)
        parts.append(start)
        if lo is not None:
            # closed runs carried for merging: their END lies before the window, so add it
            lo_ts = pd.Timestamp(lo)
            ended = carried[carried["end"].notna() & (carried["end"] < lo_ts)]
            if not ended.empty:
                parts.append(_part(ended, ended["end"], False))
    return parts


@dataclass
class _Part:
    """One source of events, columns as they came (text stays Arrow until it is encoded)."""

    t: np.ndarray
    s: np.ndarray
    texts: tuple[pa.ChunkedArray, pa.ChunkedArray, pa.ChunkedArray]
    f: np.ndarray | None = None


def _part(frame: pd.DataFrame, ts: pd.Series, event: pd.Series | bool) -> _Part:
    t = ts.astype("datetime64[us, UTC]").to_numpy(dtype="datetime64[us]").view("int64")
    if isinstance(event, bool):
        s = np.full(len(frame), event)
    else:
        s = pc.fill_null(pc.equal(_arrow_text(event), "START"), False).to_numpy()
    texts = (
        _arrow_text(frame["machine_code"]),
        _arrow_text(frame["order_code"]),
        _arrow_text(frame["product_code"]),
    )
    return _Part(t=t, s=s, texts=texts)


def _arrow_text(column: pd.Series) -> pa.ChunkedArray:
    """A text column as Arrow without copying when it is Arrow-backed already."""
    values = pa.array(column.array, from_pandas=True)
    if isinstance(values, pa.Array):
        values = pa.chunked_array([values])
    kind = values.type
    if not (
        pa.types.is_dictionary(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
    ):
        values = values.cast(pa.large_string())
    return values


def _encode(
    parts: list[_Part],
) -> tuple[_Events, tuple[pa.Array, pa.Array, pa.Array], _Orders]:
    """Parts -> one set of event arrays; text -> int32 codes (machines and products by value).

    Dictionary-typed text columns (Arrow dictionaries, pandas categoricals) keep their codes.
    """
    if not parts:
        none = np.zeros(0, dtype=np.int32)
        empty = pa.array([], pa.string())
        return (
            _Events(none, none, none, np.zeros(0, np.int64), np.zeros(0, bool), None),
            (empty, empty, empty),
            _Orders(empty),
        )
    columns = [[part.texts[column] for part in parts] for column in range(3)]
    if sum(len(part.t) for part in parts) < _PARALLEL_FROM:
        encoded = [_dictionary_codes(column) for column in columns]
    else:
        # Arrow hashes without the GIL: the three columns on as many cores as there are
        with ThreadPoolExecutor(max_workers=3) as pool:
            encoded = list(pool.map(_dictionary_codes, columns))
    (m, machines), (o, orders), (p, products) = encoded
    # machines and products by value: their dictionaries are small
    m_rank = np.append(_ranks(machines), np.int32(-1))
    m = m_rank[m]
    machines = machines.take(pa.array(np.argsort(m_rank[:-1])))
    p_rank = np.append(_ranks(products), np.int32(-1))  # code -1 (no product) stays -1
    p = p_rank[p]
    products = products.take(pa.array(np.argsort(p_rank[:-1])))
    one = len(parts) == 1
    t = parts[0].t if one else np.concatenate([part.t for part in parts])
    s = parts[0].s if one else np.concatenate([part.s for part in parts])
    f = None
    if any(part.f is not None for part in parts):
        f = np.concatenate(
            [part.f if part.f is not None else np.zeros(len(part.t), np.int8) for part in parts]
        )
    return _Events(m, o, p, t, s, f), (machines, orders, products), _Orders(orders)


def _dictionary_codes(columns: list[pa.ChunkedArray]) -> tuple[np.ndarray, pa.Array]:
    """int32 codes (-1: null) and the dictionary they index, in first-appearance order."""
    types = {column.type for column in columns}
    if len(types) > 1:
        columns = [column.cast(pa.large_string()) for column in columns]
    chunks = [chunk for column in columns for chunk in column.chunks]
    values = pa.chunked_array(chunks, type=columns[0].type)
    if pa.types.is_dictionary(values.type):
        values = values.unify_dictionaries()
    else:
        values = values.dictionary_encode()
    if values.num_chunks == 0:
        return np.zeros(0, np.int32), pa.array([], pa.string())
    dictionary = values.chunk(0).dictionary
    if any(len(chunk.dictionary) != len(dictionary) for chunk in values.chunks):
        # the hash kernel shares one dictionary among the chunks; be safe if it ever does not
        values = values.unify_dictionaries()
        dictionary = values.chunk(0).dictionary
    codes = np.concatenate(
        [
            pc.fill_null(chunk.indices.cast(pa.int32()), -1).to_numpy(zero_copy_only=False)
            for chunk in values.chunks
        ]
    )
    return codes, dictionary


def _ranks(dictionary: pa.Array) -> np.ndarray:
    """For each dictionary entry, its rank by value (int32)."""
    order = pc.array_sort_indices(dictionary).to_numpy()
    ranks = np.empty(len(dictionary), dtype=np.int32)
    ranks[order] = np.arange(len(dictionary), dtype=np.int32)
    return ranks


def _sorted(ev: _Events, orders: _Orders) -> _Events:
    """The events in (machine, time, END first, order, product) order, stable.

    Machine, time and START? are packed into one int64 key, which also gives them back sorted.
    The events are first grouped by machine with a radix sort of the (small) machine codes; within
    a machine, bookings mostly arrive in time order, which the stable (adaptive) sort of the key
    then finds as long ascending runs. Ties of the key are ordered by order and product
    afterwards: there are few.
    """
    n = len(ev.t)
    t0 = int(ev.t.min())
    t_bits = max((int(ev.t.max()) - t0).bit_length(), 1)
    shift = t_bits + 1
    if shift + max(int(ev.m.max()).bit_length(), 1) > 62:
        return ev.take(np.lexsort((ev.p, orders.ranks()[ev.o], ev.s, ev.t, ev.m)))
    key = ev.t - t0
    key <<= 1
    key |= ev.s
    high = ev.m.astype(np.int64)
    high <<= shift
    key |= high
    del high
    if int(ev.m.max()) < 1 << 15:
        by_machine = np.argsort(ev.m.astype(np.int16), kind="stable")  # a radix sort
        key = key[by_machine]
        inner = np.argsort(key, kind="stable")
        order = by_machine[inner]
        del by_machine
    else:
        inner = np.argsort(key, kind="stable")
        order = inner
    key = key[inner]
    del inner
    tie = np.zeros(n, dtype=bool)
    np.equal(key[1:], key[:-1], out=tie[1:])
    if tie.any():
        # equal (machine, time, START?): by order, then product, within their slots
        tie[:-1] |= tie[1:]
        slots = np.flatnonzero(tie)
        members = order[slots]
        order[slots] = members[
            np.lexsort((ev.p[members], orders.rank_of(ev.o[members]), key[slots]))
        ]
    del tie
    m = (key >> shift).astype(np.int32)
    s = (key & 1).astype(bool)
    key >>= 1
    key &= (1 << t_bits) - 1
    key += t0
    f = None if ev.f is None else ev.f[order]
    return _Events(m, ev.o[order], ev.p[order], key, s, f)


def _by_group(ev: _Events, orders: _Orders) -> _Events:
    """Events in (machine, time, ...) order regrouped, stably, by (machine, order)."""
    group = ev.m.astype(np.int64) << 32
    group |= orders.ranks()[ev.o]
    return ev.take(np.argsort(group, kind="stable"))


def _valid(runs: np.ndarray) -> np.ndarray:
    """Run indices that are runs (-1: the event belongs to none)."""
    return runs[runs >= 0]


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


def _by_machine_and_start(ranks: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """Run columns (machine, order, product, start, end, flags) ordered by machine, start, order.

    ``ranks`` orders the order codes by value.
    """
    rm, ro, _rp, rs = columns[:4]
    order = np.lexsort((ranks[ro], rs, rm))
    return tuple(column[order] for column in columns)


def _close_by_next_order(
    rm: np.ndarray,
    ro: np.ndarray,
    rp: np.ndarray,
    rs: np.ndarray,
    re_: np.ndarray,
    flags: np.ndarray,
    ranks: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """End each run at the next start of another order on its machine (``logins: count``)."""
    rm, ro, rp, rs, re_, flags = _by_machine_and_start(ranks, rm, ro, rp, rs, re_, flags)
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
    ranks: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Merge consecutive runs of the same order on a machine separated by at most ``gap``."""
    rm, ro, rp, rs, re_, flags = _by_machine_and_start(ranks, rm, ro, rp, rs, re_, flags)
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
    if not len(dictionary):
        return pd.Series(pd.arrays.ArrowStringArray(pa.nulls(len(codes), pa.large_string())))
    missing = codes < 0
    index = pa.array(codes, mask=missing) if missing.any() else pa.array(codes)
    return pd.Series(pd.arrays.ArrowStringArray(dictionary.take(index)))


def _stamps(values: np.ndarray) -> pd.Series:
    return pd.Series(values.view("datetime64[us]"), dtype="datetime64[us, UTC]")


def _stamp_text(values: np.ndarray) -> pa.Array:
    """UTC times (us) as pandas writes them: ``2024-03-04 06:00:00+00:00``, with a fraction
    (milli- or microseconds, the same for all) only when one of them needs it."""
    fraction = values % 1_000_000
    unit: Literal["s", "ms", "us"] = (
        "s" if not fraction.any() else "ms" if not (fraction % 1000).any() else "us"
    )
    text = pa.array(np.datetime_as_string(values.view("datetime64[us]"), unit=unit))
    return pc.binary_join_element_wise(
        pc.replace_substring(text, "T", " ", max_replacements=1), "+00:00", ""
    )


def _flag_text(flags: np.ndarray) -> pd.Series:
    """Flag bits -> comma-separated names (NA when none), one text per distinct combination."""
    texts = pa.array(
        [",".join(name for name in FLAGS if value & _BIT[name]) or None for value in _ALL_FLAGS],
        pa.large_string(),
    )
    return pd.Series(pd.arrays.ArrowStringArray(texts.take(pa.array(flags))))


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
            "detail": detail.reset_index(drop=True)
            if isinstance(detail, pd.Series)
            else pd.Series(detail, index=range(int(mask.sum())), dtype="string"),
        }
    )
