"""Cron expressions: the 5-field crontab syntax (6 fields, seconds first, for tests and demos).

Below the config models, which validate ``schedule:`` with it, and the scheduler, which
fires on it.
"""

from __future__ import annotations

import os
from datetime import tzinfo

from apscheduler.triggers.cron import CronTrigger

SECONDS_ENV = "ETL_CRON_SECONDS"


def cron_seconds() -> bool:
    """Whether 6-field schedules with a leading seconds field are accepted (tests and demos)."""
    return os.environ.get(SECONDS_ENV, "").strip().lower() in ("1", "true", "yes")


def cron_trigger(expr: str, zone: str | tzinfo) -> CronTrigger:
    """The trigger of a 5-field cron expression (6 fields: seconds first) in ``zone``."""
    fields = expr.split()
    if len(fields) == 6:
        second, minute, hour, day, month, day_of_week = fields
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=day_of_week,
            timezone=zone,
        )
    return CronTrigger.from_crontab(expr, timezone=zone)
