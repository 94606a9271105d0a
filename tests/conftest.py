"""Shared fixtures: real database servers (skipped with a reason when absent, failing under CI)."""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl.store.db import Store

POSTGRES_URL = os.environ.get(
    "ETL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("ETL_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


# End-to-end modules: real `etl` processes and daemons killed and restarted, the demo's plant,
# a real browser, an S3 server, big tables. `make test-fast` (-m "not slow ...") leaves them out.
SLOW_MODULES = frozenset(
    {
        "test_backfill",
        "test_bulk",
        "test_conformance",
        "test_demo",
        "test_demo_data",
        "test_exit_codes",
        "test_extras",
        "test_fetch",
        "test_lease",
        "test_life",
        "test_logs",
        "test_objectstore",
        "test_odbc",
        "test_progress",
        "test_readonly",
        "test_report",
        "test_schedule",
        "test_sources",
        "test_workers",
    }
)
# single slow tests in otherwise quick modules: a real console-script process, Hypothesis
# properties of the fold over many examples
SLOW_TESTS = frozenset(
    {
        "test_cli.py::test_the_console_script_delivers_all_output_and_its_exit_code",
        "test_fold.py::test_result_does_not_depend_on_row_order",
        "test_fold.py::test_split_windows_with_carry_over_equal_one_window",
        "test_fold.py::test_split_windows_with_merging_give_the_same_runs",
    }
)
# parameter values that stand for a real server
_SERVER_MARKS = {"postgresql": "postgres", "mariadb": "mariadb", "mysql": "mariadb"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow modules ``slow``, and tests parametrized on a real server (the ``store``
    fixture's postgresql, a ``plant[mariadb]``) or using a server database fixture
    ``postgres``/``mariadb``, so that ``-m "not slow and not postgres and not mariadb"`` is the
    quick loop of tests that need nothing but this machine."""
    for item in items:
        module = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        test = item.nodeid.rsplit("/", 1)[-1].split("[", 1)[0]
        if module in SLOW_MODULES or test in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        names = set(getattr(item, "fixturenames", ()))
        if "postgres_database" in names:
            item.add_marker(pytest.mark.postgres)
        if "mariadb_database" in names:
            item.add_marker(pytest.mark.mariadb)
        callspec = getattr(item, "callspec", None)
        values = callspec.params.values() if callspec is not None else ()
        for value in values:
            if isinstance(value, str) and value in _SERVER_MARKS:
                item.add_marker(getattr(pytest.mark, _SERVER_MARKS[value]))


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
    # pre-ping: after a long test (the soak) the idle admin connection may have been dropped
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@dataclass(frozen=True)
class S3Server:
    """A real S3 API server (moto's server mode) on loopback, with a fresh bucket per test."""

    endpoint: str
    bucket: str
    log: Path

    def client(self) -> object:
        """A boto3 S3 client for checking what the server holds (not used by booking-etl)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="eu-central-1")


S3_KEY_ID = "AKIAETLTESTKEY000001"
S3_SECRET = "etl-test-secret-5mR9qT2vXw8zL4nB"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``moto_server`` as a subprocess on a free loopback port for the whole session."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = Path(sys.executable).parent / "moto_server"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"moto_server did not start:\n{log.read_text()}")
            time.sleep(0.1)
    try:
        yield endpoint, log
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def s3(moto_endpoint: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The moto S3 server with an empty bucket of this test's own and credentials in the
    environment (as booking-etl expects them)."""
    endpoint, log = moto_endpoint
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    server = S3Server(endpoint=endpoint, bucket=f"etl-{uuid.uuid4().hex[:12]}", log=log)
    server.client().create_bucket(  # type: ignore[attr-defined]
        Bucket=server.bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    return server


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """An empty store with its schema, on SQLite and on the real PostgreSQL."""
    url = (
        "sqlite:///store.sqlite"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_database")
    )
    store = Store(url, tmp_path)
    store.ensure_schema()
    request.addfinalizer(store.close)
    return store
