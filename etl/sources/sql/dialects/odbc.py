"""ODBC drivers: which are installed, which one a connector uses, and why none fits.

pyodbc loads a driver by the name unixODBC (Linux, macOS) or the Windows ODBC manager lists for it
(``odbcinst -q -d``). SQL Server is reached through Microsoft's ODBC Driver 18 or 17, or FreeTDS, the
driver a Debian/Ubuntu user gets with ``apt-get install tdsodbc``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MSSQL_PREFERRED = (
    "ODBC Driver 18 for SQL Server",
    "ODBC Driver 17 for SQL Server",
    "FreeTDS",
)
MSSQL_INSTALL_HINT = (
    "install Microsoft's ODBC Driver 18 for SQL Server "
    "(https://learn.microsoft.com/sql/connect/odbc/linux-mac/installing-the-microsoft-odbc-driver-for-sql-server) "
    "or FreeTDS (Debian/Ubuntu: apt-get install unixodbc tdsodbc); `odbcinst -q -d` lists what is installed"
)


class DriverMissing(Exception):
    """No usable ODBC driver: the message says which were looked for and which are installed."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class DriverChoice:
    """The ODBC driver a connection uses and why."""

    name: str
    reason: str
    installed: tuple[str, ...]

    @property
    def is_freetds(self) -> bool:
        """FreeTDS takes other connection keywords than Microsoft's drivers."""
        return "freetds" in self.name.lower() or "libtdsodbc" in self.name.lower()


def installed_drivers() -> tuple[str, ...]:
    """The ODBC drivers the driver manager knows (empty without pyodbc or unixODBC)."""
    try:
        import pyodbc
    except ImportError:
        return ()
    try:
        return tuple(pyodbc.drivers())
    except Exception:  # a broken driver manager means: nothing usable
        return ()


def choose_driver(
    requested: str | None,
    installed: Sequence[str],
    preferred: Sequence[str] = MSSQL_PREFERRED,
    product: str = "SQL Server",
) -> DriverChoice:
    """The driver to use: the connector's ``driver`` if installed, else the first preferred one.

    Raises DriverMissing naming what was looked for and what is installed.
    """
    have = tuple(installed)
    listing = ", ".join(have) if have else "none (is unixODBC installed?)"
    if requested:
        if requested in have:
            return DriverChoice(requested, "named by the connector's 'driver'", have)
        if "/" in requested and Path(requested).is_file():
            return DriverChoice(requested, "a driver library path named by the connector", have)
        close = [d for d in have if d.lower() == requested.lower()]
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise DriverMissing(
            f"ODBC driver '{requested}' is not installed (installed ODBC drivers: {listing})",
            hint
            + (
                f"set 'driver' to one of them, or {MSSQL_INSTALL_HINT}"
                if have
                else MSSQL_INSTALL_HINT
            ),
        )
    for name in preferred:
        if name in have:
            skipped = [p for p in preferred[: preferred.index(name)]]
            why = "the first of " + ", ".join(preferred) + " installed"
            if skipped:
                why += f" ({', '.join(skipped)}: not installed)"
            return DriverChoice(name, why, have)
    others = [d for d in have if product.lower() in d.lower()]
    if others:
        return DriverChoice(others[0], f"the only {product} driver installed", have)
    raise DriverMissing(
        f"no {product} ODBC driver is installed (looked for {', '.join(preferred)}; "
        f"installed ODBC drivers: {listing})",
        MSSQL_INSTALL_HINT,
    )
