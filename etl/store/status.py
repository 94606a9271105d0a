"""Status summaries: what ``etl status``, the metrics and the health checks show of each job
(watermark, last run, last success, stored runs and anomalies), read in one transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.store.schema import anomalies, job_state, production_runs, sync_runs


def summary(conn: Connection) -> list[dict[str, Any]]:
    """Per job: watermark, last sync's outcome, last success, stored runs (total/open),
    anomalies by kind."""
    out: dict[str, dict[str, Any]] = {}
    for row in conn.execute(sa.select(job_state)).mappings():
        out[row["job"]] = {
            "job": row["job"],
            "watermark": row["watermark"],
            "publish_pending": json.loads(row["publish_pending"] or "[]"),
            "running": bool(
                row["lock_owner"]
                and row["lock_expires"]
                and row["lock_expires"] > datetime.now(UTC)
            ),
        }
    latest = (
        sa.select(sync_runs.c.job, sa.func.max(sync_runs.c.id).label("id"))
        .group_by(sync_runs.c.job)
        .subquery()
    )
    for row in conn.execute(
        sa.select(sync_runs).join(latest, latest.c.id == sync_runs.c.id)
    ).mappings():
        entry = out.setdefault(row["job"], {"job": row["job"], "watermark": None, "running": False})
        entry["last_run"] = {
            key: row[key]
            for key in (
                "status",
                "started_at",
                "finished_at",
                "duration_s",
                "window_lo",
                "window_hi",
                "rows_read",
                "runs_inserted",
                "runs_updated",
                "runs_deleted",
                "anomalies",
                "error",
            )
        }
        entry["last_run"]["anomalies_by_kind"] = json.loads(row["anomalies_by_kind"] or "{}")
    succeeded = (
        sa.select(sync_runs.c.job, sa.func.max(sync_runs.c.id).label("id"))
        .where(sync_runs.c.status == "ok")
        .group_by(sync_runs.c.job)
        .subquery()
    )
    for job, started, finished in conn.execute(
        sa.select(sync_runs.c.job, sync_runs.c.started_at, sync_runs.c.finished_at).join(
            succeeded, succeeded.c.id == sync_runs.c.id
        )
    ):
        entry = out.setdefault(job, {"job": job, "watermark": None, "running": False})
        entry["last_success"] = finished or started
    counts = conn.execute(
        sa.select(
            production_runs.c.job,
            sa.func.count(),
            sa.func.sum(sa.case((production_runs.c.end.is_(None), 1), else_=0)),
        ).group_by(production_runs.c.job)
    ).all()
    for job, total, open_runs in counts:
        entry = out.setdefault(job, {"job": job, "watermark": None, "running": False})
        entry["runs"], entry["open_runs"] = int(total), int(open_runs or 0)
    kinds = conn.execute(
        sa.select(anomalies.c.job, anomalies.c.kind, sa.func.count()).group_by(
            anomalies.c.job, anomalies.c.kind
        )
    ).all()
    for job, kind, count in kinds:
        entry = out.setdefault(job, {"job": job, "watermark": None, "running": False})
        entry.setdefault("anomalies", {})[kind] = int(count)
    for entry in out.values():
        entry.setdefault("runs", 0)
        entry.setdefault("open_runs", 0)
        entry.setdefault("anomalies", {})
        entry.setdefault("last_run", None)
        entry.setdefault("last_success", None)
        entry.setdefault("publish_pending", [])
    return [out[k] for k in sorted(out)]
