"""MariaDB: the MySQL dialect (PyMySQL) with MariaDB's own name in messages."""

from __future__ import annotations

from etl.sources.sql.dialects.mysql import MySQLDialect


class MariaDBDialect(MySQLDialect):
    """MariaDB 10.3+ behaves like MySQL for everything booking-etl does."""

    name = "mariadb"
    sqlglot_dialect = "mysql"
    product = "MariaDB"
    driver = "mysql+pymysql"
