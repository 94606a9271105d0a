"""The same checks for every source database: connect, etl check, etl discover, a bookings job and
read-only enforcement, against a real server.

SQL Server and Oracle run whenever ``ETL_TEST_MSSQL_URL`` / ``ETL_TEST_ORACLE_URL`` is set (a
SQLAlchemy URL of an account that may create a scratch table, e.g.
``mssql+pyodbc://sa:...@host:1433/master?driver=ODBC+Driver+18+for+SQL+Server&TrustServerCertificate=yes``
or ``oracle+oracledb://system:...@host:1521/?service_name=FREEPDB1``) and are skipped with that
reason otherwise. PostgreSQL and MariaDB run against the local servers (``ETL_TEST_POSTGRES_URL`` /
``ETL_TEST_MARIADB_URL``), which keeps the suite itself honest where no SQL Server or Oracle is.
The scratch table is dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC as UTC_
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from etl.commands.check import check_connector
from etl.commands.discover import list_tables, propose
from etl.config.loader import load_project
from etl.pipeline.mapping import map_bookings
from etl.pipeline.sync import run_job
from etl.sources.sql.arrow import FetchChoice, choose
from etl.sources.sql.engine import ReadOnlyViolation, Retry, open_connector
from etl.sources.sql.query import build_query, instant_columns, read_frames
from tests.conftest import MARIADB_URL, POSTGRES_URL, server_or_skip

TARGETS = {
    "mssql": ("ETL_TEST_MSSQL_URL", None),
    "oracle": ("ETL_TEST_ORACLE_URL", None),
    "postgresql": ("ETL_TEST_POSTGRES_URL", POSTGRES_URL),
    "mariadb": ("ETL_TEST_MARIADB_URL", MARIADB_URL),
}
DDL = {
    "mssql": "CREATE TABLE {t} (id int PRIMARY KEY, machine char(8), order_no varchar(20), "
    "kind varchar(3), ts datetime2(6))",
    "oracle": "CREATE TABLE {t} (id NUMBER(10) PRIMARY KEY, machine CHAR(8), "
    "order_no VARCHAR2(20), kind VARCHAR2(3), ts TIMESTAMP(6))",
    "postgresql": "CREATE TABLE {t} (id int PRIMARY KEY, machine char(8), order_no varchar(20), "
    "kind varchar(3), ts timestamp(6))",
    "mariadb": "CREATE TABLE {t} (id int PRIMARY KEY, machine char(8), order_no varchar(20), "
    "kind varchar(3), ts datetime(6))",
}
ROWS = [
    {"i": 1, "m": "M1", "o": "4711", "k": "A", "t": datetime(2026, 10, 20, 6, 0, 0, 250001)},
    {"i": 2, "m": "M1", "o": "4711", "k": "E", "t": datetime(2026, 10, 20, 8, 0)},
    {"i": 3, "m": "M2", "o": "4712", "k": "A", "t": datetime(2026, 10, 20, 9, 0)},
]
FAST = Retry(attempts=2, first_delay=0.1)


@dataclass
class Target:
    """A real server, a scratch booking table on it, and a project whose connector reaches it."""

    dialect: str
    url: sa.URL
    table: str
    root: Path


@pytest.fixture(params=list(TARGETS), scope="module")
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    dialect = request.param
    variable, default = TARGETS[dialect]
    raw = os.environ.get(variable) or default
    if raw is None:
        pytest.skip(f"{variable} is not set: no {dialect} server to run the conformance suite on")
    url = server_or_skip(raw, dialect) if default is not None else sa.make_url(raw)
    table = f"etl_conf_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(DDL[dialect].format(t=table)))
        conn.execute(sa.text(f"INSERT INTO {table} VALUES (:i, :m, :o, :k, :t)"), ROWS)
    root = tmp_path_factory.mktemp(f"conformance_{dialect}")
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir()
    (root / "etl.yaml").write_text("defaults: {start_from: 2026-10-19}\n")
    connector = {"dialect": dialect, "url": url.render_as_string(hide_password=False)}
    (root / "connectors" / "plant.yaml").write_text(yaml.safe_dump(connector))
    (root / "mappings" / "bookings.yaml").write_text(
        yaml.safe_dump(
            {
                "structure": "bookings",
                "source": {"table": table},
                "columns": {
                    "timestamp": "ts",
                    "order_code": "order_no",
                    "machine_code": "machine",
                    "event": "kind",
                },
                "events": {"START": ["A"], "END": ["E"]},
            }
        )
    )
    (root / "jobs" / "bookings.yaml").write_text("connector: plant\nmapping: bookings\n")
    try:
        yield Target(dialect, url, table, root)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        admin.dispose()


def test_connect_and_read_the_server_clock(target: Target) -> None:
    source = open_connector(load_project(target.root), "plant", retry=FAST)
    try:
        with source.connect() as conn:
            now = source.now_utc(conn)
    finally:
        source.close()
    assert abs((now - datetime.now(now.tzinfo)).total_seconds()) < 300


def test_check_reports_server_account_and_grants(target: Target) -> None:
    report = check_connector(load_project(target.root), "plant", retry=FAST)
    assert report.version != "unknown" and report.account != "unknown"
    assert report.session_timezone != "unknown" and report.read_only_session != "unknown"
    assert not [w for w in report.warnings if w.startswith("could not read")], report.warnings
    assert [t.readable for t in report.tables] == [True], report.tables
    assert any(target.table in g.lower() for g in report.grants), report.grants


def test_discover_lists_the_table_and_proposes_a_mapping_that_loads(target: Target) -> None:
    project = load_project(target.root)
    names = [t.name.lower() for t in list_tables(project, "plant").tables]
    assert target.table in names
    proposal = propose(project, "plant", target.table)
    assert proposal.columns["timestamp"].column is not None
    assert proposal.columns["timestamp"].column.lower() == "ts"
    assert proposal.events["START"] == ["A"] and proposal.events["END"] == ["E"]
    text = proposal.yaml(f"etl discover plant --table {target.table}")
    (target.root / "mappings" / "proposed.yaml").write_text(text)
    assert "proposed" in load_project(target.root).mappings
    (target.root / "mappings" / "proposed.yaml").unlink()


def test_a_bookings_job_derives_the_runs(target: Target) -> None:
    result = run_job(load_project(target.root), "bookings")
    assert (result.rows_read, result.runs_total, result.runs_open) == (3, 2, 1)


def test_writes_are_refused(target: Target) -> None:
    source = open_connector(load_project(target.root), "plant", retry=FAST)
    try:
        with source.connect() as conn:
            with pytest.raises(ReadOnlyViolation):
                conn.execute(sa.text(f"DELETE FROM {target.table}"))
            conn.rollback()
            if source.dialect.read_only_session:
                conn.execute(sa.select(sa.literal(1))).all()  # begins the transaction
                with pytest.raises(Exception, match=r"(?i)read.only|ORA-01456"):
                    conn.connection.cursor().execute(f"DELETE FROM {target.table}")
            conn.rollback()
    finally:
        source.close()
    admin = sa.create_engine(target.url)
    with admin.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {target.table}")).scalar() == 3
    admin.dispose()


def test_the_arrow_path_reads_what_sqlalchemy_reads(target: Target) -> None:
    """Each dialect's Arrow path (ADBC, connectorx, arrow-odbc, oracledb fetch_df_batches) gives
    the rows of the SQLAlchemy path, and its native session refuses writes."""
    project = load_project(target.root)
    mapping = project.mappings["bookings"]
    source = open_connector(project, "plant", retry=FAST)
    choice = choose(source)
    if choice.path is None:
        source.close()
        pytest.skip(f"no Arrow path: {choice.label}")
    frames = {}
    try:
        with source.connect() as conn:
            instants = instant_columns(conn, mapping, source.dialect)
            query = build_query(mapping, None, source.spec.zone, instants)
            for label, how in (("arrow", choice), ("sqlalchemy", FetchChoice(None, "compare"))):
                parts = list(read_frames(source, conn, mapping, query, instants, 2, "m", how))
                rows = map_bookings(pd.concat(parts), mapping, source.spec.zone, instants).rows
                frames[label] = rows.sort_values(["ts", "order_code"]).reset_index(drop=True)
        if source.dialect.read_only_session:
            with pytest.raises(BaseException, match=r"(?i)read.only|ORA-01456"):
                list(choice.path.batches(source, f"DELETE FROM {target.table}", None, 10))
    finally:
        source.close()
    pd.testing.assert_frame_equal(frames["arrow"], frames["sqlalchemy"])
    assert len(frames["arrow"]) == 3
    admin = sa.create_engine(target.url)
    with admin.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {target.table}")).scalar() == 3
    admin.dispose()


def test_sql_server_window_bounds_hold_under_a_german_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """arrow-odbc sends values as text: a window bound must mean the same instant to a session
    with SET LANGUAGE Deutsch (DATEFORMAT dmy) and keep its microseconds against a ``datetime``
    column (text with more than 3 fractional digits is error 241 there)."""
    from etl.sources.reader import Window
    from etl.sources.sql.arrow import ArrowOdbc

    raw = os.environ.get("ETL_TEST_MSSQL_URL")
    if not raw:
        pytest.skip("ETL_TEST_MSSQL_URL is not set: no SQL Server to run this on")
    url = sa.make_url(raw)
    table = f"etl_conf_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:  # day <= 12: read as year-day-month it is another valid date
        conn.execute(
            sa.text(
                f"CREATE TABLE {table} (id int, machine char(8), order_no "
                "varchar(20), kind int, ts datetime)"
            )
        )
        conn.execute(
            sa.text(f"INSERT INTO {table} VALUES (:i, 'M1', '4711', :k, :t)"),
            [
                {"i": 1, "k": 1, "t": datetime(2026, 3, 4, 6, 0, 0, 250000)},
                {"i": 2, "k": 2, "t": datetime(2026, 3, 4, 8, 0)},
                {"i": 3, "k": 1, "t": datetime(2026, 4, 3, 8, 0)},  # the misread window's row
            ],
        )
    for folder in ("connectors", "mappings", "jobs"):
        (tmp_path / folder).mkdir()
    connector = {"dialect": "mssql", "url": url.render_as_string(hide_password=False)}
    (tmp_path / "connectors" / "plant.yaml").write_text(yaml.safe_dump(connector))
    (tmp_path / "mappings" / "m.yaml").write_text(
        yaml.safe_dump(
            {
                "structure": "bookings",
                "source": {"table": table},
                "columns": {
                    "timestamp": "ts",
                    "order_code": "order_no",
                    "machine_code": "machine",
                    "event": "kind",
                },
                "events": {"START": [1], "END": [2]},
                "filters": [{"column": "kind", "in": [1, 2]}, {"column": "kind", "ge": 1.0}],
            }
        )
    )
    (tmp_path / "jobs" / "j.yaml").write_text("connector: plant\nmapping: m\n")
    project = load_project(tmp_path)
    mapping = project.mappings["m"]
    source = open_connector(project, "plant", retry=FAST)
    monkeypatch.setattr(type(source.dialect), "session_statements", ("SET LANGUAGE Deutsch",))
    window = Window(  # bounds with microseconds (UTC zone: the margin only widens them)
        datetime(2026, 3, 4, 3, 0, 0, 123456, tzinfo=UTC_),
        datetime(2026, 3, 4, 21, 0, 0, 654321, tzinfo=UTC_),
    )
    try:
        choice = choose(source)
        if not isinstance(choice.path, ArrowOdbc):
            pytest.skip(f"no arrow-odbc: {choice.label}")
        with source.connect() as conn:
            query = build_query(mapping, window, ZoneInfo("UTC"))
            got = pd.concat(list(read_frames(source, conn, mapping, query, frozenset(), 10, "m")))
    finally:
        source.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {table}"))
        admin.dispose()
    assert sorted(got["ts"].dt.to_pydatetime()) == [
        datetime(2026, 3, 4, 6, 0, 0, 250000),
        datetime(2026, 3, 4, 8, 0),
    ]


# The read-only allowlist (etl/config/readonly.py) against each server: a custom query made of listed
# functions runs there (they exist and read), a refused one never reaches it.
PURE_QUERY = {
    "mssql": "SELECT id, machine, order_no, COALESCE(kind, '') AS kind, ts, ISNULL(kind, '') AS k, "
    "LEN(order_no) AS l, UPPER(machine) AS u, DATEADD(day, 1, ts) AS d, "
    "CONVERT(varchar(19), ts, 120) AS c, IIF(kind = 'A', 1, 0) AS i FROM {t}",
    "oracle": "SELECT id, machine, order_no, NVL(kind, 'x') AS kind, ts, UPPER(machine) AS u, "
    "TO_CHAR(ts, 'YYYY-MM-DD') AS c, TRUNC(ts) AS d, SUBSTR(order_no, 1, 2) AS s, "
    "DECODE(kind, 'A', 1, 0) AS i FROM {t}",
    "postgresql": "SELECT id, machine, order_no, COALESCE(kind, 'x') AS kind, ts, "
    "upper(machine) AS u, to_char(ts, 'YYYY-MM-DD') AS c, date_trunc('day', ts) AS d, "
    "lpad(order_no, 8, '0') AS p FROM {t}",
    "mariadb": "SELECT id, machine, order_no, IFNULL(kind, 'x') AS kind, ts, UPPER(machine) AS u, "
    "DATE_FORMAT(ts, '%Y-%m-%d') AS c, TIMESTAMPDIFF(SECOND, ts, ts) AS d, "
    "CONCAT(order_no, '-') AS p FROM {t}",
}
REFUSED_FUNCTION = {
    "mssql": "SELECT id, machine, order_no, kind, ts FROM {t} WHERE dbo.no_such_fn(id) = 1",
    "oracle": "SELECT id, machine, order_no, kind, ts FROM {t} WHERE dbms_lock.sleep(1) IS NULL",
    "postgresql": "SELECT id, machine, order_no, kind, ts FROM {t} WHERE pg_advisory_lock(1) "
    "IS NOT NULL",
    "mariadb": "SELECT id, machine, order_no, kind, ts FROM {t} WHERE GET_LOCK('x', 0) = 1",
}


def _custom(target: Target, query: str) -> Path:
    root = target.root
    mapping = yaml.safe_load((root / "mappings" / "bookings.yaml").read_text())
    mapping["source"] = {"query": query.format(t=target.table)}
    (root / "mappings" / "custom.yaml").write_text(yaml.safe_dump(mapping))
    (root / "jobs" / "custom.yaml").write_text("connector: plant\nmapping: custom\n")
    return root


def test_a_custom_query_of_listed_functions_runs_on_the_server(target: Target) -> None:
    from etl.config.queries import check_custom_query

    query = PURE_QUERY[target.dialect].format(t=target.table)
    check_custom_query(query, target.dialect, "mappings/custom.yaml")  # passes the allowlist
    root = _custom(target, PURE_QUERY[target.dialect])
    try:
        result = run_job(load_project(root), "custom")
        assert result.rows_read == 3
    finally:
        (root / "jobs" / "custom.yaml").unlink()
        (root / "mappings" / "custom.yaml").unlink()


def test_a_refused_function_never_reaches_the_server(target: Target) -> None:
    from etl.errors import ConfigError

    root = _custom(target, REFUSED_FUNCTION[target.dialect])
    try:
        with pytest.raises(ConfigError, match=r"source\.query: refused"):
            run_job(load_project(root), "custom")
    finally:
        (root / "jobs" / "custom.yaml").unlink()
        (root / "mappings" / "custom.yaml").unlink()
