"""etl.sources.sql.query (+ the statement guard of etl.sources.sql.engine): the SELECT per dialect, custom queries, and
streaming from a real SQLite file opened read-only."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, mysql, oracle, postgresql, sqlite
from sqlalchemy.engine import Compiled

from etl.config.models import ConnectorSpec, MappingSpec
from etl.config.queries import check_custom_query
from etl.errors import ConfigError, DataError
from etl.pipeline.mapping import map_bookings
from etl.sources.reader import WINDOW_MARGIN, Window
from etl.sources.sql.engine import ReadOnlyViolation, Source, _guard, open_source
from etl.sources.sql.query import (
    build_query,
    check_columns,
    empty_frame,
    instant_columns,
    read_batches,
    sortable,
)
from tests.conftest import MARIADB_URL, POSTGRES_URL, server_or_skip

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")
WINDOW = Window(dt.datetime(2024, 3, 4, tzinfo=dt.UTC), dt.datetime(2024, 3, 5, tzinfo=dt.UTC))
WHERE = "mappings/plant.yaml"

DIALECTS: dict[str, Callable[[], sa.Dialect]] = {
    "mssql": mssql.dialect,
    "mysql": mysql.dialect,
    "mariadb": lambda: mysql.dialect(is_mariadb=True),
    "oracle": oracle.dialect,
    "postgresql": postgresql.dialect,
    "sqlite": sqlite.dialect,
}
QUOTES = {
    "mssql": ("[", "]"),
    "mysql": ("`", "`"),
    "mariadb": ("`", "`"),
    "oracle": ('"', '"'),
    "postgresql": ('"', '"'),
    "sqlite": ('"', '"'),
}
every_dialect = pytest.mark.parametrize("dialect", list(DIALECTS))


def mapping(**spec: Any) -> MappingSpec:
    """A bookings mapping on BDE.BUCHUNGEN; keyword arguments replace top-level keys."""
    base: dict[str, Any] = {
        "structure": "bookings",
        "source": {"schema": "BDE", "table": "BUCHUNGEN"},
        "columns": {
            "timestamp": "BUCHUNGSZEIT",
            "order_code": "order",  # a reserved word
            "machine_code": "machine",  # needs no quoting
            "event": "Satz Art",  # a blank
            "product_code": "Artikel",  # mixed case
        },
        "events": {"START": ["A"], "END": ["E"]},
    }
    base.update(spec)
    return MappingSpec.model_validate(base)


def orders(**spec: Any) -> MappingSpec:
    base: dict[str, Any] = {
        "structure": "orders",
        "source": {"table": "orders"},
        "columns": {
            "order_code": "order_no",
            "machine_code": "machine",
            "start": "started_at",
            "end": "finished_at",
        },
    }
    base.update(spec)
    return MappingSpec.model_validate(base)


def compile_for(
    dialect: str, spec: MappingSpec, window: Window | None = WINDOW, zone: ZoneInfo = BERLIN
) -> tuple[str, dict[str, Any]]:
    compiled: Compiled = build_query(spec, window, zone).compile(dialect=DIALECTS[dialect]())
    return str(compiled), dict(compiled.params)


def q(dialect: str, name: str) -> str:
    left, right = QUOTES[dialect]
    return f"{left}{name}{right}"


def where_part(sql: str) -> str:
    assert "WHERE" in sql
    return sql.split("WHERE", 1)[1]


def local_bounds(zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The window as the source sees it: widened by the margin, naive plant-local time."""
    lo = (WINDOW.lo - WINDOW_MARGIN).astimezone(zone).replace(tzinfo=None)
    hi = (WINDOW.hi + WINDOW_MARGIN).astimezone(zone).replace(tzinfo=None)
    return lo, hi


def assert_bare(column_ref: str, where: str) -> None:
    """Every use of the column in WHERE is the raw column: no function call around it."""
    assert column_ref in where
    position = where.find(column_ref)
    while position != -1:
        before = where[:position]
        assert before.endswith((" ", " (")), f"function around {column_ref}: ...{before[-20:]}"
        position = where.find(column_ref, position + 1)


# --------------------------------------------------------------------------- build_query per dialect


@every_dialect
def test_identifiers_are_quoted_where_needed(dialect: str) -> None:
    sql, _ = compile_for(dialect, mapping(), window=None)
    table = f"{q(dialect, 'BDE')}.{q(dialect, 'BUCHUNGEN')}"
    assert f"FROM {table}" in sql
    for name in ("BUCHUNGSZEIT", "order", "Satz Art", "Artikel"):
        assert f"{table}.{q(dialect, name)}" in sql
    # a plain lower-case name needs no quotes
    assert f"{table}.machine" in sql
    assert "WHERE" not in sql


@every_dialect
def test_filters_are_bound_parameters(dialect: str) -> None:
    spec = mapping(
        filters=[
            {"column": "WERK", "eq": "PLANT-1000"},
            {"column": "STOKZ", "ne": "X-CANCELLED"},
            {"column": "MENGE", "ge": 5},
            {"column": "KIND", "in": ["PROD", "REWORK"]},
            {"column": "STATE", "not_in": ["03declined"]},
            {"column": "DELETED_AT", "is_null": True},
            {"column": "BUCHUNGSZEIT", "is_null": False},
        ]
    )
    sql, params = compile_for(dialect, spec, window=None)
    values = list(params.values())
    for value in ("PLANT-1000", "X-CANCELLED", 5, ["PROD", "REWORK"], ["03declined"]):
        assert value in values
    for literal in ("PLANT-1000", "X-CANCELLED", "PROD", "REWORK", "03declined"):
        assert literal not in sql
    where = where_part(sql)
    assert f"{q(dialect, 'DELETED_AT')} IS NULL" in where
    assert f"{q(dialect, 'BUCHUNGSZEIT')} IS NOT NULL" in where
    # filter columns are read for the WHERE clause only, not selected
    assert q(dialect, "WERK") not in sql.split("FROM", 1)[0]


@every_dialect
def test_ne_and_not_in_keep_null_rows_in_every_dialect(dialect: str) -> None:
    """``ne``/``not_in`` are the complement of ``eq``/``in``: ``(c <> v OR c IS NULL)``."""
    spec = mapping(
        filters=[{"column": "STORNO", "ne": 1}, {"column": "STATUS", "not_in": ["DLT", "DEL"]}]
    )
    sql, params = compile_for(dialect, spec, window=None)
    where = " ".join(where_part(sql).split())
    table = f"{q(dialect, 'BDE')}.{q(dialect, 'BUCHUNGEN')}"
    storno, status = f"{table}.{q(dialect, 'STORNO')}", f"{table}.{q(dialect, 'STATUS')}"
    assert f"({storno} != " in where or f"({storno} <> " in where
    assert f"OR {storno} IS NULL)" in where
    assert f"({status} NOT IN (" in where and f"OR {status} IS NULL)" in where
    assert 1 in params.values() and ["DLT", "DEL"] in params.values()
    # eq and in stay plain comparisons: a NULL row fails them
    plain, _ = compile_for(dialect, mapping(filters=[{"column": "STORNO", "eq": 0}]), window=None)
    assert "IS NULL" not in where_part(plain)


@every_dialect
def test_window_predicate_compares_the_raw_column_with_local_bounds(dialect: str) -> None:
    sql, params = compile_for(dialect, mapping())
    lo, hi = local_bounds(BERLIN)
    assert params["window_lo"] == lo == dt.datetime(2024, 3, 3, 22, 0)
    assert params["window_hi"] == hi == dt.datetime(2024, 3, 5, 4, 0)
    column = f"{q(dialect, 'BDE')}.{q(dialect, 'BUCHUNGEN')}.{q(dialect, 'BUCHUNGSZEIT')}"
    where = where_part(sql)
    assert f"{column} >= " in where
    assert f"{column} < " in where
    assert f"{column} IS NULL" in where  # NULL timestamps are read, to be reported
    assert_bare(column, where)


@every_dialect
def test_date_and_time_mapping_puts_the_window_on_the_date_column(dialect: str) -> None:
    spec = mapping(
        columns={
            "timestamp": {"date": "BUDAT", "time": "UZEIT"},
            "order_code": "AUFNR",
            "machine_code": "ARBPL",
            "event": "KENN",
        }
    )
    sql, params = compile_for(dialect, spec)
    # the whole first and last day: the time column cannot narrow it down without a function
    assert params["window_lo"] == dt.date(2024, 3, 3)
    assert params["window_hi"] == dt.date(2024, 3, 5)
    where = where_part(sql)
    assert f"{q(dialect, 'BUDAT')} >= " in where
    assert f"{q(dialect, 'BUDAT')} <= " in where
    assert f"{q(dialect, 'BUDAT')} IS NULL" in where
    assert q(dialect, "UZEIT") not in where
    assert q(dialect, "UZEIT") in sql  # selected


@pytest.mark.parametrize(
    ("column", "lo", "hi"),
    [
        pytest.param(
            {"column": "BUCHUNGSZEIT", "format": "%Y-%m-%d %H:%M:%S"},
            "2024-03-03 22:00:00",
            "2024-03-05 04:00:00",
            id="text-column",
        ),
        pytest.param(
            {"date": "BUDAT", "time": "UZEIT", "date_format": "%Y%m%d"},
            "20240303",
            "20240305",
            id="sap-date-column",
        ),
    ],
)
def test_sortable_text_format_gives_string_bounds(column: dict[str, Any], lo: str, hi: str) -> None:
    spec = mapping(
        columns={"timestamp": column, "order_code": "AUFNR", "machine_code": "M", "event": "K"}
    )
    for dialect in DIALECTS:
        _, params = compile_for(dialect, spec)
        assert (params["window_lo"], params["window_hi"]) == (lo, hi)


@pytest.mark.parametrize(
    "column",
    [
        {"column": "BUCHUNGSZEIT", "format": "%d.%m.%Y %H:%M"},
        {"date": "BUDAT", "time": "UZEIT", "date_format": "%d.%m.%Y"},
    ],
)
def test_unsortable_format_reads_without_a_window_predicate(column: dict[str, Any]) -> None:
    spec = mapping(
        columns={"timestamp": column, "order_code": "AUFNR", "machine_code": "M", "event": "K"},
        filters=[{"column": "WERK", "eq": "1000"}],
    )
    for dialect in DIALECTS:
        sql, params = compile_for(dialect, spec)
        assert "window_lo" not in params
        assert "window_hi" not in params
        assert list(params.values()) == ["1000"]  # the filters still apply
        assert " >= " not in sql


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("%Y-%m-%d %H:%M:%S", True),
        ("%Y%m%d%H%M%S", True),
        ("%Y-%m-%dT%H:%M:%S.%f", True),
        ("%Y%m%d", True),
        ("%d.%m.%Y", False),
        ("%m/%d/%Y %H:%M", False),
        ("%Y-%d-%m", False),
        ("%y%m%d", False),
        ("%H:%M", False),
        ("no directives", False),
    ],
)
def test_sortable(fmt: str, expected: bool) -> None:
    assert sortable(fmt) is expected


@every_dialect
def test_custom_query_is_wrapped_as_a_subquery(dialect: str) -> None:
    query = "SELECT b.ts, b.mach, b.ord, b.ev FROM bde.buchungen b JOIN bde.werk w ON w.id = b.werk"
    spec = mapping(
        source={"query": query},
        columns={"timestamp": "ts", "order_code": "ord", "machine_code": "mach", "event": "ev"},
        filters=[{"column": "ev", "ne": "X"}],
    )
    sql, params = compile_for(dialect, spec)
    assert f"FROM ({query})" in sql
    assert sql.split("FROM", 1)[0].split() == [
        "SELECT",
        "src.ts,",
        "src.ord,",
        "src.mach,",
        "src.ev",
    ]
    where = where_part(sql)
    assert "src.ts >= " in where
    assert "src.ts < " in where
    assert_bare("src.ts", where)
    assert params["param_1"] == "X"


@every_dialect
def test_orders_window_keeps_runs_open_or_ending_in_the_window(dialect: str) -> None:
    sql, params = compile_for(dialect, orders())
    where = where_part(sql)
    assert "orders.started_at < " in where
    assert "orders.started_at >= " in where
    assert "orders.finished_at IS NULL" in where
    assert "orders.finished_at >= " in where
    assert "orders.started_at IS NULL" in where
    assert_bare("orders.started_at", where)
    assert_bare("orders.finished_at", where)
    lo, hi = local_bounds(BERLIN)
    assert (params["window_lo"], params["window_hi"]) == (lo, hi)


HOSTILE = 'x"; DROP TABLE t; --'
QUOTED_HOSTILE = {
    "mssql": '[x"; DROP TABLE t; --]',
    "mysql": '`x"; DROP TABLE t; --`',
    "mariadb": '`x"; DROP TABLE t; --`',
    "oracle": '"x""; DROP TABLE t; --"',
    "postgresql": '"x""; DROP TABLE t; --"',
    "sqlite": '"x""; DROP TABLE t; --"',
}


@every_dialect
def test_hostile_names_and_values_are_only_quoted_identifiers_and_bound_parameters(
    dialect: str,
) -> None:
    spec = mapping(
        source={"table": HOSTILE},
        columns={"timestamp": HOSTILE, "order_code": "o", "machine_code": "m", "event": "e"},
        filters=[{"column": "WERK", "eq": "1 OR 1=1"}],
    )
    sql, params = compile_for(dialect, spec)
    assert QUOTED_HOSTILE[dialect] in sql
    rest = sql.replace(QUOTED_HOSTILE[dialect], "<identifier>")
    assert "DROP" not in rest
    assert ";" not in rest
    assert "--" not in rest
    assert "1 OR 1=1" not in sql
    assert "1 OR 1=1" in params.values()


@pytest.mark.parametrize(
    ("dialect", "name", "quoted"),
    [
        ("mssql", "a]; DROP TABLE t; --", "[a]]; DROP TABLE t; --]"),
        ("mysql", "a`; DROP TABLE t; --", "`a``; DROP TABLE t; --`"),
        ("postgresql", 'a"; DROP TABLE t; --', '"a""; DROP TABLE t; --"'),
    ],
)
def test_the_dialects_own_quote_character_is_escaped(dialect: str, name: str, quoted: str) -> None:
    spec = mapping(
        source={"table": name},
        columns={"timestamp": "ts", "order_code": "o", "machine_code": "m", "event": "e"},
    )
    sql, _ = compile_for(dialect, spec, window=None)
    assert f"FROM {quoted}" in sql
    assert "DROP" not in sql.replace(quoted, "<identifier>")


# --------------------------------------------------------------------------- check_custom_query

CONNECTOR_DIALECTS = ("mssql", "mysql", "mariadb", "oracle", "postgresql", "sqlite")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT a, b FROM t WHERE c = 1",
        "WITH x AS (SELECT a FROM t) SELECT a FROM x",
        "select a from t union all select a from u",
        "SELECT a FROM t WHERE b = 'x; DROP TABLE t'",
        "  -- plant 1000 only\n  SELECT a FROM t  ",
    ],
)
def test_custom_query_accepts_a_single_select_or_with(sql: str) -> None:
    for dialect in CONNECTOR_DIALECTS:
        check_custom_query(sql, dialect, WHERE)  # no exception


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("INSERT INTO t (a) VALUES (1)", "refused a INSERT statement"),
        ("UPDATE t SET a = 1", "refused a UPDATE statement"),
        ("DELETE FROM t", "refused a DELETE statement"),
        ("DROP TABLE t", "refused a DROP statement"),
        ("SELECT a FROM t; SELECT b FROM u", "refused 2 statements (one SELECT only)"),
        ("SELECT a FROM t; DROP TABLE t", "refused 2 statements (one SELECT only)"),
        ("SELECT a INTO t_copy FROM t", "refused SELECT ... INTO"),
        ("SELECT a FROM t FOR UPDATE", "refused a locking clause (FOR UPDATE)"),
        ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "a DELETE inside the query"),
        ("SELEC a FRM t", "source.query does not parse as SQL"),
        ("", "refused 0 statements"),
    ],
)
def test_custom_query_rejects_anything_that_is_not_one_read(sql: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_custom_query(sql, "postgresql", WHERE)
    text = str(caught.value)
    assert text.startswith(f"{WHERE}: source.query")
    assert message in text
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t (a) VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "DROP TABLE t",
        "SELECT a FROM t; DELETE FROM t",
        "SELECT a INTO t_copy FROM t",
        "SELECT a FROM t FOR UPDATE",
    ],
)
def test_custom_query_rejections_hold_in_every_dialect(sql: str) -> None:
    for dialect in CONNECTOR_DIALECTS:
        with pytest.raises(ConfigError, match=f"^{re.escape(WHERE)}: "):
            check_custom_query(sql, dialect, WHERE)


# --------------------------------------------------------------------------- a real SQLite source

ROWS = [
    (
        f"2024-03-04 {6 + i // 60:02d}:{i % 60:02d}:00",
        "M1",
        f"O{i // 2}",
        10 if i % 2 == 0 else 20,
        "1000",
    )
    for i in range(25)
]


@pytest.fixture
def plant_db(tmp_path: Path) -> Path:
    path = tmp_path / "src.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE bookings (booked_at TEXT, machine TEXT, order_no TEXT, event INTEGER, werk TEXT)"
    )
    con.executemany("INSERT INTO bookings VALUES (?, ?, ?, ?, ?)", ROWS)
    con.execute(
        "CREATE TABLE orders (order_no TEXT, machine TEXT, started_at TEXT, finished_at TEXT)"
    )
    con.execute("CREATE VIEW open_orders AS SELECT * FROM orders WHERE finished_at IS NULL")
    con.commit()
    con.close()
    return path


@pytest.fixture
def plant(plant_db: Path) -> Iterator[Source]:
    spec = ConnectorSpec.model_validate({"dialect": "sqlite", "path": plant_db.name})
    source = open_source("plant", spec, plant_db.parent, [])
    yield source
    source.close()


def snapshot(path: Path) -> tuple[list[Any], list[Any]]:
    """Everything in the file, read outside booking-etl."""
    con = sqlite3.connect(path)
    try:
        schema = con.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        rows = con.execute("SELECT * FROM bookings ORDER BY rowid").fetchall()
    finally:
        con.close()
    return schema, rows


SQLITE_BOOKINGS = {
    "structure": "bookings",
    "source": {"table": "bookings"},
    "columns": {
        "timestamp": "booked_at",
        "order_code": "order_no",
        "machine_code": "machine",
        "event": "event",
    },
    "events": {"START": [10], "END": [20]},
}


def sqlite_bookings(**spec: Any) -> MappingSpec:
    return MappingSpec.model_validate({**SQLITE_BOOKINGS, **spec})


def read_all(
    source: Source,
    spec: MappingSpec,
    window: Window | None,
    size: int = 1000,
    zone: ZoneInfo = UTC,
) -> pd.DataFrame:
    with source.connect() as conn:
        instants = instant_columns(conn, spec, source.dialect)
        query = build_query(spec, window, zone, instants, source.dialect.datetimes_as_text)
        batches = list(read_batches(conn, query, size, WHERE))
    return pd.concat(batches, ignore_index=True) if batches else empty_frame(spec)


def test_read_batches_streams_in_batches_of_the_given_size(plant: Source) -> None:
    with plant.connect() as conn:
        batches = read_batches(conn, build_query(sqlite_bookings(), None, UTC), 10, WHERE)
        first = next(batches)  # a generator: the first batch comes before the rest is read
        rest = list(batches)
    sizes = [len(first), *(len(b) for b in rest)]
    assert sizes == [10, 10, 5]
    every = pd.concat([first, *rest], ignore_index=True)
    assert list(every.columns) == ["booked_at", "order_no", "machine", "event"]
    assert every["booked_at"].tolist() == [r[0] for r in ROWS]
    assert every["event"].tolist() == [r[3] for r in ROWS]


def test_read_batches_of_an_empty_result_yields_nothing(plant: Source) -> None:
    spec = sqlite_bookings(filters=[{"column": "werk", "eq": "9999"}])
    with plant.connect() as conn:
        assert list(read_batches(conn, build_query(spec, None, UTC), 10, WHERE)) == []


def test_window_on_a_real_source_reads_the_window_and_null_timestamps(plant_db: Path) -> None:
    con = sqlite3.connect(plant_db)
    con.executemany(
        "INSERT INTO bookings VALUES (?, 'M9', 'X', 10, '1000')",
        [("2024-03-01 06:00:00",), ("2024-03-09 06:00:00",), (None,)],
    )
    con.commit()
    con.close()
    source = open_source(
        "plant",
        ConnectorSpec.model_validate({"dialect": "sqlite", "path": str(plant_db)}),
        plant_db.parent,
        [],
    )
    try:
        got = read_all(source, sqlite_bookings(), WINDOW)
    finally:
        source.close()
    assert len(got) == len(ROWS) + 1
    assert got["booked_at"].isna().sum() == 1
    assert not got["booked_at"].isin(["2024-03-01 06:00:00", "2024-03-09 06:00:00"]).any()


def test_orders_window_on_a_real_source(plant_db: Path) -> None:
    con = sqlite3.connect(plant_db)
    con.executemany(
        "INSERT INTO orders VALUES (?, 'M1', ?, ?)",
        [
            ("open-since-before", "2024-03-01 06:00:00", None),
            ("ended-before", "2024-03-01 06:00:00", "2024-03-02 06:00:00"),
            ("ended-inside", "2024-03-01 06:00:00", "2024-03-04 12:00:00"),
            ("started-inside", "2024-03-04 12:00:00", None),
            ("started-after", "2024-03-09 06:00:00", None),
            ("no-start", None, None),
        ],
    )
    con.commit()
    con.close()
    source = open_source(
        "plant",
        ConnectorSpec.model_validate({"dialect": "sqlite", "path": str(plant_db)}),
        plant_db.parent,
        [],
    )
    try:
        got = read_all(source, orders(), WINDOW)
    finally:
        source.close()
    assert sorted(got["order_no"]) == [
        "ended-inside",
        "no-start",
        "open-since-before",
        "started-inside",
    ]


def test_filters_on_a_real_source(plant: Source) -> None:
    spec = sqlite_bookings(
        filters=[{"column": "werk", "eq": "1000"}, {"column": "order_no", "in": ["O0", "O1"]}]
    )
    got = read_all(plant, spec, None)
    assert sorted(got["order_no"].unique()) == ["O0", "O1"]
    assert len(got) == 4


def test_hostile_names_and_values_on_a_real_source(tmp_path: Path) -> None:
    path = tmp_path / "hostile.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (a)")
    con.execute(
        'CREATE TABLE "x""; DROP TABLE t; --" ("x""; DROP TABLE t; --" TEXT, o, m, e, WERK)'
    )
    con.execute(
        """INSERT INTO "x""; DROP TABLE t; --" VALUES ('2024-03-04 06:00:00', 'O', 'M', 'A', '1000')"""
    )
    con.commit()
    con.close()
    source = open_source(
        "plant",
        ConnectorSpec.model_validate({"dialect": "sqlite", "path": str(path)}),
        tmp_path,
        [],
    )
    try:

        def read(werk: str) -> int:
            spec = mapping(
                source={"table": HOSTILE},
                columns={
                    "timestamp": HOSTILE,
                    "order_code": "o",
                    "machine_code": "m",
                    "event": "e",
                },
                filters=[{"column": "WERK", "eq": werk}],
            )
            return len(read_all(source, spec, WINDOW, size=10))

        assert read("1 OR 1=1") == 0  # a value, compared as a value
        assert read("1000") == 1
    finally:
        source.close()
    con = sqlite3.connect(path)
    assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == [
        "t",
        HOSTILE,
    ]
    con.close()


def test_custom_query_with_a_trailing_semicolon(plant: Source) -> None:
    query = "SELECT booked_at, machine, order_no, event FROM bookings;\n"
    check_custom_query(query, "sqlite", WHERE)
    got = read_all(plant, sqlite_bookings(source={"query": query}), None)
    assert len(got) == len(ROWS)


def test_custom_query_with_a_colon_in_a_string_literal(plant: Source) -> None:
    query = "SELECT booked_at, machine, order_no, event FROM bookings WHERE werk NOT LIKE '%:test%'"
    check_custom_query(query, "sqlite", WHERE)
    got = read_all(plant, sqlite_bookings(source={"query": query}), None)
    assert len(got) == len(ROWS)


def test_iso_t_separated_text_timestamps_inside_the_window_are_read(plant_db: Path) -> None:
    con = sqlite3.connect(plant_db)
    con.execute("DELETE FROM bookings")
    con.execute("INSERT INTO bookings VALUES ('2024-03-04T06:00:00', 'M1', 'O1', 10, '1000')")
    con.commit()
    con.close()
    window = Window(
        dt.datetime(2024, 3, 4, 5, tzinfo=dt.UTC), dt.datetime(2024, 3, 4, 10, tzinfo=dt.UTC)
    )
    source = open_source(
        "plant",
        ConnectorSpec.model_validate({"dialect": "sqlite", "path": str(plant_db)}),
        plant_db.parent,
        [],
    )
    try:
        got = read_all(source, sqlite_bookings(), window)
    finally:
        source.close()
    assert got["booked_at"].tolist() == ["2024-03-04T06:00:00"]


# --------------------------------------------------------------------------- the statement guard


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO bookings VALUES ('2024-03-04 09:00:00', 'M1', 'O9', 10, '1000')",
        "UPDATE bookings SET machine = 'M2'",
        "DELETE FROM bookings",
        "DROP TABLE bookings",
        "PRAGMA query_only = OFF",
        "pragma query_only=0",
        "PRAGMA main.query_only = false",
        "CREATE TABLE x (a)",
        "ATTACH DATABASE 'other.sqlite' AS other",
        "/* looks harmless */ DELETE FROM bookings",
        "SELECT * FROM bookings FOR UPDATE",
    ],
)
def test_guard_refuses_writes_sent_through_the_engine(
    plant: Source, plant_db: Path, statement: str
) -> None:
    before = snapshot(plant_db)
    with plant.connect() as conn:
        with pytest.raises(ReadOnlyViolation, match="booking-etl only reads from sources"):
            conn.execute(sa.text(statement))
        conn.rollback()
        assert conn.exec_driver_sql("PRAGMA query_only").scalar() == 1
    assert snapshot(plant_db) == before


def test_guard_also_covers_driver_level_sql(plant: Source, plant_db: Path) -> None:
    before = snapshot(plant_db)
    with plant.connect() as conn, pytest.raises(ReadOnlyViolation):
        conn.exec_driver_sql("DELETE FROM bookings")
    with plant.engine.connect() as conn, pytest.raises(ReadOnlyViolation):
        conn.execute(sa.text("DELETE FROM bookings"))
    assert snapshot(plant_db) == before


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT count(*) FROM bookings",
        "  select count(*) from bookings",
        "WITH b AS (SELECT * FROM bookings) SELECT count(*) FROM b",
        "-- counting\nSELECT count(*) FROM bookings",
        "PRAGMA table_info(bookings)",
        "PRAGMA query_only",
    ],
)
def test_guard_lets_reads_through(plant: Source, statement: str) -> None:
    with plant.connect() as conn:
        assert conn.execute(sa.text(statement)).all()


def test_the_session_itself_is_read_only_below_the_guard(plant: Source, plant_db: Path) -> None:
    # defence in depth: a write that reached the driver directly is still refused by SQLite
    # (the file is opened with mode=ro and the session has PRAGMA query_only = ON)
    before = snapshot(plant_db)
    with plant.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw.execute("PRAGMA query_only").fetchone() == (1,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            raw.execute("DELETE FROM bookings")
    assert snapshot(plant_db) == before


def test_guard_refuses_switching_query_only_off_with_the_call_form(plant: Source) -> None:
    with plant.connect() as conn:
        with pytest.raises(ReadOnlyViolation):
            conn.execute(sa.text("PRAGMA query_only(0)"))
        assert conn.exec_driver_sql("PRAGMA query_only").scalar() == 1


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("SELECT 1; DELETE FROM bookings", id="two-statements (SQL Server batch)"),
        pytest.param(
            "SELECT * INTO bookings_copy FROM bookings", id="select-into (creates a table)"
        ),
        pytest.param("WITH x AS (SELECT 1) DELETE FROM bookings", id="with-then-delete"),
        pytest.param(
            "WITH d AS (DELETE FROM bookings RETURNING *) SELECT * FROM d",
            id="data-modifying-cte (PostgreSQL)",
        ),
    ],
)
def test_guard_refuses_writes_that_start_like_a_query(statement: str) -> None:
    with pytest.raises(ReadOnlyViolation):
        _guard(None, None, statement, None, None, False)


# --------------------------------------------------------------------------- check_columns


def test_check_columns_returns_the_columns_that_exist(plant: Source) -> None:
    with plant.connect() as conn:
        assert check_columns(conn, sqlite_bookings(), WHERE) == [
            "booked_at",
            "machine",
            "order_no",
            "event",
            "werk",
        ]


def test_missing_column_is_named_with_the_columns_that_exist(plant: Source) -> None:
    spec = sqlite_bookings(
        columns={**SQLITE_BOOKINGS["columns"], "timestamp": "BUCHUNGSZEIT"},
        filters=[{"column": "WERKS", "eq": "1000"}],
    )
    with plant.connect() as conn, pytest.raises(DataError) as caught:
        check_columns(conn, spec, WHERE)
    message = str(caught.value)
    assert message.startswith(f"{WHERE}: column 'BUCHUNGSZEIT' not found in bookings")
    assert "column 'WERKS' not found in bookings" in message  # filter columns are checked too
    assert message.endswith("(columns: booked_at, machine, order_no, event, werk)")
    assert caught.value.exit_code == 4


def test_case_only_mismatch_suggests_the_right_name(plant: Source) -> None:
    spec = sqlite_bookings(columns={**SQLITE_BOOKINGS["columns"], "machine_code": "MACHINE"})
    with plant.connect() as conn, pytest.raises(DataError, match=r"did you mean 'machine'\?"):
        check_columns(conn, spec, WHERE)


def test_missing_table_names_the_tables_that_exist(plant: Source) -> None:
    spec = sqlite_bookings(source={"table": "buchungen"})
    with plant.connect() as conn, pytest.raises(DataError) as caught:
        check_columns(conn, spec, WHERE)
    message = str(caught.value)
    assert "table 'buchungen' not found" in message
    assert message.startswith(WHERE)
    assert "(tables: bookings, open_orders, orders)" in message


def test_custom_query_columns_are_checked_too(plant: Source) -> None:
    spec = sqlite_bookings(
        source={"query": "SELECT booked_at AS ts, machine, order_no, event FROM bookings"}
    )
    with plant.connect() as conn, pytest.raises(DataError) as caught:
        check_columns(conn, spec, WHERE)
    message = str(caught.value)
    assert "column 'booked_at' not found in (custom query)" in message
    assert "(columns: ts, machine, order_no, event)" in message


def test_reading_a_table_that_does_not_exist_is_a_data_error(plant: Source) -> None:
    spec = sqlite_bookings(source={"table": "buchungen"})
    with plant.connect() as conn, pytest.raises(DataError, match="no such table: buchungen"):
        list(read_batches(conn, build_query(spec, None, UTC), 10, WHERE))


# --------------------------------------------------------------------------- real servers


@pytest.fixture
def utc_stamped_table(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """A booking table whose timestamp column holds instants (timestamptz / TIMESTAMP)."""
    dialect = request.param
    url = server_or_skip(POSTGRES_URL if dialect == "postgresql" else MARIADB_URL, dialect)
    table = f"stamped_{uuid.uuid4().hex[:8]}"
    stamp = "timestamptz" if dialect == "postgresql" else "TIMESTAMP(6) NULL"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if dialect != "postgresql":
            conn.execute(sa.text("SET time_zone = '+00:00'"))
        conn.execute(
            sa.text(f"CREATE TABLE {table} (ts {stamp}, m varchar(8), o varchar(8), e varchar(1))")
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {table} VALUES "
                "('2024-01-15 01:00:00', 'M1', 'O1', 'A'), ('2024-01-15 23:00:00', 'M1', 'O1', 'E')"
            )
        )
    try:
        yield dialect, url.render_as_string(hide_password=False), table
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def stamped(table: str) -> MappingSpec:
    return MappingSpec.model_validate(
        {
            "structure": "bookings",
            "source": {"table": table},
            "columns": {"timestamp": "ts", "order_code": "o", "machine_code": "m", "event": "e"},
            "events": {"START": ["A"], "END": ["E"]},
        }
    )


def server_source(url: str, dialect: str, zone: str) -> Source:
    spec = ConnectorSpec.model_validate({"dialect": dialect, "url": url, "timezone": zone})
    return open_source("plant", spec, Path.cwd(), [])


JANUARY_15 = Window(
    dt.datetime(2024, 1, 15, tzinfo=dt.UTC), dt.datetime(2024, 1, 16, tzinfo=dt.UTC)
)


@pytest.mark.postgres
@pytest.mark.parametrize("utc_stamped_table", ["postgresql"], indirect=True)
@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Tokyo"])
def test_window_on_a_timestamptz_column_reads_every_row_inside_it(
    utc_stamped_table: tuple[str, str, str], zone: str
) -> None:
    dialect, url, table = utc_stamped_table
    source = server_source(url, dialect, zone)
    try:
        got = read_all(source, stamped(table), JANUARY_15, zone=ZoneInfo(zone))
    finally:
        source.close()
    assert sorted(got["ts"]) == [
        pd.Timestamp("2024-01-15 01:00", tz="UTC"),
        pd.Timestamp("2024-01-15 23:00", tz="UTC"),
    ]


@pytest.mark.mariadb
@pytest.mark.parametrize("utc_stamped_table", ["mariadb"], indirect=True)
def test_mysql_timestamp_columns_keep_their_instant(
    utc_stamped_table: tuple[str, str, str],
) -> None:
    dialect, url, table = utc_stamped_table
    source = server_source(url, dialect, "Europe/Berlin")
    try:
        raw = read_all(source, stamped(table), None)
        with source.connect() as conn:
            instants = instant_columns(conn, stamped(table), source.dialect)
    finally:
        source.close()
    assert instants == {"ts"}
    mapped = map_bookings(raw, stamped(table), BERLIN, instants)
    assert mapped.rows["ts"].tolist() == [
        pd.Timestamp("2024-01-15 01:00", tz="UTC"),
        pd.Timestamp("2024-01-15 23:00", tz="UTC"),
    ]
