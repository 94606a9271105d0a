"""The audit record of one sync run: what the store writes to ``sync_runs``.

A run builds its ``Audit`` as it goes; the store adds the status and what the commit changed
(runs inserted, updated, deleted) and, on commit, the window it replaced.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Audit:
    """One ``sync_runs`` row as a run knows it (None: not reached, stored as NULL)."""

    started_at: datetime
    finished_at: datetime | None = None
    duration_s: float | None = None
    window_lo: datetime | None = None
    window_hi: datetime | None = None
    rows_read: int | None = None
    runs_open: int | None = None
    anomalies: int | None = None
    anomalies_by_kind: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def count(self, rows_read: int, runs_open: int, kinds: Counter[str]) -> None:
        """Record what the run derived: rows read, runs left open, anomalies by kind."""
        self.rows_read = rows_read
        self.runs_open = runs_open
        self.anomalies = sum(kinds.values())
        self.anomalies_by_kind = dict(sorted(kinds.items()))

    def values(self) -> dict[str, Any]:
        """The row's columns as the store writes them (the kinds as a JSON object, NULL until
        the run counted its anomalies)."""
        row = asdict(self)
        counted = self.anomalies is not None
        row["anomalies_by_kind"] = json.dumps(self.anomalies_by_kind) if counted else None
        return row
