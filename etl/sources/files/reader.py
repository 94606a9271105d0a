"""The file-drop Reader: every settled file of a table's glob, in name order, as one stream of
raw rows (a run that starts in Monday's file and ends in Tuesday's is one run).

A file is read when the ledger (ledger.py) does not rule it out: new, changed (size or mtime),
or holding rows the run's reach covers. New and changed files are read first (``surveyed``):
the run reaches back to the oldest time such a file delivers or delivered before
(``changed_since``), so what a re-delivered file said before is replaced wherever it lies. A
file still being written (changed within ``settle``, or without its ``marker``) waits for a
later run. A file that does not read (truncated, another encoding, a missing header, an empty
file) is skipped with a warning naming it and its line; the other files are read in order and
committed, and the runs the bad file delivered before (its span in the ledger) stay as stored
(``kept``) until it reads again.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pyarrow import fs
from sqlalchemy.engine import Connection

from etl.config.locations import S3Location
from etl.config.models import ConnectorSpec, MappingSpec
from etl.errors import ConfigError, DataError, SourceError
from etl.outputs.objectstore import s3_error, s3_filesystem
from etl.pipeline.mapping import timestamps
from etl.redact import redact
from etl.sources.files.formats import read_file
from etl.sources.files.ledger import Changes as LedgerChanges
from etl.sources.files.ledger import Entry, Ledger
from etl.sources.files.spec import FilesSpec, FileTable
from etl.sources.reader import SHAPES, Points, Shape, Window
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
        job: str = "",
    ) -> None:
        assert spec.files is not None
        self.connector, self.spec, self.mapping, self.where = connector, spec, mapping, where
        self.table = file_table(connector, spec, mapping, where)
        self.root, self.store_url, self.secrets = root, store_url, secrets
        self.job = job
        self.last: FilesReading | None = None

    def described(self) -> list[str]:
        """What the last read did, file by file (for ``etl preview``)."""
        reading = self.last
        if reading is None or reading.survey is None:
            return []
        survey = reading.survey
        lines = [f"files {self.table.glob} in {reading.drop.display}:"]
        lines += [f"  read     {p}" for p in reading.read]
        skipped = reading.skipped
        if len(skipped) > 3:  # a long history of daily exports: one line
            lines.append(
                f"  skipped  {len(skipped)} unchanged files whose rows are outside the window "
                f"({skipped[0]} .. {skipped[-1]})"
            )
        else:
            lines += [
                f"  skipped  {p} (unchanged, its rows are outside the window)" for p in skipped
            ]
        lines += [f"  waiting  {p} (still being written)" for p in survey.waiting]
        lines += [
            f"  BAD      {e.path}: {_after_name(e.error)} (skipped; its runs stay as stored)"
            for e in survey.bad
        ]
        lines += [f"  gone     {e.path} ({_gone_note(reading)})" for e in survey.gone]
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
            ledger = _ledger(store, self.job, self.connector, self.mapping.source.table or "")
            self.last = FilesReading(self, drop, ledger)
            yield self.last
        finally:
            store.close()


def _after_name(error: str | None) -> str:
    """A bad file's message without the folder and file name it starts with."""
    text = error or "did not read"
    head, sep, rest = text.partition(": ")
    return rest if sep and "/" in head else text


def _gone_note(reading: FilesReading) -> str:
    missing = reading.drop.spec.missing
    if missing == "forget":
        return "read by an earlier run; 'missing: forget': its runs leave the store"
    return "read by an earlier run; its runs stay as stored"


def _ledger(store: Store, job: str, connector: str, table: str) -> Ledger | None:
    """The ledger, when the store has its schema (a preview before the first run has none and
    must not create one)."""
    path = store.path
    if path is not None and not path.exists():
        return None
    import sqlalchemy as sa

    with store.begin() as conn:
        if not sa.inspect(conn).has_table("schema_info"):
            return None
    return Ledger(store, job, connector, table)


@dataclass(frozen=True)
class Span:
    """The UTC span of the rows a file delivered."""

    first: pd.Timestamp
    last: pd.Timestamp

    @classmethod
    def of(cls, entry: Entry | None) -> Span | None:
        """The entry's span (None: no entry, or a row without a time)."""
        if entry is None or entry.first is None or entry.last is None:
            return None
        return cls(pd.Timestamp(entry.first), pd.Timestamp(entry.last))

    def meets(self, window: Window) -> bool:
        """Whether a run of the span overlaps ``window`` (its rows reach into it)."""
        return bool(self.last >= pd.Timestamp(window.lo) and self.first < pd.Timestamp(window.hi))


@dataclass
class Survey:
    """What the drop holds against the ledger, before the run's window is known: the files
    read already (new or changed), those left as the ledger has them, the bad ones."""

    listed: list[DropFile]
    unchanged: dict[str, Entry] = field(default_factory=dict)
    parsed: dict[str, pd.DataFrame] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)
    bad: list[Entry] = field(default_factory=list)
    gone: list[Entry] = field(default_factory=list)
    #: the spans whose runs a new, changed or forgotten file replaces (the run reaches back)
    changed: list[Span] = field(default_factory=list)
    #: the spans whose stored runs stay: bad files, files being rewritten, gone files (keep)
    kept: list[Span] = field(default_factory=list)
    ledger: LedgerChanges = field(default_factory=LedgerChanges)


class FilesReading:
    """The drop opened for one run."""

    instants: frozenset[str] = frozenset()

    def __init__(self, reader: FilesReader, drop: Drop, ledger: Ledger | None) -> None:
        self.reader, self.drop, self.ledger = reader, drop, ledger
        self.clock = datetime.now(UTC)
        self.survey: Survey | None = None
        self.read: list[str] = []
        self.skipped: list[str] = []  # unchanged files outside the reach

    def now_utc(self) -> datetime:
        """This machine's clock: a folder has none of its own (``settle`` covers copy delays)."""
        return self.clock

    def request(self, reach: Window, shape: Shape) -> FilesRequest:
        """The files whose rows may matter to ``reach``."""
        return FilesRequest(self, reach, shape)

    # ---------------------------------------------------------------- what the run asks besides

    def changed_since(self, window: Window) -> datetime | None:
        """The earliest time a new, changed or forgotten file delivers or delivered runs at,
        when it lies before ``window.lo``: the run reaches back to it, so the runs a file
        delivered before are replaced wherever they lie (None: nothing before the window)."""
        survey = self.surveyed()
        firsts = [s.first for s in survey.changed if s.first < pd.Timestamp(window.lo)]
        return min(firsts).to_pydatetime() if firsts else None

    def kept(self, window: Window) -> list[tuple[datetime, datetime]]:
        """The spans (first, last) within ``window``'s reach whose stored runs and anomalies
        stay as they are: a bad file's, a file being rewritten, a gone file's (``keep``)."""
        survey = self.surveyed()
        return [
            (s.first.to_pydatetime(), s.last.to_pydatetime())
            for s in survey.kept
            if s.meets(window)
        ]

    def warnings(self) -> list[str]:
        """One line per file the run skipped because it does not read (the run's audit row
        names them)."""
        survey = self.surveyed()
        return [e.error or f"{self.drop.display}/{e.path}: did not read" for e in survey.bad]

    def on_commit(self, conn: Connection) -> None:
        """Write what the run learned of the files, in the commit's transaction."""
        if self.ledger is not None and self.survey is not None:
            self.ledger.write(conn, self.survey.ledger)

    # ---------------------------------------------------------------- the files against the ledger

    def surveyed(self) -> Survey:
        """List the drop and read every new or changed file (once per run)."""
        if self.survey is None:
            self.survey = self._survey()
        return self.survey

    def _survey(self) -> Survey:
        reader, drop = self.reader, self.drop
        known = self.ledger.entries() if self.ledger is not None else {}
        survey = Survey(drop.list(reader.table.glob))
        for file in survey.listed:
            entry = known.get(file.path)
            if not drop.settled(file, self.clock):
                survey.waiting.append(file.path)
                span = Span.of(entry)
                if span is not None:  # being replaced: its runs stay until the new one settles
                    survey.kept.append(span)
                continue
            same = entry is not None and (entry.size, entry.mtime_ns) == (file.size, file.mtime_ns)
            if same and entry is not None and entry.status == "bad":
                log.warning("%s (unchanged since it was found bad)", entry.error)
                self._bad(survey, entry, entry)
                continue
            if same and entry is not None:
                if entry.status == "gone":  # back as it was
                    survey.ledger.upsert.append(replace(entry, status="ok", error=None))
                survey.unchanged[file.path] = entry
                continue
            self._parse(survey, file, entry)
        names = {f.path for f in survey.listed}
        for path, entry in known.items():
            if path in names:
                continue
            survey.gone.append(entry)
            span = Span.of(entry)
            if drop.spec.missing == "forget":
                survey.ledger.forget.append(path)
                if span is not None:
                    survey.changed.append(span)
            else:
                if entry.status != "gone":
                    survey.ledger.upsert.append(replace(entry, status="gone", error=None))
                if span is not None:
                    survey.kept.append(span)
        return survey

    def _parse(self, survey: Survey, file: DropFile, entry: Entry | None) -> pd.DataFrame | None:
        """Read one file into ``survey`` (a bad one is recorded as bad, not raised)."""
        reader, drop = self.reader, self.drop
        content = drop.read(file.path)
        digest = hashlib.sha256(content).hexdigest()
        name = f"{drop.display}/{file.path}"
        wanted, times = wanted_columns(reader.mapping), time_columns(reader.mapping)
        try:
            frame = read_file(content, name, reader.table, wanted, times)
            first, last = self._span(frame)
        except DataError as exc:
            found = Entry(file.path, file.size, file.mtime_ns, digest, 0, None, None, "bad")
            self._bad(survey, replace(found, error=redact(exc.message, reader.secrets)), entry)
            log.warning("%s: skipped, the other files are read", exc.message)
            return None
        learned = Entry(file.path, file.size, file.mtime_ns, digest, len(frame), first, last)
        if entry is None or entry.status != "ok" or entry.sha256 != digest:
            for span in (Span.of(entry), Span.of(learned)):
                if span is not None:
                    survey.changed.append(span)
        if learned != entry:
            survey.ledger.upsert.append(learned)
        survey.parsed[file.path] = frame
        return frame

    def _bad(self, survey: Survey, bad: Entry, before: Entry | None) -> None:
        """A file that does not read: it keeps the span of its last good read (its runs stay)."""
        if before is not None and before.first is not None:
            bad = replace(bad, rows=before.rows, first=before.first, last=before.last)
        survey.bad.append(bad)
        if bad != before:
            survey.ledger.upsert.append(bad)
        span = Span.of(bad)
        if span is not None:
            survey.kept.append(span)

    def _fields(self, shape: Shape) -> list[str]:
        if isinstance(shape, Points):
            return [shape.at]
        return [f for f in (shape.start, shape.end, shape.changed) if f is not None]

    def _span(self, frame: pd.DataFrame) -> tuple[str | None, str | None]:
        """The UTC span of the file's rows as the mapping reads them; (None, None) when a row
        has no time (or, for spans, is still open): such a file is read every run."""
        reader = self.reader
        mapping, zone = reader.mapping, reader.spec.zone
        shape = SHAPES[mapping.structure]
        specs = mapping.column_specs()
        fields = [f for f in self._fields(shape) if f in specs]
        if frame.empty or not fields:
            return None, None
        stamps = [timestamps(frame, specs[f], zone, mapping.dst) for f in fields]
        required = stamps if isinstance(shape, Points) else stamps[:2]
        if any(s.isna().any() for s in required):
            return None, None
        first = min(s.min() for s in stamps if s.notna().any())
        last = max(s.max() for s in stamps if s.notna().any())
        return first.isoformat(), last.isoformat()


class FilesRequest:
    """The files of one run, read when iterated."""

    def __init__(self, reading: FilesReading, reach: Window, shape: Shape) -> None:
        self.reading, self.reach, self.shape = reading, reach, shape

    def batches(self, size: int) -> Iterator[pd.DataFrame]:
        """The rows of every settled file that reads and that the ledger does not rule out, in
        name order, in frames of at most ``size``. A file that is gone while its rows lie in
        the reach stops the run with ``missing: error``."""
        reading = self.reading
        reader, drop = reading.reader, reading.drop
        survey = reading.surveyed()
        if drop.spec.missing == "error":
            gone = [e for e in survey.gone if self._touches(e)]
            if gone:
                raise SourceError(
                    f"file drop {drop.display}: {', '.join(e.path for e in gone)} read by an "
                    "earlier run is gone, and its rows lie in this run's window: nothing was "
                    "committed",
                    hint="restore the file, or set 'missing: keep' (its runs stay) or "
                    "'missing: forget' (its runs go) in the connector's files section",
                )
        mapping = reader.mapping
        bad = {e.path for e in survey.bad}
        spans: list[pd.DataFrame] = []  # order rows: held until every file is read
        for file in survey.listed:
            if file.path in bad or file.path in survey.waiting:
                continue
            frame = survey.parsed.get(file.path)
            if frame is None:
                entry = survey.unchanged[file.path]
                if not self._touches(entry):
                    reading.skipped.append(file.path)
                    continue
                frame = reading._parse(survey, file, entry)
                if frame is None:
                    continue
            reading.read.append(file.path)
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

    def _touches(self, entry: Entry) -> bool:
        """Whether the file's rows may matter to the reach (a file without a span always)."""
        span = Span.of(entry)
        return span is None or span.meets(self.reach)
