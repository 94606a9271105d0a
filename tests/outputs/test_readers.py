"""The Parquet dataset as its readers see it: DuckDB and pyarrow.dataset's Hive partition
discovery (what Spark and Trino do), with the documented schema and partition columns."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from tests.support.plant import Plant, _sorted


def plant_with_both_jobs(root: Path) -> Plant:
    plant = Plant(root, days=70)
    for i in range(6):  # runs in three different months
        start = plant.ago(days=65) + timedelta(days=12 * i)
        plant.book("M1", f"A{i}", 10, start)
        plant.book("M1", f"A{i}", 20, start + timedelta(hours=3))
        plant.order("M2", f"F{i}", start, start + timedelta(hours=5))
    plant.book("M3", "OPEN", 10, plant.ago(hours=2))  # an open run: end NULL
    plant.book("M4", "ORPHAN", 20, plant.ago(hours=3))  # an END without START: an anomaly
    plant.run("bookings")
    plant.run("orders")
    return plant


def test_duckdb_reads_the_hive_partitions(tmp_path: Path) -> None:
    plant = plant_with_both_jobs(tmp_path / "p")
    base = plant.root / "output" / "parquet"
    rows = duckdb.sql(
        f"""SELECT job, month, count(*) AS runs, count(*) FILTER (WHERE is_open) AS open
            FROM read_parquet('{base}/runs/**/*.parquet', hive_partitioning = true)
            GROUP BY ALL ORDER BY job, month"""
    ).fetchall()
    expected = []
    for job in ("bookings", "orders"):
        stored = plant.store_runs(job)
        months = stored["start"].dt.strftime("%Y-%m")
        for month in sorted(set(months)):
            part = stored[months == month]
            expected.append((job, month, len(part), int(part["end"].isna().sum())))
    assert rows == expected
    assert len({month for _, month, _, _ in rows}) >= 3
    assert sum(open_runs for job, _, _, open_runs in rows if job == "bookings") == 1
    # the timestamps arrive as UTC instants with microseconds
    kinds = duckdb.sql(
        f"SELECT DISTINCT typeof(start) FROM read_parquet('{base}/runs/**/*.parquet')"
    ).fetchall()
    assert kinds == [("TIMESTAMP WITH TIME ZONE",)]


def test_pyarrow_dataset_discovers_job_and_month(tmp_path: Path) -> None:
    plant = plant_with_both_jobs(tmp_path / "p")
    dataset = ds.dataset(plant.root / "output" / "parquet" / "runs", partitioning="hive")
    assert dataset.schema.field("start").type == pa.timestamp("us", tz="UTC")
    assert dataset.schema.field("end").nullable
    assert {"job", "month"} <= set(dataset.schema.names)
    table = dataset.to_table(filter=ds.field("job") == "orders")
    assert set(table.column("job").to_pylist()) == {"orders"}
    frame = _sorted(
        table.to_pandas()[["machine_code", "order_code", "product_code", "start", "end", "flags"]]
    )
    assert len(frame) == 6
    assert frame.equals(plant.store_runs("orders"))
    # partition pruning: one month's files only
    month = frame["start"].dt.strftime("%Y-%m").iloc[0]
    pruned = dataset.to_table(filter=(ds.field("job") == "orders") & (ds.field("month") == month))
    assert 0 < pruned.num_rows < len(frame)
    anomalies = ds.dataset(plant.root / "output" / "parquet" / "anomalies", partitioning="hive")
    assert anomalies.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    found = anomalies.to_table(filter=ds.field("job") == "bookings").to_pylist()
    assert [(a["kind"], a["order_code"]) for a in found] == [("orphan_end", "ORPHAN")]
