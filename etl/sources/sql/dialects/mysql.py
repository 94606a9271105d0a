"""MySQL through PyMySQL: utf8mb4, session time zone pinned to UTC, read-only transactions."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.config.models import ConnectorSpec
from etl.sources.sql.dialects.base import Failure, Kind, Privilege, SourceDialect, TableRef, quoter

_q = quoter("mysql")  # schema, table and account names in GRANT/REVOKE

_READ = {"SELECT", "SHOW VIEW", "USAGE", "SHOW DATABASES", "PROXY"}
_WRITE = {"INSERT", "UPDATE", "DELETE", "DELETE HISTORY", "LOCK TABLES"}
_DDL = {
    "CREATE",
    "DROP",
    "ALTER",
    "INDEX",
    "REFERENCES",
    "CREATE VIEW",
    "CREATE TEMPORARY TABLES",
    "TRIGGER",
    "EVENT",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "CREATE TABLESPACE",
}
_EXECUTE = {"EXECUTE"}
_GRANT = re.compile(r"^GRANT\s+(?P<privs>.+?)\s+ON\s+(?P<obj>.+?)\s+TO\s+(?P<to>\S+)", re.I | re.S)
_ROLE_GRANT = re.compile(r"^GRANT\s+(?P<roles>[`'\w@%.,\s-]+?)\s+TO\s+", re.I)


def privilege_kind(name: str) -> Kind:
    """Whether a MySQL/MariaDB privilege name reads, writes, changes structure or administers."""
    name = re.sub(r"\s*\(.*\)$", "", name.strip().upper())  # SELECT (col1, col2)
    if name in _READ:
        return "read"
    if name in _WRITE:
        return "write"
    if name in _DDL:
        return "ddl"
    if name in _EXECUTE:
        return "execute"
    return "admin"  # SUPER, FILE, PROCESS, RELOAD, GRANT OPTION, *_ADMIN, ...


def _split_privileges(text: str) -> list[str]:
    """``SELECT (a, b), INSERT`` -> ``['SELECT (a, b)', 'INSERT']`` (commas inside parentheses kept)."""
    out, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        out.append(current.strip())
    return out


def parse_grants(lines: Sequence[str]) -> tuple[list[Privilege], list[str]]:
    """Privileges and granted roles from ``SHOW GRANTS`` lines."""
    found: list[Privilege] = []
    roles: list[str] = []
    for line in lines:
        grant_option = bool(re.search(r"WITH\s+GRANT\s+OPTION", line, re.I))
        match = _GRANT.match(line)
        if match is None:
            role = _ROLE_GRANT.match(line)
            if role:
                roles += [r.strip() for r in role.group("roles").split(",") if r.strip()]
            continue
        obj = match.group("obj").strip()
        on = "server (every database)" if obj == "*.*" else obj.replace("`", "")
        for priv in _split_privileges(match.group("privs")):
            kind = privilege_kind(priv)
            if kind == "admin" and priv.upper() in ("ALL", "ALL PRIVILEGES") and obj != "*.*":
                kind = "write"  # every right on one database or table: writes and DDL there
            if priv.upper() == "USAGE":
                continue  # "no privileges"
            fix = "" if kind == "read" else f"REVOKE {priv} ON {obj} FROM {match.group('to')};"
            found.append(Privilege(kind, priv.upper(), on, fix=fix))
        if grant_option:
            found.append(
                Privilege(
                    "admin",
                    "GRANT OPTION",
                    on,
                    fix=f"REVOKE GRANT OPTION ON {obj} FROM {match.group('to')};",
                )
            )
    return found, roles


class MySQLDialect(SourceDialect):
    """MySQL 5.7+/8: ``SET SESSION TRANSACTION READ ONLY`` and ``time_zone = '+00:00'``."""

    name = "mysql"
    sqlglot_dialect = "mysql"
    product = "MySQL"
    driver = "mysql+pymysql"
    default_port = 3306
    read_only_session = True
    read_only_how = (
        "SET SESSION TRANSACTION READ ONLY at connect (writes and DDL fail with error 1792; "
        "MySQL still lets a session write its own TEMPORARY tables)"
    )
    list_databases_sql = "SHOW DATABASES"
    maintenance_database = None  # the server URL without a database
    session_statements = ("SET SESSION TRANSACTION READ ONLY", "SET time_zone = '+00:00'")
    native_arrow_path = "connectorx_mysql"
    row_estimate_source = "information_schema.TABLES.TABLE_ROWS (InnoDB: an estimate)"
    admin_accounts = frozenset({"root"})
    error_codes: ClassVar[dict[str | int, Failure]] = {
        1045: "login",
        1698: "login",
        1044: "database",  # "access denied to database": missing, or not granted
        1049: "database",
        2003: "unreachable",
        2002: "unreachable",
        2006: "unreachable",
        2013: "unreachable",
        2005: "unknown_host",
        1040: "transient",
        1203: "transient",
        1142: "permission",
        1143: "permission",
        1146: "table",
        1054: "column",
    }

    def url(self, spec: ConnectorSpec, root: Any) -> sa.URL:
        url = super().url(spec, root)
        if url.get_driver_name() != "pymysql":
            return url
        return url.update_query_dict({"charset": "utf8mb4"}) if "charset" not in url.query else url

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        seconds = max(1, int(spec.connect_timeout.total_seconds()))
        # PyMySQL runs init_command inside connect(), before SQLAlchemy's first queries; a
        # connector's own init_command is refused by the option allowlist (etl/config/readonly.py)
        return {
            "connect_timeout": seconds,
            "read_timeout": 3600,
            "init_command": "SET SESSION TRANSACTION READ ONLY",
        }

    def on_connect(self, dbapi_connection: Any) -> None:
        cursor = dbapi_connection.cursor()
        for statement in self.session_statements:
            cursor.execute(statement)
        cursor.close()

    def read_only_probe(self, conn: Connection) -> str | None:
        # MariaDB has tx_read_only in every version (transaction_read_only only from 11.1);
        # MySQL 8 has only transaction_read_only (5.7.20+ both)
        if getattr(conn.dialect, "is_mariadb", False):
            return "SELECT @@session.tx_read_only"
        return "SELECT @@session.transaction_read_only"

    def clock(self) -> sa.ColumnElement[Any]:
        # a literal, not a bound 6: a server-side prepared statement (ODBC) takes no placeholder here
        return sa.literal_column("UTC_TIMESTAMP(6)")

    def error_code(self, error: BaseException) -> str | int | None:
        args = getattr(error, "args", ())
        return args[0] if args and isinstance(args[0], int) else None

    # ------------------------------------------------------------------ etl check

    def server_version(self, conn: Connection) -> tuple[str, str]:
        version, comment = conn.exec_driver_sql("SELECT VERSION(), @@version_comment").one()
        product = "MariaDB" if "mariadb" in f"{version} {comment}".lower() else "MySQL"
        return product, f"{version} ({comment})" if comment else str(version)

    def session_timezone(self, conn: Connection) -> str:
        session, system = conn.exec_driver_sql(
            "SELECT @@session.time_zone, @@system_time_zone"
        ).one()
        return f"{session} (server system zone: {system})"

    def session_read_only(self, conn: Connection) -> str:
        rows: dict[str, Any] = {
            str(name): value
            # '%%' is one or two wildcards, whether or not the driver formats the statement
            for name, value in conn.exec_driver_sql("SHOW SESSION VARIABLES LIKE '%%read_only'")
        }
        value = rows.get("transaction_read_only", rows.get("tx_read_only"))
        state = "yes" if str(value).upper() in ("ON", "1") else "NO"
        return f"{state}: {self.read_only_how}"

    def current_user(self, conn: Connection) -> str:
        return str(conn.exec_driver_sql("SELECT CURRENT_USER()").scalar())

    def privileges(self, conn: Connection, tables: Sequence[TableRef]) -> list[Privilege]:
        lines = [str(r[0]) for r in conn.exec_driver_sql("SHOW GRANTS FOR CURRENT_USER()")]
        found, roles = parse_grants(lines)
        for role in roles:
            try:
                role_lines = [str(r[0]) for r in conn.exec_driver_sql(f"SHOW GRANTS FOR {role}")]
            except sa.exc.DBAPIError:
                continue
            privs, _ = parse_grants(role_lines)
            found += [
                Privilege(p.kind, p.privilege, p.on, via=f"role {role}", fix=p.fix) for p in privs
            ]
        return [p for p in found if p.kind != "read" or p.on.startswith("server")]

    def grant_statements(
        self, conn: Connection, account: str, tables: Sequence[TableRef]
    ) -> list[str]:
        database = str(conn.exec_driver_sql("SELECT DATABASE()").scalar())
        user, _, host = account.partition("@")
        who = f"'{user}'@'{host or '%'}'"
        out = [f"CREATE USER {who} IDENTIFIED BY '...';"]
        out += [
            f"GRANT SELECT ON {_q(t.schema or database)}.{_q(t.name)} TO {who};" for t in tables
        ]
        return out

    # ------------------------------------------------------------------ etl discover

    def row_estimates(self, conn: Connection, schema: str | None) -> dict[str, int]:
        rows = conn.execute(
            sa.text(
                "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_TYPE = 'BASE TABLE'"
            ),
            {"schema": schema},
        )
        return {str(name): int(n) for name, n in rows if n is not None}

    def is_instant(self, type_: sa.types.TypeEngine[Any]) -> bool:
        # TIMESTAMP is stored in UTC and converted with the session time zone, pinned to UTC here
        return type(type_).__name__ == "TIMESTAMP"

    def timestamp_note(self, type_: sa.types.TypeEngine[Any]) -> str | None:
        fsp = getattr(type_, "fsp", None)
        digits = f"{fsp} fractional digits" if fsp else "whole seconds (extra digits are rounded)"
        if isinstance(type_, sa.TIMESTAMP) or type(type_).__name__ == "TIMESTAMP":
            return f"TIMESTAMP, {digits}: converted with the session time zone (pinned to UTC)"
        if isinstance(type_, sa.DateTime):
            return f"DATETIME, {digits}: naive, read as wall-clock time of the connector's timezone"
        return None
