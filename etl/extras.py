"""Which pip extra installs which database driver (``[project.optional-dependencies]``).

booking-etl's core reads SQLite only; each database's drivers come with an extra, so that a
missing driver can be reported as the one command that installs it.
"""

from __future__ import annotations

# top-level module -> the extra of pyproject.toml that installs it
EXTRAS: dict[str, str] = {
    "psycopg": "postgresql",
    "adbc_driver_postgresql": "postgresql",
    "adbc_driver_manager": "postgresql",
    "pymysql": "mysql",
    "connectorx": "mysql",
    "pyodbc": "mssql",
    "arrow_odbc": "mssql",
    "oracledb": "oracle",
}


def extra_for(module: str | None) -> str | None:
    """The extra that installs ``module`` (a dotted name is fine), None for other modules."""
    if not module:
        return None
    return EXTRAS.get(module.split(".", 1)[0])


def install_command(extra: str) -> str:
    """``pip install 'booking-etl[EXTRA]'``."""
    return f"pip install 'booking-etl[{extra}]'"


def missing_driver(exc: ImportError) -> tuple[str, str] | None:
    """(message, hint) for an ImportError of a driver module; None when it is not one.

    A module that is not installed names its extra; one that is installed but cannot load (pyodbc
    without the system's unixODBC) says so with the loader's reason.
    """
    module = exc.name
    extra = extra_for(module)
    if module is None or extra is None:
        return None
    top = module.split(".", 1)[0]
    if not isinstance(exc, ModuleNotFoundError):
        system = " (pyodbc needs unixODBC: apt-get install unixodbc)" if extra == "mssql" else ""
        return (
            f"the database driver {top!r} is installed but cannot be loaded: {exc}",
            f"install what it needs from the system{system}, or reinstall it: "
            f"{install_command(extra)}",
        )
    return (
        f"the database driver {top!r} is not installed",
        f"install it with: {install_command(extra)} (or 'booking-etl[all]' for every database)",
    )
