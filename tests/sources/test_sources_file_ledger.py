"""A file drop's ledger on real files: a bad file does not block the others and is reported in
``etl status``, the metrics and the audit row; a re-delivered file replaces exactly what it
delivered before, wherever that lies; a file that disappears keeps, forgets or stops."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from etl.config.loader import load_project
from etl.errors import SourceError
from etl.pipeline.run import run_job
from tests.support.sources import BERLIN, store_runs, sync_rows, utc, write_project

CONNECTOR = """\
kind: files
timezone: Europe/Berlin
files:
  location: drop
  settle: 0s
  tables:
    BUCHUNGEN: {glob: "b_*.csv"}
"""

#: midnight in Berlin, today
TODAY = datetime.now(BERLIN).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)


def day(ago: int, hour: int, minute: int = 0) -> datetime:
    """Berlin wall-clock time ``ago`` days before today."""
    return (TODAY - timedelta(days=ago)).replace(hour=hour, minute=minute)


Row = tuple[str, str, int, datetime]


def run_rows(machine: str, order: str, start: datetime, end: datetime | None) -> list[Row]:
    """The START (and END) bookings of one run."""
    rows = [(machine, order, 10, start)]
    return rows + ([(machine, order, 20, end)] if end is not None else [])


def write_csv(path: Path, rows: list[Row], *, ago_s: float = 120) -> None:
    """A plain CSV export (ISO wall-clock times), its mtime ``ago_s`` seconds back."""
    lines = ["MASCHINE,AUFTRAG,ART,ZEIT,WERK"]
    lines += [f"{m},{o},{e},{w.isoformat()},1000" for m, o, e, w in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    stamp = time.time() - ago_s
    os.utime(path, (stamp, stamp))


def project(tmp_path: Path, connector: str = CONNECTOR) -> tuple[Path, Path]:
    """A project whose job reads ``drop/b_*.csv`` from 20 days back (re-read window 2 days),
    with metrics; (root, drop folder)."""
    root = write_project(tmp_path / "p", connector, start_from=f"{day(20, 0):%Y-%m-%d}")
    (root / "etl.yaml").write_text(
        (root / "etl.yaml").read_text() + "metrics: {textfile: metrics/etl.prom}\n"
    )
    folder = root / "drop"
    folder.mkdir()
    return root, folder


def etl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in the project."""
    return subprocess.run(
        [sys.executable, "-m", "etl.cli", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


def keyed(root: Path) -> dict[tuple[str, str], tuple[pd.Timestamp, object]]:
    """(machine, order) -> (start, end) of the stored runs."""
    runs = store_runs(root)
    return {
        (r.machine_code, r.order_code): (r.start, None if pd.isna(r.end) else r.end)
        for r in runs.itertuples()
    }


def ledger(root: Path) -> dict[str, tuple[str, str | None]]:
    """path -> (status, error) of the job's ledger."""
    with sqlite3.connect(root / "store.sqlite") as conn:
        rows = conn.execute("SELECT path, status, error FROM source_files WHERE job = 'bookings'")
        return {path: (status, error) for path, status, error in rows}


def metric(root: Path, name: str) -> str | None:
    """The job's sample line of ``booking_etl_<name>`` in the metrics file."""
    text = (root / "metrics" / "etl.prom").read_text()
    lines = [line for line in text.splitlines() if line.startswith(f"booking_etl_{name}{{")]
    return lines[0].rsplit(" ", 1)[1] if lines else None


def test_a_bad_file_is_skipped_reported_everywhere_and_read_once_it_is_fixed(
    tmp_path: Path,
) -> None:
    root, folder = project(tmp_path)
    write_csv(folder / "b_1.csv", run_rows("M1", "A", day(10, 6), day(10, 8)))
    good_2 = run_rows("M1", "B", day(9, 6), day(9, 8))
    # truncated in the middle of its second data line
    (folder / "b_2.csv").write_text(
        f"MASCHINE,AUFTRAG,ART,ZEIT,WERK\nM1,B,10,{day(9, 6).isoformat()},1000\nM1,B,2"
    )
    write_csv(folder / "b_3.csv", run_rows("M1", "C", day(8, 6), day(8, 8)))
    done = etl(root, "run", "bookings")
    assert done.returncode == 0, done.stderr
    assert "SKIPPED" in done.stdout and "b_2.csv: line 3: 3 fields, the header has 5" in done.stdout
    assert set(keyed(root)) == {("M1", "A"), ("M1", "C")}  # the files before and after it
    [(status, _rows, error)] = sync_rows(root)
    assert status == "ok" and "b_2.csv: line 3" in error
    assert ledger(root)["b_2.csv"][0] == "bad"
    assert metric(root, "bad_files") == "1"

    shown = etl(root, "status")
    assert "BAD FILE b_2.csv" in shown.stdout and "line 3: 3 fields" in shown.stdout
    (root / "jobs" / "bookings.yaml").write_text(
        "connector: plant\nmapping: bookings\nschedule: '0 * * * *'\n"
    )
    checked = etl(root, "status", "--check")
    assert checked.returncode != 0
    assert "bad file(s) skipped: b_2.csv" in checked.stderr

    # unchanged, the bad file is not read again; its message stays in every run's audit row
    again = run_job(load_project(root), "bookings")
    assert (again.runs_inserted, again.runs_deleted) == (0, 0)
    assert len(again.skipped) == 1 and "b_2.csv: line 3" in again.skipped[0]

    # fixed days later (the watermark is long past its rows): the run reaches back for it
    write_csv(folder / "b_2.csv", good_2, ago_s=10)
    fixed = run_job(load_project(root), "bookings")
    assert fixed.skipped == []
    assert (fixed.runs_inserted, fixed.runs_updated, fixed.runs_deleted) == (1, 0, 0)
    assert keyed(root)[("M1", "B")] == (utc(day(9, 6)), utc(day(9, 8)))
    assert ledger(root)["b_2.csv"] == ("ok", None)
    assert etl(root, "run", "bookings").returncode == 0  # writes the metrics
    assert metric(root, "bad_files") == "0"
    assert "BAD FILE" not in etl(root, "status").stdout


def test_each_kind_of_bad_file_names_the_file_and_the_line(tmp_path: Path) -> None:
    root, folder = project(tmp_path)
    header = "MASCHINE,AUFTRAG,ART,ZEIT,WERK\n"
    stamp = day(3, 6).isoformat()
    (folder / "b_1_empty.csv").write_bytes(b"")
    (folder / "b_2_header.csv").write_text("MASCHINE,AUFTRAG,ART,WERK\nM1,A,10,1000\n")
    (folder / "b_3_extra.csv").write_text(f"{header}M1,A,10,{stamp},1000\nM1,A,20,{stamp},1000,x\n")
    (folder / "b_4_latin1.csv").write_bytes(f"{header}Säge,A,10,{stamp},1000\n".encode("latin-1"))
    write_csv(folder / "b_5_good.csv", run_rows("M2", "G", day(3, 6), day(3, 7)))
    result = run_job(load_project(root), "bookings")
    messages = dict(zip(["empty", "header", "extra", "latin1"], result.skipped, strict=True))
    assert "b_1_empty.csv: line 1: the file is empty" in messages["empty"]
    assert "b_2_header.csv: line 1: column(s) 'ZEIT' not in the header" in messages["header"]
    assert "b_3_extra.csv: line 3: 6 fields, the header has 5" in messages["extra"]
    assert "b_4_latin1.csv: line 2: not valid utf-8 text" in messages["latin1"]
    assert set(keyed(root)) == {("M2", "G")}


def test_a_re_delivered_file_replaces_exactly_what_it_delivered_wherever_it_lies(
    tmp_path: Path,
) -> None:
    root, folder = project(tmp_path)
    old = [
        *run_rows("M1", "A", day(10, 6), day(10, 8)),
        *run_rows("M1", "B", day(10, 9), day(10, 11)),
        ("M1", "B", 77, day(10, 10)),  # an unknown event code: an anomaly of this file
    ]
    write_csv(folder / "b_1.csv", old)
    write_csv(folder / "b_2.csv", run_rows("M2", "C", day(9, 6), day(9, 8)))
    write_csv(folder / "b_3.csv", run_rows("M3", "D", day(1, 6), day(1, 8)))
    run_job(load_project(root), "bookings")
    with sqlite3.connect(root / "store.sqlite") as conn:
        [(kind, _when)] = conn.execute("SELECT kind, ts FROM anomalies").fetchall()
        [c_sync] = conn.execute("SELECT sync_id FROM production_runs WHERE order_code = 'C'")
    assert kind == "unknown_event"
    run_job(load_project(root), "bookings")  # a later run: b_1's day is far behind its window

    # corrected: A ends later, B is gone (and its anomaly), E starts a day earlier than before
    write_csv(
        folder / "b_1.csv",
        [
            *run_rows("M1", "E", day(11, 6), day(11, 7)),
            *run_rows("M1", "A", day(10, 6), day(10, 8, 30)),
        ],
        ago_s=10,
    )
    result = run_job(load_project(root), "bookings")
    assert (result.runs_inserted, result.runs_updated, result.runs_deleted) == (1, 1, 1)
    runs = keyed(root)
    assert set(runs) == {("M1", "E"), ("M1", "A"), ("M2", "C"), ("M3", "D")}
    assert runs[("M1", "A")] == (utc(day(10, 6)), utc(day(10, 8, 30)))
    with sqlite3.connect(root / "store.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM anomalies").fetchone() == (0,)
        # b_2's run was re-derived the same and not rewritten
        assert conn.execute(
            "SELECT sync_id FROM production_runs WHERE order_code = 'C'"
        ).fetchone() == tuple(c_sync)
    assert result.window_lo.astimezone(BERLIN).replace(tzinfo=None) <= day(11, 6)

    # the same content delivered again (a new mtime only) changes nothing and reaches back not
    write_csv(
        folder / "b_1.csv",
        [
            *run_rows("M1", "E", day(11, 6), day(11, 7)),
            *run_rows("M1", "A", day(10, 6), day(10, 8, 30)),
        ],
        ago_s=3,
    )
    same = run_job(load_project(root), "bookings")
    assert (same.runs_inserted, same.runs_updated, same.runs_deleted) == (0, 0, 0)
    assert same.window_lo.astimezone(BERLIN).replace(tzinfo=None) > day(4, 0)


def test_a_file_that_disappears_keeps_its_runs_by_default(tmp_path: Path) -> None:
    root, folder = project(tmp_path)
    write_csv(folder / "b_1.csv", run_rows("M1", "A", day(1, 6), day(1, 8)))
    write_csv(folder / "b_2.csv", run_rows("M2", "B", day(1, 6), day(1, 9)))
    run_job(load_project(root), "bookings")
    (folder / "b_2.csv").unlink()  # inside the re-read window
    result = run_job(load_project(root), "bookings")
    assert result.runs_deleted == 0
    assert set(keyed(root)) == {("M1", "A"), ("M2", "B")}
    assert ledger(root)["b_2.csv"] == ("gone", None)
    preview = etl(root, "preview", "bookings")
    assert "gone     b_2.csv (read by an earlier run; its runs stay as stored)" in preview.stdout


def test_missing_forget_removes_a_gone_file_s_runs_wherever_they_lie(tmp_path: Path) -> None:
    root, folder = project(
        tmp_path, CONNECTOR.replace("settle: 0s", "settle: 0s\n  missing: forget")
    )
    write_csv(folder / "b_1.csv", run_rows("M1", "A", day(12, 6), day(12, 8)))
    write_csv(folder / "b_2.csv", run_rows("M2", "B", day(1, 6), day(1, 9)))
    run_job(load_project(root), "bookings")
    (folder / "b_1.csv").unlink()  # its day is far behind the re-read window
    result = run_job(load_project(root), "bookings")
    assert result.runs_deleted == 1
    assert set(keyed(root)) == {("M2", "B")}
    assert "b_1.csv" not in ledger(root)


def test_missing_error_stops_a_run_whose_window_the_gone_file_lies_in(tmp_path: Path) -> None:
    root, folder = project(
        tmp_path, CONNECTOR.replace("settle: 0s", "settle: 0s\n  missing: error")
    )
    write_csv(folder / "b_1.csv", run_rows("M1", "A", day(1, 6), day(1, 8)))
    run_job(load_project(root), "bookings")
    (folder / "b_1.csv").unlink()
    with pytest.raises(SourceError, match=r"b_1.csv read by an earlier run is gone") as caught:
        run_job(load_project(root), "bookings")
    assert caught.value.exit_code == 3
    assert set(keyed(root)) == {("M1", "A")}


def test_a_file_being_rewritten_keeps_its_runs_until_it_settles(tmp_path: Path) -> None:
    root, folder = project(tmp_path, CONNECTOR.replace("settle: 0s", "settle: 10m"))
    write_csv(folder / "b_1.csv", run_rows("M1", "A", day(1, 6), day(1, 8)), ago_s=3600)
    write_csv(folder / "b_2.csv", run_rows("M2", "B", day(1, 6), day(1, 9)), ago_s=3600)
    run_job(load_project(root), "bookings")
    write_csv(folder / "b_2.csv", run_rows("M2", "B", day(1, 6), None), ago_s=1)  # half copied
    result = run_job(load_project(root), "bookings")
    assert (result.runs_updated, result.runs_deleted) == (0, 0)
    assert keyed(root)[("M2", "B")] == (utc(day(1, 6)), utc(day(1, 9)))


def test_a_known_file_that_turns_bad_keeps_its_runs_and_their_anomalies_stay_out(
    tmp_path: Path,
) -> None:
    root, folder = project(tmp_path)
    write_csv(folder / "b_1.csv", run_rows("M1", "A", day(1, 6), day(1, 8)))
    # B starts in b_2 and ends in b_3: without b_2 its END would be an orphan
    write_csv(folder / "b_2.csv", [("M1", "B", 10, day(1, 9)), ("M2", "C", 10, day(1, 9))])
    write_csv(folder / "b_3.csv", [("M1", "B", 20, day(1, 11)), ("M2", "C", 20, day(1, 10))])
    run_job(load_project(root), "bookings")
    before = keyed(root)
    (folder / "b_2.csv").write_text("MASCHINE,AUFTRAG,ART,ZEIT,WERK\nM1,B,10")
    os.utime(folder / "b_2.csv", (time.time() - 60, time.time() - 60))
    result = run_job(load_project(root), "bookings")
    assert len(result.skipped) == 1 and "b_2.csv: line 2: 3 fields" in result.skipped[0]
    assert result.anomalies == {}
    assert (result.runs_inserted, result.runs_updated, result.runs_deleted) == (0, 0, 0)
    assert keyed(root) == before
