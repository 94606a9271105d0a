"""Every documented exit code, produced through the real command line against real databases."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli import main
from etl.config.loader import load_project
from etl.errors import EXIT_CODES
from etl.pipeline.sync import open_store
from tests.support.plant import Plant

OPERATIONS = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()


def etl(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_every_exit_code_is_in_the_docs_and_in_help() -> None:
    table = OPERATIONS.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    _, help_text, _ = etl("--help")
    for code in EXIT_CODES:
        assert re.search(rf"^\| {code} \|", table, re.M), (
            f"exit code {code} missing in docs/operations.md"
        )
        assert re.search(rf"^\s+{code}\s+\w", help_text, re.M), f"exit code {code} not in --help"


def test_0_success_and_2_usage_or_configuration(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    assert etl("-p", str(plant.root), "run", "--all")[0] == 0
    code, _, err = etl("-p", str(plant.root), "run", "bookings", "--all")
    assert code == 2 and "name one or more jobs, or pass --all" in err
    (plant.root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nschedule: '61 * * * *'\n"
    )
    code, _, err = etl("-p", str(plant.root), "run", "--all")
    assert code == 2 and "jobs/bookings.yaml:3: schedule: invalid cron expression" in err


def test_3_source_unreachable_after_retries(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    (plant.root / "connectors" / "down.yaml").write_text(
        "dialect: postgresql\nhost: 127.0.0.1\nport: 1\ndatabase: mes\nuser: etl\n"
    )
    (plant.root / "jobs" / "down.yaml").write_text("connector: down\nmapping: bookings\n")
    code, _, err = etl("-p", str(plant.root), "run", "down")
    assert code == 3
    assert "connectors/down.yaml: cannot connect" in err and "(3 attempts over" in err
    code, _, err = etl("-p", str(plant.root), "run", "--all")  # the others still run
    assert code == 3 and "down: FAILED" in err


def test_4_data_error(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    mapping = plant.root / "mappings" / "bookings.yaml"
    mapping.write_text(mapping.read_text().replace("order_code: AUNR", "order_code: AUFNR"))
    code, _, err = etl("-p", str(plant.root), "run", "bookings")
    assert code == 4 and "column 'AUFNR' not found in BUCHUNGEN" in err


def test_5_lock_held_by_another_run(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    store = open_store(load_project(plant.root))
    try:
        owner = store.acquire_lock("bookings", timedelta(minutes=5))  # this live process holds it
        code, _, err = etl("-p", str(plant.root), "run", "bookings")
        assert code == 5 and "job 'bookings' is already running" in err
        store.release_lock("bookings", owner)
    finally:
        store.close()
    assert etl("-p", str(plant.root), "run", "bookings")[0] == 0


def test_6_store_unreachable(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    (plant.root / "etl.yaml").write_text(
        (plant.root / "etl.yaml")
        .read_text()
        .replace("sqlite:///store.sqlite", "postgresql+psycopg://etl@127.0.0.1:1/store")
    )
    code, _, err = etl("-p", str(plant.root), "run", "bookings")
    assert code == 6 and "store postgresql+psycopg://etl@127.0.0.1:1/store" in err


@pytest.mark.parametrize(
    ("limit", "code"),
    [(0, 8), (1, 0), ("'40%'", 8), ("'50%'", 0)],
    ids=["count-exceeded", "count-ok", "ratio-exceeded", "ratio-ok"],
)
def test_8_more_anomalies_than_max_anomalies_commits_nothing(
    tmp_path: Path, limit: object, code: int
) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=5))
    plant.book("M1", "B", 99, plant.ago(hours=4))  # unknown event code: 1 anomaly in 2 rows
    (plant.root / "jobs" / "bookings.yaml").write_text(
        f"connector: plant\nmapping: bookings\nmax_anomalies: {limit}\n"
    )
    got, out, err = etl("-p", str(plant.root), "run", "bookings")
    assert got == code, err
    with sqlite3.connect(plant.root / "store.sqlite") as conn:
        audit = conn.execute(
            "SELECT status, rows_read, anomalies, anomalies_by_kind, error FROM sync_runs"
        ).fetchall()
        stored = conn.execute("SELECT count(*) FROM production_runs").fetchone()[0]
        watermark = conn.execute("SELECT watermark FROM job_state").fetchone()[0]
    if code == 0:
        assert audit[0][0] == "ok" and stored == 1 and watermark is not None
        return
    assert "too many anomalies: 1 (unknown_event 1) in 2 rows read, max_anomalies" in err
    assert "nothing was committed" in err
    status, rows_read, anomalies, kinds, error = audit[0]
    assert (status, rows_read, anomalies, json.loads(kinds)) == (
        "failed",
        2,
        1,
        {"unknown_event": 1},
    )
    assert "TooManyAnomalies" in error
    assert stored == 0 and watermark is None
    assert out == ""


@pytest.mark.parametrize("value", ["-1", "'5'", "'150%'", "'x%'", "true"])
def test_max_anomalies_must_be_a_count_or_a_percentage(tmp_path: Path, value: str) -> None:
    plant = Plant(tmp_path / "p")
    (plant.root / "jobs" / "bookings.yaml").write_text(
        f"connector: plant\nmapping: bookings\nmax_anomalies: {value}\n"
    )
    code, _, err = etl("-p", str(plant.root), "validate")
    assert code == 2 and "jobs/bookings.yaml:3: max_anomalies" in err


def test_9_status_check_fails_for_a_failed_scheduled_job(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    (plant.root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nschedule: '*/5 * * * *'\n"
    )
    assert etl("-p", str(plant.root), "run", "bookings")[0] == 0
    assert etl("-p", str(plant.root), "status", "--check")[0] == 0
    plant.sql("DROP TABLE BUCHUNGEN")
    assert etl("-p", str(plant.root), "run", "bookings")[0] == 4
    code, out, err = etl("-p", str(plant.root), "status", "--check")
    assert code == 9
    assert "bookings: last run failed at" in err and "FAILED" in out
    assert etl("-p", str(plant.root), "status", "orders", "--check")[0] == 0  # not scheduled
