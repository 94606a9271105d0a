"""The job run does not depend on where its rows come from: a Reader over real CSV files (a file
drop) gives the same runs, anomalies and store contents as the SQL table they were exported from."""

from __future__ import annotations

import ast
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from etl.config.loader import load_project
from etl.pipeline.run import JobRun, derive, leased, open_store
from etl.sources.reader import Points, Shape, Spans, Window
from etl.store.audit import Audit
from tests.support.plant import Plant, _sorted, local_text

ETL = Path(__file__).resolve().parents[2] / "etl"


class CsvDrop:
    """A file-drop reader: every CSV file in a folder is one batch of raw source rows. It hands
    over every row it has; the structure cuts them to the window."""

    instants: frozenset[str] = frozenset()

    def __init__(self, folder: Path, now: datetime) -> None:
        self.folder, self.now = folder, now
        self.asked: list[tuple[Window, Shape]] = []

    @contextmanager
    def open(self) -> Iterator[CsvDrop]:
        yield self

    def now_utc(self) -> datetime:
        return self.now

    def request(self, reach: Window, shape: Shape) -> CsvDrop:
        self.asked.append((reach, shape))
        return self

    def batches(self, size: int) -> Iterator[pd.DataFrame]:
        for path in sorted(self.folder.glob("*.csv")):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            yield frame.replace("", None)


def drop(plant: Plant, select: str, folder: str) -> CsvDrop:
    """The rows of ``select`` from the plant's SQLite source, written as two CSV files."""
    with sqlite3.connect(plant.db) as conn:
        rows = pd.read_sql_query(select, conn)
    target = plant.root / folder
    target.mkdir()
    half = len(rows) // 2
    rows.iloc[:half].to_csv(target / "part-1.csv", index=False)
    rows.iloc[half:].to_csv(target / "part-2.csv", index=False)
    return CsvDrop(target, plant.now)


BOOKINGS = "SELECT * FROM BUCHUNGEN WHERE STORNO = 0 AND WERK = '1000' ORDER BY ID"
ORDERS = "SELECT * FROM AUFTRAG WHERE WERK = '1000' ORDER BY ID"


def booked_plant(tmp_path: Path) -> Plant:
    plant = Plant(tmp_path / "p", reread="12h")
    plant.book("M1", "A", 10, plant.ago(hours=30))  # open before the window: carried in
    plant.run()
    plant.book("M1", "A", 20, plant.ago(hours=5))
    plant.book("M1", "B", 10, plant.ago(hours=4))
    plant.book("M2", "C", 10, plant.ago(hours=3))
    plant.book("M2", "C", 99, plant.ago(hours=2))  # unknown code: an anomaly
    plant.book("M2", "C", 20, plant.ago(hours=1))
    plant.book("M3", "D", 10, plant.ago(hours=2), plant="2000")  # filtered out
    return plant


def test_bookings_from_a_file_drop_derive_what_the_table_derives(tmp_path: Path) -> None:
    plant = booked_plant(tmp_path)
    files = drop(plant, BOOKINGS, "drop")
    project = load_project(plant.root)
    job = project.job("bookings")
    window = Window(lo=plant.ago(hours=6), hi=plant.now)
    store = open_store(project)
    try:
        table = derive(project, job, lambda _now: window, store)
        dropped = derive(project, job, lambda _now: window, store, reader=files)
    finally:
        store.close()
    assert files.asked == [(window, Points(at="timestamp", changed="updated_at"))]
    assert dropped.carried == table.carried == 1
    # the table's SELECT reads the window, the drop hands over its booking from before it too
    assert (table.rows_read, dropped.rows_read) == (5, 6)
    pd.testing.assert_frame_equal(_sorted(dropped.runs), _sorted(table.runs))
    pd.testing.assert_frame_equal(dropped.anomalies.frame(), table.anomalies.frame())
    assert table.kinds() and dropped.kinds() == table.kinds()
    assert set(table.runs["order_code"]) == {"A", "B", "C"}


def test_orders_from_a_file_drop_reach_back_to_the_open_run_like_the_table(
    tmp_path: Path,
) -> None:
    plant = Plant(tmp_path / "p", reread="1h")
    opened = plant.ago(days=3)
    plant.order("M1", "FA1", opened, None)
    plant.order("M2", "FA2", plant.ago(days=2), plant.ago(days=1))
    plant.run("orders")
    # FA1 closes long before the window, without a change stamp: only the re-read of the runs
    # the store holds as open finds it
    plant.sql("UPDATE AUFTRAG SET ENDE_ZEIT = ? WHERE FANR = 'FA1'", local_text(plant.ago(days=2)))
    plant.order("M3", "FA3", plant.ago(hours=2), None)
    files = drop(plant, ORDERS, "drop")
    project = load_project(plant.root)
    job = project.job("orders")
    window = Window(lo=plant.ago(hours=6), hi=plant.now)
    store = open_store(project)
    try:
        table = derive(project, job, lambda _now: window, store)
        dropped = derive(project, job, lambda _now: window, store, reader=files)
    finally:
        store.close()
    [(reach, shape)] = files.asked
    assert shape == Spans(start="start", end="end", changed="updated_at")
    assert reach == Window(lo=opened, hi=window.hi)  # back to the run the store holds open
    pd.testing.assert_frame_equal(_sorted(dropped.runs), _sorted(table.runs))
    pd.testing.assert_frame_equal(dropped.anomalies.frame(), table.anomalies.frame())
    closed = table.runs[table.runs["order_code"] == "FA1"]
    assert closed["end"].tolist() == [pd.Timestamp(plant.ago(days=2))]


def test_a_job_run_commits_and_publishes_rows_from_a_file_drop(tmp_path: Path) -> None:
    plant = booked_plant(tmp_path)
    expected = plant.from_scratch()  # the SQL table, run by 'etl run' into a fresh store
    files = drop(plant, BOOKINGS, "drop")
    project = load_project(plant.root)
    job = project.job("bookings")
    with leased(project, "bookings") as (store, held):
        run = JobRun(project, job, held, reader=files)
        state = store.state("bookings")
        assert state is not None and state.watermark is not None
        derived = run.derive(lambda now: Window(lo=state.watermark - job.reread, hi=now))
        audit = Audit(started_at=datetime.now(UTC))
        audit.count(derived.rows_read, derived.runs_open, derived.kinds())
        sync_id, changes = run.commit(derived, audit)
        files_written = run.publish(sync_id, changes.months)
    assert files_written and (changes.inserted, changes.deleted) == (2, 0)
    stored = plant.store_runs()
    pd.testing.assert_frame_equal(stored, expected)
    pd.testing.assert_frame_equal(plant.parquet_runs(), stored)
    with sqlite3.connect(plant.root / "store.sqlite") as conn:
        row = conn.execute(
            "SELECT status, rows_read, anomalies, anomalies_by_kind FROM sync_runs WHERE id = ?",
            (sync_id,),
        ).fetchone()
    assert row == ("ok", 6, 1, '{"unknown_event": 1}')


# --------------------------------------------------------------------------- one place per structure

#: Modules that may still name a structure: its implementations, and discover (which infers
#: which structure a table has, and writes the mapping).
NAMING = {"structures.py", "discover"}


def _structure_comparisons(path: Path) -> list[str]:
    """``... == "bookings"``-style comparisons with a structure name (and ``.structure ==``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        constants = [
            c
            for s in sides
            for c in (s.elts if isinstance(s, ast.Tuple | ast.List | ast.Set) else [s])
        ]
        names = {c.value for c in constants if isinstance(c, ast.Constant)}
        if not all(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops) and not names:
            continue  # a lookup in a table of structures (``structure in STRUCTURES``)
        compared = any(
            (isinstance(s, ast.Attribute) and s.attr == "structure")
            or (isinstance(s, ast.Name) and s.id == "structure")
            for s in sides
        )
        if compared or names & {"bookings", "orders"}:
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_module_but_the_structures_branches_on_a_structure_name() -> None:
    offenders = [
        hit
        for path in sorted(ETL.rglob("*.py"))
        if not NAMING & {path.name, *path.relative_to(ETL).parts} and "templates" not in path.parts
        for hit in _structure_comparisons(path)
    ]
    assert offenders == []
    assert (
        _structure_comparisons(ETL / "pipeline/structures.py") == []
    )  # a table, not branches, there too


def test_every_structure_config_accepts_has_an_implementation() -> None:
    from etl.config.models import STRUCTURE_COLUMNS
    from etl.pipeline.structures import STRUCTURES
    from etl.sources.reader import SHAPES

    assert set(STRUCTURES) == set(STRUCTURE_COLUMNS) == set(SHAPES) == {"bookings", "orders"}
    assert all(STRUCTURES[name].name == name for name in STRUCTURES)
