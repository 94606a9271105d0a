"""Human durations in config files and on the command line: ``90s``, ``5m``, ``2h``, ``14d``, ``1w``."""

from __future__ import annotations

import re
from datetime import timedelta

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
