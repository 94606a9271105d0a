#!/usr/bin/env python3
"""Re-lay the flat ``etl/`` package out by role, so that ``ls etl/`` reads as the pipeline.

One-shot, replayable migration (issue 15, items 2 and 3). It is not part of the package; delete
this file once the layout has landed.

HOW TO RUN IT (on the merged main, with every branch that touches etl/ already merged)::

    git switch main && git status            # clean work tree: the script refuses otherwise
    .venv/bin/python tools/relayout.py       # --dry-run first to see the plan
    make lint && make test                   # ruff, mypy, lint-imports, the whole suite
    git add -A && git commit -m "etl/ laid out by role (tools/relayout.py)"

What it does, in order:

1. checks that the tree is the flat layout (it refuses to run twice: once ``etl/pipeline/`` or
   another target package exists, it stops) and that ``git status`` is clean;
2. turns every relative import inside ``etl/`` into an absolute one (``from .fold import fold``
   -> ``from etl.fold import fold``): the modules change depth, and in a nested package absolute
   imports read better than ``from ...config.models import``, and step 4 sees them all.
   Then it cuts the import cycles (``CUTS`` below): the definitions two layers share move down
   into a module both may import (cron expressions and job health out of the scheduler, S3 URI
   parsing out of the object store, the custom-query check out of the extraction, ``FoldPolicy``
   into the shapes, ``--since`` parsing into durations), and every import of a moved name,
   anywhere, follows it;
3. ``git mv``s each module of ``MOVES`` (below) to its new place; a module that does not exist
   is skipped (the modules of branches in flight, such as ``run``, ``structures``, ``reader``,
   ``audit``, ``readonly``, ``ahead``, ``monthly`` and a ``discover/`` package, are mapped in
   case they have landed); a top-level module the table does not know stays where it is, with a warning:
   add it to ``MOVES`` and run again on a fresh checkout if it belongs in a layer; every new
   package gets an ``__init__.py`` with a docstring (``PACKAGES``), stale ``__pycache__``
   folders under etl/ are removed;
4. rewrites every dotted module path ``etl.<old>`` to ``etl.<new>`` and every file path
   ``etl/<old>.py`` to ``etl/<new>.py`` in etl/, tests/, bench/, docs/, the top-level *.md,
   pyproject.toml and the Makefile: imports, ``import etl.x`` attribute chains, monkeypatch
   targets such as ``"etl.source.time.sleep"``, ``python -m etl....``, logger names derived from
   ``__name__``, prose, and paths joined under the package (``ETL / "fold.py"``);
5. splits ``from etl import store``-style imports of moved modules (``from etl.store import db
   as store``) and adjusts ``Path(__file__).parent`` in modules that moved deeper (the templates
   stay in ``etl/templates/``);
6. drops the "not laid out yet" note from docs/architecture.md (the rest of that page is
   written for the new layout: keep dotted names there out of step 4's way, e.g. no
   ``etl.store.db``, which would become ``etl.store.db.db``);
7. replaces the transitional ``[tool.importlinter]`` contracts of pyproject.toml (flat module
   names) with the contracts of the new layout (``CONTRACTS`` below);
8. runs ``ruff check --fix --select I`` and ``ruff format`` on the touched Python files.

It does not commit: review ``git status`` / ``git diff -M --stat`` and commit yourself. To undo
before committing: ``git reset --hard && git clean -fdx etl``.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

# old module (under etl.) -> new module (under etl.); a package moves with everything in it.
MOVES: dict[str, str] = {
    # config: the models, their YAML and the values they parse; imports nothing above it
    "config": "config.models",
    "yamlfile": "config.yamlfile",
    "durations": "config.durations",
    "cron": "config.cron",
    "locations": "config.locations",
    "readonly": "config.readonly",
    "queries": "config.queries",
    # sources: where rows come from (SQL today; http/ and files/ beside sql/ when they come)
    "source": "sources.sql.engine",
    "extract": "sources.sql.query",
    "fetch": "sources.sql.arrow",
    "dialects": "sources.sql.dialects",
    "reader": "sources.reader",
    # pipeline: one job run, read -> map -> fold -> diff -> commit -> publish
    "run": "pipeline.run",
    "structures": "pipeline.structures",
    "sync": "pipeline.sync",
    "backfill": "pipeline.backfill",
    "mapping": "pipeline.mapping",
    "fold": "pipeline.fold",
    "ahead": "pipeline.ahead",
    "monthly": "pipeline.monthly",
    # store: the runs, anomalies, watermarks, the job lock
    "store": "store.db",
    "bulk": "store.bulk",
    "store_backends": "store.backends",
    "audit": "store.audit",
    # outputs: the Parquet dataset, local or on S3
    "publish": "outputs.parquet",
    "objectstore": "outputs.objectstore",
    # ops: running jobs unattended
    "schedule": "ops.schedule",
    "health": "ops.health",
    "metrics": "ops.metrics",
    "logs": "ops.logs",
    "progress": "ops.progress",
    # commands: what the CLI calls beyond a plain run
    "check": "commands.check",
    "discover": "commands.discover",
    "preview": "commands.preview",
    "report": "commands.report",
    "demo": "commands.demo",
    "scaffold": "commands.init",
    # bottom helpers, importable from every layer
    "schema": "shapes",
}

# modules that stay at the top of etl/ (the thin face and the bottom helpers)
STAYS = {"__init__", "cli", "errors", "redact", "failpoints", "extras"}

# The import cycles, cut by moving the shared definitions down before the modules move: (from
# module, to module, names, docstring of a new module; None: append to the existing one). A name
# that does not exist is skipped (several are only on some branches).
CUTS: list[tuple[str, str, tuple[str, ...], str | None]] = [
    # config validated ``schedule:`` with the daemon's helpers (config <-> schedule)
    (
        "schedule",
        "cron",
        ("SECONDS_ENV", "cron_seconds", "cron_trigger"),
        "Cron expressions: the 5-field crontab syntax (6 fields, seconds first, for tests and demos).\n\n"
        "Below the config models, which validate ``schedule:`` with it, and the scheduler, which\n"
        "fires on it.",
    ),
    # metrics and the scheduler imported each other for job health (schedule <-> metrics)
    (
        "schedule",
        "health",
        (
            "schedule_zone",
            "job_trigger",
            "recent_fires",
            "Health",
            "job_health",
            "broken_health",
            "_stamp",
            "age",
        ),
        "Job health from the schedule and the store's summary: next run, last run's age, staleness.\n\n"
        "Read by ``etl status``, the metrics file and the daemon; it needs the cron triggers, not the\n"
        "daemon, so metrics and the scheduler both import it and not each other.",
    ),
    # config checked s3:// URIs with the object store (config -> objectstore -> pyarrow.fs)
    (
        "objectstore",
        "locations",
        (
            "CREDENTIAL_ENV",
            "SECRET_ENV",
            "_BUCKET",
            "_SCHEME",
            "S3Location",
            "check_endpoint",
            "credential_secrets",
        ),
        "Where the Parquet dataset goes: ``s3://bucket/prefix`` URIs, S3 endpoints, and the secret\n"
        "credential values in the environment.\n\n"
        "Plain parsing, no pyarrow: the config models validate with it; the object store (which\n"
        "opens the S3 filesystem) builds on it.",
    ),
    # the config parsed custom queries with the extraction module (config -> extract)
    (
        "extract",
        "queries",
        ("_SQLGLOT_DIALECT", "check_custom_query"),
        "A custom ``source.query``, parsed in the source's SQL dialect (sqlglot) to prove it is one\n"
        "read-only SELECT: checked when the project loads and again before it runs.",
    ),
    # the config built the fold's policy (config -> fold)
    ("fold", "schema", ("FoldPolicy",), None),
    # the backfill parsed --since with the report command (pipeline -> commands)
    ("report", "durations", ("When", "parse_when", "resolve_when", "EARLIEST", "LATEST"), None),
]

PACKAGES: dict[str, str] = {
    "config": "Configuration: the project's models and loader, YAML with line numbers, durations,\n"
    "cron expressions and output locations. Imports only the bottom helpers.",
    "sources": "Where rows come from. ``sql/`` reads database tables; HTTP APIs and dropped files\n"
    "will sit beside it.",
    "sources.sql": "SQL sources: the engine and its read-only guard (``engine``), the queries\n"
    "(``query``), the Arrow readers (``arrow``) and one small module per database (``dialects/``).",
    "pipeline": "One job run: read -> map -> fold (or dedupe) -> diff -> commit -> publish, and the\n"
    "backfill over a range. The fold is pure: no I/O.",
    "store": "The store: production runs, anomalies, watermarks, the run audit and the job lock\n"
    "(SQLite or PostgreSQL), written and read in bulk.",
    "outputs": "What a run publishes: the Parquet dataset, on a local disk or an S3 object store.",
    "ops": "Running jobs unattended: the scheduler daemon, job health, metrics, logs, progress.",
    "commands": "The commands beyond a plain run: check, discover, preview, report, demo, init.\n"
    "They return data and text; etl/cli.py prints.",
}

# the contracts of the new layout; they replace the [tool.importlinter] section of pyproject.toml
CONTRACTS = """\
# Layer contracts, checked by `lint-imports` in `make lint` (lazy imports inside functions count);
# docs/architecture.md explains the layers.
[tool.importlinter]
root_package = "etl"
include_external_packages = true

[[tool.importlinter.contracts]]
name = "no import cycles between the modules of a package, lazy imports included"
type = "acyclic_siblings"
ancestors = ["etl"]

[[tool.importlinter.contracts]]
name = "layers: the CLI on top, commands, ops, the pipeline, outputs, sources and store, config"
type = "layers"
layers = [
    "etl.cli",
    "etl.commands",
    "etl.ops",
    "etl.pipeline",
    "etl.outputs",
    "etl.sources | etl.store",
    "etl.config",
    "etl.shapes | etl.failpoints | etl.redact | (etl.extras)",
    "etl.errors",
]

[[tool.importlinter.contracts]]
name = "the fold and the shapes do no I/O: no SQLAlchemy, no source, store or output module"
type = "forbidden"
source_modules = ["etl.pipeline.fold", "etl.shapes"]
forbidden_modules = ["sqlalchemy", "etl.sources", "etl.store", "etl.outputs"]
"""

TARGETS = ("etl", "tests", "bench", "docs")  # folders whose text is rewritten
TOP_FILES = ("pyproject.toml", "Makefile")  # plus every top-level *.md
ARCHITECTURE = "docs/architecture.md"  # its flat-layout note is dropped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--allow-dirty", action="store_true", help="skip the clean-tree check")
    args = parser.parse_args()
    root: Path = args.root.resolve()
    pkg = root / "etl"

    done = [p for p in PACKAGES if "." not in p and (pkg / p / "__init__.py").is_file()]
    if done:
        print(f"refusing: {root} is already laid out (etl/{', etl/'.join(done)}/ exist).")
        print("Run this on a fresh checkout of the flat layout.")
        return 2
    if not args.allow_dirty and not args.dry_run:
        status = git(root, "status", "--porcelain", "--untracked-files=no")
        if status.strip():
            print("refusing: the work tree has changes (commit or stash them first):")
            print(status)
            return 2

    moves = plan(pkg)
    unknown = sorted(
        p.stem if p.is_file() else p.name
        for p in pkg.iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").is_file())
        and (p.stem if p.is_file() else p.name) not in MOVES | dict.fromkeys(STAYS)
    )
    clashes = [
        f"etl/{new_path(pkg, old, new)}"
        for old, new in moves.items()
        if (pkg / new_path(pkg, old, new)).exists()
    ] + [f"etl/{top}.py" for top in PACKAGES if "." not in top and top not in moves]
    clashes = [c for c in clashes if (pkg.parent / c).exists()]
    if clashes:
        print("refusing: these paths are in the way of the new layout (rename them, or map them")
        print("in MOVES): " + ", ".join(clashes))
        return 2
    for source, target, names, _ in CUTS:
        if (pkg / f"{source}.py").is_file():
            print(f"  cut: {', '.join(names)} from etl/{source}.py to etl/{target}.py")
            if target in MOVES:
                moves[target] = MOVES[target]
    for old, new in moves.items():
        print(f"  etl/{old_path(pkg, old)}  ->  etl/{new_path(pkg, old, new)}")
    for name in sorted(set(MOVES) - set(moves)):
        print(f"  (etl/{name}.py does not exist: skipped)")
    for name in unknown:
        print(f"WARNING: etl/{name} is not in MOVES: it stays at the top of etl/ (its imports are")
        print("         rewritten); add it to MOVES and re-run on a fresh checkout if it belongs")
        print("         in a layer")
    if args.dry_run:
        return 0

    ruff = shutil.which("ruff", path=str(root / ".venv" / "bin")) or shutil.which("ruff")
    if ruff is None:
        print("refusing: ruff is needed to tidy the imports (make .venv/.installed-stamp)")
        return 2
    # 2. absolute imports everywhere in etl/, resolved against the old locations
    for path in sorted(pkg.rglob("*.py")):
        absolutize(path, module_name(pkg, path))
    # 2b. the cycles: shared definitions move down (flat names still)
    symbols: dict[str, str] = {}  # etl.<module>.<name> -> etl.<module> it moved to
    cut_files: set[Path] = set()
    for source, target, names, doc in CUTS:
        moved = cut(pkg, source, target, names, doc)
        symbols |= {f"etl.{source}.{name}": f"etl.{target}" for name in moved}
        if moved:
            cut_files |= {pkg / f"{source}.py", pkg / f"{target}.py"}
            print(f"  cut etl/{source}.py -> etl/{target}.py: {', '.join(moved)}")
    for path in python_files(root):
        text = path.read_text(encoding="utf-8")
        new_text = split_symbol_imports(text, symbols)
        if new_text != text:
            path.write_text(new_text, encoding="utf-8")
    if cut_files:  # the imports the cut code took along and no longer needs
        subprocess.run(
            [ruff, "check", "--fix", "--select", "F401", "-q", *map(str, sorted(cut_files))],
            cwd=root,
        )
    for target in {t for _, t, _, _ in CUTS}:
        if (pkg / f"{target}.py").is_file():
            git(root, "add", f"etl/{target}.py")
    moves = plan(pkg)
    renames = module_renames(pkg, moves)
    packages = {old for old in renames if (root / Path(*old.split("."))).is_dir()}
    # 3. git mv
    for old, new in moves.items():
        src = pkg / old_path(pkg, old)
        dst = pkg / new_path(pkg, old, new)
        dst.parent.mkdir(parents=True, exist_ok=True)
        git(root, "mv", str(src.relative_to(root)), str(dst.relative_to(root)))
    for cache in sorted(pkg.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    for name, doc in PACKAGES.items():
        init = pkg / Path(*name.split(".")) / "__init__.py"
        if not init.exists():
            init.write_text(f'"""{doc}"""\n')
            git(root, "add", str(init.relative_to(root)))
    # 4. dotted names and file paths
    touched: list[Path] = []
    for path in text_files(root):
        text = path.read_text(encoding="utf-8")
        new = rewrite_text(text, renames, packages, symbols)
        if path.suffix == ".py":
            new = split_module_imports(new, renames)
        if new != text:
            path.write_text(new, encoding="utf-8")
        if path.suffix == ".py":
            touched.append(path)
    # 5. template paths one level up per level down
    for path in sorted(pkg.rglob("*.py")):
        name = module_name(pkg, path)
        text = path.read_text(encoding="utf-8")
        new = fix_file_paths(text, name, renames)
        if new != text:
            path.write_text(new, encoding="utf-8")
    # 6. the architecture page's note
    architecture = root / ARCHITECTURE
    if architecture.is_file():
        text = architecture.read_text(encoding="utf-8")
        note = re.compile(r"<!-- relayout:flat -->.*?<!-- /relayout:flat -->\n\n?", re.S)
        architecture.write_text(note.sub("", text), encoding="utf-8")
    # 7. the contracts
    pyproject = root / "pyproject.toml"
    pyproject.write_text(replace_contracts(pyproject.read_text(encoding="utf-8")))
    # 8. tidy
    files = [str(p) for p in touched if p.exists()] + [str(p) for p in pkg.rglob("*.py")]
    subprocess.run([ruff, "check", "--fix", "--select", "I", "-q", *files], cwd=root)
    subprocess.run([ruff, "format", "-q", *files], cwd=root, check=True)
    print(f"done: {len(moves)} modules moved. Next: make lint && make test, then commit.")
    return 0


# ------------------------------------------------------------------------------------ planning


def plan(pkg: Path) -> dict[str, str]:
    """The MOVES entries whose module (file or package) exists in ``pkg``."""
    return {
        old: new
        for old, new in MOVES.items()
        if (pkg / f"{old}.py").is_file() or (pkg / old / "__init__.py").is_file()
    }


def old_path(pkg: Path, old: str) -> str:
    return old if (pkg / old).is_dir() else f"{old}.py"


def new_path(pkg: Path, old: str, new: str) -> str:
    return new.replace(".", "/") + ("" if (pkg / old).is_dir() else ".py")


def module_name(pkg: Path, path: Path) -> str:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_renames(pkg: Path, moves: dict[str, str]) -> dict[str, str]:
    """``etl.<old>[.sub]`` -> ``etl.<new>[.sub]`` for every module that moves."""
    out: dict[str, str] = {}
    for old, new in moves.items():
        out[f"etl.{old}"] = f"etl.{new}"
        if (pkg / old).is_dir():
            for path in (pkg / old).rglob("*.py"):
                name = module_name(pkg, path)
                out[name] = f"etl.{new}" + name[len(f"etl.{old}") :]
    return out


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def text_files(root: Path) -> list[Path]:
    files = [root / name for name in TOP_FILES if (root / name).is_file()]
    files += sorted(root.glob("*.md"))
    for folder in TARGETS:
        if (root / folder).is_dir():
            files += sorted(
                p
                for p in (root / folder).rglob("*")
                if p.is_file()
                and p.suffix in (".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".cfg", ".ini")
                and "__pycache__" not in p.parts
            )
    return files


# ------------------------------------------------------------------------------------ rewriting


def absolutize(path: Path, name: str) -> None:
    """Rewrite the relative imports of module ``name`` (in ``path``) as absolute imports."""
    text = path.read_text(encoding="utf-8")
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # row, start, end, absolute module
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
        line = lines[node.lineno - 1]
        match = _RELATIVE.match(line, node.col_offset)
        if match is None:
            raise SystemExit(f"{path}:{node.lineno}: cannot parse the import: {line.strip()}")
        edits.append((node.lineno - 1, match.start(1), match.end(1), target))
    for row, start, end, target in sorted(edits, reverse=True):
        lines[row] = lines[row][:start] + target + lines[row][end:]
    path.write_text("".join(lines), encoding="utf-8")


_RELATIVE = re.compile(r"from\s+(\.+[\w.]*)\s+import")


def python_files(root: Path) -> list[Path]:
    return [p for p in text_files(root) if p.suffix == ".py"]


def defined_names(node: ast.stmt) -> set[str]:
    """The names a top-level statement binds (def, class, assignment)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}


def cut(pkg: Path, source: str, target: str, names: tuple[str, ...], doc: str | None) -> list[str]:
    """Move the top-level definitions ``names`` of etl/<source>.py to etl/<target>.py.

    The moved code takes the source's top-level imports along (the unused ones are removed
    afterwards); the source imports back what it still uses; imports of the moved names
    elsewhere are rewritten by ``split_symbol_imports``. Returns the names moved."""
    path = pkg / f"{source}.py"
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    blocks: list[tuple[int, int]] = []  # 0-based first row, end row (exclusive)
    moved: list[str] = []
    for node in tree.body:
        bound = defined_names(node) & set(names)
        if not bound:
            continue
        moved += sorted(bound, key=names.index)
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        while first > 0 and lines[first - 1].lstrip().startswith("#"):
            first -= 1  # the comment right above belongs to the definition
        blocks.append((first, node.end_lineno or node.lineno))
    if not moved:
        return []
    kept_defs = {n for node in tree.body for n in defined_names(node)} - set(moved)
    moved_text = ["".join(lines[a:b]).rstrip() + "\n" for a, b in blocks]
    used = {
        n.id for block in moved_text for n in ast.walk(ast.parse(block)) if isinstance(n, ast.Name)
    }
    if used & kept_defs:
        raise SystemExit(
            f"etl/{source}.py: the definitions that move to etl/{target}.py use "
            f"{', '.join(sorted(used & kept_defs))}, which stay: add them to CUTS"
        )
    imports = [
        "".join(lines[node.lineno - 1 : node.end_lineno])
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
        and not (isinstance(node, ast.ImportFrom) and node.module == f"etl.{target}")
    ]
    # the source without the moved blocks, importing back what it still uses
    rest = list(lines)
    for a, b in sorted(blocks, reverse=True):
        rest[a:b] = []
    rest_text = _drop_empty_sections("".join(rest))
    still = sorted(
        {n.id for n in ast.walk(ast.parse(rest_text)) if isinstance(n, ast.Name)} & set(moved)
    )
    if still:
        rest_text = _add_import(rest_text, f"from etl.{target} import {', '.join(still)}\n")
    path.write_text(rest_text, encoding="utf-8")
    # the target: a new module, or the moved code appended to the existing one
    dest = pkg / f"{target}.py"
    body, last_simple = "", False
    for block in moved_text:  # constants one after another, definitions two lines apart
        code = next(line for line in block.splitlines() if not line.startswith("#"))
        simple = not code.startswith(("def ", "class ", "@", "async "))
        body += ("" if not body else "\n" if simple and last_simple else "\n\n") + block
        last_simple = simple
    if dest.is_file():
        existing = dest.read_text(encoding="utf-8")
        existing = _add_import(existing, "".join(imports))
        dest.write_text(existing.rstrip() + "\n\n\n" + body, encoding="utf-8")
    else:
        header = f'"""{doc or target}\n"""\n\nfrom __future__ import annotations\n\n'
        dest.write_text(header + "".join(imports) + "\n\n" + body, encoding="utf-8")
    return moved


def _add_import(text: str, statement: str) -> str:
    """``statement`` inserted after the last top-level import of ``text``."""
    tree = ast.parse(text)
    last = max(
        (n.end_lineno or n.lineno for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)),
        default=0,
    )
    lines = text.splitlines(keepends=True)
    return "".join(lines[:last]) + statement + "".join(lines[last:])


_SECTION = re.compile(r"^# -{10,}.*\n(?:\s*\n)*(?=# -{10,}|\Z)", re.M)


def _drop_empty_sections(text: str) -> str:
    """Remove ``# ------ name`` section headers left with nothing under them."""
    return _SECTION.sub("", text).rstrip() + "\n"


def _comments(lines: list[str]) -> str:
    """The ``# ...`` comments of a (multi-line) statement, to keep on its rewritten first line."""
    found = [m.group(1).strip() for line in lines if (m := re.search(r"#(.*)$", line))]
    return ("  # " + "; ".join(found)) if found else ""


def split_symbol_imports(text: str, symbols: dict[str, str]) -> str:
    """``from etl.schedule import Daemon, job_health`` -> ``... import Daemon`` and
    ``from etl.health import job_health`` for names a cut moved."""
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        if not any(f"{node.module}.{a.name}" in symbols for a in node.names):
            continue
        groups: dict[str, list[ast.alias]] = {}
        for alias in node.names:
            module = symbols.get(f"{node.module}.{alias.name}", node.module)
            groups.setdefault(module, []).append(alias)
        indent = " " * node.col_offset
        statements = [
            f"{indent}from {module} import "
            + ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in aliases)
            for module, aliases in groups.items()
        ]
        end = node.end_lineno or node.lineno
        statements[0] += _comments(lines[node.lineno - 1 : end])
        edits.append((node.lineno - 1, end, "".join(f"{s}\n" for s in statements)))
    for start, end, block in sorted(edits, reverse=True):
        lines[start:end] = [block]
    return "".join(lines)


def rewrite_text(
    text: str, renames: dict[str, str], packages: set[str], symbols: dict[str, str]
) -> str:
    """Dotted module names and ``etl/...`` file paths, old -> new, in one pass each.

    ``symbols`` (``etl.schedule.job_health`` -> ``etl.health``) catches monkeypatch targets and
    the like that name a definition which a cut moved to another module."""
    dotted_map = dict(renames)
    for old, module in symbols.items():
        dotted_map[old] = renames.get(module, module) + "." + old.rsplit(".", 1)[1]
    olds = sorted(dotted_map, key=len, reverse=True)
    dotted = re.compile(r"(?<![\w.])(" + "|".join(re.escape(o) for o in olds) + r")(?![\w])")
    text = dotted.sub(lambda m: dotted_map[m.group(1)], text)
    # modules as etl/x.py, packages as etl/x/ (never etl/config/ for the module etl/config.py)
    paths = {o.replace(".", "/") + ("/" if o in packages else ".py"): n for o, n in renames.items()}
    slashed = re.compile(
        r"(?<![\w/.])("
        + "|".join(re.escape(o) for o in sorted(paths, key=len, reverse=True))
        + r")(?![\w])"
    )

    def path(match: re.Match[str]) -> str:
        old = match.group(1)
        return paths[old].replace(".", "/") + ("/" if old.endswith("/") else ".py")

    text = slashed.sub(path, text)
    # ETL / "structures.py" (a path joined under the package folder) -> ETL / "pipeline/structures.py"
    top = {o.split(".", 1)[1]: n.split(".", 1)[1] for o, n in renames.items() if o.count(".") == 1}
    joined = re.compile(
        r"(/\s*)([\"'])("
        + "|".join(re.escape(o) for o in sorted(top, key=len, reverse=True))
        + r")"
        r"(\.py)?\2"
    )

    def join(match: re.Match[str]) -> str:
        old, suffix = match.group(3), match.group(4)
        if suffix is None and f"etl.{old}" not in packages:
            return match.group(0)  # ETL / "store" is not the module etl/store.py
        new = top[old].replace(".", "/") + (suffix or "")
        return f"{match.group(1)}{match.group(2)}{new}{match.group(2)}"

    return joined.sub(join, text)


def split_module_imports(text: str, renames: dict[str, str]) -> str:
    """``from etl import store, errors`` -> ``from etl.store import db as store`` + the rest.

    Runs after ``rewrite_text``: the package in ``from X import`` is already a new name; a name
    imported from it that was a module which moved elsewhere gets its own import line.
    """
    back = {new: old for old, new in renames.items()}
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []  # first row, end row, replacement
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        if node.module != "etl" and not node.module.startswith("etl."):
            continue
        old_package = back.get(node.module, node.module)
        kept: list[ast.alias] = []
        moved: list[str] = []
        for alias in node.names:
            new = renames.get(f"{old_package}.{alias.name}")
            if new is None or new == f"{node.module}.{alias.name}":
                kept.append(alias)
                continue
            parent, leaf = new.rsplit(".", 1)
            bound = alias.asname or alias.name
            moved.append(f"from {parent} import {leaf}" + (f" as {bound}" if bound != leaf else ""))
        if not moved:
            continue
        out = []
        if kept:
            names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in kept)
            out.append(f"from {node.module} import {names}")
        indent = " " * node.col_offset
        statements = [f"{indent}{line}" for line in out + moved]
        end = node.end_lineno or node.lineno
        statements[0] += _comments(lines[node.lineno - 1 : end])
        edits.append((node.lineno - 1, end, "".join(f"{s}\n" for s in statements)))
    for start, end, block in sorted(edits, reverse=True):
        lines[start:end] = [block]
    return "".join(lines)


def fix_file_paths(text: str, name: str, renames: dict[str, str]) -> str:
    """``Path(__file__).parent`` -> ``.parents[k]`` in a module that moved ``k`` levels deeper."""
    old = next((o for o, n in renames.items() if n == name), None)
    if old is None:
        return text
    deeper = name.count(".") - old.count(".")
    if deeper <= 0:
        return text
    text = re.sub(
        r"Path\(__file__\)(\.resolve\(\))?\.parent\b(?!s)",
        lambda m: f"Path(__file__){m.group(1) or ''}.parents[{deeper}]",
        text,
    )
    for line in text.splitlines():
        if "__file__" in line and "Path(__file__)" not in line:
            print(f"WARNING: {name}: check this use of __file__ (the module moved): {line.strip()}")
    return text


def replace_contracts(text: str) -> str:
    """pyproject.toml with its [tool.importlinter] tables (and the comment lines right above
    them) replaced by CONTRACTS."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        header = re.match(r"^\[\[?([^\]]+)\]\]?\s*$", line)
        if header:
            skipping = header.group(1).startswith("tool.importlinter")
            if skipping:
                while kept and kept[-1].startswith("#"):
                    kept.pop()
        if not skipping:
            kept.append(line)
    return "".join(kept).rstrip("\n") + "\n\n" + CONTRACTS


if __name__ == "__main__":
    sys.exit(main())
