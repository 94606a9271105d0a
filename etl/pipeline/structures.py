"""What differs between the source layouts a job can read: bookings and orders.

A job run (etl/pipeline/run.py) is the same for every layout: read, map, derive the runs, diff, commit,
publish. The layout-specific steps sit behind ``Structure``:

- ``shape``: how its rows sit in time, so a reader knows which rows a window needs;
- ``reach``: how far back a run reads (an order the store holds as open is re-read until it
  closes, however old it is);
- ``map``: raw source rows to the canonical shape (bookings, or runs straight from an order table);
- ``derive``: the canonical rows of a window to its runs (the fold, or dedupe);
- ``carry_margin``: how far before the window stored runs are replaced (the fold may close a run
  that ended just before ``lo`` differently once it sees the bookings after it).

With mapping ``fields``, a bookings window also gives the carries of its runs (the fields of their
bookings before a carry point, etl/pipeline/attributes.py), and its read reaches back for the
bookings of a carried run without a usable carry (``Reach.before``).

A structure does no I/O: what it needs from the store comes in as a ``Carried`` function, so the
same steps serve a run, a backfill chunk and a dry run, whatever source the rows come from.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from etl.config.models import MappingSpec
from etl.pipeline.attributes import FROM, aggregate
from etl.pipeline.fold import FoldResult, carry_margin, fold
from etl.pipeline.mapping import Mapped, map_bookings, map_orders, timestamps
from etl.shapes import DEFAULT_PHASE, RUN_COLUMNS, FoldPolicy, empty_runs
from etl.sources.reader import SHAPES, Shape, Window

#: ``carried(lo, margin)``: the stored runs of the job that started before ``lo`` and were open
#: at ``lo - margin`` (end NULL or later); None when there is no store yet. With mapping fields,
#: each with its carry (``carry_at``, ``carry_attributes``, ``carry_basis``: the latest carry
#: point not after ``lo``, NULL when there is none); a frame without these columns says that its
#: ``attributes`` are the fields of the run's bookings before ``lo`` (a backfill's previous chunk).
Carried = Callable[[datetime, timedelta], pd.DataFrame]

KEY = ["machine_code", "order_code", "start"]


@dataclass
class Reach:
    """What a run reads: the window it asks the source for (``window`` or wider) and the stored
    runs that made it wider (empty: none)."""

    window: Window
    revisited: pd.DataFrame = field(default_factory=empty_runs)
    #: the runs carried in, when working out the reach needed them (else derive asks again)
    carried: pd.DataFrame | None = None
    #: a read before ``window`` for the fields of carried runs only (their bookings from the
    #: start, or from a carry point, up to ``lo``); None: none needed
    before: Window | None = None


@dataclass
class Derivation:
    """What a structure derived for a window: its runs and the anomalies it found (before they
    are cut to the window)."""

    runs: pd.DataFrame
    anomalies: list[pd.DataFrame]
    carried: int = 0  # runs carried in from the store because they were open at the window's start
    #: runs of rows changed since lo that the source now leaves out: they leave the store
    removed: pd.DataFrame | None = None
    #: the carries of the runs the next window may carry in (None: the mapping has no fields)
    carries: pd.DataFrame | None = None


class Structure(ABC):
    """The steps of a job run that depend on the source layout (see the module docstring)."""

    #: the mapping's ``structure`` this implements
    name: ClassVar[str]
    #: how a source row sits in time
    shape: ClassVar[Shape]
    #: whether source rows carry event codes (``etl preview`` lists the rows per code)
    has_codes: ClassVar[bool] = False
    #: whether a window takes nothing from the store but the runs carried in at its start, so a
    #: backfill may derive its next chunk from this chunk's runs while this one commits
    reads_ahead: ClassVar[bool] = False

    def __init__(self, mapping: MappingSpec) -> None:
        self.mapping = mapping

    def carry_margin(self) -> timedelta:
        """How far before ``lo`` the stored runs a window's runs replace reach (0: from ``lo``)."""
        return timedelta(0)

    def reach(self, window: Window, carried: Carried | None) -> Reach:
        """What a run of ``window`` reads from the source (by default: just the window)."""
        return Reach(window)

    @abstractmethod
    def map(self, batch: pd.DataFrame, zone: ZoneInfo, instants: frozenset[str]) -> Mapped:
        """One batch of raw source rows in the canonical shape (``instants``: the raw columns
        that hold instants, not wall-clock times)."""

    def oldest(self, batch: pd.DataFrame, zone: ZoneInfo, instants: frozenset[str]) -> Any:
        """The oldest time (``shape.at``) among raw rows, a pd.Timestamp or None: a run whose
        source stamps changes reaches back to it (by default: none)."""
        return None

    @abstractmethod
    def derive(
        self,
        rows: list[pd.DataFrame],
        window: Window,
        reach: Reach,
        carried: Carried | None,
        withdrawn: list[pd.DataFrame],
        *,
        before: Sequence[pd.DataFrame] = (),
        points: Sequence[datetime] = (),
    ) -> Derivation:
        """The runs of ``window`` from the mapped rows read over ``reach`` (``withdrawn``: the
        mapped rows the source's selection now leaves out, see ``Reading.withdrawn``;
        ``before``: the rows read over ``reach.before``; ``points``: where the next window may
        start, for the carries)."""


class Bookings(Structure):
    """A table of START/END bookings per machine and order: the runs are folded from them."""

    name = "bookings"
    shape = SHAPES[name]
    has_codes = True
    reads_ahead = True

    def carry_margin(self) -> timedelta:
        """The fold's margin: runs ended this long before ``lo`` may still merge or close anew,
        or take bookings within the fields' grace after their END."""
        return max(carry_margin(self.mapping.fold.policy()), self.mapping.fold.grace)

    def reach(self, window: Window, carried: Carried | None) -> Reach:
        """The window; with fields, and a carried run whose carry is not usable at ``lo``, also
        a read of the bookings before it, from the oldest time such a run needs (its carry
        point, or its start)."""
        if carried is None:
            return Reach(window)
        if not self.mapping.fields:
            if not self._carries():
                return Reach(window)
            return Reach(
                window, carried=self._held(carried(window.lo, self.carry_margin()), window.lo)
            )
        held = self._held(carried(window.lo, self.carry_margin()), window.lo)
        if held.empty:
            return Reach(window, carried=held)
        oldest = pd.to_datetime(held[FROM], utc=True).min().to_pydatetime()
        if oldest >= window.lo:
            return Reach(window, carried=held)
        return Reach(window, carried=held, before=Window(lo=oldest, hi=window.lo))

    def _carries(self) -> bool:
        """Whether the runs carried in need their carries: for the fields, or for the logins
        open at ``lo`` (``logins: count``)."""
        return bool(self.mapping.fields) or self.mapping.fold.logins == "count"

    def basis(self) -> str:
        """A digest of the mapping: a carry written under another mapping is not used."""
        text = self.mapping.model_dump_json()
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _held(self, held: pd.DataFrame, lo: datetime) -> pd.DataFrame:
        """The carried runs with ``_from`` (their bookings from then on are read), as
        ``attributes`` the partial fields of their bookings before it (NA: none) and, as
        ``logins``, the logins open at ``lo`` (NA: unknown, the fold takes one)."""
        held = held.copy()
        if "carry_at" not in held:  # attributes are the fields of the bookings before lo
            held[FROM] = pd.Series(pd.Timestamp(lo), index=held.index).astype("datetime64[us, UTC]")
            return held
        at = pd.to_datetime(held["carry_at"], utc=True).astype("datetime64[us, UTC]")
        same = (held["carry_basis"].astype("string") == self.basis()).fillna(False)
        usable = (at.notna() & (at <= pd.Timestamp(lo)) & same.astype(bool)).to_numpy()
        start = pd.to_datetime(held["start"], utc=True).astype("datetime64[us, UTC]")
        held[FROM] = at.where(usable, start)
        held["attributes"] = held["carry_attributes"].astype("string").where(usable, pd.NA)
        # the logins count only at lo itself: a carry from before it misses the bookings since
        logins = pd.array(held["carry_logins"], dtype="Int64") if "carry_logins" in held else None
        exact = (at == pd.Timestamp(lo)).fillna(False).to_numpy() & usable
        held["logins"] = (
            pd.Series(logins, index=held.index).where(exact, pd.NA) if logins is not None else pd.NA
        )
        return held.drop(
            columns=["carry_at", "carry_attributes", "carry_basis", "carry_logins"],
            errors="ignore",
        )

    def map(self, batch: pd.DataFrame, zone: ZoneInfo, instants: frozenset[str]) -> Mapped:
        """Raw rows to canonical bookings (``ts``, codes, ``event``)."""
        return map_bookings(batch, self.mapping, zone, instants)

    def oldest(self, batch: pd.DataFrame, zone: ZoneInfo, instants: frozenset[str]) -> Any:
        """The oldest booking time among raw rows (None: none has one)."""
        spec = self.mapping.booking_columns.timestamp
        stamps = timestamps(batch, spec, zone, self.mapping.dst, instants).dropna()
        return stamps.min() if len(stamps) else None

    def derive(
        self,
        rows: list[pd.DataFrame],
        window: Window,
        reach: Reach,
        carried: Carried | None,
        withdrawn: list[pd.DataFrame],
        *,
        before: Sequence[pd.DataFrame] = (),
        points: Sequence[datetime] = (),
    ) -> Derivation:
        """Fold the window's bookings, with the stored runs open at ``lo`` carried in."""
        lo, hi = pd.Timestamp(window.lo), pd.Timestamp(window.hi)
        bookings = pd.concat(rows, ignore_index=True) if rows else None
        if bookings is not None:
            bookings = bookings[(bookings["ts"] >= lo) & (bookings["ts"] < hi)]
        policy = self.mapping.fold.policy()
        held = reach.carried
        if held is None and carried is not None:
            held = carried(window.lo, self.carry_margin())
            if self._carries():
                held = self._held(held, window.lo)
        if bookings is None or bookings.empty:
            columns = ["ts", "machine_code", "order_code", "product_code", "event"]
            if (
                self.mapping.events is not None and self.mapping.events.phases
            ):  # the carried runs still fold by (order, phase)
                columns.append("phase")
            bookings = pd.DataFrame(columns=columns)
        open_at_lo = 0
        if held is not None:  # the runs open at lo itself (the margin reaches further back)
            open_at_lo = int((held["end"].isna() | (held["end"] >= lo)).sum())
        events = bookings
        if self.mapping.fields:  # ignored bookings count toward the fields only
            events = bookings[bookings["event"].isin(["START", "END"]).to_numpy()]
        result = phased_fold(events, held, self.mapping, policy, window, points)
        runs = result.runs
        if "plant" in bookings:
            runs["plant"] = start_values(runs, events, held, "plant")
        counted = bookings
        earlier = [b for b in before if not b.empty]
        if earlier and reach.before is not None:
            old = pd.concat(earlier, ignore_index=True)
            old = old[(old["ts"] >= pd.Timestamp(reach.before.lo)) & (old["ts"] < lo)]
            counted = pd.concat([old, bookings], ignore_index=True) if len(bookings) else old
        runs["attributes"], carries = aggregate(
            runs,
            counted,
            self.mapping,
            held,
            lo=window.lo,
            points=points,
            margin=self.carry_margin(),
        )
        if policy.logins == "count":
            carries = _with_logins(
                runs, carries, result.logins, points, window.lo, self.carry_margin()
            )
        if carries is not None:
            carries["basis"] = self.basis()
        return Derivation(runs, result.found, open_at_lo, carries=carries)


class Orders(Structure):
    """A table with one row per order run (start, end): the rows are the runs, deduplicated."""

    name = "orders"
    shape = SHAPES[name]

    def reach(self, window: Window, carried: Carried | None) -> Reach:
        """The window, reaching back to the oldest run the store holds as open: order rows are
        re-read until they close."""
        if carried is None:
            return Reach(window)
        held = carried(window.lo, timedelta(0))
        still_open = held[held["end"].isna()]
        if still_open.empty:
            return Reach(window, still_open)
        oldest = still_open["start"].min().to_pydatetime()
        return Reach(Window(lo=min(window.lo, oldest), hi=window.hi), still_open)

    def map(self, batch: pd.DataFrame, zone: ZoneInfo, instants: frozenset[str]) -> Mapped:
        """Raw rows to canonical runs."""
        return map_orders(batch, self.mapping, zone, instants)

    def derive(
        self,
        rows: list[pd.DataFrame],
        window: Window,
        reach: Reach,
        carried: Carried | None,
        withdrawn: list[pd.DataFrame],
        *,
        before: Sequence[pd.DataFrame] = (),
        points: Sequence[datetime] = (),
    ) -> Derivation:
        """The rows that touch the window (or were corrected since ``lo``, or are the open runs
        the read reached back for), the first of each machine, order and start."""
        lo, hi = pd.Timestamp(window.lo), pd.Timestamp(window.hi)
        runs = pd.concat(rows, ignore_index=True) if rows else empty_runs()
        keep = (runs["start"] < hi) & (
            (runs["start"] >= lo) | runs["end"].isna() | (runs["end"] >= lo)
        )
        if "updated_at" in runs:  # rows corrected since lo, however old they are
            keep |= runs["updated_at"].notna() & (runs["updated_at"] >= lo) & (runs["start"] < hi)
        if not reach.revisited.empty:
            held_keys = pd.MultiIndex.from_frame(reach.revisited[KEY])
            keep |= pd.MultiIndex.from_frame(runs[KEY]).isin(held_keys)
        runs = runs[keep]
        removed: pd.DataFrame | None = None
        if withdrawn:
            gone = pd.concat(withdrawn, ignore_index=True)
            gone_keys = pd.MultiIndex.from_frame(gone[KEY])
            left = gone[~gone_keys.isin(pd.MultiIndex.from_frame(runs[KEY]))]
            removed = left[RUN_COLUMNS].reset_index(drop=True) if not left.empty else None
        found: list[pd.DataFrame] = []
        duplicated = runs.duplicated(KEY, keep="first")
        if duplicated.any():
            dup = runs[duplicated]
            found.append(
                pd.DataFrame(
                    {
                        "kind": "duplicate_row",
                        "machine_code": dup["machine_code"],
                        "order_code": dup["order_code"],
                        "ts": dup["start"],
                        "detail": "a second row for this machine, order and start (first kept)",
                    }
                )
            )
            runs = runs[~duplicated]
        return Derivation(runs, found, removed=removed)


def start_values(
    runs: pd.DataFrame, events: pd.DataFrame, held: pd.DataFrame | None, name: str
) -> pd.Series:
    """Per run, ``name`` of the START booking it began with (a carried run: its stored value)."""
    known = [events[(events["event"] == "START").to_numpy()].rename(columns={"ts": "start"})]
    if held is not None and name in held:
        known.append(held)
    table = pd.concat([k[[*KEY, name]] for k in known], ignore_index=True)
    table = table.dropna(subset=[name]).drop_duplicates(KEY, keep="last")
    table = table.astype({"machine_code": "string", "order_code": "string"})
    found = runs[KEY].astype({"machine_code": "string", "order_code": "string"})
    merged = found.merge(table, on=KEY, how="left")
    return pd.Series(merged[name].astype("string").to_numpy(), index=runs.index)


#: joins an order code and a phase into the key the fold sees (a code never holds it)
PHASE_SEP = "\x1f"


def phased_fold(
    events: pd.DataFrame,
    held: pd.DataFrame | None,
    mapping: MappingSpec,
    policy: FoldPolicy,
    window: Window,
    points: Sequence[datetime] = (),
) -> FoldResult:
    """Fold the bookings; each run gets the phase of its START (``production`` without a
    declaration; a carried run keeps its own).

    With phases declared, the fold sees (order, phase) as the order: a START of another phase
    of the same order on the same machine while a run is open ends that run at its time (an END
    is added there, so the two are separate runs under every fold policy), and an END belongs to
    the phase of the latest START before it.
    """
    if "phase" not in events:
        result = fold(events, held, policy=policy, lo=window.lo, hi=window.hi, points=points)
        runs = result.runs
        held_phase = _held_phases(runs, held)
        runs["phase"] = held_phase.fillna(DEFAULT_PHASE).to_numpy()
        if result.logins is not None:
            result.logins["phase"] = DEFAULT_PHASE
        return FoldResult(runs, result.found, result.logins)
    events, held = _phase_keys(events, held)
    result = fold(events, held, policy=policy, lo=window.lo, hi=window.hi, points=points)
    runs, logins = result.runs, result.logins
    keyed = runs["order_code"].astype("string")
    runs["order_code"] = keyed.str.split(PHASE_SEP, n=1, regex=False).str[0].astype("string")
    runs["phase"] = (
        keyed.str.split(PHASE_SEP, n=1, regex=False).str[1].astype("string").fillna(DEFAULT_PHASE)
    )
    for found in result.found:
        codes = found["order_code"].astype("string")
        found["order_code"] = codes.str.split(PHASE_SEP, n=1, regex=False).str[0].astype("string")
    if logins is not None:
        keyed = logins["order_code"].astype("string").str.split(PHASE_SEP, n=1, regex=False)
        logins["order_code"] = keyed.str[0].astype("string")
        logins["phase"] = keyed.str[1].astype("string").fillna(DEFAULT_PHASE)
    return FoldResult(runs, result.found, logins)


def _with_logins(
    runs: pd.DataFrame,
    carries: pd.DataFrame | None,
    logins: pd.DataFrame | None,
    points: Sequence[datetime],
    lo: datetime,
    margin: timedelta,
) -> pd.DataFrame:
    """The carries (``logins: count``) with the logins open at each point of the runs the next
    window carries in: those started before it and open at it minus ``margin`` (0: none open)."""
    taken = []
    start, end = pd.to_datetime(runs["start"], utc=True), pd.to_datetime(runs["end"], utc=True)
    for point in sorted({p for p in points if p >= lo}):
        at = pd.Timestamp(point)
        keep = ((start < at) & (end.isna() | (end >= at - margin))).to_numpy()
        part = runs.loc[keep, [*KEY, "phase"]].reset_index(drop=True)
        part["carry_at"] = at
        taken.append(part)
    if not taken:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in [*KEY, "phase", "carry_at"]})
    else:
        frame = pd.concat(taken, ignore_index=True)
    for name in ("machine_code", "order_code", "phase"):
        frame[name] = frame[name].astype("string")
    for name in ("start", "carry_at"):
        frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[us, UTC]")
    group = ["machine_code", "order_code", "phase", "carry_at"]
    if logins is not None and not logins.empty:
        known = logins[[*group, "logins"]].astype(
            {"machine_code": "string", "order_code": "string", "phase": "string"}
        )
        known["carry_at"] = known["carry_at"].astype("datetime64[us, UTC]")
        frame = frame.merge(known, on=group, how="left")
    else:
        frame["logins"] = 0
    frame["logins"] = pd.array(frame["logins"].fillna(0), dtype="Int64")
    frame = frame.drop(columns=["phase"])
    if carries is None:
        frame["attributes"] = pd.Series(pd.NA, index=frame.index, dtype="string")
        return frame
    on = [*KEY, "carry_at"]
    mine = carries.copy()
    mine["start"] = pd.to_datetime(mine["start"], utc=True).astype("datetime64[us, UTC]")
    mine["carry_at"] = pd.to_datetime(mine["carry_at"], utc=True).astype("datetime64[us, UTC]")
    for name in ("machine_code", "order_code"):
        mine[name] = mine[name].astype("string")
    return mine.merge(frame[[*on, "logins"]], on=on, how="left")


def _held_phases(runs: pd.DataFrame, held: pd.DataFrame | None) -> pd.Series:
    """The stored phase of the runs that were carried in (NA for the others)."""
    none = pd.Series(pd.NA, index=runs.index, dtype="string")
    if held is None or held.empty or "phase" not in held or runs.empty:
        return none
    known = held[[*KEY, "phase"]].drop_duplicates(KEY, keep="last")
    known = known.astype({"machine_code": "string", "order_code": "string"})
    found = runs[KEY].astype({"machine_code": "string", "order_code": "string"})
    merged = found.merge(known, on=KEY, how="left")
    return pd.Series(merged["phase"].astype("string").to_numpy(), index=runs.index)


def _phase_keys(
    events: pd.DataFrame, held: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Bookings and carried runs with the phase joined to the order code, each END given the
    phase of the latest START before it, and an END added where a START of another phase
    follows an open run of the same order (grouped array passes, no loop per booking)."""
    is_start = (events["event"] == "START").to_numpy()
    rows = pd.DataFrame(
        {
            "machine_code": events["machine_code"].astype("string").to_numpy(),
            "order_code": events["order_code"].astype("string").to_numpy(),
            "ts": events["ts"].to_numpy(),
            "start": is_start,
            "phase": events["phase"].astype("string").to_numpy(),
            "at": np.arange(len(events)),
        }
    )
    rows.loc[is_start, "phase"] = rows.loc[is_start, "phase"].fillna(DEFAULT_PHASE)
    parts = [rows]
    if held is not None and not held.empty:
        phase = held["phase"].astype("string").fillna(DEFAULT_PHASE).to_numpy()
        base = {
            "machine_code": held["machine_code"].astype("string").to_numpy(),
            "order_code": held["order_code"].astype("string").to_numpy(),
        }
        parts.append(
            pd.DataFrame(
                {**base, "ts": held["start"].to_numpy(), "start": True, "phase": phase, "at": -1}
            )
        )
        ended = held["end"].notna().to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "machine_code": base["machine_code"][ended],
                    "order_code": base["order_code"][ended],
                    "ts": held["end"].to_numpy()[ended],
                    "start": False,
                    "phase": pd.array([pd.NA] * int(ended.sum()), dtype="string"),
                    "at": -1,
                }
            )
        )
    timeline = pd.concat(parts, ignore_index=True)
    timeline = timeline.sort_values(["machine_code", "order_code", "ts", "start"], kind="stable")
    group = [timeline["machine_code"], timeline["order_code"]]
    filled = timeline["phase"].groupby(group).ffill()
    previous_start = timeline["start"].groupby(group).shift(1, fill_value=False).astype(bool)
    previous_phase = filled.groupby(group).shift(1)
    change = (
        timeline["start"].to_numpy()
        & previous_start.to_numpy()
        & (previous_phase.fillna("").to_numpy() != filled.fillna("").to_numpy())
        & previous_phase.notna().to_numpy()
    )
    phase = pd.Series(pd.NA, index=events.index, dtype="string")
    from_events = (timeline["at"] >= 0).to_numpy()
    at = timeline["at"].to_numpy()[from_events]
    phase.iloc[at] = filled.fillna(DEFAULT_PHASE).to_numpy()[from_events]
    keyed = events.copy()
    keyed["order_code"] = keyed["order_code"].astype("string") + PHASE_SEP + phase
    if change.any():
        changed = timeline[change]
        closing = pd.DataFrame(
            {
                "ts": changed["ts"].to_numpy(),
                "machine_code": changed["machine_code"].to_numpy(),
                "order_code": (
                    changed["order_code"] + PHASE_SEP + previous_phase[change].astype("string")
                ).to_numpy(),
                "product_code": pd.NA,
                "event": "END",
            }
        ).astype(
            {
                "machine_code": "string",
                "order_code": "string",
                "product_code": "string",
                "event": "string",
            }
        )
        keyed = pd.concat([keyed, closing], ignore_index=True)
    if held is not None and not held.empty:
        held = held.copy()
        held["order_code"] = (
            held["order_code"].astype("string")
            + PHASE_SEP
            + held["phase"].astype("string").fillna(DEFAULT_PHASE)
        )
    return keyed, held


STRUCTURES: dict[str, type[Structure]] = {s.name: s for s in (Bookings, Orders)}


def structure_for(mapping: MappingSpec) -> Structure:
    """The structure of ``mapping`` (its ``structure:`` key)."""
    return STRUCTURES[mapping.structure](mapping)
