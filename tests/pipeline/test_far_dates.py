"""Timestamps at the edges of what a source can hold (issue 17, item 9): the years 1 and 9999,
PostgreSQL's ``infinity`` and MySQL's ``0000-00-00`` are a value or an anomaly, never a crash;
``sentinels`` on a field reads such values as "no value" (an end: still open)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from etl.cli import main
from etl.commands.report import store_timeline, write_html
from etl.config.loader import load_project
from etl.config.models import ColumnSpec
from etl.pipeline.sync import open_store, run_job
from tests.support.plant import Plant, local_text


def test_an_order_ending_9999_12_31_is_stored_published_and_reported(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    plant.order("M1", "FA1", plant.ago(days=4), plant.ago(days=3))
    row = plant.order("M2", "FA2", plant.ago(days=3), None)
    plant.sql("UPDATE AUFTRAG SET ENDE_ZEIT = '9999-12-31 00:00:00' WHERE ID = ?", row)
    first = plant.run("orders")
    assert first.runs_inserted == 2 and first.anomalies == {}
    again = plant.run("orders")  # the second run of the same data works too
    assert (again.runs_inserted, again.runs_updated, again.runs_deleted) == (0, 0, 0)
    files = list((plant.root / "output" / "parquet" / "runs").rglob("*.parquet"))
    table = pq.read_table(files[0]).to_pandas()
    far = table[table["order_code"] == "FA2"].iloc[0]
    assert far["end"] == pd.Timestamp("9999-12-30 23:00:00", tz="UTC")  # Berlin, winter
    assert far["duration_s"] == (far["end"] - far["start"]).total_seconds()
    timeline = store_timeline(load_project(plant.root), "orders")
    page = write_html(timeline, tmp_path / "report.html")
    assert page.stat().st_size < 2_000_000  # the axis is not stretched over 8,000 years


def test_sentinels_read_a_far_end_as_open(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    row = plant.order("M2", "FA2", plant.ago(days=3), None)
    plant.sql("UPDATE AUFTRAG SET ENDE_ZEIT = '9999-12-31 23:59:59' WHERE ID = ?", row)
    mapping = plant.root / "mappings" / "orders.yaml"
    mapping.write_text(
        mapping.read_text().replace(
            "end: {column: ENDE_ZEIT, format: '%Y-%m-%d %H:%M:%S'}",
            "end: {column: ENDE_ZEIT, format: '%Y-%m-%d %H:%M:%S', sentinels: [9999-12-31]}",
        )
    )
    result = plant.run("orders")
    assert (result.runs_inserted, result.runs_open, result.anomalies) == (1, 1, {})
    # the ERP closes it later: the open run is re-read and closed
    plant.sql(
        "UPDATE AUFTRAG SET ENDE_ZEIT = ? WHERE ID = ?", local_text(plant.ago(minutes=5)), row
    )
    closed = plant.run("orders")
    assert (closed.runs_updated, closed.runs_open) == (1, 0)


def test_a_sentinel_must_be_a_date_or_a_known_word() -> None:
    assert ColumnSpec(column="E", sentinels=["infinity", "0000-00-00"]).sentinels
    with pytest.raises(ValidationError, match="sentinels: 'someday' is not a date"):
        ColumnSpec(column="E", sentinels=["someday"])


def _project(root: Path, url: str, dialect: str, fetch: str, end: str) -> None:
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "etl.yaml").write_text(
        "store: sqlite:///store.sqlite\nparquet: out\n"
        "defaults: {start_from: '2026-01-01', reread: 1h, safety_lag: 0s}\n"
    )
    parsed = sa.make_url(url)
    (root / "connectors" / "src.yaml").write_text(
        f"dialect: {dialect}\nhost: {parsed.host}\nport: {parsed.port}\nuser: {parsed.username}\n"
        f"database: {parsed.database}\ntimezone: America/New_York\nfetch: {fetch}\n"
    )
    (root / "mappings" / "o.yaml").write_text(
        "structure: orders\nsource: {table: orders}\ncolumns:\n"
        f"  order_code: fanr\n  machine_code: arbpl\n  start: start_zeit\n  end: {end}\n"
    )
    (root / "jobs" / "o.yaml").write_text("connector: src\nmapping: o\n")


def _outcome(root: Path) -> tuple[dict[str, object], list[tuple[object, ...]]]:
    project = load_project(root)
    run_job(project, "o")
    store = open_store(project)
    try:
        with store.begin() as conn:
            runs = conn.execute(
                sa.text("SELECT order_code, end IS NULL FROM production_runs ORDER BY order_code")
            ).all()
            found = conn.execute(
                sa.text("SELECT order_code, kind, detail FROM anomalies ORDER BY order_code")
            ).all()
    finally:
        store.close()
    return {str(r[0]): bool(r[1]) for r in runs}, [tuple(a) for a in found]


PG_ROWS = """
INSERT INTO orders (fanr, arbpl, start_zeit, ende_zeit) VALUES
 ('A', 'M1', now() - interval '3 days', now() - interval '2 days'),
 ('B', 'M1', now() - interval '2 days', 'infinity'),
 ('C', 'M2', now() - interval '2 days', '9999-12-31 23:59:59'),
 ('D', 'M3', now() - interval '2 days', '0001-01-01 00:00'),
 ('F', 'M5', '-infinity', now())
"""


@pytest.mark.parametrize("fetch", ["auto", "sqlalchemy"])
def test_postgresql_infinity_and_the_years_1_and_9999(
    tmp_path: Path, postgres_database: str, fetch: str
) -> None:
    engine = sa.create_engine(postgres_database)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE orders (fanr text, arbpl text, start_zeit timestamp,"
                " ende_zeit timestamp)"
            )
        )
        conn.execute(sa.text(PG_ROWS))
    engine.dispose()
    _project(tmp_path / "plain", postgres_database, "postgresql", fetch, "ende_zeit")
    runs, found = _outcome(tmp_path / "plain")
    assert runs == {"A": False}  # C ends in 10000 UTC: no datetime holds that
    assert found == [
        ("B", "bad_timestamp", "unparseable end: ende_zeit='infinity'"),
        ("C", "bad_timestamp", "unparseable end: ende_zeit='9999-12-31 23:59:59'"),
        ("D", "end_before_start", "end 0001-01-01 04:56:02+00:00 is before start"),
        ("F", "bad_timestamp", "missing or unparseable start: start_zeit='-infinity'"),
    ]
    open_end = "{column: ende_zeit, sentinels: [infinity, 9999-12-31, 0001-01-01]}"
    _project(tmp_path / "open", postgres_database, "postgresql", fetch, open_end)
    runs, found = _outcome(tmp_path / "open")
    assert runs == {"A": False, "B": True, "C": True, "D": True}
    assert [a[0] for a in found] == ["F"]


@pytest.mark.parametrize("fetch", ["auto", "sqlalchemy"])
def test_mysql_zero_dates(tmp_path: Path, mariadb_database: str, fetch: str) -> None:
    engine = sa.create_engine(mariadb_database)
    with engine.begin() as conn:
        conn.execute(sa.text("SET SESSION sql_mode = ''"))
        conn.execute(
            sa.text(
                "CREATE TABLE orders (fanr varchar(9), arbpl varchar(9), start_zeit datetime,"
                " ende_zeit datetime)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO orders VALUES"
                " ('A', 'M1', now() - interval 3 day, now() - interval 2 day),"
                " ('B', 'M1', now() - interval 2 day, '0000-00-00 00:00:00'),"
                " ('C', 'M2', '0000-00-00', now())"
            )
        )
    engine.dispose()
    _project(tmp_path / "plain", mariadb_database, "mariadb", fetch, "ende_zeit")
    runs, found = _outcome(tmp_path / "plain")
    assert runs == {"A": False}
    assert [(a[0], a[1]) for a in found] == [("B", "bad_timestamp"), ("C", "bad_timestamp")]
    assert "'0000-00-00 00:00:00'" in str(found[0][2])
    _project(
        tmp_path / "open",
        mariadb_database,
        "mariadb",
        fetch,
        "{column: ende_zeit, sentinels: ['0000-00-00']}",
    )
    runs, found = _outcome(tmp_path / "open")
    assert runs == {"A": False, "B": True}
    assert [a[0] for a in found] == ["C"]


def test_sqlite_text_in_the_year_1(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    row = plant.order("M1", "FA1", plant.ago(days=3), plant.ago(days=2))
    with sqlite3.connect(plant.db) as conn:
        conn.execute("UPDATE AUFTRAG SET START_ZEIT = '0001-01-01 00:00:00' WHERE ID = ?", (row,))
    result = plant.run("orders")  # Berlin's 0001-01-01 00:00 is 0000-12-31 in UTC
    assert result.anomalies == {"bad_timestamp": 1}


def test_discover_proposes_the_no_end_values_it_sees_as_sentinels(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    for i in range(30):  # enough orders for discover to see an order table
        start = plant.ago(days=9) + timedelta(hours=7 * i)
        plant.order(f"M{i % 3}", f"FA{i}", start, start + timedelta(hours=5))
    row = plant.order("M2", "FA2", plant.ago(hours=3), None)
    plant.sql("UPDATE AUFTRAG SET ENDE_ZEIT = '9999-12-31 00:00:00' WHERE ID = ?", row)
    result = CliRunner().invoke(main, ["-p", str(plant.root), "discover", "plant", "-t", "AUFTRAG"])
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.output)
    assert data["columns"]["end"]["sentinels"] == ["9999-12-31"]
    (plant.root / "mappings" / "orders.yaml").write_text(result.output)
    assert plant.run("orders").runs_open == 1  # the proposal reads FA2 as still open
