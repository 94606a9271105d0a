"""When jobs run: cron triggers, job health (next run, staleness), crontab lines, and the daemon.

``etl schedule`` is an APScheduler 3 ``BackgroundScheduler`` in one process: every enabled job with
a cron ``schedule:`` fires in its ``timezone`` (default: its connector's), at most one run per job at
a time (``max_instances=1``, missed firings coalesced, a bounded ``misfire_grace``), up to
``workers`` jobs in parallel. Several daemons (and cron) may share one store: the store's job lock
keeps them from running the same job at once; a firing that finds the lock held is skipped.

Signals: SIGHUP reloads the project (a broken configuration is logged and the old one kept);
SIGTERM or SIGINT stops taking new runs, gives running syncs ``grace`` to finish and then abandons
them at their next batch (nothing of an abandoned run is committed: the store transaction comes
last; a failed audit row says why). A second SIGTERM/SIGINT abandons at once. Exit status 0.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from .config import PROJECT_FILE, Job, Project, load_project
from .errors import ConfigError, EtlError, LockHeldError, LockLost
from .logs import RUNS_LOGGER, add_secrets
from .redact import redact

log = logging.getLogger(__name__)
runs_log = logging.getLogger(RUNS_LOGGER)

SECONDS_ENV = "ETL_CRON_SECONDS"
ABANDON_WAIT = 15.0  # seconds an abandoned run gets to reach its next batch and unwind
PROGRESS_EVERY = 60.0  # seconds between "rows read so far" lines of a long run in the daemon


# ---------------------------------------------------------------------------- cron


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


# ---------------------------------------------------------------------------- health


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

    @property
    def healthy(self) -> bool:
        """False when ``etl status --check`` fails because of this job."""
        return not (self.checked and (self.stale or self.failed))

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


# ---------------------------------------------------------------------------- crontab


def etl_executable() -> str:
    """The absolute command that runs this booking-etl (the ``etl`` script next to Python)."""
    beside = Path(sys.executable).parent / "etl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside.absolute())
    found = shutil.which("etl")
    if found:
        return str(Path(found).absolute())
    return f"{shlex.quote(sys.executable)} -m etl.cli"


def crontab_lines(project: Project, etl: str, log_dir: Path | None = None) -> list[str]:
    """Crontab lines that run every enabled scheduled job of ``project`` with ``etl run``.

    Grouped by the schedule's zone under ``CRON_TZ=`` lines. No ``flock``: the store's job lock
    already makes a second start of a running job exit 5.
    """
    root = project.root
    lines = [
        f"# booking-etl jobs of {root} (written by 'etl cron')",
        "# a run still going when the next one starts: the store's job lock makes the second exit 5",
    ]
    env_names: set[str] = set()
    planned: list[tuple[str, str, str]] = []
    log_target = None if log_dir is None else log_dir if log_dir.is_absolute() else root / log_dir
    for name in sorted(project.broken):
        lines.append(f"# {name}: left out: its files have errors (see 'etl validate')")
    for name, job in sorted(project.jobs.items()):
        expr = job.spec.schedule
        if not job.spec.enabled:
            lines.append(f"# {name}: disabled")
            continue
        if expr is None:
            lines.append(f"# {name}: no schedule")
            continue
        if len(expr.split()) == 6:
            lines.append(f"# {name}: '{expr}' has a seconds field, which cron cannot express")
            continue
        for key in (
            PROJECT_FILE,
            f"jobs/{name}",
            f"connectors/{job.connector_name}",
            f"mappings/{job.mapping_name}",
        ):
            doc = project.files.get(key)
            if doc is not None:  # the variables its values use, not those in its comments
                env_names |= set(doc.env_names)
        command = f"cd {shlex.quote(str(root))} && {etl} run {shlex.quote(name)}"
        if log_target is not None:
            command += f" >> {shlex.quote(str(log_target / f'{name}.log'))} 2>&1"
        planned.append((schedule_zone(job), expr, command.replace("%", "\\%")))
    if env_names:
        lines.append(
            "# cron starts jobs with an almost empty environment: set "
            + ", ".join(sorted(env_names))
            + " above these lines (or in a wrapper script)"
        )
    if planned and log_target is not None and not log_target.is_dir():
        # cron's shell cannot open '>> DIR/JOB.log' in a missing directory: the job never starts
        lines.append(
            f"# {log_target} does not exist: create it first (mkdir -p "
            f"{shlex.quote(str(log_target))}), or cron cannot open the logs and no job starts"
        )
    if planned:
        lines.append(
            "# CRON_TZ (cronie and others; Debian's cron ignores it) applies to the lines after "
            "it: keep these last"
        )
    zone = None
    for job_zone, expr, command in sorted(planned, key=lambda p: p[0]):
        if job_zone != zone:
            zone = job_zone
            lines.append(f"CRON_TZ={zone}")
        lines.append(f"{expr} {command}")
    return lines


# ---------------------------------------------------------------------------- the daemon


class Abandoned(EtlError):
    """A run the daemon gave up at a batch boundary because it is stopping."""


class Daemon:
    """``etl schedule``: runs the project's scheduled jobs until SIGTERM/SIGINT."""

    def __init__(
        self,
        project: Project,
        *,
        workers: int | None = None,
        grace: timedelta | None = None,
    ) -> None:
        self.project = project
        self.workers = workers or project.spec.scheduler.workers
        self._workers_fixed = workers is not None
        self._grace = grace
        self._planned: dict[str, tuple[str, str, float]] = {}
        self._active: dict[str, float] = {}
        self._lock = threading.Lock()
        self._metrics_lock = threading.Lock()
        self._stopping = False
        self._closed = False  # set under _lock: no run starts after this
        self._abandon = False
        self._reload = False
        self._signal = ""
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(self.workers)},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        self.scheduler.add_listener(self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)

    @property
    def grace(self) -> timedelta:
        """How long running syncs may take to finish after SIGTERM."""
        return self._grace if self._grace is not None else self.project.spec.scheduler.grace

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Schedule, run until told to stop, stop gracefully; returns the exit status (0)."""
        from .run import open_store

        logging.getLogger("apscheduler").setLevel(logging.ERROR)  # its events are logged here
        open_store(self.project).close()  # the store must answer before the daemon starts
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }
        try:
            self.scheduler.start()
            log.info(
                "etl schedule started (pid %d): %d worker(s), project %s",
                os.getpid(),
                self.workers,
                self.project.root,
            )
            self._plan(self.project)
            self._write_metrics(self.project)
            while not self._stopping:
                time.sleep(0.2)
                if self._reload:
                    self._reload = False
                    self.reload()
            return self._stop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # only flags here: the main loop acts on them (no locks or I/O in a signal handler)
        if signum == signal.SIGHUP:
            self._reload = True
        elif self._stopping:
            self._abandon = True
        else:
            self._signal = signal.Signals(signum).name
            self._stopping = True

    def reload(self) -> None:
        """Re-read the project; on an error in ``etl.yaml`` keep the running one and log why.
        A job whose files now have errors keeps its previous configuration (logged); the other
        jobs take their new one."""
        try:
            project = load_project(self.project.root, partial=True)
        except EtlError as exc:
            log.error(
                "SIGHUP: configuration not reloaded, the previous one stays in effect: %s",
                "; ".join(str(exc).splitlines()),
            )
            return
        for name in sorted(set(project.broken) & set(self.project.jobs)):
            old = self.project.jobs[name]
            log.error(
                "SIGHUP: %s: configuration not reloaded, the previous one stays in effect: %s",
                name,
                "; ".join(project.broken.pop(name)),
                extra={"job": name, "status": "config_error", "exit_code": ConfigError.exit_code},
            )
            project.jobs[name] = old
            project.connectors.setdefault(old.connector_name, old.connector)  # its secrets
            project.mappings.setdefault(old.mapping_name, old.mapping)
        add_secrets(project.secrets)
        wanted = project.spec.scheduler.workers
        if wanted != self.workers and not self._workers_fixed:
            log.warning(
                "SIGHUP: scheduler.workers is now %d; restart etl schedule to apply it (still %d)",
                wanted,
                self.workers,
            )
        self.project = project
        log.info("SIGHUP: configuration reloaded from %s", project.root)
        self._plan(project)
        self._write_metrics(project)

    def _plan(self, project: Project) -> None:
        """Add, change or remove scheduler jobs so they match the project's jobs."""
        wanted: dict[str, tuple[str, str, float]] = {}
        for name, job in sorted(project.jobs.items()):
            if job.spec.enabled and job.spec.schedule:
                misfire = project.spec.scheduler.misfire_grace.total_seconds()
                wanted[name] = (job.spec.schedule, schedule_zone(job), misfire)
        for name in sorted(set(self._planned) - set(wanted)):
            self.scheduler.remove_job(name)
            log.info("%s: no longer scheduled", name)
        for name, plan in wanted.items():
            if self._planned.get(name) == plan:
                continue
            expr, zone, misfire = plan
            added = self.scheduler.add_job(
                self._fire,
                cron_trigger(expr, zone),
                args=[name],
                id=name,
                name=name,
                misfire_grace_time=max(1, int(misfire)),
                replace_existing=True,
            )
            log.info(
                "%s: scheduled '%s' (%s), next run %s",
                name,
                expr,
                zone,
                _stamp(added.next_run_time),
            )
        self._planned = wanted
        for name, problems in sorted(project.broken.items()):
            log.error(
                "%s: not scheduled: its files have errors (the other jobs run): %s",
                name,
                "; ".join(problems),
                extra={"job": name, "status": "config_error", "exit_code": ConfigError.exit_code},
            )
        if not wanted:
            log.warning("no enabled job has a schedule: nothing to run (SIGHUP reloads)")
        try:
            project.require_env(list(wanted))
        except ConfigError as exc:
            for line in exc.problems:
                log.warning("%s: its runs will fail until this is fixed", line)

    def _stop(self) -> int:
        log.info("%s: stopping: no new runs", self._signal or "stop")
        with self._lock:
            self._closed = True
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + self.grace.total_seconds()
        if self._running():
            log.info(
                "waiting up to %s for %s to finish (SIGTERM again: abandon now)",
                age(self.grace),
                ", ".join(self._running()),
            )
        while self._running() and time.monotonic() < deadline and not self._abandon:
            time.sleep(0.05)
        if self._running():
            self._abandon = True
            log.warning(
                "abandoning %s at the next batch: nothing of it is committed",
                ", ".join(self._running()),
            )
            deadline = time.monotonic() + ABANDON_WAIT
            while self._running() and time.monotonic() < deadline:
                time.sleep(0.05)
        stuck = self._running()
        if stuck:
            log.error(
                "%s did not reach a batch boundary in %.0fs; exiting without it: its store "
                "transaction commits whole or not at all, and its lock is taken over by the next "
                "run on this host (elsewhere it expires)",
                ", ".join(stuck),
                ABANDON_WAIT,
            )
            for handler in logging.getLogger("etl").handlers:
                handler.flush()
            os._exit(0)  # worker threads cannot be killed; the process can
        log.info("stopped")
        return 0

    def _running(self) -> list[str]:
        with self._lock:
            return sorted(self._active)

    # ------------------------------------------------------------------ one firing

    def _fire(self, name: str) -> None:
        """Run one sync of ``name`` (in a worker thread); log its outcome in one line."""
        project = self.project
        with self._lock:
            if self._closed:
                return
            self._active[name] = time.monotonic()
        clock = time.monotonic()
        from .run import run_job

        try:
            run_job(project, name, progress=self._progress(name))
        except LockLost as exc:
            seconds = time.monotonic() - clock
            runs_log.error(
                "%s: lock lost after %.1fs: %s",
                name,
                seconds,
                redact(exc.message, project.secrets),
                extra={
                    "job": name,
                    "status": "lock_lost",
                    "exit_code": exc.exit_code,
                    "error": redact(exc.message, project.secrets),
                    "duration_s": round(seconds, 3),
                },
            )
        except LockHeldError as exc:
            runs_log.info(
                "%s: skipped: %s",
                name,
                exc.message,
                extra={"job": name, "status": "skipped", "reason": "lock held"},
            )
        except EtlError as exc:
            seconds = time.monotonic() - clock
            status = "abandoned" if isinstance(exc, Abandoned) else "failed"
            runs_log.error(
                "%s: %s after %.1fs: %s",
                name,
                "stopped" if status == "abandoned" else f"failed (exit {exc.exit_code})",
                seconds,
                redact(exc.message, project.secrets),
                extra={
                    "job": name,
                    "status": status,
                    "exit_code": exc.exit_code,
                    "error": redact(exc.message, project.secrets),
                    "duration_s": round(seconds, 3),
                },
            )
        except Exception as exc:  # a bug: log it, keep the daemon alive
            runs_log.error(
                "%s: internal error: %s",
                name,
                redact(f"{type(exc).__name__}: {exc}", project.secrets),
                exc_info=log.isEnabledFor(logging.DEBUG),
                extra={"job": name, "status": "failed", "exit_code": 1},
            )
        finally:
            with self._lock:
                self._active.pop(name, None)
            self._write_metrics(project)

    def _progress(self, name: str) -> Callable[[int], None]:
        last = [time.monotonic()]

        def progress(rows: int) -> None:
            if self._abandon:
                raise Abandoned(
                    f"abandoned after {rows:,} rows read: etl schedule is stopping "
                    f"({self._signal or 'signal'}) and its grace period ran out; nothing was "
                    "committed"
                )
            if time.monotonic() - last[0] >= PROGRESS_EVERY:
                last[0] = time.monotonic()
                log.info("%s: %s rows read so far", name, f"{rows:,}")

        return progress

    def _on_event(self, event: JobEvent) -> None:
        times = getattr(event, "scheduled_run_times", None) or [
            getattr(event, "scheduled_run_time", None)
        ]
        when = _stamp(times[-1])
        if event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning(
                "%s: firing at %s skipped: its previous firing is still running or waiting for "
                "a worker",
                event.job_id,
                when,
            )
        else:
            log.warning(
                "%s: firing at %s missed: no worker was free within scheduler.misfire_grace",
                event.job_id,
                when,
            )

    def _write_metrics(self, project: Project) -> None:
        if project.spec.metrics is None:
            return
        from .metrics import update

        with self._metrics_lock:
            update(project)
