"""The attack suite of issue 14: every channel a config file reaches, on the real servers.

One database per server and one write-capable, non-admin account created here (ALL on the test
database, no server privileges), one project shared by all attacks. Each attack writes a connector,
mapping and job, runs one command that touches the source (run, preview, check, discover, backfill)
in-process through click's CliRunner, and then measures the server from outside:

- PostgreSQL: a hash of every row of the victim tables, the sequence, large objects, advisory and
  row locks held by the attacker's sessions, and (once, at the end) the n_tup_ins/upd/del counters of
  pg_stat_user_tables;
- MariaDB: CHECKSUM TABLE of the victim tables (InnoDB and MyISAM), named locks, open transactions
  of the attacker, and the attacker's ROWS_INSERTED/UPDATED/DELETED (USER_STATISTICS) at the end;
- both: a victim session this test opened and tagged is still alive (no session killed).

It asserts 0 writes, 0 locks held, 0 sessions killed; attacks that must be refused exit non-zero
with a message naming what was refused.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from etl.cli import main
from tests.conftest import MARIADB_URL, POSTGRES_URL, server_or_skip

ROWS = 120
COMMANDS = ("run", "preview", "check", "backfill")
CONNECTOR_COMMANDS = ("run", "preview", "check", "discover", "backfill")


@dataclass
class Target:
    """One server under attack: its database, the attacker's account, the victim session."""

    dialect: str
    admin: sa.Engine
    url: sa.URL  # the attacker's account on the test database
    user: str
    password: str
    root: Path
    victim: Any  # a DBAPI connection the test opened (application_name / connection id known)
    victim_id: int
    control_updates: int = 0  # rows the control test updated through the account

    def state(self) -> dict[str, Any]:
        """What an attack must not change, read from outside with the admin account."""
        with self.admin.connect() as conn:
            q = lambda sql: conn.exec_driver_sql(sql).all()  # noqa: E731
            if self.dialect == "postgresql":
                return {
                    "small": q("SELECT md5(string_agg(s::text, ',' ORDER BY id)) FROM small s"),
                    "victim_log": q("SELECT count(*) FROM victim_log"),
                    "sequence": q("SELECT last_value, is_called FROM seq"),
                    "large_objects": q("SELECT count(*) FROM pg_largeobject_metadata"),
                    "tables": q(
                        "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
                    ),
                }
            return {
                "small": q("CHECKSUM TABLE small"),
                "myisam_log": q("CHECKSUM TABLE myisam_log"),
                "tables": q(
                    "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
                ),
            }

    def locks_held(self) -> list[Any]:
        """Locks the attacker's sessions still hold, and named/advisory locks of the attacks."""
        with self.admin.connect() as conn:
            if self.dialect == "postgresql":
                return list(
                    conn.exec_driver_sql(
                        "SELECT l.locktype, l.mode FROM pg_locks l JOIN pg_stat_activity a "
                        f"USING (pid) WHERE a.usename = '{self.user}' OR l.locktype = 'advisory'"
                    ).all()
                )
            named = conn.exec_driver_sql("SELECT IS_USED_LOCK('x'), IS_USED_LOCK('etl')").one()
            trx = conn.exec_driver_sql(
                "SELECT count(*) FROM information_schema.INNODB_TRX t JOIN "
                "information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                f"WHERE p.USER = '{self.user}'"
            ).scalar()
            return [v for v in (*named, trx or None) if v is not None]

    def victim_alive(self) -> bool:
        """Whether the tagged victim session still answers."""
        try:
            cursor = self.victim.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            cursor.close()
            self.victim.rollback()
            return True
        except Exception:
            return False


def _pg_setup(admin: sa.Engine, user: str, password: str, db: str) -> None:
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'")
        conn.exec_driver_sql(f'GRANT ALL ON DATABASE "{db}" TO "{user}"')


def _objects(conn: sa.Connection, dialect: str, user: str) -> None:
    stamp = "timestamp(6)" if dialect == "postgresql" else "datetime(6)"
    conn.exec_driver_sql(
        f"CREATE TABLE small (id int PRIMARY KEY, machine varchar(8), order_no varchar(20), "
        f"event varchar(5), ts {stamp})"
    )
    values = ", ".join(
        f"({i}, 'M{i % 3}', 'O{i // 2}', '{'A' if i % 2 else 'E'}', "
        f"'2026-10-20 06:00:00' + INTERVAL '{i}' MINUTE)"
        if dialect == "mariadb"
        else f"({i}, 'M{i % 3}', 'O{i // 2}', '{'A' if i % 2 else 'E'}', "
        f"timestamp '2026-10-20 06:00:00' + interval '{i} minutes')"
        for i in range(1, ROWS + 1)
    )
    if dialect == "mariadb":
        values = values.replace(
            "'2026-10-20 06:00:00' + INTERVAL '", "'2026-10-20 06:00:00' + INTERVAL "
        )
        values = values.replace("' MINUTE", " MINUTE")
    conn.exec_driver_sql(f"INSERT INTO small VALUES {values}")
    if dialect == "postgresql":
        who = f'"{user}"'
        conn.exec_driver_sql("CREATE TABLE victim_log (a text)")
        conn.exec_driver_sql("CREATE SEQUENCE seq")
        conn.exec_driver_sql(
            "CREATE FUNCTION wipe() RETURNS int LANGUAGE sql AS "
            "'DELETE FROM small WHERE id < 100 RETURNING 1'"
        )
        conn.exec_driver_sql(
            "CREATE FUNCTION rw() RETURNS text LANGUAGE sql AS "
            "$$SELECT set_config('default_transaction_read_only', 'off', false)$$"
        )
        conn.exec_driver_sql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {who}")
        conn.exec_driver_sql(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {who}")
        conn.exec_driver_sql(f"GRANT ALL ON SCHEMA public TO {who}")
    else:
        conn.exec_driver_sql("CREATE TABLE myisam_log (a varchar(20)) ENGINE=MyISAM")
        conn.exec_driver_sql(
            "CREATE FUNCTION rw() RETURNS int NOT DETERMINISTIC MODIFIES SQL DATA "
            "BEGIN SET SESSION TRANSACTION READ WRITE; RETURN 1; END"
        )
        conn.exec_driver_sql(
            "CREATE FUNCTION scribble() RETURNS int NOT DETERMINISTIC MODIFIES SQL DATA "
            "BEGIN INSERT INTO myisam_log VALUES ('written'); RETURN 1; END"
        )


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[dict[str, Target], ExitStack]]:
    """The targets set up so far in this module (one per server, shared by every test)."""
    made: dict[str, Target] = {}
    with ExitStack() as stack:
        yield made, stack


@pytest.fixture
def target(
    request: pytest.FixtureRequest,
    servers: tuple[dict[str, Target], ExitStack],
    tmp_path_factory: pytest.TempPathFactory,
) -> Target:
    """The server ``request.param`` under attack (set up on first use, torn down with the module:
    the teardown asserts the server's own write counters)."""
    made, stack = servers
    if request.param not in made:
        made[request.param] = stack.enter_context(_target(request.param, tmp_path_factory))
    return made[request.param]


@contextmanager
def _target(dialect: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """One server with its attack database, account, victim session and project."""
    server = server_or_skip(POSTGRES_URL if dialect == "postgresql" else MARIADB_URL, dialect)
    db = f"etl_attack_{uuid.uuid4().hex[:10]}"
    user, password = f"etl_atk_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:12]}"
    root_admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    q = '"' if dialect == "postgresql" else "`"
    with root_admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {q}{db}{q}")
    admin = sa.create_engine(server.set(database=db), isolation_level="AUTOCOMMIT")
    if dialect == "postgresql":
        _pg_setup(admin, user, password, db)
    else:
        with admin.connect() as conn:
            for host in ("%", "localhost"):
                conn.execute(sa.text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"))
                conn.execute(sa.text(f"GRANT ALL ON `{db}`.* TO '{user}'@'{host}'"))
    with admin.connect() as conn:
        _objects(conn, dialect, user)
        userstat = None
        if dialect == "mariadb":  # per-account row counters (information_schema.USER_STATISTICS)
            userstat = conn.exec_driver_sql("SELECT @@global.userstat").scalar()
            conn.exec_driver_sql("SET GLOBAL userstat = 1")
    victim_engine = sa.create_engine(server.set(database=db), poolclass=sa.NullPool)
    victim_raw = victim_engine.raw_connection()  # held: collecting it would close the session
    victim: Any = victim_raw.dbapi_connection
    cursor = victim.cursor()
    if dialect == "postgresql":
        cursor.execute("SET application_name = 'victim'")
        cursor.execute("SELECT pg_backend_pid()")
    else:
        cursor.execute("SELECT CONNECTION_ID()")
    victim_id = int(cursor.fetchone()[0])
    cursor.close()
    victim.commit()
    root = tmp_path_factory.mktemp(f"attack_{dialect}")
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir()
    (root / "etl.yaml").write_text("defaults: {start_from: 2026-10-19}\n")
    url = server.set(database=db, username=user, password=password)
    found = Target(dialect, admin, url, user, password, root, victim, victim_id)
    try:
        yield found
        _assert_no_writes_counted(found)
    finally:
        victim_raw.close()
        victim_engine.dispose()
        if userstat is not None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"SET GLOBAL userstat = {int(userstat)}")
        admin.dispose()
        with root_admin.connect() as conn:
            if dialect == "postgresql":
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{user}"')
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{db}`")
                for host in ("%", "localhost"):
                    conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
        root_admin.dispose()


def _write_counts(target: Target) -> dict[str, tuple[int, int, int]]:
    """(inserted, updated, deleted) rows per table (PostgreSQL) or for the account (MariaDB)."""
    with target.admin.connect() as conn:
        if target.dialect == "postgresql":
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            rows = conn.exec_driver_sql(
                "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables"
            ).all()
        else:
            rows = conn.exec_driver_sql(
                "SELECT USER, ROWS_INSERTED, ROWS_UPDATED, ROWS_DELETED "
                f"FROM information_schema.USER_STATISTICS WHERE USER = '{target.user}'"
            ).all()
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


def _assert_no_writes_counted(target: Target) -> None:
    """At the end of the module: the server's own counters show no row written by any attack,
    only the setup's inserts (PostgreSQL) and the control test's updates."""
    if target.dialect == "postgresql":
        expected = {"small": (ROWS, target.control_updates, 0), "victim_log": (0, 0, 0)}
    else:
        expected = {target.user: (0, target.control_updates, 0)}
    for _ in range(50):  # the sessions' statistics reach the server's counters when they end
        found = _write_counts(target)
        counts = {key: found.get(key, (0, 0, 0)) for key in expected}  # no entry: nothing done
        if counts == expected:
            break
        time.sleep(0.1)
    assert counts == expected


# ---------------------------------------------------------------------------- the attacks

BASE_COLUMNS = {
    "timestamp": "ts",
    "order_code": "order_no",
    "machine_code": "machine",
    "event": "event",
}
EVENTS = {"START": ["A"], "END": ["E"]}

PG_QUERIES = [
    'SELECT * FROM small CROSS JOIN (SELECT count("pg_terminate_backend"(pid)) AS n FROM '
    "pg_stat_activity WHERE application_name = 'victim') k",
    "SELECT * FROM small CROSS JOIN (SELECT count(pg_terminate_backend(pid)) AS n FROM "
    "pg_stat_activity WHERE application_name = 'victim') k",
    "SELECT * FROM small WHERE pg_cancel_backend(0) IS NOT NULL OR true",
    "SELECT * FROM small WHERE pg_advisory_lock(4242) IS NOT NULL",
    "SELECT * FROM small WHERE pg_try_advisory_lock(4242)",
    "SELECT * FROM small WHERE pg_advisory_xact_lock(4242) IS NOT NULL",
    'SELECT * FROM small WHERE "pg_advisory_lock"(4242) IS NOT NULL',
    "SELECT * FROM small WHERE pg_catalog.pg_advisory_lock(4242) IS NOT NULL",
    "SELECT * FROM small FOR UPDATE",
    "SELECT * FROM small FOR SHARE",
    "SELECT * FROM small FOR NO KEY UPDATE",
    "SELECT * FROM small FOR KEY SHARE",
    "SELECT * FROM small FOR UPDATE SKIP LOCKED",
    "WITH d AS (DELETE FROM small WHERE id < 100 RETURNING *) SELECT * FROM d",
    "WITH u AS (UPDATE small SET event = 'X' RETURNING *) SELECT * FROM u",
    "WITH i AS (INSERT INTO small VALUES (999, 'M', 'O', 'A', now()) RETURNING *) SELECT * FROM i",
    "SELECT *, nextval('seq') FROM small",
    "SELECT *, setval('seq', 100) FROM small",
    "SELECT * FROM small WHERE set_config('default_transaction_read_only', 'off', false) = 'off'",
    "SELECT * FROM small WHERE set_config('transaction_read_only', 'off', true) IS NOT NULL",
    "SELECT *, lo_import('/etc/hostname') FROM small",
    "SELECT *, lo_create(0) FROM small",
    "SELECT *, lo_from_bytea(0, 'x') FROM small",
    "SELECT *, wipe() FROM small",
    "SELECT *, public.wipe() FROM small",
    'SELECT *, "wipe"() FROM small',
    "SELECT *, rw() FROM small",
    "SELECT * FROM small WHERE pg_sleep(0) IS NULL",
    "SELECT *, pg_read_file('/etc/hostname') FROM small",
    "SELECT *, pg_reload_conf() FROM small",
    "SELECT *, txid_current() FROM small",
    "SELECT *, pg_notify('c', 'x') FROM small",
    "SELECT *, dblink_exec('dbname=postgres', 'DELETE FROM small') FROM small",
    "SELECT *, query_to_xml('DELETE FROM small RETURNING 1', true, true, '') FROM small",
    "SELECT * FROM small; DELETE FROM small",
    "SELECT * FROM small; COPY small TO '/tmp/ro_x'",
    "DO $$BEGIN DELETE FROM small; END$$",
    "COPY (SELECT 1) TO PROGRAM 'true'",
    "DELETE FROM small",
    "TRUNCATE small",
    "SELECT * INTO stolen FROM small",
    "SELECT * FROM small WHERE event = $$x$$ OR 1 = (SELECT count(wipe()))",
    "SELECT * FROM small WHERE event = $q$x$q$; DELETE FROM small; SELECT $q$y$q$",
    "SELECT * FROM small WHERE event = E'\\';DELETE FROM small;--'",
    "SELECT * FROM small WHERE event = 'x'';DELETE FROM small;--'",
    "SELECT * FROM small /* ; DELETE FROM small */",
    "SELECT * FROM small WHERE event::regclass IS NOT NULL",
    "SELECT * FROM small CROSS JOIN LATERAL (SELECT wipe()) w",
    "SELECT * FROM small WHERE id IN (SELECT wipe())",
    "SELECT * FROM small, generate_series(1, 1) g WHERE pg_terminate_backend(g) IS NULL OR true",
    "SELECT * FROM small LOCK TABLE small",
    "SELECT * FROM small WHERE event = 'A' UNION ALL SELECT id, machine, order_no, event, ts "
    "FROM small FOR UPDATE",
]
MARIADB_QUERIES = [
    "SELECT id, machine, order_no, CASE WHEN 1 /*! AND GET_LOCK('x',0)=1 */ THEN event "
    "ELSE 'LOCKED' END AS event, ts FROM small",
    "SELECT id, machine, order_no, CASE WHEN 1 /*M! AND GET_LOCK('x',0)=1 */ THEN event "
    "ELSE 'LOCKED' END AS event, ts FROM small",
    "SELECT id, machine, order_no, CASE WHEN `GET_LOCK`('x',0)=1 THEN event ELSE 'L' END AS event, "
    "ts FROM small",
    "SELECT * FROM small WHERE GET_LOCK('x', 0) = 1",
    "SELECT * FROM small WHERE get_lock('etl', 0)",
    "SELECT * FROM small /*! LOCK IN SHARE MODE */",
    "SELECT * FROM small LOCK IN SHARE MODE",
    "SELECT * FROM small FOR UPDATE",
    "SELECT * FROM small FOR UPDATE NOWAIT",
    "SELECT * FROM small WHERE rw() = 1",
    "SELECT * FROM small WHERE scribble() = 1",
    "SELECT * FROM small WHERE `scribble`() = 1",
    "SELECT * FROM small WHERE test.scribble() = 1",
    "SELECT * FROM small WHERE 1 /*!50000 AND scribble() = 1 */",
    "SELECT /*+ MAX_EXECUTION_TIME(1) */ * FROM small",
    "SELECT * FROM small WHERE SLEEP(0) = 0",
    "SELECT * FROM small WHERE BENCHMARK(1, MD5('x')) = 0",
    "SELECT *, LOAD_FILE('/etc/hostname') AS f FROM small",
    "SELECT * FROM small INTO OUTFILE '/tmp/ro_out'",
    "SELECT * FROM small INTO DUMPFILE '/tmp/ro_out'",
    "SELECT id INTO @stolen FROM small LIMIT 1",
    "SELECT *, @x := 1 AS x FROM small",
    "SELECT * FROM small; DELETE FROM small",
    "DELETE FROM small",
    "CALL nothing()",
    "LOCK TABLES small WRITE",
    "HANDLER small OPEN",
    "DO GET_LOCK('x', 0)",
    "SET SESSION TRANSACTION READ WRITE",
    "SELECT * FROM small WHERE event = 'x\\' OR scribble() = 1 OR \\''",
    "SELECT * FROM small WHERE event = 'it''s' OR scribble() = 1",
    "SELECT *, NEXT VALUE FOR seq FROM small",
    "SELECT *, nextval(seq) FROM small",
    "SELECT *, RELEASE_LOCK('x') FROM small",
    "SELECT *, MASTER_POS_WAIT('x', 1) FROM small",
    "SELECT *, UUID_SHORT() FROM small WHERE scribble() = 1",
    "SELECT * FROM small PROCEDURE ANALYSE()",
    "SELECT * FROM small WHERE @@tx_read_only = 0 OR rw() = 1",
    "SELECT * FROM small # ; DELETE FROM small",
    "SELECT * FROM (SELECT scribble() AS s) x CROSS JOIN small",
]


@dataclass(frozen=True)
class Attack:
    """One hostile config: a connector, a mapping, the command that runs it."""

    dialect: str
    label: str
    command: str
    query: str | None = None
    options: dict[str, Any] | None = None
    url_query: str | None = None
    filters: list[dict[str, Any]] | None = None
    refused: bool = True  # must exit non-zero; False: harmless, must just not write


# Hostile text that stays text: read like any value, and still writes nothing.
HARMLESS = {
    "SELECT * FROM small WHERE event = E'\\';DELETE FROM small;--'",
    "SELECT * FROM small WHERE event = 'x'';DELETE FROM small;--'",
    "SELECT * FROM small /* ; DELETE FROM small */",
    "SELECT * FROM small # ; DELETE FROM small",
    "SELECT * FROM small WHERE event::regclass IS NOT NULL",
}


def _query_attacks(queries: list[str], prefix: str) -> list[Attack]:
    return [
        Attack(
            prefix,
            f"{prefix}-q{i:02d}",
            COMMANDS[i % len(COMMANDS)],
            query=q,
            refused=q not in HARMLESS,
        )
        for i, q in enumerate(queries)
    ]


PG_OPTIONS: list[dict[str, Any]] = [
    {"options": "-c default_transaction_read_only=off"},
    {"options": "-c transaction_read_only=off"},
    {"options": "-c session_preload_libraries=x"},
    {"service": "attack"},
    {"target_session_attrs": "read-write", "options": "-c statement_timeout=0"},
]
MARIADB_OPTIONS: list[dict[str, Any]] = [
    {"init_command": "DELETE FROM small WHERE id < 100"},
    {"init_command": "INSERT INTO myisam_log VALUES ('init')"},
    {"autocommit": "true"},
    {"client_flag": 65536},
    {"local_infile": 1},
    {"read_default_file": "/etc/mysql/my.cnf"},
    {"sql_mode": "NO_BACKSLASH_ESCAPES"},
]
PG_URL_QUERIES = [
    "options=-c%20default_transaction_read_only%3Doff",
    "options=-c%20transaction_read_only%3Doff&application_name=x",
]
MARIADB_URL_QUERIES = [
    "init_command=DELETE%20FROM%20small%20WHERE%20id%20%3C%20100",
    "init_command=INSERT%20INTO%20myisam_log%20VALUES%20(1)",
    "client_flag=65536",
    "local_infile=1",
]
HOSTILE_FILTERS: list[list[dict[str, Any]]] = [
    [{"column": "event", "eq": "'; DELETE FROM small; --"}],
    [{"column": "event", "in": ["A", "x'); DELETE FROM small; --"]}],
    [{"column": "event", "ne": "\\'; DELETE FROM small; -- "}],
    [{"column": "event", "eq": "$$; DELETE FROM small; $$"}],
]


def _attacks(dialect: str) -> list[Attack]:
    pg = dialect == "postgresql"
    out = _query_attacks(PG_QUERIES if pg else MARIADB_QUERIES, dialect)
    for i, options in enumerate(PG_OPTIONS if pg else MARIADB_OPTIONS):
        for command in CONNECTOR_COMMANDS if i == 0 else (CONNECTOR_COMMANDS[i % 5],):
            out.append(Attack(dialect, f"{dialect}-opt{i}-{command}", command, options=options))
    for i, query in enumerate(PG_URL_QUERIES if pg else MARIADB_URL_QUERIES):
        for command in CONNECTOR_COMMANDS if i == 0 else (CONNECTOR_COMMANDS[i % 5],):
            out.append(Attack(dialect, f"{dialect}-url{i}-{command}", command, url_query=query))
    for i, filters in enumerate(HOSTILE_FILTERS):
        out.append(
            Attack(dialect, f"{dialect}-filter{i}", COMMANDS[i % 4], filters=filters, refused=False)
        )
    return out


ATTACKS = [a for d in ("postgresql", "mariadb") for a in _attacks(d)]


def _write(target: Target, attack: Attack) -> None:
    root = target.root
    connector: dict[str, Any] = {"dialect": target.dialect, "connect_timeout": "5s"}
    if attack.url_query is not None:
        driver = "postgresql+psycopg" if target.dialect == "postgresql" else "mysql+pymysql"
        url = target.url.set(drivername=driver).render_as_string(hide_password=False)
        connector["url"] = f"{url}?{attack.url_query}"
    else:
        connector.update(
            host=target.url.host,
            port=target.url.port,
            database=target.url.database,
            user=target.user,
            password="${ATTACK_PW}",
        )
        if attack.options:
            connector["options"] = attack.options
    source: dict[str, Any] = {"query": attack.query} if attack.query else {"table": "small"}
    mapping: dict[str, Any] = {
        "structure": "bookings",
        "source": source,
        "columns": BASE_COLUMNS,
        "events": EVENTS,
    }
    if attack.filters:
        mapping["filters"] = attack.filters
    # the project's YAML reads ${VAR} and $$ (a literal $): every $ of an attack is doubled
    (root / "connectors" / "attack.yaml").write_text(
        yaml.safe_dump(connector).replace("$", "$$").replace("$${ATTACK_PW}", "${ATTACK_PW}")
    )
    (root / "mappings" / "attack.yaml").write_text(yaml.safe_dump(mapping).replace("$", "$$"))
    (root / "jobs" / "attack.yaml").write_text("connector: attack\nmapping: attack\n")


def _invoke(target: Target, command: str) -> Any:
    args = {
        "run": ["run", "attack"],
        "preview": ["preview", "attack", "--since", "2026-10-19"],
        "check": ["check", "attack"],
        "discover": ["discover", "attack"],
        "backfill": ["backfill", "attack", "--since", "2026-10-19", "--until", "2026-10-22"],
    }[command]
    return CliRunner().invoke(
        main, ["--project", str(target.root), *args], env={"ATTACK_PW": target.password}
    )


@pytest.mark.parametrize(
    ("target", "attack"),
    [(a.dialect, a) for a in ATTACKS],
    ids=[a.label for a in ATTACKS],
    indirect=["target"],
)
def test_attack_writes_nothing_locks_nothing_kills_nothing(target: Target, attack: Attack) -> None:
    _write(target, attack)
    before = target.state()
    result = _invoke(target, attack.command)
    assert target.state() == before, result.output
    assert target.locks_held() == [], result.output
    assert target.victim_alive(), result.output
    assert "Traceback" not in result.output
    assert target.password not in result.output
    if attack.refused and attack.command == "check" and "does not parse" not in result.output:
        # SQL that does not parse never runs: 'etl check' names the job it left out and checks
        # the rest (docs/operations.md), exit 0 when nothing else is wrong
        assert result.exit_code != 0 or "not loaded because their files have errors" in (
            result.output
        ), result.output
    elif attack.refused:
        assert result.exit_code != 0, result.output
        assert any(
            why in result.output for why in ("refused", "read-only", "does not parse as SQL")
        ), result.output


def _attacker(target: Target) -> sa.Engine:
    """The attacker's account through plain SQLAlchemy: no guard, no read-only session."""
    return sa.create_engine(target.url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


@pytest.mark.parametrize("target", ["postgresql", "mariadb"], indirect=True)
def test_the_measurements_see_a_write_a_lock_and_a_kill(target: Target) -> None:
    """The control: what the account does outside booking-etl shows in every measurement (so
    the attack test's equalities are not vacuous). Runs after the attacks (same fixture)."""
    before = target.state()
    engine = _attacker(target)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("UPDATE small SET machine = 'XX' WHERE id = 1")
            assert target.state() != before
            conn.exec_driver_sql("UPDATE small SET machine = 'M1' WHERE id = 1")
            target.control_updates += 2
            assert target.state() == before
            lock = (
                "SELECT pg_advisory_lock(4242)"
                if target.dialect == "postgresql"
                else "SELECT GET_LOCK('x', 0)"
            )
            conn.exec_driver_sql(lock)
            assert target.locks_held() != []
        for _ in range(50):  # the server ends a closed session (and frees its locks) on its own
            if target.locks_held() == []:
                break
            time.sleep(0.1)
        assert target.locks_held() == []
        other = engine.raw_connection()
        try:
            cursor = other.cursor()
            cursor.execute(
                "SELECT pg_backend_pid()"
                if target.dialect == "postgresql"
                else "SELECT CONNECTION_ID()"
            )
            pid = int(cursor.fetchone()[0])  # type: ignore[index]
            with target.admin.connect() as admin:
                admin.exec_driver_sql(
                    f"SELECT pg_terminate_backend({pid})"
                    if target.dialect == "postgresql"
                    else f"KILL {pid}"
                )
            probe = Target(**{**target.__dict__, "victim": other.dbapi_connection})
            assert not probe.victim_alive()
        finally:
            other.invalidate()
    finally:
        engine.dispose()
    assert target.victim_alive()
