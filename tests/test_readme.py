"""The README and docs/: every config key documented (checked against the models), every link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from etl.config.models import (
    BookingColumns,
    ColumnSpec,
    ConnectorSpec,
    Defaults,
    DstPolicy,
    EventCodes,
    FieldSpec,
    FilterSpec,
    FoldSpec,
    JobSpec,
    LockSpec,
    MappingSpec,
    MetricsSpec,
    OrderColumns,
    ProjectSpec,
    S3Spec,
    SchedulerSpec,
    SourceSpec,
)
from etl.sources.files.spec import FilesSpec, FileTable, S3Drop
from etl.sources.http.spec import Auth, Endpoint, HttpSpec, Paging, WindowParams

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
PAGES = [
    ROOT / "README.md",
    ROOT / "BENCHMARKS.md",
    ROOT / "CHANGELOG.md",
    *sorted((ROOT / "docs").glob("*.md")),
]

MODELS = [
    ProjectSpec,
    Defaults,
    ConnectorSpec,
    MappingSpec,
    SourceSpec,
    EventCodes,
    DstPolicy,
    FoldSpec,
    ColumnSpec,
    FilterSpec,
    FieldSpec,
    BookingColumns,
    OrderColumns,
    JobSpec,
    SchedulerSpec,
    MetricsSpec,
    S3Spec,
    LockSpec,
    FilesSpec,
    FileTable,
    S3Drop,
    HttpSpec,
    Auth,
    Endpoint,
    Paging,
    WindowParams,
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_config_key_is_in_the_configuration_reference(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        key = field.alias or name
        assert re.search(rf"`(?:[\w.]+\.)?{re.escape(key)}`", CONFIGURATION), (
            f"{model.__name__}.{key} is not documented in docs/configuration.md"
        )


def test_readme_shows_the_two_first_commands_on_its_first_screen() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "make demo" in first_screen and "make test" in first_screen


def test_readme_is_short_and_has_install_and_quickstart() -> None:
    lines = README.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; the reference belongs in docs/"
    assert "pip install './booking-etl[" in README and "pip install -e '.[" in README
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    for command in ("etl init", "etl discover", "etl preview", "etl run", "etl status"):
        assert f"$ {command}" in quickstart, f"the quickstart does not show {command}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = re.match(r"#+ (.*)", line)
        if heading and not fenced:
            anchors.add(_slug(heading.group(1)))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: link to {target}: no such file"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{page.name}: link to {target}: no such heading"


def test_lock_expiry_is_documented_as_the_lease_not_a_fixed_time() -> None:
    root = Path(__file__).resolve().parents[1]
    for doc in PAGES:
        text = " ".join(doc.read_text().split())
        stale = re.findall(r"[^.]*expires? after (?:two|2) hours?[^.]*", text)
        assert not stale, (
            f"{doc.name}: the lock expires one lock.lease after its heartbeat: {stale}"
        )
    default = LockSpec().lease
    shown = re.findall(
        r"lock expires 2026-11-22T(\d\d):(\d\d)", (root / "docs" / "operations.md").read_text()
    )
    assert shown, "docs/operations.md no longer shows the daemon's lock collision"
    for hour, minute in shown:  # the daemon example: skipped at 06:51, lock taken at 06:51
        assert (int(hour) * 60 + int(minute)) - (6 * 60 + 51) == default.total_seconds() // 60


def test_the_byte_range_caveat_does_not_promise_a_clean_failure() -> None:
    text = " ".join(
        (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text().split()
    )
    assert "never a mix of rows" not in text
    assert "may also misread" in text and "retry" in text
