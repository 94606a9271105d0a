"""Prometheus metrics as a file for the node-exporter textfile collector.

``etl run``, ``etl backfill`` and ``etl schedule`` rewrite the file named by ``metrics.textfile`` in ``etl.yaml``
after every run. Its content comes from the store, so it describes every configured job, whichever
process ran it. The file is written to a hidden temporary file in the same directory and renamed
over the old one: the collector never reads half a file. Jobs carry the label ``etl_job`` (a
``job`` label would clash with the one Prometheus gives every scraped series).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from etl.config.models import Project
from etl.errors import EtlError
from etl.redact import redact

log = logging.getLogger(__name__)

PREFIX = "booking_etl"

# name, help; all gauges
METRICS: list[tuple[str, str]] = [
    ("last_run_timestamp_seconds", "When the job's last run ended (Unix time)."),
    (
        "last_run_success",
        "1 if the job's last run succeeded, 0 if it failed (also when only its Parquet publication "
        "failed).",
    ),
    ("last_run_duration_seconds", "How long the job's last run took."),
    ("last_run_rows_read", "Source rows the job's last run read."),
    ("last_run_runs_inserted", "Production runs the job's last run inserted."),
    ("last_run_runs_updated", "Production runs the job's last run changed."),
    ("last_run_runs_deleted", "Production runs the job's last run removed."),
    ("last_run_anomalies", "Anomalies the job's last run found, by kind."),
    ("last_success_timestamp_seconds", "When the job's last successful run ended (Unix time)."),
    ("watermark_timestamp_seconds", "The job's watermark: source data is complete up to here."),
    (
        "publish_pending_months",
        "Parquet months the store holds but the dataset does not yet (a failed publication).",
    ),
    (
        "bad_files",
        "Files of the job's file drop that did not read: every run skips them until they change.",
    ),
    ("config_valid", "1 if the job's files are valid, 0 if they have errors (it cannot run)."),
    ("runs_stored", "Production runs of the job in the store."),
    ("runs_open", "Production runs of the job still open."),
    ("stale", "1 if the job's last success is older than stale_after scheduled periods."),
    ("next_run_timestamp_seconds", "When the job is scheduled to run next (Unix time)."),
    ("metrics_written_timestamp_seconds", "When this file was written (Unix time)."),
]


def textfile_path(project: Project) -> Path | None:
    """The configured ``.prom`` file (relative paths are relative to the project), or None."""
    if project.spec.metrics is None:
        return None
    path = Path(project.spec.metrics.textfile)
    return path if path.is_absolute() else project.root / path


def render(project: Project, entries: list[dict[str, Any]], now: datetime) -> str:
    """The metrics of every configured job in the Prometheus text exposition format."""
    from etl.ops.health import job_health  # imports APScheduler: only when metrics are written
    from etl.pipeline.run import publishes

    samples: dict[str, list[tuple[dict[str, str], float]]] = {name: [] for name, _ in METRICS}
    by_job = {entry["job"]: entry for entry in entries}
    for name, job in sorted(project.jobs.items()):
        entry = by_job.get(name, {})
        labels = {"etl_job": name}
        last = entry.get("last_run")
        if last:
            ended = last.get("finished_at") or last.get("started_at")
            samples["last_run_timestamp_seconds"].append((labels, ended.timestamp()))
            samples["last_run_success"].append((labels, 1.0 if last["status"] == "ok" else 0.0))
            for key, metric in (
                ("duration_s", "last_run_duration_seconds"),
                ("rows_read", "last_run_rows_read"),
                ("runs_inserted", "last_run_runs_inserted"),
                ("runs_updated", "last_run_runs_updated"),
                ("runs_deleted", "last_run_runs_deleted"),
            ):
                if last.get(key) is not None:
                    samples[metric].append((labels, float(last[key])))
            kinds = last.get("anomalies_by_kind") or {}
            if isinstance(kinds, str):
                kinds = json.loads(kinds)
            for kind, count in sorted(kinds.items()):
                samples["last_run_anomalies"].append(({**labels, "kind": kind}, float(count)))
        if entry.get("last_success") is not None:
            samples["last_success_timestamp_seconds"].append(
                (labels, entry["last_success"].timestamp())
            )
        if entry.get("watermark") is not None:
            samples["watermark_timestamp_seconds"].append((labels, entry["watermark"].timestamp()))
        if publishes(project, job):
            pending = entry.get("publish_pending") or []
            samples["publish_pending_months"].append((labels, float(len(pending))))
        if job.connector.kind == "files":
            samples["bad_files"].append((labels, float(len(entry.get("bad_files") or []))))
        samples["runs_stored"].append((labels, float(entry.get("runs", 0))))
        samples["runs_open"].append((labels, float(entry.get("open_runs", 0))))
        health = job_health(job, entry, now)
        if health.checked:
            samples["stale"].append((labels, 1.0 if health.stale else 0.0))
        if health.next_run is not None:
            samples["next_run_timestamp_seconds"].append((labels, health.next_run.timestamp()))
    for name in sorted(set(project.jobs) | set(project.broken)):
        samples["config_valid"].append(({"etl_job": name}, 0.0 if name in project.broken else 1.0))
    samples["metrics_written_timestamp_seconds"].append(({}, now.timestamp()))
    lines: list[str] = []
    for name, text in METRICS:
        if not samples[name]:
            continue
        full = f"{PREFIX}_{name}"
        lines.append(f"# HELP {full} {text}")
        lines.append(f"# TYPE {full} gauge")
        for labels, value in samples[name]:
            lines.append(f"{full}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


def write_textfile(project: Project, now: datetime | None = None) -> Path | None:
    """Rewrite the project's metrics file atomically from the store; None when none is set."""
    from etl.pipeline.run import open_store

    path = textfile_path(project)
    if path is None:
        return None
    from etl.sources.files.ledger import bad_files

    store = open_store(project)
    try:
        entries = store.summary()
        bad = bad_files(store)
    finally:
        store.close()
    for entry in entries:
        entry["bad_files"] = bad.get(entry["job"], [])
    text = render(project, entries, now or datetime.now(UTC))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)  # the collector usually runs as another user
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def update(project: Project) -> Path | None:
    """:func:`write_textfile`, logging instead of raising: metrics never change a run's outcome."""
    try:
        return write_textfile(project)
    except (EtlError, OSError) as exc:
        log.warning("metrics not written: %s", redact(str(exc), project.secrets))
        return None
