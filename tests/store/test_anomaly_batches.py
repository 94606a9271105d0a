"""A run's anomalies travel in batches (issue 17, item 16): found into an ``AnomalySpool``,
compared with the stored ones by digests, inserted into the store and written to the Parquet
batch by batch, so the run's memory is bounded by its batch size, not by how many it finds.
The figures for 500,000 and 2,000,000 anomalies are in BENCHMARKS.md (bench/anomaly_bench.py)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from etl.shapes import STORED_ANOMALY_COLUMNS
from etl.store import db
from etl.store.diff import AnomalyDigest
from etl.store.spool import AnomalySpool
from tests.support.plant import BERLIN, Plant

UNKNOWN = 99  # an event code the plant's mapping does not know: one unknown_event per booking


def _anomalies(count: int, start: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "kind": pd.Series(["unknown_event"] * count, dtype="string"),
            "machine_code": pd.Series([f"M{i % 3}" for i in range(count)], dtype="string"),
            "order_code": pd.Series([f"A{i}" for i in range(count)], dtype="string"),
            "ts": pd.Series(
                [start + pd.Timedelta(hours=7 * i) for i in range(count)],
                dtype="datetime64[us, UTC]",
            ),
            "detail": pd.Series(["event code '99' is not mapped"] * count, dtype="string"),
            "plant": pd.Series(["1000"] * count, dtype="string"),
            "zone": pd.Series(["Europe/Berlin"] * count, dtype="string"),
        }
    )[STORED_ANOMALY_COLUMNS]


def test_a_spool_keeps_one_batch_in_memory_and_the_rest_on_disk() -> None:
    found = _anomalies(250, pd.Timestamp("2026-01-01", tz="UTC"))
    spool = AnomalySpool(limit=100)
    for start in range(0, 250, 30):  # added as a run finds them: a few at a time
        spool.add(found.iloc[start : start + 30])
    assert len(spool) == 250 and spool.kinds == {"unknown_event": 250}
    assert spool.spilled == 2  # two full batches went to the temporary file, 50 wait in memory
    sizes = [len(part) for part in spool.batches()]
    assert sizes == [100, 100, 50]
    pd.testing.assert_frame_equal(spool.frame(), found)  # read again, in the order added
    name = spool._file.name if spool._file is not None else None
    assert name is not None and Path(name).exists()
    spool.close()
    assert not Path(name).exists()
    with pytest.raises(RuntimeError):
        spool.add(found)  # nothing comes after the commit read them


def test_digests_compare_multisets_batch_by_batch_per_month() -> None:
    found = _anomalies(300, pd.Timestamp("2026-01-20", tz="UTC"))
    whole, pieces = AnomalyDigest(), AnomalyDigest()
    whole.add(found)
    for start in range(0, 300, 70):  # other batches, another order: the same anomalies
        pieces.add(found.iloc[::-1].iloc[start : start + 70])
    assert whole.months.keys() == {"2026-01", "2026-02", "2026-03", "2026-04"}
    assert whole.differ(pieces) == set()
    changed = found.copy()
    changed.loc[200, "detail"] = "another detail"
    other = AnomalyDigest()
    other.add(changed)
    month = str(found.loc[200, "ts"])[:7]
    assert whole.differ(other) == {month}
    undated = found.copy()
    undated.loc[0, "ts"] = pd.NaT
    third = AnomalyDigest()
    third.add(undated)
    assert whole.differ(third) == {None, str(found.loc[0, "ts"])[:7]}


def test_a_run_commits_and_publishes_its_anomalies_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = Plant(tmp_path / "p", reread="20d", days=15)
    etl_yaml = plant.root / "etl.yaml"
    etl_yaml.write_text(
        etl_yaml.read_text().replace("  safety_lag: 0s\n", "  safety_lag: 0s\n  batch_size: 100\n")
    )
    plant.book("M1", "A", 10, plant.ago(days=3))
    plant.book("M1", "A", 20, plant.ago(days=2))
    with sqlite3.connect(plant.db) as conn:  # 450 bookings with an unknown code over 9 days
        for i in range(450):
            day, clock = (
                (plant.ago(days=12) + timedelta(minutes=29 * i))
                .astimezone(BERLIN)
                .strftime("%Y-%m-%d %H:%M:%S")
                .split(" ")
            )
            conn.execute(
                "INSERT INTO BUCHUNGEN (WERK, MASCHNR, AUNR, ARTNR, SATZART, BUCHDAT, BUCHZEIT)"
                " VALUES ('1000', ?, ?, 'P1', ?, ?, ?)",
                (f"X{i % 4}", f"U{i}", UNKNOWN, day, clock),
            )
    monkeypatch.setattr("etl.outputs.parquet.ANOMALY_BATCH", 100)
    inserted: list[int] = []
    real = db.insert_frame

    def counting(conn: Any, table: Any, frame: pd.DataFrame, *args: Any, **kwargs: Any) -> None:
        if table.name == "anomalies":
            inserted.append(len(frame))
        real(conn, table, frame, *args, **kwargs)

    monkeypatch.setattr(db, "insert_frame", counting)
    first = plant.run()
    assert first.anomalies == {"unknown_event": 450}
    assert sum(inserted) == 450 and len(inserted) >= 5 and max(inserted) <= 100
    files = sorted((plant.root / "output" / "parquet" / "anomalies").rglob("*.parquet"))
    assert sum(pq.read_metadata(f).num_rows for f in files) == 450
    assert max(pq.read_metadata(f).num_row_groups for f in files) >= 2  # written in batches
    written = {f: f.stat().st_mtime_ns for f in files}

    inserted.clear()
    again = plant.run()  # the same anomalies: compared by digests, nothing rewritten
    assert again.anomalies == {"unknown_event": 450}
    assert inserted == []
    assert {f: f.stat().st_mtime_ns for f in files} == written

    plant.sql("UPDATE BUCHUNGEN SET AUNR = 'CHANGED' WHERE AUNR = 'U449'")
    third = plant.run()  # one anomaly differs: the window's anomalies are replaced, in batches
    assert third.anomalies == {"unknown_event": 450}
    assert sum(inserted) == 450 and max(inserted) <= 100
    with sqlite3.connect(plant.root / "store.sqlite") as conn:
        orders = {row[0] for row in conn.execute("SELECT order_code FROM anomalies")}
    assert "CHANGED" in orders and "U449" not in orders and len(orders) == 450
