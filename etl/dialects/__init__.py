"""One module per source database behind the SourceDialect interface."""

from __future__ import annotations

from .base import RETRYABLE, WRITE_KINDS, Failure, Privilege, SourceDialect, TableRef, quoter
from .mariadb import MariaDBDialect
from .mssql import MSSQLDialect
from .mysql import MySQLDialect
from .odbc import DriverMissing
from .oracle import OracleDialect
from .postgresql import PostgreSQLDialect
from .sqlite import SQLiteDialect

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
