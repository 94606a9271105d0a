"""``etl run`` of an incremental job, with and without mapping fields, by two checkouts.

The job re-reads 15 days of ``bench_bookings_1m`` in the local PostgreSQL (``make bench`` makes
it) into an SQLite store and local Parquet; each checkout's ``etl`` runs it once to fill the
store, then ``--repeat`` times, interleaved. Prints one Markdown row per (checkout, fields):
the median and the fastest whole-process wall time, the rows read and the runs each rerun
changed (0 when re-reading is idempotent).

    .venv/bin/python bench/fields_cadence.py --checkout main=../main --checkout new=.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAPPING = {
    "structure": "bookings",
    "source": {"table": "bench_bookings_1m"},
    "columns": {
        "timestamp": "buchungszeit",
        "order_code": "aunr",
        "product_code": "artnr",
        "machine_code": "maschnr",
        "event": "kenn",
    },
    "events": {"START": [10], "END": [20]},
}
FIELDS = {
    "bookings": {"column": "kenn", "type": "integer", "agg": "count"},
    "ids": {"column": "id", "type": "integer", "agg": "sum"},
}


def project(work: Path, fields: bool, start_from: str) -> None:
    """A project whose job ``b`` reads the bench table from ``start_from``, re-reading 15 days."""
    for folder in ("connectors", "mappings", "jobs"):
        (work / folder).mkdir(parents=True)
    (work / "etl.yaml").write_text("store: sqlite:///store.sqlite\nparquet: parquet\n")
    (work / "connectors" / "pg.yaml").write_text(
        "dialect: postgresql\nhost: 127.0.0.1\nport: 5432\ndatabase: test\nuser: postgres\n"
        "timezone: UTC\n"
    )
    mapping = {**MAPPING, "fields": FIELDS} if fields else MAPPING
    (work / "mappings" / "b.yaml").write_text(json.dumps(mapping))
    (work / "jobs" / "b.yaml").write_text(
        f"connector: pg\nmapping: b\nstart_from: '{start_from}'\nsafety_lag: 1m\nreread: 15d\n"
    )


def run(checkout: Path, work: Path) -> tuple[float, dict[str, object]]:
    """One ``etl run b --json`` of the checkout's code (this interpreter, the checkout first on
    the path): wall seconds and its result."""
    command = [sys.executable, "-c", "from etl.cli import main; main()"]
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    began = time.perf_counter()
    proc = subprocess.run(
        [*command, "-p", str(work), "run", "b", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,  # not a checkout: its code comes from PYTHONPATH alone
    )
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    result = json.loads(proc.stdout)
    return wall, result[0] if isinstance(result, list) else result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", required=True, help="NAME=PATH")
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--start-from", default="2026-11-19 19:00:00")
    args = parser.parse_args()
    checkouts = {
        name: Path(path).resolve() for name, path in (item.split("=", 1) for item in args.checkout)
    }
    base = Path(tempfile.mkdtemp(prefix="etl-bench-fields-"))
    seen: dict[tuple[str, bool], list[tuple[float, dict[str, object]]]] = {}
    try:
        for fields in (False, True):
            for name, etl in checkouts.items():
                work = base / f"{name}-{fields}"
                project(work, fields, args.start_from)
                run(etl, work)  # the first run fills the store
        for _ in range(args.repeat):
            for fields in (False, True):
                for name, etl in checkouts.items():
                    seen.setdefault((name, fields), []).append(run(etl, base / f"{name}-{fields}"))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print("| checkout | fields | median s | fastest s | rows read | runs changed per rerun |")
    print("|---|---|---:|---:|---:|---|")
    for (name, fields), results in seen.items():
        walls = [wall for wall, _ in results]
        changed = ", ".join(str(r["runs_updated"]) for _, r in results)
        print(
            f"| {name} | {'count + sum' if fields else 'none'} | {statistics.median(walls):.2f} "
            f"| {min(walls):.2f} | {results[-1][1]['rows_read']:,} | {changed} |"
        )


if __name__ == "__main__":
    main()
