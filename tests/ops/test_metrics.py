"""Prometheus textfile metrics written by ``etl run``: parsed back and compared with the store."""

from __future__ import annotations

import json
import re
import sqlite3
import stat
from pathlib import Path

from click.testing import CliRunner

from etl.cli import main
from tests.support.plant import Plant

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Strictly parse the text exposition format: every sample follows its HELP and TYPE."""
    assert text.endswith("\n")
    typed: set[str] = set()
    helped: set[str] = set()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind == "gauge"
            typed.add(name)
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name = match["name"]
            assert name in typed and name in helped, f"{name} has no HELP/TYPE"
            labels = frozenset(_LABEL.findall(match["labels"] or ""))
            key = (name, labels)
            assert key not in samples, f"duplicate sample {line!r}"
            samples[key] = float(match["value"])
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(f"booking_etl_{name}", frozenset(labels.items()))]


def etl(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_run_writes_per_job_metrics_that_match_the_store(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    (plant.root / "etl.yaml").write_text(
        (plant.root / "etl.yaml").read_text() + "metrics: {textfile: node-exporter/etl.prom}\n"
    )
    (plant.root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nschedule: '*/10 * * * *'\n"
    )
    plant.book("M1", "A", 10, plant.ago(hours=5))
    plant.book("M1", "A", 30, plant.ago(hours=4))
    plant.book("M2", "B", 10, plant.ago(hours=3))
    plant.book("M2", "B", 99, plant.ago(hours=2))
    plant.book("M3", "C", 30, plant.ago(hours=1))
    assert etl("-p", str(plant.root), "run", "--all")[0] == 0

    path = plant.root / "node-exporter" / "etl.prom"
    samples = parse(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["etl.prom"]  # no temporary file left
    with sqlite3.connect(plant.root / "store.sqlite") as conn:
        conn.row_factory = sqlite3.Row
        audit = conn.execute("SELECT * FROM sync_runs WHERE job = 'bookings'").fetchone()
    assert value(samples, "last_run_success", etl_job="bookings") == 1
    assert value(samples, "last_run_rows_read", etl_job="bookings") == audit["rows_read"] == 5
    assert value(samples, "last_run_runs_inserted", etl_job="bookings") == 2
    assert value(samples, "last_run_runs_updated", etl_job="bookings") == 0
    assert value(samples, "last_run_duration_seconds", etl_job="bookings") == audit["duration_s"]
    kinds = json.loads(audit["anomalies_by_kind"])
    assert kinds == {"orphan_end": 1, "unknown_event": 1}
    for kind, count in kinds.items():
        assert value(samples, "last_run_anomalies", etl_job="bookings", kind=kind) == count
    assert value(samples, "runs_stored", etl_job="bookings") == 2
    assert value(samples, "runs_open", etl_job="bookings") == 1
    success = value(samples, "last_success_timestamp_seconds", etl_job="bookings")
    assert abs(success - value(samples, "metrics_written_timestamp_seconds")) < 30
    assert value(samples, "stale", etl_job="bookings") == 0
    assert value(samples, "next_run_timestamp_seconds", etl_job="bookings") % 600 == 0
    assert value(samples, "last_run_success", etl_job="orders") == 1
    assert ("booking_etl_stale", frozenset({("etl_job", "orders")})) not in samples  # no schedule

    held = (
        path.open()
    )  # a reader of the old file keeps a whole old file: it is replaced, not rewritten
    plant.sql("DROP TABLE BUCHUNGEN")
    assert etl("-p", str(plant.root), "run", "bookings")[0] == 4
    after = parse(path.read_text())
    assert parse(held.read()) == samples
    held.close()
    assert value(after, "last_run_success", etl_job="bookings") == 0
    assert value(after, "last_success_timestamp_seconds", etl_job="bookings") == success
    assert value(after, "last_run_timestamp_seconds", etl_job="bookings") > success


def test_metrics_are_not_written_without_the_setting_and_never_fail_a_run(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    assert etl("-p", str(plant.root), "run", "bookings")[0] == 0
    assert not list(plant.root.rglob("*.prom"))
    blocker = plant.root / "blocked"
    blocker.write_text("a file where the metrics directory should be")
    (plant.root / "etl.yaml").write_text(
        (plant.root / "etl.yaml").read_text() + "metrics: {textfile: blocked/etl.prom}\n"
    )
    code, _, err = etl("-p", str(plant.root), "run", "bookings")
    assert code == 0 and "metrics not written" in err
