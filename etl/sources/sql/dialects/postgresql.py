"""PostgreSQL through psycopg 3; sessions default to read-only transactions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.config.models import ConnectorSpec
from etl.sources.sql.dialects.base import (
    Failure,
    Kind,
    Privilege,
    SourceDialect,
    TableRef,
    first_words,
    quoter,
)

_q = quoter("postgresql")  # schema, table and account names in GRANT/REVOKE

# Roles whose membership lets an account write or run programs on the server.
_ADMIN_ROLES = {
    "pg_write_all_data": ("write", "INSERT, UPDATE, DELETE", "every table"),
    "pg_write_server_files": ("admin", "write files", "the server's file system"),
    "pg_execute_server_program": ("admin", "run programs", "the server host"),
    "pg_signal_backend": ("admin", "cancel or terminate", "other sessions"),
}

_ROLE_SQL = """\
SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"""

_MEMBER_SQL = """\
SELECT r.rolname FROM pg_catalog.pg_roles r
WHERE r.rolname <> current_user AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER')
ORDER BY r.rolname"""

# Tables (and views, which may be auto-updatable) the account can write, and whether PUBLIC can.
_TABLES_SQL = """\
SELECT n.nspname AS schema_name, c.relname AS table_name,
       pg_catalog.pg_get_userbyid(c.relowner) = current_user AS is_owner,
       pg_catalog.has_any_column_privilege(c.oid, 'INSERT') AS can_insert,
       pg_catalog.has_any_column_privilege(c.oid, 'UPDATE') AS can_update,
       pg_catalog.has_table_privilege(c.oid, 'DELETE') AS can_delete,
       pg_catalog.has_table_privilege(c.oid, 'TRUNCATE') AS can_truncate,
       pg_catalog.has_table_privilege(c.oid, 'TRIGGER') AS can_trigger,
       EXISTS (SELECT 1 FROM pg_catalog.aclexplode(c.relacl) a
               WHERE a.grantee = 0
                 AND a.privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'TRIGGER'))
         AS via_public
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND (pg_catalog.has_any_column_privilege(c.oid, 'INSERT')
       OR pg_catalog.has_any_column_privilege(c.oid, 'UPDATE')
       OR pg_catalog.has_table_privilege(c.oid, 'DELETE')
       OR pg_catalog.has_table_privilege(c.oid, 'TRUNCATE')
       OR pg_catalog.has_table_privilege(c.oid, 'TRIGGER'))
ORDER BY 1, 2"""

_SCHEMAS_SQL = """\
SELECT n.nspname AS schema_name,
       pg_catalog.pg_get_userbyid(n.nspowner) = current_user AS is_owner,
       EXISTS (SELECT 1 FROM pg_catalog.aclexplode(n.nspacl) a
               WHERE a.grantee = 0 AND a.privilege_type = 'CREATE') AS via_public
FROM pg_catalog.pg_namespace n
WHERE pg_catalog.has_schema_privilege(n.oid, 'CREATE')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1"""

_DATABASE_SQL = """\
SELECT current_database(), pg_catalog.has_database_privilege(current_database(), 'CREATE')"""

_SECDEF_SQL = """\
SELECT n.nspname, p.proname FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef AND pg_catalog.has_function_privilege(p.oid, 'EXECUTE')
  AND pg_catalog.pg_get_userbyid(p.proowner) <> current_user
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2"""

_ESTIMATES_SQL = """\
SELECT c.relname, c.reltuples::bigint FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm', 'f') AND n.nspname = COALESCE(:schema, current_schema())"""


JIT_SINCE = 110000  # server_version_num of PostgreSQL 11, the first with the jit setting


class PostgreSQLDialect(SourceDialect):
    """PostgreSQL: ``default_transaction_read_only`` set at connect time."""

    name = "postgresql"
    sqlglot_dialect = "postgres"
    product = "PostgreSQL"
    driver = "postgresql+psycopg"
    default_port = 5432
    read_only_session = True
    read_only_how = (
        "default_transaction_read_only = on at connect (a guard, not a security boundary: "
        "a session could switch it off; the grants below are what protects the data)"
    )
    list_databases_sql = (
        "SELECT datname FROM pg_catalog.pg_database "
        "WHERE datallowconn AND NOT datistemplate ORDER BY 1"
    )
    maintenance_database = "postgres"
    session_statements = (
        "SET SESSION default_transaction_read_only = on",
        "SET SESSION TimeZone = 'UTC'",
    )
    native_arrow_path = "adbc_postgresql"
    row_estimate_source = "pg_class.reltuples (as of the last VACUUM/ANALYZE)"
    admin_accounts = frozenset({"postgres"})
    error_codes: ClassVar[dict[str | int, Failure]] = {
        "28P01": "login",
        "28000": "login",
        "3D000": "database",
        "42501": "permission",
        "42P01": "table",
        "3F000": "table",  # schema does not exist
        "42703": "column",
        "53300": "transient",
        "57P03": "transient",
        "08001": "unreachable",
        "08006": "unreachable",
    }

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        return {
            "connect_timeout": max(1, int(spec.connect_timeout.total_seconds())),
            "options": "-c default_transaction_read_only=on -c TimeZone=UTC"
            " -c standard_conforming_strings=on",
            "application_name": "booking-etl",
        }

    def on_connect(self, dbapi_connection: Any) -> None:
        if type(dbapi_connection).__module__.startswith("psycopg"):
            # the startup options above made it read-only before the first statement. JIT costs
            # ~60 ms of a 0.34 s window query and buys nothing for these plain scans; it exists
            # from PostgreSQL 11, so it is switched off here, not as a startup option an older
            # server would refuse the connection for
            _keep_unrepresentable_times(dbapi_connection)
            info = getattr(dbapi_connection, "info", None)
            if getattr(info, "server_version", 0) >= JIT_SINCE:
                cursor = dbapi_connection.cursor()
                cursor.execute("SET jit = off")
                cursor.close()
                dbapi_connection.commit()
            return
        # another driver (ODBC): the same settings as the session's first, committed statements
        cursor = dbapi_connection.cursor()
        for statement in self.session_statements:
            cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()

    def read_only_probe(self, conn: Connection) -> str | None:
        return "SELECT pg_catalog.current_setting('transaction_read_only')"

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.func.clock_timestamp()

    def error_code(self, error: BaseException) -> str | int | None:
        return getattr(error, "sqlstate", None)

    # ------------------------------------------------------------------ etl check

    def server_version(self, conn: Connection) -> tuple[str, str]:
        return self.product, str(conn.exec_driver_sql("SHOW server_version").scalar())

    def session_timezone(self, conn: Connection) -> str:
        return str(conn.exec_driver_sql("SHOW TimeZone").scalar())

    def session_read_only(self, conn: Connection) -> str:
        value = conn.exec_driver_sql("SHOW default_transaction_read_only").scalar()
        state = "yes" if value == "on" else "NO"
        return f"{state}: {self.read_only_how}"

    def privileges(self, conn: Connection, tables: Sequence[TableRef]) -> list[Privilege]:
        found: list[Privilege] = []
        user = str(conn.execute(sa.select(sa.func.current_user())).scalar())
        role = conn.execute(sa.text(_ROLE_SQL)).mappings().first()
        if role is not None:
            for flag, what, kind in (
                ("rolsuper", "SUPERUSER", "admin"),
                ("rolcreaterole", "CREATEROLE", "admin"),
                ("rolcreatedb", "CREATEDB", "ddl"),
                ("rolbypassrls", "BYPASSRLS", "admin"),
                ("rolreplication", "REPLICATION", "admin"),
            ):
                if role[flag]:
                    found.append(
                        Privilege(
                            kind,  # type: ignore[arg-type]
                            what,
                            "server",
                            via="role attribute",
                            fix=f"ALTER ROLE {_q(user)} NO{what};",
                        )
                    )
        if role is not None and role["rolsuper"]:
            return found  # a superuser may do anything: roles and tables add nothing
        for name in [str(r[0]) for r in conn.execute(sa.text(_MEMBER_SQL))]:
            if name in _ADMIN_ROLES:
                kind, what, on = _ADMIN_ROLES[name]
                found.append(
                    Privilege(
                        kind,  # type: ignore[arg-type]
                        what,
                        on,
                        via=f"role {name}",
                        fix=f"REVOKE {name} FROM {_q(user)};",
                    )
                )
        found += self._table_privileges(conn, user)
        for row in conn.execute(sa.text(_SCHEMAS_SQL)):
            schema, owner, public = str(row[0]), bool(row[1]), bool(row[2])
            via = "owner" if owner else ("PUBLIC" if public else "")
            grantee = "PUBLIC" if public and not owner else _q(user)
            found.append(
                Privilege(
                    "ddl",
                    "CREATE",
                    f"schema {schema}",
                    via=via,
                    fix="" if owner else f"REVOKE CREATE ON SCHEMA {_q(schema)} FROM {grantee};",
                )
            )
        database, create = conn.execute(sa.text(_DATABASE_SQL)).one()
        if create:
            found.append(
                Privilege(
                    "ddl",
                    "CREATE (new schemas)",
                    f"database {database}",
                    fix=f"REVOKE CREATE ON DATABASE {_q(str(database))} FROM {_q(user)};",
                )
            )
        functions = [f"{r[0]}.{r[1]}" for r in conn.execute(sa.text(_SECDEF_SQL))]
        if functions:
            found.append(
                Privilege(
                    "execute",
                    "EXECUTE (SECURITY DEFINER: runs with its owner's rights)",
                    f"functions {first_words(functions, 10)}",
                )
            )
        return found

    def _table_privileges(self, conn: Connection, user: str) -> list[Privilege]:
        found: list[Privilege] = []
        for row in conn.execute(sa.text(_TABLES_SQL)).mappings():
            privs = [
                p
                for p, key in (
                    ("INSERT", "can_insert"),
                    ("UPDATE", "can_update"),
                    ("DELETE", "can_delete"),
                    ("TRUNCATE", "can_truncate"),
                    ("TRIGGER", "can_trigger"),
                )
                if row[key]
            ]
            table = f"{row['schema_name']}.{row['table_name']}"
            qualified = f"{_q(row['schema_name'])}.{_q(row['table_name'])}"
            if row["is_owner"]:
                via, fix = "owner", "let another role own the table"
            elif row["via_public"]:
                via = "PUBLIC"
                fix = f"REVOKE {', '.join(privs)} ON {qualified} FROM PUBLIC;"
            else:
                via = ""
                fix = f"REVOKE {', '.join(privs)} ON {qualified} FROM {_q(user)};"
            kind: Kind = "write" if set(privs) - {"TRIGGER"} else "ddl"
            found.append(Privilege(kind, ", ".join(privs), f"table {table}", via=via, fix=fix))
        return found

    def grant_statements(
        self, conn: Connection, account: str, tables: Sequence[TableRef]
    ) -> list[str]:
        database = str(conn.execute(sa.select(sa.func.current_database())).scalar())
        default = str(conn.execute(sa.select(sa.func.current_schema())).scalar())
        who = _q(account)
        out = [
            f"CREATE ROLE {who} LOGIN PASSWORD '...';",
            f"GRANT CONNECT ON DATABASE {_q(database)} TO {who};",
        ]
        schemas = sorted({t.schema or default for t in tables})
        out += [f"GRANT USAGE ON SCHEMA {_q(s)} TO {who};" for s in schemas]
        out += [f"GRANT SELECT ON {_q(t.schema or default)}.{_q(t.name)} TO {who};" for t in tables]
        out.append(f"ALTER ROLE {who} SET default_transaction_read_only = on;")
        return out

    # ------------------------------------------------------------------ etl discover

    def row_estimates(self, conn: Connection, schema: str | None) -> dict[str, int]:
        rows = conn.execute(sa.text(_ESTIMATES_SQL), {"schema": schema})
        # reltuples is -1 for a table never vacuumed or analyzed (PostgreSQL 14+)
        return {str(name): int(n) for name, n in rows if n is not None and n >= 0}

    def timestamp_note(self, type_: sa.types.TypeEngine[Any]) -> str | None:
        if isinstance(type_, sa.DateTime):
            if type_.timezone:
                return "timestamptz: an instant; converted to UTC, not shifted"
            return (
                "timestamp without time zone: read as wall-clock time of the connector's timezone"
            )
        return None


def _keep_unrepresentable_times(dbapi_connection: Any) -> None:
    """Read dates and timestamps Python cannot hold (``infinity``, ``-infinity``, years before 1
    or after 9999) as their text instead of failing the whole read: the mapping reports them as
    anomalies (or, listed under a column's ``sentinels``, reads them as no value)."""
    import psycopg
    from psycopg.types import datetime as pg_times

    def tolerant(base: type[Any]) -> type[Any]:
        class Tolerant(base):
            def load(self, data: Any) -> Any:
                try:
                    return super().load(data)
                except psycopg.DataError:
                    return bytes(data).decode("ascii", "replace")

        return Tolerant

    adapters = dbapi_connection.adapters
    adapters.register_loader("timestamp", tolerant(pg_times.TimestampLoader))
    adapters.register_loader("timestamptz", tolerant(pg_times.TimestamptzLoader))
    adapters.register_loader("date", tolerant(pg_times.DateLoader))
