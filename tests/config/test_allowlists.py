"""The read-only allowlists of etl/config/readonly.py for every dialect, SQL Server and Oracle included:
every listed function parses in its dialect and passes, the refused constructs are refused with a
message that names them, connector options outside the list are config errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlglot

from etl.config.loader import load_project
from etl.config.queries import check_custom_query
from etl.config.readonly import (
    ALLOWED_OPTIONS,
    PURE_FUNCTIONS,
    SQLGLOT,
    option_refusals,
    query_refusals,
    url_option_refusals,
)
from etl.errors import ConfigError

DIALECTS = ["postgresql", "mysql", "mariadb", "mssql", "oracle", "sqlite"]
ARGS = ["a", "a, b", "", "a, b, c", "a, 1, 2", "a, 1, 2, b"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_listed_function_parses_and_passes_in_its_dialect(dialect: str) -> None:
    table = "dbo.t" if dialect == "mssql" else "t"
    failed = []
    for name in sorted(PURE_FUNCTIONS[dialect]):
        for args in ARGS:
            sql = f"SELECT {name}({args}) AS v FROM {table}"
            try:
                sqlglot.parse_one(sql, read=SQLGLOT.get(dialect, dialect))
            except Exception:  # this arity does not parse: try the next
                continue
            if not query_refusals(sql, dialect):
                break
        else:
            failed.append(name)
    # a few names are keywords with their own syntax (EXTRACT(x FROM y), CAST(a AS int), Oracle's
    # SYSDATE without parentheses): they pass in that syntax (test_pure_queries_pass)
    keyword_syntax = {
        "EXTRACT", "POSITION", "TRIM", "SUBSTRING", "CAST", "TRY_CAST", "CONVERT", "OVERLAY",
        "SYSDATE", "SYSTIMESTAMP", "DATE_ADD", "DATE_SUB",
    }  # fmt: skip
    assert set(failed) <= keyword_syntax, failed


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        (
            "postgresql",
            "SELECT extract(epoch FROM ts), cast(a AS int), trim(b), "
            "substring(c FROM 1 FOR 2), position('x' IN c), overlay(c PLACING 'x' FROM 1) FROM t",
        ),
        (
            "mysql",
            "SELECT extract(YEAR FROM ts), cast(a AS char), convert(a, char), trim(b), "
            "date_add(ts, INTERVAL 1 DAY), date_sub(ts, INTERVAL 1 HOUR) FROM t",
        ),
        (
            "mssql",
            "SELECT cast(a AS int), try_cast(a AS int), convert(varchar(10), ts, 120) "
            "FROM dbo.t WITH (NOLOCK)",
        ),
        ("oracle", "SELECT sysdate, systimestamp, extract(YEAR FROM ts), cast(a AS NUMBER) FROM t"),
        ("sqlite", "SELECT cast(a AS integer), trim(b), substr(c, 1, 2) FROM t"),
    ],
)
def test_pure_queries_pass(dialect: str, sql: str) -> None:
    assert query_refusals(sql, dialect) == []


@pytest.mark.parametrize(
    ("dialect", "sql", "named"),
    [
        ("postgresql", 'SELECT "pg_terminate_backend"(pid) FROM pg_stat_activity', "quoted"),
        ("postgresql", "SELECT pg_advisory_lock(1)", "PG_ADVISORY_LOCK()"),
        ("postgresql", "SELECT * FROM t FOR UPDATE", "locking clause"),
        ("postgresql", "SELECT public.f(a) FROM t", "schema-qualified"),
        ("postgresql", "SELECT a::my_type FROM t", "user-defined type"),
        ("mysql", "SELECT a FROM t WHERE 1 /*! AND GET_LOCK('x', 0) */", "executable comment"),
        ("mariadb", "SELECT a FROM t WHERE 1 /*M! AND GET_LOCK('x', 0) */", "executable comment"),
        ("mariadb", "SELECT /*+ NO_INDEX(t) */ a FROM t", "optimizer hint"),
        ("mariadb", "SELECT `GET_LOCK`('x', 0)", "quoted"),
        ("mariadb", "SELECT a FROM t LOCK IN SHARE MODE", "locking clause"),
        ("mariadb", "SELECT @v := a FROM t", "assignment"),
        ("mariadb", "SELECT a FROM t WHERE b = 'x\\' OR f() OR \\''", "backslash"),
        ("mssql", "SELECT a FROM dbo.t WITH (UPDLOCK)", "UPDLOCK"),
        ("mssql", "SELECT a FROM dbo.t WITH (TABLOCKX, HOLDLOCK)", "locking table hint"),
        ("mssql", "SELECT dbo.fn_write(a) FROM dbo.t", "schema-qualified"),
        ("mssql", "SELECT [xp_cmdshell]('dir')", "quoted"),
        ("mssql", "SELECT a INTO #copy FROM dbo.t", "INTO"),
        ("mssql", "SELECT a FROM OPENQUERY(srv, 'DELETE FROM t')", "OPENQUERY"),
        ("oracle", "SELECT dbms_lock.sleep(1) FROM dual", "schema-qualified"),
        ("oracle", "SELECT a FROM t FOR UPDATE", "locking clause"),
        ("oracle", "SELECT my_package_fn(a) FROM t", "MY_PACKAGE_FN()"),
        ("oracle", 'SELECT "DBMS_PIPE"(1) FROM dual', "quoted"),
        ("sqlite", "SELECT load_extension('x')", "LOAD_EXTENSION()"),
    ],
)
def test_refused_constructs_are_named(dialect: str, sql: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_custom_query(sql, dialect, "mappings/m.yaml")
    assert named in str(caught.value)
    assert str(caught.value).startswith("mappings/m.yaml: source.query: refused ")
    assert caught.value.exit_code == 2


def test_allow_functions_lets_a_named_function_through_and_only_it() -> None:
    sql = "SELECT my_fn(a) AS x, other_fn(b) AS y FROM t"
    refused = query_refusals(sql, "postgresql", allow=["my_fn"])
    assert [what for what, _ in refused] == [
        "the function OTHER_FN() (not on the list of pure built-in functions)"
    ]
    assert "allow_functions" in refused[0][1]


@pytest.mark.parametrize(
    ("dialect", "options", "refused"),
    [
        ("postgresql", {"options": "-c default_transaction_read_only=off"}, ["options"]),
        ("postgresql", {"sslmode": "require", "application_name": "x"}, []),
        ("postgresql", {"service": "x"}, ["service"]),
        ("mysql", {"init_command": "DELETE FROM t"}, ["init_command"]),
        ("mariadb", {"client_flag": 65536, "local_infile": 1, "autocommit": True}, None),
        ("mariadb", {"ssl_ca": "/ca.pem", "charset": "utf8mb4", "read_timeout": 30}, []),
        ("mssql", {"Encrypt": "yes", "TrustServerCertificate": "yes"}, []),
        ("mssql", {"ApplicationIntent": "ReadWrite"}, ["ApplicationIntent"]),
        ("mssql", {"ApplicationIntent": "ReadOnly", "odbc_connect": "x"}, ["odbc_connect"]),
        ("oracle", {"tcp_connect_timeout": 5, "mode": "SYSDBA"}, ["mode"]),
        ("oracle", {"events": True}, ["events"]),
        ("sqlite", {"mode": "rw"}, ["mode"]),
    ],
)
def test_connector_options_outside_the_allowlist_are_refused(
    dialect: str, options: dict[str, object], refused: list[str] | None
) -> None:
    found = [key for key, _ in option_refusals(dialect, options)]
    assert found == (refused if refused is not None else list(options))


@pytest.mark.parametrize(
    ("dialect", "url", "refused"),
    [
        ("mariadb", "mysql+pymysql://u:p@h/db?init_command=DELETE+FROM+t", ["init_command"]),
        ("postgresql", "postgresql+psycopg://u:p@h/db?options=-c+x%3Dy", ["options"]),
        ("postgresql", "postgresql+pyodbc://u:p@h/db?driver=PostgreSQL+Unicode&ReadOnly=0", None),
        ("postgresql", "postgresql+pyodbc://u:p@h/db?ConnSettings=SET+x", ["ConnSettings"]),
        ("mariadb", "mysql+pyodbc://u:p@h/db?driver=MariaDB&InitStmt=DELETE", ["InitStmt"]),
        ("mssql", "mssql+pyodbc://u:p@h/db?driver=ODBC+Driver+18&Encrypt=yes", []),
        ("oracle", "oracle+oracledb://u:p@h:1521/?service_name=FREEPDB1", []),
    ],
)
def test_url_query_options_are_on_the_same_allowlist(
    dialect: str, url: str, refused: list[str] | None
) -> None:
    found = [key for key, _ in url_option_refusals(dialect, url)]
    assert found == (refused if refused is not None else ["ReadOnly"])


def test_a_refused_option_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    for folder in ("connectors", "mappings", "jobs"):
        (tmp_path / folder).mkdir()
    (tmp_path / "etl.yaml").write_text("defaults: {start_from: 2026-10-19}\n")
    (tmp_path / "connectors" / "plant.yaml").write_text(
        "dialect: mariadb\nhost: db\ndatabase: bde\nuser: u\n"
        "options:\n  init_command: DELETE FROM small WHERE id < 100\n"
    )
    (tmp_path / "connectors" / "other.yaml").write_text(
        "dialect: mariadb\nurl: mysql+pymysql://u:secret@db/bde?init_command=DELETE+FROM+t\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    text = str(caught.value)
    assert "connectors/plant.yaml:6: options.init_command: refused: runs SQL" in text
    assert "connectors/other.yaml:2: url: refused the option 'init_command'" in text
    assert "secret" not in text
    assert caught.value.exit_code == 2


def test_every_dialect_has_both_allowlists() -> None:
    for dialect in DIALECTS:
        assert ALLOWED_OPTIONS[dialect]
        assert PURE_FUNCTIONS[dialect]


def test_validate_refuses_a_custom_query_off_the_allowlist(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from etl.cli import main

    for folder in ("connectors", "mappings", "jobs"):
        (tmp_path / folder).mkdir()
    (tmp_path / "etl.yaml").write_text("defaults: {start_from: 2026-10-19}\n")
    (tmp_path / "connectors" / "plant.yaml").write_text(
        "dialect: postgresql\nhost: db\ndatabase: bde\nuser: u\n"
    )
    (tmp_path / "mappings" / "m.yaml").write_text(
        "structure: bookings\n"
        "source:\n"
        '  query: SELECT *, "pg_terminate_backend"(1) AS k FROM bde\n'
        "columns: {timestamp: ts, order_code: o, machine_code: m, event: e}\n"
        "events: {START: [A], END: [E]}\n"
    )
    (tmp_path / "jobs" / "j.yaml").write_text("connector: plant\nmapping: m\n")
    result = CliRunner().invoke(main, ["--project", str(tmp_path), "validate"])
    assert result.exit_code == 2
    assert (
        'mappings/m.yaml:3: source.query: refused the quoted function name "PG_TERMINATE_BACKEND"'
        in result.output
    )
    (tmp_path / "mappings" / "m.yaml").write_text(
        "structure: bookings\n"
        "source:\n"
        "  query: SELECT *, plant_shift(ts) AS k FROM bde\n"
        "  allow_functions: [plant_shift]\n"
        "columns: {timestamp: ts, order_code: o, machine_code: m, event: e}\n"
        "events: {START: [A], END: [E]}\n"
    )
    result = CliRunner().invoke(main, ["--project", str(tmp_path), "validate"])
    assert result.exit_code == 0, result.output
