"""Test accounts on the real servers: a fresh database, a booking table, and an account in it that
HOLDS write grants (the read-only tests prove booking-etl still cannot write through it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from etl.config.models import ConnectorSpec


@dataclass
class Server:
    """A test database on a real server and an account in it that may write."""

    dialect: str
    admin: sa.Engine  # a superuser on the test database (to set up and to look from outside)
    url: sa.URL  # the test database as the writing account
    user: str
    password: str

    def spec(self) -> ConnectorSpec:
        return ConnectorSpec.model_validate(
            {
                "dialect": self.dialect,
                "host": self.url.host,
                "port": self.url.port,
                "database": self.url.database,
                "user": self.user,
                "password": self.password,
            }
        )

    def snapshot(self) -> tuple[list[tuple[Any, ...]], list[str]]:
        with self.admin.connect() as conn:
            rows = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM bookings ORDER BY id"))]
            tables = sorted(sa.inspect(conn).get_table_names())
        return rows, tables


def _setup_postgresql(url: sa.URL, user: str, password: str) -> sa.Engine:
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'"))
        conn.execute(sa.text(f'GRANT CREATE ON DATABASE "{url.database}" TO "{user}"'))
        conn.execute(sa.text(f'GRANT ALL ON SCHEMA public TO "{user}"'))
    return admin


def _setup_mariadb(url: sa.URL, user: str, password: str) -> sa.Engine:
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for host in ("%", "localhost"):
            conn.execute(sa.text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"))
            conn.execute(sa.text(f"GRANT ALL ON `{url.database}`.* TO '{user}'@'{host}'"))
    return admin


@contextmanager
def writer_account(request: pytest.FixtureRequest) -> Iterator[Server]:
    """For ``request.param`` ('postgresql' or 'mariadb'): a fresh database with a ``bookings``
    table (two rows) and an account holding every write and DDL right on it; all dropped after."""
    dialect = request.param
    url = sa.make_url(
        request.getfixturevalue(
            "postgres_database" if dialect == "postgresql" else "mariadb_database"
        )
    )
    user, password = f"etl_rw_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:12]}"
    setup = _setup_postgresql if dialect == "postgresql" else _setup_mariadb
    admin = setup(url, user, password)
    stamp = "timestamp(6)" if dialect == "postgresql" else "datetime(6)"
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE bookings (id int PRIMARY KEY, machine char(8), order_no varchar(20), "
                f"kind varchar(3), ts {stamp})"
            )
        )
        conn.execute(
            sa.text("INSERT INTO bookings VALUES (:i, 'M1', '4711', :k, :t)"),
            [
                {"i": 1, "k": "A", "t": "2026-10-20 06:00:00.25"},
                {"i": 2, "k": "E", "t": "2026-10-20 08:00:00"},
            ],
        )
        grant = f'"{user}"' if dialect == "postgresql" else f"'{user}'@'%'"
        conn.execute(sa.text(f"GRANT ALL ON bookings TO {grant}"))
    try:
        yield Server(dialect, admin, url.set(username=user, password=password), user, password)
    finally:
        drop_account(admin, dialect, user)
        admin.dispose()


BOOKINGS_MAPPING = """\
structure: bookings
source: {table: bookings}
columns: {timestamp: ts, order_code: order_no, machine_code: machine, event: kind}
events: {START: [A], END: [E]}
"""


def write_project(root: Any, dialect: str, url: sa.URL, password_env: str | None = None) -> Any:
    """A project with connector ``plant`` (``url``'s account) and a bookings job ``bookings``."""
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "etl.yaml").write_text("defaults: {start_from: 2026-10-19}\n")
    password = f"password: ${{{password_env}}}\n" if password_env else ""
    (root / "connectors" / "plant.yaml").write_text(
        f"dialect: {dialect}\nhost: {url.host}\nport: {url.port}\ndatabase: {url.database}\n"
        f"user: {url.username}\n{password}connect_timeout: 5s\n"
    )
    (root / "mappings" / "bookings.yaml").write_text(BOOKINGS_MAPPING)
    (root / "jobs" / "bookings.yaml").write_text("connector: plant\nmapping: bookings\n")
    return root


def drop_account(admin: sa.Engine, dialect: str, user: str) -> None:
    """Remove an account (and, on PostgreSQL, its grants in the test database)."""
    with admin.connect() as conn:
        if dialect == "postgresql":
            conn.execute(sa.text(f'DROP OWNED BY "{user}"'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{user}"'))
        else:
            for host in ("%", "localhost"):
                conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
