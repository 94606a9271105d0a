"""``etl demo --flavour files``: the generated plant exported as daily CSV files into a drop
folder and read through a file-drop connector with the same mappings gives exactly the runs and
anomalies of the database flavour; running it again changes nothing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from etl.commands.demo import run_demo
from etl.errors import UsageError

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def stored(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every stored run and anomaly, in a fixed order."""
    with sqlite3.connect(root / "store.sqlite") as conn:
        runs = pd.read_sql_query(
            'SELECT job, machine_code, order_code, start, "end", product_code, flags, phase, '
            "attributes FROM production_runs ORDER BY 1, 2, 3, 4",
            conn,
        )
        anomalies = pd.read_sql_query(
            "SELECT job, kind, machine_code, order_code, ts, detail FROM anomalies "
            "ORDER BY 1, 2, 3, 4, 5, 6",
            conn,
        )
    return runs, anomalies


def test_the_file_flavour_reads_the_same_runs_as_the_database(tmp_path: Path) -> None:
    lines: list[str] = []
    run_demo(tmp_path / "db", echo=lines.append, now=NOW)
    report = run_demo(tmp_path / "files", echo=lines.append, now=NOW, flavour="files")
    assert any(
        line.startswith("file drop:") and "daily bde_buchungen_*.csv" in line for line in lines
    )
    drop = sorted(p.name for p in (tmp_path / "files" / "drop").iterdir())
    assert drop[0].startswith("bde_buchungen_") and drop[-1].startswith("fa_auftraege_")
    assert "kind: files" in (tmp_path / "files" / "connectors" / "demo_drop.yaml").read_text()
    assert (tmp_path / "files" / "mappings" / "demo_bookings.yaml").read_text() == (
        tmp_path / "db" / "mappings" / "demo_bookings.yaml"
    ).read_text()
    runs, anomalies = stored(tmp_path / "files")
    expected_runs, expected_anomalies = stored(tmp_path / "db")
    assert len(runs) > 1000 and len(anomalies) > 5
    pd.testing.assert_frame_equal(runs, expected_runs)
    pd.testing.assert_frame_equal(anomalies, expected_anomalies)
    assert all(r.skipped == [] for r in report.results)

    again = run_demo(tmp_path / "files", echo=lines.append, flavour="files")
    assert all(
        (r.runs_inserted, r.runs_updated, r.runs_deleted) == (0, 0, 0) for r in again.results
    )
    assert any(line.startswith("file drop:") and "(exists, reused)" in line for line in lines)
    with pytest.raises(UsageError, match="holds the files flavour"):
        run_demo(tmp_path / "files", echo=lines.append)
