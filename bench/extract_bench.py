"""Extraction: stream N booking rows out of the local PostgreSQL and MariaDB through booking-etl's
read path (server-side cursor -> bounded batches -> mapping), and report rows/s and peak RSS.

Run: ``.venv/bin/python bench/extract_bench.py --rows 1000000 5000000`` (part of ``make bench``).
The table ``etl_bench_bookings`` is created once per server (5M rows) and kept for later runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
TABLE = "etl_bench_bookings"
TOTAL = 5_000_000


def ensure_table(dialect: str) -> None:
    """Create and fill the benchmark table once (machine, order, code, timestamp)."""
    engine = sa.create_engine(SERVERS[dialect])
    with engine.begin() as conn:
        if sa.inspect(conn).has_table(TABLE):
            if conn.execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar() == TOTAL:
                return
            conn.execute(sa.text(f"DROP TABLE {TABLE}"))
        stamp = "timestamp(6)" if dialect == "postgresql" else "datetime(6)"
        conn.execute(
            sa.text(
                f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, maschnr char(8), aunr varchar(20),"
                f" kenn integer, buchungszeit {stamp})"
            )
        )
        numbers = (
            f"generate_series(1, {TOTAL}) AS s(n)"
            if dialect == "postgresql"
            else f"seq_1_to_{TOTAL} AS s"
        )
        n = "n" if dialect == "postgresql" else "seq"
        add = (
            f"TIMESTAMP '2024-01-01' + {n} * INTERVAL '7 seconds'"
            if dialect == "postgresql"
            else f"DATE_ADD('2024-01-01 00:00:00', INTERVAL ({n} * 7) SECOND)"
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {TABLE} SELECT {n}, CONCAT('M', {n} % 200), CONCAT('A', {n} / 6),"
                f" CASE WHEN {n} % 2 = 0 THEN 10 ELSE 30 END, {add} FROM {numbers}"
            )
        )
    engine.dispose()


def measure(dialect: str, rows: int) -> dict[str, object]:
    from etl.config import ConnectorSpec, MappingSpec
    from etl.extract import build_query, read_batches
    from etl.mapping import map_bookings
    from etl.source import open_source

    url = sa.make_url(SERVERS[dialect])
    spec = ConnectorSpec.model_validate(
        {
            "dialect": dialect,
            "host": url.host,
            "port": url.port,
            "database": url.database,
            "user": url.username,
        }
    )
    mapping = MappingSpec.model_validate(
        {
            "structure": "bookings",
            "source": {"table": TABLE},
            "columns": {
                "timestamp": "buchungszeit",
                "order_code": "aunr",
                "machine_code": "maschnr",
                "event": "kenn",
            },
            "events": {"START": [10], "END": [30]},
            "filters": [{"column": "id", "le": rows}],
        }
    )
    source = open_source("bench", spec, Path("."), [])
    seen = 0
    t0 = time.perf_counter()
    with source.connect() as conn:
        for batch in read_batches(
            conn, build_query(mapping, None, ZoneInfo("UTC")), 50_000, "bench"
        ):
            seen += len(map_bookings(batch, mapping, ZoneInfo("UTC")).rows)
    seconds = time.perf_counter() - t0
    source.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"dialect": dialect, "rows": seen, "seconds": seconds, "peak_rss": peak}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--only", nargs="+", choices=list(SERVERS))
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return
    print("| source | rows | seconds | rows/s | peak RSS |")
    print("|---|---:|---:|---:|---:|")
    for dialect in args.only or list(SERVERS):
        try:
            ensure_table(dialect)
        except sa.exc.OperationalError as exc:
            print(f"| {dialect} | skipped: {exc.orig} | | | |")
            continue
        for rows in args.rows:
            out = subprocess.run(
                [sys.executable, __file__, "--one", dialect, str(rows)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout)
            print(
                f"| {r['dialect']} (SQLAlchemy stream -> batches of 50,000 -> mapping) | {r['rows']:,} | "
                f"{r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} | {r['peak_rss'] / 2**20:,.0f} MiB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
