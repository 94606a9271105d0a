"""Database drivers are pip extras: a missing one is a clear error naming the extra to install.

Each case runs the real ``etl`` in a fresh interpreter in which the driver cannot be imported
(``sys.modules[name] = None`` before etl is imported: ``import name`` then raises
ModuleNotFoundError, exactly as on a machine where the extra was not installed).
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from etl.extras import EXTRAS, install_command
from tests.conftest import MARIADB_URL, POSTGRES_URL, server_or_skip

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def etl_without(module: str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``etl -p ROOT ARGS`` in a new interpreter where ``module`` cannot be imported."""
    code = (
        "import sys\n"
        f"sys.modules[{module!r}] = None\n"
        f"sys.argv = ['etl', '-p', {str(root)!r}, *{list(args)!r}]\n"
        "from etl.cli import entry\n"
        "entry()\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def project(root: Path, connector: str, store: str = "sqlite:///store.sqlite") -> Path:
    """A project with connector ``plant`` and a bookings job ``bookings`` on it."""
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "etl.yaml").write_text(f"store: '{store}'\nparquet: null\n")
    (root / "connectors" / "plant.yaml").write_text(connector)
    (root / "mappings" / "bookings.yaml").write_text(
        "structure: bookings\nsource: {table: bookings}\n"
        "columns: {timestamp: ts, order_code: order_no, machine_code: machine, event: event}\n"
        "events: {START: [10], END: [20]}\n"
    )
    (root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nstart_from: 2026-01-01\n"
    )
    return root


SERVER = "host: 127.0.0.1\ndatabase: plant\nuser: etl\ntimezone: Europe/Berlin\n"


@pytest.mark.parametrize(
    ("dialect", "module", "extra"),
    [
        ("postgresql", "psycopg", "postgresql"),
        ("mysql", "pymysql", "mysql"),
        ("mariadb", "pymysql", "mysql"),
        ("mssql", "pyodbc", "mssql"),
        ("oracle", "oracledb", "oracle"),
    ],
)
def test_a_missing_source_driver_names_its_extra(
    tmp_path: Path, dialect: str, module: str, extra: str
) -> None:
    connector = f"dialect: {dialect}\n" + (
        SERVER.replace("database: plant", "service_name: PLANT") if dialect == "oracle" else SERVER
    )
    root = project(tmp_path / "p", connector)
    for command in (["run", "bookings"], ["check", "plant"]):
        result = etl_without(module, root, *command)
        assert result.returncode == 3, (command, result.stdout, result.stderr)
        assert result.stderr.startswith("error: connectors/plant.yaml: "), result.stderr
        assert f"the database driver {module!r} is not installed" in result.stderr, result.stderr
        assert install_command(extra) in result.stderr
        assert "Traceback" not in result.stderr


def test_a_url_through_pyodbc_names_the_mssql_extra(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        "dialect: mariadb\nurl: mysql+pyodbc://etl@127.0.0.1/plant?driver=x\n",
    )
    result = etl_without("pyodbc", root, "run", "bookings")
    assert result.returncode == 3, result.stderr
    assert "the database driver 'pyodbc' is not installed" in result.stderr
    assert install_command("mssql") in result.stderr


def test_a_postgresql_store_without_its_driver_names_the_extra(tmp_path: Path) -> None:
    root = project(
        tmp_path / "p",
        "dialect: sqlite\npath: plant.sqlite\ntimezone: Europe/Berlin\n",
        store="postgresql+psycopg://etl@127.0.0.1:5432/store",
    )
    result = etl_without("psycopg", root, "status")
    assert result.returncode == 6, result.stderr
    assert "store: cannot use postgresql+psycopg://etl@127.0.0.1:5432/store" in result.stderr
    assert "the database driver 'psycopg' is not installed" in result.stderr
    assert install_command("postgresql") in result.stderr


@pytest.mark.parametrize(
    ("url", "module", "extra"),
    [
        pytest.param(
            POSTGRES_URL, "adbc_driver_postgresql", "postgresql", marks=pytest.mark.postgres
        ),
        pytest.param(MARIADB_URL, "connectorx", "mysql", marks=pytest.mark.mariadb),
    ],
    ids=["adbc", "connectorx"],
)
def test_fetch_arrow_without_its_driver_names_the_extra(
    tmp_path: Path, url: str, module: str, extra: str
) -> None:
    """On the real server: the DBAPI driver connects, the Arrow path's driver is missing."""
    server = server_or_skip(url, module)
    dialect = "postgresql" if server.get_backend_name() == "postgresql" else "mariadb"
    rendered = server.render_as_string(hide_password=False)
    root = project(tmp_path / "p", f"dialect: {dialect}\nurl: '{rendered}'\nfetch: arrow\n")
    result = etl_without(module, root, "check", "plant")
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert f"fetch: arrow, but {PATHS_PACKAGE[module]} not installed" in result.stderr
    assert install_command(extra) in result.stdout + result.stderr


PATHS_PACKAGE = {"adbc_driver_postgresql": "adbc-driver-postgresql", "connectorx": "connectorx"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_every_driver_module_belongs_to_its_extra_in_pyproject() -> None:
    extras = PYPROJECT["optional-dependencies"]
    distributions = importlib.metadata.packages_distributions()
    for module, extra in EXTRAS.items():
        listed = _names(extras[extra])
        # and what they depend on (adbc-driver-manager comes with adbc-driver-postgresql)
        for name in list(listed):
            listed |= _names(importlib.metadata.requires(name) or [])
        names = {d.lower() for d in distributions[module]}
        assert names & listed, f"{module} ({names}) is not in the {extra!r} extra"
    assert {"postgresql", "mysql", "mssql", "oracle", "all"} <= set(extras)
    assert extras["all"] == ["booking-etl[postgresql,mysql,mssql,oracle]"]
    core = _names(PYPROJECT["dependencies"])
    for drivers in ("postgresql", "mysql", "mssql", "oracle"):
        assert not core & _names(extras[drivers]), f"{drivers} drivers are in the core"
