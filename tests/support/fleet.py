"""A fleet for multi-worker tests: many bookings jobs over tables on real PostgreSQL / MariaDB
servers, one shared store, several ``etl schedule`` workers, and a writer process adding bookings
the way an MES does (late, out of order) while they run.

``python -m tests.support.fleet write SPEC.json STOPFILE`` is the writer process.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from etl.config.loader import load_project
from etl.pipeline.sync import open_store, run_job
from etl.shapes import RUN_COLUMNS
from tests.support.plant import BERLIN, _sorted

MAPPING = """\
structure: bookings
source: {{table: {table}}}
columns: {{timestamp: ts, order_code: aunr, machine_code: maschnr, product_code: artnr, event: satzart}}
events: {{START: [10], END: [20]}}
"""


@dataclass
class Source:
    """One source server: its SQLAlchemy URL, its connector name and dialect."""

    name: str
    url: str
    dialect: str


@dataclass
class Fleet:
    """``jobs`` bookings jobs (one table each) spread over ``sources``, in a project at ``root``."""

    root: Path
    store: str
    sources: list[Source]
    jobs: int
    every_s: int
    lease: str = "10s"
    misfire_grace: str = "2s"
    parquet: str = "output/parquet"
    etl_yaml_extra: str = ""
    suffix: str = ""

    def table(self, i: int) -> str:
        return f"bde_{self.suffix}_{i:02d}"

    def source_of(self, i: int) -> Source:
        return self.sources[i % len(self.sources)]

    def job_names(self) -> list[str]:
        return [f"j{i:02d}" for i in range(self.jobs)]

    def create(self) -> None:
        """Create the source tables (with a few days of history) and write the project."""
        now = datetime.now(UTC)
        for i in range(self.jobs):
            source = self.source_of(i)
            # naive plant-local wall-clock columns (MySQL's TIMESTAMP would be an instant)
            stamp = "timestamp(6)" if source.dialect == "postgresql" else "datetime(6)"
            engine = sa.create_engine(source.url)
            try:
                with engine.begin() as conn:
                    conn.execute(
                        sa.text(
                            f"CREATE TABLE {self.table(i)} (id integer PRIMARY KEY,"
                            " maschnr varchar(10), aunr varchar(20), artnr varchar(20),"
                            f" satzart integer, ts {stamp} NULL)"
                        )
                    )
                    rows = []
                    for n in range(40):
                        start = now - timedelta(hours=30) + timedelta(minutes=40 * n)
                        for k, (code, at) in enumerate(
                            ((10, start), (20, start + timedelta(minutes=25)))
                        ):
                            rows.append(
                                {
                                    "id": 2 * n + k + 1,
                                    "m": f"M{n % 3}",
                                    "o": f"H{i:02d}{n:04d}",
                                    "c": code,
                                    "ts": berlin(at),
                                }
                            )
                    conn.execute(
                        sa.text(
                            f"INSERT INTO {self.table(i)} (id, maschnr, aunr, artnr, satzart, ts)"
                            " VALUES (:id, :m, :o, 'P1', :c, :ts)"
                        ),
                        rows,
                    )
            finally:
                engine.dispose()
        self.write_project(self.root, store=self.store, parquet=self.parquet, schedules=True)

    def write_project(
        self, root: Path, *, store: str, parquet: str, schedules: bool, extra: bool = True
    ) -> None:
        for folder in ("connectors", "mappings", "jobs"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        start = (datetime.now(UTC) - timedelta(days=2)).astimezone(BERLIN)
        (root / "etl.yaml").write_text(
            f"store: {store}\nparquet: {parquet}\nlock:\n  lease: {self.lease}\n"
            f"defaults:\n  start_from: '{start:%Y-%m-%d %H:%M:%S}'\n  reread: 6h\n"
            f"  safety_lag: 0s\n  batch_size: 500\n"
            f"scheduler:\n  misfire_grace: {self.misfire_grace}\n"
            + (self.etl_yaml_extra if extra else "")
        )
        for source in self.sources:
            url = sa.make_url(source.url)
            port = url.port or (5432 if source.dialect == "postgresql" else 3306)
            (root / "connectors" / f"{source.name}.yaml").write_text(
                f"dialect: {source.dialect}\nhost: {url.host}\nport: {port}\n"
                f"database: {url.database}\nuser: {url.username}\ntimezone: Europe/Berlin\n"
            )
        for i, job in enumerate(self.job_names()):
            (root / "mappings" / f"{job}.yaml").write_text(MAPPING.format(table=self.table(i)))
            text = f"connector: {self.source_of(i).name}\nmapping: {job}\n"
            if schedules:
                text += f"schedule: '*/{self.every_s} * * * * *'\n"
            (root / "jobs" / f"{job}.yaml").write_text(text)

    # ------------------------------------------------------------------ the writer

    def writer(self, stop: Path, log: Path) -> subprocess.Popen[bytes]:
        """Start the writer process; it adds bookings until ``stop`` exists."""
        spec = self.root.parent / "fleet.json"
        spec.write_text(
            json.dumps(
                {
                    "sources": [asdict(s) for s in self.sources],
                    "tables": [[self.source_of(i).url, self.table(i)] for i in range(self.jobs)],
                }
            )
        )
        with log.open("w") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "tests.support.fleet", "write", str(spec), str(stop)],
                stdout=out,
                stderr=out,
                cwd=Path(__file__).resolve().parents[2],
            )

    # ------------------------------------------------------------------ checking

    def store_runs(self, store_url: str, root: Path) -> dict[str, pd.DataFrame]:
        project = load_project(root)
        store = open_store(project)
        try:
            # the fold's columns (the run context has tests of its own, tests/pipeline/test_context.py)
            return {job: _sorted(store.runs_between(job)[RUN_COLUMNS]) for job in self.job_names()}
        finally:
            store.close()

    def from_scratch(self, where: Path) -> dict[str, pd.DataFrame]:
        """Every job derived once from the sources as they are now, into a fresh SQLite store."""
        if where.exists():
            shutil.rmtree(where)
        where.mkdir(parents=True)
        self.write_project(
            where, store="sqlite:///scratch.sqlite", parquet="null", schedules=False, extra=False
        )
        project = load_project(where)
        for job in self.job_names():
            run_job(project, job)
        return self.store_runs("sqlite", where)


def berlin(at: datetime) -> datetime:
    """An aware instant as naive Berlin wall-clock time, the way the source stores it."""
    return at.astimezone(BERLIN).replace(tzinfo=None)


def write_bookings(spec_path: Path, stop: Path) -> int:
    """Add START/END bookings to random tables until ``stop`` exists; some arrive late (their
    timestamp minutes before the insert, never before what the re-read window covers)."""
    spec = json.loads(spec_path.read_text())
    engines: dict[str, sa.Engine] = {}
    state: dict[tuple[str, str], dict[str, Any]] = {}
    next_id: dict[str, int] = {}
    rng = random.Random(7)
    written = 0
    while not stop.exists():
        url, table = rng.choice(spec["tables"])
        engine = engines.setdefault(url, sa.create_engine(url))
        if table not in next_id:
            with engine.connect() as conn:
                next_id[table] = (
                    int(
                        conn.execute(sa.text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar()
                        or 0
                    )
                    + 1
                )
        machine = f"M{rng.randrange(4)}"
        key = (table, machine)
        entry = state.setdefault(key, {"open": None, "last": datetime.now(UTC), "n": 0})
        lag = timedelta(seconds=rng.choice([0, 0, 0, 5, 30, 300, 1200]))
        at = max(entry["last"] + timedelta(milliseconds=1), datetime.now(UTC) - lag)
        if entry["open"] is None:
            entry["n"] += 1
            order, code = f"W{machine}{entry['n']:05d}", 10
            entry["open"] = order
        else:
            order, code = entry["open"], 20
            entry["open"] = None
        entry["last"] = at
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"INSERT INTO {table} (id, maschnr, aunr, artnr, satzart, ts)"
                    " VALUES (:id, :m, :o, 'P1', :c, :ts)"
                ),
                {"id": next_id[table], "m": machine, "o": order, "c": code, "ts": berlin(at)},
            )
        next_id[table] += 1
        written += 1
        time.sleep(rng.uniform(0.0, 0.02))
    for engine in engines.values():
        engine.dispose()
    print(f"wrote {written} bookings", flush=True)
    return written


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "write":
        write_bookings(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit("usage: python -m tests.support.fleet write SPEC.json STOPFILE")
