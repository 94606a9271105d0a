"""Oracle through python-oracledb (thin mode); the clock in UTC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ..config import ConnectorSpec
from .base import SourceDialect


class OracleDialect(SourceDialect):
    """Oracle 12c+: service name or SID; ``SET TRANSACTION READ ONLY`` per transaction."""

    name = "oracle"
    driver = "oracle+oracledb"
    default_port = 1521

    def url(self, spec: ConnectorSpec, root: Path) -> URL:
        url = super().url(spec, root)
        if spec.url is not None:
            return url
        query = dict(url.query)
        if spec.service_name:
            query["service_name"] = spec.service_name
            return url.set(database=None, query=query)
        return url.set(database=spec.sid, query=query)

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        return {"tcp_connect_timeout": spec.connect_timeout.total_seconds()}

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.literal_column("SYS_EXTRACT_UTC(SYSTIMESTAMP)")
