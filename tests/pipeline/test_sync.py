"""Sync runs against a real SQLite booking system: windows, replace semantics, atomicity, lock."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from etl.config.loader import load_project
from etl.errors import DataError, LockHeldError, StoreError
from etl.pipeline.sync import open_store
from etl.shapes import ANOMALIES_SCHEMA, RUNS_SCHEMA
from tests.support.plant import Plant, local_text


def assert_consistent(plant: Plant, job: str = "bookings") -> pd.DataFrame:
    """Store == Parquet == a from-scratch derivation of the same source."""
    stored = plant.store_runs(job)
    pd.testing.assert_frame_equal(stored, plant.parquet_runs(job), check_dtype=False)
    pd.testing.assert_frame_equal(stored, plant.from_scratch(job), check_dtype=False)
    return stored


def test_first_run_derives_runs_and_a_rerun_changes_nothing(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M-01    ", "4711", 10, plant.ago(hours=50), product="P-A")
    plant.book("M-01    ", "4711", 30, plant.ago(hours=40))
    plant.book("M-02", "4712", 10, plant.ago(hours=5), product="P-B")

    first = plant.run()
    assert (first.rows_read, first.runs_inserted, first.runs_open) == (3, 2, 1)
    stored = assert_consistent(plant)
    assert stored["machine_code"].tolist() == ["M-01", "M-02"]  # blank padding trimmed
    assert stored.loc[0, "end"] - stored.loc[0, "start"] == pd.Timedelta(hours=10)
    assert pd.isna(stored.loc[1, "end"])

    again = plant.run()
    assert (again.runs_inserted, again.runs_updated, again.runs_deleted) == (0, 0, 0)
    assert_consistent(plant)


def test_a_rerun_that_finds_nothing_new_rewrites_no_parquet_file(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=3))
    plant.book("M1", "A", 99, plant.ago(hours=2))  # unknown code -> an anomaly partition too
    plant.book("M2", "B", 10, plant.ago(hours=1))
    plant.run()
    base = plant.root / "output" / "parquet"

    def files() -> dict[str, tuple[int, int]]:
        return {
            p.relative_to(base).as_posix(): (p.stat().st_mtime_ns, p.stat().st_ino)
            for p in base.rglob("*.parquet")
        }

    before = files()
    assert len(before) >= 2
    again = plant.run()
    assert again.parquet_files == []
    assert files() == before
    assert_consistent(plant)

    # a partition that differs from the store (or is gone) is written again
    runs_file = next(base.glob("runs/job=bookings/month=*/part-0.parquet"))
    runs_file.unlink()
    plant.book("M2", "B", 30, plant.ago(minutes=30))
    third = plant.run()
    assert str(runs_file) in third.parquet_files
    assert_consistent(plant)


def test_late_booking_cancellation_and_delete_inside_the_reread_window(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="2d")
    plant.book("M1", "A", 10, plant.ago(hours=30))
    plant.run()

    end_id = plant.book("M1", "A", 30, plant.ago(hours=20))  # late END with an old timestamp
    result = plant.run()
    assert result.runs_updated == 1
    assert plant.store_runs()["end"].notna().all()
    assert_consistent(plant)

    plant.sql("UPDATE BUCHUNGEN SET STORNO = 1 WHERE ID = ?", end_id)  # storno: run open again
    result = plant.run()
    assert result.runs_updated == 1
    assert plant.store_runs()["end"].isna().all()
    assert_consistent(plant)

    plant.sql("DELETE FROM BUCHUNGEN")  # everything deleted at the source
    result = plant.run()
    assert result.runs_deleted == 1
    assert plant.store_runs().empty
    assert plant.parquet_runs().empty
    assert_consistent(plant)


def test_run_open_before_the_window_is_carried_and_closed(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    plant.book("M1", "A", 10, plant.ago(days=5))
    plant.run()
    assert plant.store_runs()["end"].isna().all()

    plant.book("M1", "A", 30, plant.ago(minutes=1))
    result = plant.run()
    assert result.runs_updated == 1 and result.runs_inserted == 0
    stored = plant.store_runs()
    assert len(stored) == 1
    assert stored.loc[0, "end"] - stored.loc[0, "start"] == pd.Timedelta(days=5) - pd.Timedelta(
        minutes=1
    )
    assert_consistent(plant)


def test_closed_runs_before_the_window_are_never_touched(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    start = plant.book("M1", "A", 10, plant.ago(days=3))
    plant.book("M1", "A", 30, plant.ago(days=2))
    plant.run()
    plant.sql("DELETE FROM BUCHUNGEN WHERE ID = ?", start)  # outside the re-read window
    plant.run()
    assert len(plant.store_runs()) == 1


def test_order_table_open_rows_are_reread_until_they_close(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    row = plant.order("M1", "FA1", plant.ago(days=4), None)
    plant.order("M2", "FA2", plant.ago(days=3), plant.ago(days=2))
    first = plant.run("orders")
    assert (first.runs_inserted, first.runs_open) == (2, 1)

    plant.sql(
        "UPDATE AUFTRAG SET ENDE_ZEIT = ? WHERE ID = ?", local_text(plant.ago(minutes=10)), row
    )
    second = plant.run("orders")
    assert second.runs_updated == 1
    assert plant.store_runs("orders")["end"].notna().all()
    assert_consistent(plant, "orders")


def test_missing_column_fails_cleanly_and_changes_nothing(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=3))
    plant.run()
    store = open_store(load_project(plant.root))
    before = store.state("bookings")

    mapping = plant.root / "mappings" / "bookings.yaml"
    mapping.write_text(mapping.read_text().replace("order_code: AUNR", "order_code: AUFTRAG_NR"))
    with pytest.raises(DataError) as info:
        plant.run()
    message = str(info.value)
    assert "mappings/bookings.yaml" in message
    assert "'AUFTRAG_NR' not found in BUCHUNGEN" in message
    assert "AUNR" in message  # the columns that do exist are listed
    assert info.value.exit_code == 4

    after = store.state("bookings")
    assert after is not None and before is not None
    assert after.watermark == before.watermark
    assert after.lock_owner is None  # the lock was released
    summary = {e["job"]: e for e in store.summary()}["bookings"]
    assert summary["last_run"]["status"] == "failed"
    assert "AUFTRAG_NR" in summary["last_run"]["error"]
    assert summary["runs"] == 1
    store.close()


def test_a_second_run_of_the_same_job_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    store = open_store(load_project(plant.root))
    owner = store.acquire_lock("bookings", timedelta(hours=2))
    with pytest.raises(LockHeldError) as info:
        plant.run()
    assert info.value.exit_code == 5
    assert "already running" in str(info.value)
    store.release_lock("bookings", owner)
    plant.run()  # free again
    store.close()


def test_publish_failure_after_commit_is_repaired_by_the_next_run(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=3))
    plant.book("M1", "A", 30, plant.ago(hours=2))
    blocker = plant.root / "blocked"
    blocker.write_text("a file where the Parquet directory should be")
    plant.write_project(reread="2d", parquet="blocked/parquet")
    with pytest.raises(StoreError) as info:
        plant.run()
    assert "parquet" in str(info.value) and info.value.exit_code == 6
    store = open_store(load_project(plant.root))
    state = store.state("bookings")
    assert state is not None and state.publish_pending  # committed, not yet published
    store.close()

    plant.write_project(reread="2d", parquet="output/parquet")
    plant.run()
    assert len(plant.parquet_runs()) == 1
    store = open_store(load_project(plant.root))
    state = store.state("bookings")
    assert state is not None and state.publish_pending == []
    store.close()


def test_parquet_has_the_documented_schema_and_hive_layout(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=3))
    plant.book("M1", "A", 99, plant.ago(hours=2))  # unknown code -> anomaly
    plant.run()
    base = plant.root / "output" / "parquet"
    files = sorted(p.relative_to(base).as_posix() for p in base.rglob("*.parquet"))
    assert files, "nothing published"
    assert all(
        f.startswith(("runs/job=bookings/month=", "anomalies/job=bookings/month=")) for f in files
    )
    runs_file = next(base.glob("runs/job=bookings/month=*/part-0.parquet"))
    assert pq.read_schema(runs_file).remove_metadata() == RUNS_SCHEMA.remove_metadata()
    anomaly_file = next(base.glob("anomalies/job=bookings/month=*/part-0.parquet"))
    assert pq.read_schema(anomaly_file).remove_metadata() == ANOMALIES_SCHEMA.remove_metadata()
    found = pd.read_parquet(anomaly_file)
    assert found["kind"].tolist() == ["unknown_event"]
    assert "'99'" in found["detail"][0]
    assert not list(base.rglob(".*.tmp"))  # no temporary files left behind


def test_audit_row_and_watermark_commit_together(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=3))
    result = plant.run()
    with sqlite3.connect(plant.root / "store.sqlite") as conn:
        audit = conn.execute(
            "SELECT status, rows_read, runs_inserted, anomalies_by_kind, window_hi FROM sync_runs"
        ).fetchall()
        watermark = conn.execute(
            "SELECT watermark FROM job_state WHERE job = 'bookings'"
        ).fetchone()[0]
    assert len(audit) == 1
    status, rows_read, inserted, kinds, window_hi = audit[0]
    assert (status, rows_read, inserted, json.loads(kinds)) == ("ok", 1, 1, {})
    assert window_hi == watermark
    assert result.window_hi.isoformat().startswith(watermark[:19].replace(" ", "T"))


def test_window_boundaries_are_half_open_with_ties_on_both_edges(tmp_path: Path) -> None:
    """A booking exactly at ``lo`` belongs to the window, one exactly at ``hi`` to the next."""
    from etl.pipeline.sync import derive
    from etl.sources.reader import Window

    plant = Plant(tmp_path / "p")
    lo, hi = plant.ago(hours=6), plant.ago(hours=2)
    plant.book("M1", "AT-LO", 10, lo)
    plant.book("M2", "AT-HI", 10, hi)
    plant.book("M3", "BEFORE", 10, lo - pd.Timedelta(seconds=1))
    project = load_project(plant.root)
    job = project.job("bookings")
    first = derive(project, job, lambda _now: Window(lo=lo, hi=hi), None)
    assert first.runs["order_code"].tolist() == ["AT-LO"]
    second = derive(project, job, lambda _now: Window(lo=hi, hi=plant.now), None)
    assert second.runs["order_code"].tolist() == ["AT-HI"]


def test_order_rows_corrected_long_ago_are_picked_up_by_updated_at(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    old = plant.order("M1", "FA1", plant.ago(days=5), plant.ago(days=4))
    plant.order("M2", "FA2", plant.ago(days=3), plant.ago(days=2))
    plant.run("orders")
    # days later the ERP corrects FA1's end (outside the 1 h re-read window) and stamps the row
    corrected_end = plant.ago(days=4, hours=-2)
    plant.sql(
        "UPDATE AUFTRAG SET ENDE_ZEIT = ?, GEAENDERT = ? WHERE ID = ?",
        local_text(corrected_end),
        local_text(plant.ago(minutes=1)),
        old,
    )
    result = plant.run("orders")
    assert (result.runs_inserted, result.runs_updated, result.runs_deleted) == (0, 1, 0)
    stored = assert_consistent(plant, "orders")
    assert stored.loc[stored["order_code"] == "FA1", "end"].iloc[0] == pd.Timestamp(corrected_end)
    again = plant.run("orders")  # nothing new: the same row is not counted twice
    assert (again.runs_inserted, again.runs_updated, again.runs_deleted) == (0, 0, 0)


def test_an_old_order_soft_deleted_since_lo_leaves_the_store_and_the_parquet(
    tmp_path: Path,
) -> None:
    plant = Plant(tmp_path / "p", reread="1h", days=60)
    plant.sql("ALTER TABLE AUFTRAG ADD COLUMN STATUS TEXT DEFAULT 'OK'")
    mapping = plant.root / "mappings" / "orders.yaml"
    mapping.write_text(mapping.read_text() + "  - {column: STATUS, ne: DELETED}\n")
    old = plant.order("M1", "FA1", plant.ago(days=42), plant.ago(days=41))
    moved = plant.order("M2", "FA2", plant.ago(days=40), plant.ago(days=39))
    plant.order("M3", "FA3", plant.ago(days=3), plant.ago(days=2))
    plant.run("orders")
    assert len(plant.parquet_runs("orders")) == 3
    # six weeks later the ERP deletes FA1 and moves FA2 to another plant, stamping both rows
    now = local_text(plant.ago(minutes=1))
    plant.sql("UPDATE AUFTRAG SET STATUS = 'DELETED', GEAENDERT = ? WHERE ID = ?", now, old)
    plant.sql("UPDATE AUFTRAG SET WERK = '2000', GEAENDERT = ? WHERE ID = ?", now, moved)
    result = plant.run("orders")
    assert (result.runs_inserted, result.runs_updated, result.runs_deleted) == (0, 0, 2)
    stored = assert_consistent(plant, "orders")
    assert list(stored["order_code"]) == ["FA3"]
    assert list(plant.parquet_runs("orders")["order_code"]) == ["FA3"]
    again = plant.run("orders")  # the withdrawn rows are still changed since lo: nothing to do
    assert (again.runs_inserted, again.runs_updated, again.runs_deleted) == (0, 0, 0)


def test_unparseable_text_times_are_reported_not_lost(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="1h", days=800)
    good = plant.order("M1", "FA1", plant.ago(hours=5), plant.ago(hours=4))
    impossible = f"{plant.now.year - 1}-02-30 10:00:00"  # the right shape, no such day
    bad = ["garbage", "", "   ", "25.11.2026 10:00:00", impossible, "2026-11-2510:00:00"]
    for i, text in enumerate(bad):
        row = plant.order(f"M{i + 2}", f"BAD{i}", plant.ago(hours=5), plant.ago(hours=4))
        plant.sql("UPDATE AUFTRAG SET START_ZEIT = ? WHERE ID = ?", text, row)
    other = plant.order("M9", "PLANT2", plant.ago(hours=5), None)  # another plant: not ours
    plant.sql("UPDATE AUFTRAG SET WERK = '2000', START_ZEIT = 'x' WHERE ID = ?", other)
    first = plant.run("orders")
    assert first.runs_inserted == 1 and good
    assert first.anomalies == {"bad_timestamp": len(bad)}
    store = open_store(load_project(plant.root))
    try:
        found = store.anomalies_between("orders")
    finally:
        store.close()
    assert sorted(found["order_code"]) == [f"BAD{i}" for i in range(len(bad))]
    assert "START_ZEIT='garbage'" in " ".join(found["detail"])
    again = plant.run("orders")  # reported again, once each, by every run
    assert again.anomalies == {"bad_timestamp": len(bad)}


def test_an_old_booking_cancelled_since_lo_is_folded_anew_with_a_change_timestamp(
    tmp_path: Path,
) -> None:
    plant = Plant(tmp_path / "p", reread="1h", days=60)
    plant.sql("ALTER TABLE BUCHUNGEN ADD COLUMN GEAENDERT TEXT")
    mapping = plant.root / "mappings" / "bookings.yaml"
    mapping.write_text(
        mapping.read_text().replace(
            "  event: SATZART\n",
            "  event: SATZART\n  updated_at: {column: GEAENDERT, format: '%Y-%m-%d %H:%M:%S'}\n",
        )
    )
    start = plant.book("M1", "A", 10, plant.ago(days=42))
    plant.book("M1", "A", 30, plant.ago(days=41))
    plant.book("M2", "B", 10, plant.ago(days=3))
    plant.book("M2", "B", 30, plant.ago(days=2))
    plant.run()
    assert sorted(plant.store_runs()["order_code"]) == ["A", "B"]
    # six weeks later the MES cancels A's START and stamps the row
    plant.sql(
        "UPDATE BUCHUNGEN SET STORNO = 1, GEAENDERT = ? WHERE ID = ?",
        local_text(plant.ago(minutes=1)),
        start,
    )
    result = plant.run()
    assert result.runs_deleted == 1
    assert result.window_lo <= plant.ago(days=42)
    stored = assert_consistent(plant)  # the same as a fresh derivation from the source
    assert list(stored["order_code"]) == ["B"]
    assert list(plant.parquet_runs()["order_code"]) == ["B"]
