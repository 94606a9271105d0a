"""Database code lives in etl/sources/sql/dialects/ (the sources) and etl/store/backends.py (the store): no
other module branches on a dialect or backend name, it asks the dialect or the backend.

The check reads every module's syntax tree for a comparison (``==``, ``!=``, ``in``, ``match``,
``startswith``) of a database name such as "mssql" or "postgresql" with something that names a
dialect, a backend, a driver or a ``.name``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from etl.config import readonly
from etl.config.models import DIALECTS
from etl.sources.sql.dialects import get_dialect, sqlglot_name
from etl.store.backends import (
    GenericBackend,
    PostgresBackend,
    SqliteBackend,
    backend_for,
)

ETL = Path(__file__).resolve().parents[1] / "etl"


def _file(module: str) -> Path:
    """A module's file (a package: its folder), found by its dotted name so that the check
    follows a module that moves."""
    found = Path(importlib.import_module(module).__file__ or "")
    return found.parent if found.name == "__init__.py" else found


# Where database names may be compared: the dialects and the store backends.
HOMES = [_file("etl.sources.sql.dialects"), _file("etl.store.backends")]

# The configuration layer keeps the few name comparisons it needs. It checks a project while
# loading it, from the files alone (`etl validate` refuses a dangerous option before any source is
# opened), and it sits below the dialects, which import its models (ConnectorSpec): asking a
# dialect from here would be an upward import and a cycle (config -> dialects -> config), which
# the layer contracts in pyproject.toml forbid.
# - etl/config/readonly.py, the read-only allowlists: its tables are keyed by dialect (options,
#   pure functions, sqlglot names); it compares names for three rules only, SQL Server's
#   case-insensitive option keywords and, on MySQL/MariaDB, the executable comments, hints and
#   user variables that sqlglot reads differently from the server. Moving the allowlists into
#   the dialect classes would need the config to import the dialects (above).
# - etl/config/models.py, the connector schema: which keys locate a database (`path` for SQLite,
#   `service_name` or `sid` for Oracle, `host` and `database` otherwise).
# Each entry must still need its exemption (see the test below).
CONFIG_LAYER = [_file("etl.config.models"), _file("etl.config.readonly")]

NAMES = frozenset(
    {"mssql", "postgresql", "postgres", "sqlite", "mysql", "mariadb", "oracle", "tsql"}
)
WHAT = ("dialect", "backend", "driver")


def _database_names(node: ast.AST) -> set[str]:
    """The database names a constant (or a tuple, list or set of constants) spells."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        head = node.value.split("+", 1)[0].lower()
        return {head} & NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(set(), *(_database_names(e) for e in node.elts))
    return set()


def _names_a_database(node: ast.AST) -> bool:
    """Whether an expression stands for a dialect or backend: it mentions a dialect, backend or
    driver (``conn.dialect.name``, ``self.dialect``, ``url.get_backend_name()``) or a ``.name``."""
    for part in ast.walk(node):
        words = []
        if isinstance(part, ast.Name):
            words.append(part.id)
        elif isinstance(part, ast.Attribute):
            words.append(part.attr)
            if part.attr == "name":
                return True
        if any(w in word.lower() for word in words for w in WHAT):
            return True
    return False


def name_comparisons(source: str) -> list[tuple[int, str]]:
    """(line, code) of every comparison of a dialect or backend with a database name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_database_names(o) for o in operands) and any(
                _names_a_database(o) for o in operands if not _database_names(o)
            ):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            affix = node.func.attr in ("startswith", "endswith") and bool(node.args)
            if affix and _database_names(node.args[0]) and _names_a_database(node.func.value):
                found.append((node.lineno, ast.unparse(node)))
        elif isinstance(node, ast.Match) and _names_a_database(node.subject):
            for case in node.cases:
                for pattern in ast.walk(case.pattern):
                    if isinstance(pattern, ast.MatchValue) and _database_names(pattern.value):
                        found.append((pattern.lineno, ast.unparse(node.subject)))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in ETL.rglob("*.py") if "templates" not in p.parts)


def _where(path: Path) -> str:
    return path.relative_to(ETL).as_posix()


def _at_home(path: Path) -> bool:
    return any(path == home or home in path.parents for home in HOMES)


@pytest.mark.parametrize(
    "code",
    [
        'if dialect.name == "mssql": pass',
        'x = conn.dialect.name != "postgresql"',
        'ok = url.get_backend_name() in ("sqlite", "postgresql")',
        'ok = self.dialect == "oracle"',
        'ok = "mariadb" == spec.dialect',
        'ok = store.url.drivername == "postgresql+psycopg"',
        'ok = backend in {"mysql", "mariadb"}',
        'ok = engine.url.get_backend_name().startswith("postgres")',
        'match conn.dialect.name:\n    case "mysql":\n        pass',
    ],
)
def test_the_check_finds_a_name_comparison(code: str) -> None:
    assert name_comparisons(code), code


@pytest.mark.parametrize(
    "code",
    [
        'system = "x" if extra == "mssql" else ""',  # a pip extra, not a dialect
        'ok = dialect.odbc_typed_times and kind == "date"',
        'uri = f"postgresql://{host}"',
        'schemas = ["mysql", "sys"]',
    ],
)
def test_the_check_leaves_other_comparisons_alone(code: str) -> None:
    assert name_comparisons(code) == []


def test_no_module_outside_the_dialects_and_store_backends_compares_a_database_name() -> None:
    offenders = [
        f"etl/{_where(path)}:{line}: {code}"
        for path in _modules()
        if not _at_home(path) and path not in CONFIG_LAYER
        for line, code in name_comparisons(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "ask the dialect or the store backend instead:\n" + "\n".join(offenders)


@pytest.mark.parametrize("path", CONFIG_LAYER, ids=_where)
def test_each_config_layer_exemption_is_still_needed(path: Path) -> None:
    assert name_comparisons(path.read_text(encoding="utf-8")), (
        f"etl/{_where(path)} no longer compares a database name: drop it from CONFIG_LAYER"
    )


def test_every_dialect_declares_its_sqlglot_dialect_and_the_guard_agrees() -> None:
    import sqlglot

    for name in DIALECTS:
        declared = get_dialect(name).sqlglot_dialect
        assert sqlglot.Dialect.get_or_raise(declared) is not None
        assert sqlglot_name(name) == declared
        # the custom-query check (config layer, below the dialects) keeps its own short map
        assert readonly.SQLGLOT.get(name, name) == declared, name
    assert sqlglot_name(None) is None and sqlglot_name("duckdb") == "duckdb"


def test_the_store_chooses_one_backend_per_url() -> None:
    assert isinstance(backend_for("sqlite"), SqliteBackend)
    assert isinstance(backend_for("postgresql"), PostgresBackend)
    assert isinstance(backend_for("mysql"), GenericBackend)
    assert backend_for("sqlite").naive_utc and not backend_for("postgresql").naive_utc
