"""The layer rules that import-linter cannot state (its contracts are in pyproject.toml).

* Only the CLI and the commands print: every other module returns data or logs.
* The fold and the shapes use no pyarrow filesystem (import-linter forbids only whole external
  packages, and they do need pyarrow itself).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import etl

PACKAGE = Path(etl.__file__).parent

#: the modules that may write to stdout/stderr (a package: everything in it)
PRINTERS = (
    "etl.cli",
    "etl.commands.check",
    "etl.commands.discover",
    "etl.commands.preview",
    "etl.commands.report",
    "etl.commands.demo",
    "etl.commands.init",
)
#: the modules that must not open files or object stores through pyarrow
PURE = ("etl.pipeline.fold", "etl.shapes")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> list[tuple[str, ast.Module]]:
    return [
        (module_name(path), ast.parse(path.read_text(encoding="utf-8"), str(path)))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def prints(tree: ast.Module) -> list[int]:
    """Lines that call print(), click.echo/secho, or write to sys.stdout/sys.stderr."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else ""
        if isinstance(func, ast.Attribute):
            name = func.attr
            if name == "write" and isinstance(func.value, ast.Attribute):
                name = func.value.attr  # sys.stdout.write -> "stdout"
        if name in ("print", "echo", "secho", "stdout", "stderr"):
            found.append(node.lineno)
    return found


def test_only_the_cli_and_the_commands_print() -> None:
    offenders = [
        f"{name}: line {line}"
        for name, tree in modules()
        if not any(name == p or name.startswith(p + ".") for p in PRINTERS)
        for line in prints(tree)
    ]
    assert offenders == [], "print or echo below the commands (return text or log instead)"


def test_the_printers_exist() -> None:
    """PRINTERS names real modules (a rename would silently widen the rule above)."""
    for name in PRINTERS:
        assert importlib.util.find_spec(name) is not None, name


def test_the_fold_and_the_shapes_use_no_pyarrow_filesystem() -> None:
    for name, tree in modules():
        if name not in PURE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not [a for a in node.names if a.name.startswith("pyarrow.fs")], name
            elif isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("pyarrow.fs"), name
                if node.module == "pyarrow":
                    assert "fs" not in [a.name for a in node.names], name
    assert {name for name, _ in modules()} >= set(PURE)
