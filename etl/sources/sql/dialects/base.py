"""The shared interface every source database implements; quirks live in one module per database.

A dialect answers four kinds of questions, each with class attributes (capabilities) or a small
method the core calls without knowing which database it talks to:

- connecting: the URL, DBAPI arguments, session setup, the statement that opens every transaction;
- failures: which driver error means "host unreachable", "login failed", "no such database", ...;
- ``etl check``: server version, session time zone, the privileges the account holds, least-privilege
  GRANT statements;
- ``etl discover``: estimated row counts and what a timestamp type can hold.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from etl.config.models import ConnectorSpec

# What kind of failure a driver error stands for (see ``SourceDialect.classify``).
Failure = Literal[
    "unreachable",  # refused, no route, host down: retried
    "timeout",  # the connect or login timed out: retried
    "transient",  # too many connections, server starting or shutting down: retried
    "unknown_host",  # the host name does not resolve
    "login",  # authentication failed, account locked or expired
    "database",  # the database (catalog, service name) does not exist
    "permission",  # the account may not read an object
    "table",  # the table or view does not exist
    "column",  # the column does not exist
    "driver",  # the ODBC driver manager cannot load the driver
]
RETRYABLE: frozenset[str] = frozenset({"unreachable", "timeout", "transient"})

# Kinds of privilege in an ``etl check`` report; the first three mean "the account can write".
Kind = Literal["write", "ddl", "admin", "execute", "read"]
WRITE_KINDS: frozenset[str] = frozenset({"write", "ddl", "admin"})

# Message fragments that mean the same thing in every driver (checked after the error codes).
_PATTERNS: list[tuple[Failure, re.Pattern[str]]] = [
    ("driver", re.compile(r"can't open lib|data source name not found|IM00[23]", re.I)),
    (
        "unknown_host",
        re.compile(
            r"could not translate host name|name or service not known|unknown (mysql server )?host"
            r"|nodename nor servname|getaddrinfo failed|temporary failure in name resolution",
            re.I,
        ),
    ),
    (
        "unreachable",
        re.compile(
            r"connection refused|no route to host|network is unreachable|can't connect to"
            r"|could not connect to server|server closed the connection unexpectedly"
            r"|unable to connect|adaptive server is unavailable|connection reset",
            re.I,
        ),
    ),
    ("timeout", re.compile(r"timeout expired|timed out|login timeout", re.I)),
    (
        "transient",
        re.compile(r"too many connections|the database system is (starting|shutting) up", re.I),
    ),
    (
        "login",
        re.compile(
            r"password authentication failed|access denied for user|login failed"
            r"|invalid username/password|authentication failed|no password supplied"
            r"|role \S+ does not exist|account is locked",
            re.I,
        ),
    ),
    (
        "database",
        re.compile(r"database \S+ does not exist|unknown database|cannot open database", re.I),
    ),
    (
        "permission",
        re.compile(
            r"permission denied|insufficient privileges|command denied|permission was denied", re.I
        ),
    ),
    (
        "table",
        re.compile(
            r"no such table|relation \S+ does not exist|doesn't exist|invalid object name", re.I
        ),
    ),
    (
        "column",
        re.compile(
            r"no such column|unknown column|column \S+ does not exist|invalid column name", re.I
        ),
    ),
]


@dataclass(frozen=True)
class Privilege:
    """One privilege the account holds, as ``etl check`` reports it."""

    kind: Kind
    privilege: str  # "INSERT, UPDATE", "SUPERUSER", "CREATE"
    on: str  # "table public.bde", "schema public", "database HYDRA", "server"
    via: str = ""  # "", "role pg_write_all_data", "PUBLIC", "owner"
    fix: str = ""  # the statement or step that removes it, where one is known

    def as_dict(self) -> dict[str, str]:
        """For ``--json``."""
        return {
            "kind": self.kind,
            "privilege": self.privilege,
            "on": self.on,
            "via": self.via,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class TableRef:
    """A table named by a mapping: its schema (None: the account's default) and name."""

    schema: str | None
    name: str


class SourceDialect:
    """What booking-etl needs to know about one kind of source database.

    Subclasses set the class attributes and override the few methods where their database differs.
    The core never branches on a dialect name; it asks the dialect.
    """

    name: ClassVar[str]
    product: ClassVar[str]  # the product name for messages: "PostgreSQL"
    # sqlglot's name for the SQL this database speaks: the statement guard and the custom-query
    # checks parse with it
    sqlglot_dialect: ClassVar[str]
    driver: ClassVar[str]  # SQLAlchemy "dialect+driver"
    default_port: ClassVar[int | None] = None
    read_only_session: ClassVar[bool] = False  # the session itself refuses writes
    datetimes_as_text: ClassVar[bool] = False  # timestamps may be stored as text (SQLite)
    read_only_how: ClassVar[str] = "no read-only session: the account's grants and the guard"
    # Sent (below the statement guard) as the first statement of every transaction.
    begin_statement: ClassVar[str | None] = None
    # Sent (below the statement guard) once on a new session of a native Arrow driver or ODBC:
    # what makes it read-only and pins its time zone.
    session_statements: ClassVar[tuple[str, ...]] = ()
    # The Arrow reader of etl/sources/sql/arrow.py for this database's own driver, by its key in
    # ``fetch.PATHS`` (None: SQLAlchemy only); ``arrow_path`` picks it or arrow-odbc per URL.
    native_arrow_path: ClassVar[str | None] = None
    # arrow-odbc sends every parameter as text: cast date/time parameters in the statement and
    # send them as ISO 8601 with a 'T', for a server that reads text by the session's DATEFORMAT
    odbc_typed_times: ClassVar[bool] = False
    # Driver error code -> failure kind; codes come from ``error_code``.
    error_codes: ClassVar[dict[str | int, Failure]] = {}
    # A database every account may connect to, to list the databases when the configured one is
    # missing (None: the server URL without a database; no attribute: cannot list).
    list_databases_sql: ClassVar[str | None] = None
    maintenance_database: ClassVar[str | None] = None
    row_estimate_source: ClassVar[str] = "count(*)"
    # Names that cannot be the account of a least-privilege reader (admins): GRANTs name a new one.
    admin_accounts: ClassVar[frozenset[str]] = frozenset()

    # ------------------------------------------------------------------ connecting

    def url(self, spec: ConnectorSpec, root: Path) -> URL:
        """The SQLAlchemy URL for the connector (password included; never print it)."""
        if spec.url is not None:
            return sa.make_url(spec.url.get_secret_value())
        return URL.create(
            self.driver,
            username=spec.user,
            password=spec.password.get_secret_value() if spec.password else None,
            host=spec.host,
            port=spec.port or self.default_port,
            database=spec.database,
            query={k: _option(v) for k, v in spec.options.items()},
        )

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        """Extra keyword arguments for the DBAPI ``connect()`` (timeouts, session options)."""
        return {}

    def dbapi_connect_args(self, spec: ConnectorSpec, url: URL) -> dict[str, Any]:
        """``connect_args`` for the DBAPI the URL names: the dialect's own, or pyodbc's.

        A connector's ``url`` may reach MySQL, MariaDB or SQL Server through another driver
        (``mysql+pyodbc://...``); pyodbc takes only a login timeout.
        """
        if url.get_driver_name() == "pyodbc":
            return {"timeout": max(1, int(spec.connect_timeout.total_seconds()))}
        return self.connect_args(spec)

    def engine_options(self, spec: ConnectorSpec) -> dict[str, Any]:
        """Extra keyword arguments for ``create_engine`` (e.g. Oracle's thick mode)."""
        return {}

    def on_connect(self, dbapi_connection: Any) -> None:
        """Make a fresh DBAPI connection read-only where the database offers it."""

    def read_only_probe(self, conn: Connection) -> str | None:
        """A SELECT/SHOW whose one value says whether the session refuses writes (checked after
        the session is set up and before each extraction); None: nothing to check."""
        return None

    def arrow_path(self, url: URL) -> str | None:
        """The Arrow path (etl/sources/sql/arrow.py) for a connection URL: any pyodbc URL reads through
        arrow-odbc, others through the database's native Arrow driver, if it has one."""
        if url.get_driver_name() == "pyodbc":
            return "arrow_odbc"
        return self.native_arrow_path

    def clock(self) -> sa.ColumnElement[Any]:
        """A SELECT-able expression for the server's current time (compared in UTC)."""
        return sa.func.current_timestamp()

    def display_url(self, spec: ConnectorSpec, root: Path) -> str:
        """The connection URL with the password hidden, for messages."""
        return self.url(spec, root).render_as_string(hide_password=True)

    def driver_notes(self, spec: ConnectorSpec) -> list[str]:
        """Why this driver was chosen, what it cannot do: shown by ``etl check``."""
        return []

    # ------------------------------------------------------------------ failures

    def error_code(self, error: BaseException) -> str | int | None:
        """The driver's code for an error (SQLSTATE, server error number, ORA-nnnnn)."""
        return None

    def classify(self, error: BaseException) -> Failure | None:
        """What a driver error means: by the database's own code, its message, its SQLSTATE."""
        error = getattr(error, "orig", None) or error
        code = self.error_code(error)
        if code is not None and code in self.error_codes:
            return self.error_codes[code]
        text = str(error)
        for kind, pattern in _PATTERNS:
            if pattern.search(text):
                return kind
        if _module_of(error) == "pyodbc":
            # ODBC drivers report many connection failures as 08001, login failures included,
            # so the SQLSTATE only decides when the message did not
            return ODBC_SQLSTATES.get(_odbc_sqlstate(error) or "")
        return None

    # ------------------------------------------------------------------ etl check

    def server_version(self, conn: Connection) -> tuple[str, str]:
        """(product, version) of the server."""
        info = conn.dialect.server_version_info or ()
        return self.product, ".".join(str(p) for p in info)

    def session_timezone(self, conn: Connection) -> str:
        """The session's time zone as the server reports it."""
        return "unknown"

    def session_read_only(self, conn: Connection) -> str:
        """Whether (and how) the session refuses writes, as the server reports it."""
        return self.read_only_how

    def current_user(self, conn: Connection) -> str:
        """The account the session runs as."""
        return str(conn.execute(sa.select(sa.func.current_user())).scalar())

    def privileges(self, conn: Connection, tables: Sequence[TableRef]) -> list[Privilege]:
        """Every write, DDL, EXECUTE or admin privilege the account holds (and notable reads)."""
        return []

    def grant_statements(
        self, conn: Connection, account: str, tables: Sequence[TableRef]
    ) -> list[str]:
        """The statements a DBA runs for a least-privilege account reading ``tables``."""
        return []

    def quote(self, conn: Connection, *names: str | None) -> str:
        """``schema.table`` quoted for this database where needed."""
        prep = conn.dialect.identifier_preparer
        return ".".join(prep.quote(n) for n in names if n)

    # ------------------------------------------------------------------ etl discover

    def row_estimates(self, conn: Connection, schema: str | None) -> dict[str, int]:
        """Estimated rows per table name (views are absent); cheap catalog statistics."""
        return {}

    def timestamp_note(self, type_: sa.types.TypeEngine[Any]) -> str | None:
        """What a timestamp column of this type can hold, when it is a known trap."""
        return None

    def is_instant(self, type_: sa.types.TypeEngine[Any]) -> bool:
        """Whether a column of this type holds instants (compared and read in UTC), not wall-clock."""
        name = type(type_).__name__.upper()
        return bool(getattr(type_, "timezone", False)) or name == "DATETIMEOFFSET"

    def driver_description(self, conn: Connection) -> str:
        """The DBAPI driver and version that carries the connection."""
        return describe_driver(conn)


@functools.cache
def _preparer(backend: str) -> Any:
    return sa.dialects.registry.load(backend)().identifier_preparer


def quoter(backend: str) -> Callable[[str], str]:
    """The identifier quoting of a SQLAlchemy backend (``"mssql"``: ``[Auftrags Daten]``),
    quoted only where needed, without a connection: for the statements ``etl check`` shows."""
    return _preparer(backend).quote


def is_read_only(value: Any) -> bool:
    """Whether a read-only probe's value means "read-only" (on, 1, true, yes)."""
    return str(value).strip().lower() in ("on", "1", "true", "yes")


def _option(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _module_of(error: BaseException) -> str:
    return type(error).__module__.split(".", 1)[0]


# SQLSTATEs every ODBC driver reports (ODBC 3.x appendix A plus common server classes).
ODBC_SQLSTATES: dict[str | int, Failure] = {
    "08001": "unreachable",
    "08S01": "unreachable",
    "08004": "login",
    "HYT00": "timeout",
    "HYT01": "timeout",
    "28000": "login",
    "42S02": "table",
    "42S22": "column",
}


def _odbc_sqlstate(error: BaseException) -> str | None:
    args = getattr(error, "args", ())
    if args and isinstance(args[0], str) and re.fullmatch(r"[0-9A-Z]{5}", args[0]):
        return args[0]
    return None


def describe_driver(conn: Connection) -> str:
    """``psycopg 3.3.9``; for ODBC also the ODBC driver and its version as it reports them."""
    dialect = conn.dialect
    dbapi = dialect.dbapi
    module = getattr(dbapi, "__name__", dialect.driver)
    version = ""
    for attr in ("__version__", "version", "VERSION_STRING", "sqlite_version"):
        value = getattr(dbapi, attr, None)
        if isinstance(value, str):
            version = value
            break
    if not version:
        try:
            version = str(importlib.import_module(module).__version__)
        except (ImportError, AttributeError):
            version = ""
    text = f"{module} {version}".strip()
    if dialect.driver == "pyodbc":
        raw = conn.connection.dbapi_connection
        try:
            odbc_name = raw.getinfo(dbapi.SQL_DRIVER_NAME)  # type: ignore[union-attr]
            odbc_version = raw.getinfo(dbapi.SQL_DRIVER_VER)  # type: ignore[union-attr]
            text += f" with ODBC driver {odbc_name} {odbc_version}"
        except Exception:  # a driver without getinfo: the name is enough
            pass
    return text


def first_words(values: Iterable[str], limit: int = 20) -> str:
    """``a, b, c`` with ``... (+N more)`` beyond ``limit``."""
    items = list(values)
    shown = ", ".join(items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")
