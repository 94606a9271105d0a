"""Microsoft SQL Server through pyodbc (Microsoft ODBC Driver 18/17 or FreeTDS).

SQL Server has no read-only session: ``ApplicationIntent=ReadOnly`` only routes to a readable
secondary of an availability group. What keeps the data safe is the account (``db_datareader`` +
``db_denydatawriter``) and the statement guard; ``etl check`` reports what the account holds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from etl.config.models import ConnectorSpec
from etl.extras import missing_driver
from etl.sources.sql.dialects.base import Failure, Kind, Privilege, SourceDialect, TableRef, quoter
from etl.sources.sql.dialects.odbc import (
    DriverChoice,
    DriverMissing,
    choose_driver,
    installed_drivers,
)

_q = quoter("mssql")  # schema, table and account names in GRANT/REVOKE

# Native error numbers (the "(18456)" in a pyodbc message).
_ERRORS: dict[str | int, Failure] = {
    18456: "login",
    18452: "login",
    18486: "login",
    18487: "login",
    18488: "login",
    4060: "database",
    4064: "database",
    229: "permission",
    230: "permission",
    262: "permission",
    208: "table",
    207: "column",
    53: "unreachable",
    10060: "timeout",
    10061: "unreachable",
    11001: "unknown_host",
    233: "transient",
    1205: "transient",
    40613: "transient",
    40501: "transient",
    40197: "transient",
}

SERVER_PERMISSIONS_SQL = "SELECT permission_name FROM fn_my_permissions(NULL, 'SERVER')"
DATABASE_PERMISSIONS_SQL = "SELECT permission_name FROM fn_my_permissions(NULL, 'DATABASE')"
ROLES_SQL = """\
SELECT IS_SRVROLEMEMBER('sysadmin') AS sysadmin, IS_MEMBER('db_owner') AS db_owner,
       IS_MEMBER('db_datawriter') AS db_datawriter, IS_MEMBER('db_ddladmin') AS db_ddladmin,
       IS_MEMBER('db_denydatawriter') AS db_denydatawriter"""
# Object-level grants to the user or any role it is a member of.
OBJECT_GRANTS_SQL = """\
SELECT SCHEMA_NAME(o.schema_id) AS schema_name, o.name AS object_name, p.permission_name,
       USER_NAME(p.grantee_principal_id) AS grantee
FROM sys.database_permissions p JOIN sys.objects o ON o.object_id = p.major_id
WHERE p.class = 1 AND p.state IN ('G', 'W')
  AND p.permission_name IN ('INSERT', 'UPDATE', 'DELETE', 'ALTER', 'CONTROL', 'TAKE OWNERSHIP',
                            'EXECUTE', 'IMPERSONATE')
  AND (p.grantee_principal_id = DATABASE_PRINCIPAL_ID()
       OR IS_MEMBER(USER_NAME(p.grantee_principal_id)) = 1)
ORDER BY 1, 2, 3"""
# Effective rights on one table, whatever grants, roles and denies produce them.
TABLE_PERMS_SQL = """\
SELECT HAS_PERMS_BY_NAME(:obj, 'OBJECT', 'SELECT') AS can_select,
       HAS_PERMS_BY_NAME(:obj, 'OBJECT', 'INSERT') AS can_insert,
       HAS_PERMS_BY_NAME(:obj, 'OBJECT', 'UPDATE') AS can_update,
       HAS_PERMS_BY_NAME(:obj, 'OBJECT', 'DELETE') AS can_delete,
       HAS_PERMS_BY_NAME(:obj, 'OBJECT', 'ALTER') AS can_alter"""
ESTIMATES_SQL = """\
SELECT t.name, SUM(p.rows) AS row_count
FROM sys.tables t
JOIN sys.schemas s ON s.schema_id = t.schema_id
JOIN sys.partitions p ON p.object_id = t.object_id AND p.index_id IN (0, 1)
WHERE s.name = COALESCE(:schema, SCHEMA_NAME())
GROUP BY t.name"""
VERSION_SQL = """\
SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)),
       CAST(SERVERPROPERTY('Edition') AS nvarchar(128)),
       CAST(SERVERPROPERTY('ProductLevel') AS nvarchar(128))"""
TIMEZONE_SQL = "SELECT DATENAME(TZOFFSET, SYSDATETIMEOFFSET())"
UPDATEABILITY_SQL = "SELECT CAST(DATABASEPROPERTYEX(DB_NAME(), 'Updateability') AS nvarchar(32))"

_DB_READ = {
    "CONNECT",
    "SELECT",
    "SHOWPLAN",
    "VIEW DEFINITION",
    "VIEW DATABASE STATE",
    "VIEW DATABASE PERFORMANCE STATE",
    "VIEW ANY COLUMN ENCRYPTION KEY DEFINITION",
    "VIEW ANY COLUMN MASTER KEY DEFINITION",
    "REFERENCES",
}
_SERVER_READ = {
    "CONNECT SQL",
    "VIEW ANY DATABASE",
    "VIEW ANY DEFINITION",
    "VIEW SERVER STATE",
    "VIEW SERVER PERFORMANCE STATE",
    "VIEW ANY SECURITY DEFINITION",
    "VIEW ANY PERFORMANCE DEFINITION",
    "CONNECT ANY DATABASE",
}


def permission_kind(name: str, server: bool = False) -> Kind:
    """Whether a SQL Server permission (fn_my_permissions) reads, writes, changes or administers."""
    name = name.upper()
    if name in (_SERVER_READ if server else _DB_READ):
        return "read"
    if name in ("INSERT", "UPDATE", "DELETE"):
        return "write"
    if name == "EXECUTE":
        return "execute"
    if name.startswith(("CREATE", "ALTER", "DROP")) or name == "REFERENCES":
        return "ddl"
    return "admin"  # CONTROL, TAKE OWNERSHIP, IMPERSONATE, BACKUP DATABASE, ...


class MSSQLDialect(SourceDialect):
    """SQL Server: pyodbc with ``ApplicationIntent=ReadOnly``; the clock in UTC."""

    name = "mssql"
    sqlglot_dialect = "tsql"
    product = "SQL Server"
    driver = "mssql+pyodbc"
    default_port = 1433
    read_only_how = (
        "SQL Server has no read-only session (ApplicationIntent=ReadOnly only routes to a "
        "readable secondary); the account's grants and the statement guard protect the data"
    )
    list_databases_sql = "SELECT name FROM sys.databases ORDER BY name"
    maintenance_database = "master"
    row_estimate_source = "sys.partitions.rows"
    native_arrow_path = "arrow_odbc"
    odbc_typed_times = True
    admin_accounts = frozenset({"sa", "dbo"})
    error_codes: ClassVar[dict[str | int, Failure]] = _ERRORS

    def choose_driver(self, spec: ConnectorSpec) -> DriverChoice:
        """The ODBC driver this connector uses (raises DriverMissing)."""
        try:
            import pyodbc  # noqa: F401  (without it no ODBC driver can be listed or used)
        except ModuleNotFoundError as exc:
            missing = missing_driver(exc)
            if missing is not None:
                raise DriverMissing(*missing) from None
            raise
        except ImportError:
            pass  # installed without unixODBC: no driver is listed, and the message says why
        return choose_driver(spec.driver, installed_drivers())

    def url(self, spec: ConnectorSpec, root: Path) -> URL:
        url = super().url(spec, root)
        if spec.url is not None:
            return url
        choice = self.choose_driver(spec)
        query = dict(url.query)
        query.setdefault("ApplicationIntent", "ReadOnly")
        if choice.is_freetds:
            query = _freetds_options(query)
            query.setdefault("Port", str(url.port or self.default_port))
            url = url._replace(port=None)  # URL.set() cannot clear a value
        query["driver"] = choice.name
        return url.set(query=query)

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        return {"timeout": max(1, int(spec.connect_timeout.total_seconds()))}

    def driver_notes(self, spec: ConnectorSpec) -> list[str]:
        if spec.url is not None:
            return ["driver and options as given in the connector's url"]
        choice = self.choose_driver(spec)
        notes = [f"ODBC driver '{choice.name}': {choice.reason}"]
        if choice.is_freetds:
            notes.append(
                "FreeTDS: Encrypt is sent as Encryption (yes -> require, no -> request); "
                "TDS_Version 7.4 and ClientCharset UTF-8 unless set in options"
            )
            if "TrustServerCertificate" in spec.options:
                notes.append(
                    "FreeTDS has no TrustServerCertificate: it checks the server certificate "
                    "only when freetds.conf names a 'ca file'"
                )
        return notes

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.func.sysutcdatetime()

    def error_code(self, error: BaseException) -> str | int | None:
        for number in re.findall(r"\((\d{2,6})\)", str(error)):
            if int(number) in _ERRORS:
                return int(number)
        return None

    # ------------------------------------------------------------------ etl check

    def server_version(self, conn: Connection) -> tuple[str, str]:
        version, edition, level = conn.exec_driver_sql(VERSION_SQL).one()
        return self.product, f"{version} ({level}, {edition})"

    def session_timezone(self, conn: Connection) -> str:
        offset = conn.exec_driver_sql(TIMEZONE_SQL).scalar()
        return f"server offset {offset} (SQL Server has no session time zone)"

    def session_read_only(self, conn: Connection) -> str:
        state = conn.exec_driver_sql(UPDATEABILITY_SQL).scalar()
        return f"NO (database is {state}): {self.read_only_how}"

    def current_user(self, conn: Connection) -> str:
        return str(conn.exec_driver_sql("SELECT SUSER_SNAME()").scalar())

    def privileges(self, conn: Connection, tables: Sequence[TableRef]) -> list[Privilege]:
        user = self.current_user(conn)
        roles = conn.exec_driver_sql(ROLES_SQL).mappings().one()
        server = [str(r[0]) for r in conn.exec_driver_sql(SERVER_PERMISSIONS_SQL)]
        database = [str(r[0]) for r in conn.exec_driver_sql(DATABASE_PERMISSIONS_SQL)]
        objects = [tuple(r) for r in conn.exec_driver_sql(OBJECT_GRANTS_SQL)]
        table_perms = {}
        for table in tables:
            obj = self.quote(conn, table.schema, table.name)
            table_perms[obj] = dict(
                conn.execute(sa.text(TABLE_PERMS_SQL), {"obj": obj}).mappings().one()
            )
        return interpret_privileges(user, dict(roles), server, database, objects, table_perms)

    def grant_statements(
        self, conn: Connection, account: str, tables: Sequence[TableRef]
    ) -> list[str]:
        database = str(conn.exec_driver_sql("SELECT DB_NAME()").scalar())
        who = _q(account)
        out = [
            f"CREATE LOGIN {who} WITH PASSWORD = '...';",
            f"USE {_q(database)};",
            f"CREATE USER {who} FOR LOGIN {who};",
        ]
        out += [f"GRANT SELECT ON {_q(t.schema or 'dbo')}.{_q(t.name)} TO {who};" for t in tables]
        out.append(f"ALTER ROLE db_denydatawriter ADD MEMBER {who};")
        return out

    # ------------------------------------------------------------------ etl discover

    def row_estimates(self, conn: Connection, schema: str | None) -> dict[str, int]:
        rows = conn.execute(sa.text(ESTIMATES_SQL), {"schema": schema})
        return {str(name): int(n) for name, n in rows if n is not None}

    def timestamp_note(self, type_: sa.types.TypeEngine[Any]) -> str | None:
        kind = type(type_).__name__.upper()
        if kind == "SMALLDATETIME":
            return "smalldatetime: whole minutes; events in the same minute cannot be ordered"
        if kind == "DATETIME2":
            digits = getattr(type_, "precision", None)
            digits = 7 if digits is None else digits
            return f"datetime2({digits}): {digits} fractional digits" + (
                " (the 7th, 100 ns, is cut to microseconds)" if digits > 6 else ""
            )
        if kind == "DATETIMEOFFSET":
            return "datetimeoffset: an instant with its offset; converted to UTC"
        if kind == "DATETIME":
            return (
                "datetime: 1/300 s ticks (.000/.003/.007); since SQL Server 2016 it no longer "
                "equals a datetime2 parameter exactly"
            )
        return None


def interpret_privileges(
    user: str,
    roles: dict[str, Any],
    server: Sequence[str],
    database: Sequence[str],
    objects: Sequence[tuple[Any, ...]],
    table_perms: dict[str, dict[str, Any]],
) -> list[Privilege]:
    """The report from the rows of the queries above (pure: tested without a server)."""
    found: list[Privilege] = []
    who = _q(user)
    if roles.get("sysadmin") == 1:
        found.append(
            Privilege("admin", "sysadmin", "server", via="server role", fix="use another login")
        )
    for role, kind in (("db_owner", "admin"), ("db_datawriter", "write"), ("db_ddladmin", "ddl")):
        if roles.get(role) == 1:
            found.append(
                Privilege(
                    kind,  # type: ignore[arg-type]
                    role,
                    "database",
                    via="database role",
                    fix=f"ALTER ROLE {role} DROP MEMBER {who};",
                )
            )
    for name in server:
        kind = permission_kind(name, server=True)
        if kind != "read":
            found.append(Privilege(kind, name, "server"))
    for name in database:
        kind = permission_kind(name)
        if kind != "read":
            found.append(Privilege(kind, name, "database", fix=f"REVOKE {name} FROM {who};"))
    for schema, obj, permission, grantee in objects:
        kind = permission_kind(str(permission))
        via = "" if str(grantee) == user else f"role {grantee}"
        found.append(
            Privilege(
                kind,
                str(permission),
                f"object {schema}.{obj}",
                via=via,
                fix=f"REVOKE {permission} ON {_q(str(schema))}.{_q(str(obj))} FROM {_q(str(grantee))};",
            )
        )
    for obj, perms in table_perms.items():
        writes = [
            p.upper() for p in ("insert", "update", "delete", "alter") if perms.get(f"can_{p}") == 1
        ]
        if writes:
            found.append(
                Privilege(
                    "write" if set(writes) - {"ALTER"} else "ddl",
                    ", ".join(writes),
                    f"table {obj} (effective)",
                    fix=f"ALTER ROLE db_denydatawriter ADD MEMBER {who};",
                )
            )
    return found


def _freetds_options(query: dict[str, Any]) -> dict[str, Any]:
    """Microsoft driver keywords translated to FreeTDS's (which ignores the ones it does not know)."""
    out = dict(query)
    encrypt = out.pop("Encrypt", None)
    if encrypt is not None and "Encryption" not in out:
        value = str(encrypt).lower()
        out["Encryption"] = {
            "yes": "require",
            "true": "require",
            "mandatory": "require",
            "strict": "strict",
        }.get(value, "request")
    out.pop("TrustServerCertificate", None)
    out.setdefault("TDS_Version", "7.4")
    out.setdefault("ClientCharset", "UTF-8")
    return out
