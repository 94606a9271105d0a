"""``etl schedule`` and ``etl cron``: cron triggers, job health, crontab lines, and the real daemon
under SIGHUP and SIGTERM, alone and as two processes sharing one PostgreSQL store."""

from __future__ import annotations

import itertools
import signal
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from etl.cli import main
from etl.config.loader import load_project
from etl.errors import ConfigError
from etl.ops.health import job_health, job_trigger, recent_fires
from tests.support.daemon import ETL, Daemon, wait_for
from tests.support.plant import Plant, local_text

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(autouse=True)
def _seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-second schedules (6 fields) here too, as in the daemons these tests start."""
    monkeypatch.setenv("ETL_CRON_SECONDS", "1")


def scheduled_plant(
    root: Path,
    *,
    bookings: str | None = "* * * * * *",
    orders: str | None = None,
    store: str | None = None,
    etl_yaml: str = "",
    job_extra: str = "",
) -> Plant:
    """A plant whose jobs carry schedules (6 fields: seconds first, with ETL_CRON_SECONDS=1)."""
    plant = Plant(root)
    text = (root / "etl.yaml").read_text()
    if store is not None:
        text = text.replace("store: sqlite:///store.sqlite", f"store: {store}")
    (root / "etl.yaml").write_text(text + etl_yaml)
    for job, expr in (("bookings", bookings), ("orders", orders)):
        line = f"schedule: '{expr}'\n" if expr else ""
        (root / "jobs" / f"{job}.yaml").write_text(
            f"connector: plant\nmapping: {job}\n{line}{job_extra}"
        )
    return plant


def book_many(plant: Plant, count: int, machines: int = 8) -> None:
    """``count`` START/END pairs spread over the last days, in one transaction."""
    rows = []
    for i in range(count):
        start = plant.ago(hours=200) + timedelta(minutes=7 * i)
        for code, at in ((10, start), (30, start + timedelta(minutes=5))):
            day, clock = local_text(at).split(" ")
            rows.append(("1000", f"M{i % machines:02d}", f"A{i:06d}", "P1", code, day, clock))
    with sqlite3.connect(plant.db) as conn:
        conn.executemany(
            "INSERT INTO BUCHUNGEN (WERK, MASCHNR, AUNR, ARTNR, SATZART, BUCHDAT, BUCHZEIT)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def audit_rows(url: str, job: str | None = None) -> list[Any]:
    """The store's sync_runs rows, oldest first."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = "SELECT job, status, started_at, finished_at, error FROM sync_runs"
            if job:
                query += f" WHERE job = '{job}'"
            return list(conn.execute(sa.text(query + " ORDER BY id")))
    finally:
        engine.dispose()


def sqlite_store(plant: Plant) -> str:
    return f"sqlite:///{plant.root / 'store.sqlite'}"


def as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---------------------------------------------------------------------------- cron expressions


def test_six_field_schedules_need_the_seconds_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ETL_CRON_SECONDS", raising=False)
    scheduled_plant(tmp_path / "p", bookings="*/2 * * * * *")
    with pytest.raises(ConfigError, match="5-field cron"):
        load_project(tmp_path / "p")
    monkeypatch.setenv("ETL_CRON_SECONDS", "1")
    project = load_project(tmp_path / "p")
    trigger = job_trigger(project.jobs["bookings"])
    assert trigger is not None
    now = datetime(2026, 11, 18, 12, 0, 1, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, now) == datetime(2026, 11, 18, 12, 0, 2, tzinfo=UTC)


def test_schedules_fire_in_the_jobs_zone_and_recent_fires_walk_back(tmp_path: Path) -> None:
    scheduled_plant(tmp_path / "p", bookings="0 6 * * mon-fri", orders="0 * * * *")
    project = load_project(tmp_path / "p")
    weekdays = job_trigger(project.jobs["bookings"])  # the connector's zone: Europe/Berlin
    assert weekdays is not None
    monday_early = datetime(2026, 11, 23, 5, 30, tzinfo=BERLIN)
    assert weekdays.get_next_fire_time(None, monday_early) == datetime(
        2026, 11, 23, 6, 0, tzinfo=BERLIN
    )
    fires = recent_fires(weekdays, monday_early, 3)
    assert [f.strftime("%a %H:%M") for f in fires] == ["Wed 06:00", "Thu 06:00", "Fri 06:00"]
    hourly = job_trigger(project.jobs["orders"])
    assert hourly is not None
    now = datetime(2026, 11, 18, 12, 30, tzinfo=UTC)
    assert [f.astimezone(UTC).hour for f in recent_fires(hourly, now, 3)] == [10, 11, 12]


def test_staleness_counts_missed_scheduled_runs_not_wall_clock(tmp_path: Path) -> None:
    scheduled_plant(tmp_path / "p", bookings="0 6 * * mon-fri", orders="0 * * * *")
    project = load_project(tmp_path / "p")
    bookings, orders = project.jobs["bookings"], project.jobs["orders"]

    def entry(success: datetime | None, status: str = "ok") -> dict[str, Any]:
        at = success or datetime(2026, 11, 1, tzinfo=UTC)
        last = {"status": status, "started_at": at, "finished_at": at, "error": "boom"}
        return {"job": "x", "last_run": last, "last_success": success}

    monday = datetime(2026, 11, 23, 5, 30, tzinfo=BERLIN)
    friday_run = datetime(2026, 11, 20, 6, 0, 40, tzinfo=BERLIN)
    assert job_health(bookings, entry(friday_run), monday).healthy  # the weekend is no gap
    tuesday_run = datetime(2026, 11, 17, 6, 0, 40, tzinfo=BERLIN)
    stale = job_health(bookings, entry(tuesday_run), monday)
    assert stale.stale and not stale.healthy
    assert stale.success_due_since == datetime(2026, 11, 18, 6, 0, tzinfo=BERLIN)

    now = datetime(2026, 11, 18, 12, 30, tzinfo=UTC)
    assert not job_health(orders, entry(datetime(2026, 11, 18, 10, 0, 5, tzinfo=UTC)), now).stale
    assert job_health(orders, entry(datetime(2026, 11, 18, 9, 59, tzinfo=UTC)), now).stale
    never = job_health(orders, {"job": "orders", "last_run": None, "last_success": None}, now)
    assert never.stale and never.problems == ["never succeeded"]
    failed = job_health(orders, entry(datetime(2026, 11, 18, 12, 0, 5, tzinfo=UTC), "x"), now)
    assert failed.failed and not failed.stale and not failed.healthy
    assert any("boom" in p for p in failed.problems)
    assert failed.next_run == datetime(2026, 11, 18, 13, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------- etl cron


def test_cron_prints_ready_crontab_lines(tmp_path: Path) -> None:
    plant = scheduled_plant(tmp_path / "my plant", bookings="*/15 6-22 * * mon-fri", orders=None)
    (plant.root / "jobs" / "orders.yaml").write_text(
        "connector: plant\nmapping: orders\nschedule: '5 2 * * *'\ntimezone: UTC\n"
    )
    (plant.root / "jobs" / "weekly.yaml").write_text(
        "connector: plant\nmapping: orders\nschedule: '0 3 * * sun'\nenabled: false\n"
    )
    (plant.root / "connectors" / "plant.yaml").write_text(
        f"dialect: sqlite\npath: {plant.db}\ntimezone: Europe/Berlin\n"
        "options: {timeout: '${PLANT_NOTE:-5}'}\n"
    )
    result = CliRunner().invoke(main, ["-p", str(plant.root), "cron", "--log-dir", "logs"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    root = str(plant.root)
    assert lines.index("CRON_TZ=Europe/Berlin") < lines.index(
        f"*/15 6-22 * * mon-fri cd '{root}' && {ETL} run bookings >> '{root}/logs/bookings.log' 2>&1"
    )
    assert lines.index("CRON_TZ=UTC") < lines.index(
        f"5 2 * * * cd '{root}' && {ETL} run orders >> '{root}/logs/orders.log' 2>&1"
    )
    assert "# weekly: disabled" in lines
    assert any("PLANT_NOTE" in line and line.startswith("#") for line in lines)
    assert not any("flock" in line for line in lines)
    assert Path(ETL).is_absolute()
    # logs/ does not exist: cron could not open the log files and would start no job
    assert (
        f"# {root}/logs does not exist: create it first (mkdir -p '{root}/logs')" in result.stdout
    )
    (plant.root / "logs").mkdir()
    again = CliRunner().invoke(main, ["-p", str(plant.root), "cron", "--log-dir", "logs"])
    assert again.exit_code == 0 and "does not exist" not in again.stdout


def test_cron_escapes_percent_signs_and_skips_seconds_schedules(tmp_path: Path) -> None:
    plant = scheduled_plant(tmp_path / "100%", bookings="*/5 * * * * *", orders="0 * * * *")
    result = CliRunner().invoke(main, ["-p", str(plant.root), "cron"])
    assert result.exit_code == 0
    assert "# bookings: '*/5 * * * * *' has a seconds field" in result.stdout
    assert f"cd {tmp_path}/100\\% && {ETL} run orders" in result.stdout


# ---------------------------------------------------------------------------- the daemon


def test_sigterm_mid_run_lets_the_run_finish_within_the_grace_period(tmp_path: Path) -> None:
    plant = scheduled_plant(tmp_path / "p", orders="* * * * * *")  # no orders: never frozen
    book_many(plant, 50)
    marker = tmp_path / "in-extract"
    env = {
        "ETL_FAILPOINT": "extract",
        "ETL_FAILPOINT_FILE": str(marker),
        "ETL_FAILPOINT_SLEEP": "2",
    }
    with Daemon(plant.root, "--grace", "30s", "--workers", "2", env=env) as daemon:
        wait_for(marker.exists, 10, "the first run to be inside its extraction")
        frozen_since = datetime.now(UTC)
        wait_for(
            lambda: any(
                r.job == "orders" and as_utc(r.started_at) > frozen_since
                for r in audit_rows(sqlite_store(plant))
            ),
            10,
            "orders to run beside it on the second worker",
        )
        sent = datetime.now(UTC)
        assert daemon.stop() == 0
        log = daemon.log()
    rows = audit_rows(sqlite_store(plant))
    assert all(r.status == "ok" for r in rows)
    (frozen,) = [r for r in rows if r.job == "bookings"]  # no run after SIGTERM
    assert as_utc(frozen.started_at) < sent < as_utc(frozen.finished_at)
    beside = [
        r
        for r in rows
        if r.job == "orders"
        and as_utc(frozen.started_at) < as_utc(r.started_at) < as_utc(frozen.finished_at)
    ]
    assert beside, "with two workers, orders should have run while bookings was running"
    assert len(plant.store_runs()) == 50
    assert "SIGTERM: stopping: no new runs" in log
    assert "waiting up to 30s for bookings to finish" in log
    assert (
        log.index("waiting up to") < log.index("etl.runs: bookings: window") < log.index("stopped")
    )
    assert "Traceback" not in log


def test_sigterm_abandons_a_run_cleanly_when_the_grace_period_runs_out(tmp_path: Path) -> None:
    plant = scheduled_plant(tmp_path / "p", orders="* * * * * *")
    book_many(plant, 50)
    marker = tmp_path / "in-extract"
    env = {
        "ETL_FAILPOINT": "extract",
        "ETL_FAILPOINT_FILE": str(marker),
        "ETL_FAILPOINT_SLEEP": "3",
    }
    with Daemon(plant.root, "--grace", "1s", "--workers", "1", env=env) as daemon:
        wait_for(marker.exists, 10, "the first run to be inside its extraction")
        assert daemon.stop() == 0
        log = daemon.log()
    rows = audit_rows(sqlite_store(plant))
    (frozen,) = [r for r in rows if r.job == "bookings"]
    assert frozen.status == "failed"
    assert "abandoned" in frozen.error and "grace period ran out" in frozen.error
    for other in rows:  # one worker: orders ran only before bookings (or not at all)
        assert other is frozen or as_utc(other.finished_at) <= as_utc(frozen.started_at)
    assert plant.store_runs().empty  # nothing of the abandoned run was committed
    with sqlite3.connect(plant.root / "store.sqlite") as conn:
        state = conn.execute("SELECT job, watermark, lock_owner FROM job_state").fetchall()
    assert ("bookings", None, None) in state and all(owner is None for _, _, owner in state)
    assert "abandoning bookings at the next batch" in log
    assert "ERROR etl.runs: bookings: stopped after" in log and "abandoned after" in log
    assert "stopped" in log


def test_sighup_reloads_the_project_and_keeps_the_old_one_when_it_is_broken(
    tmp_path: Path,
) -> None:
    plant = scheduled_plant(
        tmp_path / "p", bookings="* * * * * *", etl_yaml="metrics: {textfile: etl.prom}\n"
    )
    plant.book("M1", "A", 10, plant.ago(hours=3))
    with Daemon(plant.root, "--workers", "2") as daemon:
        daemon.wait_log("etl.runs: bookings: window")
        assert "orders" not in daemon.log()
        (plant.root / "jobs" / "orders.yaml").write_text(
            "connector: plant\nmapping: orders\nschedule: '* * * * * *'\n"
        )
        daemon.send(signal.SIGHUP)
        daemon.wait_log("orders: scheduled '* * * * * *' (Europe/Berlin)")
        daemon.wait_log("etl.runs: orders: window")
        (plant.root / "jobs" / "orders.yaml").write_text("connector: plant\nmapping: nope\n")
        daemon.send(signal.SIGHUP)
        daemon.wait_log("configuration not reloaded, the previous one stays in effect")
        runs = daemon.log().count("etl.runs: orders: window")
        daemon.wait_log("etl.runs: orders: window", count=runs + 1)  # still scheduled
        assert daemon.stop() == 0
        log = daemon.log()
    assert "mapping 'nope' does not exist" in log
    assert (
        'booking_etl_last_run_success{etl_job="orders"} 1' in (plant.root / "etl.prom").read_text()
    )


def test_two_daemons_on_one_postgres_store_never_run_a_job_twice_at_once(
    tmp_path: Path, postgres_database: str
) -> None:
    plant = scheduled_plant(
        tmp_path / "p",
        bookings="* * * * * *",
        orders="* * * * * *",
        store=postgres_database,
        etl_yaml="  batch_size: 200\n",
    )
    book_many(plant, 1500)
    for i in range(300):
        start = plant.ago(hours=150) + timedelta(minutes=20 * i)
        plant.order(f"M{i % 4}", f"F{i:05d}", start, start + timedelta(minutes=15))
    first = CliRunner().invoke(main, ["-p", str(plant.root), "run", "--all"])  # creates the schema
    assert first.exit_code == 0, first.output
    with (
        Daemon(plant.root, "--workers", "2", name="a") as a,
        Daemon(plant.root, "--workers", "2", name="b") as b,
    ):

        def enough() -> bool:
            rows = audit_rows(postgres_database)
            return all(sum(r.job == job for r in rows) >= 5 for job in ("bookings", "orders"))

        wait_for(enough, 60, "five runs of each job")
        codes = (a.stop(), b.stop())
        logs = a.log() + b.log()
    assert codes == (0, 0)
    rows = audit_rows(postgres_database)
    assert all(r.status == "ok" for r in rows), [r.error for r in rows if r.status != "ok"]
    for job in ("bookings", "orders"):
        spans = sorted((as_utc(r.started_at), as_utc(r.finished_at)) for r in rows if r.job == job)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, (
                f"two runs of {job} overlapped: one ended {end}, next began {start}"
            )
    assert "skipped: job 'bookings' is already running" in logs  # they did collide
    assert logs.count(": window ") == len(rows) - 2  # one summary line per run (2: etl run)
    assert logs.count("stopped") == 2 and "Traceback" not in logs
    assert len(plant.store_runs()) == 1500
