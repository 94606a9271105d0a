"""The shared interface every source database implements; quirks live in one module per database."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.engine import URL

from ..config import ConnectorSpec


class SourceDialect:
    """What booking-etl needs to know about one kind of source database.

    Subclasses set the class attributes and override the few methods where their database differs.
    The core never branches on a dialect name; it asks the dialect.
    """

    name: ClassVar[str]
    driver: ClassVar[str]  # SQLAlchemy "dialect+driver"
    default_port: ClassVar[int | None] = None
    read_only_session: ClassVar[bool] = False  # the session itself refuses writes

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
            query={k: str(v) for k, v in spec.options.items()},
        )

    def connect_args(self, spec: ConnectorSpec) -> dict[str, Any]:
        """Extra keyword arguments for the DBAPI ``connect()`` (timeouts, session options)."""
        return {}

    def on_connect(self, dbapi_connection: Any) -> None:
        """Make a fresh DBAPI connection read-only where the database offers it."""

    def clock(self) -> sa.ColumnElement[Any]:
        """A SELECT-able expression for the server's current time (compared in UTC)."""
        return sa.func.current_timestamp()

    def display_url(self, spec: ConnectorSpec, root: Path) -> str:
        """The connection URL with the password hidden, for messages."""
        return self.url(spec, root).render_as_string(hide_password=True)
