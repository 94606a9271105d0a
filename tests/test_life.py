"""A scripted life of a booking table and an order table on the real PostgreSQL and MariaDB.

Many sync runs with new bookings, late bookings with old timestamps, corrections, cancellations,
deletes and a transaction left open across a sync; after every run the store and the Parquet
equal a from-scratch derivation of the same source. Plus crashes (kill -9 at failpoints), two
concurrent runs, and a source that goes away in the middle of a read.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.conftest import MARIADB_URL, POSTGRES_URL, server_or_skip
from tests.support.plant import BERLIN, ETL, Plant, frozen_at


class ServerPlant(Plant):
    """The Plant, with its booking system on a real server (native DATE/TIME/TIMESTAMP columns)."""

    def __init__(self, root: Path, url: sa.URL, dialect: str, *, reread: str = "2d") -> None:
        self.url, self.dialect = url, dialect
        self.engine = sa.create_engine(url)
        self.suffix = uuid.uuid4().hex[:8]
        self.bookings_table, self.orders_table = (
            f"buchungen_{self.suffix}",
            f"auftrag_{self.suffix}",
        )
        stamp = "timestamp(6)" if dialect == "postgresql" else "datetime(6)"
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"CREATE TABLE {self.bookings_table} (id integer PRIMARY KEY, werk varchar(4), maschnr char(8),"
                    f" aunr varchar(20), artnr varchar(20), satzart integer, buchdat date, buchzeit time,"
                    f" storno integer DEFAULT 0)"
                )
            )
            conn.execute(
                sa.text(
                    f"CREATE TABLE {self.orders_table} (id integer PRIMARY KEY, werk varchar(4), fanr varchar(20),"
                    f" artikel varchar(20), arbpl char(8), start_zeit {stamp}, ende_zeit {stamp})"
                )
            )
        self.next_id = 1
        super().__init__(root, reread=reread)

    def write_project(self, *, reread: str, parquet: str) -> None:
        super().write_project(reread=reread, parquet=parquet)
        port = self.url.port or (5432 if self.dialect == "postgresql" else 3306)
        (self.root / "connectors" / "plant.yaml").write_text(
            f"dialect: {self.dialect}\nhost: {self.url.host}\nport: {port}\ndatabase: {self.url.database}\n"
            f"user: {self.url.username}\ntimezone: Europe/Berlin\n"
        )
        (self.root / "mappings" / "bookings.yaml").write_text(
            f"structure: bookings\nsource: {{table: {self.bookings_table}}}\n"
            "columns: {timestamp: {date: buchdat, time: buchzeit}, order_code: aunr, machine_code: maschnr,"
            " product_code: artnr, event: satzart}\n"
            "events: {START: [10], END: [20, 30], ignore: [40]}\n"
            "filters: [{column: storno, eq: 0}, {column: werk, eq: '1000'}]\n"
        )
        (self.root / "mappings" / "orders.yaml").write_text(
            f"structure: orders\nsource: {{table: {self.orders_table}}}\n"
            "columns: {order_code: fanr, machine_code: arbpl, product_code: artikel, start: start_zeit,"
            " end: ende_zeit}\nfilters: [{column: werk, eq: '1000'}]\n"
        )

    def book(
        self,
        machine: str,
        order: str,
        code: int,
        at: datetime,
        *,
        product: str = "P1",
        plant: str = "1000",
        conn: sa.Connection | None = None,
    ) -> int:  # type: ignore[override]
        local = at.astimezone(BERLIN)
        row = {
            "id": self.next_id,
            "werk": plant,
            "m": machine,
            "o": order,
            "p": product,
            "c": code,
            "d": local.date(),
            "t": local.time().replace(microsecond=0),
        }
        self.next_id += 1
        statement = sa.text(
            f"INSERT INTO {self.bookings_table} (id, werk, maschnr, aunr, artnr, satzart, buchdat, buchzeit)"
            " VALUES (:id, :werk, :m, :o, :p, :c, :d, :t)"
        )
        if conn is not None:
            conn.execute(statement, row)
        else:
            with self.engine.begin() as own:
                own.execute(statement, row)
        return int(row["id"])  # type: ignore[call-overload]

    def order(
        self, machine: str, order: str, start: datetime, end: datetime | None, product: str = "P1"
    ) -> int:
        row = {
            "id": self.next_id,
            "o": order,
            "p": product,
            "m": machine,
            "s": start.astimezone(BERLIN).replace(tzinfo=None),
            "e": end.astimezone(BERLIN).replace(tzinfo=None) if end else None,
        }
        self.next_id += 1
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"INSERT INTO {self.orders_table} (id, werk, fanr, artikel, arbpl, start_zeit, ende_zeit)"
                    " VALUES (:id, '1000', :o, :p, :m, :s, :e)"
                ),
                row,
            )
        return int(row["id"])  # type: ignore[call-overload]

    def sql(self, statement: str, *params: object) -> None:
        names = {f"p{i}": value for i, value in enumerate(params)}
        text = statement
        for name in names:
            text = text.replace("?", f":{name}", 1)
        text = text.replace("BUCHUNGEN", self.bookings_table).replace("AUFTRAG", self.orders_table)
        with self.engine.begin() as conn:
            conn.execute(sa.text(text), names)

    def drop(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.bookings_table}"))
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {self.orders_table}"))
        self.engine.dispose()


@pytest.fixture(params=["postgresql", "mariadb"])
def plant(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerPlant]:
    dialect = request.param
    url = server_or_skip(POSTGRES_URL if dialect == "postgresql" else MARIADB_URL, dialect)
    built = ServerPlant(tmp_path / "p", url, dialect, reread="6h")
    try:
        yield built
    finally:
        built.drop()


def assert_consistent(plant: Plant, job: str = "bookings") -> pd.DataFrame:
    stored = plant.store_runs(job)
    pd.testing.assert_frame_equal(stored, plant.parquet_runs(job), check_dtype=False)
    pd.testing.assert_frame_equal(stored, plant.from_scratch(job), check_dtype=False)
    return stored


def test_a_scripted_life_of_a_booking_table(plant: ServerPlant) -> None:
    rnd = random.Random(20261122)
    machines = ["M1", "M2", "M3"]
    booked: list[int] = []
    open_orders: dict[str, str] = {}
    minute = 300  # bookings march forward from 5 h ago towards now, inside the 6 h re-read
    for step in range(8):
        for _ in range(6):
            machine = rnd.choice(machines)
            minute -= rnd.randint(1, 5)
            at = plant.ago(minutes=max(minute, 6))
            if machine in open_orders:
                booked.append(
                    plant.book(machine, open_orders.pop(machine), rnd.choice([20, 30]), at)
                )
            else:
                order = f"A{rnd.randint(100, 999)}"
                open_orders[machine] = order
                booked.append(plant.book(machine, order, 10, at, product=rnd.choice(["P1", "P2"])))
        if step % 2 == 1:  # a late booking with an old timestamp inside the re-read window
            plant.book(rnd.choice(machines), "LATE", 10, plant.ago(minutes=minute + 90))
        if step == 3:  # a correction: an interruption re-posted as finished
            plant.sql(
                "UPDATE BUCHUNGEN SET satzart = 30 WHERE satzart = 20 AND id = ?",
                rnd.choice(booked),
            )
        if step == 4:  # a cancellation and a delete
            plant.sql("UPDATE BUCHUNGEN SET storno = 1 WHERE id = ?", rnd.choice(booked))
            plant.sql("DELETE FROM BUCHUNGEN WHERE id = ?", rnd.choice(booked))
        if step == 5:  # a transaction open across a sync: invisible now, committed afterwards
            with plant.engine.connect() as conn:
                txn = conn.begin()
                plant.book("M9", "TXN", 10, plant.ago(minutes=max(minute, 6) + 5), conn=conn)
                plant.run()
                assert "TXN" not in set(plant.store_runs()["order_code"])
                txn.commit()
            plant.run()
            assert "TXN" in set(plant.store_runs()["order_code"])
        plant.run()
        assert_consistent(plant)


def test_a_scripted_life_of_an_order_table(plant: ServerPlant) -> None:
    first = plant.order("M1", "FA1", plant.ago(hours=9), None)
    plant.order("M2", "FA2", plant.ago(hours=8), plant.ago(hours=7))
    plant.run("orders")
    assert_consistent(plant, "orders")
    plant.sql(
        "UPDATE AUFTRAG SET ende_zeit = start_zeit WHERE id = ?", first
    )  # closed (zero length is kept)
    late = plant.order("M3", "FA3", plant.ago(hours=2, minutes=30), plant.ago(hours=1))  # late
    plant.run("orders")
    assert_consistent(plant, "orders")
    plant.sql("DELETE FROM AUFTRAG WHERE id = ?", late)
    plant.run("orders")
    stored = assert_consistent(plant, "orders")
    assert "FA3" not in set(stored["order_code"])


@pytest.mark.parametrize("point", ["extract", "commit"])
def test_kill_9_at_any_point_then_rerun_gives_the_same_result(
    plant: ServerPlant, tmp_path: Path, point: str
) -> None:
    plant.book("M1", "A", 10, plant.ago(hours=5))
    plant.book("M1", "A", 30, plant.ago(hours=4))
    plant.run()
    plant.book("M2", "B", 10, plant.ago(hours=2))
    plant.book("M1", "C", 10, plant.ago(hours=1))
    proc = frozen_at(plant, point, tmp_path, "run", "bookings")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    result = subprocess.run(
        [*ETL, "-p", str(plant.root), "run", "bookings"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr  # the dead run's lock is taken over
    stored = assert_consistent(plant)
    assert set(stored["order_code"]) == {"A", "B", "C"}


def test_two_concurrent_runs_of_one_job(plant: ServerPlant, tmp_path: Path) -> None:
    plant.book("M1", "A", 10, plant.ago(hours=5))
    first = frozen_at(plant, "extract", tmp_path, "run", "bookings")
    second = subprocess.run(
        [*ETL, "-p", str(plant.root), "run", "bookings"], capture_output=True, text=True
    )
    assert second.returncode == 5, second.stderr
    assert "already running" in second.stderr
    first.send_signal(signal.SIGTERM)
    first.communicate()
    plant.run()
    assert_consistent(plant)


def test_a_source_that_goes_away_mid_read_changes_nothing(
    plant: ServerPlant, tmp_path: Path
) -> None:
    plant.book("M1", "A", 10, plant.ago(hours=5))
    plant.run()
    before = plant.store_runs()
    watermark = _watermark(plant.root / "store.sqlite")
    (plant.root / "etl.yaml").write_text(
        (plant.root / "etl.yaml").read_text() + "  batch_size: 500\n"
    )
    at = plant.ago(hours=1).astimezone(BERLIN)
    numbers = (
        "generate_series(1, 300000) AS s(n)"
        if plant.dialect == "postgresql"
        else "seq_1_to_300000 AS s"
    )
    n = "n" if plant.dialect == "postgresql" else "seq"
    with plant.engine.begin() as conn:  # far more rows than socket buffers hold: the read streams
        conn.execute(
            sa.text(
                f"INSERT INTO {plant.bookings_table} (id, werk, maschnr, aunr, artnr, satzart, buchdat, buchzeit)"
                f" SELECT {n} + 100, '1000', 'M2', CONCAT('B', {n}), 'P1', 10, :d, :t FROM {numbers}"
            ),
            {"d": at.date(), "t": at.time().replace(microsecond=0)},
        )
    marker = tmp_path / "at-extract"
    env = {
        **os.environ,
        "ETL_FAILPOINT": "extract",
        "ETL_FAILPOINT_FILE": str(marker),
        "ETL_FAILPOINT_SLEEP": "4",
    }
    proc = subprocess.Popen(
        [*ETL, "-p", str(plant.root), "run", "bookings"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    # the DBA kills our session while we are reading: only the sessions reading this test's own
    # uuid-named table (the etl process's read, mid-stream), never other sessions on the server
    table = plant.bookings_table
    with plant.engine.connect() as conn:
        if plant.dialect == "postgresql":
            killed = (
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = 'booking-etl' AND datname = current_database()"
                        " AND pid <> pg_backend_pid() AND strpos(query, :table) > 0"
                    ),
                    {"table": table},
                )
                .scalars()
                .all()
            )
        else:
            killed = (
                conn.execute(
                    sa.text(
                        "SELECT id FROM information_schema.processlist"
                        " WHERE db = :db AND id <> CONNECTION_ID() AND INSTR(info, :table) > 0"
                    ),
                    {"db": plant.url.database, "table": table},
                )
                .scalars()
                .all()
            )
            for pid in killed:
                conn.execute(sa.text(f"KILL {int(pid)}"))
    assert killed, "the etl process's read of the table was not found"
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err.decode()
    assert "reading from the source failed" in err.decode() or "lost" in err.decode().lower()
    pd.testing.assert_frame_equal(plant.store_runs(), before, check_dtype=False)
    assert _watermark(plant.root / "store.sqlite") == watermark


def _watermark(store_file: Path) -> str:
    import sqlite3

    with sqlite3.connect(store_file) as conn:
        return str(
            conn.execute("SELECT watermark FROM job_state WHERE job = 'bookings'").fetchone()[0]
        )
