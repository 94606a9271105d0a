"""etl.sources.sql.dialects: URLs, driver choice, error classification, privilege parsing and the catalog SQL.

SQL Server and Oracle cannot run here: their catalog queries are parsed in their own SQL dialect,
must pass the statement guard, and their interpretation is tested on rows shaped like theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pymysql
import pytest
import sqlalchemy as sa
import sqlglot
from sqlalchemy.dialects import mssql, oracle

from etl.config.models import ConnectorSpec
from etl.sources.sql.dialects import get_dialect, odbc
from etl.sources.sql.dialects import mssql as mssql_mod
from etl.sources.sql.dialects import oracle as oracle_mod
from etl.sources.sql.dialects import postgresql as pg_mod
from etl.sources.sql.dialects.mysql import parse_grants, privilege_kind
from etl.sources.sql.engine import open_source, refusal
from tests.conftest import import_or_skip

ROOT = Path("/nonexistent-project")


def _odbc(state: str, message: str) -> Callable[[], Exception]:
    """A pyodbc error, made when the test runs (pyodbc needs unixodbc's libodbc to import)."""
    return lambda: import_or_skip("pyodbc", "apt-get install unixodbc").Error(state, message)


def spec(**values: Any) -> ConnectorSpec:
    return ConnectorSpec.model_validate(values)


# --------------------------------------------------------------------------- URLs and drivers


def test_mssql_prefers_driver_18_then_17_then_freetds(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = ["PostgreSQL Unicode", "FreeTDS", "ODBC Driver 17 for SQL Server"]
    monkeypatch.setattr(mssql_mod, "installed_drivers", lambda: tuple(installed))
    dialect = get_dialect("mssql")
    conn = spec(dialect="mssql", host="db", database="HYDRA", user="u", password="p")
    url = dialect.url(conn, ROOT)
    assert url.query["driver"] == "ODBC Driver 17 for SQL Server"
    assert url.query["ApplicationIntent"] == "ReadOnly"
    assert "ODBC Driver 18 for SQL Server: not installed" in dialect.driver_notes(conn)[0]
    installed.append("ODBC Driver 18 for SQL Server")
    assert dialect.url(conn, ROOT).query["driver"] == "ODBC Driver 18 for SQL Server"


def test_mssql_encrypt_options_reach_the_microsoft_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mssql_mod, "installed_drivers", lambda: ("ODBC Driver 18 for SQL Server",))
    conn = spec(
        dialect="mssql",
        host="db",
        port=14330,
        database="HYDRA",
        user="u",
        password="p;w}d",
        options={"Encrypt": "yes", "TrustServerCertificate": True},
    )
    url = get_dialect("mssql").url(conn, ROOT)
    (connect_string,), _ = mssql.pyodbc.dialect().create_connect_args(url)
    assert "DRIVER={ODBC Driver 18 for SQL Server}" in connect_string
    assert "Server=db,14330" in connect_string
    assert "Encrypt=yes" in connect_string and "TrustServerCertificate=yes" in connect_string
    assert "PWD={p;w}}d}" in connect_string  # quoted: a ';' cannot end the password early


def test_freetds_gets_its_own_keywords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mssql_mod, "installed_drivers", lambda: ("FreeTDS",))
    dialect = get_dialect("mssql")
    conn = spec(
        dialect="mssql",
        host="db",
        database="HYDRA",
        user="u",
        options={"Encrypt": "yes", "TrustServerCertificate": "yes"},
    )
    (connect_string,), _ = mssql.pyodbc.dialect().create_connect_args(dialect.url(conn, ROOT))
    parts = dict(p.split("=", 1) for p in connect_string.split(";"))
    assert parts["DRIVER"] == "{FreeTDS}" and parts["Server"] == "db" and parts["Port"] == "1433"
    assert parts["Encryption"] == "require" and "Encrypt" not in parts
    assert parts["TDS_Version"] == "7.4" and parts["ClientCharset"] == "UTF-8"
    assert "TrustServerCertificate" not in parts
    assert any("ca file" in note for note in dialect.driver_notes(conn))


def test_no_sql_server_driver_says_what_is_installed_and_how_to_get_one() -> None:
    with pytest.raises(odbc.DriverMissing) as info:
        odbc.choose_driver(None, ["PostgreSQL Unicode", "MariaDB Unicode"])
    assert "installed ODBC drivers: PostgreSQL Unicode, MariaDB Unicode" in info.value.message
    assert "tdsodbc" in info.value.hint and "ODBC Driver 18" in info.value.hint


def test_a_named_driver_that_is_not_installed_is_refused_with_a_suggestion() -> None:
    with pytest.raises(odbc.DriverMissing) as info:
        odbc.choose_driver("freetds", ["FreeTDS"])
    assert "'freetds' is not installed" in info.value.message
    assert "did you mean 'FreeTDS'?" in info.value.hint


def test_oracle_service_name_sid_and_read_only_transactions() -> None:
    dialect = get_dialect("oracle")
    by_service = dialect.url(spec(dialect="oracle", host="h", service_name="PRD.x", user="u"), ROOT)
    assert by_service.query["service_name"] == "PRD.x" and by_service.database is None
    by_sid = dialect.url(spec(dialect="oracle", host="h", sid="PRD", user="u"), ROOT)
    assert by_sid.database == "PRD" and by_sid.port == 1521
    assert dialect.begin_statement == "SET TRANSACTION READ ONLY"
    assert refusal("SET TRANSACTION READ WRITE", "oracle") is not None  # only the dialect sends it


def test_oracle_thick_mode_only_with_an_instant_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORACLE_HOME", raising=False)
    monkeypatch.setenv("LD_LIBRARY_PATH", "")
    monkeypatch.setattr(oracle_mod, "_CLIENT_GLOBS", ())
    dialect = get_dialect("oracle")
    conn = spec(dialect="oracle", host="h", service_name="s", user="u")
    assert dialect.engine_options(conn) == {}
    assert "thin mode" in dialect.driver_notes(conn)[0]
    client = tmp_path / "instantclient_23_5"
    client.mkdir()
    (client / "libclntsh.so.23.1").touch()
    monkeypatch.setenv("ORACLE_HOME", str(client))
    assert dialect.engine_options(conn) == {"thick_mode": {"lib_dir": str(client)}}
    monkeypatch.setenv("LD_LIBRARY_PATH", str(client))
    assert dialect.engine_options(conn) == {"thick_mode": True}
    assert "thick mode" in dialect.driver_notes(conn)[0]


def test_a_pyodbc_url_gets_pyodbc_connect_arguments() -> None:
    dialect = get_dialect("mariadb")
    conn = spec(dialect="mariadb", url="mysql+pyodbc://u@h/db?driver=MariaDB+Unicode")
    url = dialect.url(conn, ROOT)
    assert "charset" not in url.query  # a PyMySQL keyword ODBC would not understand
    assert dialect.dbapi_connect_args(conn, url) == {"timeout": 15}
    native = spec(dialect="mariadb", host="h", database="db")
    assert dialect.dbapi_connect_args(native, dialect.url(native, ROOT))["connect_timeout"] == 15


# --------------------------------------------------------------------------- failures


def _ora(code: str, message: str) -> Exception:
    return Exception(SimpleNamespace(full_code=code, message=message))


@pytest.mark.parametrize(
    ("dialect", "error", "kind"),
    [
        ("postgresql", psycopg.errors.lookup("28P01")("password authentication failed"), "login"),
        ("postgresql", psycopg.errors.lookup("3D000")('database "x" does not exist'), "database"),
        (
            "postgresql",
            psycopg.errors.lookup("42501")("permission denied for table t"),
            "permission",
        ),
        ("postgresql", psycopg.OperationalError("connection refused"), "unreachable"),
        ("postgresql", psycopg.OperationalError("could not translate host name"), "unknown_host"),
        ("postgresql", psycopg.OperationalError("connection timeout expired"), "timeout"),
        ("mysql", pymysql.err.OperationalError(1045, "Access denied for user 'u'"), "login"),
        ("mariadb", pymysql.err.OperationalError(1049, "Unknown database 'x'"), "database"),
        (
            "mariadb",
            pymysql.err.OperationalError(2003, "Can't connect to MySQL server"),
            "unreachable",
        ),
        ("mariadb", pymysql.err.OperationalError(1040, "Too many connections"), "transient"),
        ("mariadb", pymysql.err.ProgrammingError(1142, "SELECT command denied"), "permission"),
        (
            "mssql",
            _odbc(
                "28000",
                "[28000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]"
                "Login failed for user 'etl'. (18456) (SQLDriverConnect)",
            ),
            "login",
        ),
        (
            "mssql",
            _odbc(
                "42000",
                '[42000] [SQL Server]Cannot open database "HYDRA" requested '
                "by the login. The login failed. (4060) (SQLDriverConnect)",
            ),
            "database",
        ),
        (
            "mssql",
            _odbc(
                "42000",
                "[42000] [SQL Server]The SELECT permission was denied on the "
                "object 'BUCHUNGEN'. (229) (SQLExecDirectW)",
            ),
            "permission",
        ),
        (
            "mssql",
            _odbc("08001", "[08001] [FreeTDS][SQL Server]Unable to connect to data source"),
            "unreachable",
        ),
        ("mssql", _odbc("HYT00", "[HYT00] [Microsoft]Login timeout expired"), "timeout"),
        ("oracle", _ora("ORA-01017", "invalid username/password; logon denied"), "login"),
        ("oracle", _ora("ORA-12514", "listener does not currently know of service"), "database"),
        ("oracle", _ora("DPY-6005", "cannot connect to database"), "unreachable"),
        ("oracle", _ora("ORA-01031", "insufficient privileges"), "permission"),
    ],
)
def test_driver_errors_are_classified(
    dialect: str, error: Exception | Callable[[], Exception], kind: str
) -> None:
    if not isinstance(error, Exception):
        error = error()
    assert get_dialect(dialect).classify(error) == kind
    wrapped = sa.exc.OperationalError("SELECT 1", None, error)  # as SQLAlchemy raises it
    assert get_dialect(dialect).classify(wrapped) == kind


# --------------------------------------------------------------------------- privileges

MYSQL_GRANTS = [
    "GRANT USAGE ON *.* TO `etl`@`%` IDENTIFIED BY PASSWORD '*ABC'",
    "GRANT SELECT, INSERT, UPDATE (`STATUS`, `ENDE`) ON `mes`.`buchungen` TO `etl`@`%`",
    "GRANT ALL PRIVILEGES ON `scratch`.* TO `etl`@`%` WITH GRANT OPTION",
    "GRANT BACKUP_ADMIN,BINLOG_ADMIN ON *.* TO `etl`@`%`",
    "GRANT `reporting`@`%`,`loader` TO `etl`@`%`",
    "GRANT EXECUTE ON PROCEDURE `mes`.`close_order` TO `etl`@`%`",
]


def test_mysql_show_grants_lines_become_privileges_and_roles() -> None:
    found, roles = parse_grants(MYSQL_GRANTS)
    assert roles == ["`reporting`@`%`", "`loader`"]
    by = {(p.privilege, p.on): p for p in found}
    assert by[("SELECT", "mes.buchungen")].kind == "read"
    assert by[("INSERT", "mes.buchungen")].kind == "write"
    assert by[("UPDATE (`STATUS`, `ENDE`)", "mes.buchungen")].kind == "write"
    assert by[("ALL PRIVILEGES", "scratch.*")].kind == "write"  # on one database
    assert (
        by[("GRANT OPTION", "scratch.*")].fix
        == "REVOKE GRANT OPTION ON `scratch`.* FROM `etl`@`%`;"
    )
    assert by[("BACKUP_ADMIN", "server (every database)")].kind == "admin"
    assert by[("EXECUTE", "PROCEDURE mes.close_order")].kind == "execute"
    assert not any(p.privilege == "USAGE" for p in found)
    assert privilege_kind("create temporary tables") == "ddl"


def test_sql_server_permissions_are_interpreted() -> None:
    found = mssql_mod.interpret_privileges(
        "plant\\etl",
        {"sysadmin": 0, "db_owner": 0, "db_datawriter": 1, "db_ddladmin": 0},
        ["CONNECT SQL", "VIEW ANY DATABASE"],
        ["CONNECT", "SELECT", "INSERT", "UPDATE", "DELETE", "EXECUTE", "CREATE TABLE"],
        [("dbo", "BUCHUNGEN", "ALTER", "etl_loaders")],
        {"[dbo].[BUCHUNGEN]": {"can_select": 1, "can_insert": 1, "can_update": 0, "can_delete": 0}},
    )
    kinds = {(p.privilege, p.on): p.kind for p in found}
    assert kinds[("db_datawriter", "database")] == "write"
    assert kinds[("INSERT", "database")] == "write"
    assert kinds[("EXECUTE", "database")] == "execute"
    assert kinds[("CREATE TABLE", "database")] == "ddl"
    assert kinds[("ALTER", "object dbo.BUCHUNGEN")] == "ddl"
    assert kinds[("INSERT", "table [dbo].[BUCHUNGEN] (effective)")] == "write"
    assert ("SELECT", "database") not in kinds and ("CONNECT SQL", "server") not in kinds
    role = next(p for p in found if p.privilege == "ALTER")
    assert role.via == "role etl_loaders"


def test_oracle_session_privileges_and_roles_are_interpreted() -> None:
    found = oracle_mod.interpret_privileges(
        "ETL",
        [
            "CREATE SESSION",
            "SELECT ANY TABLE",
            "CREATE TABLE",
            "INSERT ANY TABLE",
            "GRANT ANY ROLE",
        ],
        ["CONNECT", "RESOURCE", "DBA"],
        [("SAPSR3", "AFRU", "SELECT", "ETL"), ("SAPSR3", "CRHD", "READ", "ETL")],
        [("LOADER", "SAPSR3", "AFRU", "UPDATE")],
        owned_tables=2,
    )
    kinds = {(p.privilege, p.on, p.via): p.kind for p in found}
    assert kinds[("DBA", "database", "role")] == "admin"
    assert kinds[("RESOURCE", "database", "role")] == "ddl"
    assert kinds[("INSERT ANY TABLE", "database", "")] == "write"
    assert kinds[("CREATE TABLE", "database", "")] == "ddl"
    assert kinds[("GRANT ANY ROLE", "database", "")] == "admin"
    assert kinds[("UPDATE", "table SAPSR3.AFRU", "role LOADER")] == "write"
    assert kinds[("owner of 2 table(s)", "schema ETL", "owner")] == "write"
    select = next(p for p in found if p.on == "table SAPSR3.AFRU" and p.privilege == "SELECT")
    assert select.kind == "read" and "GRANT READ" in select.fix  # SELECT also allows LOCK TABLE
    assert not any(p.on == "table SAPSR3.CRHD" for p in found)  # READ is what it should be


MSSQL_SQL = [
    mssql_mod.SERVER_PERMISSIONS_SQL,
    mssql_mod.DATABASE_PERMISSIONS_SQL,
    mssql_mod.ROLES_SQL,
    mssql_mod.OBJECT_GRANTS_SQL,
    mssql_mod.TABLE_PERMS_SQL.replace(":obj", "'dbo.T'"),
    mssql_mod.ESTIMATES_SQL.replace(":schema", "'dbo'"),
    mssql_mod.VERSION_SQL,
    mssql_mod.TIMEZONE_SQL,
    mssql_mod.UPDATEABILITY_SQL,
]
ORACLE_SQL = [
    oracle_mod.SESSION_PRIVS_SQL,
    oracle_mod.SESSION_ROLES_SQL,
    oracle_mod.USER_TAB_PRIVS_SQL,
    oracle_mod.ROLE_TAB_PRIVS_SQL,
    oracle_mod.OWNED_SQL,
    oracle_mod.ESTIMATES_SQL.replace(":owner", "'SAPSR3'"),
    oracle_mod.VERSION_SQL,
    oracle_mod.TIMEZONE_SQL,
]


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [("mssql", s) for s in MSSQL_SQL] + [("oracle", s) for s in ORACLE_SQL],
)
def test_catalog_queries_parse_and_pass_the_guard(dialect: str, sql: str) -> None:
    reader = "tsql" if dialect == "mssql" else "oracle"
    statements = sqlglot.parse(sql, read=reader)
    assert len(statements) == 1 and isinstance(statements[0], sqlglot.exp.Query)
    assert refusal(sql, dialect) is None


def test_postgresql_catalog_queries_pass_the_guard() -> None:
    for name in dir(pg_mod):
        if name.endswith("_SQL"):
            assert refusal(getattr(pg_mod, name), "postgresql") is None, name


def test_grant_statements_quote_names_the_database_way() -> None:
    assert mssql_mod._q("Auftrags Daten") == "[Auftrags Daten]"
    assert oracle_mod._q("AFRU") == '"AFRU"' and oracle_mod._q("afru") == "afru"
    assert pg_mod._q("BDE") == '"BDE"' and pg_mod._q("user") == '"user"'


@pytest.mark.parametrize(
    ("dialect", "type_", "expected"),
    [
        ("mssql", mssql.DATETIME(), "1/300 s ticks"),
        ("mssql", mssql.SMALLDATETIME(), "whole minutes"),
        ("mssql", mssql.DATETIME2(precision=7), "the 7th, 100 ns, is cut"),
        ("mssql", mssql.DATETIMEOFFSET(), "converted to UTC"),
        ("oracle", oracle.DATE(), "whole seconds, no time zone"),
        ("oracle", oracle.TIMESTAMP(timezone=True), "converted to UTC"),
        ("mysql", sa.dialects.mysql.DATETIME(), "whole seconds"),
        ("mysql", sa.dialects.mysql.DATETIME(fsp=6), "6 fractional digits"),
        ("mariadb", sa.dialects.mysql.TIMESTAMP(fsp=3), "session time zone"),
        ("postgresql", sa.TIMESTAMP(timezone=True), "an instant"),
        ("postgresql", sa.TIMESTAMP(), "wall-clock"),
    ],
)
def test_timestamp_notes_name_each_databases_trap(dialect: str, type_: Any, expected: str) -> None:
    note = get_dialect(dialect).timestamp_note(type_)
    assert note is not None and expected in note


def test_a_broken_instant_client_falls_back_to_thin_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = tmp_path / "instantclient_21_1"
    fake.mkdir()
    (fake / "libclntsh.so").write_bytes(b"not a library")
    monkeypatch.setattr(oracle_mod, "instant_client", lambda: fake)
    conn = spec(dialect="oracle", host="h", service_name="s", user="u")
    assert get_dialect("oracle").engine_options(conn) == {"thick_mode": {"lib_dir": str(fake)}}
    source = open_source("sap", conn, ROOT, [])
    try:
        assert source.engine.dialect.driver == "oracledb"
    finally:
        source.close()
    assert "falling back to the driver's defaults" in caplog.text
