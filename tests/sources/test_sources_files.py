"""File-drop connectors on real files (and real S3 through the moto server): German CSV exports,
TSV with a BOM, Excel workbooks, JSON lines; the ledger, files still being written, bad files."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from etl.config.loader import load_project
from etl.pipeline.run import run_job
from etl.sources.files.formats import read_file
from etl.sources.files.spec import FileTable
from tests.conftest import S3Server
from tests.support.sources import (
    BOOKINGS,
    at,
    expected_runs,
    store_runs,
    sync_rows,
    utc,
    write_project,
)

GERMAN = """\
kind: files
timezone: Europe/Berlin
files:
  location: drop
  settle: 0s
  tables:
    BUCHUNGEN:
      glob: "buchungen_*.csv"
      delimiter: ";"
      encoding: cp1252
      decimal: ","
      skip_rows: 1
      footer_rows: 1
      datetime_format: ["%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M"]
"""


def german_csv(rows: list[tuple[str, str, int, datetime, str]]) -> bytes:
    """An ERP export: a title line, ';', decimal-comma codes, DD.MM.YYYY, a totals line, cp1252."""
    lines = ["Rückmeldungen Werk München;;;;", "MASCHINE;AUFTRAG;ART;ZEIT;WERK"]
    for machine, order, event, when, plant in rows:
        lines.append(f"{machine};{order};{event},00;{when:%d.%m.%Y %H:%M};{plant}")
    lines.append(f"Summe;{len(rows)} Sätze;;;")
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


def drop_folder(root: Path) -> Path:
    folder = root / "drop"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_a_german_csv_export_over_two_files_folds_into_the_runs_of_the_table(
    tmp_path: Path,
) -> None:
    root = write_project(tmp_path / "p", GERMAN)
    folder = drop_folder(root)
    # M1's run B starts in the first file and ends in the second: one run
    (folder / "buchungen_1.csv").write_bytes(german_csv(BOOKINGS[:3]))
    (folder / "buchungen_2.csv").write_bytes(german_csv(BOOKINGS[3:]))
    (folder / "other.csv").write_text("not;a;booking\n")  # outside the glob
    result = run_job(load_project(root), "bookings")
    assert result.rows_read == 5  # plant 2000's row is filtered out
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())
    assert result.anomalies == {}


def test_a_re_exported_file_under_the_same_name_is_read_again(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", GERMAN)
    folder = drop_folder(root)
    first = folder / "buchungen_1.csv"
    first.write_bytes(german_csv(BOOKINGS))
    os.utime(first, (time.time() - 100, time.time() - 100))
    run_job(load_project(root), "bookings")
    corrected = [
        (m, o, e, w.replace(minute=45) if (o, e) == ("B", 20) else w, p)
        for m, o, e, w, p in BOOKINGS
    ]
    first.write_bytes(german_csv(corrected))
    os.utime(first, (time.time() - 50, time.time() - 50))  # the same size, a later copy
    result = run_job(load_project(root), "bookings")
    assert result.runs_updated == 1
    runs = store_runs(root)
    end_b = runs.loc[runs["order_code"] == "B", "end"].iloc[0]
    assert end_b == utc(at(11, 45))
    import sqlite3

    with sqlite3.connect(root / "store.sqlite") as conn:
        ledger = conn.execute(
            "SELECT path, size, rows, length(sha256) FROM source_files"
        ).fetchall()
    assert ledger == [("buchungen_1.csv", first.stat().st_size, 6, 64)]


def test_a_file_still_being_written_waits_for_a_later_run(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", GERMAN.replace("settle: 0s", "settle: 10m"))
    folder = drop_folder(root)
    growing = folder / "buchungen_1.csv"
    growing.write_bytes(german_csv(BOOKINGS))
    assert run_job(load_project(root), "bookings").rows_read == 0
    assert store_runs(root).empty
    settled = time.time() - 3600
    os.utime(growing, (settled, settled))
    assert run_job(load_project(root), "bookings").rows_read == 5
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())


def test_a_marker_file_releases_an_export(tmp_path: Path) -> None:
    root = write_project(
        tmp_path / "p", GERMAN.replace("settle: 0s", "settle: 0s\n  marker: .done")
    )
    folder = drop_folder(root)
    (folder / "buchungen_1.csv").write_bytes(german_csv(BOOKINGS))
    assert run_job(load_project(root), "bookings").rows_read == 0
    (folder / "buchungen_1.csv.done").write_text("")
    assert run_job(load_project(root), "bookings").rows_read == 5


def test_a_truncated_file_is_skipped_naming_file_and_line_and_the_others_commit(
    tmp_path: Path,
) -> None:
    root = write_project(tmp_path / "p", GERMAN)
    folder = drop_folder(root)
    (folder / "buchungen_1.csv").write_bytes(german_csv(BOOKINGS[:3]))
    broken = german_csv(BOOKINGS[3:]).decode("cp1252").splitlines()
    broken[3] = "M1;B;20,00"  # cut off in the middle of the third data line
    (folder / "buchungen_2.csv").write_bytes("\r\n".join(broken).encode("cp1252"))
    result = run_job(load_project(root), "bookings")
    [skipped] = result.skipped
    assert "buchungen_2.csv: line 4: 3 fields, the header has 5" in skipped
    assert result.rows_read == 3  # the first file's
    runs = store_runs(root)
    assert list(runs["order_code"]) == ["A", "B"]  # B still open: its end is in the bad file
    [(status, _rows, error)] = sync_rows(root)
    assert status == "ok" and "buchungen_2.csv: line 4" in error


def test_a_file_in_another_encoding_says_which_to_declare(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", GERMAN.replace("encoding: cp1252", "encoding: utf-8"))
    rows = [("Säge", "A", 10, at(6, 0), "1000"), *BOOKINGS]
    (drop_folder(root) / "buchungen_1.csv").write_bytes(german_csv(rows))
    [skipped] = run_job(load_project(root), "bookings").skipped
    assert "buchungen_1.csv: line 3: not valid utf-8 text" in skipped


def test_a_missing_column_names_the_header_it_found(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", GERMAN.replace("skip_rows: 1", "skip_rows: 0"))
    (drop_folder(root) / "buchungen_1.csv").write_bytes(german_csv(BOOKINGS))
    [skipped] = run_job(load_project(root), "bookings").skipped
    assert re.search(
        r"buchungen_1.csv: line 1: column\(s\) 'ZEIT', .* not in the header \(columns: Rückmeldungen",
        skipped,
    )


def test_tsv_with_a_byte_order_mark_and_iso_times(tmp_path: Path) -> None:
    connector = """\
kind: files
timezone: Europe/Berlin
files:
  location: drop
  settle: 0s
  tables:
    BUCHUNGEN: {glob: "*.tsv"}
"""
    root = write_project(tmp_path / "p", connector)
    lines = ["MASCHINE\tAUFTRAG\tART\tZEIT\tWERK"]
    lines += [f"{m}\t{o}\t{e}\t{w.isoformat()}\t{p}" for m, o, e, w, p in BOOKINGS]
    (drop_folder(root) / "export.tsv").write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode())
    run_job(load_project(root), "bookings")
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())


def test_an_excel_workbook_with_date_cells_serial_numbers_and_text_codes(tmp_path: Path) -> None:
    connector = """\
kind: files
timezone: Europe/Berlin
files:
  location: drop
  settle: 0s
  tables:
    BUCHUNGEN: {glob: "*.xlsx", sheet: Buchungen, header_row: 3}
"""
    root = write_project(tmp_path / "p", connector)
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Buchungen"
    sheet.append(["Export BDE"])
    sheet.append([])
    sheet.append(["MASCHINE", "AUFTRAG", "ART", "ZEIT", "WERK"])
    for i, (machine, order, event, when, plant) in enumerate(BOOKINGS):
        # a date cell, or the bare serial number of the 1900 system (a cell without format)
        serial = (when - datetime(1899, 12, 30)).total_seconds() / 86400
        sheet.append([machine, order, event, when if i % 2 else serial, int(plant)])
    book.save(drop_folder(root) / "buchungen.xlsx")
    run_job(load_project(root), "bookings")
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())


def test_excel_serials_of_the_1900_system_and_codes_kept_as_text(tmp_path: Path) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["ZEIT", "CODE"])
    for serial, code in ((59, "007"), (60, "008"), (61, 9), (45627.25, "010")):
        sheet.append([serial, code])
    path = tmp_path / "serials.xlsx"
    book.save(path)
    frame = read_file(
        path.read_bytes(), "serials.xlsx", FileTable(glob="*"), ["ZEIT", "CODE"], ["ZEIT"]
    )
    assert frame["ZEIT"].tolist()[:1] == [pd.Timestamp("1900-02-28")]
    assert pd.isna(frame["ZEIT"].iloc[1])  # the 1900-02-29 that never was
    assert frame["ZEIT"].tolist()[2:] == [
        pd.Timestamp("1900-03-01"),
        pd.Timestamp("2024-12-01 06:00"),
    ]
    assert frame["CODE"].tolist() == ["007", "008", 9, "010"]


def test_json_lines_with_nested_fields_as_dotted_columns(tmp_path: Path) -> None:
    connector = """\
kind: files
timezone: Europe/Berlin
files:
  location: drop
  settle: 0s
  tables:
    BUCHUNGEN: {glob: "*.jsonl"}
"""
    root = write_project(tmp_path / "p", connector)
    mapping = root / "mappings" / "bookings.yaml"
    mapping.write_text(
        mapping.read_text().replace("machine_code: MASCHINE", "machine_code: res.MASCHINE")
    )
    lines = [
        json.dumps(
            {"res": {"MASCHINE": m}, "AUFTRAG": o, "ART": e, "ZEIT": w.isoformat(), "WERK": p}
        )
        for m, o, e, w, p in BOOKINGS
    ]
    (drop_folder(root) / "b.jsonl").write_text("\n".join(lines) + "\n")
    run_job(load_project(root), "bookings")
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())
    (drop_folder(root) / "b.jsonl").write_text(lines[0] + "\n{not json\n")
    [skipped] = run_job(load_project(root), "bookings").skipped
    assert "b.jsonl: line 2: not JSON" in skipped
    # the runs the file delivered when it read stay as stored while it does not
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())


def test_a_drop_under_an_s3_prefix(tmp_path: Path, s3: S3Server) -> None:
    connector = GERMAN.replace(
        "location: drop",
        f"location: s3://{s3.bucket}/exports\n  s3: {{endpoint: '{s3.endpoint}', region: eu-central-1}}",
    )
    root = write_project(tmp_path / "p", connector)
    client = s3.client()
    client.put_object(
        Bucket=s3.bucket, Key="exports/buchungen_1.csv", Body=german_csv(BOOKINGS[:3])
    )  # type: ignore[attr-defined]
    client.put_object(
        Bucket=s3.bucket, Key="exports/buchungen_2.csv", Body=german_csv(BOOKINGS[3:])
    )  # type: ignore[attr-defined]
    client.put_object(Bucket=s3.bucket, Key="elsewhere/buchungen_3.csv", Body=b"x")  # type: ignore[attr-defined]
    result = run_job(load_project(root), "bookings")
    assert result.rows_read == 5
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())


ORDERS_MAPPING = """\
structure: orders
source: {table: AUFTRAG}
columns:
  order_code: FANR
  machine_code: ARBPL
  start: START_ZEIT
  end: ENDE_ZEIT
"""


def test_an_order_export_keeps_an_open_run_open_until_a_later_file_closes_it(
    tmp_path: Path,
) -> None:
    connector = """\
kind: files
timezone: Europe/Berlin
files:
  location: drop
  settle: 0s
  tables:
    AUFTRAG: {glob: "auftrag_*.csv", datetime_format: "%d.%m.%Y %H:%M"}
"""
    root = write_project(tmp_path / "p", connector)
    (root / "mappings" / "orders.yaml").write_text(ORDERS_MAPPING)
    (root / "jobs" / "orders.yaml").write_text("connector: plant\nmapping: orders\n")
    (root / "jobs" / "bookings.yaml").unlink()  # this connector lists no BUCHUNGEN files
    folder = drop_folder(root)
    (folder / "auftrag_1.csv").write_text(
        f"FANR,ARBPL,START_ZEIT,ENDE_ZEIT\nFA1,M1,{at(6, 0):%d.%m.%Y %H:%M},\n"
        f"FA2,M2,{at(7, 0):%d.%m.%Y %H:%M},{at(9, 30):%d.%m.%Y %H:%M}\n"
    )
    first = run_job(load_project(root), "orders")
    assert (first.runs_inserted, first.runs_open) == (2, 1)
    # the next export closes FA1; the first file, holding FA1 open, is still there and read
    (folder / "auftrag_2.csv").write_text(
        f"FANR,ARBPL,START_ZEIT,ENDE_ZEIT\nFA1,M1,{at(6, 0):%d.%m.%Y %H:%M},{at(12, 0):%d.%m.%Y %H:%M}\n"
    )
    second = run_job(load_project(root), "orders")
    runs = store_runs(root, "orders")
    assert runs.loc[runs["order_code"] == "FA1", "end"].tolist() == [utc(at(12, 0))]
    assert second.runs_open == 0 and len(runs) == 2


def test_a_table_the_connector_does_not_list_is_a_config_error_at_load(tmp_path: Path) -> None:
    from etl.errors import ConfigError

    root = write_project(tmp_path / "p", GERMAN.replace("BUCHUNGEN:", "RUECKMELDUNGEN:"))
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    assert (
        "connectors/plant.yaml: files.tables: no entry 'BUCHUNGEN' (the table "
        "mappings/bookings.yaml reads; listed: RUECKMELDUNGEN)" in caught.value.problems
    )
    mapping = root / "mappings" / "bookings.yaml"
    mapping.write_text(mapping.read_text().replace("{table: BUCHUNGEN}", "{query: 'SELECT 1'}"))
    with pytest.raises(ConfigError, match=r"source.query: a kind files connector \(plant\) reads"):
        load_project(root)
