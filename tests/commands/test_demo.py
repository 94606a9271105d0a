"""`etl demo` end to end: its Parquet equals an independent per-row derivation from its database."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from etl.cli import main
from etl.commands.demo import run_demo
from etl.demo.plant import DB_FILE
from etl.shapes import RUNS_SCHEMA
from tests.support.reference_fold import (
    reference_booking_runs,
    reference_order_runs_and_anomalies,
    reference_quantities,
)

# Autumn: the data spans the October change (repeated hour); spring: the March change (skipped hour).
NOWS = [datetime(2026, 11, 22, 9, 0, tzinfo=UTC), datetime(2026, 4, 20, 9, 0, tzinfo=UTC)]
COLUMNS = ["machine_code", "order_code", "product_code", "start", "end"]


def _frame(runs: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(runs, columns=COLUMNS)
    return _normal(frame)


def _normal(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[COLUMNS].copy()
    for col in ("machine_code", "order_code", "product_code"):
        frame[col] = frame[col].astype("string")
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    return frame.sort_values(["machine_code", "start", "order_code"]).reset_index(drop=True)


@pytest.fixture(scope="module", params=NOWS, ids=["autumn", "spring"])
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    directory = tmp_path_factory.mktemp("demo")
    lines: list[str] = []
    report = run_demo(directory, echo=lines.append, now=request.param)
    hi = {r.job: r.window_hi for r in report.results}
    return directory, {"hi": hi, "lines": lines, "report": report}


def test_demo_runs_equal_the_independent_derivation(demo: tuple[Path, dict]) -> None:
    directory, info = demo
    runs = pd.read_parquet(directory / "output" / "parquet" / "runs")
    got = _normal(runs[runs["job"] == "demo_bookings"])
    expected_runs, expected_anomalies = reference_booking_runs(
        directory / DB_FILE, info["hi"]["demo_bookings"]
    )
    pd.testing.assert_frame_equal(got, _frame(expected_runs))

    got_orders = _normal(runs[runs["job"] == "demo_orders"])
    order_runs, order_anomalies = reference_order_runs_and_anomalies(
        directory / DB_FILE, info["hi"]["demo_orders"]
    )
    pd.testing.assert_frame_equal(got_orders, _frame(order_runs))

    found = pd.read_parquet(directory / "output" / "parquet" / "anomalies")
    by_job = {job: Counter(group["kind"]) for job, group in found.groupby("job")}
    assert by_job["demo_bookings"] == expected_anomalies
    assert by_job["demo_orders"] == order_anomalies


def test_demo_quantities_equal_the_independent_derivation(demo: tuple[Path, dict]) -> None:
    """The demo maps MENGE_GUT (a running good count per order) as ``good_qty`` (max) and
    ``quantity_reports`` (count): the Parquet holds what the naive reference computes."""
    directory, info = demo
    hi = info["hi"]["demo_bookings"]
    runs = pd.read_parquet(directory / "output" / "parquet" / "runs")
    runs = runs[runs["job"] == "demo_bookings"]
    expected_runs, _ = reference_booking_runs(directory / DB_FILE, hi)
    expected = reference_quantities(directory / DB_FILE, hi, expected_runs)
    got = {
        (m, o, pd.Timestamp(s).to_pydatetime()): (None if pd.isna(q) else int(q), int(n))
        for m, o, s, q, n in zip(
            runs["machine_code"],
            runs["order_code"],
            runs["start"],
            runs["good_qty"],
            runs["quantity_reports"],
            strict=True,
        )
    }
    assert got == expected
    assert sum(n for _, n in expected.values()) > 1000  # the quantities are really there
    assert runs["plant"].eq("1000").all() and runs["zone"].eq("Europe/Berlin").all()


def test_demo_parquet_has_the_documented_schema(demo: tuple[Path, dict]) -> None:
    directory, _ = demo
    dataset = ds.dataset(
        directory / "output" / "parquet" / "runs", format="parquet", partitioning="hive"
    )
    fields = {f.name: f.type for f in dataset.schema}
    for field in RUNS_SCHEMA:
        assert fields[field.name] == field.type, field.name
    assert {"job", "month"} <= set(fields)
    runs = pd.read_parquet(directory / "output" / "parquet" / "runs")
    assert str(runs["start"].dtype) == "datetime64[us, UTC]"
    assert runs["end"].isna().sum() == runs["is_open"].sum() > 0
    assert (runs["end"].dropna() >= runs.loc[runs["end"].notna(), "start"]).all()
    assert runs["machine_code"].str.len().max() <= 4  # 'M-01': blank padding trimmed
    assert runs["machine_code"].nunique() >= 20
    assert (runs["start"].max() - runs["start"].min()).days >= 89


def test_demo_reads_back_in_duckdb(demo: tuple[Path, dict]) -> None:
    directory, _ = demo
    pattern = str(directory / "output" / "parquet" / "runs" / "**" / "*.parquet")
    rows = duckdb.sql(
        f'SELECT job, count(*) AS runs, count(*) FILTER (WHERE "end" IS NULL) AS open '
        f"FROM read_parquet('{pattern}', hive_partitioning = true) GROUP BY job ORDER BY job"
    ).fetchall()
    runs = pd.read_parquet(directory / "output" / "parquet" / "runs")
    assert rows == [
        (job, len(group), int(group["end"].isna().sum()))
        for job, group in runs.groupby("job", sort=True)
    ]


def test_demo_again_is_safe_and_changes_nothing(demo: tuple[Path, dict]) -> None:
    directory, _ = demo
    before = pd.read_parquet(directory / "output" / "parquet" / "runs")
    lines: list[str] = []
    report = run_demo(directory, echo=lines.append)
    assert report.created is None
    assert any("exists, reused" in line for line in lines)
    for result in report.results:
        assert (result.runs_inserted, result.runs_updated, result.runs_deleted) == (0, 0, 0)
    after = pd.read_parquet(directory / "output" / "parquet" / "runs")
    pd.testing.assert_frame_equal(_normal(before), _normal(after))


def test_demo_command_prints_where_things_are(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "booking system:" in out and "(new)" in out
    assert "store:" in out and str(tmp_path / "d" / "store.sqlite") in out
    assert "parquet:" in out
    assert "demo_bookings:" in out and "demo_orders:" in out
