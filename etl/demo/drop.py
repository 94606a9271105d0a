"""The demo plant's nightly exports: its tables as the daily CSV files an ERP drops into a folder,
for ``etl demo --flavour files``."""

from __future__ import annotations

import os
import sqlite3
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from etl.demo.plant import PLANT_ZONE


def export_drop(db: Path, drop: Path, now: datetime) -> dict[str, int]:
    """Export the plant's tables as the daily CSV files an ERP drops: ``bde_buchungen_DAY.csv``
    (the bookings of each booking date) and ``fa_auftraege_DAY.csv`` (the orders started that
    day, as they stand now), ';'-separated, cp1252, each with the modification time of the
    end of its day (at most a minute before ``now``). Rows without a date go into the file of
    the row before them. Returns the files written per table."""
    import csv

    drop.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    written: dict[str, int] = {}
    try:
        for table, prefix, day_of, order in (
            ("BDE_BUCHUNGEN", "bde_buchungen", "BUCHDAT", "BUCHUNG_ID"),
            ("FA_AUFTRAEGE", "fa_auftraege", "substr(START_ZEIT, 1, 10)", "START_ZEIT, FA_NR"),
        ):
            cursor = con.execute(f"SELECT {day_of}, * FROM {table} ORDER BY {order}")
            header = [d[0] for d in cursor.description[1:]]
            days: dict[str, list[tuple[Any, ...]]] = {}
            last: str | None = None
            for row in cursor:
                day = row[0] or last
                if day is None:  # before any dated row: the first file
                    day = "0000-00-00"
                last = day
                days.setdefault(day, []).append(row[1:])
            if "0000-00-00" in days and len(days) > 1:
                undated = days.pop("0000-00-00")
                days[min(days)] = undated + days[min(days)]
            for day, rows in sorted(days.items()):
                path = drop / f"{prefix}_{day}.csv"
                with path.open("w", encoding="cp1252", newline="") as out:
                    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
                    writer.writerow(header)
                    writer.writerows(["" if v is None else v for v in r] for r in rows)
                _day_end_mtime(path, day, now)
            written[table] = len(days)
    finally:
        con.close()
    return written


def _day_end_mtime(path: Path, day: str, now: datetime) -> None:
    """The file's mtime: the end of its (plant-local) day, a minute before ``now`` at most."""
    try:
        end = datetime.combine(date.fromisoformat(day), time(23, 59), tzinfo=PLANT_ZONE)
    except ValueError:
        end = now
    stamp = min(end.timestamp(), now.timestamp() - 60)
    os.utime(path, (stamp, stamp))


__all__ = ["export_drop"]
