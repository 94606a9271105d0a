"""Failures where operators look (issue 17): what status, the audit, the metrics and the logs say
when a run fails, and that one job's trouble does not stop the others."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli import main
from tests.support.plant import Plant


def etl(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def parquet_rows(base: Path, job: str = "bookings") -> int:
    """Runs of ``job`` in the Parquet dataset under ``base``."""
    import pyarrow.parquet as pq

    files = sorted((base / "runs" / f"job={job}").rglob("*.parquet"))
    return sum(pq.read_metadata(path).num_rows for path in files)


def audit_rows(plant: Plant, job: str = "bookings") -> list[tuple[str, str | None]]:
    import sqlite3

    with sqlite3.connect(plant.root / "store.sqlite") as conn:
        return list(
            conn.execute("SELECT status, error FROM sync_runs WHERE job = ? ORDER BY id", (job,))
        )


# ---------------------------------------------------------------------------- 1, 13: publishing


@contextmanager
def tmpfs(target: Path, options: str) -> Iterator[Path]:
    """A real 32 KB tmpfs mounted on ``target`` (skipped with the reason where mount is not
    allowed; under CI=true as root it must work); unmounted afterwards, lazily if still busy."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"{options},size=32k", "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(f"mount failed as root under CI: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=False)


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A real read-only filesystem (a tmpfs mounted ``ro``): root's writes fail there too."""
    with tmpfs(tmp_path / "ro", "ro") as target:
        yield target


def test_a_failed_publication_shows_in_every_audit_row_status_and_metrics(
    tmp_path: Path, read_only_mount: Path
) -> None:
    plant = Plant(tmp_path / "p")
    plant.write_project(reread="2d", parquet=str(read_only_mount / "parquet"))
    with (plant.root / "etl.yaml").open("a") as out:
        out.write("metrics: {textfile: metrics/etl.prom}\n")
    (plant.root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nschedule: '*/5 * * * *'\n"
    )
    plant.book("M1", "A", 10, plant.ago(hours=3))
    plant.book("M1", "A", 30, plant.ago(hours=2))
    project = ["--project", str(plant.root)]

    for attempt in range(3):
        code, _out, err = etl(*project, "run", "bookings")
        assert code == 6, err
        assert "parquet" in err
        plant.book("M2", f"B{attempt}", 10, plant.ago(hours=1))
    rows = audit_rows(plant)
    assert [status for status, _ in rows] == ["publish_failed"] * 3  # every run, not only the first
    assert all("publishing failed" in (error or "") for _, error in rows)
    assert all("months still pending: " in (error or "") for _, error in rows)

    code, out, _ = etl(*project, "status", "bookings")
    assert "last run publish_failed" in out
    assert "Parquet NOT published for 1 month(s)" in out
    code, out, err = etl(*project, "status", "--check")
    assert code == 9
    assert "Parquet not published" in err
    code, out, _ = etl(*project, "status", "--json")
    entry = next(e for e in json.loads(out) if e["job"] == "bookings")
    assert entry["publish_pending"] and entry["healthy"] is False
    metrics = (plant.root / "metrics" / "etl.prom").read_text()
    assert 'booking_etl_last_run_success{etl_job="bookings"} 0' in metrics
    assert 'booking_etl_publish_pending_months{etl_job="bookings"} 1' in metrics

    # the mount becomes writable again: the next run publishes what is pending
    subprocess.run(["mount", "-o", "remount,rw", str(read_only_mount)], check=True)
    code, _out, err = etl(*project, "run", "bookings")
    assert code == 0, err
    assert audit_rows(plant)[-1][0] == "ok"
    assert parquet_rows(read_only_mount / "parquet") == len(plant.store_runs()) == 2
    code, out, err = etl(*project, "status", "--check")
    assert code == 0, err
    assert "NOT published" not in out
    metrics = (plant.root / "metrics" / "etl.prom").read_text()
    assert 'booking_etl_publish_pending_months{etl_job="bookings"} 0' in metrics


def test_a_full_parquet_filesystem_is_a_failed_publication(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "full", "rw") as target:
        fd = os.open(target / "filler", os.O_WRONLY | os.O_CREAT)
        try:  # fill the filesystem up to the last byte
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        plant = Plant(tmp_path / "p")
        plant.write_project(reread="2d", parquet=str(target / "parquet"))
        plant.book("M1", "A", 10, plant.ago(hours=3))
        code, _out, err = etl("--project", str(plant.root), "run", "bookings")
        assert code == 6, err
        assert [status for status, _ in audit_rows(plant)] == ["publish_failed"]
        (target / "filler").unlink()
        shutil.rmtree(target / "parquet", ignore_errors=True)
        code, _out, err = etl("--project", str(plant.root), "run", "bookings")
        assert code == 0, err
        assert parquet_rows(target / "parquet") == len(plant.store_runs()) == 1


# ---------------------------------------------------------------------------- 2, 11: check, validate


@pytest.mark.parametrize("strict", [False, True])
def test_check_exits_4_when_a_mapped_column_cannot_be_read(tmp_path: Path, strict: bool) -> None:
    plant = Plant(tmp_path / "p")
    path = plant.root / "mappings" / "bookings.yaml"
    path.write_text(path.read_text().replace("product_code: ARTNR", "product_code: ARTIKELNR"))
    code, out, err = etl(
        "--project", str(plant.root), "check", "plant", *(["--strict"] if strict else [])
    )
    assert code == 4, out + err
    assert "FAIL" in out and "1 mapped table(s) NOT readable" in out
    assert "bookings (BUCHUNGEN)" in err and "ARTIKELNR" in err
    code, out, err = etl("--project", str(plant.root), "run", "bookings")
    assert code == 4  # the same exit code as the run that would fail


BAD_QUERY_MAPPING = """\
structure: bookings
source:
  query: |
    SELECT * FROM BUCHUNGEN WHERE WERK = '1000
columns:
  timestamp: {date: BUCHDAT, time: BUCHZEIT, date_format: '%Y-%m-%d'}
  order_code: AUNR
  machine_code: MASCHNR
  event: SATZART
events: {START: [10], END: [20, 30]}
"""


def test_a_custom_query_that_does_not_parse_is_a_config_error_with_file_and_line(
    tmp_path: Path,
) -> None:
    plant = Plant(tmp_path / "p")
    (plant.root / "mappings" / "broken.yaml").write_text(BAD_QUERY_MAPPING)
    (plant.root / "jobs" / "broken.yaml").write_text("connector: plant\nmapping: broken\n")
    project = ["--project", str(plant.root)]
    code, out, err = etl(*project, "validate")
    assert code == 2, out + err
    assert "mappings/broken.yaml:3: source.query does not parse as SQL" in err
    code, out, err = etl(*project, "run", "broken")
    assert code == 2, out + err
    assert "internal error" not in err
    assert "mappings/broken.yaml:3: source.query" in err
    # the other mappings on the connector are still checked (and readable); the broken job is
    # named, not checked
    code, out, err = etl(*project, "check", "plant")
    assert code == 0, out + err
    assert "internal error" not in err
    assert out.count("  ok   ") == 2 and "not loaded because their files have errors: broken" in err


def test_preview_from_year_one_is_no_overflow(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=3))
    code, out, err = etl(
        "--project", str(plant.root), "preview", "bookings", "--since", "0001-01-01"
    )
    assert code in (0, 2), out + err
    assert "internal error" not in err and "Overflow" not in err


# ---------------------------------------------------------------------------- 8: cron


def test_cron_lists_only_the_variables_the_enabled_jobs_use(tmp_path: Path) -> None:
    from etl.commands.init import copy_templates

    copy_templates(tmp_path / "init", False)  # the generated etl.yaml, comments and all
    plant = Plant(tmp_path / "p")
    comments = [
        line
        for line in (tmp_path / "init" / "etl.yaml").read_text().splitlines()
        if line.startswith("#")
    ]
    assert any("${ETL_STORE_PASSWORD}" in line for line in comments)
    etl_yaml = plant.root / "etl.yaml"
    etl_yaml.write_text("\n".join(comments) + "\n" + etl_yaml.read_text())
    (plant.root / "connectors" / "plant.yaml").write_text(
        f"dialect: sqlite\npath: {plant.db}\ntimezone: Europe/Berlin\n"
        "# password: ${NOT_THIS_ONE}\noptions: {timeout: '${BDE_PASSWORD:-x}'}\n"
    )
    (plant.root / "connectors" / "erp.yaml").write_text(
        f"dialect: sqlite\npath: {plant.db}\ntimezone: Europe/Berlin\n"
        "options: {timeout: '${ERP_PASSWORD:-x}'}\n"
    )
    (plant.root / "connectors" / "unused.yaml").write_text(
        f"dialect: sqlite\npath: {plant.db}\noptions: {{timeout: '${{UNUSED_PASSWORD:-x}}'}}\n"
    )
    (plant.root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nschedule: '*/5 * * * *'\n"
    )
    (plant.root / "jobs" / "orders.yaml").write_text(
        "connector: erp\nmapping: orders\nschedule: '0 * * * *'\n"
    )
    code, out, err = etl("--project", str(plant.root), "cron")
    assert code == 0, err
    line = next(line for line in out.splitlines() if "almost empty environment" in line)
    assert "set BDE_PASSWORD, ERP_PASSWORD above" in line


# ---------------------------------------------------------------------------- 3: one broken job


@pytest.mark.slow
def test_a_broken_job_file_stops_only_its_own_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.daemon import Daemon

    monkeypatch.setenv("ETL_CRON_SECONDS", "1")  # per-second schedules, as the daemon's

    plant = Plant(tmp_path / "p")
    with (plant.root / "etl.yaml").open("a") as out:
        out.write("metrics: {textfile: etl.prom}\n")
    (plant.root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nschedule: '* * * * * *'\n"
    )
    (plant.root / "jobs" / "orders.yaml").write_text(
        "connector: plant\nmapping: orders\nrereed: 2d\nschedule: '* * * * * *'\n"
    )
    plant.book("M1", "A", 10, plant.ago(hours=3))
    project = ["--project", str(plant.root)]

    code, out, err = etl(*project, "validate")
    assert code == 2 and "jobs/orders.yaml:3: rereed" in err, err
    code, out, err = etl(*project, "run", "bookings")
    assert code == 0, err
    assert "1 job(s) not loaded because their files have errors: orders" in err
    code, out, err = etl(*project, "run", "orders")
    assert code == 2 and "jobs/orders.yaml:3: rereed" in err, err
    code, out, err = etl(*project, "run", "--all")
    assert code == 2, err
    assert "bookings: " in out and "orders: FAILED" in err

    code, out, err = etl(*project, "status")
    assert "orders: never run" in out and "CONFIG ERROR, the job cannot run" in out
    code, out, err = etl(*project, "status", "--check")
    assert code == 9 and "orders: configuration error" in err, err
    code, out, err = etl(*project, "status", "--json")
    orders = next(e for e in json.loads(out) if e["job"] == "orders")
    assert orders["config_errors"] and orders["healthy"] is False
    metrics = (plant.root / "etl.prom").read_text()
    assert 'booking_etl_config_valid{etl_job="orders"} 0' in metrics
    assert 'booking_etl_config_valid{etl_job="bookings"} 1' in metrics

    with Daemon(plant.root, options=("--log-format", "json")) as daemon:
        daemon.wait_log('"status": "config_error"')
        daemon.wait_log("etl.runs", count=2)  # the valid job runs, again and again
        assert daemon.stop() == 0
        lines = daemon.log().splitlines()
    records = [json.loads(line) for line in lines]
    assert any(r.get("job") == "orders" and r.get("status") == "config_error" for r in records)
    assert any(r.get("job") == "bookings" and r.get("status") == "ok" for r in records)
    assert not any(r.get("job") == "orders" and r.get("status") == "ok" for r in records)

    # a broken etl.yaml still stops every job
    with (plant.root / "etl.yaml").open("a") as out:
        out.write("schedular: {workers: 2}\n")
    code, out, err = etl(*project, "run", "bookings")
    assert code == 2 and "etl.yaml" in err and "schedular" in err, err


# ---------------------------------------------------------------------------- 6: demo


@pytest.mark.slow
def test_the_demos_next_lines_work_as_printed_in_a_fresh_shell(tmp_path: Path) -> None:
    from tests.support.daemon import ETL

    done = subprocess.run(
        [ETL, "demo", "d"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("next:"))
    commands = [lines[start].removeprefix("next:").strip()]
    commands += [line.strip() for line in lines[start + 1 :] if line.startswith(" ")]
    assert len(commands) == 2
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fresh = {"PATH": "/usr/bin:/bin", "HOME": str(elsewhere)}  # no virtualenv activated
    for command in commands:
        ran = subprocess.run(
            ["bash", "-c", command], cwd=elsewhere, env=fresh, capture_output=True, text=True
        )
        assert ran.returncode == 0, f"{command}: {ran.stderr}"
        assert "demo_bookings" in ran.stdout or "rows x" in ran.stdout, ran.stdout


# ---------------------------------------------------------------------------- 5: JSON mode


SECRET = "Fa-S3cret-never-shown"


def console(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console script, as an operator runs it."""
    from tests.support.daemon import ETL

    return subprocess.run(
        [ETL, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def json_lines(text: str) -> list[dict[str, object]]:
    """Every non-empty line parsed as one JSON object (fails on any other line)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.mariadb
def test_in_json_mode_every_stderr_line_is_json_errors_included(tmp_path: Path) -> None:
    from tests.conftest import MARIADB_URL, server_or_skip
    from tests.support.accounts import write_project

    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=3))
    root = str(plant.root)
    path = plant.root / "mappings" / "bookings.yaml"
    good = path.read_text()
    path.write_text(good.replace("product_code: ARTNR", "product_code: ARTIKELNR"))
    failed = console("--log-format", "json", "-v", "-p", root, "run", "bookings")
    assert failed.returncode == 4
    records = json_lines(failed.stderr)
    error = records[-1]
    assert error["level"] == "error" and error["kind"] == "data error"
    assert error["exit_code"] == 4 and "ARTIKELNR" in str(error["message"]) and "hint" in error
    path.write_text(good)
    for args in (
        ("run", "nosuch"),  # a config error
        ("run", "--no-such-option"),  # a usage error click reports
        ("preview", "bookings", "--since", "0001-01-01"),
        ("run", "--all"),
        ("backfill", "bookings", "--since", "2d", "--chunk", "1d"),
    ):
        done = console("--log-format", "json", "-v", "-p", root, *args)
        assert json_lines(done.stderr), args  # every line JSON, and there is one
        if done.returncode:
            assert json_lines(done.stderr)[-1]["exit_code"] == done.returncode

    # --json output is JSON on every path: a failing login on 'etl check --json'
    url = server_or_skip(MARIADB_URL, "MariaDB")
    server = write_project(
        tmp_path / "m", "mariadb", url.set(username="root"), password_env="FA_PASSWORD"
    )
    done = console(
        "--log-format", "json", "-p", str(server), "check", "plant", "--json",
        env={"FA_PASSWORD": SECRET},
    )  # fmt: skip
    assert done.returncode == 3, done.stderr
    out = json.loads(done.stdout)
    assert out["error"]["exit_code"] == 3 and "login failed" in out["error"]["message"]
    assert json_lines(done.stderr)[-1]["kind"] == "source error"
    assert SECRET not in done.stdout + done.stderr
    done = console("-p", str(server), "run", "bookings", "--json", env={"FA_PASSWORD": SECRET})
    assert done.returncode == 3 and json.loads(done.stdout)["error"]["kind"] == "source error"


# ---------------------------------------------------------------------------- 14: one stuck job


@pytest.fixture
def one_connection_account(mariadb_database: str) -> Iterator[tuple[str, str, str]]:
    """A real MariaDB account limited to one connection (MAX_USER_CONNECTIONS 1) that may read a
    small ``bookings`` table; yields (url of its database, user, password); dropped after."""
    import uuid

    import sqlalchemy as sa

    from tests.support.accounts import drop_account

    url = sa.make_url(mariadb_database)
    user, password = f"etl_one_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE bookings (id int PRIMARY KEY, machine char(8), "
                "order_no varchar(20), kind varchar(3), ts datetime(6))"
            )
        )
        conn.execute(
            sa.text("INSERT INTO bookings VALUES (1, 'M1', '4711', 'A', '2026-10-20 06:00:00')")
        )
        for host in ("%", "localhost"):
            conn.execute(
                sa.text(
                    f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}' "
                    "WITH MAX_USER_CONNECTIONS 1"
                )
            )
            conn.execute(sa.text(f"GRANT SELECT ON `{url.database}`.* TO '{user}'@'{host}'"))
    try:
        yield mariadb_database, user, password
    finally:
        drop_account(admin, "mariadb", user)
        admin.dispose()


@pytest.mark.slow
@pytest.mark.mariadb
def test_a_job_whose_second_connection_is_refused_blocks_nothing(
    tmp_path: Path, one_connection_account: tuple[str, str, str]
) -> None:
    import sqlalchemy as sa

    from tests.support.accounts import BOOKINGS_MAPPING
    from tests.support.daemon import Daemon

    pytest.importorskip("connectorx", reason="the Arrow path of MariaDB is connectorx")
    database, user, password = one_connection_account
    url = sa.make_url(database)
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=3))
    (plant.root / "etl.yaml").write_text(
        (plant.root / "etl.yaml").read_text() + "scheduler: {grace: 5s}\n"
    )
    (plant.root / "connectors" / "limited.yaml").write_text(
        f"dialect: mariadb\nhost: {url.host}\nport: {url.port or 3306}\n"
        f"database: {url.database}\nuser: {user}\npassword: ${{FA_ONE_PASSWORD}}\n"
        "connect_timeout: 3s\nfetch: arrow\n"
    )
    (plant.root / "mappings" / "limited.yaml").write_text(BOOKINGS_MAPPING)
    (plant.root / "jobs" / "limited.yaml").write_text(
        "connector: limited\nmapping: limited\nstart_from: 2026-10-19\nschedule: '* * * * * *'\n"
    )
    (plant.root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nschedule: '* * * * * *'\n"
    )
    (plant.root / "jobs" / "orders.yaml").unlink()
    env = {"FA_ONE_PASSWORD": password, "ETL_CRON_SECONDS": "1"}
    with Daemon(plant.root, "--workers", "2", options=("--log-format", "json"), env=env) as daemon:
        daemon.wait_log("needs a second connection and the server refused it", count=3)
        daemon.wait_log('"status": "ok"', count=3)  # the other job kept running meanwhile
        assert daemon.stop(timeout=20) == 0  # SIGTERM within the grace, not after a pool retry
        text = daemon.log()
    records = json_lines(text)  # every line JSON: no r2d2 text lines
    failures = [r for r in records if r.get("job") == "limited" and r.get("status") == "failed"]
    assert failures and all(r["exit_code"] == 3 for r in failures)
    assert password not in text
    assert any(r.get("message") == "stopped" for r in records)

    # fetch: auto reads through SQLAlchemy instead, on the one connection the account has
    connector = plant.root / "connectors" / "limited.yaml"
    connector.write_text(connector.read_text().replace("fetch: arrow", "fetch: auto"))
    done = console("-p", str(plant.root), "run", "limited", env=env)
    assert done.returncode == 0, done.stderr
    assert "reading through SQLAlchemy instead" in done.stderr
    assert "1 rows read" in done.stdout
