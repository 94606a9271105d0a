"""Text times that do not match their format's shape are looked for by one bounded extra
query per run, however many batches the window takes (issue 17, item 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl.sources.sql import query as sql_query
from tests.support.plant import Plant


def test_the_malformed_text_query_runs_once_per_run_and_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = Plant(tmp_path / "p", reread="1d")
    etl_yaml = plant.root / "etl.yaml"
    etl_yaml.write_text(
        etl_yaml.read_text().replace("  safety_lag: 0s\n", "  safety_lag: 0s\n  batch_size: 100\n")
    )
    for i in range(250):  # three batches of good rows
        plant.order(f"M{i % 7}", f"FA{i}", plant.ago(hours=10), plant.ago(hours=9))
    for i in range(5):
        row = plant.order(f"M{i}", f"BAD{i}", plant.ago(hours=5), plant.ago(hours=4))
        plant.sql("UPDATE AUFTRAG SET START_ZEIT = ? WHERE ID = ?", f"garbage {i}", row)
    monkeypatch.setattr(sql_query, "MALFORMED_LIMIT", 3)
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if str(conn.engine.url.database or "").endswith("plant.sqlite"):
            sent.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", capture)
    try:
        first = plant.run("orders")
        second = plant.run("orders")
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", capture)
    looked = [s for s, _ in sent if "NOT LIKE" in s.upper()]
    assert len(looked) == 2  # one per run, not one per batch
    assert all("LIMIT" in s.upper() for s in looked)
    assert first.rows_read >= 250 and first.runs_inserted == 250
    # the bound holds: at most MALFORMED_LIMIT of the bad rows are reported by a run
    assert first.anomalies == second.anomalies == {"bad_timestamp": 3}
