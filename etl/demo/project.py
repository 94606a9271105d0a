"""The demo project ``etl demo`` writes next to its plant database: ``etl.yaml``, a connector,
two mappings (bookings and orders) and two jobs that read that database."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from etl.demo.plant import DB_FILE

_ETL_YAML = """\
# booking-etl demo project, written by `etl demo`. It reads the synthetic plant database
# booking_system.sqlite (read-only) and keeps the store and the Parquet dataset up to date.
name: booking-etl demo
store: sqlite:///store.sqlite   # the production-context store: runs, job state, audit, anomalies
parquet: output/parquet         # Hive-partitioned Parquet dataset of production runs
defaults:
  safety_lag: 5m                # hi = source database clock - safety_lag
  reread: 2d                    # each run re-reads this much before the previous hi
"""

_CONNECTOR_YAML = """\
# The demo plant's database: a SQLite file next to etl.yaml, opened read-only.
dialect: sqlite
description: synthetic plant 1000 (HYDRA-like BDE bookings, ERP production orders)
path: booking_system.sqlite
timezone: Europe/Berlin         # source timestamps are naive plant-local wall-clock time
plant: '1000'                   # the plant label on every run and anomaly (store and Parquet)
"""

_BOOKINGS_YAML = """\
# HYDRA-like BDE booking table: one row per booking, date and time in separate text columns.
structure: bookings
description: BDE bookings of plant 1000 (log-on, interruption, finished)
source:
  table: BDE_BUCHUNGEN
columns:
  timestamp: {date: BUCHDAT, time: BUCHZEIT, date_format: '%Y-%m-%d', time_format: '%H:%M:%S'}
  order_code: AUNR
  machine_code: {column: MASCHNR, trim: true}   # 8 characters, blank-padded
  product_code: ARTNR
  event: SATZART
events:
  START: [10]                   # Anmeldung (log-on)
  END: [20, 30]                 # Unterbrechung (interruption), Fertigmeldung (finished)
  ignore: [40]                  # Mengenmeldung (quantity report)
fields:                         # run attributes: the run's bookings aggregated (docs/concepts.md)
  good_qty: {column: MENGE_GUT, type: integer, agg: max}        # the order's good count so far
  quantity_reports: {column: MENGE_GUT, type: integer, agg: count}
filters:
  - {column: STORNO, eq: 0}     # cancelled bookings stay in the table, flagged
  - {column: WERK, eq: '1000'}  # plant 2000 books into the same table
dst:
  ambiguous: earlier            # the repeated autumn hour reads as summer time
  nonexistent: shift_forward    # a wall-clock time in the skipped spring hour moves forward
"""

_ORDERS_YAML = """\
# ERP production orders: one row per order, ENDE_ZEIT NULL while the order runs.
structure: orders
description: ERP production orders of plant 1000
source:
  table: FA_AUFTRAEGE
columns:
  order_code: FA_NR
  product_code: ARTIKEL
  machine_code: {column: ARBEITSPLATZ, trim: true}   # blank-padded work centre
  start: {column: START_ZEIT, format: '%Y-%m-%d %H:%M:%S'}
  end: {column: ENDE_ZEIT, format: '%Y-%m-%d %H:%M:%S'}
filters:
  - {column: WERK, eq: '1000'}
  - {column: STATUS, not_in: [DLT]}   # REL released/running, CNF confirmed, DLT deleted
"""

_JOB_YAML = """\
# {what}: `etl run {name}`, or every {every} under `etl schedule`.
connector: demo_bde
mapping: {name}
description: {what}
schedule: '{cron}'
start_from: {start}             # where the demo data begins
"""


_DROP_CONNECTOR_YAML = """\
# The demo plant's nightly exports: the ERP writes each day's bookings and orders as a CSV file
# into drop/ (';', cp1252, as German ERP exports are); the mappings are the database flavour's.
kind: files
description: synthetic plant 1000, CSV exports of BDE bookings and ERP orders
timezone: Europe/Berlin         # the exported times are naive plant-local wall-clock time
plant: '1000'
files:
  location: drop
  settle: 30s                   # a file still being copied waits for a later run
  tables:
    BDE_BUCHUNGEN: {glob: 'bde_buchungen_*.csv', delimiter: ';', encoding: cp1252}
    FA_AUFTRAEGE: {glob: 'fa_auftraege_*.csv', delimiter: ';', encoding: cp1252}
"""

#: ``etl demo --flavour``: where the jobs read the generated plant from
FLAVOURS = ("database", "files")
CONNECTORS = {"database": "demo_bde", "files": "demo_drop"}


def _data_start(db: Path) -> date | None:
    """The first booking or order date in the demo database, if it exists."""
    if not db.is_file():
        return None
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute(
            "SELECT MIN(d) FROM (SELECT MIN(BUCHDAT) AS d FROM BDE_BUCHUNGEN "
            "UNION ALL SELECT MIN(substr(START_ZEIT, 1, 10)) FROM FA_AUFTRAEGE)"
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        con.close()
    try:
        return date.fromisoformat(row[0]) if row and row[0] else None
    except ValueError:
        return None


def write_demo_project(directory: Path, flavour: str = "database") -> None:
    """Write the demo project files into ``directory``; files that already exist are kept.

    ``start_from`` of the jobs is the first date in ``directory/booking_system.sqlite`` (create
    the database first); without the database, 240 days before today, which covers any data
    :func:`create_booking_system` generates. ``flavour`` ``files``: the jobs read the CSV
    exports in ``drop/`` (:func:`export_drop`) through a file-drop connector, with the same
    mappings.
    """
    start = _data_start(directory / DB_FILE)
    if start is None:
        start = datetime.now(UTC).date() - timedelta(days=240)
    connector = CONNECTORS[flavour]
    files = {
        "etl.yaml": _ETL_YAML,
        f"connectors/{connector}.yaml": _CONNECTOR_YAML
        if flavour == "database"
        else _DROP_CONNECTOR_YAML,
        "mappings/demo_bookings.yaml": _BOOKINGS_YAML,
        "mappings/demo_orders.yaml": _ORDERS_YAML,
        "jobs/demo_bookings.yaml": _JOB_YAML.format(
            what="BDE bookings -> production runs",
            name="demo_bookings",
            every="15 minutes",
            cron="*/15 * * * *",
            start=start.isoformat(),
        ),
        "jobs/demo_orders.yaml": _JOB_YAML.format(
            what="ERP orders -> production runs",
            name="demo_orders",
            every="hour",
            cron="5 * * * *",
            start=start.isoformat(),
        ),
    }
    for name in ("jobs/demo_bookings.yaml", "jobs/demo_orders.yaml"):
        files[name] = files[name].replace("connector: demo_bde", f"connector: {connector}")
    for relative, text in files.items():
        target = directory / relative
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


__all__ = ["CONNECTORS", "FLAVOURS", "write_demo_project"]
