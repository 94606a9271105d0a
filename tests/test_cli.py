"""The ``etl`` command as a user runs it: output, exit codes, help, secrets."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli import main
from tests.support.plant import Plant

README = Path(__file__).resolve().parents[1] / "README.md"


def etl(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_every_command_has_help_and_is_in_the_readme_table() -> None:
    table = README.read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    for name, command in main.commands.items():
        assert command.help, f"etl {name} has no help text"
        code, out, _ = etl(name, "--help")
        assert code == 0 and "Usage:" in out
        assert re.search(rf"^\| `etl {name}\b", table, re.M), (
            f"etl {name} is not in README.md's command table"
        )


def test_top_level_help_lists_exit_codes() -> None:
    code, out, _ = etl("--help")
    assert code == 0
    for number in ("0", "2", "3", "4", "5", "6"):
        assert re.search(rf"^\s+{number}\s+\w", out, re.M), (
            f"exit code {number} missing from --help"
        )


def test_init_scaffolds_a_project_and_keeps_existing_files(tmp_path: Path) -> None:
    target = tmp_path / "plant"
    code, out, _ = etl("init", str(target))
    assert code == 0
    assert (target / "etl.yaml").is_file()
    for folder in ("connectors", "mappings", "jobs"):
        assert list((target / folder).glob("*.yaml")), f"{folder}/ is empty"
    (target / "etl.yaml").write_text("# mine\n")
    code, out, _ = etl("init", str(target))
    assert code == 0 and "exists" in out
    assert (target / "etl.yaml").read_text() == "# mine\n"


def test_the_console_script_delivers_all_output_and_its_exit_code(tmp_path: Path) -> None:
    # `etl` leaves with os._exit after flushing (no interpreter teardown): nothing may be lost
    plant = Plant(tmp_path / "p")
    for hour in range(40, 0, -1):  # enough runs that the JSON and the log lines are not tiny
        plant.book(f"M{hour % 4}", f"A{hour}", 10, plant.ago(hours=hour))
    cli = [sys.executable, "-m", "etl.cli", "-p", str(plant.root)]
    done = subprocess.run([*cli, "-v", "run", "bookings", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["job"] == "bookings" and result["rows_read"] > 0
    assert "etl.runs" in done.stderr or "bookings: window" in done.stderr  # the log line
    status = subprocess.run([*cli, "status", "bookings", "--json"], capture_output=True, text=True)
    assert status.returncode == 0
    assert json.loads(status.stdout)[0]["runs"] == result["runs_in_window"] == 40
    failed = subprocess.run([*cli, "run", "bookngs"], capture_output=True, text=True)
    assert failed.returncode == 2
    assert "job 'bookngs' does not exist" in failed.stderr
    # a reader that stops early (etl ... | head -1) gets no traceback
    head = subprocess.run(
        f"{sys.executable} -m etl.cli --help | head -1", shell=True, capture_output=True, text=True
    )
    assert head.stdout.startswith("Usage:") and "Traceback" not in head.stderr


def test_a_reader_that_closed_stdout_stops_the_command_quietly(tmp_path: Path) -> None:
    # `etl status | head -1`: the pipe's read end is closed before etl writes a byte
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A1", 10, plant.ago(hours=2))
    plant.run()
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "etl.cli", "-p", str(plant.root), "status"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("command", "names"),
    [("preview", "jobs in"), ("report", "jobs in"), ("check", "connectors in")],
)
def test_a_missing_job_or_connector_argument_names_the_choices(
    tmp_path: Path, command: str, names: str
) -> None:
    plant = Plant(tmp_path / "p")
    code, _, err = etl("-p", str(plant.root), command)
    assert code == 2
    listed = "bookings, orders" if names == "jobs in" else "plant"
    assert f"{names} {plant.root}: {listed}" in err


def test_outside_a_project_says_so(tmp_path: Path) -> None:
    code, _, err = etl("--project", str(tmp_path), "validate")
    assert code == 2
    assert "not a booking-etl project" in err and "etl init" in err


def test_run_names_unknown_jobs_and_needs_a_job(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    code, _, err = etl("-p", str(plant.root), "run", "bookngs")
    assert code == 2
    assert "job 'bookngs' does not exist" in err and "did you mean 'bookings'" in err
    code, _, err = etl("-p", str(plant.root), "run")
    assert code == 2 and "--all" in err


def test_run_and_status_report_what_happened(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=5))
    plant.book("M1", "A", 30, plant.ago(hours=4))
    plant.book("M1", "B", 77, plant.ago(hours=3))
    code, out, _ = etl("-p", str(plant.root), "run", "--all")
    assert code == 0
    assert re.search(
        r"^bookings: .* 3 rows read, 1 runs in window \(\+1 new.*unknown_event 1", out, re.M
    )
    assert re.search(r"^orders: .* 0 rows read", out, re.M)

    code, out, _ = etl("-p", str(plant.root), "status", "--json")
    assert code == 0
    entries = {e["job"]: e for e in json.loads(out)}
    assert entries["bookings"]["runs"] == 1
    assert entries["bookings"]["anomalies"] == {"unknown_event": 1}
    assert entries["bookings"]["last_run"]["status"] == "ok"

    code, out, _ = etl("-p", str(plant.root), "status", "bookings")
    assert code == 0 and "last run ok" in out and "1 runs stored (0 open)" in out


def test_run_json_lines(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=5))
    code, out, _ = etl("-p", str(plant.root), "run", "bookings", "--json")
    assert code == 0
    record = json.loads(out)
    assert record["job"] == "bookings" and record["runs_inserted"] == 1 and record["runs_open"] == 1


def test_secrets_never_appear_in_output_logs_or_store(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    (plant.root / "connectors" / "remote.yaml").write_text(
        "dialect: postgresql\nhost: 127.0.0.1\nport: 9\ndatabase: mes\nuser: etl\n"
        "password: ${PLANT_DB_PASSWORD}\nconnect_timeout: 2s\n"
    )
    (plant.root / "jobs" / "remote.yaml").write_text("connector: remote\nmapping: bookings\n")
    secret = "Tr0ub4dor-and-3"
    code, out, err = etl(
        "-vv", "-p", str(plant.root), "run", "remote", env={"PLANT_DB_PASSWORD": secret}
    )
    assert code == 3, err
    assert "cannot connect" in err and "connectors/remote.yaml" in err
    assert secret not in out + err
    store_bytes = (plant.root / "store.sqlite").read_bytes()
    wal = plant.root / "store.sqlite-wal"
    store_bytes += wal.read_bytes() if wal.exists() else b""
    assert secret.encode() not in store_bytes
    with sqlite3.connect(plant.root / "store.sqlite") as conn:
        error = conn.execute("SELECT error FROM sync_runs WHERE job = 'remote'").fetchone()[0]
    assert "cannot connect" in error


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_formats(tmp_path: Path, fmt: str) -> None:
    plant = Plant(tmp_path / "p")
    code, _, err = etl("-v", "--log-format", fmt, "-p", str(plant.root), "run", "bookings")
    assert code == 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines
    if fmt == "json":
        records = [json.loads(line) for line in lines]
        assert any(
            r["logger"] == "etl.runs" and "bookings: window" in r["message"] for r in records
        )
    else:
        assert any("INFO etl.runs: bookings: window" in line for line in lines)
