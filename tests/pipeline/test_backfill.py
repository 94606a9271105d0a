"""`etl backfill` and `etl state reset` on a real SQLite booking system."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import etl.outputs.parquet
from etl.cli import main
from etl.config.loader import load_project
from etl.errors import StoreError
from etl.pipeline.backfill import backfill, reset
from etl.pipeline.sync import open_store
from etl.store.db import Store
from tests.support.plant import Plant, local_text

ETL = [sys.executable, "-m", "etl.cli"]


def _busy_plant(root: Path) -> Plant:
    plant = Plant(root, reread="1h", days=20)
    for day in range(19, 0, -1):
        for machine in ("M1", "M2"):
            plant.book(machine, f"A{day}{machine}", 10, plant.ago(days=day, hours=3))
            plant.book(machine, f"A{day}{machine}", 20, plant.ago(days=day, hours=1))
            plant.book(machine, f"A{day}{machine}", 10, plant.ago(days=day, minutes=30))
    plant.book("M1", "OPEN", 10, plant.ago(hours=2))
    return plant


def test_backfill_rederives_the_range_and_leaves_the_same_runs(tmp_path: Path) -> None:
    plant = _busy_plant(tmp_path / "p")
    plant.run()
    before = plant.store_runs()
    state = open_store(load_project(plant.root)).state("bookings")
    assert state is not None and state.watermark is not None

    # a correction deep in the past, outside the 1 h re-read window: only a backfill sees it
    plant.sql("UPDATE BUCHUNGEN SET STORNO = 1 WHERE AUNR = 'A15M1' AND SATZART = 20")
    plant.run()
    assert plant.store_runs().equals(before)  # the nightly re-read did not reach it

    since = local_text(plant.ago(days=17))[:10]
    result = backfill(load_project(plant.root), "bookings", since, None, timedelta(days=3))
    assert len(result.chunks) >= 6
    after = plant.store_runs()
    # the net counts are those of the store before and after, whatever the chunks did between
    assert (result.inserted, result.updated, result.deleted) == _net(before, after)
    assert result.updated + result.deleted + result.inserted > 0
    pd.testing.assert_frame_equal(after, plant.from_scratch(), check_dtype=False)
    pd.testing.assert_frame_equal(after, plant.parquet_runs(), check_dtype=False)
    state_after = open_store(load_project(plant.root)).state("bookings")
    assert state_after is not None and state_after.watermark is not None
    assert state_after.watermark >= state.watermark  # never moved backwards
    assert state_after.backfill_next is None  # finished: nothing to resume


def _net(before: pd.DataFrame, after: pd.DataFrame) -> tuple[int, int, int]:
    """(inserted, updated, deleted) between two stored run frames, by key."""

    def by_key(frame: pd.DataFrame) -> dict[tuple[object, ...], tuple[object, ...]]:
        frame = frame.astype(object).where(frame.notna(), None)
        return {
            (r.machine_code, r.order_code, r.start): (r.product_code, r.end, r.flags)
            for r in frame.itertuples()
        }

    old, new = by_key(before), by_key(after)
    changed = sum(1 for k in old.keys() & new.keys() if old[k] != new[k])
    return len(new.keys() - old.keys()), changed, len(old.keys() - new.keys())


def test_a_first_backfill_in_many_chunks_counts_each_run_once(tmp_path: Path) -> None:
    # runs that cross a chunk boundary are stored open by one chunk and closed by the next:
    # the summary counts them as new, not as changed
    plant = _busy_plant(tmp_path / "p")
    since = local_text(plant.ago(days=20))[:10]  # the plant's first bookings are 19 days old
    result = backfill(load_project(plant.root), "bookings", since, None, timedelta(hours=7))
    after = plant.store_runs()
    assert len(result.chunks) > 50
    assert sum(c.updated for c in result.chunks) > 0  # boundaries were crossed
    assert (result.inserted, result.updated, result.deleted) == (len(after), 0, 0)
    pd.testing.assert_frame_equal(after, plant.from_scratch(), check_dtype=False)
    pd.testing.assert_frame_equal(after, plant.parquet_runs(), check_dtype=False)


def _partitions(plant: Plant) -> dict[str, pa.Table]:
    """Every Parquet partition file of the plant, as written (row order included)."""
    base = plant.root / "output" / "parquet"
    return {str(f.relative_to(base)): pq.read_table(f) for f in sorted(base.rglob("*.parquet"))}


def test_a_first_backfill_publishes_its_months_without_reading_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = _busy_plant(tmp_path / "p")
    since = local_text(plant.ago(days=20))[:10]
    read_back: list[str] = []
    real = Store.runs_in_month

    def runs_in_month(self: Store, job: str, month: str) -> pd.DataFrame:
        read_back.append(month)
        return real(self, job, month)

    carried: list[object] = []
    real_carried = Store.carried_runs

    def carried_runs(self: Store, *args: Any) -> pd.DataFrame:
        carried.append(args)
        return real_carried(self, *args)

    monkeypatch.setattr(Store, "runs_in_month", runs_in_month)
    monkeypatch.setattr(Store, "carried_runs", carried_runs)
    result = backfill(load_project(plant.root), "bookings", since, None, timedelta(hours=7))
    assert read_back == []  # every month was empty in the store: published from the chunks
    # only the first chunk reads its carried runs from the store; each later one was read while
    # the one before committed and carries that one's open runs
    assert len(carried) == 1 and len(result.chunks) > 50
    monkeypatch.undo()
    published = _partitions(plant)
    assert any(name.startswith("runs/") for name in published)
    pd.testing.assert_frame_equal(plant.store_runs(), plant.parquet_runs(), check_dtype=False)

    # the same months read back from the store are the same files, row for row
    project = load_project(plant.root)
    store = open_store(project)
    months = store.all_months("bookings")
    etl.outputs.parquet.publish(store, "bookings", months, plant.root / "output" / "parquet")
    store.close()
    again = _partitions(plant)
    assert again.keys() == published.keys()
    assert all(again[name].equals(published[name]) for name in published)


def test_a_run_open_across_a_month_end_holds_that_month_back_instead_of_reading_it_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a run starting before the month's end (UTC) and still open when a chunk ends in the next
    # month: the next chunk closes it, so its month is published after that chunk, from memory
    plant = Plant(tmp_path / "p", reread="1h", days=70)
    this_month = plant.now.replace(day=1, hour=0, minute=0, second=0)
    boundary = (this_month - timedelta(days=1)).replace(day=1)  # the previous month's first
    plant.book("M1", "BEFORE", 10, boundary - timedelta(days=3))
    plant.book("M1", "BEFORE", 20, boundary - timedelta(days=2))
    plant.book("M1", "CROSS", 10, boundary - timedelta(hours=2))
    plant.book("M1", "CROSS", 20, boundary + timedelta(hours=30))  # open at the chunk's end
    plant.book("M2", "AFTER", 10, boundary + timedelta(days=3))
    plant.book("M2", "AFTER", 20, boundary + timedelta(days=4))
    read_back: list[str] = []
    real = Store.runs_in_month

    def runs_in_month(self: Store, job: str, month: str) -> pd.DataFrame:
        read_back.append(month)
        return real(self, job, month)

    monkeypatch.setattr(Store, "runs_in_month", runs_in_month)
    since = local_text(boundary - timedelta(days=5))[:10]
    result = backfill(load_project(plant.root), "bookings", since, None, timedelta(days=1))
    monkeypatch.undo()
    assert read_back == []
    assert len(result.chunks) > 5
    stored = plant.store_runs()
    assert set(stored["order_code"]) == {"BEFORE", "CROSS", "AFTER"}
    pd.testing.assert_frame_equal(stored, plant.from_scratch(), check_dtype=False)
    pd.testing.assert_frame_equal(stored, plant.parquet_runs(), check_dtype=False)


def test_a_backfill_rerun_over_the_range_it_filled_changes_nothing(tmp_path: Path) -> None:
    # the first backfill loads an empty range, the rerun diffs against a full one: the same
    # store and the same Parquet files, none of them rewritten (a run crossing a chunk's end
    # is stored open by that chunk and closed again by the next, as in the first load)
    plant = _busy_plant(tmp_path / "p")
    since = local_text(plant.ago(days=20))[:10]
    project = load_project(plant.root)
    first = backfill(project, "bookings", since, None, timedelta(days=2))
    stored, published = plant.store_runs(), _partitions(plant)
    base = plant.root / "output" / "parquet"
    stamps = {f: f.stat().st_mtime_ns for f in base.rglob("*.parquet")}

    again = backfill(load_project(plant.root), "bookings", since, None, timedelta(days=2))
    assert first.inserted == len(stored) > 0
    assert (again.inserted, again.updated, again.deleted) == (0, 0, 0)
    pd.testing.assert_frame_equal(plant.store_runs(), stored)
    assert _partitions(plant).keys() == published.keys()
    assert all(_partitions(plant)[name].equals(published[name]) for name in published)
    assert {f: f.stat().st_mtime_ns for f in base.rglob("*.parquet")} == stamps


def test_a_first_backfill_killed_and_rerun_writes_what_one_run_writes(tmp_path: Path) -> None:
    plant = _busy_plant(tmp_path / "p")
    since = local_text(plant.ago(days=20))[:10]
    args = ["-p", str(plant.root), "backfill", "bookings", "--since", since, "--chunk", "2d"]
    marker = tmp_path / "frozen"
    env = {**os.environ, "ETL_FAILPOINT": "backfill_chunk", "ETL_FAILPOINT_FILE": str(marker)}
    proc = subprocess.Popen([*ETL, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    proc.send_signal(signal.SIGKILL)  # kill -9 after the first chunk committed
    proc.communicate()
    resumed = CliRunner().invoke(main, args)
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at" in resumed.stdout
    stored, published = plant.store_runs(), _partitions(plant)

    assert reset(load_project(plant.root), "bookings") > 0
    whole = CliRunner().invoke(main, args)
    assert whole.exit_code == 0, whole.output
    pd.testing.assert_frame_equal(plant.store_runs(), stored)
    pd.testing.assert_frame_equal(stored, plant.from_scratch(), check_dtype=False)
    again = _partitions(plant)
    assert again.keys() == published.keys()
    assert all(again[name].equals(published[name]) for name in published)


def test_a_commit_that_fails_while_the_next_chunk_is_read_stops_the_backfill_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = _busy_plant(tmp_path / "p")
    since = local_text(plant.ago(days=20))[:10]
    real = Store.commit_sync
    calls: list[int] = []

    def commit_sync(self: Store, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:  # the third chunk is being read meanwhile
            raise StoreError("store: disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Store, "commit_sync", commit_sync)
    with pytest.raises(StoreError, match="disk full"):
        backfill(load_project(plant.root), "bookings", since, None, timedelta(days=2))
    assert len(calls) == 2
    monkeypatch.undo()
    state = open_store(load_project(plant.root)).state("bookings")
    assert state is not None and state.backfill_next is not None  # resumes after chunk 1
    result = CliRunner().invoke(
        main, ["-p", str(plant.root), "backfill", "bookings", "--since", since, "--chunk", "2d"]
    )
    assert result.exit_code == 0, result.output
    assert "resumed at" in result.stdout
    pd.testing.assert_frame_equal(plant.store_runs(), plant.from_scratch(), check_dtype=False)
    pd.testing.assert_frame_equal(plant.store_runs(), plant.parquet_runs(), check_dtype=False)


def test_backfill_of_an_older_range_does_not_move_the_watermark_back(tmp_path: Path) -> None:
    plant = _busy_plant(tmp_path / "p")
    plant.run()
    project = load_project(plant.root)
    watermark = open_store(project).state("bookings").watermark  # type: ignore[union-attr]
    result = backfill(
        project,
        "bookings",
        local_text(plant.ago(days=18))[:10],
        local_text(plant.ago(days=10))[:10],
        timedelta(days=2),
    )
    assert (result.inserted, result.updated, result.deleted) == (
        0,
        0,
        0,
    )  # nothing changed at the source
    assert open_store(project).state("bookings").watermark >= watermark  # type: ignore[union-attr]
    pd.testing.assert_frame_equal(plant.store_runs(), plant.from_scratch(), check_dtype=False)


def test_an_interrupted_backfill_resumes_where_it_stopped(tmp_path: Path) -> None:
    plant = _busy_plant(tmp_path / "p")
    plant.run()
    since = local_text(plant.ago(days=18))[:10]
    marker = tmp_path / "frozen"
    env = {**os.environ, "ETL_FAILPOINT": "backfill_chunk", "ETL_FAILPOINT_FILE": str(marker)}
    proc = subprocess.Popen(
        [*ETL, "-p", str(plant.root), "backfill", "bookings", "--since", since, "--chunk", "2d"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()
    proc.send_signal(signal.SIGKILL)  # kill -9 after the first chunk committed
    proc.communicate()

    state = open_store(load_project(plant.root)).state("bookings")
    assert state is not None and state.backfill_next is not None
    result = CliRunner().invoke(
        main, ["-p", str(plant.root), "backfill", "bookings", "--since", since, "--chunk", "2d"]
    )
    assert result.exit_code == 0, result.output
    assert "resumed at" in result.stdout
    pd.testing.assert_frame_equal(plant.store_runs(), plant.from_scratch(), check_dtype=False)


def test_state_reset_asks_then_forgets_the_job(tmp_path: Path) -> None:
    plant = _busy_plant(tmp_path / "p")
    plant.run()
    runner = CliRunner()
    refused = runner.invoke(
        main, ["-p", str(plant.root), "state", "reset", "bookings"], input="n\n"
    )
    assert refused.exit_code == 2 and "nothing changed" in refused.stderr
    assert not plant.store_runs().empty

    done = runner.invoke(main, ["-p", str(plant.root), "state", "reset", "bookings", "--yes"])
    assert done.exit_code == 0, done.output
    assert plant.store_runs().empty
    assert plant.parquet_runs().empty
    assert open_store(load_project(plant.root)).state("bookings") is None
    plant.run()  # starts over from start_from
    pd.testing.assert_frame_equal(plant.store_runs(), plant.from_scratch(), check_dtype=False)


def test_state_reset_removes_the_parquet_under_the_lock_and_before_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = _busy_plant(tmp_path / "p")
    plant.run()
    real = etl.outputs.parquet.remove_job
    seen: list[tuple[str | None, bool]] = []

    def remove_job(job: str, out: object) -> None:
        store = open_store(load_project(plant.root))
        try:
            state = store.state(job)
            seen.append((state.lock_owner if state else None, not plant.store_runs(job).empty))
        finally:
            store.close()
        real(job, out)  # type: ignore[arg-type]

    monkeypatch.setattr(etl.outputs.parquet, "remove_job", remove_job)
    assert reset(load_project(plant.root), "bookings") > 0
    [(owner, stored)] = seen
    assert owner is not None  # another run cannot publish in between
    assert stored  # the store is reset after the Parquet is gone
    assert plant.parquet_runs().empty and plant.store_runs().empty


def test_state_reset_that_cannot_remove_the_parquet_resets_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = _busy_plant(tmp_path / "p")
    plant.run()

    def refuse(job: str, _out: object) -> None:
        raise StoreError(f"parquet: cannot remove runs/job={job}: permission denied")

    monkeypatch.setattr(etl.outputs.parquet, "remove_job", refuse)
    result = CliRunner().invoke(
        main, ["-p", str(plant.root), "state", "reset", "bookings", "--yes"]
    )
    assert result.exit_code == 6, result.output
    assert "nothing was reset" in result.stderr and "permission denied" in result.stderr
    assert not plant.store_runs().empty
    store = open_store(load_project(plant.root))
    try:
        state = store.state("bookings")
        assert state is not None and state.watermark is not None and state.lock_owner is None
    finally:
        store.close()


@pytest.mark.parametrize(
    "args", [["--chunk", "0s"], ["--chunk", "soon"], ["--until", "yesterday-ish"]]
)
def test_backfill_rejects_bad_options(tmp_path: Path, args: list[str]) -> None:
    plant = Plant(tmp_path / "p")
    result = CliRunner().invoke(
        main, ["-p", str(plant.root), "backfill", "bookings", "--since", "7d", *args]
    )
    assert result.exit_code == 2, result.output
