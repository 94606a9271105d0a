"""PostgreSQL through psycopg 3; sessions default to read-only transactions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from ..config import ConnectorSpec
from .base import SourceDialect


class PostgreSQLDialect(SourceDialect):
    """PostgreSQL: ``default_transaction_read_only`` set at connect time."""

    name = "postgresql"
    driver = "postgresql+psycopg"
    default_port = 5432
    read_only_session = True

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        return {
            "connect_timeout": max(1, int(spec.connect_timeout.total_seconds())),
            "options": "-c default_transaction_read_only=on -c TimeZone=UTC",
            "application_name": "booking-etl",
        }

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.func.clock_timestamp()
