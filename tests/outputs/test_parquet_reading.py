"""The reading recipes of docs/parquet.md, run on a dataset whose jobs have different columns
(one job with mapping fields, one without): every recipe must give every job's columns."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from etl.config.loader import load_project
from etl.pipeline.run import run_job
from tests.pipeline.test_context import MAPPING, Source, scenario


def _project(tmp_path: Path) -> Path:
    source = Source(tmp_path)
    scenario(source)
    plain = MAPPING.split("fields:")[0]
    (tmp_path / "mappings" / "plain.yaml").write_text(plain)
    # 'aaa' sorts before 'north': a reader that takes the first file's schema sees no fields
    (tmp_path / "jobs" / "aaa.yaml").write_text("connector: bde\nmapping: plain\nplant: '1000'\n")
    for job in ("aaa", "north"):
        run_job(load_project(tmp_path), job)
    return tmp_path / "output" / "parquet" / "runs"


def unified(path: Path) -> ds.Dataset:
    """docs/parquet.md, "Jobs with different columns": the union of every file's schema."""
    found = ds.dataset(path, partitioning="hive")
    schema = pa.unify_schemas([f.physical_schema for f in found.get_fragments()] + [found.schema])
    return ds.dataset(path, schema=schema, partitioning="hive")


def test_the_unified_dataset_has_every_jobs_columns(tmp_path: Path) -> None:
    runs = _project(tmp_path)
    table = unified(runs).to_table()
    assert {"good", "reports", "operators", "job", "month"} <= set(table.column_names)
    frame = table.to_pandas()
    north = frame[frame["job"] == "north"]
    assert len(north) and north["good"].notna().all()
    assert frame[frame["job"] == "aaa"]["good"].isna().all()  # a job without the field: null
    one_job = ds.dataset(runs / "job=north", partitioning="hive").to_table()
    assert one_job.num_rows == len(north) and "good" in one_job.column_names


def test_duckdb_with_union_by_name_reads_every_jobs_columns(tmp_path: Path) -> None:
    import duckdb

    runs = _project(tmp_path)
    rows = duckdb.sql(
        f"SELECT job, sum(good) FROM read_parquet('{runs}/**/*.parquet', hive_partitioning = true,"
        " union_by_name = true) GROUP BY job ORDER BY job"
    ).fetchall()
    assert [job for job, _ in rows] == ["aaa", "north"]
    assert rows[0][1] is None and rows[1][1] is not None and rows[1][1] > 0
