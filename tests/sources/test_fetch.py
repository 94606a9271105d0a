"""etl.sources.sql.arrow: the Arrow extraction paths against the real PostgreSQL (ADBC) and MariaDB (connectorx,
and arrow-odbc through the MariaDB and PostgreSQL ODBC drivers), row for row against the SQLAlchemy
path; the explicit schema; the read-only layers on every path; secrets out of the messages."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from etl.config.models import ConnectorSpec, MappingSpec
from etl.errors import DataError, SourceError
from etl.pipeline.mapping import map_bookings
from etl.sources.reader import Window
from etl.sources.sql.arrow import (
    PATHS,
    AdbcPostgres,
    ArrowOdbc,
    ArrowPathFailed,
    OracleDataFrames,
    arrow_schema,
    arrow_type,
    choose,
    conform,
    record_batches,
)
from etl.sources.sql.dialects import get_dialect
from etl.sources.sql.engine import ReadOnlyViolation, Source, open_source, refusal
from etl.sources.sql.query import build_query, instant_columns, read_frames
from tests.sources.test_odbc import ODBC_URLS, require_driver
from tests.support.accounts import Server, writer_account

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
WHERE = "mappings/plant.yaml"

# (ts naive with microseconds, instant, machine with trailing blanks, order, event code, qty, day)
ROWS = [
    ("2024-03-04 06:00:00.123456", "2024-03-04 05:00:00.000001", "M1  ", "4711", 10, "1.50", "2024-03-04"),
    ("2024-03-04 07:30:00", "2024-03-04 06:30:00", "M1", "4711", 20, None, None),
    ("2024-03-04 08:00:00.5", None, None, " 4712ü ", 10, "10.00", "2024-03-05"),
    (None, "2024-03-04 09:00:00", "M2", None, None, "0.01", "2024-03-04"),
    ("2024-03-04 23:59:59.999999", "2024-03-04 23:59:59.999999", "M2", "4713", 30, "-2.25", "2024-03-04"),
]  # fmt: skip


def _create(engine: sa.Engine, dialect: str) -> None:
    if dialect == "postgresql":
        types = ("timestamp(6)", "timestamptz", "char(6)", "bigint", "numeric(10,2)")
    else:
        types = ("datetime(6)", "timestamp(6) NULL", "char(6)", "bigint", "decimal(10,2)")
    naive, instant, char, code, qty = types
    with engine.begin() as conn:
        if dialect != "postgresql":
            conn.execute(sa.text("SET time_zone = '+00:00'"))
        else:
            conn.execute(sa.text("SET TimeZone = 'UTC'"))
        conn.execute(
            sa.text(
                f"CREATE TABLE bookings (id int PRIMARY KEY, ts {naive}, tsz {instant}, "
                f"machine {char}, order_no varchar(20), event {code}, qty {qty}, day date)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO bookings VALUES (:i, :ts, :tsz, :m, :o, :e, :q, :d)"),
            [
                {
                    "i": i,
                    "ts": r[0],
                    "tsz": r[1],
                    "m": r[2],
                    "o": r[3],
                    "e": r[4],
                    "q": r[5],
                    "d": r[6],
                }
                for i, r in enumerate(ROWS)
            ],
        )


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with writer_account(request) as found:
        with found.admin.begin() as conn:
            conn.execute(sa.text("DROP TABLE bookings"))
        _create(found.admin, found.dialect)
        grant = f'"{found.user}"' if found.dialect == "postgresql" else f"'{found.user}'@'%'"
        with found.admin.begin() as conn:
            conn.execute(sa.text(f"GRANT ALL ON bookings TO {grant}"))
        yield found


def mapping(**extra: Any) -> MappingSpec:
    return MappingSpec.model_validate(
        {
            "structure": "bookings",
            "source": {"table": "bookings"},
            "columns": {
                "timestamp": "ts",
                "order_code": "order_no",
                "machine_code": "machine",
                "event": "event",
                "product_code": "qty",
            },
            "events": {"START": [10], "END": [20]},
            **extra,
        }
    )


def source_for(server: Server, fetch: str, **spec: Any) -> Source:
    base = server.spec().model_dump(exclude_none=True)
    base["password"] = server.password
    return open_source(
        "plant",
        ConnectorSpec.model_validate({**base, "fetch": fetch, **spec}),
        Path.cwd(),
        [server.password],
    )


def read(
    source: Source, spec: MappingSpec, window: Window | None = None, size: int = 2
) -> pd.DataFrame:
    with source.connect() as conn:
        instants = instant_columns(conn, spec, source.dialect)
        query = build_query(spec, window, BERLIN, instants)
        frames = list(read_frames(source, conn, spec, query, instants, size, WHERE))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plain(value: Any) -> Any:
    """A cell as a comparable Python value, whatever container it came in."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        # PyMySQL hands a MySQL TIMESTAMP over as naive UTC, Arrow as UTC-aware: the same instant
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "item"):  # numpy scalars
        return plain(value.item())
    return value


def cells(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    return [tuple(plain(v) for v in row) for row in frame.itertuples(index=False)]


def test_every_dialect_names_its_arrow_path() -> None:
    from etl.sources.sql.dialects import get_dialect

    paths = {
        name: get_dialect(name).arrow_path(sa.make_url(f"{name}://h/db"))
        for name in ("postgresql", "mysql", "mariadb", "mssql", "oracle", "sqlite")
    }
    assert paths == {
        "postgresql": "adbc_postgresql",
        "mysql": "connectorx_mysql",
        "mariadb": "connectorx_mysql",
        "mssql": "arrow_odbc",
        "oracle": "oracledb",
        "sqlite": None,
    }
    odbc = sa.make_url("mysql+pyodbc://u@h/db?driver=MariaDB+Unicode")
    assert get_dialect("mariadb").arrow_path(odbc) == "arrow_odbc"
    assert all(path.version() is not None for path in PATHS.values()), "drivers installed"


def test_the_schema_comes_from_the_catalog_types() -> None:
    assert arrow_type(sa.DateTime(), instant=False) == pa.timestamp("us")
    assert arrow_type(postgresql.TIMESTAMP(timezone=True), instant=True) == pa.timestamp(
        "us", tz="UTC"
    )
    assert arrow_type(mysql.BIGINT(), instant=False) == pa.int64()
    assert arrow_type(mysql.DECIMAL(10, 2), instant=False) == pa.decimal128(10, 2)
    assert arrow_type(postgresql.NUMERIC(), instant=False) == pa.string()
    assert arrow_type(sa.CHAR(6), instant=False) == pa.string()
    assert arrow_type(sa.Date(), instant=False) == pa.date32()


def test_conform_casts_to_the_explicit_schema_never_to_what_the_batch_holds() -> None:
    batch = pa.record_batch(
        {
            "a": pa.array([1, None], pa.int32()),
            "b": pa.array([dt.datetime(2024, 1, 1, 1)] * 2, pa.timestamp("ns")),
            "c": pa.array([None, None], pa.null()),
        }
    )
    wanted = {"a": pa.int64(), "b": pa.timestamp("us", tz="UTC"), "c": pa.string()}
    out = conform(batch, wanted)
    assert out.schema == pa.schema([pa.field(n, t) for n, t in wanted.items()])
    assert out.column("b")[0].as_py() == dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC)


def test_sqlite_reads_through_sqlalchemy_and_check_says_why(tmp_path: Path) -> None:
    spec = ConnectorSpec.model_validate({"dialect": "sqlite", "path": "x.sqlite"})
    source = open_source("plant", spec, tmp_path, [])
    try:
        assert choose(source).label == "sqlalchemy (SQLite has no Arrow path)"
    finally:
        source.close()


@pytest.mark.parametrize("fetch", ["auto", "arrow"])
def test_arrow_rows_are_the_sqlalchemy_rows(server: Server, fetch: str) -> None:
    old, new = source_for(server, "sqlalchemy"), source_for(server, fetch)
    try:
        assert choose(old).path is None
        assert (
            choose(new).path
            is PATHS[(server.dialect == "postgresql" and "adbc_postgresql") or "connectorx_mysql"]
        )
        spec = mapping()
        before, after = read(old, spec), read(new, spec)
        assert len(after) == len(ROWS)
        assert list(after.columns) == list(before.columns)
        assert cells(after) == cells(before)
        # the instant column is read in UTC on both paths
        both = mapping(
            columns={
                "timestamp": "tsz",
                "order_code": "order_no",
                "machine_code": "machine",
                "event": "event",
            }
        )
        assert cells(read(new, both)) == cells(read(old, both))
        # mapped the same, microseconds, trailing blanks, integer codes and NULLs included
        with new.connect() as conn:
            instants = instant_columns(conn, both, new.dialect)
        for spec in (mapping(), both):
            a = map_bookings(read(old, spec), spec, BERLIN, instants)
            b = map_bookings(read(new, spec), spec, BERLIN, instants)
            pd.testing.assert_frame_equal(a.rows, b.rows)
            pd.testing.assert_frame_equal(a.anomalies, b.anomalies)
            assert a.codes == b.codes
        stamps = map_bookings(read(new, mapping()), mapping(), UTC).rows["ts"]
        assert pd.Timestamp("2024-03-04 06:00:00.123456", tz="UTC") in set(stamps)
    finally:
        old.close()
        new.close()


def test_windows_and_filters_select_the_same_rows(server: Server) -> None:
    old, new = source_for(server, "sqlalchemy"), source_for(server, "arrow")
    window = Window(
        dt.datetime(2024, 3, 4, 6, tzinfo=dt.UTC), dt.datetime(2024, 3, 4, 7, tzinfo=dt.UTC)
    )
    try:
        for spec in (
            mapping(filters=[{"column": "order_no", "in": ["4711", "4713"]}]),
            mapping(filters=[{"column": "event", "eq": 10}, {"column": "qty", "ge": 1}]),
            mapping(filters=[{"column": "machine", "is_null": False}]),
            # rendered literals (ADBC, connectorx): quotes and backslashes stay inside the value
            mapping(filters=[{"column": "order_no", "ne": "4711' OR '1'='1"}]),
            mapping(filters=[{"column": "order_no", "in": ["4711\\' OR 1=1 -- ", "4712\\"]}]),
        ):
            for win in (None, window):
                assert cells(read(new, spec, win)) == cells(read(old, spec, win)), (
                    spec.filters,
                    win,
                )
        # the window (widened by the DST margin) leaves out 23:59 and keeps the NULL timestamp
        assert len(read(new, mapping(), window)) == len(ROWS) - 1
    finally:
        old.close()
        new.close()


@pytest.mark.parametrize(
    ("spec", "keep"),
    [
        ({"column": "event", "ne": 20}, lambda r: r[4] != 20),
        ({"column": "machine", "not_in": ["M2"]}, lambda r: r[2] is None or r[2].strip() != "M2"),
        ({"column": "event", "eq": 10}, lambda r: r[4] == 10),
        ({"column": "machine", "in": ["M1"]}, lambda r: r[2] is not None and r[2].strip() == "M1"),
        # text values against an integer column: the server reads them as integers on every path
        ({"column": "event", "ne": "20"}, lambda r: r[4] != 20),
        ({"column": "event", "not_in": ["10", "30"]}, lambda r: r[4] not in (10, 30)),
    ],
)
def test_ne_and_not_in_keep_the_null_rows_on_every_path_and_in_the_file_readers(
    server: Server, spec: dict[str, Any], keep: Any
) -> None:
    """A NULL flag is "not cancelled": ``ne``/``not_in`` keep its row (the complement of ``eq``/
    ``in``), the other operators drop it; the SQL paths and the file/HTTP readers' filter agree."""
    from etl.sources.rows import apply_filters

    wanted = sorted(str(r[3]) for r in ROWS if keep(r))
    raw = pd.DataFrame(ROWS, columns=["ts", "tsz", "machine", "order_no", "event", "qty", "day"])
    in_files = apply_filters(raw, mapping(filters=[spec]).filters)
    assert sorted(str(plain(v)) for v in in_files["order_no"]) == wanted
    for fetch in ("sqlalchemy", "arrow"):
        source = source_for(server, fetch)
        try:
            got = read(source, mapping(filters=[spec]))
        finally:
            source.close()
        assert sorted(str(plain(v)) for v in got["order_no"]) == wanted, (fetch, spec)


def test_the_explicit_schema_of_a_real_table(server: Server) -> None:
    source = source_for(server, "arrow")
    spec = mapping()
    try:
        with source.connect() as conn:
            instants = instant_columns(conn, spec, source.dialect)
            wanted = arrow_schema(
                conn,
                spec,
                ["ts", "tsz", "machine", "event", "qty", "day"],
                instants,
                source.dialect,
            )
            query = sa.select(*[sa.column(n) for n in wanted]).select_from(sa.table("bookings"))
            query = query.order_by(sa.column("id"))
            batches = list(record_batches(source, choose(source), conn, query, wanted, 2, WHERE))
    finally:
        source.close()
    assert [b.num_rows for b in batches] == [2, 2, 1]  # bounded by the batch size
    assert batches[0].schema.types == [
        pa.timestamp("us"),
        pa.timestamp("us", tz="UTC"),
        pa.string(),
        pa.int64(),
        pa.decimal128(10, 2),
        pa.date32(),
    ]
    table = pa.Table.from_batches(batches)
    assert table.column("qty").to_pylist()[0] == decimal.Decimal("1.50")
    assert table.column("tsz").to_pylist()[0] == dt.datetime(2024, 3, 4, 5, 0, 0, 1, tzinfo=dt.UTC)


def test_writes_through_each_arrow_path_fail(server: Server) -> None:
    before = server.snapshot()
    source = source_for(server, "arrow")
    path = choose(source).path
    assert path is not None
    try:
        # the guard sees the exact text the driver would get
        raw: Any = _Raw("DELETE FROM bookings")
        with source.connect() as conn, pytest.raises(ReadOnlyViolation):
            list(record_batches(source, choose(source), conn, raw, {}, 10, WHERE))
        # below the guard: the native session itself refuses writes
        for statement in ("DELETE FROM bookings", "CREATE TABLE intruder (a int)"):
            with pytest.raises(BaseException, match=r"(?i)read.only"):  # connectorx panics
                list(path.batches(source, statement, None, 10))
    finally:
        source.close()
    assert server.snapshot() == before


class _Raw:
    """A 'query' that compiles to fixed text, to show the guard sees what the driver would get."""

    def __init__(self, sql: str) -> None:
        self.sql = sql

    def compile(self, **_: Any) -> str:
        return self.sql


def test_the_password_never_appears_in_an_arrow_path_error(server: Server) -> None:
    source = source_for(server, "arrow")
    spec = mapping(source={"table": "nosuch"})
    try:
        with source.connect() as conn, pytest.raises(DataError) as info:
            query = build_query(spec, None, UTC)
            list(record_batches(source, choose(source), conn, query, {}, 10, WHERE))
    finally:
        source.close()
    assert "nosuch" in info.value.message
    assert server.password not in info.value.message


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
def test_a_native_driver_failure_is_redacted_and_falls_back_when_fetch_is_auto(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # libpq echoes a bad option value: here the password, which must never be shown
    original = AdbcPostgres.uri
    monkeypatch.setattr(
        AdbcPostgres, "uri", lambda self, s: original(self, s) + f"&sslmode={server.password}"
    )
    strict, auto, old = (source_for(server, f) for f in ("arrow", "auto", "sqlalchemy"))
    try:
        with pytest.raises(ArrowPathFailed) as info:
            read(strict, mapping())
        assert info.value.exit_code == 3
        assert "invalid sslmode value" in info.value.message
        assert server.password not in str(info.value) and "***" in info.value.message
        with caplog.at_level("WARNING"):
            rows = read(auto, mapping())
        assert cells(rows) == cells(read(old, mapping()))
        assert "reading through SQLAlchemy instead" in caplog.text
        assert server.password not in caplog.text
    finally:
        for source in (strict, auto, old):
            source.close()


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_arrow_odbc_rows_are_the_pyodbc_rows_and_its_session_is_read_only(
    dialect: str, request: pytest.FixtureRequest
) -> None:
    """The path SQL Server connectors take, through the PostgreSQL and MariaDB ODBC drivers."""
    driver, template = ODBC_URLS[dialect]
    require_driver(driver)
    url = sa.make_url(
        request.getfixturevalue(
            "postgres_database" if dialect == "postgresql" else "mariadb_database"
        )
    )
    admin = sa.create_engine(url)
    _create(admin, dialect)
    port = url.port or (5432 if dialect == "postgresql" else 3306)
    odbc_url = template.format(user=url.username, host=url.host, db=url.database, port=port)
    old, new = (
        open_source(
            "plant",
            ConnectorSpec.model_validate({"dialect": dialect, "url": odbc_url, "fetch": fetch}),
            Path.cwd(),
            [],
        )
        for fetch in ("sqlalchemy", "arrow")
    )
    instant = mapping(
        columns={
            "timestamp": "tsz",
            "order_code": "order_no",
            "machine_code": "machine",
            "event": "event",
        }
    )
    try:
        assert isinstance(choose(new).path, ArrowOdbc)
        for spec in (
            mapping(),
            instant,
            mapping(filters=[{"column": "order_no", "in": ["4711", "x' OR '1'='1"]}]),
        ):
            before, after = read(old, spec), read(new, spec)
            assert len(after) == (2 if spec.filters else len(ROWS))
            with new.connect() as conn:
                instants = instant_columns(conn, spec, new.dialect)
            a = map_bookings(before, spec, BERLIN, instants)
            b = map_bookings(after, spec, BERLIN, instants)
            pd.testing.assert_frame_equal(a.rows, b.rows)
            pd.testing.assert_frame_equal(a.anomalies, b.anomalies)
        path = choose(new).path
        assert path is not None
        with pytest.raises(BaseException, match=r"(?i)read.only"):
            list(path.batches(new, "DELETE FROM bookings", None, 10))
    finally:
        old.close()
        new.close()
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM bookings")).scalar() == len(ROWS)
    admin.dispose()


def test_the_oracle_path_binds_named_parameters_and_opens_read_only(tmp_path: Path) -> None:
    """No Oracle server here: the statement, its parameters and the driver call are checked as
    far as they go without one (the conformance suite reads through it with ETL_TEST_ORACLE_URL)."""
    import inspect

    import oracledb
    from sqlalchemy.dialects import oracle

    spec = ConnectorSpec.model_validate(
        {"dialect": "oracle", "url": "oracle+oracledb://etl:pw@db.example:1521/?service_name=X"}
    )
    source = open_source("plant", spec, tmp_path, ["pw"])
    try:
        path = choose(source).path
        assert isinstance(path, OracleDataFrames)
        assert source.dialect.begin_statement == "SET TRANSACTION READ ONLY"

        class Compiles:
            dialect = oracle.dialect()

        query = build_query(
            mapping(filters=[{"column": "order_no", "eq": "1 OR 1=1"}]),
            Window(dt.datetime(2024, 3, 4, tzinfo=dt.UTC), dt.datetime(2024, 3, 5, tzinfo=dt.UTC)),
            BERLIN,
        )
        sql, params = path.statement(query, Compiles(), source.dialect)  # type: ignore[arg-type]
        assert "1 OR 1=1" not in sql and "1 OR 1=1" in params.values()
        assert all(f":{name}" in sql for name in params)
        assert refusal(sql, "oracle") is None
        _, kwargs = source.engine.dialect.create_connect_args(source.engine.url)
        assert kwargs["user"] == "etl" and "SERVICE_NAME=X" in kwargs["dsn"]
        fetch = inspect.signature(oracledb.Connection.fetch_df_batches).parameters
        assert {"statement", "parameters", "size", "fetch_decimals"} <= set(fetch)
    finally:
        source.close()


def _project(server: Server, tmp_path: Path) -> Path:
    """A project whose job ``bookings`` reads the test table through connector ``plant``."""
    from tests.support.accounts import write_project

    root = write_project(tmp_path, server.dialect, server.url, "RW_PASSWORD")
    (root / "mappings" / "bookings.yaml").write_text(
        "structure: bookings\nsource: {table: bookings}\n"
        "columns: {timestamp: ts, order_code: order_no, machine_code: machine, event: event}\n"
        "events: {START: [10], END: [20]}\n"
    )
    (root / "etl.yaml").write_text("defaults: {start_from: 2024-03-01}\n")
    return root


def test_preview_says_which_path_read_the_rows(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.commands.preview import preview
    from etl.config.loader import load_project

    monkeypatch.setenv("RW_PASSWORD", server.password)
    result = preview(load_project(_project(server, tmp_path)), "bookings")
    assert result.rows_read == len(ROWS)
    assert any(
        n.startswith("rows read through arrow (") and n.endswith("as quoted literals")
        for n in result.notes
    ), result.notes


def test_check_names_the_path_and_proves_it_reads(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from etl.commands.check import check_connector, format_report
    from etl.config.loader import load_project

    monkeypatch.setenv("RW_PASSWORD", server.password)
    project = load_project(_project(server, tmp_path))
    report = check_connector(project, "plant")
    assert [t.readable for t in report.tables] == [True]
    title = "ADBC PostgreSQL driver" if server.dialect == "postgresql" else "connectorx"
    assert report.fetch.startswith(f"arrow ({title} "), report.fetch
    assert f"fetch:      arrow ({title} " in format_report(report)
    assert report.as_dict()["fetch"] == report.fetch
    assert not report.warnings
    if server.dialect == "postgresql":  # a native driver that cannot connect is reported
        original = AdbcPostgres.uri
        monkeypatch.setattr(AdbcPostgres, "uri", lambda self, s: original(self, s) + "&sslmode=x")
        report = check_connector(project, "plant")
        assert report.fetch.endswith(": FAILED")
        assert any(
            "the Arrow path failed (rows come through SQLAlchemy)" in w for w in report.warnings
        )


def test_times_a_driver_hands_over_as_text_are_parsed() -> None:
    """SQL Server's datetimeoffset arrives through ODBC as text with 7 digits and an offset."""
    batch = pa.record_batch(
        {
            "dto": pa.array(["2024-01-01 00:00:00.1234567 +01:00", None]),
            "naive": pa.array(["2024-01-01 06:00:00.5", None]),
        }
    )
    out = conform(batch, {"dto": pa.timestamp("us", tz="UTC"), "naive": pa.timestamp("us")})
    assert out.column("dto").to_pylist() == [
        dt.datetime(2023, 12, 31, 23, 0, 0, 123456, tzinfo=dt.UTC),
        None,
    ]
    assert out.column("naive").to_pylist() == [dt.datetime(2024, 1, 1, 6, 0, 0, 500000), None]


def test_connector_options_connectorx_cannot_honour_keep_sqlalchemy(tmp_path: Path) -> None:
    spec = {"dialect": "mariadb", "host": "db", "database": "mes", "user": "etl"}
    plain = open_source("p", ConnectorSpec.model_validate(spec), tmp_path, [])
    tls = open_source(
        "p",
        ConnectorSpec.model_validate({**spec, "options": {"ssl_ca": "/etc/ca.pem"}}),
        tmp_path,
        [],
    )
    try:
        assert choose(plain).label.startswith("arrow (connectorx ")
        assert choose(tls).label == "sqlalchemy (connectorx takes no connection options (ssl_ca))"
        strict = open_source(
            "p",
            ConnectorSpec.model_validate(
                {**spec, "options": {"ssl_ca": "/etc/ca.pem"}, "fetch": "arrow"}
            ),
            tmp_path,
            [],
        )
        with pytest.raises(SourceError, match="fetch: arrow, but connectorx takes no"):
            choose(strict)
        strict.close()
    finally:
        plain.close()
        tls.close()


def test_sql_server_gets_typed_window_bounds_through_arrow_odbc() -> None:
    """arrow-odbc sends parameters as text: for SQL Server every date/time value is CAST to
    datetime2(7)/date in the statement and sent in ISO 8601 with 'T', which no DATEFORMAT or
    SET LANGUAGE reads otherwise and which keeps microseconds (datetime from text: at most 3);
    a whole float is sent as an integer ('1.0' into an int column is error 245)."""
    engine = sa.create_engine("mssql+pyodbc://etl:pw@db.example/mes?driver=ODBC+Driver+18")
    mssql_dialect = get_dialect("mssql")

    class Compiles:
        dialect = engine.dialect

    spec = mapping(filters=[{"column": "event", "ge": 1.0}, {"column": "qty", "lt": 2.5}])
    window = Window(
        dt.datetime(2024, 3, 4, 5, 6, 7, 123456, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 5, tzinfo=dt.UTC),
    )
    sql, params = ArrowOdbc().statement(build_query(spec, window, UTC), Compiles(), mssql_dialect)  # type: ignore[arg-type]
    assert sql.count("CAST(? AS datetime2(7))") == 2, sql
    assert "ts >= CAST(? AS datetime2(7)) AND bookings.ts < CAST(? AS datetime2(7))" in sql
    assert params == ["1", "2.5", "2024-03-04T02:06:07.123456", "2024-03-05T03:00:00"]
    assert refusal(sql, "mssql") is None
    day = mapping(
        columns={
            "timestamp": {"date": "day", "time": "ts"},
            "order_code": "order_no",
            "machine_code": "machine",
            "event": "event",
        }
    )
    sql, params = ArrowOdbc().statement(build_query(day, window, UTC), Compiles(), mssql_dialect)  # type: ignore[arg-type]
    assert "CAST(? AS date)" in sql and "2024-03-04" in params, (sql, params)
    # other dialects through ODBC keep their own conversions: no CAST, the space separator
    pg = sa.create_engine("postgresql+pyodbc://etl:pw@db.example/mes?driver=PostgreSQL+Unicode")

    class CompilesPg:
        dialect = pg.dialect

    sql, params = ArrowOdbc().statement(
        build_query(spec, window, UTC),
        CompilesPg(),  # type: ignore[arg-type]
        get_dialect("postgresql"),
    )
    assert "CAST" not in sql and "2024-03-04 02:06:07.123456" in params
    engine.dispose()
    pg.dispose()


def test_unparseable_text_times_are_bad_timestamp_anomalies_as_through_sqlalchemy() -> None:
    """A text time the Arrow path cannot parse is not turned into a silent NULL: the column stays
    text and the mapping reports the row as bad_timestamp with the raw value, exactly as for the
    text the SQLAlchemy path hands over."""
    raw = {
        "ts": ["2024-03-04 06:00:00.1234567 +01:00", "31.02.2024 25:00", None],
        "order_no": ["4711", "4711", "4712"],
        "machine": ["M1", "M1", "M1"],
        "event": [10, 20, 10],
    }
    batch = pa.record_batch({**raw, "event": pa.array(raw["event"], pa.int64())})
    wanted = {
        "ts": pa.timestamp("us", tz="UTC"),
        "order_no": pa.string(),
        "machine": pa.string(),
        "event": pa.int64(),
    }
    out = conform(batch, wanted)
    assert out.column("ts").to_pylist() == raw["ts"]
    spec = mapping(
        columns={
            "timestamp": "ts",
            "order_code": "order_no",
            "machine_code": "machine",
            "event": "event",
        }
    )
    instants = frozenset({"ts"})
    arrow = map_bookings(out.to_pandas(date_as_object=True), spec, BERLIN, instants)
    dbapi = map_bookings(pd.DataFrame(raw), spec, BERLIN, instants)
    pd.testing.assert_frame_equal(arrow.anomalies, dbapi.anomalies)
    pd.testing.assert_frame_equal(arrow.rows, dbapi.rows)
    bad = arrow.anomalies[arrow.anomalies["kind"] == "bad_timestamp"]
    assert len(bad) == 2, arrow.anomalies
    assert bad["detail"].str.contains("ts='31.02.2024 25:00'", regex=False).any(), bad["detail"]
    assert arrow.rows["ts"].tolist() == [pd.Timestamp("2024-03-04 05:00:00.123456", tz="UTC")]


def test_preview_names_sqlalchemy_when_fetch_auto_fell_back(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fetch: auto`` whose native driver fails before the first row: the rows come through
    SQLAlchemy, and preview says so instead of naming the Arrow path it did not use."""
    from etl.commands.preview import preview
    from etl.config.loader import load_project

    monkeypatch.setenv("RW_PASSWORD", server.password)
    path = PATHS["adbc_postgresql" if server.dialect == "postgresql" else "connectorx_mysql"]

    def broken(*args: Any, **kwargs: Any) -> Iterator[pa.RecordBatch]:
        raise RuntimeError("native driver cannot connect")
        yield  # a generator, like the real ones

    monkeypatch.setattr(type(path), "batches", broken)
    result = preview(load_project(_project(server, tmp_path)), "bookings")
    assert result.rows_read == len(ROWS)
    fetch = [n for n in result.notes if n.startswith("rows read through")]
    assert len(fetch) == 1 and fetch[0].startswith("rows read through sqlalchemy ("), result.notes
    assert "failed, fetch: auto fell back" in fetch[0] and "arrow" not in fetch[0], fetch


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_arrow_odbc_closes_its_connection_on_early_exit_and_on_failure(
    dialect: str, request: pytest.FixtureRequest
) -> None:
    """An abandoned read and a failed one (whose traceback keeps the generator's frame alive)
    leave no session behind on the server."""
    driver, template = ODBC_URLS[dialect]
    require_driver(driver)
    url = sa.make_url(
        request.getfixturevalue(
            "postgres_database" if dialect == "postgresql" else "mariadb_database"
        )
    )
    admin = sa.create_engine(url, poolclass=sa.NullPool)
    _create(admin, dialect)
    port = url.port or (5432 if dialect == "postgresql" else 3306)
    odbc_url = template.format(user=url.username, host=url.host, db=url.database, port=port)
    if url.password:
        odbc_url = odbc_url.replace(f"{url.username}@", f"{url.username}:{url.password}@")
    source = open_source(
        "plant",
        ConnectorSpec.model_validate({"dialect": dialect, "url": odbc_url, "fetch": "arrow"}),
        Path.cwd(),
        [],
    )
    count = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid()"
        if dialect == "postgresql"
        else "SELECT count(*) FROM information_schema.processlist WHERE db = database() "
        "AND id <> connection_id()"
    )

    def sessions(expect: int | None = None) -> int:
        # a server ends a backend shortly after its client hung up: wait (bounded) for the
        # count we expect instead of racing the server's own teardown
        for _ in range(100):
            with admin.connect() as conn:
                found = int(conn.execute(sa.text(count)).scalar_one())
            if expect is None or found == expect:
                break
            time.sleep(0.05)
        return found

    path = PATHS["arrow_odbc"]
    try:
        before = sessions()
        batches = path.batches(source, "SELECT id FROM bookings ORDER BY id", None, 1)
        assert next(batches).num_rows == 1
        assert sessions() == before + 1
        batches.close()  # what an abandoned generator gets (and a consumer that stops early)
        assert sessions(before) == before
        with pytest.raises(BaseException) as failed:
            list(path.batches(source, "SELECT no_such_column FROM bookings", None, 1))
        assert failed.value.__traceback__ is not None  # holds the generator's frame
        assert sessions(before) == before
    finally:
        source.close()
        admin.dispose()


def test_the_oracle_path_connects_with_the_connectors_connect_args(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Oracle server here: the native connect gets what the engine's connect gets
    (tcp_connect_timeout from the connector's connect_timeout), not the URL's arguments only."""
    import oracledb

    seen: dict[str, Any] = {}

    def connect(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise oracledb.OperationalError("no server here")

    monkeypatch.setattr(oracledb, "connect", connect)
    spec = ConnectorSpec.model_validate(
        {
            "dialect": "oracle",
            "url": "oracle+oracledb://etl:pw@db.example:1521/?service_name=X",
            "connect_timeout": "7s",
        }
    )
    source = open_source("plant", spec, tmp_path, ["pw"])
    try:
        with pytest.raises(oracledb.OperationalError):
            list(PATHS["oracledb"].batches(source, "SELECT 1 FROM dual", None, 10))
    finally:
        source.close()
    assert seen["tcp_connect_timeout"] == 7.0 and seen["user"] == "etl"


def test_connectorx_gets_the_connect_timeout(tmp_path: Path) -> None:
    """connectorx's MySQL URI carries the connector's connect_timeout (each TCP connect; its pool
    still retries for about 30 s, see docs/limits.md); reading through it is covered above."""
    from etl.sources.sql.arrow import ConnectorXMySQL

    spec = {"dialect": "mariadb", "host": "db", "database": "mes", "user": "etl"}
    source = open_source(
        "p", ConnectorSpec.model_validate({**spec, "connect_timeout": "4s"}), tmp_path, []
    )
    try:
        assert ConnectorXMySQL().uri(source).endswith("/mes?tcp_connect_timeout_ms=4000")
    finally:
        source.close()


def test_a_run_reflects_the_catalog_once(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """check_columns, instant_columns and the Arrow schema share one reflection per connection."""
    from sqlalchemy.engine.reflection import Inspector

    from etl.sources.sql.query import check_columns

    calls: list[str] = []
    original = Inspector.get_columns

    def counted(self: Inspector, table: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(table)
        return original(self, table, *args, **kwargs)

    monkeypatch.setattr(Inspector, "get_columns", counted)
    source = source_for(server, "arrow")
    spec = mapping()
    try:
        with source.connect() as conn:
            check_columns(conn, spec, WHERE)
            instants = instant_columns(conn, spec, source.dialect)
            query = build_query(spec, None, BERLIN, instants)
            frames = list(read_frames(source, conn, spec, query, instants, 2, WHERE))
        with source.connect() as conn:  # a new connection (the next run) reflects afresh
            instant_columns(conn, spec, source.dialect)
    finally:
        source.close()
    assert sum(len(f) for f in frames) == len(ROWS)
    assert calls == ["bookings", "bookings"], calls


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_a_password_with_space_plus_at_and_percent_is_redacted_in_every_uri_form(
    dialect: str, tmp_path: Path
) -> None:
    """A native driver may echo its URI: the password as the ADBC URI (percent-encoded), the
    connectorx URI (SQLAlchemy's rendering: space and '+' as is) or form-encoding carries it."""
    import urllib.parse

    from etl.sources.sql.arrow import ConnectorXMySQL, _explain

    password = "p w+x@y%z:/"
    spec = ConnectorSpec.model_validate(
        {"dialect": dialect, "host": "db", "database": "mes", "user": "etl", "password": password}
    )
    source = open_source("plant", spec, tmp_path, [])  # no project secrets: the forms must do
    path = AdbcPostgres() if dialect == "postgresql" else ConnectorXMySQL()
    try:
        uri = path.uri(source)
        forms = [
            uri,
            password,
            urllib.parse.quote(password, safe=""),
            urllib.parse.quote_plus(password),
            source.engine.url.render_as_string(hide_password=False),
        ]
        for form in forms:
            error = _explain(source, path, RuntimeError(f"cannot connect to {form}"), WHERE)
            assert "p w" not in error.message and "p%20w" not in error.message, error.message
            assert "x@y" not in error.message and "x%40y" not in error.message, error.message
    finally:
        source.close()


def test_postgresql_sessions_run_without_jit(postgres_database: str) -> None:
    """JIT cost ~61 ms of a 0.34 s window query: the psycopg and ADBC sessions switch it off
    (and stay read-only)."""
    url = sa.make_url(postgres_database)
    spec = ConnectorSpec.model_validate(
        {"dialect": "postgresql", "url": url.render_as_string(hide_password=False)}
    )
    source = open_source("plant", spec, Path.cwd(), [url.password or ""])
    try:
        with source.connect() as conn:  # as every run: SQLAlchemy first
            assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
            assert conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
        batches = PATHS["adbc_postgresql"].batches(
            source,
            "SELECT current_setting('jit') AS jit, "
            "current_setting('default_transaction_read_only') AS ro",
            None,
            10,
        )
        assert pa.Table.from_batches(list(batches)).to_pylist() == [{"jit": "off", "ro": "on"}]
    finally:
        source.close()
