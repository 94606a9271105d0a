"""The synthetic booking system behind ``etl demo``: a vendor-style plant database in SQLite.

``create_booking_system`` writes a SQLite file that looks like what an integration engineer finds
in a real plant, traps included:

* ``BDE_BUCHUNGEN``: a HYDRA-like shop-floor booking table. One row per booking: log-on
  (``SATZART`` 10), interruption (20), finished (30), quantity report (40). Machine numbers are
  8 characters, blank-padded; date and time sit in separate text columns, as naive
  Europe/Berlin wall-clock time; cancelled bookings stay in the table with ``STORNO = 1``; another
  plant (``WERK = '2000'``) books into the same table with the same machine numbers.
* ``FA_AUFTRAEGE``: an ERP-like order table on other work centres. One row per production order
  with start and end (``ENDE_ZEIT`` NULL while running), status ``REL`` / ``CNF`` / ``DLT``.

The data is deterministic for ``(now, seed)``: at least 90 days up to 30 minutes before ``now``,
always including a daylight-saving change of Europe/Berlin. Timestamps avoid the repeated autumn
hour and the skipped spring hour except for a few deliberate bookings, placed so that no reading
of them can give a run of negative length. Deliberate anomalies (orphan ENDs, duplicate STARTs,
unknown codes, missing or broken times, cancelled rows, foreign-plant rows) are counted in the
returned dict so tests can check the pipeline finds each of them.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

PLANT_ZONE = ZoneInfo("Europe/Berlin")
DB_FILE = "booking_system.sqlite"
OUR_PLANT = "1000"
OTHER_PLANT = "2000"
MIN_DAYS = 90
END_LAG = timedelta(minutes=30)  # the newest booking is at least this old at ``now``

# SATZART codes of the booking table (HYDRA-like record kinds).
LOGON, INTERRUPT, FINISH, QUANTITY, UNKNOWN_CODE = 10, 20, 30, 40, 99
_ENDS = (INTERRUPT, FINISH)

_H = 3600
_BAD_TIME = "24:00:00"  # end of day as some terminals write it; no time parser accepts it
_QUIET = timedelta(hours=2)  # no ordinary bookings this close to a DST change
_ANCHOR_ROOM = timedelta(days=2)  # deliberate DST bookings need this much data on either side


# --------------------------------------------------------------------------- time helpers


def dst_transitions(zone: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    """The UTC instants in ``[lo, hi)`` at which ``zone``'s UTC offset changes (to the second)."""
    out: list[datetime] = []
    step = timedelta(hours=6)
    t = lo
    before = t.astimezone(zone).utcoffset()
    while t < hi:
        nxt = min(t + step, hi)
        after = nxt.astimezone(zone).utcoffset()
        if after != before:
            a, b = int(t.timestamp()), int(nxt.timestamp())  # offset(a) old, offset(b) new
            while b - a > 1:
                mid = (a + b) // 2
                if datetime.fromtimestamp(mid, UTC).astimezone(zone).utcoffset() == before:
                    a = mid
                else:
                    b = mid
            found = datetime.fromtimestamp(b, UTC)
            if lo <= found < hi:
                out.append(found)
        before, t = after, nxt
    return out


def data_range(now: datetime) -> tuple[datetime, datetime]:
    """``(lo, hi)`` in UTC: the span the demo data covers for ``now``.

    ``lo`` is the plant-local midnight of ``min(now - 90 days, last DST change - 3 days)``;
    ``hi`` is ``now - 30 minutes`` in whole seconds. Every booking is in ``[lo, hi)``. The DST
    change taken is the last one at least 2 days before ``hi``, so that the deliberate bookings
    around it always fit (a change in the last 2 days is in the range too, without them).
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (UTC)")
    now = now.astimezone(UTC)
    hi = (now - END_LAG).replace(microsecond=0)
    changes = dst_transitions(PLANT_ZONE, hi - timedelta(days=400), hi - _ANCHOR_ROOM)
    start = now - timedelta(days=MIN_DAYS)
    if changes:
        start = min(start, changes[-1] - timedelta(days=3))
    day = start.astimezone(PLANT_ZONE).date()
    return datetime.combine(day, time(0), PLANT_ZONE).astimezone(UTC), hi


def _offset(at: datetime) -> timedelta:
    return at.astimezone(PLANT_ZONE).utcoffset() or timedelta(0)


def _local_text(at: datetime) -> tuple[str, str]:
    """``('YYYY-MM-DD', 'HH:MM:SS')`` of a whole-second instant on the plant's wall clock.

    A naive ``at`` is taken as plant wall-clock time already (even one that does not exist).
    """
    if at.tzinfo is not None:
        at = at.astimezone(PLANT_ZONE).replace(tzinfo=None)
    text = at.isoformat(sep=" ", timespec="seconds")
    return text[:10], text[11:]


def _wall_clock_kind(day: str | None, clock: str | None) -> str:
    """'ambiguous', 'nonexistent' or 'normal' for a local date + time text (else 'invalid')."""
    try:
        naive = datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return "invalid"
    early = naive.replace(tzinfo=PLANT_ZONE, fold=0)
    late = naive.replace(tzinfo=PLANT_ZONE, fold=1)
    if early.utcoffset() == late.utcoffset():
        return "normal"
    back = early.astimezone(UTC).astimezone(PLANT_ZONE).replace(tzinfo=None)
    return "ambiguous" if back == naive else "nonexistent"


# --------------------------------------------------------------------------- generated rows


@dataclass
class _Booking:
    at: datetime  # the true instant (UTC): sorts the rows; the texts derive from it
    werk: str
    machine: str
    order: str
    product: str
    satzart: int
    qty: int | None = None
    storno: int = 0
    day_text: str | None = None  # explicit texts (deliberate DST bookings, broken times)
    time_text: str | None = None
    null_time: bool = False

    def texts(self) -> tuple[str, str | None]:
        day, clock = _local_text(self.at)
        if self.null_time:
            return self.day_text or day, None
        return self.day_text or day, self.time_text or clock


@dataclass
class _Order:
    werk: str
    machine: str
    order: str
    product: str
    status: str
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True)
class _Anchor:
    """A deliberate order start at a DST change: the machine is idle from ``guard`` until ``at``."""

    at: datetime
    guard: datetime
    day_text: str
    time_text: str
    kind: str  # 'repeated' or 'nonexistent'


def _pad(machine: str) -> str:
    return machine.ljust(8)


class _Plant:
    """Shared state of one generation: random source, range, DST quiet zones, numbering."""

    def __init__(self, rng: random.Random, lo: datetime, hi: datetime) -> None:
        self.rng = rng
        self.lo, self.hi = lo, hi
        self.changes = dst_transitions(PLANT_ZONE, lo, hi)
        self.quiet = [(t - _QUIET, t + _QUIET) for t in self.changes]
        families = ["GH", "DK", "WL", "FL", "RT", "ZB", "KS", "AB"]
        self.products = [f"{fam}-{rng.randint(1000, 9999)}" for fam in families for _ in range(5)]
        self.numbers = {OUR_PLANT: 40_001_000 + rng.randint(0, 900), OTHER_PLANT: 70_004_000}
        self.started: dict[str, list[tuple[datetime, str, str, str]]] = {
            OUR_PLANT: [],
            OTHER_PLANT: [],
        }

    # ---- random pieces

    def secs(self, lo_s: int, hi_s: int) -> timedelta:
        return timedelta(seconds=self.rng.randint(lo_s, hi_s))

    def new_order(self, werk: str) -> str:
        self.numbers[werk] += self.rng.randint(1, 9)
        return f"{self.numbers[werk]:08d}"

    def gap(self) -> timedelta:
        roll = self.rng.random()
        if roll < 0.5:
            return self.secs(600, _H)  # changeover
        if roll < 0.9:
            return self.secs(_H, 8 * _H)  # waiting for material, setup
        return self.secs(8 * _H, 60 * _H)  # no work: weekend, maintenance

    def plan(self) -> list[tuple[int, int]]:
        """An order: (run seconds, pause seconds after it) per segment, 2-30 h running in all."""
        rng = self.rng
        total = rng.randint(2 * _H, 30 * _H)
        count = rng.choices([1, 2, 3, 4], weights=[35, 35, 20, 10])[0]
        weights = [rng.uniform(0.3, 1.0) for _ in range(count)]
        runs = [max(900, int(total * w / sum(weights))) for w in weights]
        out = []
        for run in runs:
            roll = rng.random()
            if roll < 0.1:
                pause = 0  # shift-end split: END and re-logon in the same second
            elif roll < 0.6:
                pause = rng.randint(300, _H)
            else:
                pause = rng.randint(_H, 10 * _H)
            out.append((run, pause))
        return out

    # ---- DST quiet zones

    def is_quiet(self, t: datetime) -> bool:
        return any(a <= t < b for a, b in self.quiet)

    def clear(self, t: datetime) -> datetime:
        """``t``, or just after the DST quiet zone it falls into."""
        for a, b in self.quiet:
            if a <= t < b:
                return b + self.secs(60, 1200)
        return t

    def anchors(self) -> list[_Anchor]:
        """Deliberate bookings at each DST change well inside the range."""
        out: list[_Anchor] = []
        for change in self.changes:
            if change - self.lo < _ANCHOR_ROOM or self.hi - change < _ANCHOR_ROOM:
                continue
            guard = change - _QUIET - timedelta(minutes=30)
            before = change - timedelta(seconds=1)
            if _offset(change) < _offset(before):  # autumn: the repeated hour, both passes
                for at in (change - timedelta(minutes=45), change + timedelta(minutes=40)):
                    day, clock = _local_text(at)
                    out.append(_Anchor(at, guard, day, clock, "repeated"))
            else:  # spring: one booking at a wall-clock time that does not exist (02:30)
                at = change + timedelta(minutes=30)  # read as shifted forward by the gap
                wall = before.astimezone(PLANT_ZONE).replace(tzinfo=None)  # 01:59:59
                day, clock = _local_text(wall + timedelta(minutes=30, seconds=1))
                out.append(_Anchor(at, guard, day, clock, "nonexistent"))
        return out

    # ---- booking table

    def order_bookings(
        self,
        rows: list[_Booking],
        werk: str,
        machine: str,
        t0: datetime,
        limit: datetime,
        *,
        anchor: _Anchor | None = None,
        open_end: bool = False,
    ) -> None:
        """Append one order's bookings starting at ``t0``; all before ``limit`` unless open."""
        rng = self.rng
        segments = self.plan()
        slack = timedelta(hours=5)  # room for a push out of a DST quiet zone
        if (
            not open_end
            and t0 + sum((timedelta(seconds=r + p) for r, p in segments), timedelta()) + slack
            > limit
        ):
            room = int((limit - t0 - slack).total_seconds())
            segments = [(rng.randint(_H, max(_H, room)), 0)]
        order, product = self.new_order(werk), rng.choice(self.products)
        if rng.random() < 0.04:  # the same order on two machines at about the same time
            for at, other_order, other_product, other in reversed(self.started[werk]):
                if other != machine and abs(at - t0) < timedelta(hours=12):
                    order, product = other_order, other_product
                    break
        self.started[werk].append((t0, order, product, machine))
        t, done = t0, 0
        for index, (run, pause) in enumerate(segments):
            start = t if index == 0 and anchor else self.clear(t)
            row = _Booking(start, werk, machine, order, product, LOGON)
            if index == 0 and anchor:
                row = replace(row, day_text=anchor.day_text, time_text=anchor.time_text)
            rows.append(row)
            last = index == len(segments) - 1
            stop = start + timedelta(seconds=run)
            if open_end and (
                last or stop + timedelta(seconds=pause) >= self.hi - timedelta(minutes=15)
            ):
                stop = self.hi  # still running: quantity reports up to now, no END
            report = start + self.secs(1800, 3 * _H)
            while report < stop - timedelta(minutes=10):
                if not self.is_quiet(report):
                    done += rng.randint(20, 400)
                    rows.append(_Booking(report, werk, machine, order, product, QUANTITY, done))
                report += self.secs(1800, 3 * _H)
            if stop == self.hi:
                return
            end = self.clear(stop)
            done += rng.randint(0, 60)
            rows.append(
                _Booking(end, werk, machine, order, product, FINISH if last else INTERRUPT, done)
            )
            t = end + timedelta(seconds=pause)

    def machine_bookings(
        self, werk: str, machine: str, anchors: list[_Anchor], running_at_end: bool
    ) -> list[_Booking]:
        """One machine's bookings over the whole range, in time order."""
        rows: list[_Booking] = []
        pending = sorted(anchors, key=lambda a: a.at)
        t = self.clear(self.lo + self.secs(0, 10 * _H))
        need = timedelta(hours=8)  # an ordinary order needs at least this much room
        while True:
            if pending and t + need > pending[0].guard:
                anchor = pending.pop(0)
                limit = pending[0].guard if pending else self.hi - timedelta(hours=2)
                self.order_bookings(rows, werk, machine, anchor.at, limit, anchor=anchor)
                t = rows[-1].at + self.gap()
                continue
            limit = pending[0].guard if pending else self.hi - timedelta(hours=2)
            if not pending and t + need > limit:
                break
            self.order_bookings(rows, werk, machine, t, limit)
            t = rows[-1].at + self.gap()
        if running_at_end:
            last = rows[-1].at if rows else self.lo
            t0 = min(t, self.hi - self.secs(_H, 20 * _H))
            t0 = self.clear(max(t0, last + self.secs(300, 1800)))
            if t0 < self.hi - timedelta(minutes=15):
                self.order_bookings(rows, werk, machine, t0, self.hi, open_end=True)
        return [r for r in rows if r.at < self.hi]

    # ---- order table

    def machine_orders(self, werk: str, machine: str, running_at_end: bool) -> list[_Order]:
        rng = self.rng
        out: list[_Order] = []
        t = self.clear(self.lo + self.secs(0, 10 * _H))
        while True:
            start = self.clear(t)
            stop = self.clear(start + self.secs(2 * _H, 30 * _H))
            if stop >= self.hi - timedelta(hours=2):
                break
            number = f"{self.new_order(werk):0>12}"
            out.append(_Order(werk, machine, number, rng.choice(self.products), "CNF", start, stop))
            t = stop + self.gap()
        if running_at_end:
            last = out[-1].end if out and out[-1].end else self.lo
            start = min(t, self.hi - self.secs(_H, 20 * _H))
            start = self.clear(max(start, last + self.secs(300, 1800)))
            if start < self.hi - timedelta(minutes=15):
                number = f"{self.new_order(werk):0>12}"
                out.append(
                    _Order(werk, machine, number, rng.choice(self.products), "REL", start, None)
                )
        return out


# --------------------------------------------------------------------------- anomalies


def _core(rows: list[_Booking]) -> dict[str, list[_Booking]]:
    """Per machine: the LOGON/END bookings (no quantity reports), in time order."""
    out: dict[str, list[_Booking]] = {}
    for row in rows:
        if row.satzart in (LOGON, *_ENDS):
            out.setdefault(row.machine, []).append(row)
    return out


_C = TypeVar("_C", bound=tuple[Any, ...])


def _add_anomalies(plant: _Plant, rows: list[_Booking], counts: dict[str, int]) -> None:
    """Insert the deliberate anomalies into plant 1000's bookings (in place) and count them."""
    rng = plant.rng
    core = _core(rows)
    used: set[tuple[str, str]] = set()
    minute = timedelta(minutes=1)

    def ok(t: datetime, before: datetime | None) -> bool:
        if plant.is_quiet(t) or t >= plant.hi - timedelta(hours=1):
            return False
        return before is None or t < before - minute

    def segments(min_len: timedelta) -> list[tuple[_Booking, _Booking, _Booking | None]]:
        """(LOGON, its END, the machine's next core booking) with the LOGON's run >= min_len."""
        out = []
        for machine in sorted(core):
            seq = core[machine]
            for i in range(len(seq) - 1):
                a, b = seq[i], seq[i + 1]
                if (
                    a.satzart == LOGON
                    and b.satzart in _ENDS
                    and a.order == b.order
                    and b.at - a.at >= min_len
                    and a.time_text is None
                ):
                    out.append((a, b, seq[i + 2] if i + 2 < len(seq) else None))
        return out

    def pick(cands: list[_C], n: int, key: Callable[[_C], _Booking] = lambda c: c[0]) -> list[_C]:
        out = []
        for cand in rng.sample(cands, len(cands)):
            first = key(cand)
            if (first.machine, first.order) in used:
                continue
            out.append(cand)
            used.add((first.machine, first.order))
            if len(out) == n:
                break
        return out

    added: list[_Booking] = []

    def add(kind: str, row: _Booking) -> None:
        added.append(row)
        counts[kind] = counts.get(kind, 0) + 1

    runs = segments(timedelta(hours=2))
    # A second operator logs on to a running order: START while open.
    for start, end, _ in pick(runs, 3):
        at = start.at + plant.secs(300, 2400)
        if ok(at, end.at):
            add("duplicate_start", replace(start, at=at))
    # A booking code the mapping does not know (a disturbance reason, say).
    for start, end, _ in pick(runs, 3):
        at = start.at + plant.secs(600, 3000)
        if ok(at, end.at):
            add(
                "unknown_event",
                _Booking(at, OUR_PLANT, start.machine, start.order, start.product, UNKNOWN_CODE),
            )
    # A terminal re-sent a booking without its time: the copy has BUCHZEIT NULL.
    for start, end, _ in pick(runs, 3):
        source = start if len(added) % 2 else end
        add("null_time", replace(source, at=source.at + timedelta(seconds=1), null_time=True))
    # End of day written as 24:00:00, which no time parser accepts.
    for start, _, _ in pick(runs, 1):
        add("bad_time", replace(start, at=start.at + timedelta(seconds=1), time_text=_BAD_TIME))
    # Finished twice: the second Fertigmeldung has no open START (orphan END).
    finishes = [
        c
        for c in segments(timedelta(minutes=15))
        if c[1].satzart == FINISH and (c[2] is None or c[2].at - c[1].at >= timedelta(hours=1))
    ]
    for _, end, after in pick(finishes, 3, key=lambda c: c[1]):
        at = end.at + plant.secs(120, 1800)
        if ok(at, after.at if after else None):
            add("orphan_end", replace(end, at=at, qty=None))
    # Storno + re-post: an interruption first booked too early, cancelled, booked again.
    interrupts = [c for c in runs if c[1].satzart == INTERRUPT]
    for start, end, _ in pick(interrupts, 2):
        at = end.at - plant.secs(1200, 3600)
        if at > start.at + timedelta(minutes=30) and ok(at, end.at):
            add("cancelled", replace(end, at=at, storno=1))
    # A cancelled interruption + re-logon pair in the middle of a run (would split it).
    for start, end, _ in pick(runs, 2):
        at = start.at + plant.secs(1800, 3600)
        back = at + plant.secs(300, 900)
        if ok(at, end.at) and ok(back, end.at):
            add(
                "cancelled",
                _Booking(
                    at, OUR_PLANT, start.machine, start.order, start.product, INTERRUPT, storno=1
                ),
            )
            add("cancelled", replace(start, at=back, storno=1))
    # A log-on to a mistyped order in an idle gap, cancelled (would open a phantom run).
    gaps = []
    for machine in sorted(core):
        seq = core[machine]
        for i in range(len(seq) - 1):
            a, b = seq[i], seq[i + 1]
            if a.satzart == FINISH and b.satzart == LOGON and b.at - a.at >= timedelta(hours=3):
                gaps.append((a, b))
    for finish, nxt in pick(gaps, 2, key=lambda c: c[1]):
        at = finish.at + plant.secs(1800, 5400)
        if ok(at, nxt.at):
            add(
                "cancelled",
                _Booking(
                    at,
                    OUR_PLANT,
                    finish.machine,
                    plant.new_order(OUR_PLANT),
                    rng.choice(plant.products),
                    LOGON,
                    storno=1,
                ),
            )
    rows.extend(added)


# --------------------------------------------------------------------------- the database

_SCHEMA = """
CREATE TABLE BDE_BUCHUNGEN (
    BUCHUNG_ID INTEGER PRIMARY KEY,
    WERK       TEXT    NOT NULL,
    MASCHNR    TEXT    NOT NULL,
    AUNR       TEXT    NOT NULL,
    ARTNR      TEXT,
    SATZART    INTEGER NOT NULL,
    BUCHDAT    TEXT,
    BUCHZEIT   TEXT,
    STORNO     INTEGER NOT NULL DEFAULT 0,
    MENGE_GUT  INTEGER
);
CREATE INDEX BDE_BUCHUNGEN_DAT ON BDE_BUCHUNGEN (BUCHDAT);
CREATE TABLE FA_AUFTRAEGE (
    FA_NR        TEXT NOT NULL,
    ARTIKEL      TEXT,
    ARBEITSPLATZ TEXT,
    WERK         TEXT NOT NULL,
    STATUS       TEXT NOT NULL,
    START_ZEIT   TEXT,
    ENDE_ZEIT    TEXT,
    PRIMARY KEY (WERK, FA_NR)
);
CREATE INDEX FA_AUFTRAEGE_START ON FA_AUFTRAEGE (START_ZEIT);
"""


def _stamp(at: datetime | None) -> str | None:
    return None if at is None else " ".join(_local_text(at))


def create_booking_system(
    path: Path, *, now: datetime, seed: int = 7, machines: int = 24
) -> dict[str, int]:
    """Write the demo plant database to ``path`` (replacing it); return row and anomaly counts.

    Machines ``M-01`` .. get bookings in ``BDE_BUCHUNGEN`` (two thirds) or orders in
    ``FA_AUFTRAEGE`` (the rest). Deterministic for ``(now, seed, machines)``.
    """
    if machines < 3:
        raise ValueError("the demo plant needs at least 3 machines")
    lo, hi = data_range(now)
    rng = random.Random(seed)
    plant = _Plant(rng, lo, hi)
    n_bde = machines - machines // 3
    names = [f"M-{i + 1:02d}" for i in range(machines)]
    counts: dict[str, int] = {}

    # Deliberate DST bookings on distinct machines (M-02, M-05, M-07, ...).
    anchors: dict[str, list[_Anchor]] = {}
    slots = [1, 4, 6, 9, 11, 13]
    for number, anchor in enumerate(plant.anchors()):
        slot = slots[number % len(slots)]
        if slot < n_bde:
            anchors.setdefault(names[slot], []).append(anchor)

    bookings: list[_Booking] = []
    for name in names[:n_bde]:
        bookings += plant.machine_bookings(
            OUR_PLANT, name, anchors.get(name, []), running_at_end=rng.random() < 0.85
        )
    _add_anomalies(plant, bookings, counts)
    foreign: list[_Booking] = []
    for name in names[: min(3, n_bde)]:  # the other plant uses the same machine numbers
        foreign += plant.machine_bookings(OTHER_PLANT, name, [], running_at_end=rng.random() < 0.5)
    counts["other_plant"] = len(foreign)
    bookings += foreign
    bookings.sort(key=lambda r: (r.at, r.werk, r.machine, r.null_time))

    orders: list[_Order] = []
    for name in names[n_bde:]:
        orders += plant.machine_orders(OUR_PLANT, name, running_at_end=rng.random() < 0.85)
    _add_order_anomalies(plant, orders, names[n_bde:], counts)
    orders.sort(key=lambda o: (o.start is None, o.start or lo, o.werk, o.order))

    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.executescript(_SCHEMA)
        con.executemany(
            "INSERT INTO BDE_BUCHUNGEN VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                (
                    i,
                    r.werk,
                    _pad(r.machine),
                    r.order,
                    r.product,
                    r.satzart,
                    *r.texts(),
                    r.storno,
                    r.qty,
                )
                for i, r in enumerate(bookings, start=1)
            ],
        )
        con.executemany(
            "INSERT INTO FA_AUFTRAEGE VALUES (?,?,?,?,?,?,?)",
            [
                (
                    o.order,
                    o.product,
                    _pad(o.machine),
                    o.werk,
                    o.status,
                    _stamp(o.start),
                    _stamp(o.end),
                )
                for o in orders
            ],
        )
        con.commit()
    finally:
        con.close()
    os.replace(tmp, path)

    ours = [r for r in bookings if r.werk == OUR_PLANT]
    change_days = {_local_text(t)[0] for t in plant.changes}
    stamps = [r.texts() for r in bookings]
    stamps += [_local_text(t) for o in orders for t in (o.start, o.end) if t]
    kinds = [_wall_clock_kind(day, clock) for day, clock in stamps if day in change_days]
    last: dict[str, int] = {}  # per machine: the last booking that counts
    for r in ours:
        broken = r.storno or r.null_time or r.time_text == _BAD_TIME
        if not broken and r.satzart in (LOGON, *_ENDS):
            last[r.machine] = r.satzart
    counts.update(
        {
            "BDE_BUCHUNGEN": len(bookings),
            "FA_AUFTRAEGE": len(orders),
            "booking_machines": n_bde,
            "order_machines": machines - n_bde,
            "machines": machines,
            "days": (hi - lo).days,
            "dst_changes": len(plant.changes),
            "dst_repeated_hour": kinds.count("ambiguous"),
            "dst_nonexistent_hour": kinds.count("nonexistent"),
            "open_booking_machines": sum(1 for code in last.values() if code == LOGON),
            "open_orders": sum(
                1
                for o in orders
                if o.werk == OUR_PLANT
                and o.status == "REL"
                and o.start is not None
                and o.end is None
            ),
        }
    )
    for kind in (
        "orphan_end",
        "duplicate_start",
        "unknown_event",
        "null_time",
        "bad_time",
        "cancelled",
        "orders_deleted",
    ):
        counts.setdefault(kind, 0)
    return counts


def _add_order_anomalies(
    plant: _Plant, orders: list[_Order], machines: list[str], counts: dict[str, int]
) -> None:
    """Deleted orders, another plant's orders, an end before its start, a start never set."""
    rng = plant.rng
    if not orders:
        return
    finished = [o for o in orders if o.status == "CNF" and o.start and o.end]
    # Orders created, given times and deleted again (would add runs if not filtered).
    for order in rng.sample(finished, min(4, len(finished))):
        assert order.start is not None
        start = plant.clear(order.start + plant.secs(600, 3 * _H))
        stop = plant.clear(start + plant.secs(2 * _H, 12 * _H))
        if stop < plant.hi:
            orders.append(
                _Order(
                    OUR_PLANT,
                    order.machine,
                    f"{plant.new_order(OUR_PLANT):0>12}",
                    rng.choice(plant.products),
                    "DLT",
                    start,
                    stop,
                )
            )
            counts["orders_deleted"] = counts.get("orders_deleted", 0) + 1
    # Another plant with the same work-centre names.
    foreign = []
    for name in machines[:2]:
        foreign += plant.machine_orders(OTHER_PLANT, name, running_at_end=True)
    orders += foreign
    counts["orders_other_plant"] = len(foreign)
    # A confirmation typed with the end a day before the start.
    victim = rng.choice(finished)
    assert victim.start is not None
    victim.end = victim.start - timedelta(days=1) + plant.secs(600, 3 * _H)
    while plant.is_quiet(victim.end):
        victim.end -= timedelta(hours=3)
    counts["orders_end_before_start"] = 1
    # Released, never started: no START_ZEIT yet.
    orders.append(
        _Order(
            OUR_PLANT,
            machines[-1],
            f"{plant.new_order(OUR_PLANT):0>12}",
            rng.choice(plant.products),
            "REL",
            None,
            None,
        )
    )
    counts["orders_null_start"] = 1


__all__ = [
    "DB_FILE",
    "PLANT_ZONE",
    "create_booking_system",
    "data_range",
    "dst_transitions",
]
