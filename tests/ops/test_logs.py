"""Logs: one summary line per run without ``-v``, structured in JSON, and never a secret."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime
from pathlib import Path

import psycopg
import sqlalchemy as sa
from click.testing import CliRunner

from etl.cli import main
from tests.support.daemon import ETL, Daemon
from tests.support.plant import Plant, local_text


def etl(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_run_logs_one_summary_line_per_run_without_v(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=5))
    code, _, err = etl("-p", str(plant.root), "run", "--all")
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 2, err  # nothing else at the default level (no "created store schema")
    assert " INFO etl.runs: bookings: window " in lines[0]
    assert "1 rows read, runs +1 ~0 -0 (1 open), anomalies none" in lines[0]
    assert " INFO etl.runs: orders: window " in lines[1]


def test_json_summary_lines_carry_the_fields_as_fields(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=5))
    plant.book("M1", "A", 30, plant.ago(hours=4))
    plant.book("M1", "B", 99, plant.ago(hours=3))
    code, out, err = etl("--log-format", "json", "-p", str(plant.root), "run", "bookings")
    assert code == 0
    (record,) = [json.loads(line) for line in err.splitlines()]
    assert record["logger"] == "etl.runs" and record["level"] == "info"
    assert record["job"] == "bookings" and record["status"] == "ok"
    assert (record["rows_read"], record["runs_inserted"], record["runs_updated"]) == (3, 1, 0)
    assert (record["runs_deleted"], record["runs_open"]) == (0, 0)
    assert record["anomalies"] == {"unknown_event": 1}
    assert isinstance(record["duration_s"], float) and record["duration_s"] >= 0
    lo, hi = (
        datetime.fromisoformat(record["window_lo"]),
        datetime.fromisoformat(record["window_hi"]),
    )
    assert lo < hi and lo.utcoffset() is not None
    assert record["window_hi"][:19] in out.replace(" ", "T")  # the same run as the stdout line


SECRET = "Zebra-Stapler-93!x"


def postgres_plant(root: Path, database_url: str) -> Plant:
    """A plant whose bookings job reads a real PostgreSQL table through a password connector."""
    plant = Plant(root)
    url = sa.make_url(database_url)
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    ) as conn:
        conn.execute(
            'CREATE TABLE "BUCHUNGEN" ("ID" serial, "WERK" text, "MASCHNR" text, "AUNR" text,'
            ' "ARTNR" text, "SATZART" integer, "BUCHDAT" text, "BUCHZEIT" text,'
            ' "STORNO" integer DEFAULT 0)'
        )
        for machine, order, code, hours in (
            ("M1", "A", 10, 5),
            ("M1", "A", 30, 4),
            ("M2", "B", 10, 2),
        ):
            day, clock = local_text(plant.ago(hours=hours)).split(" ")
            conn.execute(
                'INSERT INTO "BUCHUNGEN" ("WERK", "MASCHNR", "AUNR", "ARTNR", "SATZART", "BUCHDAT",'
                ' "BUCHZEIT") VALUES (%s, %s, %s, %s, %s, %s, %s)',
                ("1000", machine, order, "P1", code, day, clock),
            )
    (root / "connectors" / "mes.yaml").write_text(
        f"dialect: postgresql\nhost: {url.host}\nport: {url.port or 5432}\n"
        f"database: {url.database}\nuser: {url.username}\npassword: ${{PLANT_PW}}\n"
        "timezone: Europe/Berlin\n"
    )
    (root / "jobs" / "bookings.yaml").write_text(
        "connector: mes\nmapping: bookings\nschedule: '* * * * * *'\n"
    )
    (root / "jobs" / "orders.yaml").unlink()
    (root / "etl.yaml").write_text(
        (root / "etl.yaml").read_text() + "metrics: {textfile: metrics/etl.prom}\n"
    )
    return plant


def test_a_password_never_reaches_output_logs_store_or_files(
    tmp_path: Path, postgres_database: str
) -> None:
    plant = postgres_plant(tmp_path / "p", postgres_database)
    env = {**os.environ, "PLANT_PW": SECRET, "ETL_CRON_SECONDS": "1"}
    log_file = tmp_path / "etl.log"
    outputs: list[str] = []

    def run(*args: str, expect: int = 0) -> None:
        with log_file.open("a") as err:
            done = subprocess.run(
                [ETL, "-p", str(plant.root), *args],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                text=True,
                timeout=60,
            )
        outputs.append(done.stdout)
        assert done.returncode == expect, (args, done.stdout, log_file.read_text())

    run("-vv", "--log-format", "json", "run", "bookings")
    for args in (
        ["run", "--all", "--json"],
        ["validate"],
        ["status"],
        ["cron"],
        ["preview", "bookings"],
    ):
        result = CliRunner().invoke(
            main,
            ["-vv", "-p", str(plant.root), *args],
            env={"PLANT_PW": SECRET, "ETL_CRON_SECONDS": "1"},
        )
        assert result.exit_code == 0, result.output
        outputs += [result.stdout, result.stderr]
    mapping = plant.root / "mappings" / "bookings.yaml"
    mapping.write_text(mapping.read_text().replace("table: BUCHUNGEN", "table: NOPE"))
    run("-vv", "run", "bookings", expect=4)  # a failure's message and audit row
    mapping.write_text(mapping.read_text().replace("table: NOPE", "table: BUCHUNGEN"))
    with Daemon(
        plant.root, options=("-vv", "--log-format", "json"), env={"PLANT_PW": SECRET}
    ) as daemon:
        daemon.wait_log('"logger": "etl.runs"', count=2)
        assert daemon.stop() == 0
        outputs += [daemon.log(), daemon.out_path.read_text()]

    logs = log_file.read_text()
    assert '"rows_read": 3' in logs and "mappings/bookings.yaml" in logs  # it did run and fail
    assert "SELECT" in logs  # -vv logged the SQL sent
    files = [
        *plant.root.rglob("store.sqlite*"),
        *plant.root.rglob("*.parquet"),
        *plant.root.rglob("*.prom"),
    ]
    assert any(f.suffix == ".parquet" for f in files) and any(f.suffix == ".prom" for f in files)
    for text in (*outputs, logs):
        assert SECRET not in text
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
