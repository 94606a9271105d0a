"""The store's ledger of the files a file-drop job has read: name, size, modification time,
content hash, the UTC span its rows cover, and whether the file read (``ok``), did not
(``bad``, with the message naming its line) or is gone from the drop (``gone``).

The span is what ties a file to the runs and anomalies it delivered: they are the store's runs
of the job that start within it (and the anomalies stamped within it). A file delivered again
with other content makes the run reach back to the start of its old and its new span, so what
it delivered before is replaced wherever it lies; a bad file, a file being rewritten and (with
``missing: keep``) a file that is gone keep the runs of their span as stored.

Each job has its own entries (two jobs may read the same files differently), written in the
transaction that commits the job's run: a run that fails leaves the ledger as it was, so the
next run sees the same files as new or changed again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.store.db import Store

log = logging.getLogger(__name__)

metadata = sa.MetaData()

source_files = sa.Table(
    "source_files",
    metadata,
    sa.Column("job", sa.String(200), primary_key=True),
    sa.Column("connector", sa.String(200), primary_key=True),
    sa.Column("source_table", sa.String(200), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    # the earliest and latest UTC time of the rows it delivered (ISO text); NULL: a row has
    # none, so the file is read on every run (its rows are anomalies each time)
    sa.Column("first", sa.String(32)),
    sa.Column("last", sa.String(32)),
    sa.Column("read_at", sa.String(32), nullable=False),
    # ok | bad (did not read: ``error`` says why; first/last stay those of the last good read)
    # | gone (no longer in the drop; its runs stay with 'missing: keep')
    sa.Column("status", sa.String(10), nullable=False, server_default="ok"),
    sa.Column("error", sa.Text),
)

_COLUMNS = ("path", "size", "mtime_ns", "sha256", "rows", "first", "last", "status", "error")


@dataclass(frozen=True)
class Entry:
    """What the ledger knows of one file."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    rows: int
    first: str | None
    last: str | None
    status: str = "ok"
    error: str | None = None


@dataclass
class Changes:
    """The ledger writes of one run, made in its commit's transaction."""

    upsert: list[Entry] = field(default_factory=list)
    forget: list[str] = field(default_factory=list)


def ensure_table(conn: Connection) -> None:
    """Create the ledger table; a ledger of an earlier layout (one for every job of a
    connector) is dropped and learned again, its files read as new."""
    inspector = sa.inspect(conn)
    if inspector.has_table("source_files"):
        have = {c["name"] for c in inspector.get_columns("source_files")}
        if {"job", "status"} <= have:
            return
        log.info("source_files: an earlier layout of the file ledger: learned again")
        conn.execute(sa.text("DROP TABLE source_files"))
    metadata.create_all(conn)


class Ledger:
    """The ledger rows of one job's source table."""

    def __init__(self, store: Store, job: str, connector: str, table: str) -> None:
        self.store, self.job, self.connector, self.table = store, job, connector, table
        with store.begin() as conn:
            ensure_table(conn)

    def _mine(self) -> sa.ColumnElement[bool]:
        t = source_files.c
        return sa.and_(
            t.job == self.job, t.connector == self.connector, t.source_table == self.table
        )

    def entries(self) -> dict[str, Entry]:
        """Path -> entry."""
        t = source_files.c
        with self.store.begin() as conn:
            rows = conn.execute(sa.select(*(t[c] for c in _COLUMNS)).where(self._mine())).all()
        return {r.path: Entry(*r) for r in rows}

    def write(self, conn: Connection, changes: Changes) -> None:
        """Insert or replace ``changes.upsert`` and drop ``changes.forget``, in ``conn``'s
        transaction (the run's commit)."""
        t = source_files.c
        paths = [e.path for e in changes.upsert] + changes.forget
        if not paths:
            return
        ensure_table(conn)
        conn.execute(source_files.delete().where(self._mine(), t.path.in_(paths)))
        if not changes.upsert:
            return
        now = datetime.now(UTC).isoformat(timespec="seconds")
        conn.execute(
            source_files.insert(),
            [
                {
                    "job": self.job,
                    "connector": self.connector,
                    "source_table": self.table,
                    "read_at": now,
                    **e.__dict__,
                }
                for e in changes.upsert
            ],
        )


def bad_files(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Job -> its files that did not read at their last look (path, error, since when), for
    ``etl status`` and the metrics; empty when the store has no ledger."""
    t = source_files.c
    out: dict[str, list[dict[str, Any]]] = {}
    with store.begin() as conn:
        inspector = sa.inspect(conn)
        if not inspector.has_table("source_files"):
            return out
        if "status" not in {c["name"] for c in inspector.get_columns("source_files")}:
            return out
        rows = conn.execute(
            sa.select(t.job, t.path, t.error, t.read_at)
            .where(t.status == "bad")
            .order_by(t.job, t.path)
        ).all()
    for job, path, error, since in rows:
        out.setdefault(job, []).append({"path": path, "error": error, "since": since})
    return out
