"""The store's ledger of the files a file-drop connector has read: name, size, modification
time, content hash, and the span of wall-clock time its rows cover.

The ledger tells the next run which files it can leave alone: a file whose size and mtime are
unchanged and whose rows all lie before the run's reach holds nothing the run needs. A file
delivered again under the same name (a corrected export) has another size, mtime or hash and is
read again; what it says then replaces what the store holds for the window, like any source.
The entries are facts about file contents, written only after every file of a run parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from etl.store.db import Store

metadata = sa.MetaData()

source_files = sa.Table(
    "source_files",
    metadata,
    sa.Column("connector", sa.String(200), primary_key=True),
    sa.Column("source_table", sa.String(200), primary_key=True),
    sa.Column("path", sa.String(1000), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    # the earliest and latest wall-clock time of the rows (ISO text); NULL: a row has none,
    # so the file is read on every run (its rows are anomalies each time)
    sa.Column("first", sa.String(32)),
    sa.Column("last", sa.String(32)),
    sa.Column("read_at", sa.String(32), nullable=False),
)


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


class Ledger:
    """The ledger rows of one connector's source table."""

    def __init__(self, store: Store, connector: str, table: str) -> None:
        self.store, self.connector, self.table = store, connector, table
        with store.begin() as conn:
            metadata.create_all(conn)

    def entries(self) -> dict[str, Entry]:
        """Path -> entry."""
        t = source_files.c
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(t.path, t.size, t.mtime_ns, t.sha256, t.rows, t.first, t.last).where(
                    t.connector == self.connector, t.source_table == self.table
                )
            ).all()
        return {r.path: Entry(*r) for r in rows}

    def record(self, entries: list[Entry]) -> None:
        """Insert or replace ``entries`` in one transaction."""
        if not entries:
            return
        t = source_files.c
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.store.begin() as conn:
            conn.execute(
                source_files.delete().where(
                    t.connector == self.connector,
                    t.source_table == self.table,
                    t.path.in_([e.path for e in entries]),
                )
            )
            conn.execute(
                source_files.insert(),
                [
                    {
                        "connector": self.connector,
                        "source_table": self.table,
                        "read_at": now,
                        **e.__dict__,
                    }
                    for e in entries
                ],
            )
