"""A read-only connection to one source database: engine, session setup, statement guard, clock."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from .config import ConnectorSpec
from .dialects import SourceDialect, get_dialect
from .errors import SourceError
from .redact import redact

log = logging.getLogger(__name__)

# What may reach a source database: queries only. Comments and whitespace first are skipped.
_ALLOWED = re.compile(
    r"^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(SELECT|WITH|SHOW|VALUES|EXPLAIN|DESCRIBE|PRAGMA\s+(?:\w+\.)?\w+\s*(?:\(|;|$))",
    re.IGNORECASE | re.DOTALL,
)


class ReadOnlyViolation(SourceError):
    """A statement other than a query was about to be sent to a source."""

    exit_code = 2


def _guard(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
    if not _ALLOWED.match(statement) or re.search(
        r"\bFOR\s+UPDATE\b|\bINTO\s+(?:OUTFILE|DUMPFILE)\b", statement, re.IGNORECASE
    ):
        first = statement.strip().split(None, 1)[0] if statement.strip() else "(empty)"
        raise ReadOnlyViolation(
            f"refused to send a {first.upper()} statement to a source database: "
            "booking-etl only reads from sources"
        )


@dataclass
class Source:
    """An open source database (read-only)."""

    name: str
    spec: ConnectorSpec
    dialect: SourceDialect
    engine: Engine
    secrets: list[str]

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection; connection failures become SourceError with the password hidden."""
        try:
            conn = self.engine.connect()
        except sa.exc.DBAPIError as exc:
            raise SourceError(
                f"connectors/{self.name}.yaml: cannot connect to {self.display}: "
                f"{_reason(exc, self.secrets)}",
                hint="check host, port, user and password; run 'etl check' for details",
            ) from None
        try:
            yield conn
        finally:
            conn.close()

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
        self.engine.dispose()


def _reason(exc: sa.exc.DBAPIError, secrets: list[str]) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return redact(text.strip().splitlines()[0] if text.strip() else type(exc).__name__, secrets)


def open_source(name: str, spec: ConnectorSpec, root: Path, secrets: list[str]) -> Source:
    """Create the read-only engine for connector ``name`` (does not connect yet)."""
    dialect = get_dialect(spec.dialect)
    url = dialect.url(spec, root)
    try:
        engine = sa.create_engine(
            url,
            connect_args=dialect.connect_args(spec),
            pool_pre_ping=True,
            pool_size=1,
            max_overflow=1,
        )
    except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        raise SourceError(
            f"connectors/{name}.yaml: cannot set up a {spec.dialect} connection: "
            f"{redact(str(exc), secrets)}"
        ) from None
    event.listen(engine, "connect", lambda dbapi_conn, _record: dialect.on_connect(dbapi_conn))
    event.listen(engine, "before_cursor_execute", _guard)
    return Source(name=name, spec=spec, dialect=dialect, engine=engine, secrets=secrets)
