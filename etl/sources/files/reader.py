"""The file-drop Reader: every settled file of a table's glob, in name order, as one stream of
raw rows (a run that starts in Monday's file and ends in Tuesday's is one run).

A file is read when the ledger (ledger.py) does not rule it out: new, changed (size or mtime),
or holding rows the run's reach covers. A file still being written (changed within ``settle``,
or without its ``marker``) waits for a later run. A file that does not read is a DataError
naming it and its line: the run stops before it commits anything.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pyarrow import fs

from etl.config.durations import format_duration
from etl.config.locations import S3Location
from etl.config.models import ConnectorSpec, MappingSpec
from etl.errors import ConfigError, SourceError
from etl.outputs.objectstore import s3_error, s3_filesystem
from etl.pipeline.mapping import timestamps
from etl.sources.files.formats import read_file
from etl.sources.files.ledger import Entry, Ledger
from etl.sources.files.spec import FilesSpec, FileTable
from etl.sources.reader import Points, Shape, Window
from etl.sources.rows import apply_filters, time_columns, wanted_columns
from etl.store.db import Store

log = logging.getLogger(__name__)
_RANK = "__file_rank"  # the position of an order row's file, while the newest is picked


@dataclass(frozen=True)
class DropFile:
    """One file of the drop as listed (not read yet)."""

    path: str  # relative to the location
    size: int
    mtime_ns: int


class Drop:
    """A connector's location: a local folder or an s3:// prefix, listed through pyarrow.fs."""

    def __init__(self, spec: FilesSpec, root: Path) -> None:
        self.spec = spec
        location = S3Location.parse(spec.location)
        if location is not None:
            assert spec.s3 is not None  # validated with the connector
            self.filesystem: fs.FileSystem = s3_filesystem(
                region=spec.s3.region, endpoint=spec.s3.endpoint
            )
            self.base, self.display = location.path, location.uri
        else:
            folder = Path(spec.location)
            folder = folder if folder.is_absolute() else root / folder
            self.filesystem, self.base, self.display = (
                fs.LocalFileSystem(),
                str(folder),
                str(folder),
            )

    def list(self, glob: str) -> list[DropFile]:
        """The files matching ``glob`` (relative to the location), in name order."""
        selector = fs.FileSelector(self.base, recursive="/" in glob)
        try:
            infos = self.filesystem.get_file_info(selector)
        except FileNotFoundError:
            raise SourceError(f"file drop {self.display}: no such folder or prefix") from None
        except OSError as exc:
            raise SourceError(f"file drop {self.display}: {s3_error(exc)}") from None
        found = []
        for info in infos:
            if info.type != fs.FileType.File:
                continue
            relative = info.path[len(self.base) :].lstrip("/")
            if fnmatch.fnmatchcase(relative, glob) and not (
                self.spec.marker and relative.endswith(self.spec.marker)
            ):
                found.append(DropFile(relative, int(info.size or 0), int(info.mtime_ns or 0)))
        return sorted(found, key=lambda f: f.path)

    def exists(self, relative: str) -> bool:
        """Whether ``relative`` is a file of the location."""
        info = self.filesystem.get_file_info(f"{self.base}/{relative}")
        return bool(info.type == fs.FileType.File)

    def read(self, relative: str) -> bytes:
        """The whole content of one file."""
        try:
            with self.filesystem.open_input_stream(f"{self.base}/{relative}") as stream:
                return bytes(stream.read())
        except OSError as exc:
            raise SourceError(f"file drop {self.display}: {relative}: {s3_error(exc)}") from None

    def settled(self, file: DropFile, now: datetime) -> bool:
        """Not being written any more: unchanged for ``settle``, and its marker there if one is
        declared."""
        age = now.timestamp() - file.mtime_ns / 1e9
        if age < self.spec.settle.total_seconds():
            log.info("%s: %s changed %.0fs ago: left for a later run", self.display, file.path, age)
            return False
        if self.spec.marker and not self.exists(file.path + self.spec.marker):
            log.info("%s: %s has no %s marker yet", self.display, file.path, self.spec.marker)
            return False
        return True


def file_table(connector: str, spec: ConnectorSpec, mapping: MappingSpec, where: str) -> FileTable:
    """The connector's entry for the table the mapping reads, or a ConfigError saying what is
    missing."""
    assert spec.files is not None
    if mapping.source.table is None:
        raise ConfigError(
            f"{where}: source.query: a file-drop connector ({connector}) reads tables of files: "
            "name one with 'source: {table: NAME}' and list it under the connector's 'tables'"
        )
    table = mapping.source.table
    if table not in spec.files.tables:
        raise ConfigError(
            f"connectors/{connector}.yaml: files.tables: no entry {table!r} (the table "
            f"{where} reads; tables: {', '.join(spec.files.tables)})"
        )
    return spec.files.tables[table]


class FilesReader:
    """A job's rows from a file drop (see the module docstring)."""

    def __init__(
        self,
        connector: str,
        spec: ConnectorSpec,
        mapping: MappingSpec,
        where: str,
        root: Path,
        store_url: str,
        secrets: list[str],
    ) -> None:
        assert spec.files is not None
        self.connector, self.spec, self.mapping, self.where = connector, spec, mapping, where
        self.table = file_table(connector, spec, mapping, where)
        self.root, self.store_url, self.secrets = root, store_url, secrets

        self.last: FilesRequest | None = None

    def described(self) -> list[str]:
        """What the last read did, file by file (for ``etl preview``)."""
        request = self.last
        if request is None:
            return []
        display = request.reading.drop.display
        lines = [f"files {self.table.glob} in {display}:"]
        lines += [f"  read     {p}" for p in request.read]
        lines += [
            f"  skipped  {p} (unchanged, its rows are outside the window)" for p in request.skipped
        ]
        lines += [f"  waiting  {p} (still being written)" for p in request.waiting]
        if len(lines) == 1:
            lines.append("  no file matches")
        return lines

    @contextmanager
    def open(self) -> Iterator[FilesReading]:
        """List nothing yet; open the store's ledger when the store exists."""
        assert self.spec.files is not None
        drop = Drop(self.spec.files, self.root)
        store = Store(self.store_url, self.root, self.secrets)
        try:
            ledger = _ledger(store, self.connector, self.mapping.source.table or "")
            yield FilesReading(self, drop, ledger)
        finally:
            store.close()


def _ledger(store: Store, connector: str, table: str) -> Ledger | None:
    """The ledger, when the store has its schema (a preview before the first run has none and
    must not create one)."""
    path = store.path
    if path is not None and not path.exists():
        return None
    import sqlalchemy as sa

    with store.begin() as conn:
        if not sa.inspect(conn).has_table("schema_info"):
            return None
    return Ledger(store, connector, table)


class FilesReading:
    """The drop opened for one run."""

    instants: frozenset[str] = frozenset()

    def __init__(self, reader: FilesReader, drop: Drop, ledger: Ledger | None) -> None:
        self.reader, self.drop, self.ledger = reader, drop, ledger
        self.clock = datetime.now(UTC)

    def now_utc(self) -> datetime:
        """This machine's clock: a folder has none of its own (``settle`` covers copy delays)."""
        return self.clock

    def request(self, reach: Window, shape: Shape) -> FilesRequest:
        """The files whose rows may matter to ``reach``."""
        self.reader.last = FilesRequest(self, reach, shape)
        return self.reader.last


class FilesRequest:
    """The files of one run, read when iterated."""

    def __init__(self, reading: FilesReading, reach: Window, shape: Shape) -> None:
        self.reading, self.reach, self.shape = reading, reach, shape
        self.skipped: list[str] = []  # unchanged files before the reach (or after it)
        self.waiting: list[str] = []  # files still being written
        self.read: list[str] = []

    def files(self, known: dict[str, Entry]) -> list[DropFile]:
        """The settled files of the table's glob, in name order. A file an earlier run read
        that is being replaced, or (with ``missing: error``) is gone while its rows lie in the
        reach, stops the run: going on would delete its runs from the window."""
        reader, drop = self.reading.reader, self.reading.drop
        files = []
        listed = drop.list(reader.table.glob)
        for file in listed:
            if drop.settled(file, self.reading.clock):
                files.append(file)
            elif file.path in known:
                raise SourceError(
                    f"file drop {drop.display}: {file.path} is being replaced (changed within "
                    f"settle {format_duration(drop.spec.settle)} or without its marker): "
                    "nothing was committed, the next run reads the new version"
                )
            else:
                self.waiting.append(file.path)
        names = {f.path for f in listed}
        gone = [e for p, e in known.items() if p not in names and not self._outside(e)]
        if gone and drop.spec.missing == "error":
            raise SourceError(
                f"file drop {drop.display}: {', '.join(e.path for e in gone)} read by an earlier "
                "run is gone, and its rows lie in this run's window: nothing was committed",
                hint="restore the file, or set 'missing: forget' in the connector's files "
                "section to let its runs in the window go",
            )
        return files

    def batches(self, size: int) -> Iterator[pd.DataFrame]:
        """The rows of every file the ledger does not rule out, in frames of at most ``size``."""
        reader, drop = self.reading.reader, self.reading.drop
        mapping = reader.mapping
        wanted, times = wanted_columns(mapping), time_columns(mapping)
        known = self.reading.ledger.entries() if self.reading.ledger is not None else {}
        learned: list[Entry] = []
        spans: list[pd.DataFrame] = []  # order rows: held until every file is read
        for file in self.files(known):
            entry = known.get(file.path)
            same = entry is not None and (entry.size, entry.mtime_ns) == (file.size, file.mtime_ns)
            if same and entry is not None and self._outside(entry):
                self.skipped.append(file.path)
                continue
            content = drop.read(file.path)
            name = f"{drop.display}/{file.path}"
            frame = read_file(content, name, reader.table, wanted, times)
            first, last = self._span(frame)
            if entry is None or entry.sha256 != hashlib.sha256(content).hexdigest():
                self._warn_late(name, first)
            learned.append(
                Entry(
                    file.path,
                    file.size,
                    file.mtime_ns,
                    hashlib.sha256(content).hexdigest(),
                    len(frame),
                    first,
                    last,
                )
            )
            self.read.append(file.path)
            frame = apply_filters(frame, mapping.filters).reset_index(drop=True)
            if isinstance(self.shape, Points):
                for offset in range(0, len(frame), size):
                    yield frame.iloc[offset : offset + size]
            else:
                spans.append(frame.assign(**{_RANK: len(spans)}))
        if spans:
            latest = self._latest(pd.concat(spans, ignore_index=True))
            for offset in range(0, len(latest), size):
                yield latest.iloc[offset : offset + size]
        # every file parsed: the ledger learns what they hold (facts, not the run's outcome)
        if self.reading.ledger is not None:
            self.reading.ledger.record(learned)

    def _latest(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Order rows as the newest file (by name) has them: exports are snapshots, so a run in
        two files is the later file's (its end, its correction), not a duplicate. Duplicates
        within one file stay for the structure to report."""
        specs = self.reading.reader.mapping.column_specs()
        key = [
            c
            for name in ("machine_code", "order_code", "start")
            for c in specs[name].source_columns()
        ]
        if key:
            newest = rows.groupby(key, dropna=False, sort=False)[_RANK].transform("max")
            rows = rows[rows[_RANK] == newest]
        return rows.drop(columns=_RANK).reset_index(drop=True)

    def _fields(self) -> list[str]:
        shape = self.shape
        if isinstance(shape, Points):
            return [shape.at]
        return [f for f in (shape.start, shape.end, shape.changed) if f is not None]

    def _span(self, frame: pd.DataFrame) -> tuple[str | None, str | None]:
        """The UTC span of the file's rows as the mapping reads them; (None, None) when a row
        has no time (or, for spans, is still open): such a file is read every run."""
        mapping, zone = self.reading.reader.mapping, self.reading.reader.spec.zone
        specs = mapping.column_specs()
        fields = [f for f in self._fields() if f in specs]
        if frame.empty or not fields:
            return None, None
        stamps = [timestamps(frame, specs[f], zone, mapping.dst) for f in fields]
        required = stamps if isinstance(self.shape, Points) else stamps[:2]
        if any(s.isna().any() for s in required):
            return None, None
        first = min(s.min() for s in stamps if s.notna().any())
        last = max(s.max() for s in stamps if s.notna().any())
        return first.isoformat(), last.isoformat()

    def _outside(self, entry: Entry) -> bool:
        if entry.first is None or entry.last is None:
            return False
        first, last = pd.Timestamp(entry.first), pd.Timestamp(entry.last)
        return bool(last < self.reach.lo or first >= self.reach.hi)

    def _warn_late(self, name: str, first: str | None) -> None:
        if first is not None and pd.Timestamp(first) < self.reach.lo:
            log.warning(
                "%s: new or changed file with rows from %s, before this run's window (%s): "
                "those rows are taken by 'etl backfill', not by this run",
                name,
                first,
                self.reach.lo.isoformat(),
            )
