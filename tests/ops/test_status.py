"""``etl status``: last run's age, next scheduled run, staleness, and ``--check`` for monitoring."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from etl.cli import main
from tests.support.plant import Plant


def etl(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def hourly_plant(root: Path, job_extra: str = "") -> Plant:
    plant = Plant(root)
    plant.book("M1", "A", 10, plant.ago(hours=5))
    (root / "jobs" / "bookings.yaml").write_text(
        f"connector: plant\nmapping: bookings\nschedule: '0 * * * *'\ntimezone: UTC\n{job_extra}"
    )
    return plant


def age_the_store(plant: Plant, by: timedelta) -> None:
    """Move every audit row back in time, as if the runs had happened ``by`` earlier."""
    with sqlite3.connect(plant.root / "store.sqlite") as conn:
        for row_id, started, finished in conn.execute(
            "SELECT id, started_at, finished_at FROM sync_runs"
        ).fetchall():
            conn.execute(
                "UPDATE sync_runs SET started_at = ?, finished_at = ? WHERE id = ?",
                (
                    str(datetime.fromisoformat(started) - by),
                    str(datetime.fromisoformat(finished) - by),
                    row_id,
                ),
            )


def test_status_shows_age_next_run_and_schedule(tmp_path: Path) -> None:
    plant = hourly_plant(tmp_path / "p")
    assert etl("-p", str(plant.root), "run", "--all")[0] == 0
    code, out, _ = etl("-p", str(plant.root), "status")
    assert code == 0
    assert re.search(r"^bookings: last run ok at \S+ \S+Z \(\d+s ago\)$", out, re.M)
    next_hour = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:00:00Z")
    this_hour = datetime.now(UTC).strftime("%Y-%m-%d %H:00:00Z")
    assert re.search(
        rf"^  schedule '0 \* \* \* \*' \(UTC\): next run ({next_hour}|{this_hour})$", out, re.M
    )
    assert "STALE" not in out and "FAILED" not in out

    code, out, _ = etl("-p", str(plant.root), "status", "--json")
    entries = {e["job"]: e for e in json.loads(out)}
    bookings, orders = entries["bookings"], entries["orders"]
    assert bookings["schedule"] == "0 * * * *" and bookings["schedule_timezone"] == "UTC"
    assert bookings["next_run"].endswith(":00:00+00:00")
    assert 0 <= bookings["last_run_age_s"] < 60
    assert bookings["last_success"] == bookings["last_run"]["finished_at"]
    assert (bookings["stale"], bookings["checked"], bookings["healthy"]) == (False, True, True)
    assert (orders["schedule"], orders["next_run"], orders["checked"]) == (None, None, False)


def test_status_json_gives_the_next_run_in_utc_whatever_the_schedules_zone(
    tmp_path: Path,
) -> None:
    plant = Plant(tmp_path / "p")
    (plant.root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nschedule: '5 * * * *'\ntimezone: Asia/Kolkata\n"
    )
    code, out, _ = etl("-p", str(plant.root), "status", "--json")
    assert code == 0
    (bookings,) = [e for e in json.loads(out) if e["job"] == "bookings"]
    at = datetime.fromisoformat(bookings["next_run"])
    assert at.utcoffset() == timedelta(0)
    assert at.minute == 35  # :05 in Kolkata (+05:30) is :35 in UTC


def test_check_flags_a_job_whose_last_success_is_older_than_stale_after_periods(
    tmp_path: Path,
) -> None:
    plant = hourly_plant(tmp_path / "p")
    assert etl("-p", str(plant.root), "run", "bookings")[0] == 0
    age_the_store(plant, timedelta(hours=2))  # missed at most 2 hourly runs: fine
    assert etl("-p", str(plant.root), "status", "--check")[0] == 0
    age_the_store(plant, timedelta(hours=1, minutes=1))  # now 3h01m: 3 runs missed
    code, out, err = etl("-p", str(plant.root), "status", "--check")
    assert code == 9
    assert "  schedule '0 * * * *' (UTC): next run" in out and "; STALE" in out
    assert re.search(r"stale: last success .* \(3h01m ago\) is older than the 3 most recent", out)
    assert err.startswith("error: 1 scheduled job(s) need attention: bookings: stale")
    code, out, _ = etl("-p", str(plant.root), "status", "--json")
    assert code == 0  # without --check, status only reports
    assert {e["job"]: e["stale"] for e in json.loads(out) if e["checked"]} == {"bookings": True}

    (plant.root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nschedule: '0 * * * *'\ntimezone: UTC\n"
        "stale_after: 5\n"
    )
    assert etl("-p", str(plant.root), "status", "--check")[0] == 0


def test_check_flags_a_scheduled_job_that_never_succeeded_but_not_disabled_ones(
    tmp_path: Path,
) -> None:
    plant = hourly_plant(tmp_path / "p")
    code, out, err = etl("-p", str(plant.root), "status", "--check")
    assert code == 9 and "bookings: never succeeded" in err
    (plant.root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nschedule: '0 * * * *'\nenabled: false\n"
    )
    code, out, _ = etl("-p", str(plant.root), "status", "--check")
    assert code == 0 and "schedule '0 * * * *' (Europe/Berlin): disabled" in out
