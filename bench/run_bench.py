"""``make bench``: booking-etl against the raw limit of each source and the tools a user would pick
instead, on 1M, 5M and 10M bookings in the local PostgreSQL and MariaDB. Prints Markdown tables.

Run: ``.venv/bin/python bench/run_bench.py`` (all), ``--quick`` (1M only), ``--rows 5000000``,
``--only postgresql dlt`` (any of the group or source names below), ``--skip-slow`` (leave out
pandas.read_sql and dlt's sqlalchemy backend at 10M rows and more; the table says so),
``--baseline DIR`` (the backfill group runs each backfill with an older ``etl`` package too).

The tables ``bench_bookings_1m``/``_5m``/``_10m`` (6 columns, index on the timestamp) are created
once in the database ``test`` of each server and kept for reruns. Each measurement runs in its own
process under ``/usr/bin/time`` so that its peak RSS is its own; ``work s`` is the time the
process measured around the work itself (no interpreter start-up, no imports), ``wall s`` the
whole process. Rates use the work time.

Groups: limit, pandas, connectorx, dlt, etl-extract, odbc, fold, backfill, cadence, startup,
discover (``etl discover --table`` on the largest table: bounded samples, no full scan;
``--only discover`` runs it alone, on the 10M table by default), files (1M bookings as a CSV
export read + mapped + folded, against pyarrow.csv alone) and api (OData pages per second from a
server on 127.0.0.1) and excel (100k bookings as .xlsx and 65k as .xls, calamine against openpyxl):
all through bench/sources_bench.py, none needs a database.
``odbc`` reads through each server's Debian ODBC driver (``odbc-postgresql``, ``odbc-mariadb``), the
stand-in for SQL Server here: pyodbc row fetching, arrow-odbc, and booking-etl over an ODBC URL.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
PG_STORE_DB = "etl_bench_store"
URLS = {"postgresql": PG_URL, "mariadb": MARIADB_URL}
ODBC_DRIVERS = {"postgresql": "PostgreSQL Unicode", "mariadb": "MariaDB Unicode"}
ODBC_CONNECT = {  # what a pyodbc or arrow-odbc user passes
    "postgresql": "Driver={PostgreSQL Unicode};Server=127.0.0.1;Port=5432;Database=test;"
    "Uid=postgres;UseServerSidePrepare=0",
    "mariadb": "Driver={MariaDB Unicode};Server=127.0.0.1;Port=3306;Database=test;Uid=root",
}
ODBC_BATCH = 50_000
CX_URLS = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql://root@127.0.0.1:3306/test",
}
SIZES = [1_000_000, 5_000_000, 10_000_000]
SLOW_FROM = 10_000_000  # --skip-slow leaves out the slow peers from this size on
MACHINES = 200
STEP_S = 8  # one booking every 8 s over the plant: 14 days hold 151,200 bookings (200 machines)
TIMEOUT_S = 3600  # one measurement; an unattended run never hangs longer than this
CADENCE_ROWS = 10_000_000
GROUPS = [
    "limit",
    "pandas",
    "connectorx",
    "dlt",
    "etl-extract",
    "odbc",
    "fold",
    "backfill",
    "cadence",
    "startup",
    "discover",
    "files",
    "api",
    "excel",
]
DISCOVER_LIMIT_S = 5.0  # issue 16: `etl discover --table` on 10M rows stays under this


def table_name(rows: int) -> str:
    """``bench_bookings_1m`` for 1,000,000 rows."""
    return (
        f"bench_bookings_{rows // 1_000_000}m"
        if rows % 1_000_000 == 0
        else f"bench_bookings_{rows}"
    )


# ---------------------------------------------------------------------------------- the data


def ensure_table(dialect: str, rows: int, *, live: bool = False) -> str:
    """Create and fill the table once: START/END bookings of 200 machines, one every 8 s.

    A plain table ends at midnight before the day it was made (all in the past: a backfill reads
    it whole). The ``live`` table (``..._live``, for the sync cadence) ends 365 days after it was
    made, so the 14 days before now are full; it is made anew once that no longer holds.
    """
    import sqlalchemy as sa

    name = table_name(rows) + ("_live" if live else "")
    midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
    engine = sa.create_engine(URLS[dialect])
    try:
        with engine.begin() as conn:
            inspector = sa.inspect(conn)
            if inspector.has_table(name):
                have, first, last = conn.execute(
                    sa.text(f"SELECT count(*), min(buchungszeit), max(buchungszeit) FROM {name}")
                ).one()
                now = datetime.now()
                fits = (
                    first <= now - timedelta(days=15) and last >= now + timedelta(days=1)
                    if live
                    else last <= now
                )
                if have == rows and fits:
                    if any(
                        ix["column_names"] == ["buchungszeit"] for ix in inspector.get_indexes(name)
                    ):
                        return "kept"
                    index_and_analyze(conn, dialect, name)  # an earlier run was cut short
                    return "kept, index added"
                conn.execute(sa.text(f"DROP TABLE {name}"))
            end = (
                midnight + timedelta(days=365 if live else 0) - timedelta(seconds=STEP_S)
            ).strftime("%Y-%m-%d %H:%M:%S")
            stamp = "timestamp(6)" if dialect == "postgresql" else "datetime(6)"
            conn.execute(
                sa.text(
                    f"CREATE TABLE {name} (id bigint PRIMARY KEY, buchungszeit {stamp} NOT NULL,"
                    " maschnr varchar(10) NOT NULL, aunr varchar(24) NOT NULL,"
                    " artnr varchar(12), kenn integer NOT NULL)"
                )
            )
            if dialect == "postgresql":
                n, numbers = "n", f"generate_series(0, {rows - 1}) AS s(n)"
                ts = (
                    f"TIMESTAMP '{end}' - ({rows - 1} - n) * INTERVAL '{STEP_S} seconds'"
                    " + (n % 997) * INTERVAL '1 microsecond'"
                )
                div = "/"
            else:
                n, numbers = "seq", f"seq_0_to_{rows - 1}"
                ts = (
                    f"TIMESTAMP('{end}') - INTERVAL (({rows - 1} - seq) * {STEP_S}) SECOND"
                    " + INTERVAL (seq % 997) MICROSECOND"
                )
                div = " DIV "
            k = f"({n}{div}{MACHINES})"  # the k-th booking of its machine
            conn.execute(
                sa.text(
                    f"INSERT INTO {name} SELECT {n}, {ts},"
                    f" CONCAT('M', LPAD(CAST({n} % {MACHINES} AS CHAR(3)), 3, '0')),"
                    f" CONCAT('A', {n} % {MACHINES}, '-', {k}{div}2),"
                    f" CONCAT('P', ({k}{div}2) % 50),"
                    f" CASE WHEN {k} % 2 = 0 THEN 10 ELSE 20 END FROM {numbers}"
                )
            )
            index_and_analyze(conn, dialect, name)
        return "created"
    finally:
        engine.dispose()


def index_and_analyze(conn: Any, dialect: str, name: str) -> None:
    import sqlalchemy as sa

    conn.execute(sa.text(f"CREATE INDEX ix_{name}_ts ON {name} (buchungszeit)"))
    conn.execute(sa.text(f"ANALYZE {'TABLE ' if dialect == 'mariadb' else ''}{name}"))


def table_span(dialect: str, rows: int) -> tuple[datetime, datetime]:
    import sqlalchemy as sa

    engine = sa.create_engine(URLS[dialect])
    with engine.connect() as conn:
        lo, hi = conn.execute(
            sa.text(f"SELECT min(buchungszeit), max(buchungszeit) FROM {table_name(rows)}")
        ).one()
    engine.dispose()
    return lo, hi


# ------------------------------------------------------- what runs inside a measuring process


def etl_extract_rows(dialect: str, table: str, odbc: bool = False) -> int:
    """booking-etl's extraction of a whole table through its public read path (the one place
    that knows that path: adapt it here when etl/sources/sql/query.py changes); ``odbc``: through the
    server's ODBC driver (a ``+pyodbc`` URL, read by arrow-odbc)."""
    from zoneinfo import ZoneInfo

    import sqlalchemy as sa

    from etl.config.models import ConnectorSpec, MappingSpec
    from etl.pipeline.mapping import map_bookings
    from etl.sources.sql.engine import open_source
    from etl.sources.sql.query import build_query, instant_columns, read_frames

    url = sa.make_url(URLS[dialect])
    if odbc:
        sys.path.insert(0, str(ROOT))
        from tests.support.pg_odbc import ODBC_URLS  # registers postgresql+pyodbc

        odbc_url = ODBC_URLS[dialect][1].format(
            user=url.username, host=url.host, db=url.database, port=url.port
        )
        spec = ConnectorSpec.model_validate({"dialect": dialect, "url": odbc_url})
    else:
        spec = ConnectorSpec.model_validate(
            {
                "dialect": dialect,
                "host": url.host,
                "port": url.port,
                "database": url.database,
                "user": url.username,
            }
        )
    mapping = MappingSpec.model_validate(bench_mapping(table))
    source = open_source("bench", spec, Path("."), [])
    zone = ZoneInfo("UTC")
    seen = 0
    try:
        with source.connect() as conn:
            instants = instant_columns(conn, mapping, source.dialect)
            query = build_query(mapping, None, zone, instants)
            for batch in read_frames(source, conn, mapping, query, instants, 50_000, "bench"):
                seen += len(map_bookings(batch, mapping, zone, instants).rows)
    finally:
        source.close()
    return seen


def bench_mapping(table: str) -> dict[str, Any]:
    return {
        "structure": "bookings",
        "source": {"table": table},
        "columns": {
            "timestamp": "buchungszeit",
            "order_code": "aunr",
            "product_code": "artnr",
            "machine_code": "maschnr",
            "event": "kenn",
        },
        "events": {"START": [10], "END": [20]},
    }


def run_one(kind: str, dialect: str, rows: int) -> dict[str, Any]:
    """One measurement in this process: returns rows and the seconds of the work itself."""
    table = table_name(rows)
    query = f"SELECT * FROM {table}"
    if kind == "adbc":
        import adbc_driver_postgresql.dbapi as adbc

        t0 = time.perf_counter()
        seen = 0
        with adbc.connect(CX_URLS["postgresql"]) as conn, conn.cursor() as cur:
            cur.execute(query)
            for batch in cur.fetch_record_batch():
                seen += batch.num_rows
        return {"rows": seen, "seconds": time.perf_counter() - t0}
    if kind == "pandas":
        import pandas as pd
        import sqlalchemy as sa

        engine = sa.create_engine(URLS[dialect])
        t0 = time.perf_counter()
        frame = pd.read_sql(sa.text(query), engine)
        return {"rows": len(frame), "seconds": time.perf_counter() - t0}
    if kind == "connectorx":
        import connectorx as cx

        t0 = time.perf_counter()
        table_out = cx.read_sql(CX_URLS[dialect], query, return_type="arrow")
        return {"rows": table_out.num_rows, "seconds": time.perf_counter() - t0}
    if kind.startswith("dlt-"):
        return run_dlt(kind.removeprefix("dlt-"), dialect, table)
    if kind in ("etl-extract", "etl-extract-odbc"):
        # imported before the clock starts, as for every peer
        for module in (
            "etl.config.models",
            "etl.sources.sql.query",
            "etl.pipeline.mapping",
            "etl.sources.sql.engine",
        ):
            importlib.import_module(module)

        t0 = time.perf_counter()
        seen = etl_extract_rows(dialect, table, odbc=kind.endswith("odbc"))
        return {"rows": seen, "seconds": time.perf_counter() - t0}
    if kind == "pyodbc":
        import pyodbc

        t0 = time.perf_counter()
        seen = 0
        with pyodbc.connect(ODBC_CONNECT[dialect], autocommit=True) as conn:
            cur = conn.cursor()
            cur.execute(query)
            while chunk := cur.fetchmany(ODBC_BATCH):
                seen += len(chunk)
        return {"rows": seen, "seconds": time.perf_counter() - t0}
    if kind == "arrow-odbc":
        import arrow_odbc

        t0 = time.perf_counter()
        seen = 0
        reader = arrow_odbc.read_arrow_batches_from_odbc(
            query, connection_string=ODBC_CONNECT[dialect], batch_size=ODBC_BATCH
        )
        for batch in reader:
            seen += batch.num_rows
        return {"rows": seen, "seconds": time.perf_counter() - t0}
    raise SystemExit(f"unknown measurement {kind}")


def run_dlt(backend: str, dialect: str, table: str) -> dict[str, Any]:
    """dlt's ``sql_table`` into Parquet files on a local filesystem destination."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    from dlt.sources.sql_database import sql_table

    work = Path(tempfile.mkdtemp(prefix="etl-bench-dlt-"))
    try:
        kwargs: dict[str, Any] = {}
        if backend == "connectorx":  # SQLAlchemy reflects the table, connectorx reads it
            kwargs["backend_kwargs"] = {"conn": CX_URLS[dialect], "return_type": "arrow"}
        t0 = time.perf_counter()
        resource = sql_table(
            credentials=URLS[dialect],
            table=table,
            backend=backend,
            chunk_size=50_000,
            **kwargs,
        )
        pipeline = dlt.pipeline(
            pipeline_name=f"bench_{backend}",
            pipelines_dir=str(work / "pipelines"),
            destination=dlt.destinations.filesystem(bucket_url=str(work / "out")),
            dataset_name="bench",
        )
        info = pipeline.run(resource, loader_file_format="parquet")
        seconds = time.perf_counter() - t0
        info.raise_on_failed_jobs()
        seen = pipeline.last_trace.last_normalize_info.row_counts.get(table, 0)
        return {"rows": seen, "seconds": seconds}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------- measuring from the outside


@dataclass
class Measured:
    """One row of a table."""

    group: str
    tool: str
    source: str
    rows: int
    work_s: float | None
    wall_s: float | None
    peak_rss_kib: int | None
    note: str = ""
    extra: dict[str, Any] | None = None

    @property
    def rate(self) -> float | None:
        if self.note.startswith(("failed", "timed out", "skipped")):
            return None
        seconds = self.work_s if self.work_s is not None else self.wall_s
        return self.rows / seconds if seconds and self.rows else None


def timed(
    cmd: list[str],
    *,
    stdout_to_null: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[subprocess.CompletedProcess[str], float, int, float]:
    """Run ``cmd`` under /usr/bin/time: (result, wall s, peak RSS KiB, host wall s)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", "-o", out.name, *cmd],
            stdout=subprocess.DEVNULL if stdout_to_null else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
            timeout=TIMEOUT_S,
        )
        host = time.perf_counter() - t0
        last = [line for line in Path(out.name).read_text().splitlines() if line.strip()][-1]
        wall, rss = last.split()
    return proc, float(wall), int(rss), host


def child(kind: str, dialect: str, rows: int, group: str, tool: str) -> Measured:
    try:
        proc, wall, rss, _ = timed(
            [sys.executable, __file__, "--one", kind, dialect, str(rows)], cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return Measured(
            group, tool, dialect, rows, None, None, None, f"timed out after {TIMEOUT_S}s"
        )
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["?"])[-1][:160]
        return Measured(group, tool, dialect, rows, None, wall, rss, f"failed: {reason}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    note = "" if result["rows"] == rows else f"read {result['rows']:,} rows"
    return Measured(group, tool, dialect, rows, result["seconds"], wall, rss, note)


def limit_pg_copy(rows: int) -> Measured:
    cmd = [
        "psql",
        "-X",
        "-q",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "test",
        "-c",
        f"COPY {table_name(rows)} TO STDOUT (FORMAT binary)",
    ]
    proc, wall, rss, _ = timed(cmd, stdout_to_null=True)
    note = "" if proc.returncode == 0 else f"failed: {proc.stderr.strip()[:120]}"
    return Measured(
        "limit",
        "psql COPY TO STDOUT (FORMAT binary) > /dev/null",
        "postgresql",
        rows,
        None,
        wall,
        rss,
        note,
    )


def limit_mariadb_cli(rows: int) -> Measured:
    cmd = [
        "mariadb",
        "--quick",
        "-h",
        "127.0.0.1",
        "-u",
        "root",
        "test",
        "-e",
        f"SELECT * FROM {table_name(rows)}",
    ]
    proc, wall, rss, _ = timed(cmd, stdout_to_null=True)
    note = "" if proc.returncode == 0 else f"failed: {proc.stderr.strip()[:120]}"
    return Measured("limit", "mariadb --quick > /dev/null", "mariadb", rows, None, wall, rss, note)


def etl_project(work: Path, table: str, store: str, *, start_from: str, reread: str) -> Path:
    """A booking-etl project reading ``table`` from the local PostgreSQL."""
    (work / "connectors").mkdir(parents=True, exist_ok=True)
    (work / "mappings").mkdir(exist_ok=True)
    (work / "jobs").mkdir(exist_ok=True)
    (work / "etl.yaml").write_text(f"store: {store}\nparquet: parquet\n")
    (work / "connectors" / "bench_pg.yaml").write_text(
        "dialect: postgresql\nhost: 127.0.0.1\nport: 5432\ndatabase: test\nuser: postgres\n"
        "timezone: UTC\n"
    )
    mapping = bench_mapping(table)
    (work / "mappings" / "bench.yaml").write_text(json.dumps(mapping, indent=1))
    (work / "jobs" / "bench.yaml").write_text(
        f"connector: bench_pg\nmapping: bench\nstart_from: '{start_from}'\nsafety_lag: 1m\n"
        f"reread: {reread}\n"
    )
    return work


def discover_timing(source: str, rows: int) -> str:
    """One Markdown row: ``etl discover CONNECTOR --table`` on the bench table, whole process."""
    port = 5432 if source == "postgresql" else 3306
    user = "postgres" if source == "postgresql" else "root"
    table = table_name(rows)
    with tempfile.TemporaryDirectory(prefix="etl-bench-discover-") as tmp:
        work = Path(tmp)
        for folder in ("connectors", "mappings", "jobs"):
            (work / folder).mkdir()
        (work / "etl.yaml").write_text("defaults: {start_from: 2026-01-01}\n")
        (work / "connectors" / "bench.yaml").write_text(
            f"dialect: {source}\nhost: 127.0.0.1\nport: {port}\ndatabase: test\nuser: {user}\n"
            "timezone: UTC\n"
        )
        cmd = [str(BIN / "etl"), "-p", str(work), "discover", "bench", "--table", table]
        proc, wall, rss, _ = timed(cmd, cwd=ROOT)
    note = "ok" if proc.returncode == 0 else f"failed: {proc.stderr.strip()[:120]}"
    if proc.returncode == 0:
        note = "under 5 s" if wall < DISCOVER_LIMIT_S else f"OVER {DISCOVER_LIMIT_S:.0f} s"
    return f"| {source} | {table} | {rows:,} | {wall:.2f} | {rss / 1024:,.0f} MiB | {note} |"


def fresh_pg_store() -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {PG_STORE_DB} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {PG_STORE_DB}"))
    admin.dispose()
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_STORE_DB}"


def etl_command(baseline: Path | None = None) -> list[str]:
    """How ``etl`` is started: this checkout's, or the ``etl`` package under ``baseline`` (an
    older version unpacked there, e.g. ``git archive COMMIT etl | tar -x -C DIR``) run with this
    virtualenv's interpreter and libraries."""
    if baseline is None:
        return [str(BIN / "etl")]
    launcher = (
        f"import sys; sys.path.insert(0, {str(baseline)!r}); from etl.cli import entry; entry()"
    )
    return [sys.executable, "-c", launcher]


def backfill(rows: int, store_kind: str, baseline: Path | None = None) -> Measured:
    lo, hi = table_span("postgresql", rows)
    work = Path(tempfile.mkdtemp(prefix="etl-bench-backfill-"))
    try:
        store = "sqlite:///store.sqlite" if store_kind == "sqlite" else fresh_pg_store()
        etl_project(
            work, table_name(rows), store, start_from=hi.strftime("%Y-%m-%d %H:%M:%S"), reread="1d"
        )
        since = lo.strftime("%Y-%m-%d %H:%M:%S")
        until = (hi + timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
        cmd = [
            *etl_command(baseline),
            "-p",
            str(work),
            "backfill",
            "bench",
            "--since",
            since,
            "--until",
            until,
            "--chunk",
            "30d",
        ]
        try:
            proc, wall, rss, _ = timed(cmd, cwd=work)
        except subprocess.TimeoutExpired:
            return Measured(
                "backfill",
                f"etl backfill, {store_kind} store",
                "postgresql",
                rows,
                None,
                None,
                None,
                f"timed out after {TIMEOUT_S}s",
            )
        note = (
            ""
            if proc.returncode == 0
            else f"failed ({proc.returncode}): "
            + (proc.stderr.strip().splitlines() or ["?"])[-1][:160]
        )
        runs = parquet_rows(work / "parquet" / "runs")
        return Measured(
            "backfill",
            f"etl backfill --chunk 30d, {store_kind} store + Parquet",
            "postgresql",
            rows,
            None,
            wall,
            rss,
            note,
            {"runs": runs},
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in path.rglob("*.parquet"))


def cadence(rows: int = CADENCE_ROWS, baseline: Path | None = None) -> list[str]:
    """``etl run`` of an incremental job re-reading 14 days of a 200-machine plant in a table of
    ``rows`` bookings (PostgreSQL source, SQLite store): whole process, start-up included
    (``baseline``: with the ``etl`` package under that directory, see ``etl_command``)."""
    import sqlalchemy as sa

    out: list[str] = []
    table = table_name(rows) + "_live"
    work = Path(tempfile.mkdtemp(prefix="etl-bench-cadence-"))
    try:
        engine = sa.create_engine(PG_URL)
        with engine.connect() as conn:
            now = conn.execute(sa.text("SELECT LOCALTIMESTAMP")).scalar()
            first = now - timedelta(days=14)
            in_window = conn.execute(
                sa.text(
                    f"SELECT count(*) FROM {table} WHERE buchungszeit >= :a AND buchungszeit < :b"
                ),
                {"a": first, "b": now},
            ).scalar()
            # the plan of the window query booking-etl sends (compiled by etl.sources.sql.query)
            plan = window_plan(conn, table, first, now)
        engine.dispose()
        etl_project(
            work,
            table,
            "sqlite:///store.sqlite",
            start_from=first.strftime("%Y-%m-%d %H:%M:%S"),
            reread="14d",
        )
        cmd = [*etl_command(baseline), "-p", str(work), "run", "bench", "--json"]
        code = "this checkout" if baseline is None else f"the etl package under {baseline}"
        out.append(
            f"Table `{table}` ({rows:,} bookings, index on the timestamp); "
            f"{in_window:,} bookings in the 14-day window. SQLite store, local Parquet; "
            f"{code}."
        )
        out.append("")
        out.append(
            "| run | what | wall s | peak RSS | rows read | runs +new ~changed -removed "
            "| Parquet files rewritten |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|")
        # the table goes on into the future: each rerun finds the few bookings of the seconds
        # since the last one (one every 8 s), so only the current month's runs partition changes
        labels = [
            "first run (store empty, 14 days)",
            "incremental (re-reads 14 days)",
            "rerun seconds later (a few new bookings)",
            "rerun seconds later",
        ]
        for label in labels:
            before = snapshot(work / "parquet")
            proc, wall, rss, _ = timed(cmd, cwd=work)
            if proc.returncode != 0:
                out.append(f"| {label} | failed | {wall:.2f} | {rss / 1024:,.0f} MiB | | | |")
                out.append(f"\n    {proc.stderr.strip()[-400:]}")
                break
            result = json.loads(proc.stdout)
            result = result[0] if isinstance(result, list) else result
            rewritten = sum(1 for k, v in snapshot(work / "parquet").items() if before.get(k) != v)
            out.append(
                f"| {label} | etl run | {wall:.2f} | {rss / 1024:,.0f} MiB | "
                f"{result.get('rows_read', 0):,} | +{result.get('runs_inserted')} "
                f"~{result.get('runs_updated')} -{result.get('runs_deleted')} | {rewritten} |"
            )
        out.append("")
        out.append(f"Window query plan (EXPLAIN): `{plan}`")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def window_plan(conn: Any, table: str, lo: datetime, hi: datetime) -> str:
    """The first line of EXPLAIN for the query etl.sources.sql.query builds for ``[lo, hi)``."""
    from datetime import UTC
    from zoneinfo import ZoneInfo

    import sqlalchemy as sa

    from etl.config.models import MappingSpec
    from etl.sources.reader import Window
    from etl.sources.sql.query import build_query

    mapping = MappingSpec.model_validate(bench_mapping(table))
    query = build_query(
        mapping, Window(lo.replace(tzinfo=UTC), hi.replace(tzinfo=UTC)), ZoneInfo("UTC")
    )
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    lines = conn.execute(sa.text("EXPLAIN " + sql.replace("%%", "%"))).scalars().all()
    scans = [line.strip() for line in lines if "Scan" in line]
    return " / ".join(scans) or lines[0]


def snapshot(base: Path) -> dict[str, tuple[int, int]]:
    if not base.exists():
        return {}
    return {
        str(p.relative_to(base)): (p.stat().st_mtime_ns, p.stat().st_ino)
        for p in base.rglob("*.parquet")
    }


def startup() -> list[str]:
    """Start-up of the CLI: cumulative import time of etl.cli and ``etl --help`` wall."""
    out = ["| what | median of 5 | min |", "|---|---:|---:|"]
    imports = []
    for _ in range(5):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import etl.cli"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        last = [line for line in proc.stderr.splitlines() if line.endswith("etl.cli")][-1]
        imports.append(int(last.split("|")[1]) / 1e6)
    out.append(
        f"| import etl.cli (-X importtime, cumulative) | {statistics.median(imports):.3f} s"
        f" | {min(imports):.3f} s |"
    )
    for args in (["--help"], ["run", "--help"]):
        walls = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([str(BIN / "etl"), *args], capture_output=True, check=True)
            walls.append(time.perf_counter() - t0)
        out.append(
            f"| etl {' '.join(args)} (wall) | {statistics.median(walls):.3f} s"
            f" | {min(walls):.3f} s |"
        )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, etl.cli; print(' '.join(sorted(m for m in "
            "('pandas','pyarrow','sqlalchemy','apscheduler','numpy','sqlglot',"
            "'pydantic') if m in sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    out.append("")
    out.append(f"Heavy modules loaded by `import etl.cli`: {proc.stdout.strip() or 'none'}")
    return out


# ------------------------------------------------------------------------------- the tables


def fmt_rate(value: float | None) -> str:
    return f"{value:,.0f}" if value else ""


def ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value and base else ""


def print_extraction(results: list[Measured]) -> None:
    print(
        "| source | rows | tool | work s | wall s | rows/s | peak RSS | vs limit | vs booking-etl"
        " | note |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for source, rows in sorted({(r.source, r.rows) for r in results}):
        group = [r for r in results if r.source == source and r.rows == rows]
        limit = next((r.rate for r in group if r.group == "limit" and r.rate), None)
        etl = next((r.rate for r in group if r.group == "etl-extract" and r.rate), None)
        pyodbc = next((r.rate for r in group if r.tool.startswith("pyodbc") and r.rate), None)
        for r in group:
            note = r.note
            if r.group == "odbc" and r.rate and pyodbc and not r.tool.startswith("pyodbc"):
                note = f"{ratio(r.rate, pyodbc)} pyodbc's rate {note}".strip()
            print(
                f"| {source} | {rows:,} | {r.tool} | "
                f"{'' if r.work_s is None else f'{r.work_s:.2f}'} | "
                f"{'' if r.wall_s is None else f'{r.wall_s:.2f}'} | {fmt_rate(r.rate)} | "
                f"{'' if r.peak_rss_kib is None else f'{r.peak_rss_kib / 1024:,.0f} MiB'} | "
                f"{ratio(r.rate, limit)} | {ratio(r.rate, etl)} | {note} |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=SIZES)
    parser.add_argument("--quick", action="store_true", help="1M rows only (minutes)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[*GROUPS, *URLS],
        help="measure only these groups and/or sources",
    )
    parser.add_argument(
        "--skip-slow",
        action="store_true",
        help=f"leave out pandas.read_sql and dlt's sqlalchemy backend from {SLOW_FROM:,} rows on",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="backfill and cadence groups: also run each backfill (back to back) and the "
        "cadence's runs (twice, alternating) with the etl package under this directory (an older "
        "version: git archive COMMIT etl | tar -x -C DIR)",
    )
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], int(args.one[2]))))
        return
    sizes = [1_000_000] if args.quick else args.rows
    if args.only and set(args.only) <= {"discover", *URLS} and args.rows == SIZES:
        sizes = [max(SIZES)]  # --only discover: the 10M table
    only = set(args.only or [])
    groups = [g for g in GROUPS if g in only] or GROUPS
    sources = [s for s in URLS if s in only] or list(URLS)
    started = time.perf_counter()
    print(
        f"# booking-etl bench ({datetime.now():%Y-%m-%d %H:%M}, rows {sizes}, "
        f"groups {' '.join(groups)}, sources {' '.join(sources)})\n",
        flush=True,
    )

    up = []
    needs_tables = set(groups) - {"fold", "startup", "files", "api", "excel"}
    for source in sources if needs_tables else []:
        tables = [(rows, False) for rows in sorted(set(sizes))]
        if "cadence" in groups and source == "postgresql":
            tables.append((CADENCE_ROWS, True))
        try:
            for rows, live_table in tables:
                t0 = time.perf_counter()
                state = ensure_table(source, rows, live=live_table)
                print(
                    f"<!-- {source} {table_name(rows)}{'_live' if live_table else ''}: {state} "
                    f"({time.perf_counter() - t0:.0f} s) -->",
                    flush=True,
                )
            up.append(source)
        except Exception as exc:  # a server that does not answer: say so, go on
            print(f"<!-- {source}: skipped: {str(exc).splitlines()[0]} -->", flush=True)

    extraction_groups = [
        g for g in groups if g in ("limit", "pandas", "connectorx", "dlt", "etl-extract", "odbc")
    ]
    if extraction_groups and up:
        print("\n## Extraction: whole table out of the source\n", flush=True)
        results: list[Measured] = []
        for source in up:
            for rows in sizes:
                plan: list[tuple[str, str, str, bool]] = []  # group, kind, tool, slow
                if "limit" in groups:
                    if source == "postgresql":
                        results.append(limit_pg_copy(rows))
                        plan.append(
                            ("limit", "adbc", "ADBC (adbc-driver-postgresql) into Arrow", False)
                        )
                    else:
                        results.append(limit_mariadb_cli(rows))
                if "etl-extract" in groups:
                    plan.append(
                        (
                            "etl-extract",
                            "etl-extract",
                            "booking-etl extraction (read path + mapping)",
                            False,
                        )
                    )
                if "pandas" in groups:
                    plan.append(("pandas", "pandas", "pandas.read_sql + SQLAlchemy", True))
                if "connectorx" in groups:
                    plan.append(("connectorx", "connectorx", "connectorx into Arrow", False))
                if "dlt" in groups:
                    plan += [
                        (
                            "dlt",
                            "dlt-connectorx",
                            "dlt sql_table, connectorx backend -> Parquet",
                            False,
                        ),
                        ("dlt", "dlt-pyarrow", "dlt sql_table, pyarrow backend -> Parquet", False),
                        (
                            "dlt",
                            "dlt-sqlalchemy",
                            "dlt sql_table, default sqlalchemy backend -> Parquet",
                            True,
                        ),
                    ]
                if "odbc" in groups:
                    driver = ODBC_DRIVERS[source]
                    plan += [
                        ("odbc", "pyodbc", f"pyodbc fetchmany, ODBC driver {driver}", False),
                        (
                            "odbc",
                            "arrow-odbc",
                            f"arrow-odbc into Arrow, ODBC driver {driver}",
                            False,
                        ),
                        (
                            "odbc",
                            "etl-extract-odbc",
                            f"booking-etl extraction over ODBC ({driver}; read path + mapping)",
                            False,
                        ),
                    ]
                for group, kind, tool, slow in plan:
                    if slow and args.skip_slow and rows >= SLOW_FROM:
                        results.append(
                            Measured(
                                group, tool, source, rows, None, None, None, "skipped (--skip-slow)"
                            )
                        )
                        continue
                    results.append(child(kind, source, rows, group, tool))
                    r = results[-1]
                    print(
                        f"<!-- {source} {rows:,} {tool}: {r.work_s} s work, {r.wall_s} s wall,"
                        f" {r.peak_rss_kib} KiB {r.note} -->",
                        flush=True,
                    )
        print()
        print_extraction(results)

    if "fold" in groups:
        print("\n## booking-etl fold (bench/fold_bench.py)\n", flush=True)
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "fold_bench.py"),
                "--rows",
                *[str(r) for r in sizes],
            ],
            check=False,
            cwd=ROOT,
        )

    if "backfill" in groups and "postgresql" in up:
        print(
            "\n## Full `etl backfill` of the table into the store and Parquet "
            "(PostgreSQL source, whole process)\n",
            flush=True,
        )
        print(
            "| store | bookings | code | wall s | bookings/s | peak RSS | runs in Parquet | note |"
        )
        print("|---|---:|---|---:|---:|---:|---:|---|")
        codes: list[Path | None] = [None] if args.baseline is None else [args.baseline, None]
        for rows in sizes:
            for store_kind in ("sqlite", "postgresql"):
                for code in codes:
                    r = backfill(rows, store_kind, code)
                    print(
                        f"| {store_kind} | {rows:,} | {'this' if code is None else code.name}"
                        f" | {'' if r.wall_s is None else f'{r.wall_s:.1f}'}"
                        f" | {fmt_rate(r.rate)} | "
                        f"{'' if r.peak_rss_kib is None else f'{r.peak_rss_kib / 1024:,.0f} MiB'} | "
                        f"{(r.extra or {}).get('runs', ''):,} | {r.note} |",
                        flush=True,
                    )

    if "cadence" in groups and "postgresql" in up:
        print("\n## Sync cadence: `etl run`, 14-day re-read window (whole process)\n", flush=True)
        for code in [None] if args.baseline is None else [args.baseline, None, args.baseline, None]:
            print("\n".join(cadence(baseline=code)), flush=True)

    if "discover" in groups and up:
        rows = max(sizes)
        print(f"\n## `etl discover --table` on {rows:,} rows (whole process)\n", flush=True)
        print("| source | table | rows | wall s | peak RSS | note |")
        print("|---|---|---:|---:|---:|---|")
        for source in up:
            print(discover_timing(source, rows), flush=True)

    chosen = [g for g in ("files", "api", "excel") if g in groups]
    if chosen:
        print(
            "\n## File drops and HTTP APIs (bench/sources_bench.py, median of three)\n",
            flush=True,
        )
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "sources_bench.py"),
                "--rows",
                str(min(sizes)),
                "--groups",
                *chosen,
            ],
            check=False,
            cwd=ROOT,
            timeout=TIMEOUT_S,
        )

    if "startup" in groups:
        print("\n## Start-up\n", flush=True)
        print("\n".join(startup()), flush=True)

    print(f"\n<!-- bench finished in {time.perf_counter() - started:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()
