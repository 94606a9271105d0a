"""SQLite: the demo's and the tests' source. Opened read-only through a ``mode=ro`` URI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ..config import ConnectorSpec
from .base import SourceDialect


class SQLiteDialect(SourceDialect):
    """SQLite file opened with ``mode=ro`` and ``PRAGMA query_only``."""

    name = "sqlite"
    driver = "sqlite+pysqlite"
    read_only_session = True

    def url(self, spec: ConnectorSpec, root: Path) -> URL:
        if spec.url is not None:
            return sa.make_url(spec.url.get_secret_value())
        path = Path(spec.path or "")
        if not path.is_absolute():
            path = root / path
        return URL.create(
            self.driver,
            database=f"file:{path}",
            query={"mode": "ro", "uri": "true"},
        )

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        return {"timeout": spec.connect_timeout.total_seconds()}

    def on_connect(self, dbapi_connection: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    def clock(self) -> sa.ColumnElement[Any]:
        # SQLite's 'now' is UTC; text with milliseconds.
        return sa.func.strftime("%Y-%m-%d %H:%M:%f", "now")
