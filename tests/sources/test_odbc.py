"""The ODBC code path for real: pyodbc through the Debian PostgreSQL and MariaDB ODBC drivers, and
FreeTDS (the SQL Server driver a Linux user installs) found by the driver detection.

No SQL Server runs here, so the path SQL Server connectors take (pyodbc, an ODBC connection string,
ODBC error classification, the guard and the read-only session on a pyodbc connection, rows as
pyodbc returns them) is exercised against PostgreSQL and MariaDB through their ODBC drivers.
A missing driver skips with the reason; under CI=true or ETL_REQUIRE_DBS=1 it fails.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.commands.check import check_connector
from etl.config.loader import load_project
from etl.config.models import ConnectorSpec
from etl.errors import SourceError
from etl.pipeline.sync import run_job
from etl.sources.sql.dialects import get_dialect, odbc
from etl.sources.sql.engine import ReadOnlyViolation, Retry, SourceUnreachable, open_source
from tests.conftest import import_or_skip
from tests.support.accounts import BOOKINGS_MAPPING
from tests.support.pg_odbc import ODBC_URLS

pyodbc = import_or_skip("pyodbc", "install the ODBC driver manager: apt-get install unixodbc")


def require_driver(name: str) -> None:
    """Skip (or fail under CI) when the ODBC driver is not installed."""
    installed = odbc.installed_drivers()
    if name in installed:
        return
    message = f"ODBC driver {name!r} not installed (installed: {', '.join(installed) or 'none'})"
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("ETL_REQUIRE_DBS") == "1":
        pytest.fail(message + " (CI=true or ETL_REQUIRE_DBS=1: the ODBC drivers are required)")
    pytest.skip(message)


def test_freetds_is_found_and_chosen_when_microsofts_driver_is_missing() -> None:
    require_driver("FreeTDS")
    installed = odbc.installed_drivers()
    choice = odbc.choose_driver(None, installed)
    microsoft = [d for d in odbc.MSSQL_PREFERRED[:2] if d in installed]
    if microsoft:
        assert choice.name == microsoft[0]
    else:
        assert choice.name == "FreeTDS" and choice.is_freetds
        assert (
            "ODBC Driver 18 for SQL Server, ODBC Driver 17 for SQL Server: not installed"
            in choice.reason
        )


def test_a_sql_server_connector_through_freetds_explains_an_unreachable_server(
    tmp_path: Path,
) -> None:
    require_driver("FreeTDS")
    spec = ConnectorSpec.model_validate(
        {
            "dialect": "mssql",
            "host": "127.0.0.1",
            "port": 1,
            "database": "HYDRA",
            "user": "etl",
            "password": "Pa55-never-shown",
            "driver": "FreeTDS",
            "connect_timeout": "3s",
            "options": {"Encrypt": "no"},
        }
    )
    source = open_source("hydra", spec, tmp_path, ["Pa55-never-shown"], retry=Retry(2, 0.01))
    try:
        with pytest.raises(SourceUnreachable) as info, source.connect():
            pass
    finally:
        source.close()
    message = info.value.message
    assert message.startswith(
        "connectors/hydra.yaml: cannot connect to the SQL Server server at 127.0.0.1"
    )
    assert "2 attempts" in message and "Pa55-never-shown" not in message


def _bookings(engine: sa.Engine, stamp: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE bookings (id int PRIMARY KEY, machine char(8), order_no varchar(20), "
                f"kind varchar(3), ts {stamp})"
            )
        )
        conn.execute(
            sa.text("INSERT INTO bookings VALUES (:i, 'M1', '4711', :k, :t)"),
            [
                {"i": 1, "k": "A", "t": "2026-10-20 06:00:00.250001"},
                {"i": 2, "k": "E", "t": "2026-10-20 08:00:00"},
                {"i": 3, "k": "A", "t": "2026-10-20 09:00:00"},
            ],
        )


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_a_job_through_odbc_reads_with_the_guard_and_a_read_only_session(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    driver, template = ODBC_URLS[dialect]
    require_driver(driver)
    url = sa.make_url(
        request.getfixturevalue(
            "postgres_database" if dialect == "postgresql" else "mariadb_database"
        )
    )
    native = sa.create_engine(url)
    _bookings(native, "timestamp(6)" if dialect == "postgresql" else "datetime(6)")
    port = url.port or (5432 if dialect == "postgresql" else 3306)
    odbc_url = template.format(user=url.username, host=url.host, db=url.database, port=port)
    root = tmp_path / "p"
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True)
    (root / "etl.yaml").write_text("defaults: {start_from: 2026-10-19}\n")
    (root / "connectors" / "plant.yaml").write_text(f"dialect: {dialect}\nurl: '{odbc_url}'\n")
    (root / "mappings" / "bookings.yaml").write_text(BOOKINGS_MAPPING)
    (root / "jobs" / "bookings.yaml").write_text("connector: plant\nmapping: bookings\n")
    project = load_project(root)

    result = run_job(project, "bookings")  # the generated SELECT, streamed through pyodbc
    assert (result.rows_read, result.runs_total, result.runs_open) == (3, 2, 1)

    report = check_connector(project, "plant")
    assert "with ODBC driver" in report.driver, report.driver
    assert report.read_only_session.startswith("yes")
    assert [t.readable for t in report.tables] == [True]

    source = open_source("plant", project.connectors["plant"], root, [])
    try:
        assert source.engine.dialect.driver == "pyodbc"
        with source.connect() as conn, pytest.raises(ReadOnlyViolation):
            conn.execute(sa.text("DELETE FROM bookings"))
        raw = source.engine.raw_connection()  # below the guard: the session refuses it
        try:
            with pytest.raises(pyodbc.Error, match=r"(?i)read.only"):
                raw.cursor().execute("DELETE FROM bookings")
            raw.rollback()
        finally:
            raw.close()
    finally:
        source.close()
    with native.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM bookings")).scalar() == 3
    native.dispose()


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_odbc_connection_failures_are_classified(dialect: str, tmp_path: Path) -> None:
    driver, template = ODBC_URLS[dialect]
    require_driver(driver)
    url = template.format(user="etl", host="127.0.0.1", db="x", port=1)
    spec = ConnectorSpec.model_validate({"dialect": dialect, "url": url, "connect_timeout": "3s"})
    source = open_source("plant", spec, tmp_path, [], retry=Retry(1))
    try:
        with pytest.raises(SourceUnreachable, match="cannot connect to the"), source.connect():
            pass
    finally:
        source.close()
    assert get_dialect(dialect).dbapi_connect_args(spec, sa.make_url(url)) == {"timeout": 3}


def test_a_driver_the_driver_manager_cannot_load_is_named_with_the_installed_ones(
    tmp_path: Path,
) -> None:
    require_driver("FreeTDS")
    url = "mssql+pyodbc://etl@db/HYDRA?driver=ODBC+Driver+18+for+SQL+Server"
    spec = ConnectorSpec.model_validate({"dialect": "mssql", "url": url, "connect_timeout": "2s"})
    source = open_source("hydra", spec, tmp_path, [], retry=Retry(1))
    try:
        with pytest.raises(SourceError) as info, source.connect():
            pass
    finally:
        source.close()
    message = info.value.message
    assert "the ODBC driver cannot be loaded" in message and "Can't open lib" in message
    assert "installed ODBC drivers: " in message and "FreeTDS" in message
