"""`etl preview`: a dry run on the demo plant that shows everything and changes nothing."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from click.testing import CliRunner

from etl.cli import main
from etl.commands.demo import run_demo
from etl.commands.preview import preview
from etl.config.durations import parse_when, resolve_when
from etl.config.loader import load_project
from etl.demo.plant import DB_FILE
from etl.errors import UsageError
from etl.pipeline.sync import open_store
from tests.support.plant import Plant

BERLIN = ZoneInfo("Europe/Berlin")
JOB = "demo_bookings"


def etl(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    run_demo(directory, echo=lambda _line: None)
    return directory


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file below ``root`` with its size and content hash."""
    return {
        str(path.relative_to(root)): (
            path.stat().st_size,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def store_rows(root: Path) -> dict[str, list[tuple[object, ...]]]:
    with closing(sqlite3.connect(root / "store.sqlite")) as conn:  # SELECTs only
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("production_runs", "anomalies", "job_state", "sync_runs")
        }


def stored(root: Path, job: str = JOB) -> tuple[pd.DataFrame, pd.DataFrame]:
    store = open_store(load_project(root))
    try:
        return store.runs_between(job), store.anomalies_between(job)
    finally:
        store.close()


def test_preview_changes_nothing(demo: Path, tmp_path: Path) -> None:
    before_rows = store_rows(demo)
    before_files = snapshot(demo)
    mtimes = {p: p.stat().st_mtime_ns for p in demo.rglob("*") if p.is_file()}
    for args in (
        [],
        ["--since", "120d", "--limit", "0"],
        ["--since", "3d", "--until", "1d", "--html", str(tmp_path / "preview.html")],
    ):
        code, out, err = etl("-p", str(demo), "preview", JOB, *args)
        assert code == 0, err
        assert "dry run: nothing is written" in out
    assert snapshot(demo) == before_files  # store bytes, Parquet files
    assert not list(demo.glob("store.sqlite-*"))  # no WAL left behind
    assert {p: p.stat().st_mtime_ns for p in demo.rglob("*") if p.is_file()} == mtimes
    assert store_rows(demo) == before_rows  # runs, anomalies, watermark, lock, audit rows
    assert all(row[4] is None for row in before_rows["job_state"])  # no lock left behind
    assert (tmp_path / "preview.html").is_file()


def test_preview_without_a_store_creates_none(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=5))
    plant.book("M1", "A", 30, plant.ago(hours=4))
    code, out, _ = etl("-p", str(plant.root), "preview", "bookings")
    assert code == 0
    assert not (plant.root / "store.sqlite").exists()
    assert not (plant.root / "output").exists()
    assert "start_from" in out and "(first run)" in out
    assert "the store does not exist yet" in out
    assert re.search(r"^runs  1 \(0 open\) on 1 machine", out, re.M)


def test_the_store_stays_read_only_even_if_asked_to_write(demo: Path) -> None:
    from etl.errors import StoreError
    from etl.store.db import open_read_only

    project = load_project(demo)
    store = open_read_only(project.spec.store, project.root)
    assert store is not None
    try:
        with pytest.raises(StoreError, match="read-only"):
            store.reset(JOB)
    finally:
        store.close()
    assert len(stored(demo)[0]) > 0


def test_preview_output_on_the_demo(demo: Path) -> None:
    project = load_project(demo)
    store = open_store(project)
    try:
        state = store.state(JOB)
    finally:
        store.close()
    assert state is not None and state.watermark is not None

    code, out, _ = etl("-p", str(demo), "preview", JOB)
    assert code == 0
    lo = state.watermark - timedelta(days=2)
    assert f"window    {lo:%Y-%m-%d %H:%M:%S}Z .. " in out
    assert f"lo: as the next 'etl run': watermark {state.watermark:%Y-%m-%d %H:%M:%S}Z" in out
    assert "hi: source clock" in out and "safety_lag 5m" in out
    assert 'FROM "BDE_BUCHUNGEN"' in out and '"STORNO" = ?' in out and '"WERK" = ?' in out
    assert "window_lo=" in out and "'1000'" in out
    assert "carried in from the store" in out


def test_preview_of_the_whole_history_matches_the_store(demo: Path) -> None:
    code, out, _ = etl("-p", str(demo), "preview", JOB, "--since", "2000-01-01", "--limit", "5")
    assert code == 0
    # rows per event code == counting the source table directly (the window covers all of it)
    with closing(sqlite3.connect(demo / DB_FILE)) as conn:
        counts = dict(
            conn.execute(
                "SELECT SATZART, COUNT(*) FROM BDE_BUCHUNGEN WHERE STORNO = 0 AND WERK = '1000' "
                "GROUP BY SATZART"
            ).fetchall()
        )
    kinds = {10: "START", 20: "END", 30: "END", 40: "ignored", 99: "unknown"}
    section = out.split("rows per source event code:")[1].split("\n\n")[0]
    for code_value, rows in counts.items():
        assert re.search(rf"^  {code_value}\s+{kinds[code_value]}\s+{rows:,}$", section, re.M), (
            f"code {code_value}: {rows} rows expected in\n{section}"
        )
    runs, found = stored(demo)
    assert re.search(rf"^runs  {len(runs):,} \({runs['end'].isna().sum()} open\)", out, re.M)

    # the sample: 5 runs, an aligned table
    table = out.split("--limit N shows more\n")[1].split("\n\n")[0].splitlines()
    header, rule, rows, totals = table[0], table[1], table[2:-1], table[-1]
    # the demo mapping's fields (MENGE_GUT) follow the run's columns
    assert header.split() == [
        *["machine", "order", "product", "start", "end", "duration"],
        *["good_qty", "quantity_reports"],
    ]
    assert len(rows) == 5
    reports = sum(json.loads(text)["quantity_reports"] for text in runs["attributes"].dropna())
    assert totals == f"  fields over all {len(runs):,} runs: quantity_reports {reports:,}"
    starts = {line.index(re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line)[0]) for line in rows}
    assert starts == {header.index("start")}  # the start column lines up in every row
    assert all(len(line) <= len(rule) for line in rows)

    # anomalies by kind, as many as stored, at most three examples each
    lines = out.split("\nanomalies  ")[1].splitlines()
    expected = Counter(found["kind"])
    assert lines[0] == f"{sum(expected.values())}"
    for kind, count in expected.items():
        at = lines.index(f"  {kind}  {count}")
        examples = []
        for line in lines[at + 1 :]:
            if not line.startswith("    "):
                break
            examples.append(line)
        assert 1 <= len(examples) <= min(3, count)


def test_preview_dataclass_equals_the_store(demo: Path) -> None:
    result = preview(load_project(demo), JOB, since="2000-01-01", limit=3)
    runs, found = stored(demo)
    key = ["machine_code", "order_code", "start"]
    got = result.runs[key].sort_values(key).reset_index(drop=True)
    assert got.equals(runs[key].sort_values(key).reset_index(drop=True))
    assert result.anomaly_counts() == dict(sorted(Counter(found["kind"]).items()))
    assert len(result.sample()) == 3
    assert {kind for _code, kind, _rows in result.codes} == {"START", "END", "IGNORE", "UNKNOWN"}
    assert result.window.lo == datetime(1999, 12, 31, 23, 0, tzinfo=UTC)


def test_window_options(demo: Path) -> None:
    code, out, _ = etl("-p", str(demo), "preview", JOB, "--since", "3d", "--until", "1d")
    assert code == 0
    assert "lo: --since 3d" in out and "hi: --until 1d" in out
    lo, hi = re.search(r"window    (\S+ \S+)Z \.\. (\S+ \S+)Z", out).groups()  # type: ignore[union-attr]
    span = datetime.fromisoformat(hi) - datetime.fromisoformat(lo)
    assert span == timedelta(days=2)

    day = (datetime.now(UTC) - timedelta(days=10)).astimezone(BERLIN).date()
    code, out, _ = etl("-p", str(demo), "preview", JOB, "--since", day.isoformat(), "--limit", "0")
    assert code == 0
    midnight = datetime(day.year, day.month, day.day, tzinfo=BERLIN).astimezone(UTC)
    assert f"window    {midnight:%Y-%m-%d %H:%M:%S}Z" in out  # a naive date is plant time

    code, _, err = etl("-p", str(demo), "preview", JOB, "--since", "1d", "--until", "3d")
    assert code == 2 and "the window is empty" in err
    code, _, err = etl("-p", str(demo), "preview", JOB, "--since", "yesterday")
    assert code == 2 and "--since: expected an ISO date" in err
    code, _, err = etl("-p", str(demo), "preview", "nope")
    assert code == 2 and "does not exist" in err


def test_parse_when() -> None:
    now = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
    assert resolve_when(parse_when("7d", BERLIN), now) == now - timedelta(days=7)
    assert resolve_when(parse_when("1d12h", BERLIN), now) == now - timedelta(hours=36)
    assert resolve_when(parse_when("now", BERLIN), now) == now
    assert parse_when("2026-03-28", BERLIN) == datetime(2026, 3, 27, 23, 0, tzinfo=UTC)
    assert parse_when("2026-03-29T06:00", BERLIN) == datetime(2026, 3, 29, 4, 0, tzinfo=UTC)
    assert parse_when("2026-03-29 06:00:00Z", BERLIN) == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert parse_when("2026-03-29T06:00+01:00", BERLIN) == datetime(2026, 3, 29, 5, tzinfo=UTC)
    with pytest.raises(UsageError, match="--until"):
        parse_when("soon", BERLIN, "--until")


def test_hostile_source_values_are_shown_escaped_in_the_terminal(tmp_path: Path) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A\x1b[2J\x07", 10, plant.ago(hours=5))
    code, out, _ = etl("-p", str(plant.root), "preview", "bookings")
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "A\\x1b[2J\\x07" in out


@pytest.mark.postgres
def test_a_postgresql_store_is_opened_read_only(postgres_database: str, tmp_path: Path) -> None:
    import sqlalchemy as sa

    from etl.errors import StoreError
    from etl.store.db import Store, open_read_only

    assert open_read_only(postgres_database, tmp_path) is None  # no schema yet: nothing stored
    engine = sa.create_engine(postgres_database)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []  # and nothing created
    writable = Store(postgres_database, tmp_path)
    writable.ensure_schema()
    writable.close()
    store = open_read_only(postgres_database, tmp_path)
    assert store is not None
    try:
        assert store.state("nothing") is None
        with pytest.raises(StoreError, match="read-only"):
            store.reset("nothing")  # refused by the guard before it reaches the server
        with store.engine.connect() as conn:  # below the guard, the session refuses writes too
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with pytest.raises(Exception, match="read-only transaction"):
                cursor.execute("CREATE TABLE sneaky (id int)")
    finally:
        store.close()
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("sneaky")
    engine.dispose()


def test_preview_of_an_order_table(demo: Path) -> None:
    code, out, _ = etl("-p", str(demo), "preview", "demo_orders", "--limit", "2")
    assert code == 0
    assert "rows per source event code" not in out  # order tables have no event codes
    assert "POSTCOMPILE" not in out and "NOT IN (?)" in out  # IN lists as the source gets them
    assert "STATUS_1_1='DLT'" in out
    assert re.search(r"^runs  [\d,]+ \(\d+ open\) on \d+ machine", out, re.M)
