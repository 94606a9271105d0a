"""Real processes interrupted at the worst moment (issue 17, items 12 and 15): a kill -9 while a
Parquet partition is being written, and several first runs racing to create a new store."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

from etl.store.schema import SCHEMA_VERSION
from tests.support.plant import ETL, Plant, frozen_at


def test_kill_9_while_writing_parquet_leaves_a_temporary_file_the_next_publish_removes(
    tmp_path: Path,
) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    plant.order("M1", "FA1", plant.ago(hours=5), plant.ago(hours=4))
    proc = frozen_at(plant, "write_parquet", tmp_path, "run", "orders")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    dataset = plant.root / "output" / "parquet"
    left = list(dataset.rglob(".part-0.parquet.*.tmp"))
    assert len(left) == 1  # the killed process's half-published partition file
    plant.run("orders")  # repairs the pending months, publishing the same partition
    assert list(dataset.rglob(".part-0.parquet.*.tmp")) == []
    assert len(plant.parquet_runs("orders")) == 1


def test_concurrent_first_runs_on_a_new_sqlite_store(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    plant.order("M1", "FA1", plant.ago(hours=5), plant.ago(hours=4))
    for attempt in range(5):
        store = plant.root / "store.sqlite"
        for stale in plant.root.glob("store.sqlite*"):
            stale.unlink()
        procs = [
            subprocess.Popen(
                [*ETL, "-p", str(plant.root), "run", "orders"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        outcomes = [(proc.wait(), proc.communicate()[1]) for proc in procs]
        codes = sorted(code for code, _ in outcomes)
        errors = "".join(err for _, err in outcomes)
        assert "schema version" not in errors, (attempt, errors)
        assert set(codes) <= {0, 5}, (attempt, outcomes)
        assert 0 in codes, (attempt, outcomes)
        refused = [err for code, err in outcomes if code == 5]
        assert all("already running" in err or "lock" in err for err in refused), refused
        with sqlite3.connect(store) as conn:
            (version,) = conn.execute("SELECT value FROM schema_info").fetchone()
            (count,) = conn.execute("SELECT count(*) FROM schema_info").fetchone()
        assert (version, count) == (str(SCHEMA_VERSION), 1)


def test_temporary_files_of_a_partition_are_swept_even_when_it_is_unchanged(
    tmp_path: Path,
) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    plant.order("M1", "FA1", plant.ago(hours=5), plant.ago(hours=4))
    plant.run("orders")
    (part,) = (plant.root / "output" / "parquet" / "runs").rglob("part-0.parquet")
    left = part.parent / ".part-0.parquet.0123456789abcdef0123456789abcdef.tmp"
    left.write_bytes(b"PAR1 half a file")  # what a kill -9 before the rename leaves
    other = part.parent / "notes.txt"  # not ours: left alone
    other.write_text("x")
    plant.order("M2", "FA2", plant.ago(hours=3), plant.ago(hours=2))
    plant.run("orders")
    assert not left.exists() and other.exists()
