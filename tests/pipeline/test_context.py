"""Run context (issue 18): mapping fields aggregated over a run's bookings, phases, plant and
zone on runs and anomalies in the store and the Parquet, job variables, the store upgrade."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from etl.config.loader import load_project
from etl.errors import ConfigError
from etl.pipeline.run import run_job
from etl.store.db import Store
from etl.store.schema import SCHEMA_VERSION
from tests.support.plant import local_text

MAPPING = """\
structure: bookings
source: {table: BUCHUNGEN}
columns:
  timestamp: {column: ZEIT, format: '%Y-%m-%d %H:%M:%S'}
  order_code: AUNR
  machine_code: MASCHNR
  event: SATZART
events: {START: [10, R1], END: [20], ignore: [40], phases: {setup: [R1]}}
filters:
  - {column: WERK, eq: '${plant}'}
fold: {grace: 10m}
fields:
  good: {column: MENGE, type: integer, agg: sum}
  peak: {column: MENGE, type: integer, agg: max}
  least: {column: MENGE, type: integer, agg: min}
  opening: {column: MENGE, type: integer, agg: first}
  closing: {column: MENGE, type: integer, agg: last}
  reports: {column: MENGE, type: integer, agg: count}
  operators: {column: PERSNR, type: text, agg: distinct}
"""


class Source:
    """A SQLite booking table shared by two plants, and a project with one job per plant."""

    def __init__(self, root: Path, *, reread: str = "1d") -> None:
        self.root = root
        for folder in ("connectors", "mappings", "jobs"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.db = root / "source.sqlite"
        self.now = datetime.now(UTC).replace(microsecond=0)
        with sqlite3.connect(self.db) as conn:
            conn.execute(
                "CREATE TABLE BUCHUNGEN (WERK TEXT, MASCHNR TEXT, AUNR TEXT, SATZART TEXT,"
                " ZEIT TEXT, MENGE INTEGER, PERSNR TEXT)"
            )
        start = local_text(self.now - timedelta(days=3))
        (root / "etl.yaml").write_text(
            "store: sqlite:///store.sqlite\nparquet: output/parquet\n"
            f"defaults:\n  start_from: '{start}'\n  reread: {reread}\n  safety_lag: 0s\n"
        )
        (root / "connectors" / "bde.yaml").write_text(
            f"dialect: sqlite\npath: {self.db}\ntimezone: Europe/Berlin\n"
        )
        (root / "mappings" / "bde.yaml").write_text(MAPPING)
        (root / "jobs" / "north.yaml").write_text("connector: bde\nmapping: bde\nplant: '1000'\n")
        (root / "jobs" / "south.yaml").write_text(
            "connector: bde\nmapping: bde\nplant: South\nvariables: {plant: '2000'}\n"
        )

    def ago(self, **delta: float) -> datetime:
        return self.now - timedelta(**delta)

    def book(
        self, code: str, at: datetime, qty: int | None = None, who: str | None = None, **kw: str
    ) -> None:
        row = (kw.get("plant", "1000"), kw.get("machine", "M1"), kw.get("order", "A"))
        with sqlite3.connect(self.db) as conn:
            conn.execute(
                "INSERT INTO BUCHUNGEN VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*row, code, local_text(at), qty, who),
            )

    def stored(self, job: str) -> pd.DataFrame:
        with sqlite3.connect(self.root / "store.sqlite") as conn:
            return pd.read_sql(
                "SELECT * FROM production_runs WHERE job = ? ORDER BY start", conn, params=[job]
            )

    def parquet(self, job: str) -> pd.DataFrame:
        frame = pd.read_parquet(self.root / "output" / "parquet" / "runs" / f"job={job}")
        return frame.sort_values("start", ignore_index=True)


def scenario(source: Source) -> None:
    """Two runs of order A on M1 and the quantity bookings around them."""
    b = source.book
    b("10", source.ago(hours=10), who="anna")  # run 1
    b("40", source.ago(hours=9), 5, "anna")
    b("40", source.ago(hours=8), 7, "bert")
    b("20", source.ago(hours=7), 1, "bert")  # END of run 1, with a quantity
    b("40", source.ago(hours=7) + timedelta(minutes=5), 3)  # within the grace: run 1
    b("40", source.ago(hours=6), 100)  # in the pause, after the grace: no run
    b("10", source.ago(hours=5), who="carl")  # run 2, still open
    b("40", source.ago(hours=4), 11, "carl")
    b("10", source.ago(hours=4), plant="2000", machine="S1", order="Z")  # the other plant


def test_fields_aggregate_the_bookings_between_start_and_end_plus_grace(tmp_path: Path) -> None:
    source = Source(tmp_path)
    scenario(source)
    run_job(load_project(tmp_path), "north")
    stored = source.stored("north")
    assert len(stored) == 2
    first, second = (json.loads(text) for text in stored["attributes"])
    assert first == {
        "good": 16,  # 5 + 7 + 1 (the END) + 3 (within grace); the 100 in the pause counts nowhere
        "peak": 7,
        "least": 1,
        "opening": 5,
        "closing": 3,
        "reports": 4,
        "operators": ["anna", "bert"],
    }
    assert second == {
        "good": 11,
        "peak": 11,
        "least": 11,
        "opening": 11,
        "closing": 11,
        "reports": 1,
        "operators": ["carl"],
    }
    assert set(stored["plant"]) == {"1000"} and set(stored["zone"]) == {"Europe/Berlin"}
    assert set(stored["phase"]) == {"production"}
    parquet = source.parquet("north")
    assert parquet["good"].tolist() == [16, 11]
    assert parquet["operators"].map(list).tolist() == [["anna", "bert"], ["carl"]]
    assert parquet["plant"].tolist() == ["1000", "1000"]
    local = [pd.Timestamp(s).tz_convert("Europe/Berlin").date() for s in parquet["start"].tolist()]
    assert parquet["local_start_date"].tolist() == local


def test_the_report_tooltip_and_the_preview_show_the_fields(tmp_path: Path) -> None:
    from etl.commands.preview import preview
    from etl.commands.report import payload, store_timeline

    source = Source(tmp_path)
    scenario(source)
    project = load_project(tmp_path)
    run_job(project, "north")
    extra = payload(store_timeline(project, "north"))["runs"]["x"]
    assert extra[0].splitlines() == [
        "plant    1000",
        "good     16",
        "peak     7",
        "least    1",
        "opening  5",
        "closing  3",
        "reports  4",
        "operators anna, bert",
    ]
    text = "\n".join(preview(project, "north", since="2000-01-01").lines())
    assert "fields over all 2 runs: good 27, reports 5" in text


def test_a_run_carried_across_windows_keeps_the_attributes_of_one_window(tmp_path: Path) -> None:
    split = Source(tmp_path / "split", reread="0s")
    whole = Source(tmp_path / "whole", reread="0s")
    for source in (split, whole):
        source.book("10", source.ago(hours=10), who="anna")
        source.book("40", source.ago(hours=9), 5, "anna")
    first = run_job(load_project(split.root), "north")  # the run is open at the window's end
    after = first.window_hi.replace(microsecond=0) + timedelta(seconds=1)
    for source in (split, whole):  # booked after the first window: read by the second
        source.book("40", after, 7, "bert")
        source.book("20", after + timedelta(seconds=1), 2, "anna")
        source.book("40", after + timedelta(seconds=2), 4)  # within grace
    while datetime.now(UTC) < after + timedelta(seconds=3):
        time.sleep(0.2)
    run_job(load_project(split.root), "north")
    run_job(load_project(whole.root), "north")
    columns = ["machine_code", "order_code", "start", "end", "attributes", "phase", "plant"]
    pd.testing.assert_frame_equal(split.stored("north")[columns], whole.stored("north")[columns])
    assert json.loads(whole.stored("north")["attributes"][0])["good"] == 18


def test_a_setup_start_gives_a_setup_run_before_the_production_run(tmp_path: Path) -> None:
    source = Source(tmp_path)
    source.book("R1", source.ago(hours=6))  # setup
    source.book("20", source.ago(hours=5))
    source.book("10", source.ago(hours=5) + timedelta(minutes=1))  # production, same order
    source.book("40", source.ago(hours=4), 8)
    run_job(load_project(tmp_path), "north")
    parquet = source.parquet("north")
    assert parquet["phase"].tolist() == ["setup", "production"]
    assert parquet["order_code"].tolist() == ["A", "A"]
    assert parquet["good"].isna().tolist() == [True, False]


def test_a_production_start_while_setup_is_open_ends_the_setup_run(tmp_path: Path) -> None:
    source = Source(tmp_path)
    setup, production = source.ago(hours=6), source.ago(hours=5)
    source.book("R1", setup)  # setup, never ended by its own END
    source.book("40", setup + timedelta(minutes=30), 2)  # scrap parts while setting up
    source.book("10", production)  # production of the same order on the same machine
    source.book("40", production + timedelta(minutes=30), 8)
    source.book("20", production + timedelta(hours=1))
    result = run_job(load_project(tmp_path), "north")
    assert result.anomalies == {}
    stored = source.stored("north")
    assert stored["phase"].tolist() == ["setup", "production"]
    assert stored["order_code"].tolist() == ["A", "A"]
    assert pd.to_datetime(stored["end"], utc=True).tolist()[0] == production
    assert [json.loads(t)["good"] for t in stored["attributes"]] == [2, 8]


def test_a_setup_run_carried_open_is_ended_by_the_production_start(tmp_path: Path) -> None:
    source = Source(tmp_path, reread="0s")
    source.book("R1", source.ago(hours=6))
    first = run_job(load_project(tmp_path), "north")
    assert first.runs_open == 1
    after = first.window_hi.replace(microsecond=0) + timedelta(seconds=1)
    source.book("10", after)
    source.book("20", after + timedelta(seconds=1))
    while datetime.now(UTC) < after + timedelta(seconds=2):
        time.sleep(0.2)
    second = run_job(load_project(tmp_path), "north")
    assert second.anomalies == {} and second.runs_open == 0
    stored = source.stored("north")
    assert stored["phase"].tolist() == ["setup", "production"]
    assert pd.to_datetime(stored["end"], utc=True).tolist() == [after, after + timedelta(seconds=1)]


def test_one_mapping_serves_two_plants_through_job_variables(tmp_path: Path) -> None:
    source = Source(tmp_path)
    scenario(source)
    project = load_project(tmp_path)
    assert project.job("north").mapping.filters[0].eq == "1000"
    assert project.job("south").mapping.filters[0].eq == "2000"
    run_job(project, "south")
    south = source.stored("south")
    assert south["machine_code"].tolist() == ["S1"] and south["plant"].tolist() == ["South"]
    anomalies_file = tmp_path / "jobs" / "south.yaml"
    anomalies_file.write_text(
        "connector: bde\nmapping: bde\nfilters: [{column: MASCHNR, eq: S1}]\n"
        "variables: {plant: '2000'}\n"
    )
    south_job = load_project(tmp_path).job("south")
    assert [f.column for f in south_job.mapping.filters] == ["WERK", "MASCHNR"]


def test_a_mapped_plant_column_gives_each_run_its_plant(tmp_path: Path) -> None:
    source = Source(tmp_path)
    scenario(source)
    mapping = MAPPING.replace("  event: SATZART\n", "  event: SATZART\n  plant: WERK\n")
    mapping = mapping.replace("filters:\n  - {column: WERK, eq: '${plant}'}\n", "")
    (tmp_path / "mappings" / "bde.yaml").write_text(mapping)
    (tmp_path / "jobs" / "south.yaml").unlink()
    run_job(load_project(tmp_path), "north")
    stored = source.stored("north").sort_values("machine_code")
    assert stored[["machine_code", "plant"]].values.tolist() == [
        ["M1", "1000"],
        ["M1", "1000"],
        ["S1", "2000"],
    ]
    zones = duckdb.sql(
        f"SELECT DISTINCT zone FROM read_parquet('{tmp_path}/output/parquet/runs/**/*.parquet')"
    ).fetchall()
    assert zones == [("Europe/Berlin",)]


def test_validate_names_a_mapping_variable_the_job_does_not_set(tmp_path: Path) -> None:
    Source(tmp_path)
    (tmp_path / "jobs" / "east.yaml").write_text("connector: bde\nmapping: bde\n")
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    text = "\n".join(caught.value.problems)
    assert "jobs/east.yaml" in text and "${plant}" in text and "does not set" in text


V1_DDL = [
    "CREATE TABLE schema_info (key VARCHAR(50) PRIMARY KEY, value VARCHAR(200) NOT NULL)",
    "CREATE TABLE production_runs (job VARCHAR(200), machine_code VARCHAR(200), start {ts},"
    ' order_code VARCHAR(200), product_code VARCHAR(200), "end" {ts}, flags VARCHAR(200),'
    " sync_id INTEGER, PRIMARY KEY (job, machine_code, start, order_code))",
    "CREATE TABLE anomalies (id INTEGER PRIMARY KEY, job VARCHAR(200) NOT NULL,"
    " kind VARCHAR(100) NOT NULL, machine_code VARCHAR(200), order_code VARCHAR(200), ts {ts},"
    " detail TEXT, sync_id INTEGER)",
    "CREATE TABLE job_state (job VARCHAR(200) PRIMARY KEY, watermark {ts}, last_sync_id INTEGER,"
    " publish_pending TEXT, lock_owner VARCHAR(300), lock_expires {ts},"
    " backfill_range VARCHAR(100), backfill_next {ts}, updated_at {ts})",
]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_store_of_schema_1_is_upgraded_in_place(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url, ts, stamp = f"sqlite:///{tmp_path / 'old.sqlite'}", "DATETIME", "2026-03-04 05:06:07"
    else:
        url = request.getfixturevalue("postgres_database")
        ts, stamp = "TIMESTAMP WITH TIME ZONE", "2026-03-04 05:06:07+00"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for ddl in V1_DDL:
            conn.exec_driver_sql(ddl.format(ts=ts))
        conn.exec_driver_sql("INSERT INTO schema_info VALUES ('version', '1')")
        conn.exec_driver_sql(
            f"INSERT INTO production_runs VALUES ('j', 'M1', '{stamp}', 'A', 'P', NULL, NULL, 1)"
        )
        conn.exec_driver_sql("INSERT INTO job_state (job, publish_pending) VALUES ('j', '[]')")
    engine.dispose()
    store = Store(url, tmp_path)
    try:
        store.ensure_schema()
        store.ensure_schema()  # a second start finds the current version and changes nothing
        runs = store.runs_in_month("j", "2026-03")
        state = store.state("j")
        with store.begin() as conn:
            version = conn.exec_driver_sql(
                "SELECT value FROM schema_info WHERE key = 'version'"
            ).scalar()
    finally:
        store.close()
    assert int(version) == SCHEMA_VERSION == 3
    assert runs[["machine_code", "order_code", "product_code"]].values.tolist() == [
        ["M1", "A", "P"]
    ]
    assert runs["start"].tolist() == [pd.Timestamp("2026-03-04 05:06:07", tz="UTC")]
    assert runs["phase"].tolist() == ["production"]
    assert runs["plant"].isna().all() and runs["attributes"].isna().all()
    assert state is not None and state.publish_pending == ["2026-03"]  # republished once


V2_RUNS_DDL = [
    "CREATE TABLE production_runs (job VARCHAR(200) NOT NULL, machine_code VARCHAR(200) NOT NULL,"
    ' start {ts} NOT NULL, order_code VARCHAR(200) NOT NULL, product_code VARCHAR(200), "end" {ts},'
    " flags VARCHAR(200), sync_id INTEGER, phase VARCHAR(50), plant VARCHAR(200), zone VARCHAR(64),"
    " attributes TEXT, PRIMARY KEY (job, machine_code, start, order_code))",
    'CREATE INDEX ix_production_runs_job_end ON production_runs (job, "end")',
    "CREATE INDEX ix_production_runs_job_start ON production_runs (job, start)",
]


def _schema_2_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A store as booking-etl's schema version 2 made it, with 3 runs of jobs j and k each."""
    if backend == "sqlite":
        url, ts, stamp = (
            f"sqlite:///{tmp_path / 'old.sqlite'}",
            "DATETIME",
            "2026-03-04 05:06:{:02d}",
        )
    else:
        url = request.getfixturevalue("postgres_database")
        ts, stamp = "TIMESTAMP WITH TIME ZONE", "2026-03-04 05:06:{:02d}+00"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(V1_DDL[0])
        for ddl in [*V2_RUNS_DDL, *V1_DDL[2:]]:
            conn.exec_driver_sql(ddl.format(ts=ts))
        conn.exec_driver_sql("ALTER TABLE anomalies ADD COLUMN plant VARCHAR(200)")
        conn.exec_driver_sql("ALTER TABLE anomalies ADD COLUMN zone VARCHAR(64)")
        conn.exec_driver_sql("INSERT INTO schema_info VALUES ('version', '2')")
        for job in ("j", "k"):
            for second, machine in enumerate(["M2", "M1", "M2"]):
                conn.exec_driver_sql(
                    f"INSERT INTO production_runs VALUES ('{job}', '{machine}',"
                    f" '{stamp.format(second)}', 'A{second}', 'P', NULL, NULL, 1, 'production',"
                    " 'W1', 'UTC', NULL)"
                )
            conn.exec_driver_sql(
                f"INSERT INTO job_state (job, publish_pending) VALUES ('{job}', '[]')"
            )
    engine.dispose()
    return url


def _assert_schema_3_with_the_runs_of_schema_2(url: str, tmp_path: Path) -> None:
    store = Store(url, tmp_path)
    try:
        store.ensure_schema()
        store.ensure_schema()
        runs = {job: store.runs_in_month(job, "2026-03") for job in ("j", "k")}
        pending = [store.state(job).publish_pending for job in ("j", "k")]  # type: ignore[union-attr]
        with store.begin() as conn:
            version = conn.exec_driver_sql(
                "SELECT value FROM schema_info WHERE key = 'version'"
            ).scalar()
            inspector = sa.inspect(conn)
            key = inspector.get_pk_constraint("production_runs")["constrained_columns"]
            indexes = sorted(ix["name"] for ix in inspector.get_indexes("production_runs"))
            tables = sorted(inspector.get_table_names())
    finally:
        store.close()
    assert int(version) == SCHEMA_VERSION == 3
    assert key == ["job", "start", "machine_code", "order_code"]
    assert indexes == ["ix_production_runs_job_end"]
    assert "production_runs_v2" not in tables
    for job in ("j", "k"):
        assert runs[job][["machine_code", "order_code"]].values.tolist() == [
            ["M1", "A1"],
            ["M2", "A0"],
            ["M2", "A2"],
        ]
        assert runs[job]["plant"].tolist() == ["W1"] * 3
    assert pending == [[], []]  # the rows are the same: no month to republish


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_store_of_schema_2_is_keyed_by_start_in_place_and_keeps_its_runs(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _schema_2_store(backend, tmp_path, request)
    _assert_schema_3_with_the_runs_of_schema_2(url, tmp_path)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_an_upgrade_killed_before_it_committed_leaves_schema_2_and_the_next_start_does_it(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _schema_2_store(backend, tmp_path, request)
    marker = tmp_path / "at-upgrade"
    env = {**os.environ, "ETL_FAILPOINT": "upgrade", "ETL_FAILPOINT_FILE": str(marker)}
    code = (
        "from pathlib import Path; from etl.store.db import Store; "
        f"Store({url!r}, Path({str(tmp_path)!r})).ensure_schema()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()  # the runs moved, the version not yet written
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        version = conn.exec_driver_sql(
            "SELECT value FROM schema_info WHERE key = 'version'"
        ).scalar()
        runs = conn.exec_driver_sql("SELECT count(*) FROM production_runs").scalar()
    engine.dispose()
    assert (version, runs) == ("2", 6)
    _assert_schema_3_with_the_runs_of_schema_2(url, tmp_path)


def test_pandas_and_duckdb_read_old_and_new_partitions_as_one_dataset(tmp_path: Path) -> None:
    source = Source(tmp_path)
    scenario(source)
    run_job(load_project(tmp_path), "north")
    base = tmp_path / "output" / "parquet" / "runs"
    # a partition written by the previous release: the fold's columns only
    old = base / "job=north" / "month=2020-01"
    old.mkdir(parents=True)
    pd.DataFrame(
        {
            "machine_code": ["M9"],
            "order_code": ["X"],
            "product_code": [None],
            "start": [pd.Timestamp("2020-01-02", tz="UTC")],
            "end": [pd.Timestamp("2020-01-03", tz="UTC")],
            "duration_s": [86400.0],
            "is_open": [False],
            "flags": [None],
        }
    ).to_parquet(old / "part-0.parquet")
    from etl.outputs.parquet import runs_table

    schema = runs_table(
        source.stored("north"), load_project(tmp_path).job("north").mapping.arrow_fields()
    ).schema
    import pyarrow.dataset as ds

    frame = ds.dataset(base, schema=schema, partitioning="hive").to_table().to_pandas()
    assert len(frame) == 3 and frame["plant"].isna().sum() == 1
    rows = duckdb.sql(
        f"SELECT machine_code, plant, good FROM read_parquet('{base}/**/*.parquet',"
        " hive_partitioning = true, union_by_name = true) ORDER BY start"
    ).fetchall()
    assert rows[0] == ("M9", None, None) and rows[1][1:] == ("1000", 16)


@pytest.mark.parametrize(
    "dialect",
    [
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def test_fields_from_a_real_server_with_decimals_and_a_job_variable(
    dialect: str, tmp_path: Path
) -> None:
    from tests.conftest import MARIADB_URL, POSTGRES_URL, server_or_skip

    url = server_or_skip(POSTGRES_URL if dialect == "postgresql" else MARIADB_URL, dialect)
    table = f"ctx_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(url)
    stamp = "timestamp(6)" if dialect == "postgresql" else "datetime(6)"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} (werk varchar(4), maschnr char(8), aunr varchar(20),"
                f" kenn varchar(3), zeit {stamp}, menge decimal(10,3), persnr varchar(10))"
            )
        )
        conn.execute(
            sa.text(f"INSERT INTO {table} VALUES (:w, :m, :o, :k, :t, :q, :p)"),
            [
                {"w": "1000", "m": "M1", "o": "4711", "k": "A", "t": "2026-10-21 06:00:00",
                 "q": None, "p": "anna"},
                {"w": "1000", "m": "M1", "o": "4711", "k": "Q", "t": "2026-10-21 07:00:00",
                 "q": "12.250", "p": "bert"},
                {"w": "1000", "m": "M1", "o": "4711", "k": "E", "t": "2026-10-21 08:00:00",
                 "q": "0.500", "p": "anna"},
                {"w": "2000", "m": "M1", "o": "9999", "k": "A", "t": "2026-10-21 06:00:00",
                 "q": "99", "p": "zoe"},
            ],
        )  # fmt: skip
    try:
        root = tmp_path / "p"
        for folder in ("connectors", "mappings", "jobs"):
            (root / folder).mkdir(parents=True)
        (root / "etl.yaml").write_text("defaults: {start_from: 2026-10-20}\n")
        port = url.port or (5432 if dialect == "postgresql" else 3306)
        (root / "connectors" / "plant.yaml").write_text(
            f"dialect: {dialect}\nhost: {url.host}\nport: {port}\ndatabase: {url.database}\n"
            f"user: {url.username}\ntimezone: Europe/Berlin\n"
        )
        (root / "mappings" / "bde.yaml").write_text(
            f"structure: bookings\nsource: {{table: {table}}}\n"
            "columns: {timestamp: zeit, order_code: aunr, machine_code: maschnr, event: kenn}\n"
            "events: {START: [A], END: [E], ignore: [Q]}\n"
            "filters: [{column: werk, eq: '${plant}'}]\n"
            "fields:\n"
            "  good: {column: menge, type: decimal, agg: sum}\n"
            "  operators: {column: persnr, type: text, agg: distinct}\n"
            "  last_booking: {column: zeit, type: timestamp, agg: last}\n"
        )
        (root / "jobs" / "bde.yaml").write_text("connector: plant\nmapping: bde\nplant: '1000'\n")
        result = run_job(load_project(root), "bde")
        assert result.runs_total == 1
        runs = pd.read_parquet(root / "output" / "parquet" / "runs")
        run = runs.iloc[0]
        assert run["good"] == pytest.approx(12.75)
        assert list(run["operators"]) == ["anna", "bert"]
        assert run["last_booking"] == pd.Timestamp("2026-10-21 06:00:00", tz="UTC")
        assert (run["plant"], run["zone"]) == ("1000", "Europe/Berlin")
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_a_store_of_schema_2_gets_the_carries_and_its_open_runs_count_each_booking_once(
    tmp_path: Path,
) -> None:
    """Version 2 had no ``run_carry``: the upgrade adds it and republishes nothing; the first run
    after it reads the carried run's bookings again from its start, the next ones use carries."""
    split, whole = Source(tmp_path / "split", reread="1h"), Source(tmp_path / "whole", reread="1h")
    for source in (split, whole):
        source.book("10", source.ago(hours=5), who="carl")
        source.book("40", source.ago(hours=4), 11, "carl")
        source.book("40", source.ago(minutes=30), 4, "dora")  # re-read by every later run
    run_job(load_project(split.root), "north")
    store_file = split.root / "store.sqlite"
    with sqlite3.connect(store_file) as conn:  # what booking-etl 0.1 left behind
        conn.execute("DROP TABLE run_carry")
        conn.execute("UPDATE schema_info SET value = '2' WHERE key = 'version'")
        conn.execute("UPDATE job_state SET publish_pending = '[]'")
    for _ in range(3):
        run_job(load_project(split.root), "north")
        with sqlite3.connect(store_file) as conn:
            (version,) = conn.execute("SELECT value FROM schema_info").fetchone()
            (pending,) = conn.execute("SELECT publish_pending FROM job_state").fetchone()
            carries = conn.execute("SELECT carry_at FROM run_carry").fetchall()
        assert (int(version), pending) == (SCHEMA_VERSION, "[]") and carries
        assert json.loads(split.stored("north")["attributes"][0])["good"] == 15
    run_job(load_project(whole.root), "north")
    assert (
        split.stored("north")["attributes"].tolist() == whole.stored("north")["attributes"].tolist()
    )


def test_preview_shows_the_fields_the_next_run_stores(tmp_path: Path) -> None:
    """``etl preview`` derives the window the next run would, carries included: a carried run
    with re-read bookings has the fields the run then stores (and one window gives)."""
    from etl.commands.preview import preview

    source = Source(tmp_path, reread="1h")
    source.book("10", source.ago(hours=5), who="carl")
    source.book("40", source.ago(hours=4), 11, "carl")
    source.book("40", source.ago(minutes=30), 4, "dora")
    project = load_project(tmp_path)
    run_job(project, "north")
    source.book("40", source.ago(minutes=20), 2, "emil")  # a late booking in the re-read window
    shown = preview(project, "north").runs
    run_job(project, "north")
    stored = source.stored("north")
    assert json.loads(stored["attributes"][0])["good"] == 17
    assert shown["attributes"].tolist() == stored["attributes"].tolist()


def test_a_backfill_from_inside_an_open_run_and_the_runs_after_it_count_each_booking_once(
    tmp_path: Path,
) -> None:
    """A backfill whose first chunk starts while a run is open carries that run in with the
    fields of its bookings before the chunk (read again from its start), and the sync runs
    after the backfill go on from its carries."""
    from etl.pipeline.backfill import backfill

    split, whole = Source(tmp_path / "split", reread="1h"), Source(tmp_path / "whole", reread="1h")
    for source in (split, whole):
        source.book("10", source.ago(hours=6), who="carl")
        source.book("40", source.ago(hours=5), 11, "carl")
        source.book("40", source.ago(hours=3), 5, "dora")
        source.book("40", source.ago(minutes=30), 4, "dora")
    project = load_project(split.root)
    run_job(project, "north")
    run_job(project, "north")
    since = local_text(split.ago(hours=4))
    backfill(project, "north", since, None, timedelta(minutes=50))
    run_job(project, "north")
    run_job(load_project(whole.root), "north")
    assert json.loads(split.stored("north")["attributes"][0])["good"] == 20
    assert (
        split.stored("north")["attributes"].tolist() == whole.stored("north")["attributes"].tolist()
    )
