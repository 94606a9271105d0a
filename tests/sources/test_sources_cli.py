"""The commands on file-drop and HTTP connectors: check, preview, run, discover (exit codes and
what they print, secrets hidden)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from etl.cli import main
from tests.support.sources import BERLIN, BOOKINGS, DAY, Api, write_project

CSV = "kind: files\ntimezone: Europe/Berlin\nfiles:\n  location: drop\n  settle: 0s\n  tables:\n    BUCHUNGEN: {glob: '*.csv', delimiter: ';'}\n"


def etl(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api((DAY + timedelta(days=1)).replace(tzinfo=BERLIN))
    try:
        yield server
    finally:
        server.close()


def files_project(tmp_path: Path) -> Path:
    root = write_project(tmp_path / "p", CSV)
    (root / "drop").mkdir()
    lines = ["MASCHINE;AUFTRAG;ART;ZEIT;WERK"]
    lines += [f"{m};{o};{e};{w:%Y-%m-%d %H:%M:%S};{p}" for m, o, e, w, p in BOOKINGS]
    (root / "drop" / "export-1.csv").write_text("\n".join(lines) + "\n")
    return root


def http_project(tmp_path: Path, api: Api) -> Path:
    connector = (
        f"kind: http\ntimezone: Europe/Berlin\nhttp:\n  base_url: {api.url}\n"
        "  auth: {type: bearer, token: '${API_TOKEN}'}\n  endpoints:\n    BUCHUNGEN:\n"
        "      path: /bearer/odata/v4/Bookings\n      odata: 4\n"
    )
    return write_project(tmp_path / "p", connector)


def test_check_lists_the_files_and_reads_the_first(tmp_path: Path) -> None:
    root = files_project(tmp_path)
    code, out, _ = etl("--project", str(root), "check", "plant")
    assert code == 0
    assert "ok   bookings <- bookings: files *.csv: 1 file(s) ready; export-1.csv: 6 rows" in out
    (root / "drop" / "export-2.csv").write_text("MASCHINE;ZEIT\nM1;x\n")
    (root / "drop" / "export-1.csv").unlink()
    code, out, _err = etl("--project", str(root), "check", "plant")
    assert code == 4
    assert "FAIL bookings" in out and "not in the header" in out


def test_check_fetches_the_first_page_and_hides_the_token(tmp_path: Path, api: Api) -> None:
    root = http_project(tmp_path, api)
    code, out, _ = etl("--project", str(root), "check", "plant", env={"API_TOKEN": Api.TOKEN})
    assert code == 0
    assert "HTTP 200, 2 record(s) on the first page, the mapped fields all there" in out
    code, out, err = etl(
        "--project", str(root), "check", "plant", env={"API_TOKEN": "nope-token-123"}
    )
    assert code == 3
    assert "HTTP 401 unauthorized" in err and "nope-token-123" not in out + err
    assert Api.TOKEN not in out + err


def test_preview_shows_the_requests_and_run_commits(tmp_path: Path, api: Api) -> None:
    root = http_project(tmp_path, api)
    env = {"API_TOKEN": Api.TOKEN}
    code, out, _ = etl("--project", str(root), "preview", "bookings", env=env)
    assert code == 0, out
    assert f"GET {api.url}/bearer/odata/v4/Bookings?$top=1000" in out
    assert f"GET {api.url}/bearer/odata/v4/Bookings?$skiptoken=2" in out
    assert "the endpoint has no time filter" in out
    assert "runs  3 (1 open)" in out
    assert Api.TOKEN not in out
    assert not (root / "store.sqlite").exists()  # a dry run writes nothing
    code, out, _ = etl("--project", str(root), "run", "bookings", env=env)
    assert code == 0


def test_preview_of_a_file_drop_names_the_files(tmp_path: Path) -> None:
    root = files_project(tmp_path)
    code, out, _ = etl("--project", str(root), "preview", "bookings")
    assert code == 0, out
    assert "read     export-1.csv" in out and "runs  3 (1 open)" in out


def test_discover_lists_a_file_drop_s_tables_and_refuses_a_schema(tmp_path: Path) -> None:
    root = files_project(tmp_path)
    code, out, _err = etl("--project", str(root), "discover", "plant")
    assert code == 0
    assert "1 file table(s)" in out and "BUCHUNGEN" in out and "ZEIT text" in out
    code, _out, err = etl("--project", str(root), "discover", "plant", "--schema", "dbo")
    assert code == 2 and "no schemas" in err
