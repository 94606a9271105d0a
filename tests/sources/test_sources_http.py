"""HTTP API connectors against a real HTTP server on loopback (tests/support/sources.py Api):
every paging style, OData v2 and v4, timestamps in each form, authentication, faults, secrets."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from etl.config.loader import load_project
from etl.errors import DataError, SourceError
from etl.pipeline.run import run_job
from tests.support.sources import (
    BERLIN,
    BOOKINGS,
    DAY,
    Api,
    certificates,
    expected_runs,
    store_runs,
    sync_rows,
    write_project,
)

CLOCK = (DAY + timedelta(days=1, hours=1)).replace(tzinfo=BERLIN)  # the server's Date


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api(CLOCK)
    try:
        yield server
    finally:
        server.close()


def connector(api: Api, endpoint: str, extra: str = "", auth: str = "") -> str:
    return (
        "kind: http\ntimezone: Europe/Berlin\nhttp:\n"
        f"  base_url: {api.url}\n  retries: 3\n  max_wait: 1s\n{auth}"
        f"  endpoints:\n    BUCHUNGEN:\n{endpoint}{extra}"
    )


STYLES = {
    "offset": "      path: /rest/offset\n      records: data.items\n"
    "      paging: {style: offset, size: 2}\n      window: {from: from, to: to}\n",
    "page": "      path: /rest/page\n      records: items\n"
    "      paging: {style: page, size: 2, size_param: size}\n",
    "next_link": "      path: /rest/next\n      records: results\n      paging: {style: next_link}\n",
    "link_header": "      path: /rest/link\n      paging: {style: link_header}\n",
    "cursor": "      path: /rest/cursor\n      records: data\n      paging: {style: cursor}\n",
    "odata4": "      path: /odata/v4/Bookings\n      odata: 4\n      paging: {size: 500}\n",
    "odata2": "      path: /odata/v2/Bookings\n      odata: 2\n",
}


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_paging_style_reads_the_whole_shift(tmp_path: Path, api: Api, style: str) -> None:
    root = write_project(tmp_path / "p", connector(api, STYLES[style]))
    result = run_job(load_project(root), "bookings")
    assert result.rows_read == 5  # plant 2000's record is filtered out
    assert result.window_hi == CLOCK  # the server's clock, not ours
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())
    assert result.anomalies == {}


def test_the_window_goes_out_as_declared_parameters(tmp_path: Path, api: Api) -> None:
    root = write_project(tmp_path / "p", connector(api, STYLES["offset"]))
    run_job(load_project(root), "bookings")
    data = [p for p, _ in api.seen if "from=" in p]
    assert data and all("to=" in p for p in data)
    assert "from=2026-10-31T20%3A00%3A00Z" in data[0]  # start_from 2026-11-01 Berlin - 3h margin
    offsets = [p.split("offset=")[1].split("&")[0] for p in data]
    assert offsets == ["0", "2", "4", "6"]  # to the first empty page


def test_odata_filters_by_the_window(tmp_path: Path, api: Api) -> None:
    v4 = STYLES["odata4"] + "      window: {odata_filter: ZEIT}\n"
    v2 = STYLES["odata2"] + "      window: {odata_filter: ZEIT}\n"
    for name, endpoint in (("v4", v4), ("v2", v2)):
        root = write_project(tmp_path / name, connector(api, endpoint))
        run_job(load_project(root), "bookings")
    first_v4 = next(p for p, _ in api.seen if "/v4/" in p and "filter" in p)
    first_v2 = next(p for p, _ in api.seen if "/v2/" in p and "filter" in p)
    assert "%24filter=ZEIT+ge+2026-10-31T20%3A00%3A00Z+and+ZEIT+lt+" in first_v4
    assert "ZEIT+ge+datetimeoffset%272026-10-31T20%3A00%3A00Z%27" in first_v2
    assert "%24top=500" in first_v4


def test_a_plant_moving_from_csv_exports_to_the_api_keeps_its_mapping(
    tmp_path: Path, api: Api
) -> None:
    root = write_project(
        tmp_path / "p",
        "kind: files\ntimezone: Europe/Berlin\nfiles:\n  location: drop\n  settle: 0s\n"
        "  tables:\n    BUCHUNGEN: {glob: '*.csv', delimiter: ';'}\n",
    )
    (root / "drop").mkdir()
    lines = ["MASCHINE;AUFTRAG;ART;ZEIT;WERK"]
    lines += [f"{m};{o};{e};{w:%Y-%m-%d %H:%M:%S};{p}" for m, o, e, w, p in BOOKINGS]
    (root / "drop" / "export.csv").write_text("\n".join(lines) + "\n")
    mapping = (root / "mappings" / "bookings.yaml").read_text()
    run_job(load_project(root), "bookings")
    from_files = store_runs(root)
    # the plant switches to its MES API: a new connector file, the same mapping
    (root / "connectors" / "plant.yaml").write_text(connector(api, STYLES["odata4"]))
    result = run_job(load_project(root), "bookings")
    assert (root / "mappings" / "bookings.yaml").read_text() == mapping
    assert (result.runs_inserted, result.runs_updated, result.runs_deleted) == (0, 0, 0)
    pd.testing.assert_frame_equal(store_runs(root), from_files)
    pd.testing.assert_frame_equal(from_files, expected_runs())


def test_records_and_columns_at_dotted_paths(tmp_path: Path, api: Api) -> None:
    endpoint = "      path: /rest/nested\n      records: payload.rows\n"
    root = write_project(tmp_path / "p", connector(api, endpoint))
    mapping = root / "mappings" / "bookings.yaml"
    mapping.write_text(
        mapping.read_text().replace("machine_code: MASCHINE", "machine_code: res.MASCHINE")
    )
    run_job(load_project(root), "bookings")
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())


AUTHS = {
    "bearer": (
        "/bearer",
        "  auth: {type: bearer, token: '${API_TOKEN}'}\n",
        {"API_TOKEN": Api.TOKEN},
    ),
    "api_key": (
        "/key",
        "  auth: {type: api_key, header: X-API-Key, api_key: '${API_KEY}'}\n",
        {"API_KEY": Api.API_KEY},
    ),
    "basic": (
        "/basic",
        "  auth: {type: basic, user: etl, password: '${API_PASSWORD}'}\n",
        {"API_PASSWORD": Api.PASSWORD},
    ),
    "oauth2": (
        "/oauth",
        "  auth: {type: oauth2, token_url: /token, client_id: etl-client, client_secret: '${CLIENT_SECRET}'}\n",
        {"CLIENT_SECRET": Api.CLIENT_SECRET},
    ),
}


@pytest.mark.parametrize("kind", sorted(AUTHS))
def test_authentication_from_the_environment(
    tmp_path: Path, api: Api, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, auth, env = AUTHS[kind]
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    endpoint = STYLES["cursor"].replace("/rest/", f"{prefix}/rest/")
    root = write_project(tmp_path / "p", connector(api, endpoint, auth=auth))
    run_job(load_project(root), "bookings")
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())
    # a wrong secret: a credentials error (exit 3) that shows no secret
    monkeypatch.setenv(next(iter(env)), "wrong-secret-value")
    with pytest.raises(SourceError) as caught:
        run_job(load_project(root), "bookings")
    assert caught.value.exit_code == 3
    assert "credentials" in str(caught.value)
    assert "wrong-secret-value" not in str(caught.value)


def test_an_oauth2_token_that_expires_early_is_fetched_again(
    tmp_path: Path, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix, auth, _env = AUTHS["oauth2"]
    monkeypatch.setenv("CLIENT_SECRET", Api.CLIENT_SECRET)
    api.max_token_uses = 2
    endpoint = STYLES["cursor"].replace("/rest/", f"{prefix}/rest/")
    root = write_project(tmp_path / "p", connector(api, endpoint, auth=auth))
    run_job(load_project(root), "bookings")
    assert len(api.issued) >= 2
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())


def test_429_and_500_are_retried_with_a_bounded_backoff(tmp_path: Path, api: Api) -> None:
    root = write_project(tmp_path / "p", connector(api, STYLES["cursor"]))
    api.faults = [429, 500, 503]
    run_job(load_project(root), "bookings")
    pd.testing.assert_frame_equal(store_runs(root), expected_runs())
    api.faults = [500] * 10
    with pytest.raises(SourceError, match=r"HTTP 500 after 4 tries"):
        run_job(load_project(root), "bookings")
    assert len(api.faults) == 6  # 1 try + 3 retries, then it stopped


def test_a_malformed_page_is_a_data_error_naming_the_url_and_commits_nothing(
    tmp_path: Path, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEY", Api.API_KEY)
    endpoint = (
        "      path: /key/rest/next\n      records: results\n      paging: {style: next_link}\n"
        "      params: {access_token: t0ps3cr3t-in-query}\n"
    )
    _prefix, auth, _env = AUTHS["api_key"]
    root = write_project(tmp_path / "p", connector(api, endpoint, auth=auth))
    api.malformed_after = 2  # the clock's request and the first page answer, the second is HTML
    with pytest.raises(DataError) as caught:
        run_job(load_project(root), "bookings")
    message = str(caught.value)
    assert caught.value.exit_code == 4
    assert f"GET {api.url}/key/rest/next?after=2: the page is not JSON (text/html" in message
    assert store_runs(root).empty
    [(status, _rows, error)] = sync_rows(root)
    assert status == "failed" and Api.API_KEY not in error


def test_a_secret_in_the_query_never_shows(
    tmp_path: Path, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = (
        "      path: /rest/cursor\n      records: nowhere\n      paging: {style: cursor}\n"
        "      params: {access_token: t0ps3cr3t-in-query}\n"
    )
    root = write_project(tmp_path / "p", connector(api, endpoint))
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DataError) as caught:
        run_job(load_project(root), "bookings")
    assert "no list of records at 'nowhere'" in str(caught.value)
    assert "access_token=%2A%2A%2A" in str(caught.value) or "access_token=***" in str(caught.value)
    assert "t0ps3cr3t" not in str(caught.value) and "t0ps3cr3t" not in caplog.text
    with sqlite3.connect(root / "store.sqlite") as conn:
        dump = "\n".join(conn.iterdump())
    assert "t0ps3cr3t" not in dump


def test_a_repeating_cursor_and_the_page_cap_stop_the_run(tmp_path: Path, api: Api) -> None:
    root = write_project(tmp_path / "p", connector(api, STYLES["cursor"]))
    api.repeat_cursor = True
    with pytest.raises(DataError, match=r"the cursor 'c2' came back again"):
        run_job(load_project(root), "bookings")
    api.repeat_cursor = False
    capped = write_project(
        tmp_path / "q", connector(api, STYLES["cursor"] + "      max_pages: 2\n")
    )
    with pytest.raises(DataError, match=r"more than max_pages 2 pages"):
        run_job(load_project(capped), "bookings")
    assert store_runs(root).empty and store_runs(capped).empty


def test_an_unreachable_api_is_a_source_error(tmp_path: Path, api: Api) -> None:
    root = write_project(
        tmp_path / "p", connector(api, STYLES["cursor"]).replace(api.url, "http://127.0.0.1:9")
    )
    with pytest.raises(SourceError, match=r"GET http://127.0.0.1:9/rest/cursor.*ConnectError"):
        run_job(load_project(root), "bookings")


def test_tls_is_verified_and_a_private_ca_is_declared_with_ca_bundle(tmp_path: Path) -> None:
    ca, cert, key = certificates(tmp_path / "tls")
    server = Api(CLOCK, tls=(cert, key))
    try:
        root = write_project(tmp_path / "p", connector(server, STYLES["cursor"]))
        with pytest.raises(
            SourceError, match=r"GET https://127.0.0.1:\d+/rest/cursor.*ConnectError"
        ):
            run_job(load_project(root), "bookings")  # verify is on: an unknown CA is refused
        assert server.seen == []
        (root / "certs").mkdir()
        (root / "certs" / "plant-ca.pem").write_bytes(ca.read_bytes())
        trusted = connector(server, STYLES["cursor"]).replace(
            "  retries: 3\n", "  retries: 3\n  ca_bundle: certs/plant-ca.pem\n"
        )
        (root / "connectors" / "plant.yaml").write_text(trusted)
        run_job(load_project(root), "bookings")
        pd.testing.assert_frame_equal(store_runs(root), expected_runs())
    finally:
        server.close()


def test_a_field_missing_from_the_first_record_is_still_a_column() -> None:
    from etl.sources.http.reader import records_frame

    page = [{"a": 1}, {"a": 2, "b": {"c": "x"}}, {"a": "three"}]
    frame = records_frame(page[:2], ["a", "b.c"], "u", "w")
    assert frame["b.c"].tolist()[1] == "x" and pd.isna(frame["b.c"].iloc[0])
    mixed = records_frame(page, ["a"], "u", "w")  # a type that changes: through pandas
    assert mixed["a"].tolist() == [1, 2, "three"]
