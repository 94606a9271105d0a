"""One module per source database behind the SourceDialect interface."""

from __future__ import annotations

from etl.sources.sql.dialects.base import (
    RETRYABLE,
    WRITE_KINDS,
    Failure,
    Privilege,
    SourceDialect,
    TableRef,
    quoter,
)
from etl.sources.sql.dialects.mariadb import MariaDBDialect
from etl.sources.sql.dialects.mssql import MSSQLDialect
from etl.sources.sql.dialects.mysql import MySQLDialect
from etl.sources.sql.dialects.odbc import DriverMissing
from etl.sources.sql.dialects.oracle import OracleDialect
from etl.sources.sql.dialects.postgresql import PostgreSQLDialect
from etl.sources.sql.dialects.sqlite import SQLiteDialect

_DIALECTS: dict[str, type[SourceDialect]] = {
    cls.name: cls
    for cls in (
        MSSQLDialect,
        MySQLDialect,
        MariaDBDialect,
        OracleDialect,
        PostgreSQLDialect,
        SQLiteDialect,
    )
}


def get_dialect(name: str) -> SourceDialect:
    """The dialect object for a connector's ``dialect:`` value."""
    return _DIALECTS[name]()


def sqlglot_name(name: str | None) -> str | None:
    """sqlglot's dialect for a connector's ``dialect:`` value (an unknown name as it is, for
    sqlglot to read or refuse)."""
    cls = _DIALECTS.get(name or "")
    return cls.sqlglot_dialect if cls is not None else name


__all__ = [
    "RETRYABLE",
    "WRITE_KINDS",
    "DriverMissing",
    "Failure",
    "Privilege",
    "SourceDialect",
    "TableRef",
    "get_dialect",
    "quoter",
    "sqlglot_name",
]
