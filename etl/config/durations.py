"""Human durations in config files and on the command line: ``90s``, ``5m``, ``2h``, ``14d``, ``1w``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from etl.errors import UsageError

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")


def parse_duration(value: object) -> timedelta:
    """Parse ``'2h'``, ``'1d12h'``, ``'90s'``, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '5m', '2h' or '14d', got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text and _PART.sub("", text) == "":
            total = timedelta()
            for number, unit in _PART.findall(text):
                total += timedelta(**{_UNITS[unit]: float(number)})
            return total
    raise ValueError(f"expected a duration like '5m', '2h' or '14d', got {value!r}")


def format_duration(delta: timedelta) -> str:
    """Render a timedelta the way it would be written in a config file (``'1d2h'``, ``'1.5s'``;
    fractions of a second to the millisecond)."""
    millis = round(delta.total_seconds() * 1000)
    if millis == 0:
        return "0s"
    sign = "-" if millis < 0 else ""
    seconds, fraction = divmod(abs(millis), 1000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if fraction:
        parts.append(f"{seconds}.{fraction:03d}".rstrip("0") + "s")
    elif seconds:
        parts.append(f"{seconds}s")
    return sign + "".join(parts)


#: ``--since`` / ``--until``: an instant, or how long before "now".
When = datetime | timedelta


def parse_when(text: str, zone: ZoneInfo, option: str = "--since") -> When:
    """``2026-11-01``, ``2026-11-01T06:00`` (plant wall-clock in ``zone`` when naive; the first
    reading of a repeated hour), ``2026-11-01T05:00Z`` / ``+01:00``, ``now``, or a duration
    such as ``7d`` / ``12h`` meaning that long before now."""
    value = text.strip()
    if value.lower() == "now":
        return timedelta(0)
    try:
        return parse_duration(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise UsageError(
            f"{option}: expected an ISO date or datetime (2026-11-01, 2026-11-01T06:00, "
            f"2026-11-01T05:00Z) or a duration before now (7d, 12h), got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    try:
        instant: datetime | None = parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01 in a zone east of UTC is before year 1
        instant = None
    if instant is None or not EARLIEST <= instant < LATEST:
        raise UsageError(
            f"{option}: {text!r} is outside the range booking-etl handles "
            f"({EARLIEST:%Y-%m-%d} .. {LATEST:%Y-%m-%d}, UTC)"
        )
    return instant


#: ``--since``/``--until`` outside this range are refused with a clear message
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)

LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def resolve_when(value: When, now: datetime) -> datetime:
    """The UTC instant ``value`` stands for at ``now`` (a duration reaching before
    :data:`EARLIEST` is a UsageError)."""
    if not isinstance(value, timedelta):
        return value
    try:
        instant = now - value
    except OverflowError:
        instant = EARLIEST - timedelta(days=1)
    if instant < EARLIEST:
        raise UsageError(
            f"a duration of {value.days:,} days reaches before {EARLIEST:%Y-%m-%d}, the earliest "
            "instant booking-etl handles"
        )
    return instant
