"""PostgreSQL through pyodbc and its Debian ODBC driver: a stand-in for SQL Server, whose ODBC path
cannot run here. SQLAlchemy ships no ``postgresql+pyodbc`` dialect; importing this module
registers one (used by tests/sources/test_odbc.py and by bench/run_bench.py's odbc group)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.connectors.pyodbc import PyODBCConnector
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.base import PGDialect


class PGDialectPyODBC(PyODBCConnector, PGDialect):
    """PostgreSQL through pyodbc (the Debian driver ``PostgreSQL Unicode``)."""

    supports_statement_cache = True
    pyodbc_driver_name = "PostgreSQL Unicode"

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        number = int(connection.exec_driver_sql("SHOW server_version_num").scalar())
        return (number // 10000, number % 10000)


registry.register("postgresql.pyodbc", __name__, "PGDialectPyODBC")

# (ODBC driver name, SQLAlchemy URL template) per server
ODBC_URLS = {
    "postgresql": (
        "PostgreSQL Unicode",
        "postgresql+pyodbc://{user}@{host}/{db}?driver=PostgreSQL+Unicode&Port={port}"
        "&UseServerSidePrepare=0",
    ),
    "mariadb": (
        "MariaDB Unicode",
        "mysql+pyodbc://{user}@{host}/{db}?driver=MariaDB+Unicode&port={port}",
    ),
}
