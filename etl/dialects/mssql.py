"""Microsoft SQL Server through pyodbc (Microsoft ODBC Driver 17/18 or FreeTDS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ..config import ConnectorSpec
from .base import SourceDialect

PREFERRED_DRIVERS = ("ODBC Driver 18 for SQL Server", "ODBC Driver 17 for SQL Server", "FreeTDS")


class MSSQLDialect(SourceDialect):
    """SQL Server: pyodbc with ``ApplicationIntent=ReadOnly``; the clock in UTC."""

    name = "mssql"
    driver = "mssql+pyodbc"
    default_port = 1433

    def url(self, spec: ConnectorSpec, root: Path) -> URL:
        url = super().url(spec, root)
        if spec.url is not None:
            return url
        query = dict(url.query)
        query.setdefault("driver", spec.driver or PREFERRED_DRIVERS[0])
        query.setdefault("ApplicationIntent", "ReadOnly")
        return url.set(query=query)

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        return {"timeout": max(1, int(spec.connect_timeout.total_seconds()))}

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.func.sysutcdatetime()
