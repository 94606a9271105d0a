"""Read-only, proven on the real PostgreSQL and MariaDB with an account that HOLDS write grants.

Every test creates its own database and a dedicated account with INSERT/UPDATE/DELETE/TRUNCATE and
DDL rights, shows that the account really can write outside booking-etl, and then that every write
through the connector's connection fails, at the statement guard and, below it, at the session,
leaving the table as it was. Hostile names and values reach the server only as quoted identifiers
and bound parameters (statements captured with a ``before_cursor_execute`` listener).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import sqlglot
from sqlglot.tokens import TokenType

from etl.config.loader import load_project
from etl.pipeline.sync import run_job
from etl.sources.sql.arrow import PATHS
from etl.sources.sql.dialects.sqlite import SQLiteDialect
from etl.sources.sql.engine import ReadOnlyViolation, open_source, refusal, wire
from tests.support.accounts import Server, writer_account

WRITES = {
    "INSERT": "INSERT INTO bookings (id, kind) VALUES (99, 'X')",
    "UPDATE": "UPDATE bookings SET kind = 'X'",
    "DELETE": "DELETE FROM bookings",
    "TRUNCATE": "TRUNCATE TABLE bookings",
    "CREATE": "CREATE TABLE intruder (a int)",
    "ALTER": "ALTER TABLE bookings ADD intruder int",
    "DROP": "DROP TABLE bookings",
}
HOSTILE_TABLE = 'x"; DROP TABLE t; --'
# (a backtick in a MySQL column name is left out: SQLAlchemy's MySQL reflection returns it doubled)
HOSTILE_COLUMN = 'k"; DELETE FROM t; --'
HOSTILE_VALUE = "1 OR 1=1"
QUOTED = {TokenType.IDENTIFIER, TokenType.STRING}


@pytest.fixture(params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with writer_account(request) as found:
        yield found


def test_the_account_really_can_write_outside_booking_etl(server: Server) -> None:
    plain = sa.create_engine(server.url)  # no guard, no read-only session
    try:
        with plain.connect() as conn:
            assert conn.execute(sa.text(WRITES["INSERT"])).rowcount == 1
            conn.rollback()
    finally:
        plain.dispose()


@pytest.mark.parametrize("statement", list(WRITES))
def test_writes_through_the_connector_fail_and_leave_the_table_unchanged(
    server: Server, statement: str
) -> None:
    before = server.snapshot()
    source = open_source("plant", server.spec(), Path.cwd(), [server.password])
    try:
        with source.connect() as conn:  # the guard refuses it before the driver sees it
            with pytest.raises(ReadOnlyViolation, match=f"a {statement} statement"):
                conn.execute(sa.text(WRITES[statement]))
            conn.rollback()
        raw = source.engine.raw_connection()  # below the guard: the session itself refuses it
        try:
            cursor = raw.cursor()
            with pytest.raises(Exception, match=r"(?i)read.only"):
                cursor.execute(WRITES[statement])
            raw.rollback()
        finally:
            raw.close()
    finally:
        source.close()
    assert server.snapshot() == before


def test_undoing_the_read_only_session_is_refused(server: Server) -> None:
    undo = (
        "SELECT set_config('default_transaction_read_only', 'off', false)"
        if server.dialect == "postgresql"
        else "SET SESSION TRANSACTION READ WRITE"
    )
    source = open_source("plant", server.spec(), Path.cwd(), [])
    try:
        with source.connect() as conn, pytest.raises(ReadOnlyViolation):
            conn.execute(sa.text(undo))
    finally:
        source.close()


@pytest.mark.parametrize("fetch", ["sqlalchemy", "arrow"])
def test_a_session_switched_to_read_write_is_refused_before_reading(
    server: Server, fetch: str
) -> None:
    """Below every config layer (as a function or trigger could): the session is switched to
    read-write; the next extraction asks the server first and reads nothing."""
    from etl.config.models import MappingSpec
    from etl.sources.sql.engine import SessionNotReadOnly
    from etl.sources.sql.query import build_query, read_frames

    spec = server.spec().model_copy(update={"fetch": fetch})
    mapping = MappingSpec.model_validate(
        {
            "structure": "bookings",
            "source": {"table": "bookings"},
            "columns": {
                "timestamp": "ts",
                "order_code": "order_no",
                "machine_code": "machine",
                "event": "kind",
            },
            "events": {"START": ["A"], "END": ["E"]},
        }
    )
    undo = (
        "SET SESSION default_transaction_read_only = off"
        if server.dialect == "postgresql"
        else "SET SESSION TRANSACTION READ WRITE"
    )
    source = open_source("plant", spec, Path.cwd(), [server.password])
    try:
        with source.connect() as conn:
            conn.rollback()
            cursor = conn.connection.cursor()  # below the guard, as a stored function would be
            cursor.execute(undo)
            cursor.close()
            conn.connection.commit()
            query = build_query(mapping, None, spec.zone)
            frames = read_frames(source, conn, mapping, query, frozenset(), 10, "mappings/m.yaml")
            with pytest.raises(SessionNotReadOnly, match="not read-only before the extraction"):
                next(frames)
    finally:
        source.close()


def test_the_native_arrow_sessions_refuse_an_answer_that_is_not_read_only(server: Server) -> None:
    """The Arrow path asks its own fresh session; an answer other than read-only stops it (the
    probe is replaced by one that answers 'off' / 0, as a session switched to read-write would)."""
    from etl.sources.sql.engine import SessionNotReadOnly

    source = open_source("plant", server.spec(), Path.cwd(), [server.password])
    key = "adbc_postgresql" if server.dialect == "postgresql" else "connectorx_mysql"
    probe = "SELECT 'off'" if server.dialect == "postgresql" else "SELECT 0"
    try:
        with pytest.raises(SessionNotReadOnly, match="is not read-only"):
            list(PATHS[key].batches(source, "SELECT id FROM bookings", None, 10, probe))
        ok = "SELECT 'on'" if server.dialect == "postgresql" else "SELECT 1"
        rows = list(PATHS[key].batches(source, "SELECT id FROM bookings", None, 10, ok))
        assert sum(b.num_rows for b in rows) == 2
        assert all(b.num_columns == 1 for b in rows)  # the flag column is not handed on
    finally:
        source.close()


@pytest.fixture
def hostile(server: Server) -> Iterator[Server]:
    """A victim table ``t`` and a booking table whose name and event column are hostile."""
    quote = (
        (lambda n: '"' + n.replace('"', '""') + '"')
        if server.dialect == "postgresql"
        else (lambda n: "`" + n.replace("`", "``") + "`")
    )
    stamp = "timestamp(6)" if server.dialect == "postgresql" else "datetime(6)"
    grant = f'"{server.user}"' if server.dialect == "postgresql" else f"'{server.user}'@'%'"
    with server.admin.connect() as conn:
        conn.execute(sa.text("CREATE TABLE t (a int)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        conn.execute(
            sa.text(
                f"CREATE TABLE {quote(HOSTILE_TABLE)} (aunr varchar(20), maschnr varchar(8), "
                f"{quote(HOSTILE_COLUMN)} varchar(3), werk varchar(20), zeit {stamp})"
            )
        )
        conn.execute(
            sa.text(f"INSERT INTO {quote(HOSTILE_TABLE)} VALUES (:o, 'M1', :k, :w, :t)"),
            [
                {"o": "4711", "k": "A", "w": HOSTILE_VALUE, "t": "2026-10-20 06:00:00"},
                {"o": "4711", "k": "E", "w": HOSTILE_VALUE, "t": "2026-10-20 07:00:00"},
                {"o": "4712", "k": "A", "w": "1000", "t": "2026-10-20 06:30:00"},
            ],
        )
        conn.execute(sa.text(f"GRANT SELECT ON {quote(HOSTILE_TABLE)} TO {grant}"))
    yield server


@pytest.mark.parametrize("fetch", ["sqlalchemy", "arrow"])
def test_hostile_names_and_values_reach_the_server_only_quoted_and_bound(
    hostile: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fetch: str
) -> None:
    server = hostile
    root = tmp_path / "project"
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True)
    (root / "etl.yaml").write_text("defaults: {start_from: 2026-10-19}\n")
    (root / "connectors" / "plant.yaml").write_text(
        f"dialect: {server.dialect}\nhost: {server.url.host}\nport: {server.url.port}\n"
        f"database: {server.url.database}\nuser: {server.user}\npassword: ${{RW_PASSWORD}}\n"
        f"fetch: {fetch}\n"
    )
    monkeypatch.setenv("RW_PASSWORD", server.password)
    mapping = {
        "structure": "bookings",
        "source": {"table": HOSTILE_TABLE},
        "columns": {
            "timestamp": "zeit",
            "order_code": "aunr",
            "machine_code": "maschnr",
            "event": HOSTILE_COLUMN,
        },
        "events": {"START": ["A"], "END": ["E"]},
        "filters": [{"column": "werk", "eq": HOSTILE_VALUE}],
    }
    (root / "mappings" / "m.yaml").write_text(json.dumps(mapping))  # JSON is YAML
    (root / "jobs" / "j.yaml").write_text("connector: plant\nmapping: m\n")
    sent: list[tuple[str, Any]] = []
    native: list[tuple[str, Any]] = []  # what an Arrow driver was handed

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if conn.engine.url.database == server.url.database:
            sent.append((statement, parameters))

    for path in PATHS.values():
        original = type(path).batches

        def spy(
            self: Any,
            source: Any,
            sql: str,
            params: Any,
            size: int,
            probe: Any = None,
            _o: Any = original,
        ) -> Any:
            native.append((sql, params))
            return _o(self, source, sql, params, size, probe)

        monkeypatch.setattr(type(path), "batches", spy)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", capture)
    try:
        result = run_job(load_project(root), "j")
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", capture)
    assert (result.rows_read, result.runs_total) == (2, 1)  # the value matched as text, not as SQL
    assert sent
    assert len(native) == (1 if fetch == "arrow" else 0)
    reader = "postgres" if server.dialect == "postgresql" else "mysql"
    reads = 0
    for statement, parameters in sent + native:
        assert refusal(statement, server.dialect) is None, statement
        tokens = sqlglot.Dialect.get_or_raise(reader).tokenize(statement)
        bare = {t.text.upper() for t in tokens if t.token_type not in QUOTED}
        assert not bare & {"DROP", "DELETE", "TRUNCATE", "INSERT"}, statement
        names = [t.text for t in tokens if t.token_type == TokenType.IDENTIFIER]
        strings = [t.text for t in tokens if t.token_type == TokenType.STRING]
        values = list(parameters.values() if isinstance(parameters, dict) else parameters or ())
        # values travel as parameters, or (a driver that cannot bind) as one quoted literal
        outside = statement
        for text in strings:
            outside = outside.replace(text, "")
        assert HOSTILE_VALUE not in outside, statement
        if HOSTILE_VALUE in values or HOSTILE_VALUE in strings:
            reads += 1  # the job's SELECT: hostile names only as quoted identifiers
            assert HOSTILE_TABLE in names and HOSTILE_COLUMN in names, statement
    # connectorx's SELECT is described first (its date columns guarded against zero dates)
    assert reads == (2 if fetch == "arrow" and server.dialect != "postgresql" else 1)
    with server.admin.connect() as conn:
        assert conn.execute(sa.text("SELECT a FROM t")).scalar() == 1


def test_the_begin_statement_opens_every_transaction_below_the_guard() -> None:
    """Oracle's SET TRANSACTION READ ONLY, wired as it is for Oracle, shown on SQLite."""

    class Marked(SQLiteDialect):
        begin_statement = "PRAGMA query_only = ON"  # a statement the guard would refuse

    engine = sa.create_engine("sqlite://")
    sent: list[str] = []
    sa.event.listen(engine, "connect", lambda dbapi, _: dbapi.set_trace_callback(sent.append))
    wire(engine, Marked())
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1")).all()
        conn.rollback()
        conn.execute(sa.text("SELECT 2")).all()
        with pytest.raises(ReadOnlyViolation):
            conn.execute(sa.text(Marked.begin_statement))
    engine.dispose()
    statements = [s for s in sent if s.startswith(("PRAGMA query_only = ON", "SELECT"))]
    assert statements == [
        "PRAGMA query_only = ON",  # on_connect
        "PRAGMA query_only = ON",  # begin
        "SELECT 1",
        "PRAGMA query_only = ON",  # the next transaction's begin
        "SELECT 2",
    ]


@pytest.mark.parametrize(
    ("dialect", "statement"),
    [
        ("mssql", "SELECT 1 DELETE FROM t"),  # a T-SQL batch needs no ';'
        ("mssql", "SELECT 1 INSERT t VALUES (1)"),
        ("mssql", "SELECT a FROM t WITH (UPDLOCK)"),
        ("mssql", "SELECT * FROM OPENQUERY(srv, 'DELETE FROM t')"),
        ("mssql", "SELECT 1; EXEC sp_who"),
        ("postgresql", "SELECT set_config('default_transaction_read_only', 'off', false)"),
        ("postgresql", "SELECT nextval('orders_seq')"),
        ("postgresql", "EXPLAIN ANALYZE DELETE FROM t"),
        ("postgresql", "SELECT a FROM t FOR NO KEY UPDATE"),
        ("postgresql", "COPY t TO PROGRAM 'rm -rf /'"),
        ("mysql", "SELECT a INTO OUTFILE '/tmp/x' FROM t"),
        ("mysql", "SELECT a FROM t LOCK IN SHARE MODE"),
        ("mysql", "SET SESSION TRANSACTION READ WRITE"),
        ("oracle", "SELECT a FROM t FOR UPDATE"),
        ("oracle", "BEGIN DELETE FROM t; END;"),
        ("sqlite", "/* looks harmless */ DELETE FROM t"),
        ("sqlite", "PRAGMA main.query_only(0)"),
        ("sqlite", "SELECT 'unterminated"),
    ],
)
def test_the_guard_refuses(dialect: str, statement: str) -> None:
    assert refusal(statement, dialect) is not None


@pytest.mark.parametrize(
    ("dialect", "statement"),
    [
        ("postgresql", "SELECT copy, load, src.do FROM t AS src"),  # unquoted names, not keywords
        ("postgresql", "SELECT \"DELETE\", 'DROP TABLE t' AS s FROM t -- DELETE FROM t"),
        ("postgresql", "SELECT $$ DELETE $$"),
        ("mssql", "SELECT [delete] FROM t WITH (NOLOCK)"),
        ("mysql", "SELECT CAST(a AS CHAR CHARACTER SET utf8mb4), TRUNCATE(b, 2) FROM t"),
        ("mysql", "SELECT REPLACE(a, ' ', ''), INSERT(a, 1, 2, 'x') FROM `x; DROP`"),
        ("mysql", "SHOW CREATE TABLE `t`"),
        ("oracle", "SELECT a FROM t WHERE b = :b FETCH FIRST 10 ROWS ONLY"),
        ("sqlite", 'PRAGMA table_info("t")'),
        ("sqlite", "SELECT 1;"),
    ],
)
def test_the_guard_lets_queries_through(dialect: str, statement: str) -> None:
    assert refusal(statement, dialect) is None
