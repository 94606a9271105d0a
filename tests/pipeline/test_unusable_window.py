"""A window whose rows fit the mapping not at all (a wrong timestamp format, event codes no
``events`` list names) is a broken mapping: ``etl run`` exits 4 and commits nothing, instead of
replacing the window's stored runs with none. A few bad rows stay anomalies."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from etl.cli import main
from etl.errors import DataError
from etl.store.db import Store
from tests.support.plant import Plant


def _plant(tmp_path: Path, runs: int = 12) -> Plant:
    plant = Plant(tmp_path / "p")
    for n in range(runs):
        start = plant.ago(hours=30 - 2 * n)
        plant.book(f"M{n % 3}", f"A{n}", 10, start)
        plant.book(f"M{n % 3}", f"A{n}", 40, start + timedelta(minutes=30))
        plant.book(f"M{n % 3}", f"A{n}", 20, start + timedelta(hours=1))
    assert plant.run().runs_inserted == runs
    return plant


def _edit(plant: Plant, old: str, new: str) -> None:
    path = plant.root / "mappings" / "bookings.yaml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))


def _stored(plant: Plant) -> tuple[pd.DataFrame, object]:
    store = Store("sqlite:///store.sqlite", plant.root)
    try:
        state = store.state("bookings")
        return plant.store_runs(), state.watermark if state else None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("date_format: '%Y-%m-%d'", "date_format: '%d.%m.%Y'", "rows that should give a booking"),
        ("START: [10], END: [20, 30], ignore: [40]", "START: [S], END: [E]", "event code listed"),
        # the ignored quantity code still matches: it must not hide the broken START/END lists
        (
            "START: [10], END: [20, 30], ignore: [40]",
            "START: [S], END: [E], ignore: [40]",
            "under START or END",
        ),
    ],
    ids=["wrong-format", "unlisted-codes", "unlisted-codes-ignore-matching"],
)
def test_a_window_that_fits_the_mapping_not_at_all_commits_nothing(
    tmp_path: Path, old: str, new: str, said: str
) -> None:
    plant = _plant(tmp_path)
    before, watermark = _stored(plant)
    _edit(plant, old, new)
    with pytest.raises(DataError) as raised:
        plant.run()
    assert said in raised.value.message and "nothing was committed" in raised.value.message
    assert "mappings/bookings.yaml" in raised.value.message
    after, still = _stored(plant)
    pd.testing.assert_frame_equal(before, after)
    assert still == watermark
    result = CliRunner().invoke(main, ["-p", str(plant.root), "run", "bookings"])
    assert result.exit_code == 4, result.output
    _edit(plant, new, old)  # the fix: the next run goes on as if nothing happened
    assert plant.run().runs_updated == 0


def test_the_orders_of_a_wrong_format_commit_nothing(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    for n in range(12):
        plant.order(f"M{n % 3}", f"F{n}", plant.ago(hours=30 - 2 * n), plant.ago(hours=29 - 2 * n))
    assert plant.run("orders").runs_inserted == 12
    path = plant.root / "mappings" / "orders.yaml"
    path.write_text(path.read_text().replace("'%Y-%m-%d %H:%M:%S'", "'%d.%m.%Y %H:%M'"))
    with pytest.raises(DataError, match="nothing was committed"):
        plant.run("orders")
    assert len(plant.store_runs("orders")) == 12


def test_a_few_bad_rows_stay_anomalies(tmp_path: Path) -> None:
    plant = _plant(tmp_path, runs=2)
    _edit(plant, "START: [10], END: [20, 30], ignore: [40]", "START: [S], END: [E]")
    result = plant.run()  # 6 rows: too few to call the mapping broken
    assert result.anomalies == {"unknown_event": 6}


def test_the_preview_says_that_etl_run_would_refuse_the_window(tmp_path: Path) -> None:
    plant = _plant(tmp_path)
    _edit(plant, "date_format: '%Y-%m-%d'", "date_format: '%d.%m.%Y'")
    result = CliRunner().invoke(main, ["-p", str(plant.root), "preview", "bookings"])
    assert result.exit_code == 0, result.output
    assert (
        "note: 'etl run' would refuse this window (exit 4): bookings: not one of" in result.output
    )
