"""Oracle through python-oracledb: thin mode, or thick mode when an Instant Client is installed.

Every transaction starts with ``SET TRANSACTION READ ONLY`` (sent below the statement guard by
the engine's ``begin`` event): any write in it fails with ORA-01456.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from etl.config.models import ConnectorSpec
from etl.sources.sql.dialects.base import Failure, Kind, Privilege, SourceDialect, TableRef, quoter

log = logging.getLogger(__name__)
_q = quoter("oracle")  # schema, table and account names in GRANT/REVOKE

# Where an Instant Client usually lives besides the library search path.
_CLIENT_GLOBS = (
    "/opt/oracle/instantclient*",
    "/usr/lib/oracle/*/client64/lib",
    "/usr/local/lib/instantclient*",
)

SESSION_PRIVS_SQL = "SELECT privilege FROM session_privs ORDER BY privilege"
SESSION_ROLES_SQL = "SELECT role FROM session_roles ORDER BY role"
USER_TAB_PRIVS_SQL = """\
SELECT owner, table_name, privilege, grantee FROM user_tab_privs
WHERE grantee = USER ORDER BY owner, table_name, privilege"""
ROLE_TAB_PRIVS_SQL = """\
SELECT role, owner, table_name, privilege FROM role_tab_privs
ORDER BY role, owner, table_name, privilege"""
OWNED_SQL = "SELECT COUNT(*) FROM user_tables"
ESTIMATES_SQL = """\
SELECT table_name, num_rows FROM all_tables
WHERE owner = COALESCE(:owner, SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA'))"""
VERSION_SQL = """\
SELECT product, version FROM product_component_version WHERE product LIKE 'Oracle%'"""
TIMEZONE_SQL = "SELECT SESSIONTIMEZONE, DBTIMEZONE FROM dual"

_ADMIN_ROLES = {
    "DBA",
    "IMP_FULL_DATABASE",
    "EXP_FULL_DATABASE",
    "DATAPUMP_IMP_FULL_DATABASE",
    "DATAPUMP_EXP_FULL_DATABASE",
    "SYSDBA",
    "SYSOPER",
}
_READ_SYSTEM = {
    "CREATE SESSION",
    "SELECT ANY TABLE",
    "READ ANY TABLE",
    "SELECT ANY DICTIONARY",
    "SELECT_CATALOG_ROLE",
    "SET CONTAINER",
}


def system_privilege_kind(name: str) -> Kind:
    """A system privilege from SESSION_PRIVS: read, write (``INSERT ANY TABLE``), DDL or admin."""
    name = name.upper()
    if name in _READ_SYSTEM:
        return "read"
    if any(word in name for word in ("INSERT", "UPDATE", "DELETE", "LOCK ANY")):
        return "write"
    if name.startswith("EXECUTE"):
        return "execute"
    if name.startswith(("CREATE", "ALTER", "DROP", "COMMENT", "UNLIMITED TABLESPACE")):
        return "ddl"
    return "admin"  # GRANT ANY, BECOME USER, SYSDBA, AUDIT ANY, ...


def object_privilege_kind(name: str) -> Kind:
    """An object privilege (USER_TAB_PRIVS, ROLE_TAB_PRIVS)."""
    name = name.upper()
    if name in ("SELECT", "READ"):
        return "read"
    if name in ("INSERT", "UPDATE", "DELETE"):
        return "write"
    if name == "EXECUTE":
        return "execute"
    if name in (
        "ALTER",
        "INDEX",
        "REFERENCES",
        "DEBUG",
        "FLASHBACK",
        "ON COMMIT REFRESH",
        "QUERY REWRITE",
    ):
        return "ddl"
    return "admin"


def interpret_privileges(
    user: str,
    system: Sequence[str],
    roles: Sequence[str],
    direct: Sequence[tuple[Any, ...]],
    via_roles: Sequence[tuple[Any, ...]],
    owned_tables: int,
) -> list[Privilege]:
    """The report from the rows of the dictionary views above (pure: tested without a server)."""
    found: list[Privilege] = []
    who = _q(user)
    for role in roles:
        if role.upper() in _ADMIN_ROLES:
            found.append(
                Privilege("admin", role, "database", via="role", fix=f"REVOKE {role} FROM {who};")
            )
        elif role.upper() == "RESOURCE":
            found.append(
                Privilege("ddl", role, "database", via="role", fix=f"REVOKE {role} FROM {who};")
            )
    for name in system:
        kind = system_privilege_kind(name)
        if kind != "read":
            found.append(Privilege(kind, name, "database", fix=f"REVOKE {name} FROM {who};"))
        elif name.upper() in ("SELECT ANY TABLE",):
            found.append(
                Privilege(
                    "read",
                    name,
                    "database",
                    fix="grant READ on the mapped tables instead (SELECT also allows LOCK TABLE)",
                )
            )
    for owner, table, privilege, _grantee in direct:
        kind = object_privilege_kind(str(privilege))
        if kind != "read" or str(privilege).upper() == "SELECT":
            found.append(
                Privilege(
                    kind,
                    str(privilege),
                    f"table {owner}.{table}",
                    fix=_object_fix(str(privilege), str(owner), str(table), who),
                )
            )
    for role, owner, table, privilege in via_roles:
        kind = object_privilege_kind(str(privilege))
        if kind != "read":
            found.append(
                Privilege(
                    kind,
                    str(privilege),
                    f"table {owner}.{table}",
                    via=f"role {role}",
                    fix=f"REVOKE {privilege} ON {_q(str(owner))}.{_q(str(table))} FROM {_q(str(role))};",
                )
            )
    if owned_tables:
        found.append(
            Privilege(
                "write",
                f"owner of {owned_tables} table(s)",
                f"schema {user}",
                via="owner",
                fix="read with an account that owns no tables",
            )
        )
    return found


def _object_fix(privilege: str, owner: str, table: str, who: str) -> str:
    if privilege.upper() == "SELECT":
        return (
            f"REVOKE SELECT ON {_q(owner)}.{_q(table)} FROM {who}; "
            f"GRANT READ ON {_q(owner)}.{_q(table)} TO {who};  -- SELECT also allows LOCK TABLE"
        )
    return f"REVOKE {privilege} ON {_q(owner)}.{_q(table)} FROM {who};"


def instant_client() -> Path | None:
    """The directory of an installed Oracle Instant Client (``libclntsh``), if there is one."""
    candidates: list[str] = []
    home = os.environ.get("ORACLE_HOME")
    if home:
        candidates += [home, os.path.join(home, "lib")]
    candidates += [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    for pattern in _CLIENT_GLOBS:
        candidates += sorted(glob.glob(pattern), reverse=True)
    for directory in candidates:
        path = Path(directory)
        if path.is_dir() and (any(path.glob("libclntsh.so*")) or any(path.glob("libclntsh.dylib"))):
            return path
    return None


class OracleDialect(SourceDialect):
    """Oracle 12c+: service name or SID; ``SET TRANSACTION READ ONLY`` per transaction."""

    name = "oracle"
    sqlglot_dialect = "oracle"
    product = "Oracle"
    driver = "oracle+oracledb"
    default_port = 1521
    read_only_session = True
    read_only_how = (
        "SET TRANSACTION READ ONLY as the first statement of every transaction (ORA-01456 on write)"
    )
    begin_statement = "SET TRANSACTION READ ONLY"
    native_arrow_path = "oracledb"
    row_estimate_source = "ALL_TABLES.NUM_ROWS (as of the last statistics gathering)"
    admin_accounts = frozenset({"SYS", "SYSTEM"})
    error_codes: ClassVar[dict[str | int, Failure]] = {
        "ORA-01017": "login",
        "ORA-28000": "login",
        "ORA-28001": "login",
        "ORA-01005": "login",
        "ORA-12514": "database",
        "ORA-12505": "database",
        "DPY-6001": "database",
        "ORA-12541": "unreachable",
        "ORA-12543": "unreachable",
        "ORA-03113": "unreachable",
        "ORA-03135": "unreachable",
        "DPY-6005": "unreachable",
        "DPY-4011": "unreachable",
        "ORA-12545": "unknown_host",
        "ORA-12170": "timeout",
        "ORA-12516": "transient",
        "ORA-12519": "transient",
        "ORA-12520": "transient",
        "ORA-12528": "transient",
        "ORA-01033": "transient",
        "ORA-01034": "transient",
        "ORA-00942": "table",  # also when the account may not see it: Oracle does not say which
        "ORA-00904": "column",
        "ORA-01031": "permission",
    }

    def url(self, spec: ConnectorSpec, root: Path) -> URL:
        url = super().url(spec, root)
        if spec.url is not None:
            return url
        query = dict(url.query)
        if spec.service_name:
            query["service_name"] = spec.service_name
            return url._replace(database=None).set(query=query)
        return url.set(database=spec.sid, query=query)

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        return {"tcp_connect_timeout": spec.connect_timeout.total_seconds()}

    def engine_options(self, spec: ConnectorSpec) -> dict[str, Any]:
        client = instant_client()
        if client is None:
            return {}
        in_search_path = str(client) in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
        return {"thick_mode": True if in_search_path else {"lib_dir": str(client)}}

    def driver_notes(self, spec: ConnectorSpec) -> list[str]:
        client = instant_client()
        if client is None:
            return [
                "python-oracledb thin mode (no Oracle Instant Client found in ORACLE_HOME, "
                "LD_LIBRARY_PATH or /opt/oracle/instantclient*)"
            ]
        return [f"python-oracledb thick mode with the Instant Client in {client}"]

    def clock(self) -> sa.ColumnElement[Any]:
        return sa.literal_column("SYS_EXTRACT_UTC(SYSTIMESTAMP)")

    def error_code(self, error: BaseException) -> str | int | None:
        args = getattr(error, "args", ())
        code = getattr(args[0], "full_code", None) if args else None
        return str(code) if code else None

    # ------------------------------------------------------------------ etl check

    def server_version(self, conn: Connection) -> tuple[str, str]:
        row = conn.exec_driver_sql(VERSION_SQL).first()
        if row is None:
            return super().server_version(conn)
        return str(row[0]).strip(), str(row[1])

    def session_timezone(self, conn: Connection) -> str:
        session, database = conn.exec_driver_sql(TIMEZONE_SQL).one()
        return f"{session} (database time zone {database})"

    def session_read_only(self, conn: Connection) -> str:
        return f"yes: {self.read_only_how}"

    def current_user(self, conn: Connection) -> str:
        return str(conn.exec_driver_sql("SELECT USER FROM dual").scalar())

    def privileges(self, conn: Connection, tables: Sequence[TableRef]) -> list[Privilege]:
        user = self.current_user(conn)
        system = [str(r[0]) for r in conn.exec_driver_sql(SESSION_PRIVS_SQL)]
        roles = [str(r[0]) for r in conn.exec_driver_sql(SESSION_ROLES_SQL)]
        direct = [tuple(r) for r in conn.exec_driver_sql(USER_TAB_PRIVS_SQL)]
        via_roles = [tuple(r) for r in conn.exec_driver_sql(ROLE_TAB_PRIVS_SQL)]
        owned = int(conn.exec_driver_sql(OWNED_SQL).scalar() or 0)
        return interpret_privileges(user, system, roles, direct, via_roles, owned)

    def grant_statements(
        self, conn: Connection, account: str, tables: Sequence[TableRef]
    ) -> list[str]:
        default = str(
            conn.exec_driver_sql(
                "SELECT SYS_CONTEXT('USERENV', 'CURRENT_SCHEMA') FROM dual"
            ).scalar()
        )
        who = _q(account)
        out = [f'CREATE USER {who} IDENTIFIED BY "...";', f"GRANT CREATE SESSION TO {who};"]
        out += [f"GRANT READ ON {_q(t.schema or default)}.{_q(t.name)} TO {who};" for t in tables]
        return out

    # ------------------------------------------------------------------ etl discover

    def row_estimates(self, conn: Connection, schema: str | None) -> dict[str, int]:
        owner = schema.upper() if schema and schema.islower() else schema
        rows = conn.execute(sa.text(ESTIMATES_SQL), {"owner": owner})
        normalize = conn.dialect.normalize_name
        return {str(normalize(name)): int(n) for name, n in rows if n is not None}

    def timestamp_note(self, type_: sa.types.TypeEngine[Any]) -> str | None:
        kind = type(type_).__name__.upper()
        if kind == "DATE":
            return "Oracle DATE: whole seconds, no time zone"
        if isinstance(type_, sa.DateTime) and type_.timezone:
            return "TIMESTAMP WITH TIME ZONE: an instant; converted to UTC"
        if isinstance(type_, sa.DateTime):
            return "TIMESTAMP: naive, read as wall-clock time of the connector's timezone"
        return None
