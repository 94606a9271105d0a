"""Failures where operators look (issue 17): what status, the audit, the metrics and the logs say
when a run fails, and that one job's trouble does not stop the others."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli import main

from .plant import Plant


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


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A real read-only filesystem (a 32 KB tmpfs mounted ``ro``): root's writes fail there too."""
    target = tmp_path / "ro"
    target.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=32k", "tmpfs", str(target)],
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
        subprocess.run(["umount", str(target)], check=False)


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
    target = tmp_path / "full"
    target.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(target)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if os.environ.get("CI") == "true" and os.geteuid() == 0:
            pytest.fail(f"mount failed as root under CI: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
    try:
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
    finally:
        subprocess.run(["umount", str(target)], check=False)
