"""Logging setup: text or JSON lines on stderr, secrets redacted from every record."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from etl.redact import redact


class RedactingFilter(logging.Filter):
    """Replaces known secrets (and URL passwords) in every message."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        for key in _extra_keys(record):
            value = record.__dict__[key]
            if isinstance(value, str):
                record.__dict__[key] = redact(value, self.secrets)
        return True


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def _extra_keys(record: logging.LogRecord) -> list[str]:
    """The fields a caller passed with ``extra=`` (structured fields of JSON lines)."""
    return [key for key in record.__dict__ if key not in _STANDARD]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _extra_keys(record):
            entry.setdefault(key, record.__dict__[key])
        return json.dumps(entry, ensure_ascii=False, default=str)


_handler: logging.Handler | None = None
_root_handler: logging.Handler | None = None
_filter = RedactingFilter([])
_format = "text"


def json_mode() -> bool:
    """Whether ``--log-format json`` is in effect: every stderr line must be a JSON object."""
    return _format == "json"


def setup_logging(verbose: int, fmt: str = "text") -> None:
    """Send ``etl.*`` logs to stderr: warnings by default, info with -v, debug with -vv.

    Other libraries' loggers (SQLAlchemy's pool, drivers, APScheduler) reach the root logger:
    it gets the same formatter and redaction at WARNING, so in JSON mode their lines are JSON
    too; Python warnings are routed through logging for the same reason."""
    global _handler, _root_handler, _format
    _format = fmt
    logger = logging.getLogger("etl")
    root = logging.getLogger()
    if _handler is not None:
        logger.removeHandler(_handler)
    if _root_handler is not None:
        root.removeHandler(_root_handler)
    _handler, _root_handler = logging.StreamHandler(), logging.StreamHandler()
    for handler in (_handler, _root_handler):
        handler.addFilter(_filter)
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
    logger.addHandler(_handler)
    logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    logging.getLogger(RUNS_LOGGER).setLevel(logging.NOTSET)
    root.addHandler(_root_handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(fmt == "json")


def json_line(level: str, message: str, **fields: object) -> str:
    """One JSON object for stderr outside the logging tree (errors of the command itself)."""
    entry: dict[str, object] = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "logger": "etl.cli",
        "message": redact(message, _filter.secrets),
    }
    for key, value in fields.items():
        entry[key] = redact(value, _filter.secrets) if isinstance(value, str) else value
    return json.dumps(entry, ensure_ascii=False, default=str)


RUNS_LOGGER = "etl.runs"


def show_run_outcomes() -> None:
    """Log the one line per run outcome (``etl.runs``) at INFO even without ``-v``."""
    logging.getLogger(RUNS_LOGGER).setLevel(logging.INFO)


def add_secrets(secrets: list[str]) -> None:
    """Register secrets to redact from every later log record."""
    _filter.secrets = sorted(set(_filter.secrets) | set(secrets), key=len, reverse=True)
