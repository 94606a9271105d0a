"""Job health from the schedule and the store's summary: next run, last run's age, staleness.

Read by ``etl status``, the metrics file and the daemon; it needs the cron triggers, not the
daemon, so metrics and the scheduler both import it and not each other.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.triggers.cron import CronTrigger

from etl.config.cron import cron_trigger
from etl.config.models import Job


def schedule_zone(job: Job) -> str:
    """The zone the job's ``schedule`` is read in: its ``timezone``, else its connector's."""
    return job.spec.timezone or job.connector.timezone


def job_trigger(job: Job) -> CronTrigger | None:
    """The job's cron trigger, or None when it has no ``schedule``."""
    if job.spec.schedule is None:
        return None
    return cron_trigger(job.spec.schedule, schedule_zone(job))


def recent_fires(trigger: CronTrigger, now: datetime, count: int) -> list[datetime]:
    """The ``count`` most recent fire times at or before ``now``, oldest first.

    APScheduler only computes forward, so this starts far enough back (a few times the gap between
    the next two fire times, widened until enough are found) and walks forward to ``now``.
    """
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first) if first is not None else None
    gap = (second - first) if first is not None and second is not None else timedelta(days=1)
    span = max(gap, timedelta(seconds=1)) * (count + 1)
    found: deque[datetime] = deque(maxlen=count)
    for _ in range(16):
        found.clear()
        fire = trigger.get_next_fire_time(None, now - span)
        steps = 0
        while fire is not None and fire <= now and steps < 200_000:
            found.append(fire)
            fire = trigger.get_next_fire_time(fire, fire)
            steps += 1
        if len(found) == count:
            break
        span *= 4
    return list(found)


@dataclass
class Health:
    """A job's schedule and whether monitoring should worry about it."""

    job: str
    checked: bool  # enabled with a schedule: what ``etl status --check`` looks at
    schedule: str | None
    timezone: str | None
    next_run: datetime | None
    last_run_at: datetime | None
    last_run_age_s: float | None
    last_success: datetime | None
    stale_after: int
    stale: bool
    success_due_since: datetime | None  # the last success must be newer than this
    failed: bool
    problems: list[str]
    bad_files: int = 0  # a file drop's files that did not read (skipped by every run)

    @property
    def healthy(self) -> bool:
        """False when ``etl status --check`` fails because of this job."""
        return not (self.checked and (self.stale or self.failed or self.bad_files))

    def as_dict(self) -> dict[str, Any]:
        """For ``etl status --json``."""
        return {
            "schedule": self.schedule,
            "schedule_timezone": self.timezone,
            "next_run": self.next_run,
            "last_run_age_s": None if self.last_run_age_s is None else round(self.last_run_age_s),
            "last_success": self.last_success,
            "stale_after": self.stale_after,
            "stale": self.stale,
            "success_due_since": self.success_due_since,
            "checked": self.checked,
            "healthy": self.healthy,
            "problems": self.problems,
            "bad_files": self.bad_files,
        }


def job_health(job: Job, entry: dict[str, Any], now: datetime) -> Health:
    """Next run, last run's age and staleness of ``job`` from its ``Store.summary()`` entry.

    A job is stale when its last success is older than its ``stale_after``-th most recent
    scheduled time, i.e. the last ``stale_after`` scheduled runs all failed or did not happen
    (hourly, ``stale_after: 3``: no success for between 2 and 3 hours; a weekday schedule does
    not go stale over the weekend). A job that never succeeded is stale once it has a schedule.
    """
    last = entry.get("last_run")
    last_at: datetime | None = None
    if last:
        last_at = last.get("finished_at") or last.get("started_at")
    trigger = job_trigger(job)
    checked = job.spec.enabled and trigger is not None
    next_run = trigger.get_next_fire_time(None, now) if checked and trigger else None
    if next_run is not None:  # the trigger answers in the schedule's zone; status speaks UTC
        next_run = next_run.astimezone(UTC)
    last_success: datetime | None = entry.get("last_success")
    failed = last is not None and last.get("status") != "ok"
    stale = False
    due: datetime | None = None
    problems: list[str] = []
    if checked and trigger is not None:
        fires = recent_fires(trigger, now, job.spec.stale_after)
        if len(fires) == job.spec.stale_after:
            due = fires[0]
        if last_success is None:
            stale = True
            problems.append("never succeeded")
        elif due is not None and last_success < due:
            stale = True
            problems.append(
                f"stale: last success {_stamp(last_success)} ({age(now - last_success)} ago) is "
                f"older than the {job.spec.stale_after} most recent scheduled runs "
                f"(since {_stamp(due)})"
            )
    if failed and last is not None:
        error = (last.get("error") or "").splitlines()[0] if last.get("error") else ""
        problems.append(f"last run failed at {_stamp(last_at)}" + (f": {error}" if error else ""))
    bad = entry.get("bad_files") or []
    if bad:
        problems.append(
            f"bad file(s) skipped: {', '.join(b['path'] for b in bad)} (fix or re-deliver them)"
        )
    pending = entry.get("publish_pending") or []
    if failed and pending:
        problems.append(
            f"Parquet not published: {len(pending)} month(s) pending ({', '.join(pending)}); "
            "the next run that can write the Parquet publishes them"
        )
    return Health(
        job=job.name,
        checked=checked,
        schedule=job.spec.schedule,
        timezone=schedule_zone(job) if job.spec.schedule else None,
        next_run=next_run,
        last_run_at=last_at,
        last_run_age_s=(now - last_at).total_seconds() if last_at else None,
        last_success=last_success,
        stale_after=job.spec.stale_after,
        stale=stale,
        success_due_since=due,
        failed=failed,
        problems=problems,
        bad_files=len(bad),
    )


def broken_health(name: str, problems: list[str], entry: dict[str, Any]) -> Health:
    """The health of a job whose files have errors: it cannot run, so monitoring must see it."""
    last = entry.get("last_run")
    last_at = (last.get("finished_at") or last.get("started_at")) if last else None
    return Health(
        job=name,
        checked=True,
        schedule=None,
        timezone=None,
        next_run=None,
        last_run_at=last_at,
        last_run_age_s=None,
        last_success=entry.get("last_success"),
        stale_after=0,
        stale=False,
        success_due_since=None,
        failed=True,
        problems=[f"configuration error, the job cannot run: {p}" for p in problems],
    )


def _stamp(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def age(delta: timedelta) -> str:
    """A short human duration for status lines: ``45s``, ``12m``, ``3h05m``, ``2d04h``."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
