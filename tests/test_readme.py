"""The README documents every config key (the reference is checked against the models)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from etl.config import (
    BookingColumns,
    ColumnSpec,
    ConnectorSpec,
    Defaults,
    DstPolicy,
    EventCodes,
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

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()

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
    BookingColumns,
    OrderColumns,
    JobSpec,
    SchedulerSpec,
    MetricsSpec,
    S3Spec,
    LockSpec,
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_config_key_is_in_the_readme(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        key = field.alias or name
        assert re.search(rf"`(?:[\w.]+\.)?{re.escape(key)}`", README), (
            f"{model.__name__}.{key} is not documented"
        )


def test_readme_shows_the_two_first_commands_on_its_first_screen() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "make demo" in first_screen and "make test" in first_screen


def test_lock_expiry_is_documented_as_the_lease_not_a_fixed_time() -> None:
    root = Path(__file__).resolve().parents[1]
    for doc in (root / "README.md", root / "docs" / "deployment.md"):
        text = " ".join(doc.read_text().split())
        stale = re.findall(r"[^.]*expires? after (?:two|2) hours?[^.]*", text)
        assert not stale, (
            f"{doc.name}: the lock expires one lock.lease after its heartbeat: {stale}"
        )
    default = LockSpec().lease
    shown = re.findall(r"lock expires 2026-11-22T(\d\d):(\d\d)", (root / "README.md").read_text())
    for hour, minute in shown:  # the daemon example: skipped at 06:51, lock taken at 06:51
        assert (int(hour) * 60 + int(minute)) - (6 * 60 + 51) == default.total_seconds() // 60


def test_the_byte_range_caveat_does_not_promise_a_clean_failure() -> None:
    text = " ".join(
        (Path(__file__).resolve().parents[1] / "docs" / "deployment.md").read_text().split()
    )
    assert "never a mix of rows" not in text
    assert "may also misread" in text and "retry" in text
