"""``etl check``: the report on SQLite and the real PostgreSQL/MariaDB, --strict, --json, the
least-privilege GRANTs proven by running them, and one clear message per connection failure
(never the password)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from etl.cli import main
from etl.commands.check import check_connector, format_report, tables_read
from etl.config.loader import load_project
from etl.config.models import MappingSpec
from etl.errors import SourceError
from etl.pipeline.sync import run_job
from etl.sources.sql.engine import (
    DatabaseMissing,
    LoginFailed,
    PermissionDenied,
    Retry,
    SourceUnreachable,
    open_connector,
)
from tests.conftest import MARIADB_URL, POSTGRES_URL, server_or_skip
from tests.support.accounts import Server, drop_account, write_project, writer_account
from tests.support.plant import Plant

FAST = Retry(attempts=2, first_delay=0.01)
SECRET = "S3cret-never-shown"


def etl(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with writer_account(request) as found:
        yield found


# --------------------------------------------------------------------------- SQLite


def test_check_on_sqlite_reports_file_access_and_readable_tables(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    report = check_connector(load_project(plant.root), "plant")
    assert (report.product, report.dialect) == ("SQLite", "sqlite")
    assert report.read_only_session.startswith("yes")
    assert [(t.mapping, t.jobs, t.readable) for t in report.tables] == [
        ("bookings", ["bookings"], True),
        ("orders", ["orders"], True),
    ]
    assert abs(report.clock_offset_s) < 5
    text = format_report(report)
    assert "connectors/plant.yaml (sqlite)" in text and "mapped tables" in text


def test_a_mapped_column_that_is_missing_makes_its_table_fail(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    path = plant.root / "mappings" / "bookings.yaml"
    path.write_text(path.read_text().replace("order_code: AUNR", "order_code: AUFNR"))
    report = check_connector(load_project(plant.root), "plant")
    failed = next(t for t in report.tables if t.mapping == "bookings")
    assert not failed.readable
    assert "column 'AUFNR' not found in BUCHUNGEN" in failed.detail and "AUNR" in failed.detail


def test_a_broken_mapping_only_disabled_jobs_use_is_reported_not_counted(tmp_path: Path) -> None:
    # `etl init`'s starter: a placeholder mapping behind a disabled job must not fail the first
    # `etl check`; once a job that reads it is enabled, it does (exit 4, as `etl run` would)
    plant = Plant(tmp_path / "p")
    path = plant.root / "mappings" / "bookings.yaml"
    path.write_text(path.read_text().replace("order_code: AUNR", "order_code: AUFNR"))
    job = plant.root / "jobs" / "bookings.yaml"
    job.write_text(job.read_text() + "enabled: false\n")
    code, out, _ = etl("-p", str(plant.root), "check", "plant")
    assert code == 0, out
    assert "  off  bookings <- bookings:" in out and "only disabled jobs use it" in out
    assert "NOT readable" not in out
    assert "BUCHUNGEN" not in "".join(line for line in out.splitlines() if "GRANT" in line)
    job.write_text(job.read_text().replace("enabled: false\n", "enabled: true\n"))
    code, out, err = etl("-p", str(plant.root), "check", "plant")
    assert code == 4
    assert "  FAIL bookings <- bookings:" in out and "1 mapped table(s) NOT readable" in err


def test_check_names_the_plant_time_zone_and_whether_the_connector_sets_it(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    connector = plant.root / "connectors" / "plant.yaml"
    report = check_connector(load_project(plant.root), "plant")
    lines = [line for line in format_report(report).splitlines() if line.startswith("time zone:")]
    zone = report.plant_timezone
    assert report.plant_timezone_set == ("timezone:" in connector.read_text())
    assert lines and f"plant {zone}" in lines[0]
    connector.write_text(
        "".join(
            line
            for line in connector.read_text().splitlines(keepends=True)
            if not line.startswith("timezone:")
        )
    )
    report = check_connector(load_project(plant.root), "plant")
    assert (report.plant_timezone, report.plant_timezone_set) == ("UTC", False)
    assert "no timezone in the connector: naive timestamps are read as UTC" in format_report(report)


def test_tables_read_by_a_custom_query_are_those_it_names() -> None:
    mapping = MappingSpec.model_validate(
        {
            "structure": "bookings",
            "source": {
                "query": "WITH c AS (SELECT * FROM SAPSR3.AFRU) SELECT c.*, h.ARBPL FROM c "
                "JOIN SAPSR3.CRHD h ON h.OBJID = c.ARBID"
            },
            "columns": {"timestamp": "T", "order_code": "O", "machine_code": "M", "event": "E"},
            "events": {"START": ["B10"], "END": ["B40"]},
        }
    )
    assert {(t.schema, t.name) for t in tables_read(mapping, "oracle")} == {
        ("SAPSR3", "AFRU"),
        ("SAPSR3", "CRHD"),
    }


# --------------------------------------------------------------------------- real servers


def test_check_lists_the_write_grants_and_strict_refuses_them(
    server: Server, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "p", server.dialect, server.url, "RW_PASSWORD")
    env = {"RW_PASSWORD": server.password}
    code, out, err = etl("-p", str(root), "check", "plant", env=env)
    assert code == 0, err
    assert re.search(r"WRITE\s+.*(INSERT|ALL PRIVILEGES)", out), out
    assert "ok   bookings <- bookings: bookings: readable" in out
    assert "verdict: the account CAN WRITE" in out
    code, out, err = etl("-p", str(root), "check", "plant", "--strict", "--json", env=env)
    assert code == 7, err
    report = json.loads(out)
    assert report["can_write"] is True and report["account"].startswith(server.user)
    assert report["server"]["product"] == (
        "PostgreSQL" if server.dialect == "postgresql" else "MariaDB"
    )
    assert report["tables"][0]["readable"] is True
    assert "can write" in err and "connectors/plant.yaml" in err
    assert server.password not in out + err
    if server.dialect == "postgresql":
        kinds = {(p["privilege"], p["on"]) for p in report["privileges"]}
        assert ("INSERT, UPDATE, DELETE, TRUNCATE, TRIGGER", "table public.bookings") in kinds
        assert ("CREATE", "schema public") in kinds
        assert ("CREATE (new schemas)", f"database {server.url.database}") in kinds


def _strict_passes(server: Server, tmp_path: Path, user: str, password: str | None) -> None:
    url = server.url.set(username=user, password=password)
    root = write_project(tmp_path / f"as_{user}", server.dialect, url, "PW")
    code, out, err = etl("-p", str(root), "check", "plant", "--strict", env={"PW": password or ""})
    assert code == 0, out + err
    assert "privileges that let the account change the database: none found" in out
    assert "verdict: read-only account" in out and "ok   bookings" in out


def test_the_proposed_statements_turn_the_account_into_a_reader(
    server: Server, tmp_path: Path
) -> None:
    root = write_project(tmp_path / "p", server.dialect, server.url, "RW_PASSWORD")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RW_PASSWORD", server.password)
        report = check_connector(load_project(root), "plant")
    assert report.existing_account and report.can_write
    assert report.grants[0].startswith("REVOKE ")  # first take back, then grant
    assert not any(g.startswith("CREATE ") for g in report.grants)
    with server.admin.connect() as conn:
        for statement in report.grants:
            conn.execute(sa.text(statement))
    _strict_passes(server, tmp_path, server.user, server.password)


def test_an_admin_gets_the_statements_for_a_new_reader_account(
    server: Server, tmp_path: Path
) -> None:
    admin_url = server.admin.url
    report = check_connector(
        load_project(write_project(tmp_path / "p", server.dialect, admin_url)), "plant"
    )
    assert report.grant_account == "etl_reader" and not report.existing_account
    reader, password = f"etl_ro_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:8]}"
    statements = [
        g.replace("etl_reader", reader).replace("'...'", f"'{password}'") for g in report.grants
    ]
    assert statements[0].startswith("CREATE ")
    try:
        with server.admin.connect() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
        _strict_passes(server, tmp_path, reader, password)
    finally:
        drop_account(server.admin, server.dialect, reader)


# --------------------------------------------------------------------------- failures


def _project(tmp_path: Path, dialect: str, **connector: object) -> Path:
    root = tmp_path / "p"
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "etl.yaml").write_text("name: check\n")
    lines = [f"dialect: {dialect}"] + [f"{k}: {v}" for k, v in connector.items()]
    lines.append("password: ${DB_PASSWORD}")
    (root / "connectors" / "plant.yaml").write_text("\n".join(lines) + "\n")
    return root


def _check(root: Path) -> SourceError:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DB_PASSWORD", SECRET)
        with pytest.raises(SourceError) as info:
            check_connector(load_project(root), "plant", retry=FAST)
    assert SECRET not in str(info.value)
    return info.value


def test_an_unreachable_host_is_retried_then_named(tmp_path: Path) -> None:
    root = _project(tmp_path, "postgresql", host="127.0.0.1", port=1, database="x", user="etl")
    error = _check(root)
    assert isinstance(error, SourceUnreachable)
    assert error.message.startswith(
        "connectors/plant.yaml: cannot connect to the PostgreSQL server at 127.0.0.1:1"
    )
    assert "2 attempts" in error.message and "'host' and 'port'" in str(error.hint)


def test_retries_back_off_and_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _project(tmp_path, "mariadb", host="127.0.0.1", port=1, database="x", user="etl")
    waits: list[float] = []
    monkeypatch.setattr("etl.sources.sql.engine.time.sleep", waits.append)
    monkeypatch.setenv("DB_PASSWORD", SECRET)
    source = open_connector(
        load_project(root), "plant", retry=Retry(attempts=4, first_delay=0.5, max_delay=1.5)
    )
    with pytest.raises(SourceUnreachable, match="4 attempts"), source.connect():
        pass
    assert waits == [0.5, 1.0, 1.5]


def test_an_unknown_host_is_not_retried(tmp_path: Path) -> None:
    root = _project(tmp_path, "postgresql", host="no-such-host.invalid", database="x", user="etl")
    error = _check(root)
    assert isinstance(error, SourceUnreachable)
    assert "host 'no-such-host.invalid' is unknown" in error.message


def test_a_failed_login_names_the_user_not_the_password(tmp_path: Path) -> None:
    url = server_or_skip(MARIADB_URL, "MariaDB")
    root = _project(
        tmp_path, "mariadb", host=url.host, port=url.port or 3306, database="mysql", user="root"
    )
    root_project = root
    code, out, err = etl(
        "-vv", "-p", str(root_project), "check", "plant", env={"DB_PASSWORD": SECRET}
    )
    assert code == 3
    assert "connectors/plant.yaml: login failed for user 'root' on the MariaDB server" in err
    assert "check 'user' and 'password'" in err
    assert SECRET not in out + err


def test_a_role_the_server_does_not_know_is_a_failed_login(tmp_path: Path) -> None:
    url = server_or_skip(POSTGRES_URL, "PostgreSQL")
    root = _project(
        tmp_path,
        "postgresql",
        host=url.host,
        port=url.port or 5432,
        database="postgres",
        user="nobody_here",
    )
    error = _check(root)
    assert isinstance(error, LoginFailed) and "user 'nobody_here'" in error.message


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_a_missing_database_lists_the_databases_that_exist(tmp_path: Path, dialect: str) -> None:
    url = server_or_skip(POSTGRES_URL if dialect == "postgresql" else MARIADB_URL, dialect)
    user = url.username or "root"
    root = tmp_path / "p"
    (root / "connectors").mkdir(parents=True)
    (root / "etl.yaml").write_text("name: check\n")
    (root / "connectors" / "plant.yaml").write_text(
        f"dialect: {dialect}\nhost: {url.host}\nport: {url.port or (5432 if dialect == 'postgresql' else 3306)}\n"
        f"database: no_such_db\nuser: {user}\n"
    )
    with pytest.raises(DatabaseMissing) as info:
        check_connector(load_project(root), "plant", retry=FAST)
    message = info.value.message
    assert "database 'no_such_db' does not exist" in message
    assert ("postgres" if dialect == "postgresql" else "mysql") in message.split("(databases: ")[1]


def test_permission_denied_names_the_connector_and_the_fix(server: Server, tmp_path: Path) -> None:
    reader = f"etl_none_{uuid.uuid4().hex[:8]}"
    with server.admin.connect() as conn:
        if server.dialect == "postgresql":
            conn.execute(sa.text(f'CREATE ROLE "{reader}" LOGIN'))
        else:
            for host in ("%", "localhost"):
                conn.execute(sa.text(f"CREATE USER '{reader}'@'{host}'"))
                conn.execute(sa.text(f"GRANT SELECT (id) ON bookings TO '{reader}'@'{host}'"))
    try:
        root = write_project(
            tmp_path / "p", server.dialect, server.url.set(username=reader, password=None)
        )
        report = check_connector(load_project(root), "plant", retry=FAST)
        table = report.tables[0]
        assert not table.readable
        expected = f"connectors/plant.yaml: the account '{reader}' may not read what the job needs"
        assert table.detail.startswith(expected), table.detail
        assert re.search(r"(?i)permission denied|command denied", table.detail)
        with pytest.raises(PermissionDenied) as info:
            run_job(load_project(root), "bookings")
        assert info.value.message.startswith(expected)
        assert info.value.exit_code == 3 and "'etl check plant'" in str(info.value.hint)
        if server.dialect == "postgresql":  # the server's words, not ADBC's libpq wrapping
            assert info.value.message.endswith("permission denied for table bookings")
    finally:
        drop_account(server.admin, server.dialect, reader)


@pytest.mark.postgres
def test_an_adbc_error_is_said_in_the_servers_words() -> None:
    """ADBC's PostgreSQL driver prefixes the server's message with its status and libpq's step
    ('NOT_FOUND: Failed to prepare query: ERROR:  relation ...'); messages keep the server's."""
    import adbc_driver_postgresql.dbapi as adbc

    from etl.sources.sql.engine import _reason

    url = server_or_skip(POSTGRES_URL, "PostgreSQL").set(drivername="postgresql")
    uri = url.render_as_string(hide_password=False)
    with adbc.connect(uri) as conn, conn.cursor() as cur, pytest.raises(adbc.Error) as info:
        cur.execute("SELECT * FROM etl_no_such_table_here")
    assert str(info.value).startswith("NOT_FOUND: ")  # what the driver says
    assert _reason(info.value, []) == 'relation "etl_no_such_table_here" does not exist'


def test_check_fails_when_fetch_arrow_cannot_be_honoured(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fetch: arrow`` without its driver makes 'etl run' exit 3: 'etl check' says so and exits
    3 too (the report is still printed); ``fetch: auto`` keeps it a warning (exit 0)."""
    from etl.sources.sql.arrow import PATHS

    key = "adbc_postgresql" if server.dialect == "postgresql" else "connectorx_mysql"
    monkeypatch.setattr(type(PATHS[key]), "version", lambda self: None)
    root = write_project(tmp_path / "p", server.dialect, server.url, "RW_PASSWORD")
    connector = root / "connectors" / "plant.yaml"
    plain = connector.read_text()
    env = {"RW_PASSWORD": server.password}
    connector.write_text(plain + "fetch: arrow\n")
    code, out, err = etl("-p", str(root), "check", "plant", env=env)
    assert code == 3, (out, err)
    assert "fetch:      none (fetch: arrow, driver missing)" in out
    assert (
        f"error: connectors/plant.yaml: fetch: arrow, but {PATHS[key].package} not installed" in out
    )
    assert "fetch: arrow, but" in err
    code, out, err = etl("-p", str(root), "check", "plant", "--json", env=env)
    assert code == 3 and "not installed" in json.loads(out)["fetch_error"]
    connector.write_text(plain + "fetch: auto\n")
    code, out, err = etl("-p", str(root), "check", "plant", env=env)
    assert code == 0, err
    assert "fetch:      sqlalchemy (" in out and "not installed" in out
    assert "error:" not in out
    if server.dialect == "postgresql":  # the driver is there but cannot read: jobs fail too
        from etl.sources.sql.arrow import AdbcPostgres

        monkeypatch.undo()
        original = AdbcPostgres.uri
        monkeypatch.setattr(AdbcPostgres, "uri", lambda self, s: original(self, s) + "&sslmode=x")
        connector.write_text(plain + "fetch: arrow\n")
        code, out, err = etl("-p", str(root), "check", "plant", env=env)
        assert code == 3 and "fetch: arrow, but the Arrow path failed" in err, (out, err)
