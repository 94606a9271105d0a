"""One module per source database behind the SourceDialect interface."""

from __future__ import annotations

from .base import RETRYABLE, WRITE_KINDS, Failure, Privilege, SourceDialect, TableRef
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


__all__ = [
    "RETRYABLE",
    "WRITE_KINDS",
    "DriverMissing",
    "Failure",
    "Privilege",
    "SourceDialect",
    "TableRef",
    "get_dialect",
]
