"""MySQL through PyMySQL: utf8mb4, session time zone pinned to UTC, read-only transactions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..config import ConnectorSpec
from .base import SourceDialect


class MySQLDialect(SourceDialect):
    """MySQL 5.7+/8: ``SET SESSION TRANSACTION READ ONLY`` and ``time_zone = '+00:00'``."""

    name = "mysql"
    driver = "mysql+pymysql"
    default_port = 3306
    read_only_session = True

    def url(self, spec: ConnectorSpec, root: Any) -> sa.URL:
        url = super().url(spec, root)
        return url.update_query_dict({"charset": "utf8mb4"}) if "charset" not in url.query else url

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        seconds = max(1, int(spec.connect_timeout.total_seconds()))
        return {"connect_timeout": seconds, "read_timeout": 3600}

    def on_connect(self, dbapi_connection: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        cursor.execute("SET time_zone = '+00:00'")
        cursor.close()

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.func.utc_timestamp(6)
