"""``etl init``: write the small commented starter project (the package's templates)."""

from __future__ import annotations

import shutil
from pathlib import Path

from etl.errors import UsageError

TEMPLATES = Path(__file__).parents[1] / "templates" / "project"


def copy_templates(directory: Path, force: bool) -> tuple[list[str], list[str]]:
    """Copy the starter project into ``directory``; returns (written, kept) relative paths.

    Existing files are kept unless ``force``: a scaffold never overwrites someone's work silently.
    """
    written: list[str] = []
    kept: list[str] = []
    for source in sorted(TEMPLATES.rglob("*")):
        if source.is_dir() or source.name.startswith("."):
            continue
        relative = source.relative_to(TEMPLATES)
        target = directory / relative
        if target.exists() and not force:
            kept.append(str(relative))
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
        written.append(str(relative))
    return written, kept
