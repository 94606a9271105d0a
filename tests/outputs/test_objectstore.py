"""Parquet on S3-compatible object storage, against a real S3 API server (moto) on loopback.

A job publishes to ``s3://``; the dataset reads back with pyarrow.dataset's Hive discovery; an
upload killed (kill -9) or failing halfway leaves the previous partition files readable and
complete, and the next run repairs; credentials never reach the output or the logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest
from pyarrow import fs

from etl.config.locations import S3Location
from tests.conftest import S3_KEY_ID, S3_SECRET, S3Server
from tests.support.daemon import wait_for
from tests.support.plant import Plant, _sorted

ETL = [sys.executable, "-m", "etl.cli"]
RUN_COLUMNS = ["machine_code", "order_code", "product_code", "start", "end", "flags"]


def s3_plant(root: Path, s3: S3Server, prefix: str = "plant-a/runs-data") -> Plant:
    """A Plant whose etl.yaml publishes to ``s3://BUCKET/prefix`` on the moto server."""
    plant = Plant(root, parquet=f"s3://{s3.bucket}/{prefix}")
    etl_yaml = plant.root / "etl.yaml"
    etl_yaml.write_text(
        etl_yaml.read_text() + f"s3:\n  endpoint: {s3.endpoint}\n  region: eu-central-1\n"
    )
    return plant


def book_runs(plant: Plant, machine: str, count: int, hours_ago: float) -> None:
    """``count`` one-hour runs on ``machine``, the first starting ``hours_ago`` before now."""
    for i in range(count):
        start = plant.ago(hours=hours_ago) + timedelta(hours=2 * i)
        plant.book(machine, f"A{machine}{i:03d}", 10, start)
        plant.book(machine, f"A{machine}{i:03d}", 20, start + timedelta(hours=1))


def filesystem(s3: S3Server) -> fs.S3FileSystem:
    return fs.S3FileSystem(
        access_key=S3_KEY_ID,
        secret_key=S3_SECRET,
        region="eu-central-1",
        scheme="http",
        endpoint_override=s3.endpoint.removeprefix("http://"),
    )


def s3_runs(s3: S3Server, prefix: str, job: str = "bookings") -> pd.DataFrame:
    """The job's runs read back from S3 with pyarrow.dataset's Hive partition discovery."""
    dataset = ds.dataset(
        f"{s3.bucket}/{prefix}/runs", filesystem=filesystem(s3), partitioning="hive"
    )
    table = dataset.to_table(filter=ds.field("job") == job)
    return _sorted(table.to_pandas()[RUN_COLUMNS])


def keys(s3: S3Server, under: str) -> dict[str, str]:
    """Every object key under ``under`` with its ETag (not the empty directory markers that
    pyarrow keeps for a folder it emptied)."""
    client = s3.client()
    listing = client.list_objects_v2(Bucket=s3.bucket, Prefix=under)  # type: ignore[attr-defined]
    return {
        item["Key"]: item["ETag"]
        for item in listing.get("Contents", [])
        if not item["Key"].endswith("/")
    }


def etl(plant: Plant, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*ETL, "-p", str(plant.root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_a_job_publishes_to_s3_and_the_dataset_reads_back(tmp_path: Path, s3: S3Server) -> None:
    plant = s3_plant(tmp_path / "p", s3)
    book_runs(plant, "M1", 5, hours_ago=60)
    book_runs(plant, "M2", 3, hours_ago=30)
    result = plant.run()
    assert result.parquet_files and all(
        f.startswith(f"s3://{s3.bucket}/plant-a/runs-data/") for f in result.parquet_files
    )
    back = s3_runs(s3, "plant-a/runs-data")
    assert len(back) == 8
    pd.testing.assert_frame_equal(back, plant.store_runs())
    objects = keys(s3, "plant-a/runs-data/")
    assert objects and all(k.endswith("/part-0.parquet") for k in objects), objects
    assert not keys(s3, "plant-a/runs-data/_staging/")  # nothing left behind

    # a second run replaces the partition in place: still one file, new content
    book_runs(plant, "M3", 2, hours_ago=10)
    plant.run()
    back = s3_runs(s3, "plant-a/runs-data")
    pd.testing.assert_frame_equal(back, plant.store_runs())
    assert len(back) == 10
    assert set(keys(s3, "plant-a/runs-data/runs/")) == {
        k for k in keys(s3, "plant-a/runs-data/runs/") if k.endswith("/part-0.parquet")
    }


def test_an_upload_killed_halfway_leaves_the_previous_files(tmp_path: Path, s3: S3Server) -> None:
    plant = s3_plant(tmp_path / "p", s3)
    book_runs(plant, "M1", 6, hours_ago=50)
    plant.run()
    before = s3_runs(s3, "plant-a/runs-data")
    objects_before = keys(s3, "plant-a/runs-data/runs/")

    book_runs(plant, "M2", 4, hours_ago=20)
    marker = tmp_path / "at-upload"
    proc = etl(
        plant,
        "run",
        "bookings",
        env={"ETL_FAILPOINT": "upload", "ETL_FAILPOINT_FILE": str(marker)},
    )
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, 60, "the upload failpoint")
        assert proc.poll() is None, proc.communicate()
        # halfway: the staging upload is open, the partition key is untouched
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    assert keys(s3, "plant-a/runs-data/runs/") == objects_before  # same keys, same ETags
    pd.testing.assert_frame_equal(s3_runs(s3, "plant-a/runs-data"), before)  # readable, complete
    assert len(plant.store_runs()) == 10  # the store committed before publishing

    # the next run publishes the months the killed one left pending
    plant.run()
    pd.testing.assert_frame_equal(s3_runs(s3, "plant-a/runs-data"), plant.store_runs())
    assert len(s3_runs(s3, "plant-a/runs-data")) == 10


def test_a_failing_upload_is_exit_6_and_leaves_the_previous_files(
    tmp_path: Path, s3: S3Server
) -> None:
    plant = s3_plant(tmp_path / "p", s3)
    book_runs(plant, "M1", 4, hours_ago=40)
    plant.run()
    before = s3_runs(s3, "plant-a/runs-data")
    objects_before = keys(s3, "plant-a/runs-data/")
    book_runs(plant, "M1", 3, hours_ago=12)
    proc = etl(
        plant,
        "run",
        "bookings",
        env={"ETL_FAILPOINT": "upload", "ETL_FAILPOINT_RAISE": "1"},
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 6, out + err
    assert "parquet: cannot write s3://" in err and "injected I/O failure" in err
    assert keys(s3, "plant-a/runs-data/") == objects_before  # the staged object was removed
    pd.testing.assert_frame_equal(s3_runs(s3, "plant-a/runs-data"), before)
    plant.run()
    pd.testing.assert_frame_equal(s3_runs(s3, "plant-a/runs-data"), plant.store_runs())
    assert len(plant.store_runs()) == 7


def test_credentials_never_reach_the_output_or_the_logs(tmp_path: Path, s3: S3Server) -> None:
    plant = s3_plant(tmp_path / "p", s3)
    book_runs(plant, "M1", 2, hours_ago=10)
    outputs = []
    for args in (["-vv", "run", "bookings"], ["status"], ["validate"]):
        proc = etl(plant, *args)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
        outputs.append(out + err)
    # a failure: the bucket does not exist; the message names it, not the credentials
    (plant.root / "etl.yaml").write_text(
        (plant.root / "etl.yaml").read_text().replace(s3.bucket, "no-such-bucket-here")
    )
    book_runs(plant, "M2", 1, hours_ago=5)
    proc = etl(plant, "-vv", "--log-format", "json", "run", "bookings")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 6, out + err
    assert "s3://no-such-bucket-here/plant-a/runs-data/" in err
    outputs.append(out + err)
    text = "\n".join(outputs)
    assert "DEBUG" in text or '"debug"' in text.lower()  # the verbose logs were there
    assert S3_SECRET not in text
    assert S3_SECRET not in s3.log.read_text()  # nor in what the server saw in clear


def test_s3_location_parsing() -> None:
    assert S3Location.parse("output/parquet") is None
    assert S3Location.parse("/abs/path") is None
    assert S3Location.parse("s3://bucket-1/a//b/") == S3Location("bucket-1", "a/b")
    assert S3Location.parse("s3://bucket-1").path == "bucket-1"  # type: ignore[union-attr]
    for bad, words in (
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
        ("s3://Bad_Bucket/x", "invalid bucket name"),
        ("s3://ok-bucket/a/../b", "invalid prefix"),
        ("gs://bucket/x", "unsupported scheme 'gs'"),
    ):
        with pytest.raises(ValueError, match=words):
            S3Location.parse(bad)


def test_state_reset_removes_the_jobs_objects_only(tmp_path: Path, s3: S3Server) -> None:
    plant = s3_plant(tmp_path / "p", s3)
    book_runs(plant, "M1", 2, hours_ago=10)
    plant.order("M2", "F1", plant.ago(hours=8), plant.ago(hours=7))
    plant.run("bookings")
    plant.run("orders")
    assert any("job=bookings" in k for k in keys(s3, "plant-a/runs-data/"))
    proc = etl(plant, "state", "reset", "bookings", "--yes")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    left = keys(s3, "plant-a/runs-data/")
    assert left and not any("job=bookings" in k for k in left)
    assert all("job=orders" in k for k in left)


class NoListing:
    """The real S3 filesystem of a bucket whose policy grants no s3:ListBucket: listing a
    prefix fails (AccessDenied); reading, writing, copying and deleting objects work."""

    def __init__(self, real: fs.S3FileSystem) -> None:
        self.real = real

    def get_file_info(self, what: object) -> object:
        if isinstance(what, fs.FileSelector):
            raise OSError("When listing objects under key '_staging': AWS Error ACCESS_DENIED")
        return self.real.get_file_info(what)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_a_bucket_that_refuses_listing_still_takes_writes(
    s3: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    import pyarrow as pa

    from etl.outputs.parquet import S3Output

    output = S3Output(
        S3Location.parse(f"s3://{s3.bucket}/plant-a"),  # type: ignore[arg-type]
        "eu-central-1",
        s3.endpoint,
    )
    output.fs = NoListing(output.fs)
    table = pa.table({"x": [1, 2, 3]})
    written = output.write(table, "runs/job=j/month=2026-03/part-0.parquet")
    assert written == f"s3://{s3.bucket}/plant-a/runs/job=j/month=2026-03/part-0.parquet"
    assert list(keys(s3, "plant-a/")) == ["plant-a/runs/job=j/month=2026-03/part-0.parquet"]
    assert "could not list" in caplog.text and "_staging" in caplog.text
