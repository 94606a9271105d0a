"""Projects whose jobs read a file drop or an HTTP API, and a real HTTP server on loopback that
serves paged booking records in the REST and OData styles (tests/test_sources_*.py)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd

BERLIN = ZoneInfo("Europe/Berlin")

#: one mapping for every kind of connector: only the connector changes between them
BOOKINGS_MAPPING = """\
structure: bookings
source: {table: BUCHUNGEN}
columns:
  timestamp: ZEIT
  order_code: AUFTRAG
  machine_code: MASCHINE
  event: ART
events: {START: [10], END: [20]}
filters:
  - {column: WERK, eq: '1000'}
"""


def write_project(root: Path, connector: str, start_from: str = "2026-11-01") -> Path:
    """A project at ``root`` with one job 'bookings' on ``connector`` (the YAML text)."""
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "etl.yaml").write_text(
        "store: sqlite:///store.sqlite\nparquet: output/parquet\n"
        f"defaults: {{start_from: '{start_from}', safety_lag: 0s, reread: 2d}}\n"
    )
    (root / "connectors" / "plant.yaml").write_text(connector)
    (root / "mappings" / "bookings.yaml").write_text(BOOKINGS_MAPPING)
    (root / "jobs" / "bookings.yaml").write_text("connector: plant\nmapping: bookings\n")
    return root


#: the day of the shift: yesterday in Berlin, inside every run's re-read window
DAY = datetime.now(BERLIN).replace(
    hour=0, minute=0, second=0, microsecond=0, tzinfo=None
) - timedelta(days=1)


def at(hour: int, minute: int) -> datetime:
    """Berlin wall-clock time on the shift's day."""
    return DAY.replace(hour=hour, minute=minute)


#: (machine, order, event, Berlin wall-clock, plant) of a small shift: M1 runs A then B, M2
#: runs C (still open), and a row of plant 2000 the filter drops
BOOKINGS = [
    ("M1", "A", 10, at(6, 0), "1000"),
    ("M1", "A", 20, at(8, 30), "1000"),
    ("M1", "B", 10, at(9, 0), "1000"),
    ("M1", "B", 20, at(11, 15), "1000"),
    ("M2", "C", 10, at(7, 45), "1000"),
    ("M3", "X", 10, at(7, 0), "2000"),
]


def expected_runs() -> pd.DataFrame:
    """The runs the shift folds into (UTC), sorted like ``store_runs``."""
    rows = [
        ("M1", "A", utc(at(6, 0)), utc(at(8, 30))),
        ("M1", "B", utc(at(9, 0)), utc(at(11, 15))),
        ("M2", "C", utc(at(7, 45)), pd.NaT),
    ]
    frame = pd.DataFrame(rows, columns=["machine_code", "order_code", "start", "end"])
    return _sorted(frame)


def utc(wall: datetime) -> pd.Timestamp:
    """Berlin wall-clock time as a UTC timestamp."""
    return pd.Timestamp(wall.replace(tzinfo=BERLIN).astimezone(UTC))


def store_runs(root: Path, job: str = "bookings") -> pd.DataFrame:
    """The job's stored runs: machine, order, start, end (UTC), sorted."""
    with sqlite3.connect(root / "store.sqlite") as conn:
        frame = pd.read_sql_query(
            'SELECT machine_code, order_code, start, "end" FROM production_runs WHERE job = ?',
            conn,
            params=(job,),
        )
    return _sorted(frame)


def sync_rows(root: Path) -> list[tuple[object, ...]]:
    """(status, rows_read, error) of every audit row, oldest first."""
    with sqlite3.connect(root / "store.sqlite") as conn:
        return conn.execute("SELECT status, rows_read, error FROM sync_runs ORDER BY id").fetchall()


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for col in ("machine_code", "order_code"):
        frame[col] = frame[col].astype("string")
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    return frame.sort_values(["machine_code", "start"]).reset_index(drop=True)
