"""The Parquet dataset: Hive-partitioned by job and month, each partition file replaced atomically.

Layout under the project's ``parquet`` directory::

    runs/job=<job>/month=<YYYY-MM>/part-0.parquet        production runs starting in that month (UTC)
    anomalies/job=<job>/month=<YYYY-MM|undated>/part-0.parquet

A partition is written to a hidden temporary file in its own directory and renamed over the old
file, so a reader sees either the old or the new partition, never a half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import StoreError
from .schema import ANOMALIES_SCHEMA, RUNS_SCHEMA
from .store import Store

log = logging.getLogger(__name__)

FILE_NAME = "part-0.parquet"
UNDATED = "undated"


def runs_table(runs: pd.DataFrame) -> pa.Table:
    """Runs as an Arrow table with the documented schema."""
    start = runs["start"]
    end = runs["end"]
    duration = (end - start).dt.total_seconds()
    frame = pd.DataFrame(
        {
            "machine_code": runs["machine_code"].astype(object),
            "order_code": runs["order_code"].astype(object),
            "product_code": runs["product_code"]
            .astype(object)
            .where(runs["product_code"].notna(), None),
            "start": start,
            "end": end,
            "duration_s": duration,
            "is_open": end.isna(),
            "flags": runs["flags"].astype(object).where(runs["flags"].notna(), None),
        }
    )
    return pa.Table.from_pandas(frame, schema=RUNS_SCHEMA, preserve_index=False)


def anomalies_table(found: pd.DataFrame) -> pa.Table:
    """Anomalies as an Arrow table with the documented schema."""
    frame = found.astype(
        {"kind": object, "machine_code": object, "order_code": object, "detail": object}
    )
    frame = frame.where(found.notna(), None)
    frame["ts"] = found["ts"]
    return pa.Table.from_pandas(frame, schema=ANOMALIES_SCHEMA, preserve_index=False)


def write_atomically(table: pa.Table, target: Path) -> None:
    """Write ``table`` to ``target`` via a hidden temporary file and a rename."""
    temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, temp, compression="zstd")
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except OSError as exc:
        _discard(temp)
        reason = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise StoreError(f"parquet: cannot write {target}: {reason}") from None
    except BaseException:
        _discard(temp)
        raise


def _discard(path: Path) -> None:
    # the directory itself may be gone or unusable; then nothing was left behind
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _remove_partition(directory: Path) -> None:
    try:
        if directory.is_dir():
            shutil.rmtree(directory)
    except OSError as exc:
        raise StoreError(f"parquet: cannot remove {directory}: {exc.strerror or exc}") from None


def _unchanged(table: pa.Table, target: Path) -> bool:
    """Whether ``target`` already holds exactly ``table`` (then it is not rewritten)."""
    try:
        return target.is_file() and pq.read_table(target).equals(table)
    except (OSError, pa.ArrowException):
        return False  # unreadable: write it anew


def publish(store: Store, job: str, months: list[str], base: Path) -> list[Path]:
    """Rewrite the job's partitions for ``months`` from the store; returns the files written.
    A partition whose file already holds the same rows is left as it is."""
    written: list[Path] = []
    for month in sorted(set(months)):
        runs = store.runs_in_month(job, month)
        part = base / "runs" / f"job={job}" / f"month={month}"
        if runs.empty:
            _remove_partition(part)
        else:
            table = runs_table(runs)
            if not _unchanged(table, part / FILE_NAME):
                write_atomically(table, part / FILE_NAME)
                written.append(part / FILE_NAME)
    dated: list[str | None] = [*sorted(set(months)), None]
    for dated_month in dated:
        found = store.anomalies_in_month(job, dated_month)
        folder = base / "anomalies" / f"job={job}" / f"month={dated_month or UNDATED}"
        if found.empty:
            _remove_partition(folder)
        else:
            table = anomalies_table(found)
            if not _unchanged(table, folder / FILE_NAME):
                write_atomically(table, folder / FILE_NAME)
                written.append(folder / FILE_NAME)
    log.debug("published %d partition files for %s", len(written), job)
    return written


def remove_job(job: str, base: Path) -> None:
    """Delete every partition of ``job`` (after ``etl state reset``)."""
    for kind in ("runs", "anomalies"):
        _remove_partition(base / kind / f"job={job}")
