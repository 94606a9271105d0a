"""Peak memory of one ``etl run`` that finds many anomalies: is it bounded by batches?

Run: ``make bench-anomalies`` (or ``.venv/bin/python bench/anomaly_bench.py --anomalies 500000
2000000``). A SQLite booking table in a temporary directory holds 1,000 ordinary runs plus N
bookings that each become one anomaly: ``unknown`` rows carry an event code the mapping does not
know (``unknown_event``, found by the mapping, the row itself is not kept), ``orphan`` rows are
ENDs with no START (``orphan_end``, found by the fold, which holds every booking of the window).
Each ``etl run`` (a fresh window, a SQLite store, local Parquet) runs under ``/usr/bin/time``, so
the peak RSS is that process's own; a second run of the same window (every anomaly the same) is
measured too. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
ETL = Path(sys.executable).with_name("etl")
BERLIN = ZoneInfo("Europe/Berlin")

MAPPING = """\
structure: bookings
source: {table: BUCHUNGEN}
columns:
  timestamp: {column: ZEIT, format: '%Y-%m-%d %H:%M:%S'}
  order_code: AUNR
  machine_code: MASCHNR
  product_code: ARTNR
  event: SATZART
events: {START: [10], END: [20]}
"""


def make_source(path: Path, anomalies: int, kind: str, start: datetime) -> None:
    """The booking table: 1,000 runs on 10 machines, then ``anomalies`` odd bookings."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE BUCHUNGEN (MASCHNR TEXT, AUNR TEXT, ARTNR TEXT, SATZART INTEGER,"
            " ZEIT TEXT)"
        )

        def at(seconds: int) -> str:
            return (
                (start + timedelta(seconds=seconds))
                .astimezone(BERLIN)
                .strftime("%Y-%m-%d %H:%M:%S")
            )

        normal = []
        for i in range(1000):
            machine = f"M{i % 10:02d}"
            normal.append((machine, f"FA{i:06d}", "P1", 10, at(i * 600)))
            normal.append((machine, f"FA{i:06d}", "P1", 20, at(i * 600 + 300)))
        conn.executemany("INSERT INTO BUCHUNGEN VALUES (?, ?, ?, ?, ?)", normal)
        code = 99 if kind == "unknown" else 20
        step = max(1, (20 * 86400) // max(1, anomalies))
        batch = []
        for i in range(anomalies):
            batch.append((f"X{i % 50:02d}", f"ODD{i:08d}", "P2", code, at(i * step % (20 * 86400))))
            if len(batch) == 100_000:
                conn.executemany("INSERT INTO BUCHUNGEN VALUES (?, ?, ?, ?, ?)", batch)
                batch = []
        conn.executemany("INSERT INTO BUCHUNGEN VALUES (?, ?, ?, ?, ?)", batch)


def make_project(root: Path, source: Path, start: datetime) -> None:
    """A project with one job reading the whole table in one window."""
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    start_from = start.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M:%S")
    (root / "etl.yaml").write_text(
        "store: sqlite:///store.sqlite\nparquet: parquet\n"
        f"defaults: {{start_from: '{start_from}', reread: 30d, safety_lag: 0s}}\n"
    )
    (root / "connectors" / "plant.yaml").write_text(
        f"dialect: sqlite\npath: {source}\ntimezone: Europe/Berlin\n"
    )
    (root / "mappings" / "b.yaml").write_text(MAPPING)
    (root / "jobs" / "b.yaml").write_text("connector: plant\nmapping: b\n")


def timed_run(root: Path) -> tuple[float, int, str]:
    """``etl run b`` under /usr/bin/time: (wall s, peak RSS KiB, summary line)."""
    out = root / "time.txt"
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", "-o", str(out), str(ETL), "-p", str(root), "run", "b"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"etl run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    wall, rss = out.read_text().split()[-2:]
    return float(wall), int(rss), proc.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anomalies", type=int, nargs="+", default=[500_000, 2_000_000])
    parser.add_argument("--kinds", nargs="+", default=["unknown", "orphan"])
    args = parser.parse_args()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=21)
    print(
        f"machine: {platform.node()} {platform.machine()}, {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC\n"
    )
    print("| anomalies | kind | run | wall s | peak RSS | anomalies stored |")
    print("|---|---|---|---|---|---|")
    for count in args.anomalies:
        for kind in args.kinds:
            with tempfile.TemporaryDirectory(prefix="etl-anomaly-bench-") as tmp:
                root = Path(tmp)
                make_source(root / "plant.sqlite", count, kind, start)
                make_project(root, root / "plant.sqlite", start)
                for label in ("first", "again"):
                    wall, rss, _summary = timed_run(root)
                    with sqlite3.connect(root / "store.sqlite") as conn:
                        stored = conn.execute("SELECT count(*) FROM anomalies").fetchone()[0]
                    print(
                        f"| {count:,} | {kind} | {label} | {wall:.1f} | {rss / 1024:,.0f} MiB | "
                        f"{stored:,} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
