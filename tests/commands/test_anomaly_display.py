"""How anomalies reach an operator (issue 17, items 7 and 16): times in their details in the
table's zone (UTC beside), and a report that lists a bounded number of them."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pandas as pd

from etl.commands.preview import preview
from etl.commands.report import (
    REPORT_ANOMALIES,
    local_times,
    payload,
    store_timeline,
    write_html,
)
from etl.config.loader import load_project
from tests.support.plant import BERLIN, Plant, local_text


def test_times_in_anomaly_details_are_shown_in_the_tables_zone(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p", reread="2d")
    start = plant.ago(hours=5)
    plant.book("M1", "A", 10, start)
    plant.book("M1", "A", 10, plant.ago(hours=4))  # a second START while the run is open
    plant.book("M1", "A", 30, plant.ago(hours=3))
    here = start.astimezone(BERLIN)
    local = here.strftime("%Y-%m-%d %H:%M:%S")
    # the UTC time alone on the same day, with its date when the zone is already on the next one
    utc = start.strftime("%H:%M:%S" if here.date() == start.date() else "%Y-%m-%d %H:%M:%S")
    text = "\n".join(preview(load_project(plant.root), "bookings").lines())
    assert f"START while the run started at {local} ({utc} UTC) is open" in text
    assert "+00:00" not in text
    plant.run()
    page = payload(store_timeline(load_project(plant.root), "bookings"))
    assert page["anomalies"]["d"] == [f"START while the run started at {local} ({utc} UTC) is open"]


def test_a_report_lists_a_bounded_number_of_anomalies_and_says_how_many_more(
    tmp_path: Path,
) -> None:
    plant = Plant(tmp_path / "p", reread="2d")
    many = REPORT_ANOMALIES + 1_500
    first = plant.ago(hours=30)
    rows = [
        (
            "1000",
            f"M{i % 7}",
            f"A{i}",
            "P1",
            99,  # an event code the mapping does not know: one anomaly per row
            *local_text(first + timedelta(seconds=10 * i)).split(" "),
        )
        for i in range(many)
    ]
    with sqlite3.connect(plant.db) as conn:
        conn.executemany(
            "INSERT INTO BUCHUNGEN (WERK, MASCHNR, AUNR, ARTNR, SATZART, BUCHDAT, BUCHZEIT)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    plant.book("M1", "B", 10, first)  # one row the mapping knows: the window is not unusable
    assert plant.run().anomalies == {"unknown_event": many}
    timeline = store_timeline(load_project(plant.root), "bookings")
    assert len(timeline.anomalies) == REPORT_ANOMALIES
    assert timeline.summary().anomalies == {"unknown_event": many}
    page = payload(timeline)
    assert len(page["anomalies"]["k"]) == REPORT_ANOMALIES
    assert f"first {REPORT_ANOMALIES:,} of {many:,} anomalies" in page["subtitle"]
    write_html(timeline, tmp_path / "r.html")
    # the full list stays in the Parquet dataset
    found = pd.read_parquet(plant.root / "output" / "parquet" / "anomalies")
    assert len(found) == many


def test_a_utc_time_on_another_day_than_the_local_one_keeps_its_date() -> None:
    details = pd.Series(
        [
            "START while the run started at 2026-12-03 23:03:52+00:00 is open",
            "START while the run started at 2026-12-03 10:00:00+00:00 is open",
        ]
    )
    shown = local_times(details, BERLIN).tolist()
    assert shown == [
        "START while the run started at 2026-12-04 00:03:52 (2026-12-03 23:03:52 UTC) is open",
        "START while the run started at 2026-12-03 11:00:00 (10:00:00 UTC) is open",
    ]
