"""Legacy Excel ``.xls`` workbooks in a file drop, on real files written by xlwt: the header row,
a sheet by name, date cells and serial numbers, numbers, empty cells, a truncated file; a run of
a drop of .xls files gives the runs of the same data exported as CSV."""

from __future__ import annotations

import io
import re
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
import xlwt
from click.testing import CliRunner

from etl.cli import main
from etl.config.loader import load_project
from etl.errors import DataError
from etl.pipeline.run import run_job
from etl.sources.files.formats import read_file
from etl.sources.files.spec import FileTable
from tests.support.sources import BOOKINGS, at, expected_runs, store_runs, write_project

Cell = str | int | float | datetime | date | None

_STAMP = xlwt.easyxf(num_format_str="YYYY-MM-DD HH:MM:SS")
_DAY = xlwt.easyxf(num_format_str="YYYY-MM-DD")


def xls(sheets: dict[str, list[list[Cell]]]) -> bytes:
    """A real .xls workbook (BIFF8): one sheet per entry, its rows from row 1; None leaves a
    cell empty, datetimes and dates are date cells."""
    book = xlwt.Workbook()
    for title, rows in sheets.items():
        sheet = book.add_sheet(title)
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                if value is None:
                    continue
                if isinstance(value, datetime):
                    sheet.write(r, c, value, _STAMP)
                elif isinstance(value, date):
                    sheet.write(r, c, value, _DAY)
                else:
                    sheet.write(r, c, value)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


HEADER = ["MASCHINE", "AUFTRAG", "ART", "ZEIT", "WERK"]


def booking_sheets(rows: list[tuple[str, str, int, datetime, str | None]]) -> bytes:
    """A BDE export: a cover sheet, then sheet 'Buchungen' with a title line above the header
    (row 2); the plant as a number cell."""
    data: list[list[Cell]] = [["Rückmeldungen Werk München"], list(HEADER)]
    data += [[m, o, e, w, None if p is None else int(p)] for m, o, e, w, p in rows]
    return xls({"Deckblatt": [["Export BDE"]], "Buchungen": data})


XLS_CONNECTOR = """\
kind: files
timezone: Europe/Berlin
files:
  location: drop
  settle: 0s
  tables:
    BUCHUNGEN: {glob: "*.xls", sheet: Buchungen, header_row: 2}
"""

CSV_CONNECTOR = """\
kind: files
timezone: Europe/Berlin
files:
  location: drop
  settle: 0s
  tables:
    BUCHUNGEN: {glob: "*.csv"}
"""


def test_a_named_sheet_below_its_header_row_with_dates_numbers_and_empty_cells(
    tmp_path: Path,
) -> None:
    stamp = datetime(2026, 11, 30, 6, 15, 30)
    midnight = datetime(2026, 12, 1)
    serial = (datetime(2026, 12, 1, 14, 0) - datetime(1899, 12, 30)).total_seconds() / 86400
    rows: list[list[Cell]] = [
        ["M1", "007", 10, stamp, 2.5],
        ["M2", None, 20, date(2026, 12, 1), 1000],  # an empty cell, a date-only cell
        ["M3", "A-9", 10, midnight, None],
        ["M4", "B", 20, serial, -3],  # a bare serial number in a timestamp column
    ]
    header: list[Cell] = ["MASCHINE", "AUFTRAG", "ART", "ZEIT", "MENGE"]
    content = xls({"Leer": [["nothing here"]], "Daten": [["Export 2026-12"], [], header, *rows]})
    (tmp_path / "bde.xls").write_bytes(content)
    table = FileTable(glob="*.xls", sheet="Daten", header_row=3)
    assert table.format_of("BDE.XLS") == "xls"
    frame = read_file(
        (tmp_path / "bde.xls").read_bytes(), "bde.xls", table, None, ["ZEIT"]
    )  # every column, as for etl discover
    assert list(frame.columns) == ["MASCHINE", "AUFTRAG", "ART", "ZEIT", "MENGE"]
    assert frame["MASCHINE"].tolist() == [r[0] for r in rows]
    assert frame["AUFTRAG"].tolist() == [r[1] for r in rows]  # leading zeros kept, empty None
    assert frame["ART"].tolist() == [r[2] for r in rows]
    assert all(type(v) is int for v in frame["ART"])  # whole numbers as ints, as for .xlsx
    assert frame["MENGE"].tolist() == [r[4] for r in rows]
    times = frame["ZEIT"].tolist()
    assert all(isinstance(v, datetime) for v in times)  # dates, serials included, as datetimes
    assert times == [
        pd.Timestamp(stamp),
        pd.Timestamp(datetime(2026, 12, 1)),
        pd.Timestamp(midnight),
        pd.Timestamp(datetime(2026, 12, 1, 14, 0)),
    ]
    # the sheet by its position (the second), and the first, which has no row 3
    by_position = FileTable(glob="*", sheet=1, header_row=3)
    pd.testing.assert_frame_equal(read_file(content, "bde.xls", by_position, None, ["ZEIT"]), frame)
    with pytest.raises(DataError, match=r"bde\.xls: sheet 'Leer': no header in row 3"):
        read_file(content, "bde.xls", FileTable(glob="*", header_row=3), ["ZEIT"], [])
    with pytest.raises(DataError, match=r"bde\.xls: no sheet 'Buchungen' \(sheets: Leer, Daten\)"):
        read_file(content, "bde.xls", FileTable(glob="*", sheet="Buchungen"), None, [])


@pytest.mark.parametrize("keep", [0.02, 0.5, 0.97])
def test_a_truncated_xls_is_one_clear_error_naming_the_file(
    tmp_path: Path, keep: float, capfd: pytest.CaptureFixture[str]
) -> None:
    content = booking_sheets(BOOKINGS * 40)
    cut = content[: int(len(content) * keep)]
    with pytest.raises(DataError) as caught:
        read_file(cut, "b_2.xls", FileTable(glob="*", sheet="Buchungen", header_row=2), None, [])
    message = str(caught.value)
    assert message.startswith("b_2.xls: not a readable .xls workbook (")
    assert "truncated" in message or "Cannot detect file format" in message
    assert capfd.readouterr().err == ""  # no panic of the Rust reader on the way


def test_a_truncated_xls_in_a_drop_is_skipped_and_the_other_file_commits(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    root = write_project(tmp_path / "p", XLS_CONNECTOR)
    (root / "drop").mkdir()
    (root / "drop" / "b_1.xls").write_bytes(booking_sheets(BOOKINGS[:3]))
    whole = booking_sheets(BOOKINGS[3:])
    (root / "drop" / "b_2.xls").write_bytes(whole[: len(whole) - 700])
    result = run_job(load_project(root), "bookings")
    [skipped] = result.skipped
    assert "b_2.xls: not a readable .xls workbook (truncated" in skipped
    assert result.rows_read == 3
    assert list(store_runs(root)["order_code"]) == ["A", "B"]  # B's end is in the cut file
    assert "panicked" not in capfd.readouterr().err


def _csv(rows: list[tuple[str, str, int, datetime, str | None]]) -> str:
    lines = [",".join(HEADER)]
    lines += [f"{m},{o},{e},{w:%Y-%m-%d %H:%M:%S},{p or ''}" for m, o, e, w, p in rows]
    return "\n".join(lines) + "\n"


def _run(root: Path) -> str:
    result = CliRunner().invoke(
        main, ["--project", str(root), "run", "bookings"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    found = re.search(r"\d+ rows read, \d+ runs in window \([^)]*\)", result.stdout)
    assert found, result.stdout
    return found.group(0)


def test_etl_run_on_xls_files_gives_the_runs_of_the_same_data_as_csv(tmp_path: Path) -> None:
    # M1's run B starts in the first file and ends in the second; a row without a plant (an
    # empty cell) is filtered out like plant 2000's
    rows = [*BOOKINGS, ("M4", "Y", 10, at(7, 30), None)]
    parts = [rows[:3], rows[3:]]
    from_xls = write_project(tmp_path / "xls", XLS_CONNECTOR)
    from_csv = write_project(tmp_path / "csv", CSV_CONNECTOR)
    for root in (from_xls, from_csv):
        (root / "drop").mkdir()
    for number, part in enumerate(parts, start=1):
        (from_xls / "drop" / f"b_{number}.xls").write_bytes(booking_sheets(part))
        (from_csv / "drop" / f"b_{number}.csv").write_text(_csv(part))
    assert _run(from_xls) == _run(from_csv)
    pd.testing.assert_frame_equal(store_runs(from_xls), store_runs(from_csv))
    pd.testing.assert_frame_equal(store_runs(from_xls), expected_runs())
