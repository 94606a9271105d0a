"""etl.config.durations: ``90s``, ``5m``, ``2h``, ``14d``, ``1w`` in config files and on the command line."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etl.config.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("14d", timedelta(days=14)),
        ("1w", timedelta(weeks=1)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1h30m15s", timedelta(hours=1, minutes=30, seconds=15)),
        ("1.5h", timedelta(minutes=90)),
        (" 5 m ", timedelta(minutes=5)),
        ("2H", timedelta(hours=2)),
        ("0s", timedelta(0)),
        (90, timedelta(seconds=90)),
        (0.5, timedelta(milliseconds=500)),
        (timedelta(hours=3), timedelta(hours=3)),
    ],
)
def test_parse(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    "value", ["", "h", "5", "5x", "-5m", "1d-2h", "1.h", "two hours", -1, True, None, [5]]
)
def test_parse_rejects_what_is_not_a_duration(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=1, hours=2), "1d2h"),
        (timedelta(weeks=2), "14d"),
        (timedelta(days=3, hours=4, minutes=5, seconds=6), "3d4h5m6s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(minutes=1, milliseconds=250), "1m0.25s"),
        (timedelta(milliseconds=500), "0.5s"),
    ],
)
def test_format(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=10 * 365 * 86400))
def test_format_then_parse_round_trips_whole_seconds(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta
