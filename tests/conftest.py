"""Shared fixtures: real database servers (skipped with a reason when absent, failing under CI)."""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

POSTGRES_URL = os.environ.get(
    "ETL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("ETL_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


def _require_dbs() -> bool:
    return os.environ.get("CI", "").lower() == "true" or os.environ.get("ETL_REQUIRE_DBS") == "1"


def import_or_skip(module: str, hint: str) -> Any:
    """Import an optional module; skip (or fail under CI / ETL_REQUIRE_DBS=1) when it cannot load.

    pyodbc, for one, needs the system's ODBC driver manager (libodbc.so.2 from unixodbc).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        message = f"{module} cannot be imported ({exc}): {hint}"
        if _require_dbs():
            pytest.fail(message + " (CI=true or ETL_REQUIRE_DBS=1: it is required)")
        pytest.skip(message, allow_module_level=True)


def server_or_skip(url: str, name: str) -> sa.URL:
    """Connect once; skip (or fail under CI / ETL_REQUIRE_DBS=1) when the server does not answer."""
    parsed = sa.make_url(url)
    engine = sa.create_engine(parsed, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        message = (
            f"{name} not reachable at {parsed.render_as_string(hide_password=True)}: {exc.orig}"
        )
        if _require_dbs():
            pytest.fail(message + " (CI=true or ETL_REQUIRE_DBS=1: real servers are required)")
        pytest.skip(message)
    finally:
        engine.dispose()
    return parsed


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards; yields its URL."""
    server = server_or_skip(POSTGRES_URL, "PostgreSQL")
    name = f"etl_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def mariadb_database() -> Iterator[str]:
    """A fresh MariaDB/MySQL database for one test, dropped afterwards; yields its URL."""
    server = server_or_skip(MARIADB_URL, "MariaDB")
    name = f"etl_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
