"""SQLite: the demo's and the tests' source. Opened read-only through a ``mode=ro`` URI."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from etl.config.models import ConnectorSpec
from etl.sources.sql.dialects.base import Privilege, SourceDialect, TableRef


class SQLiteDialect(SourceDialect):
    """SQLite file opened with ``mode=ro`` and ``PRAGMA query_only``."""

    name = "sqlite"
    sqlglot_dialect = "sqlite"
    product = "SQLite"
    driver = "sqlite+pysqlite"
    read_only_session = True
    datetimes_as_text = True
    read_only_how = "the file is opened with mode=ro and the session has PRAGMA query_only = ON"
    row_estimate_source = "count(*) (exact)"

    def url(self, spec: ConnectorSpec, root: Path) -> URL:
        if spec.url is not None:
            return sa.make_url(spec.url.get_secret_value())
        return URL.create(
            self.driver,
            database=f"file:{self.path(spec, root)}",
            query={"mode": "ro", "uri": "true"},
        )

    def path(self, spec: ConnectorSpec, root: Path) -> Path:
        """The database file."""
        path = Path(spec.path or "")
        return path if path.is_absolute() else root / path

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        return {"timeout": spec.connect_timeout.total_seconds()}

    def on_connect(self, dbapi_connection: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    def read_only_probe(self, conn: Connection) -> str | None:
        return "PRAGMA query_only"

    def clock(self) -> sa.ColumnElement[Any]:
        # SQLite's 'now' is UTC; text with milliseconds.
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", "now")

    def server_version(self, conn: Connection) -> tuple[str, str]:
        return self.product, str(conn.exec_driver_sql("SELECT sqlite_version()").scalar())

    def session_timezone(self, conn: Connection) -> str:
        return "none (SQLite has no time zones; its clock is UTC)"

    def session_read_only(self, conn: Connection) -> str:
        on = conn.exec_driver_sql("PRAGMA query_only").scalar() == 1
        return f"{'yes' if on else 'NO'}: {self.read_only_how}"

    def current_user(self, conn: Connection) -> str:
        return "(SQLite has no accounts: the operating-system user's file permissions apply)"

    def privileges(self, conn: Connection, tables: Sequence[TableRef]) -> list[Privilege]:
        files = [str(row[2]) for row in conn.exec_driver_sql("PRAGMA database_list") if row[2]]
        return [
            Privilege(
                "write",
                "file writable by this operating-system user",
                f"file {path}",
                via="file system",
                fix=f"chmod a-w {path} (booking-etl still opens it read-only)",
            )
            for path in files
            if os.access(path, os.W_OK)
        ]

    def grant_statements(
        self, conn: Connection, account: str, tables: Sequence[TableRef]
    ) -> list[str]:
        return ["-- SQLite has no GRANT: make the file read-only for the user running booking-etl"]

    def row_estimates(self, conn: Connection, schema: str | None) -> dict[str, int]:
        names = sa.inspect(conn).get_table_names(schema=schema)
        prep = conn.dialect.identifier_preparer
        out = {}
        for name in names:
            target = (
                prep.quote(name) if schema is None else f"{prep.quote(schema)}.{prep.quote(name)}"
            )
            out[name] = int(conn.exec_driver_sql(f"SELECT count(*) FROM {target}").scalar() or 0)
        return out

    def driver_description(self, conn: Connection) -> str:
        return f"sqlite3 (SQLite {sqlite3.sqlite_version})"
