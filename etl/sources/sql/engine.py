"""A read-only connection to one source database: engine, session setup, statement guard, clock.

Read-only is enforced in layers (docs/read-only.md): only generated SELECTs (or a custom
query proven to be one SELECT) are built; the session is opened read-only where the database offers
it; and the statement guard below refuses anything else before it reaches the driver. Failures to
connect are retried when they may pass and otherwise explained once: host unreachable, login failed,
database missing, permission denied, always naming the connector file and never the password.
"""

from __future__ import annotations

import difflib
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
import sqlglot
import sqlglot.expressions as exp
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlglot.tokens import Token, TokenType

from etl.config.models import ConnectorSpec, Project
from etl.errors import ConfigError, EtlError, SourceError, UsageError
from etl.extras import missing_driver
from etl.redact import redact
from etl.sources.sql.dialects import (
    RETRYABLE,
    DriverMissing,
    Failure,
    SourceDialect,
    get_dialect,
    sqlglot_name,
)
from etl.sources.sql.dialects.base import is_read_only
from etl.sources.sql.dialects.odbc import installed_drivers

log = logging.getLogger(__name__)


class ReadOnlyViolation(SourceError):
    """A statement other than a query was about to be sent to a source."""

    exit_code = 2


class SessionNotReadOnly(ReadOnlyViolation):
    """The source session is not read-only after setup or before an extraction: nothing is read."""


class SourceUnreachable(SourceError):
    """The server did not answer (refused, unknown host, timeout), also after the retries."""


class LoginFailed(SourceError):
    """The server refused the account: wrong user or password, account locked or expired."""


class DatabaseMissing(SourceError):
    """The server answered, but the connector's database (or service name) is not there."""


class PermissionDenied(SourceError):
    """The account may not read an object the job needs."""


# ---------------------------------------------------------------------------- the statement guard

# How a statement may begin.
_STARTS = {"SELECT", "WITH", "SHOW", "VALUES", "DESCRIBE", "DESC", "PRAGMA", "("}
# Words that write, lock, change structure or start another statement, wherever they appear.
_NEVER = {
    "UPDATE",
    "DELETE",
    "MERGE",
    "UPSERT",
    "INTO",
    "DROP",
    "CREATE",
    "ALTER",
    "RENAME",
    "GRANT",
    "REVOKE",
    "EXEC",
    "EXECUTE",
    "CALL",
    "DO",
    "COPY",
    "VACUUM",
    "ANALYZE",
    "CLUSTER",
    "REINDEX",
    "REFRESH",
    "LOCK",
    "UNLOCK",
    "DECLARE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "SET",
    "RESET",
    "DISCARD",
    "USE",
    "SHUTDOWN",
    "KILL",
    "DBCC",
    "BACKUP",
    "RESTORE",
    "BULK",
    "HANDLER",
    "LOAD",
    "NOTIFY",
    "LISTEN",
    "PREPARE",
    "DEALLOCATE",
    "WAITFOR",
    "RECONFIGURE",
    # SQL Server table hints that take locks
    "UPDLOCK",
    "XLOCK",
    "TABLOCK",
    "TABLOCKX",
    "HOLDLOCK",
    "PAGLOCK",
    "ROWLOCK",
}
# Statement words that are also the names of harmless functions: refused unless called.
_UNLESS_CALLED = {"INSERT", "REPLACE", "TRUNCATE"}
# Functions that write, change the session's read-only setting or reach another server.
_DENIED_FUNCTIONS = {
    "SET_CONFIG",
    "SETVAL",
    "NEXTVAL",
    "LO_IMPORT",
    "LO_EXPORT",
    "LO_UNLINK",
    "LO_CREATE",
    "LO_PUT",
    "LO_FROM_BYTEA",
    "LOWRITE",
    "PG_TERMINATE_BACKEND",
    "PG_CANCEL_BACKEND",
    "PG_RELOAD_CONF",
    "PG_ROTATE_LOGFILE",
    "PG_PROMOTE",
    "PG_SWITCH_WAL",
    "PG_FILE_WRITE",
    "DBLINK",
    "DBLINK_EXEC",
    "OPENQUERY",
    "OPENROWSET",
    "OPENDATASOURCE",
    "GET_LOCK",
    "SYS_EXEC",
}
# SQLite pragmas that may be read with an argument (the rest only without one).
_READ_PRAGMAS = {
    "TABLE_INFO",
    "TABLE_XINFO",
    "TABLE_LIST",
    "INDEX_LIST",
    "INDEX_INFO",
    "INDEX_XINFO",
    "FOREIGN_KEY_LIST",
}
_LITERALS = {
    TokenType.STRING,
    TokenType.IDENTIFIER,
    TokenType.NUMBER,
    TokenType.NATIONAL_STRING,
    TokenType.BYTE_STRING,
    TokenType.HEREDOC_STRING,
    TokenType.RAW_STRING,
}


def refusal(statement: str, dialect: str | None = None) -> str | None:
    """Why ``statement`` must not reach a source (None: it only reads).

    Works on the dialect's SQL tokens, so strings, quoted identifiers and comments never count:
    the statement must begin like a query and contain no word that writes, locks, changes
    structure or starts another statement, no write function and nothing after a ``;``.
    """
    try:
        tokens = sqlglot.Dialect.get_or_raise(sqlglot_name(dialect)).tokenize(statement)
    except Exception:  # what cannot be tokenized cannot be proven harmless
        return "a statement that cannot be read as SQL"
    if not tokens:
        return "an empty statement"
    first = tokens[0].text.upper()
    if first not in _STARTS:
        return f"a {first} statement"
    for i, token in enumerate(tokens):
        if token.token_type == TokenType.SEMICOLON and any(
            t.token_type != TokenType.SEMICOLON for t in tokens[i + 1 :]
        ):
            return "more than one statement"
    if first == "SHOW":
        return None
    if first == "PRAGMA":
        return _pragma_refusal(tokens)
    words: list[tuple[int, str]] = []  # (token start, reason): words that may be names
    for i, token in enumerate(tokens):
        if token.token_type in _LITERALS:
            continue
        word = token.text.upper()
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        called = following is not None and following.token_type == TokenType.L_PAREN
        previous = tokens[i - 1].text.upper() if i else ""
        if called and word in _DENIED_FUNCTIONS:
            return f"a {first} statement calling {token.text}()"
        if word == "FOR" and following is not None:
            nxt = following.text.upper()
            if nxt in ("UPDATE", "SHARE", "NO", "KEY"):
                return f"a {first} statement that locks rows (FOR {nxt})"
        if word == "SET" and previous == "CHARACTER":
            continue  # CAST(x AS CHAR CHARACTER SET utf8mb4)
        if word in _NEVER or (word in _UNLESS_CALLED and not called):
            words.append((token.start, f"a {first} statement containing {word}"))
    if not words:
        return None
    # An unquoted column or table may be called COPY or LOAD: the parse tree tells names apart
    # from keywords. Aliases are not exempt (T-SQL reads "SELECT 1 DELETE FROM t" as an alias).
    names = _name_positions(statement, dialect)
    remaining = [why for start, why in words if start not in names]
    return remaining[0] if remaining else None


def _name_positions(statement: str, dialect: str | None) -> set[int]:
    """Where the statement names a column, table or schema (token start offsets)."""
    try:
        tree = sqlglot.parse_one(statement, read=sqlglot_name(dialect))
    except Exception:  # unparseable: no exemptions, the words count
        return set()
    return {
        ident.meta["start"]
        for ident in tree.find_all(exp.Identifier)
        if isinstance(ident.parent, exp.Column | exp.Table | exp.Dot) and "start" in ident.meta
    }


def _pragma_refusal(tokens: list[Token]) -> str | None:
    rest = tokens[1:]
    if len(rest) >= 2 and rest[1].token_type == TokenType.DOT:
        rest = rest[2:]  # PRAGMA main.name
    if not rest:
        return "an empty PRAGMA"
    name = rest[0].text.upper()
    tail = [t for t in rest[1:] if t.token_type != TokenType.SEMICOLON]
    if not tail:
        return None  # PRAGMA name: reads the setting
    if name in _READ_PRAGMAS and tail[0].token_type == TokenType.L_PAREN:
        return None  # PRAGMA table_info(t)
    return f"a PRAGMA that changes {rest[0].text}"


def _guard(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    dialect = getattr(getattr(conn, "dialect", None), "name", None)
    why = refusal(statement, dialect)
    if why is not None:
        raise ReadOnlyViolation(
            f"refused to send {why} to a source database: booking-etl only reads from sources"
        )


# ---------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class Retry:
    """Bounded retries with exponential backoff for connection failures that may pass."""

    attempts: int = 3
    first_delay: float = 0.5
    max_delay: float = 8.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_delay, self.first_delay * 2 ** (attempt - 1))


DEFAULT_RETRY = Retry()


# ---------------------------------------------------------------------------- the source


@dataclass
class Source:
    """An open source database (read-only)."""

    name: str
    spec: ConnectorSpec
    dialect: SourceDialect
    engine: Engine
    secrets: list[str]
    retry: Retry = field(default=DEFAULT_RETRY)

    @property
    def where(self) -> str:
        """The connector file, for messages."""
        return f"connectors/{self.name}.yaml"

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection; failures are retried when they may pass, then explained (SourceError)."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                conn = self.engine.connect()
                break
            except sa.exc.DBAPIError as exc:
                kind = self.dialect.classify(exc)
                if kind in RETRYABLE and attempt < self.retry.attempts:
                    wait = self.retry.delay(attempt)
                    log.warning(
                        "%s: %s (attempt %d of %d); retrying in %.1fs",
                        self.where,
                        _reason(exc, self.secrets),
                        attempt,
                        self.retry.attempts,
                        wait,
                    )
                    time.sleep(wait)
                    continue
                raise self._explain(exc, kind, attempt, time.monotonic() - started) from None
        try:
            self.verify_read_only(conn, "after the session was set up")
            yield conn
        except EtlError as exc:
            # a permission error some caller already wrapped (SQLAlchemy's MySQL reflection runs
            # without the handle_error hook): said once, the same way, naming this connector
            cause = exc.__cause__ or exc.__context__
            if (
                not isinstance(exc, PermissionDenied)
                and isinstance(cause, sa.exc.DBAPIError)
                and self.dialect.classify(cause) == "permission"
            ):
                raise self.denied(cause) from None
            raise
        finally:
            try:
                conn.close()
            except sa.exc.DBAPIError as exc:  # the connection died under us: the error above counts
                log.debug("closing a broken source connection: %s", exc)

    def verify_read_only(self, conn: Connection, when: str) -> None:
        """Ask the server whether the session is read-only; raise SessionNotReadOnly if not
        (a dialect without a read-only session has nothing to ask)."""
        probe = self.dialect.read_only_probe(conn)
        if probe is None:
            return
        value = conn.exec_driver_sql(probe).scalar()
        check_read_only(self, probe, value, when)

    def denied(self, error: BaseException) -> PermissionDenied:
        """The message for a permission error of the source."""
        user = self.engine.url.username or "(the connector's account)"
        return PermissionDenied(
            f"{self.where}: the account {user!r} may not read what the job needs: "
            f"{_reason(error, self.secrets)}",
            hint="ask the database administrator for SELECT on the mapped tables; "
            f"'etl check {self.name}' prints the GRANT statements",
        )

    def _explain(
        self, exc: sa.exc.DBAPIError, kind: Failure | None, attempts: int, seconds: float
    ) -> SourceError:
        url = self.engine.url
        reason = _reason(exc, self.secrets)
        server = f"the {self.dialect.product} server at {_host_port(url)}"
        if kind in RETRYABLE:
            tries = f" ({attempts} attempts over {seconds:.1f}s)" if attempts > 1 else ""
            return SourceUnreachable(
                f"{self.where}: cannot connect to {server}: {reason}{tries}",
                hint="check 'host' and 'port', that the server runs, and that a firewall lets "
                "this host connect",
            )
        if kind == "unknown_host":
            return SourceUnreachable(
                f"{self.where}: host {url.host!r} is unknown: {reason}",
                hint="check 'host' (a name this machine can resolve, or an IP address)",
            )
        if kind == "login":
            return LoginFailed(
                f"{self.where}: login failed for user {url.username!r} on {server}: {reason}",
                hint="check 'user' and 'password' (is the environment variable the password "
                "comes from set to the right value?)",
            )
        if kind == "database":
            target = url.database or url.query.get("service_name") or "(none)"
            existing = self._databases()
            listing = f" (databases: {existing})" if existing else ""
            return DatabaseMissing(
                f"{self.where}: database {target!r} does not exist on {server} "
                f"or the account may not use it{listing}: {reason}",
                hint="check 'database' (Oracle: 'service_name' or 'sid')",
            )
        if kind == "driver":
            installed = ", ".join(installed_drivers()) or "none"
            return SourceError(
                f"{self.where}: the ODBC driver cannot be loaded: {reason} "
                f"(installed ODBC drivers: {installed})",
                hint="set 'driver' to an installed one (`odbcinst -q -d`), or install the driver",
            )
        return SourceError(
            f"{self.where}: cannot connect to {self.display}: {reason}",
            hint="check host, port, user and password; run 'etl check' for details",
        )

    def _databases(self) -> str:
        """The databases the server lists for this account, best effort ('' if it cannot)."""
        sql = self.dialect.list_databases_sql
        if sql is None:
            return ""
        url = self.engine.url._replace(database=self.dialect.maintenance_database)
        engine = sa.create_engine(
            url, connect_args=self.dialect.dbapi_connect_args(self.spec, url), poolclass=sa.NullPool
        )
        event.listen(engine, "before_cursor_execute", _guard)
        try:
            with engine.connect() as conn:
                names = [str(r[0]) for r in conn.exec_driver_sql(sql)]
        except Exception:  # listing is a courtesy; the main error stands
            return ""
        finally:
            engine.dispose()
        return ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")

    @property
    def display(self) -> str:
        """Dialect and host/database without the password."""
        return redact(str(self.engine.url.render_as_string(hide_password=True)), self.secrets)

    def now_utc(self, conn: Connection) -> datetime:
        """The source database's own clock, in UTC."""
        value = conn.execute(sa.select(self.dialect.clock())).scalar_one()
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
        return stamp.to_pydatetime()

    def close(self) -> None:
        """Release the connection pool."""
        try:
            self.engine.dispose()
        except sa.exc.DBAPIError as exc:
            log.debug("disposing of a broken source pool: %s", exc)


def check_read_only(source: Source, probe: str, value: Any, when: str) -> None:
    """Raise SessionNotReadOnly unless the probe's value says read-only."""
    if not is_read_only(value):
        raise SessionNotReadOnly(
            f"{source.where}: the {source.dialect.product} session is not read-only {when} "
            f"({probe} answered {value!r}): booking-etl refuses to read through it",
            hint="something outside booking-etl switched the session to read-write (a function, "
            "a trigger, the account's settings); docs/read-only.md",
        )


def _host_port(url: sa.URL) -> str:
    if url.host is None:
        return url.database or "(local)"
    return f"{url.host}:{url.port}" if url.port else url.host


# ADBC's PostgreSQL driver wraps the server's message in its status and libpq's step:
# "UNAUTHORIZED: [libpq] Failed to execute query: could not begin COPY: ERROR:  permission ..."
# "NOT_FOUND: Failed to prepare query: ERROR:  relation ... does not exist"
_ADBC_LIBPQ_PREFIX = re.compile(r"^[A-Z_]+: (?:\[libpq\] )?[^:]*(?:: [^:]*)*?: (?:ERROR|FATAL):\s+")


def _reason(exc: BaseException, secrets: list[str]) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = _ADBC_LIBPQ_PREFIX.sub("", lines[0]) if lines else type(exc).__name__
    return redact(first, secrets)


def open_source(
    name: str,
    spec: ConnectorSpec,
    root: Path,
    secrets: list[str],
    retry: Retry | None = None,
) -> Source:
    """Create the read-only engine for connector ``name`` (does not connect yet)."""
    where = f"connectors/{name}.yaml"
    if spec.kind != "sql":
        raise UsageError(
            f"{where}: connector {name!r} is kind {spec.kind}: this command works on database "
            f"connectors; it is not supported for kind {spec.kind} yet",
            hint="'etl check' and 'etl preview' read every kind (docs/sources.md)",
        )
    dialect = get_dialect(spec.sql_dialect)
    try:
        url = dialect.url(spec, root)
    except DriverMissing as exc:
        raise SourceError(f"{where}: {exc.message}", hint=exc.hint) from None
    options = dialect.engine_options(spec)
    try:
        engine = _create_engine(url, dialect.dbapi_connect_args(spec, url), options)
    except ImportError as exc:
        missing = missing_driver(exc)
        if missing is None:
            raise SourceError(
                f"{where}: cannot set up a {spec.dialect} connection: {redact(str(exc), secrets)}"
            ) from None
        raise SourceError(
            f"{where}: cannot connect to {dialect.product}: {missing[0]}", hint=missing[1]
        ) from None
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise SourceError(
            f"{where}: cannot set up a {spec.dialect} connection: {redact(str(exc), secrets)}"
        ) from None
    except Exception as exc:  # e.g. an Oracle client library that fails to load
        if not options:
            raise
        log.warning("%s: %s; falling back to the driver's defaults", where, exc)
        engine = _create_engine(url, dialect.dbapi_connect_args(spec, url), {})
    source = Source(
        name=name,
        spec=spec,
        dialect=dialect,
        engine=engine,
        secrets=secrets,
        retry=retry or DEFAULT_RETRY,
    )
    wire(engine, dialect, source)
    return source


def open_connector(project: Project, name: str, retry: Retry | None = None) -> Source:
    """The source of connector ``name`` of the project (its ``${ENV}`` variables must be set)."""
    spec = connector_spec(project, name)
    return open_source(name, spec, project.root, project.secrets, retry=retry)


def connector_spec(project: Project, name: str) -> ConnectorSpec:
    """Connector ``name`` of the project, of any kind; a ConfigError when it does not exist,
    has errors or reads an ``${ENV}`` variable that is not set."""
    spec = project.connectors.get(name)
    where = f"connectors/{name}.yaml"
    own = [p for p in project.problems if p.startswith((f"{where}:", f"connectors/{name}.yml:"))]
    if spec is None and own:  # the file exists but has errors (e.g. a refused option)
        raise ConfigError(own)
    if spec is None:
        close = difflib.get_close_matches(name, list(project.connectors), n=1)
        listing = ", ".join(sorted(project.connectors)) or "none"
        raise ConfigError(
            f"connector {name!r} does not exist in {project.root / 'connectors'}",
            hint=(f"did you mean {close[0]!r}? " if close else "") + f"connectors: {listing}",
        )
    doc = project.files.get(f"connectors/{name}")
    if doc is not None and doc.missing_env:
        raise ConfigError(
            [
                f"{doc.where(loc)}: environment variable {var} is not set"
                for loc, var in doc.missing_env
            ],
            hint="export the variables or use ${VAR:-default}",
        )
    return spec


def _create_engine(url: sa.URL, connect_args: dict[str, Any], options: dict[str, Any]) -> Engine:
    return sa.create_engine(
        url,
        connect_args=connect_args,
        pool_pre_ping=True,
        pool_size=1,
        max_overflow=1,
        **options,
    )


def wire(engine: Engine, dialect: SourceDialect, source: Source | None = None) -> None:
    """Attach the read-only session setup, the per-transaction statement and the guard."""
    event.listen(engine, "connect", lambda dbapi_conn, _record: dialect.on_connect(dbapi_conn))
    if dialect.begin_statement is not None:
        statement = dialect.begin_statement

        def begin(conn: Connection) -> None:
            # below the guard on purpose: the dialect's own fixed statement, not a query
            cursor = conn.connection.cursor()
            try:
                cursor.execute(statement)
            finally:
                cursor.close()

        event.listen(engine, "begin", begin)
    event.listen(engine, "before_cursor_execute", _guard)
    if source is not None:

        def on_error(context: sa.engine.ExceptionContext) -> None:
            if dialect.classify(context.original_exception) == "permission":
                raise source.denied(context.original_exception)

        event.listen(engine, "handle_error", on_error)
