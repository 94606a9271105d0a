"""Independent reference: the production runs the demo database should yield, row by row.

Deliberately naive and free of ``etl`` imports (sqlite3 + zoneinfo only), so the end-to-end test
can compare the pipeline's vectorized output with a derivation that shares none of its code.
It hard-codes the demo mappings (``mappings/demo_bookings.yaml``, ``mappings/demo_orders.yaml``):

* bookings: rows with ``STORNO = 0`` and ``WERK = '1000'``; SATZART 10 -> START, 20/30 -> END,
  40 ignored, anything else an ``unknown_event`` anomaly; a NULL or unparseable BUCHDAT/BUCHZEIT
  is a ``bad_timestamp`` anomaly; codes are trimmed, an empty machine or order code is a
  ``missing_machine_code`` / ``missing_order_code`` anomaly;
* orders: rows with ``WERK = '1000'`` and ``STATUS NOT IN ('DLT')``; a NULL/unparseable start,
  an unparseable end or an end before the start skips the row as an anomaly.

Filters follow SQL: a NULL never passes a comparison (``STATUS NOT IN ('DLT')`` drops a NULL
status). Naive plant-local times (Europe/Berlin) become UTC with Python's ``fold=0``: a time in
the repeated autumn hour is read the earlier way (summer time); a time in the skipped spring hour
is shifted forward by the gap (02:30 -> 03:30 local). Only bookings (or order starts) with UTC
time before ``hi`` count; anomalies without a usable time (``bad_timestamp``) are always counted.

The fold, per (machine, order), sorted by (UTC time, END before START at equal times, row id):
START while closed opens a run; START while open is a ``duplicate_start`` (the run keeps its first
start and product); END while open closes the run; END while closed is an ``orphan_end``.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ZONE = ZoneInfo("Europe/Berlin")
PLANT = "1000"
START_CODES = ("10",)
END_CODES = ("20", "30")
IGNORED_CODES = ("40",)
DELETED_STATUS = ("DLT",)


def to_utc(naive: datetime) -> datetime:
    """Naive Europe/Berlin wall-clock time -> aware UTC (fold=0: earlier / shifted by the gap)."""
    return naive.replace(tzinfo=ZONE, fold=0).astimezone(UTC)


def _code(value: Any) -> str | None:
    """A code as trimmed text (10, 10.0, ' 10 ' -> '10'); None when NULL or blank."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _parse(text: Any, fmt: str) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.strptime(text.strip(), fmt)
    except ValueError:
        return None


def _booking_time(day: Any, clock: Any) -> datetime | None:
    parsed_day = _parse(day, "%Y-%m-%d")
    parsed_clock = _parse(clock, "%H:%M:%S")
    if parsed_day is None or parsed_clock is None:
        return None
    return to_utc(datetime.combine(parsed_day.date(), parsed_clock.time()))


def _check_hi(hi: datetime) -> datetime:
    if hi.tzinfo is None or hi.utcoffset() is None:
        raise ValueError("hi must be an aware datetime")
    return hi.astimezone(UTC)


def reference_booking_runs(db_path: Path | str, hi: datetime) -> tuple[list[dict], Counter]:
    """Runs folded from ``BDE_BUCHUNGEN`` with bookings before ``hi``, and anomaly counts."""
    hi = _check_hi(hi)
    anomalies: Counter[str] = Counter()
    events: dict[tuple[str, str], list[tuple[datetime, int, int, str | None]]] = {}
    con = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT BUCHUNG_ID, WERK, MASCHNR, AUNR, ARTNR, SATZART, BUCHDAT, BUCHZEIT, STORNO "
            "FROM BDE_BUCHUNGEN"
        ).fetchall()
    finally:
        con.close()
    for row_id, werk, machine, order, product, satzart, day, clock, storno in rows:
        if storno is None or storno != 0 or werk is None or werk != PLANT:
            continue
        code = _code(satzart)
        ts = _booking_time(day, clock)
        if code in IGNORED_CODES:
            continue
        if code not in START_CODES and code not in END_CODES:
            if ts is None or ts < hi:
                anomalies["unknown_event"] += 1
            continue
        if ts is None:
            anomalies["bad_timestamp"] += 1
            continue
        if ts >= hi:
            continue
        machine_code, order_code = _code(machine), _code(order)
        if machine_code is None:
            anomalies["missing_machine_code"] += 1
            continue
        if order_code is None:
            anomalies["missing_order_code"] += 1
            continue
        is_start = 1 if code in START_CODES else 0  # END (0) sorts before START (1)
        events.setdefault((machine_code, order_code), []).append(
            (ts, is_start, row_id, _code(product))
        )

    runs: list[dict] = []
    for (machine_code, order_code), group in events.items():
        group.sort(key=lambda e: (e[0], e[1], e[2]))
        current: dict | None = None
        for ts, is_start, _row_id, product in group:
            if is_start:
                if current is None:
                    current = {
                        "machine_code": machine_code,
                        "order_code": order_code,
                        "product_code": product,
                        "start": ts,
                        "end": None,
                    }
                    runs.append(current)
                else:
                    anomalies["duplicate_start"] += 1
            elif current is not None:
                current["end"] = ts
                current = None
            else:
                anomalies["orphan_end"] += 1
    runs.sort(key=lambda r: (r["machine_code"], r["start"], r["order_code"]))
    return runs, anomalies


def reference_order_runs_and_anomalies(
    db_path: Path | str, hi: datetime
) -> tuple[list[dict], Counter]:
    """Runs from ``FA_AUFTRAEGE`` with a start before ``hi``, and the skipped rows by kind."""
    hi = _check_hi(hi)
    anomalies: Counter[str] = Counter()
    runs: list[dict] = []
    con = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT FA_NR, ARTIKEL, ARBEITSPLATZ, WERK, STATUS, START_ZEIT, ENDE_ZEIT "
            "FROM FA_AUFTRAEGE"
        ).fetchall()
    finally:
        con.close()
    fmt = "%Y-%m-%d %H:%M:%S"
    for order, product, machine, werk, status, start_text, end_text in rows:
        if werk is None or werk != PLANT or status is None or status in DELETED_STATUS:
            continue
        naive_start = _parse(start_text, fmt)
        if naive_start is None:
            anomalies["bad_timestamp"] += 1
            continue
        start = to_utc(naive_start)
        if start >= hi:
            continue
        end = None
        if end_text is not None and str(end_text).strip():
            naive_end = _parse(end_text, fmt)
            if naive_end is None:
                anomalies["bad_timestamp"] += 1
                continue
            end = to_utc(naive_end)
            if end < start:
                anomalies["end_before_start"] += 1
                continue
        machine_code, order_code = _code(machine), _code(order)
        if machine_code is None:
            anomalies["missing_machine_code"] += 1
            continue
        if order_code is None:
            anomalies["missing_order_code"] += 1
            continue
        runs.append(
            {
                "machine_code": machine_code,
                "order_code": order_code,
                "product_code": _code(product),
                "start": start,
                "end": end,
            }
        )
    runs.sort(key=lambda r: (r["machine_code"], r["start"], r["order_code"]))
    return runs, anomalies


def reference_order_runs(db_path: Path | str, hi: datetime) -> list[dict]:
    """Runs from ``FA_AUFTRAEGE`` (plant 1000, not deleted) with a start before ``hi``."""
    return reference_order_runs_and_anomalies(db_path, hi)[0]


def reference_quantities(
    db_path: Path | str, hi: datetime, runs: list[dict]
) -> dict[tuple[str, str, datetime], tuple[int | None, int]]:
    """Per run (machine, order, start): the largest ``MENGE_GUT`` booked toward it and how many
    bookings with a quantity did, by the rule of docs/concepts.md (no grace in the demo): a
    booking of the run's machine and order (START, END or a quantity report) counts toward the
    latest run that started at or before it while that run is open or has not ended before it;
    a booking other than a START at the very start of a run belongs to the run that was going on
    if that one covers it."""
    hi = _check_hi(hi)
    by_key: dict[tuple[str, str], list[dict]] = {}
    for run in runs:
        by_key.setdefault((run["machine_code"], run["order_code"]), []).append(run)
    for group in by_key.values():
        group.sort(key=lambda r: r["start"])
    totals: dict[tuple[str, str, datetime], list[Any]] = {
        (r["machine_code"], r["order_code"], r["start"]): [None, 0] for r in runs
    }
    con = sqlite3.connect(f"file:{Path(db_path)}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT WERK, MASCHNR, AUNR, SATZART, BUCHDAT, BUCHZEIT, STORNO, MENGE_GUT "
            "FROM BDE_BUCHUNGEN"
        ).fetchall()
    finally:
        con.close()

    def covers(run: dict, ts: datetime) -> bool:
        return run["end"] is None or ts <= run["end"]

    for werk, machine, order, satzart, day, clock, storno, quantity in rows:
        if storno != 0 or werk != PLANT or quantity is None:
            continue
        code = _code(satzart)
        if code not in START_CODES + END_CODES + IGNORED_CODES:
            continue
        ts = _booking_time(day, clock)
        machine_code, order_code = _code(machine), _code(order)
        if ts is None or ts >= hi or machine_code is None or order_code is None:
            continue
        group = by_key.get((machine_code, order_code), [])
        started = [r for r in group if r["start"] <= ts]
        earlier = [r for r in group if r["start"] < ts]
        target = None
        if code in START_CODES:
            target = started[-1] if started and covers(started[-1], ts) else None
        elif earlier and covers(earlier[-1], ts):
            target = earlier[-1]
        elif started and started[-1]["start"] == ts:
            target = started[-1]
        if target is None:
            continue
        slot = totals[(machine_code, order_code, target["start"])]
        slot[0] = quantity if slot[0] is None else max(slot[0], quantity)
        slot[1] += 1
    return {key: (value[0], value[1]) for key, value in totals.items()}
