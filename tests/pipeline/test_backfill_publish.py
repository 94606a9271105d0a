"""A backfill whose Parquet publication fails shows where operators look, as a sync run's does:
the audit row says ``publish_failed`` with the months still pending, ``etl status`` and
``status --check`` flag the job, the metrics count the months, and the next run publishes them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.support.plant import Plant
from tests.test_failures import audit_rows, etl, parquet_rows, read_only_mount  # noqa: F401


def test_a_failed_backfill_publication_shows_in_audit_status_and_metrics(
    tmp_path: Path,
    read_only_mount: Path,  # noqa: F811
) -> None:
    plant = Plant(tmp_path / "p")
    plant.write_project(reread="2d", parquet=str(read_only_mount / "parquet"))
    with (plant.root / "etl.yaml").open("a") as out:
        out.write("metrics: {textfile: metrics/etl.prom}\n")
    (plant.root / "jobs" / "bookings.yaml").write_text(  # status --check looks at scheduled jobs
        "connector: plant\nmapping: bookings\nschedule: '*/5 * * * *'\n"
    )
    plant.book("M1", "A", 10, plant.ago(days=3))
    plant.book("M1", "A", 30, plant.ago(days=2, hours=20))
    plant.book("M2", "B", 10, plant.ago(hours=3))
    project = ["--project", str(plant.root)]

    code, _out, err = etl(*project, "backfill", "bookings", "--since", "10d", "--chunk", "2d")
    assert code == 6, err
    assert "parquet" in err.lower()
    rows = audit_rows(plant)
    assert rows and rows[-1][0] == "publish_failed"
    error = rows[-1][1] or ""
    assert "publishing failed" in error and "months still pending: " in error
    assert len(plant.store_runs()) == 2  # the store holds the backfill's result

    code, out, _ = etl(*project, "status", "bookings")
    assert "last run publish_failed" in out
    assert "Parquet NOT published" in out
    code, _out, err = etl(*project, "status", "--check")
    assert code == 9
    assert "Parquet not published" in err
    code, out, _ = etl(*project, "status", "--json")
    entry = next(e for e in json.loads(out) if e["job"] == "bookings")
    assert entry["publish_pending"] and entry["healthy"] is False
    metrics = (plant.root / "metrics" / "etl.prom").read_text()
    assert 'booking_etl_last_run_success{etl_job="bookings"} 0' in metrics
    pending = len(entry["publish_pending"])
    assert f'booking_etl_publish_pending_months{{etl_job="bookings"}} {pending}' in metrics

    # a second backfill fails on the months left over, before it reads: a row of its own
    code, _out, err = etl(*project, "backfill", "bookings", "--since", "10d", "--chunk", "2d")
    assert code == 6, err
    again = audit_rows(plant)
    assert len(again) == len(rows) + 1 and again[-1][0] == "publish_failed"
    assert "months still pending: " in (again[-1][1] or "")

    subprocess.run(["mount", "-o", "remount,rw", str(read_only_mount)], check=True)
    code, _out, err = etl(*project, "run", "bookings")
    assert code == 0, err
    assert parquet_rows(read_only_mount / "parquet") == len(plant.store_runs()) == 2
    code, _out, err = etl(*project, "status", "--check")
    assert code == 0, err
