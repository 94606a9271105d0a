"""``etl discover`` on a file drop (real CSV, Excel and JSON-lines files) and on an HTTP API (a
real server on loopback, OData v2 and v4): the proposed mapping, written with ``--job``, reads
the same runs as the hand-written one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from etl.cli import main
from etl.config.loader import load_project
from etl.pipeline.run import run_job
from tests.sources.test_sources_files import GERMAN, german_csv
from tests.sources.test_sources_xls import XLS_CONNECTOR, booking_sheets
from tests.support.sources import (
    BERLIN,
    BOOKINGS,
    DAY,
    Api,
    expected_runs,
    store_runs,
    write_project,
)


def etl(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, ["--project", str(root), *args], env=env, catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api((DAY + timedelta(days=1)).replace(tzinfo=BERLIN))
    try:
        yield server
    finally:
        server.close()


def proposed(root: Path, env: dict[str, str] | None = None) -> dict[str, object]:
    """The mapping ``etl discover plant --table BUCHUNGEN`` proposes, parsed."""
    code, out, err = etl(root, "discover", "plant", "--table", "BUCHUNGEN", env=env)
    assert code == 0, err
    mapping = yaml.safe_load(out)
    assert isinstance(mapping, dict)
    return mapping


def run_proposed(root: Path, env: dict[str, str] | None = None) -> None:
    """Write the proposal as job 'disc' (its plant filter switched on) and run it."""
    code, out, err = etl(
        root, "discover", "plant", "--table", "BUCHUNGEN", "--job", "disc", env=env
    )
    assert code == 0, err
    assert "$ etl preview disc" in out and "rows read  6" in out
    path = root / "mappings" / "disc.yaml"
    text = path.read_text().replace("# filters:", "filters:")
    path.write_text(text.replace("  # - {column: WERK", "  - {column: WERK"))
    run_job(load_project(root), "disc")
    pd.testing.assert_frame_equal(store_runs(root, "disc"), expected_runs())


def test_a_german_csv_drop_gets_the_mapping_a_person_would_write(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", GERMAN)
    (root / "drop").mkdir()
    (root / "drop" / "buchungen_1.csv").write_bytes(german_csv(BOOKINGS[:3]))
    (root / "drop" / "buchungen_2.csv").write_bytes(german_csv(BOOKINGS[3:]))
    (root / "drop" / "buchungen_3.csv").write_bytes(b"MASCHINE;ZEIT\r\nM1")  # bad: noted
    code, out, _ = etl(root, "discover", "plant")
    assert code == 0
    assert "BUCHUNGEN" in out and "ZEIT datetime" in out  # the connector's datetime_format
    mapping = proposed(root)
    assert mapping["structure"] == "bookings"
    assert mapping["source"] == {"table": "BUCHUNGEN"}
    assert mapping["columns"] == {
        "timestamp": "ZEIT",
        "order_code": "AUFTRAG",
        "machine_code": "MASCHINE",
        "event": "ART",
    }
    assert mapping["events"] == {"START": [10], "END": [20]}  # decimal-comma codes read as 10
    _, out, _ = etl(root, "discover", "plant", "--table", "BUCHUNGEN")
    assert "not sampled: " in out and "buchungen_3.csv" in out
    run_proposed(root)


def test_text_times_without_a_declared_format_get_one_in_the_mapping(tmp_path: Path) -> None:
    connector = GERMAN.replace(
        '      datetime_format: ["%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M"]\n', ""
    )
    root = write_project(tmp_path / "p", connector)
    (root / "drop").mkdir()
    (root / "drop" / "buchungen_1.csv").write_bytes(german_csv(BOOKINGS))
    columns = proposed(root)["columns"]
    assert isinstance(columns, dict)
    assert columns["timestamp"] == {"column": "ZEIT", "format": "%d.%m.%Y %H:%M"}
    run_proposed(root)


def test_an_excel_workbook_and_json_lines(tmp_path: Path) -> None:
    connector = GERMAN.replace('glob: "buchungen_*.csv"', 'glob: "*.xlsx"\n      sheet: Daten')
    connector = connector.replace("      footer_rows: 1\n", "")
    root = write_project(tmp_path / "p", connector)
    (root / "drop").mkdir()
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Daten"
    sheet.append(["MASCHINE", "AUFTRAG", "ART", "ZEIT", "WERK"])
    for machine, order, event, when, plant in BOOKINGS:
        sheet.append([machine, order, event, when, plant])
    book.save(root / "drop" / "b.xlsx")
    assert proposed(root)["columns"] == {
        "timestamp": "ZEIT",
        "order_code": "AUFTRAG",
        "machine_code": "MASCHINE",
        "event": "ART",
    }
    run_proposed(root)

    jsonl = connector.replace('glob: "*.xlsx"\n      sheet: Daten', 'glob: "*.jsonl"')
    other = write_project(tmp_path / "j", jsonl)
    (other / "drop").mkdir()
    lines = [
        json.dumps(
            {"res": {"MASCHINE": m}, "AUFTRAG": o, "ART": e, "ZEIT": w.isoformat(), "WERK": p}
        )
        for m, o, e, w, p in BOOKINGS
    ]
    (other / "drop" / "b.jsonl").write_text("\n".join(lines) + "\n")
    columns = proposed(other)["columns"]
    assert isinstance(columns, dict)
    assert columns["machine_code"] == "res.MASCHINE"
    assert columns["timestamp"] == "ZEIT"  # ISO wall-clock text, read by the mapping as such


def test_a_legacy_xls_workbook(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", XLS_CONNECTOR)
    (root / "drop").mkdir()
    (root / "drop" / "b.xls").write_bytes(booking_sheets(BOOKINGS))
    assert proposed(root)["columns"] == {
        "timestamp": "ZEIT",
        "order_code": "AUFTRAG",
        "machine_code": "MASCHINE",
        "event": "ART",
    }
    run_proposed(root)


@pytest.mark.parametrize("version", [4, 2])
def test_an_odata_api_gets_a_mapping_that_reads_its_instants(
    tmp_path: Path, api: Api, version: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", Api.TOKEN)  # for the run
    connector = (
        f"kind: http\ntimezone: Europe/Berlin\nhttp:\n  base_url: {api.url}\n"
        "  auth: {type: bearer, token: '${API_TOKEN}'}\n  endpoints:\n    BUCHUNGEN:\n"
        f"      path: /bearer/odata/v{version}/Bookings\n      odata: {version}\n"
    )
    root = write_project(tmp_path / "p", connector)
    env = {"API_TOKEN": Api.TOKEN}
    code, out, err = etl(root, "discover", "plant", env=env)
    assert code == 0, err
    assert "1 endpoint(s)" in out and "ZEIT instant" in out
    _, text, _ = etl(root, "discover", "plant", "--table", "BUCHUNGEN", env=env)
    assert Api.TOKEN not in text
    assert "6 records of 3 page(s)" in text and "instants (the zone is in the data)" in text
    mapping = proposed(root, env)
    assert mapping["columns"] == {
        "timestamp": "ZEIT",
        "order_code": "AUFTRAG",
        "machine_code": "MASCHINE",
        "event": "ART",
    }
    run_proposed(root, env)


def test_an_api_without_its_token_and_an_unknown_table_say_so(tmp_path: Path, api: Api) -> None:
    connector = (
        f"kind: http\ntimezone: Europe/Berlin\nhttp:\n  base_url: {api.url}\n"
        "  auth: {type: bearer, token: '${API_TOKEN}'}\n  endpoints:\n    BUCHUNGEN:\n"
        "      path: /bearer/odata/v4/Bookings\n      odata: 4\n"
    )
    root = write_project(tmp_path / "p", connector)
    code, _out, err = etl(root, "discover", "plant", "--table", "BUCHUNGEN", env={"API_TOKEN": "x"})
    assert code == 3 and "401" in err
    code, _out, err = etl(root, "discover", "plant", "--table", "NOPE", env={"API_TOKEN": "x"})
    assert code == 4 and "no entry 'NOPE' (entries: BUCHUNGEN)" in err
