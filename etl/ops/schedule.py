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
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path
from types import FrameType

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from etl.config.cron import cron_trigger
from etl.config.loader import load_project
from etl.config.models import PROJECT_FILE, Project
from etl.errors import ConfigError, EtlError, LockHeldError, LockLost
from etl.ops.health import _stamp, age, schedule_zone
from etl.ops.logs import RUNS_LOGGER, add_secrets
from etl.redact import redact

log = logging.getLogger(__name__)
runs_log = logging.getLogger(RUNS_LOGGER)

ABANDON_WAIT = 15.0  # seconds an abandoned run gets to reach its next batch and unwind
PROGRESS_EVERY = 60.0  # seconds between "rows read so far" lines of a long run in the daemon


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
        from etl.pipeline.run import open_store

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
        from etl.pipeline.run import run_job

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
        from etl.ops.metrics import update

        with self._metrics_lock:
            update(project)
