"""``etl discover``: listing, mapping proposals that load and run, event-code guesses and the
timestamp profile, on the demo's SQLite booking system and on the real PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner

from etl.cli import main
from etl.commands.discover import _precision, guess_codes, list_tables, name_score, propose
from etl.config.loader import load_project
from etl.config.models import ColumnSpec, MappingSpec
from etl.demo.plant import create_booking_system
from etl.pipeline.sync import run_job

NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def etl(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _project(root: Path, connector: str) -> Path:
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "etl.yaml").write_text("defaults: {start_from: 2026-08-01}\n")
    (root / "connectors" / "plant.yaml").write_text(connector)
    return root


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """The demo's booking system (HYDRA-like BDE_BUCHUNGEN, ERP FA_AUFTRAEGE) and a project."""
    root = tmp_path_factory.mktemp("discover")
    counts = create_booking_system(root / "plant.sqlite", now=NOW, machines=6)
    _project(root, "dialect: sqlite\npath: plant.sqlite\ntimezone: Europe/Berlin\n")
    return root, counts


def _use(root: Path, name: str, text: str) -> MappingSpec:
    """Put a proposed mapping into the project, with a job, and load it the way etl does."""
    (root / "mappings" / f"{name}.yaml").write_text(text)
    (root / "jobs" / f"{name}.yaml").write_text(f"connector: plant\nmapping: {name}\n")
    return load_project(root).mappings[name]


# --------------------------------------------------------------------------- the demo (SQLite)


def test_listing_shows_tables_rows_and_column_types(demo: tuple[Path, dict[str, int]]) -> None:
    root, counts = demo
    listing = list_tables(load_project(root), "plant")
    tables = {t.name: t for t in listing.tables}
    assert tables["BDE_BUCHUNGEN"].rows == counts["BDE_BUCHUNGEN"]
    assert tables["FA_AUFTRAEGE"].rows == counts["FA_AUFTRAEGE"]
    assert ("SATZART", "INTEGER") in [(c.name, c.type) for c in tables["BDE_BUCHUNGEN"].columns]
    code, out, _ = etl("-p", str(root), "discover", "plant", "--json")
    assert code == 0 and json.loads(out)["tables"][0]["name"] == "BDE_BUCHUNGEN"
    code, out, _ = etl("-p", str(root), "discover", "plant")
    assert "BDE_BUCHUNGEN  table" in out and f"{counts['BDE_BUCHUNGEN']:,} rows" in out


def test_json_with_table_is_refused_not_ignored(demo: tuple[Path, dict[str, int]]) -> None:
    """--json is the listing's format; with --table the proposal is YAML, so asking for both
    is a usage error (exit 2) instead of YAML on stdout where a script expects JSON."""
    root, _ = demo
    code, out, err = etl("-p", str(root), "discover", "plant", "--table", "FA_AUFTRAEGE", "--json")
    assert code == 2 and out == ""
    assert "--json prints the table listing: not with --table" in err


def test_the_hydra_booking_table_is_recognised(demo: tuple[Path, dict[str, int]]) -> None:
    root, counts = demo
    proposal = propose(load_project(root), "plant", "bde_buchungen")  # any case
    assert proposal.structure == "bookings"
    assert proposal.columns["timestamp"] == ColumnSpec(
        date="BUCHDAT", time="BUCHZEIT", date_format="%Y-%m-%d", time_format="%H:%M:%S"
    )
    assert {k: v.column for k, v in proposal.columns.items() if k != "timestamp"} == {
        "order_code": "AUNR",
        "machine_code": "MASCHNR",
        "product_code": "ARTNR",
        "event": "SATZART",
    }
    # the demo's codes: 10 log-on, 20 interruption, 30 finished, 40 quantity report
    assert proposal.events["START"] == [10]
    assert set(proposal.events["END"]) == {20, 30}
    assert 40 in proposal.events["ignore"]
    assert [name for name, _ in proposal.filter_hints] == ["WERK", "STORNO"]
    profile = proposal.profile
    assert profile is not None and profile.scope == "the whole table"
    assert profile.nulls == counts["null_time"]
    assert profile.precision == "whole seconds"
    assert any("separate columns" in w for w in profile.warnings)
    assert not any("no index" in w for w in profile.warnings)  # BUCHDAT is indexed


def test_the_proposed_mapping_loads_and_runs(demo: tuple[Path, dict[str, int]]) -> None:
    root, _ = demo
    code, out, err = etl("-p", str(root), "discover", "plant", "--table", "BDE_BUCHUNGEN")
    assert code == 0, err
    assert out.startswith("# Proposed by `etl discover plant --table BDE_BUCHUNGEN`")
    assert "blank-padded" in out and "filters:\n  # STORNO: a cancellation flag" in out
    mapping = _use(root, "proposed_bde", out)
    assert mapping.events.lookup()["10"] == "START"
    result = run_job(load_project(root), "proposed_bde")
    assert result.rows_read > 1000 and result.runs_total > 100


def test_the_erp_order_table_becomes_an_orders_mapping(demo: tuple[Path, dict[str, int]]) -> None:
    root, _ = demo
    code, out, _ = etl("-p", str(root), "discover", "plant", "-t", "FA_AUFTRAEGE")
    assert code == 0
    data = yaml.safe_load(out)
    assert data["structure"] == "orders"
    assert data["columns"]["start"] == {"column": "START_ZEIT", "format": "%Y-%m-%d %H:%M:%S"}
    assert data["columns"]["end"] == {"column": "ENDE_ZEIT", "format": "%Y-%m-%d %H:%M:%S"}
    assert (data["columns"]["order_code"], data["columns"]["machine_code"]) == (
        "FA_NR",
        "ARBEITSPLATZ",
    )
    assert data["filters"] == [{"column": "STATUS", "not_in": ["DLT"]}]  # proposed active
    _use(root, "proposed_orders", out)


def test_output_writes_a_new_file_and_never_overwrites(demo: tuple[Path, dict[str, int]]) -> None:
    root, _ = demo
    target = root / "mappings" / "from_o.yaml"
    code, out, _ = etl(
        "-p", str(root), "discover", "plant", "-t", "BDE_BUCHUNGEN", "-o", str(target)
    )
    assert code == 0 and out.startswith(f"wrote {target}")
    assert "from_o" in load_project(root).mappings
    code, _, err = etl(
        "-p", str(root), "discover", "plant", "-t", "BDE_BUCHUNGEN", "-o", str(target)
    )
    assert code == 2 and "exists; not overwritten" in err
    target.unlink()


def test_an_unknown_table_lists_the_tables_that_exist(demo: tuple[Path, dict[str, int]]) -> None:
    root, _ = demo
    code, _, err = etl("-p", str(root), "discover", "plant", "--table", "BUCHUNGEN")
    assert code == 4
    assert (
        "connectors/plant.yaml: table 'BUCHUNGEN' not found (tables: BDE_BUCHUNGEN, FA_AUFTRAEGE)"
        in err
    )


# --------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("AUFTRAGSNR", "order_code"),
        ("FA_NR", "order_code"),
        ("WorkOrderNo", "order_code"),
        ("ARBPL", "machine_code"),
        ("Arbeitsplatz", "machine_code"),
        ("machine_id", "machine_code"),
        ("MATNR", "product_code"),
        ("ArtikelNummer", "product_code"),
        ("BUCHUNGSART", "event"),
        ("KENN", "event"),
        ("event_type", "event"),
        ("BUCHDAT", "date"),
        ("BUCHZEIT", "time"),
        ("STARTZEIT", "start"),
        ("date_end", "end"),
    ],
)
def test_english_and_german_column_names_are_recognised(name: str, role: str) -> None:
    assert name_score(name, role) >= 0.4
    assert name_score("MENGE_GUT", role) == 0


@pytest.mark.parametrize(
    ("values", "precision"),
    [
        (["2026-10-20 06:00:00", "2026-10-20 06:01:07"], "whole seconds"),
        (["2026-10-20 06:00:00", "2026-10-20 06:07:00"], "whole minutes"),
        (["2026-10-20 06:00:00.250", "2026-10-20 06:00:01.5"], "milliseconds"),
        (
            ["2026-10-20 06:00:00.003", "2026-10-20 06:00:00.007", "2026-10-20 06:00:00.010"],
            "1/300 s ticks (SQL Server datetime)",
        ),
        (["2026-10-20 06:00:00.000001"], "microseconds"),
        (["2026-10-20", "2026-10-21"], "whole days"),
    ],
)
def test_the_real_precision_is_read_from_the_values(values: list[str], precision: str) -> None:
    assert _precision(pd.Series(pd.to_datetime(values)).dt.tz_localize("UTC")) == precision


def test_pause_and_resume_codes_are_found_by_folding_the_sample() -> None:
    # per order: A log-on, M quantity, U interruption, A resume, M, E finished; one rare X
    pattern = ["A", "M", "U", "A", "M", "E"]
    rows = []
    for order in range(6):
        base = pd.Timestamp("2026-10-20 06:00") + pd.Timedelta(hours=6 * order)
        for i, code in enumerate(pattern):
            rows.append((base + pd.Timedelta(minutes=37 * i), str(4700 + order), "M1", code))
    rows.append((pd.Timestamp("2026-10-22 06:00"), "4705", "M1", "X"))
    sample = pd.DataFrame(rows, columns=["ZEIT", "AUNR", "ARBPL", "KENN"])
    columns = {
        "timestamp": ColumnSpec(column="ZEIT"),
        "order_code": ColumnSpec(column="AUNR"),
        "machine_code": ColumnSpec(column="ARBPL"),
        "event": ColumnSpec(column="KENN"),
    }
    guess = guess_codes(sample, columns, ZoneInfo("UTC"))
    assert guess.events == {"START": ["A"], "END": ["U", "E"], "ignore": ["M"]}
    assert guess.unlisted == ["X"] and "unknown_event" in guess.notes["X"]
    assert guess.notes["A"].startswith("START") and guess.counts[0] == ("A", 12)


def test_a_single_booking_between_start_and_end_is_not_taken_for_the_end() -> None:
    """Every order books 1 (start), one 5 (a quantity report, or "setup finished") and then 2
    or 3 (finished, aborted); open orders have only 1 and 5. 5 never closes a sequence: 2 and 3
    do, and 2 or 3 after an END 5 would be ignored bookings outside every run."""
    rows = []
    for order in range(30):
        base = pd.Timestamp("2026-10-20 06:00") + pd.Timedelta(hours=5 * order)
        machine = f"M{order % 3}"
        rows.append((base, str(4700 + order), machine, 1))
        rows.append((base + pd.Timedelta(minutes=50), str(4700 + order), machine, 5))
        if order < 27:  # the last three are still open
            rows.append(
                (base + pd.Timedelta(minutes=100), str(4700 + order), machine, 2 + order % 2)
            )
    sample = pd.DataFrame(rows, columns=["ZEIT", "AUNR", "ARBPL", "KENN"])
    columns = {
        "timestamp": ColumnSpec(column="ZEIT"),
        "order_code": ColumnSpec(column="AUNR"),
        "machine_code": ColumnSpec(column="ARBPL"),
        "event": ColumnSpec(column="KENN"),
    }
    guess = guess_codes(sample, columns, ZoneInfo("UTC"))
    assert guess.events["START"] == [1]
    assert sorted(guess.events["END"]) == [2, 3] and guess.events["ignore"] == [5]
    assert guess.notes["2"].startswith("END: closes 100%")
    assert guess.notes["5"].startswith("ignore: inside a run")


# --------------------------------------------------------------------------- real servers


@pytest.mark.parametrize("dialect", ["postgresql", "mariadb"])
def test_discover_on_a_real_server(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = sa.make_url(
        request.getfixturevalue(
            "postgres_database" if dialect == "postgresql" else "mariadb_database"
        )
    )
    stamp = "timestamp(3)" if dialect == "postgresql" else "datetime(3)"
    engine = sa.create_engine(url)
    rows = []
    for i in range(60):
        order, at = f"47{i // 3:02d}", datetime(2026, 10, 20, 6) + timedelta(seconds=i * 427)
        code = ("ZZS", "UNT", "ZZE")[i % 3]
        rows.append(
            {
                "o": order,
                "m": f"M{i // 3 % 4}",  # an order runs on one machine
                "p": "P-1",
                "k": code,
                "t": f"{at:%Y-%m-%d %H:%M:%S}.{i * 17 % 1000:03d}",
            }
        )
    rows.append({"o": "4799", "m": "M1", "p": "P-1", "k": "ZZS", "t": None})
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE bde_buchung (AUFTRAG varchar(20), ARBPL char(8), MATERIAL varchar(20), "
                f"BUCHUNGSART char(3), ZEITPUNKT {stamp})"
            )
        )
        conn.execute(sa.text("INSERT INTO bde_buchung VALUES (:o, :m, :p, :k, :t)"), rows)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(
            sa.text(
                "ANALYZE bde_buchung" if dialect == "postgresql" else "ANALYZE TABLE bde_buchung"
            )
        )
    engine.dispose()
    root = _project(
        tmp_path / "p",
        f"dialect: {dialect}\nhost: {url.host}\nport: {url.port or (5432 if dialect == 'postgresql' else 3306)}\n"
        f"database: {url.database}\nuser: {url.username}\ntimezone: Europe/Berlin\n",
    )
    listing = list_tables(load_project(root), "plant")
    (table,) = [t for t in listing.tables if t.name.lower() == "bde_buchung"]
    assert table.rows is not None and table.rows > 0
    schema = "public" if dialect == "postgresql" else url.database  # --schema
    named = list_tables(load_project(root), "plant", schema)
    assert [(t.name.lower(), t.rows) for t in named.tables] == [("bde_buchung", table.rows)]
    code, out, err = etl("-p", str(root), "discover", "plant", "--table", table.name)
    assert code == 0, err
    data = yaml.safe_load(out)
    folded = {k: v.lower() for k, v in data["columns"].items()}
    assert folded == {
        "timestamp": "zeitpunkt",
        "order_code": "auftrag",
        "machine_code": "arbpl",
        "product_code": "material",
        "event": "buchungsart",
    }
    # UNT stands inside each order with no resume after it: the fold shows it changes nothing
    assert data["events"] == {"START": ["ZZS"], "END": ["ZZE"], "ignore": ["UNT"]}
    assert "precision: milliseconds" in out
    assert "1 without a timestamp" in out and "no index starts with" in out
    _use(root, "proposed", out)
    result = run_job(load_project(root), "proposed")
    assert result.rows_read == 61 and result.runs_total > 0


# --------------------------------------------------------------------------- listing on real servers


def _connector(url: sa.URL, dialect: str, user: str | None = None, password: str = "") -> str:
    port = url.port or (5432 if dialect == "postgresql" else 3306)
    text = (
        f"dialect: {dialect}\nhost: {url.host}\nport: {port}\ndatabase: {url.database}\n"
        f"user: {user or url.username}\ntimezone: Europe/Berlin\n"
    )
    return text + (f"password: {password}\n" if password else "")


@pytest.mark.postgres
def test_a_never_analyzed_postgresql_table_is_counted_right(
    postgres_database: str, tmp_path: Path
) -> None:
    url = sa.make_url(postgres_database)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE buchung (auftrag text, maschine text, art text, zeit timestamp)")
        )
        conn.execute(
            sa.text("INSERT INTO buchung VALUES (:o, :m, :a, :t)"),
            [
                {
                    "o": f"47{i // 4}",
                    "m": f"M{i // 8 % 3}",
                    "a": "ABC"[i % 3],
                    "t": None if i < 8 else f"2026-10-20 06:{i:02d}:00",
                }
                for i in range(30)
            ],
        )
        estimate = conn.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE relname = 'buchung'")
        ).scalar()
    engine.dispose()
    assert estimate is not None and estimate < 0  # never vacuumed or analyzed
    root = _project(tmp_path / "p", _connector(url, "postgresql"))
    (table,) = list_tables(load_project(root), "plant").tables
    assert table.rows == 30
    code, out, _ = etl("-p", str(root), "discover", "plant", "--table", "buchung")
    assert code == 0 and "~30 rows" in out and "30 rows, 8 without a timestamp" in out


@pytest.mark.postgres
def test_an_empty_default_schema_lists_the_schemas_with_tables(
    postgres_database: str, tmp_path: Path
) -> None:
    url = sa.make_url(postgres_database)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA werk1"))
        conn.execute(sa.text("CREATE TABLE werk1.buchung (auftrag text, zeit timestamp)"))
    engine.dispose()
    root = _project(tmp_path / "p", _connector(url, "postgresql"))
    listing = list_tables(load_project(root), "plant")
    assert listing.tables == [] and listing.other_schemas == [("werk1", 1)]
    code, out, _ = etl("-p", str(root), "discover", "plant")
    assert code == 0 and "schemas with tables:\n  werk1  1 table(s) or view(s)" in out
    # a misspelled --schema (PostgreSQL answers an empty list, not an error) says the same
    code, out, _ = etl("-p", str(root), "discover", "plant", "--schema", "werk_1")
    assert code == 0 and "schema 'werk_1' is empty or does not exist; schemas with tables:" in out
    assert "  werk1  1 table(s) or view(s)" in out


@pytest.mark.postgres
def test_schema_dot_table_is_accepted_and_a_table_in_another_schema_is_hinted(
    postgres_database: str, tmp_path: Path
) -> None:
    url = sa.make_url(postgres_database)
    engine = sa.create_engine(url)
    start = datetime(2026, 11, 22, 6, 0)
    rows = []
    for order in range(40):
        at = start + timedelta(hours=7 * order)  # 22.11. .. 04.12.: text order is not time order
        for code, minutes in ((1, 0), (5, 40), (2, 90)):
            stamp = at + timedelta(minutes=minutes)
            rows.append({"a": str(4700 + order), "m": f"M{order % 3}", "c": code, "z": stamp})
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA bde"))
        conn.execute(
            sa.text("CREATE TABLE bde.buchung (auftrag text, maschine text, art int, zeit text)")
        )
        conn.execute(
            sa.text("INSERT INTO bde.buchung VALUES (:a, :m, :c, :z)"),
            [{**r, "z": f"{r['z']:%d.%m.%Y %H:%M:%S}"} for r in rows],
        )
        conn.execute(sa.text("CREATE VIEW bde.v_buchung AS SELECT * FROM bde.buchung"))
    engine.dispose()
    root = _project(tmp_path / "p", _connector(url, "postgresql"))
    code, out, err = etl("-p", str(root), "discover", "plant", "--table", "bde.v_buchung")
    assert code == 0, err
    mapping = yaml.safe_load(out)
    assert mapping["source"] == {"table": "v_buchung", "schema": "bde"}
    # the range of the text timestamps is the parsed one, with the format it was parsed with
    first, last = min(r["z"] for r in rows), max(r["z"] for r in rows)
    assert f"from {first:%Y-%m-%d %H:%M:%S} to {last:%Y-%m-%d %H:%M:%S}" in out
    assert "range parsed with '%d.%m.%Y %H:%M:%S'; as text it sorts" in out
    code, out, err = etl("-p", str(root), "discover", "plant", "--table", "v_buchung")
    assert code == 4 and "table 'v_buchung' not found" in err
    assert "found in schema bde: pass --schema bde (or --table bde.v_buchung)" in err


@pytest.mark.mariadb
def test_a_mariadb_view_is_read_with_select_only(mariadb_database: str, tmp_path: Path) -> None:
    url = sa.make_url(mariadb_database)
    user, password = f"etl_v_{uuid.uuid4().hex[:8]}", "view-only-pw"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE buchung_t (auftrag varchar(10), maschine varchar(8), art char(1), zeit datetime)"
            )
        )
        conn.execute(
            sa.text("INSERT INTO buchung_t VALUES (:o, :m, :a, :t)"),
            [
                {
                    "o": f"47{i // 3}",
                    "m": f"M{i // 6 % 2}",
                    "a": "ABE"[i % 3],
                    "t": f"2026-10-20 06:{i:02d}:00",
                }
                for i in range(30)
            ],
        )
        conn.execute(sa.text("CREATE VIEW v_buchung AS SELECT * FROM buchung_t"))
        for host in ("%", "localhost"):
            conn.execute(sa.text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'"))
            conn.execute(
                sa.text(f"GRANT SELECT ON `{url.database}`.v_buchung TO '{user}'@'{host}'")
            )
    try:
        root = _project(tmp_path / "p", _connector(url, "mariadb", user, password))
        (view,) = list_tables(load_project(root), "plant").tables
        assert view.kind == "view" and [c.name for c in view.columns] == [
            "auftrag",
            "maschine",
            "art",
            "zeit",
        ]
        code, out, err = etl("-p", str(root), "discover", "plant", "--table", "v_buchung")
        assert code == 0, err
        assert yaml.safe_load(out)["columns"]["timestamp"] == "zeit"
        _use(root, "from_view", out)
        assert run_job(load_project(root), "from_view").rows_read == 30
    finally:
        with admin.connect() as conn:
            for host in ("%", "localhost"):
                conn.execute(sa.text(f"DROP USER IF EXISTS '{user}'@'{host}'"))
        admin.dispose()


def test_a_placeholder_is_refused_by_validate_and_its_job_is_written_disabled(
    tmp_path: Path,
) -> None:
    """A table with no column discover takes for the order: the proposal says CHANGE_ME, which
    would otherwise load and store every run under order 'CHANGE_ME'."""
    import sqlite3

    root = _project(tmp_path / "p", "dialect: sqlite\npath: plant.sqlite\ntimezone: UTC\n")
    with sqlite3.connect(root / "plant.sqlite") as db:
        db.execute("CREATE TABLE laeufe (maschine TEXT, beginn TEXT, ende TEXT)")
        start = datetime(2026, 11, 2, 6, 0)
        db.executemany(
            "INSERT INTO laeufe VALUES (?, ?, ?)",
            [
                (
                    "M1",  # one machine, and nothing that could be the order
                    f"{start + timedelta(hours=3 * i):%Y-%m-%d %H:%M:%S}",
                    f"{start + timedelta(hours=3 * i + 2):%Y-%m-%d %H:%M:%S}",
                )
                for i in range(40)
            ],
        )
    code, out, err = etl("-p", str(root), "discover", "plant", "-t", "laeufe", "--job", "laeufe")
    assert code == 0, err
    job = yaml.safe_load((root / "jobs" / "laeufe.yaml").read_text())
    assert job["enabled"] is False
    assert "placeholder 'CHANGE_ME'" in out and "set 'enabled: true'" in out
    text = (root / "mappings" / "laeufe.yaml").read_text()
    line = next(
        n for n, row in enumerate(text.splitlines(), 1) if row.strip().startswith("order_code:")
    )
    code, out, err = etl("-p", str(root), "validate")
    assert code == 2 and out == ""
    assert f"mappings/laeufe.yaml:{line}: columns.order_code.value: placeholder 'CHANGE_ME'" in err
    assert "name the source column (order_code: COLUMN)" in err
    # the job is disabled: --all skips it (and stores no run under order 'CHANGE_ME')
    code, out, err = etl("-p", str(root), "run", "--all")
    assert code == 0, err
    assert "CHANGE_ME" not in out
    assert not (root / "output").exists() or not list((root / "output").rglob("*.parquet"))
