"""The Parquet dataset: Hive-partitioned by job and month, each partition file replaced atomically.

Layout under the dataset root (a local directory or ``s3://bucket/prefix``)::

    runs/job=<job>/month=<YYYY-MM>/part-0.parquet        production runs starting in that month (UTC)
    anomalies/job=<job>/month=<YYYY-MM|undated>/part-0.parquet

Every partition is one file with a fixed name, so a reader listing the dataset finds at most one
file per partition at every moment, and replacing it is replacing one file:

- local: the new file is written to a hidden temporary file in the partition's directory, fsynced
  and renamed over the old one (``os.replace``);
- object storage (S3 has no rename): the new file is serialized completely in memory, uploaded to
  a staging key outside ``runs/`` and ``anomalies/`` (``_staging/<uuid>.parquet``, which no
  dataset reader lists), then copied server-side onto the partition's key (one ``CopyObject``:
  the key holds the old object until the copy completes, then the new one) and the staging
  object is deleted. A failure or a ``kill -9`` before the copy leaves the old object untouched;
  a staging object left behind by a killed process is removed by a later publication.

Either way a reader sees the old or the new partition, never a half-written one. An emptied
partition is deleted (one delete per file).
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq
from pyarrow import fs

from etl.config.locations import S3Location
from etl.errors import StoreError
from etl.failpoints import failpoint
from etl.outputs.objectstore import s3_error, s3_filesystem
from etl.shapes import ANOMALIES_SCHEMA, DEFAULT_PHASE, runs_schema
from etl.store.bulk import stamp_array, text_array
from etl.store.db import Store

if TYPE_CHECKING:
    from etl.config.models import S3Spec

log = logging.getLogger(__name__)

FILE_NAME = "part-0.parquet"
ANOMALY_BATCH = 50_000  # anomalies read from the store and written per row group
UNDATED = "undated"
STAGING = "_staging"
STAGING_MAX_AGE = timedelta(hours=1)  # older staging objects belong to a process that died
# a month's runs in their file: by code point whatever the store's collation, so that a month
# published from a backfill's memory (etl.pipeline.monthly) and one read back are the same file
ORDER = ["machine_code", "start", "order_code"]


def runs_table(runs: pd.DataFrame, fields: dict[str, pa.DataType] | None = None) -> pa.Table:
    """Runs as an Arrow table with the documented schema (column by column, no Python objects):
    ``RUNS_SCHEMA`` and then one typed column per mapping field (``fields``: name -> Arrow
    type), taken from the runs' ``attributes`` JSON."""
    start = stamp_array(runs["start"])
    end = stamp_array(runs["end"])
    # microseconds as float before dividing: a run ending 9999-12-31 lasts more than 2**53 us
    micros = pc.cast(pc.cast(pc.subtract(end, start), pa.int64()), pa.float64(), safe=False)
    duration = pc.divide(micros, 1_000_000.0)
    columns = {
        "machine_code": text_array(runs["machine_code"]),
        "order_code": text_array(runs["order_code"]),
        "product_code": text_array(runs["product_code"]),
        "start": start,
        "end": end,
        "duration_s": duration,
        "is_open": pc.is_null(end),
        "flags": text_array(runs["flags"]),
        "phase": text_array(_column(runs, "phase").fillna(DEFAULT_PHASE)),
        "plant": text_array(_column(runs, "plant")),
        "zone": text_array(_column(runs, "zone")),
        "local_start_date": local_dates(runs["start"], _column(runs, "zone")),
    }
    schema = runs_schema(fields)
    if fields:
        values = attribute_table(_column(runs, "attributes"), fields)
        for name in fields:
            columns[name] = values.column(name)
    return pa.Table.from_arrays(list(columns.values()), schema=schema)


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    """``frame[name]``, all NA when the frame has no such column (a store not re-derived yet)."""
    if name in frame:
        return frame[name]
    return pd.Series(pd.NA, index=frame.index, dtype="string")


def local_dates(start: pd.Series, zone: pd.Series) -> pa.Array:
    """The date of each UTC ``start`` in its run's ``zone`` (null where the zone is unknown):
    one conversion per distinct zone, not per row."""
    stamps = pd.to_datetime(start, utc=True)
    out = pd.Series(pd.NaT, index=start.index, dtype="datetime64[s]")
    zones = zone.astype("string")
    for name in zones.dropna().unique():
        at = (zones == name).fillna(False).to_numpy()
        local = stamps[at].dt.tz_convert(str(name)).dt.tz_localize(None).dt.normalize()
        out[at] = local.astype("datetime64[s]").to_numpy()
    return pc.cast(pa.array(out, pa.timestamp("s"), from_pandas=True), pa.date32())


def attribute_table(attributes: pd.Series, fields: dict[str, pa.DataType]) -> pa.Table:
    """The runs' ``attributes`` JSON objects as typed columns (Arrow's JSON reader: one pass in
    C, no Python object per run); a run without attributes has nulls."""
    schema = pa.schema([pa.field(name, kind) for name, kind in fields.items()])
    text = attributes.astype("string").fillna("{}")
    if text.empty:
        return schema.empty_table()
    buffer = io.BytesIO("\n".join(text.to_numpy(dtype=object).tolist()).encode())
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    return pj.read_json(buffer, parse_options=options).select(list(fields))


def anomalies_table(found: pd.DataFrame) -> pa.Table:
    """Anomalies as an Arrow table with the documented schema."""
    columns = [
        stamp_array(found[name]) if name == "ts" else text_array(_column(found, name))
        for name in ANOMALIES_SCHEMA.names
    ]
    return pa.Table.from_arrays(columns, schema=ANOMALIES_SCHEMA)


class Output(Protocol):
    """Where the dataset lives: replaces one partition file, removes partition directories."""

    display: str

    def write(self, table: pa.Table, relative: str) -> str | None:
        """Replace the file at ``relative`` (a ``/``-path under the root) with ``table``; returns
        where it went (None: the file already held exactly this table and was left alone)."""

    def remove(self, relative: str) -> None:
        """Delete the directory ``relative`` and everything under it (absent: nothing to do)."""

    def write_tables(self, tables: Iterator[pa.Table], relative: str) -> str | None:
        """``write`` for a file given as consecutive tables of one schema (at least one)."""


class LocalOutput:
    """A dataset in a local directory: temporary file, fsync, rename."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.display = str(base)

    def write(self, table: pa.Table, relative: str) -> str | None:
        target = self.base / relative
        if _unchanged(table, target):
            _sweep_temporaries(target)
            return None
        write_atomically(table, target)
        return str(target)

    def remove(self, relative: str) -> None:
        _remove_partition(self.base / relative)

    def write_tables(self, tables: Iterator[pa.Table], relative: str) -> str | None:
        """The tables streamed into the file one row group each, so the file's size does not
        count in memory; an unchanged file (compared batch by batch) is left alone."""
        target = self.base / relative
        temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            _sweep_temporaries(target)
            first = next(tables)
            with pq.ParquetWriter(temp, first.schema, compression="zstd") as writer:
                for table in chain([first], tables):
                    writer.write_table(table)
            if _same_rows(temp, target):
                _discard(temp)
                return None
            failpoint("write_parquet")  # a process killed here leaves its temporary file
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
        return str(target)


class S3Output:
    """A dataset under ``s3://bucket/prefix``: staged upload, server-side copy onto the key."""

    def __init__(self, location: S3Location, region: str, endpoint: str) -> None:
        self.location = location
        self.display = location.uri
        self.fs = s3_filesystem(region=region, endpoint=endpoint)
        self._swept = False

    def _key(self, relative: str) -> str:
        return f"{self.location.path}/{relative}"

    def write(self, table: pa.Table, relative: str) -> str:
        target = self._key(relative)
        staged = self._key(f"{STAGING}/{uuid.uuid4().hex}.parquet")
        # serialized completely before anything is sent: an error while encoding touches nothing
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        body = sink.getvalue()
        try:
            self._sweep()
            with self.fs.open_output_stream(staged) as stream:
                half = body.size // 2
                stream.write(body[:half])
                failpoint("upload")  # a process killed here leaves an unfinished upload
                stream.write(body[half:])
            self.fs.copy_file(staged, target)  # the switch: one server-side CopyObject
        except OSError as exc:
            raise StoreError(
                f"parquet: cannot write s3://{target}: {s3_error(exc)}",
                hint="check the 's3' settings in etl.yaml, the bucket and the credentials in "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
            ) from None
        finally:
            with contextlib.suppress(OSError):
                self.fs.delete_file(staged)
        return f"s3://{target}"

    def write_tables(self, tables: Iterator[pa.Table], relative: str) -> str | None:
        """The tables as one (uploaded whole, as ``write`` does)."""
        return self.write(pa.concat_tables(list(tables)), relative)

    def remove(self, relative: str) -> None:
        directory = self._key(relative)
        try:
            if self.fs.get_file_info(directory).type != fs.FileType.NotFound:
                self.fs.delete_dir(directory)
        except OSError as exc:
            raise StoreError(f"parquet: cannot remove s3://{directory}: {s3_error(exc)}") from None

    def _sweep(self) -> None:
        """Delete staging objects old enough to belong to a process that is gone (once)."""
        if self._swept:
            return
        self._swept = True
        cutoff = datetime.now(UTC) - STAGING_MAX_AGE
        selector = fs.FileSelector(self._key(STAGING), allow_not_found=True)
        try:
            found = self.fs.get_file_info(selector)
        except OSError as exc:  # e.g. a bucket policy without s3:ListBucket: writes still work
            log.warning(
                "could not list s3://%s to remove abandoned staging objects (%s); "
                "writing without cleaning up",
                self._key(STAGING),
                s3_error(exc),
            )
            return
        for info in found:
            if info.type == fs.FileType.File and info.mtime is not None and info.mtime < cutoff:
                with contextlib.suppress(OSError):
                    self.fs.delete_file(info.path)
                    log.info("removed an abandoned staging object %s", info.path)


def open_output(parquet: str, root: Path, s3: S3Spec | None = None) -> Output:
    """The dataset behind the ``parquet`` setting: a local directory (relative to ``root``) or
    ``s3://bucket/prefix`` with the project's ``s3`` settings (validated with the config)."""
    location = S3Location.parse(parquet)
    if location is not None:
        if s3 is None:
            raise StoreError(f"parquet: {location.uri} needs the 's3' settings in etl.yaml")
        return S3Output(location, region=s3.region, endpoint=s3.endpoint)
    base = Path(parquet)
    return LocalOutput(base if base.is_absolute() else root / base)


def _unchanged(table: pa.Table, target: Path) -> bool:
    """Whether ``target`` already holds exactly ``table`` (then it is not rewritten)."""
    try:
        return target.is_file() and pq.read_table(target).equals(table)
    except (OSError, pa.ArrowException):
        return False  # unreadable: write it anew


def _same_rows(written: Path, target: Path) -> bool:
    """Whether ``target`` holds the same rows as ``written`` (another Parquet file), compared
    batch by batch whatever their row groups."""
    try:
        if not target.is_file():
            return False
        old, new = pq.ParquetFile(target), pq.ParquetFile(written)
        if old.metadata.num_rows != new.metadata.num_rows or not old.schema_arrow.equals(
            new.schema_arrow
        ):
            return False
        left, right = old.iter_batches(batch_size=ANOMALY_BATCH), new.iter_batches(ANOMALY_BATCH)
        a = b = None
        while True:
            while a is None or not a.num_rows:
                a = next(left, None)
                if a is None:
                    break
            while b is None or not b.num_rows:
                b = next(right, None)
                if b is None:
                    break
            if a is None or b is None:
                return a is None and b is None
            n = min(a.num_rows, b.num_rows)
            if not a.slice(0, n).equals(b.slice(0, n)):
                return False
            a, b = a.slice(n), b.slice(n)
    except (OSError, pa.ArrowException):
        return False  # unreadable: write it anew


def write_atomically(table: pa.Table, target: Path) -> None:
    """Write ``table`` to ``target`` via a hidden temporary file and a rename."""
    temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweep_temporaries(target)
        pq.write_table(table, temp, compression="zstd")
        failpoint("write_parquet")  # a process killed here leaves its temporary file
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


def _sweep_temporaries(target: Path) -> None:
    """Remove temporary files of ``target`` left by a process killed while writing it. Only the
    job's lock holder publishes its partitions, so any such file belongs to a dead process (or to
    one that lost its lease: its rename then fails, and the file it wanted to replace stays)."""
    for left in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            left.unlink()
            log.info("removed %s, left by an interrupted publication", left)


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


def _add(written: list[str], where: str | None) -> None:
    if where is not None:
        written.append(where)


def publish(
    store: Store,
    job: str,
    months: list[str],
    out: Output | Path,
    still_ours: Callable[[], None] | None = None,
    known: Mapping[str, pd.DataFrame] | None = None,
    fields: dict[str, pa.DataType] | None = None,
) -> list[str]:
    """Rewrite the job's partitions for ``months`` from the store; returns the files written.
    A local partition whose file already holds the same rows is left as it is. ``known`` gives
    the runs of some months as the store holds them (a backfill's, see ``etl.pipeline.monthly``): those
    are not read back. ``fields``: the mapping's run attributes (name -> Arrow type), one column
    each after the fixed ones.

    ``still_ours()`` (when given) is called before each partition; it raises when the job's lock
    was lost, so a run that overstayed its lease stops writing.
    """
    output: Output = LocalOutput(out) if isinstance(out, Path) else out
    written: list[str] = []
    for month in sorted(set(months)):
        if still_ours is not None:
            still_ours()
        runs = known[month] if known and month in known else store.runs_in_month(job, month)
        part = f"runs/job={job}/month={month}"
        if runs.empty:
            output.remove(part)
        else:
            table = runs_table(runs, fields).sort_by([(name, "ascending") for name in ORDER])
            _add(written, output.write(table, f"{part}/{FILE_NAME}"))
    dated: list[str | None] = [*sorted(set(months)), None]
    for dated_month in dated:
        if still_ours is not None:
            still_ours()
        # in batches: a month may hold millions of anomalies
        found = store.anomaly_batches(job, dated_month, ANOMALY_BATCH)
        tables = (anomalies_table(part) for part in found if not part.empty)
        folder = f"anomalies/job={job}/month={dated_month or UNDATED}"
        first = next(tables, None)
        if first is None:
            output.remove(folder)
        else:
            _add(written, output.write_tables(chain([first], tables), f"{folder}/{FILE_NAME}"))
    log.debug("published %d partition files for %s to %s", len(written), job, output.display)
    return written


def remove_job(job: str, out: Output | Path) -> None:
    """Delete every partition of ``job`` (after ``etl state reset``)."""
    output: Output = LocalOutput(out) if isinstance(out, Path) else out
    for kind in ("runs", "anomalies"):
        output.remove(f"{kind}/job={job}")
