"""A tiny scripted plant for sync tests: a real SQLite booking system and a project wired to it."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

from etl.config.loader import load_project
from etl.pipeline.sync import RunResult, open_store, run_job

BERLIN = ZoneInfo("Europe/Berlin")

BOOKINGS_MAPPING = """\
structure: bookings
source: {table: BUCHUNGEN}
columns:
  timestamp: {date: BUCHDAT, time: BUCHZEIT, date_format: '%Y-%m-%d'}
  order_code: AUNR
  machine_code: MASCHNR
  product_code: ARTNR
  event: SATZART
events: {START: [10], END: [20, 30], ignore: [40]}
filters:
  - {column: STORNO, eq: 0}
  - {column: WERK, eq: '1000'}
"""

ORDERS_MAPPING = """\
structure: orders
source: {table: AUFTRAG}
columns:
  order_code: FANR
  machine_code: ARBPL
  product_code: ARTIKEL
  start: {column: START_ZEIT, format: '%Y-%m-%d %H:%M:%S'}
  end: {column: ENDE_ZEIT, format: '%Y-%m-%d %H:%M:%S'}
  updated_at: {column: GEAENDERT, format: '%Y-%m-%d %H:%M:%S'}
filters:
  - {column: WERK, eq: '1000'}
"""


def local_text(at: datetime) -> str:
    """An aware instant as naive Berlin wall-clock text, the way the source stores it."""
    return at.astimezone(BERLIN).strftime("%Y-%m-%d %H:%M:%S")


class Plant:
    """A SQLite booking system plus a project with one bookings job and one orders job."""

    def __init__(
        self, root: Path, *, reread: str = "2d", days: int = 10, parquet: str = "output/parquet"
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.db = root / "plant.sqlite"
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.start_from = (
            (self.now - timedelta(days=days)).astimezone(BERLIN).strftime("%Y-%m-%d %H:%M:%S")
        )
        with sqlite3.connect(self.db) as conn:
            conn.execute(
                "CREATE TABLE BUCHUNGEN (ID INTEGER PRIMARY KEY, WERK TEXT, MASCHNR TEXT, AUNR TEXT,"
                " ARTNR TEXT, SATZART INTEGER, BUCHDAT TEXT, BUCHZEIT TEXT, STORNO INTEGER DEFAULT 0)"
            )
            conn.execute(
                "CREATE TABLE AUFTRAG (ID INTEGER PRIMARY KEY, WERK TEXT, FANR TEXT, ARTIKEL TEXT,"
                " ARBPL TEXT, START_ZEIT TEXT, ENDE_ZEIT TEXT, GEAENDERT TEXT)"
            )
        self.write_project(reread=reread, parquet=parquet)

    def write_project(self, *, reread: str, parquet: str) -> None:
        """(Re)write the project files."""
        for folder in ("connectors", "mappings", "jobs"):
            (self.root / folder).mkdir(exist_ok=True)
        (self.root / "etl.yaml").write_text(
            f"store: sqlite:///store.sqlite\nparquet: {parquet}\n"
            f"defaults:\n  start_from: '{self.start_from}'\n  reread: {reread}\n  safety_lag: 0s\n"
        )
        (self.root / "connectors" / "plant.yaml").write_text(
            f"dialect: sqlite\npath: {self.db}\ntimezone: Europe/Berlin\n"
        )
        (self.root / "mappings" / "bookings.yaml").write_text(BOOKINGS_MAPPING)
        (self.root / "mappings" / "orders.yaml").write_text(ORDERS_MAPPING)
        (self.root / "jobs" / "bookings.yaml").write_text("connector: plant\nmapping: bookings\n")
        (self.root / "jobs" / "orders.yaml").write_text("connector: plant\nmapping: orders\n")

    def ago(self, **delta: float) -> datetime:
        """An instant relative to the plant's 'now'."""
        return self.now - timedelta(**delta)

    # ---------------------------------------------------------------- the source, as the MES writes it

    def book(
        self,
        machine: str,
        order: str,
        code: int,
        at: datetime,
        *,
        product: str = "P1",
        plant: str = "1000",
    ) -> int:
        """Insert one booking; returns its ID."""
        day, clock = local_text(at).split(" ")
        with sqlite3.connect(self.db) as conn:
            cur = conn.execute(
                "INSERT INTO BUCHUNGEN (WERK, MASCHNR, AUNR, ARTNR, SATZART, BUCHDAT, BUCHZEIT)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (plant, machine, order, product, code, day, clock),
            )
            return int(cur.lastrowid or 0)

    def order(
        self, machine: str, order: str, start: datetime, end: datetime | None, product: str = "P1"
    ) -> int:
        """Insert one order-table row; returns its ID."""
        with sqlite3.connect(self.db) as conn:
            cur = conn.execute(
                "INSERT INTO AUFTRAG (WERK, FANR, ARTIKEL, ARBPL, START_ZEIT, ENDE_ZEIT, GEAENDERT)"
                " VALUES ('1000', ?, ?, ?, ?, ?, ?)",
                (
                    order,
                    product,
                    machine,
                    local_text(start),
                    local_text(end) if end else None,
                    local_text(datetime.now(UTC)),
                ),
            )
            return int(cur.lastrowid or 0)

    def sql(self, statement: str, *params: object) -> None:
        """Change the source the way the MES would (storno, delete, correction)."""
        with sqlite3.connect(self.db) as conn:
            conn.execute(statement, params)

    # ---------------------------------------------------------------- booking-etl

    def run(self, job: str = "bookings") -> RunResult:
        """One sync run of ``job``."""
        return run_job(load_project(self.root), job)

    def store_runs(self, job: str = "bookings") -> pd.DataFrame:
        """All stored runs of the job, sorted."""
        store = open_store(load_project(self.root))
        try:
            months = store.all_months(job)
            frames = [store.runs_in_month(job, m) for m in months]
        finally:
            store.close()
        if not frames:
            return pd.DataFrame(
                columns=["machine_code", "order_code", "product_code", "start", "end"]
            )
        runs = pd.concat(frames, ignore_index=True)
        # the fold's columns: the context (phase, plant, zone, attributes) has tests of its own
        return _sorted(
            runs[["machine_code", "order_code", "product_code", "start", "end", "flags"]]
        )

    def parquet_runs(self, job: str = "bookings") -> pd.DataFrame:
        """The job's runs as read back from the Parquet dataset."""
        base = self.root / "output" / "parquet" / "runs" / f"job={job}"
        if not list(base.rglob("*.parquet")):
            return pd.DataFrame(
                columns=["machine_code", "order_code", "product_code", "start", "end"]
            )
        frame = pd.read_parquet(base)
        frame = frame[["machine_code", "order_code", "product_code", "start", "end", "flags"]]
        return _sorted(frame)

    def from_scratch(self, job: str = "bookings") -> pd.DataFrame:
        """What a fresh project with an empty store derives from the same source now."""
        fresh = self.root.parent / f"{self.root.name}-scratch"
        if fresh.exists():
            shutil.rmtree(fresh)
        fresh.mkdir()
        for name in ("etl.yaml", "connectors", "mappings", "jobs"):
            source = self.root / name
            if source.is_dir():
                shutil.copytree(source, fresh / name)
            else:
                shutil.copy(source, fresh / name)
        run_job(load_project(fresh), job)
        scratch = Plant.__new__(Plant)
        scratch.root = fresh
        return scratch.store_runs(job)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for col in ("machine_code", "order_code", "product_code", "flags"):
        if col in frame:
            frame[col] = frame[col].astype("string")
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    return frame.sort_values(["machine_code", "start", "order_code"]).reset_index(drop=True)


#: the etl command line as a subprocess of the interpreter running the tests
ETL = [sys.executable, "-m", "etl.cli"]


def frozen_at(plant: Plant, point: str, tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    """``etl -p PLANT ARGS...`` as a real process held at failpoint ``point`` (the failpoint writes
    a marker file and waits): returned once it is there, for a test to kill or release it."""
    marker = tmp_path / f"at-{point}"
    env = {**os.environ, "ETL_FAILPOINT": point, "ETL_FAILPOINT_FILE": str(marker)}
    proc = subprocess.Popen(
        [*ETL, "-p", str(plant.root), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    return proc
