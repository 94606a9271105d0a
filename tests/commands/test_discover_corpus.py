"""``etl discover`` measured on 17 vendor-style tables (tests/support/discover_corpus.py) on the real
PostgreSQL and MariaDB: decisions right out of total, which must reach 90%."""

from __future__ import annotations

import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from etl.cli import main
from etl.commands.discover import PROFILE_ROWS, propose
from etl.config.loader import load_project
from etl.pipeline.sync import run_job
from tests.conftest import MARIADB_URL, POSTGRES_URL, server_or_skip
from tests.support.discover_corpus import Score, Vendor, score, true_runs, vendors, wall

pytestmark = [pytest.mark.postgres, pytest.mark.mariadb]

TARGET = 0.9


def _etl(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _database(url: str, name: str, dialect: str) -> Iterator[sa.URL]:
    server = server_or_skip(url, name)
    db = f"etl_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    quote = f'"{db}"' if dialect == "postgresql" else f"`{db}`"
    extra = "" if dialect == "postgresql" else " CHARACTER SET utf8mb4"
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {quote}{extra}"))
    try:
        yield server.set(database=db)
    finally:
        force = " WITH (FORCE)" if dialect == "postgresql" else ""
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quote}{force}"))
        admin.dispose()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Vendor]]]:
    """Both servers filled with the corpus, and a project with one connector per server."""
    pg = _database(POSTGRES_URL, "PostgreSQL", "postgresql")
    maria = _database(MARIADB_URL, "MariaDB", "mariadb")
    urls = {"postgresql": next(pg), "mariadb": next(maria)}
    root = tmp_path_factory.mktemp("corpus")
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir()
    (root / "etl.yaml").write_text("defaults: {start_from: 2026-01-01}\n")
    for dialect, url in urls.items():
        (root / "connectors" / f"{dialect}.yaml").write_text(
            f"dialect: {dialect}\nhost: {url.host}\nport: {url.port or (5432 if dialect == 'postgresql' else 3306)}\n"
            f"database: {url.database}\nuser: {url.username}\ntimezone: Europe/Berlin\n"
        )
    table = vendors()
    for dialect, url in urls.items():
        engine = sa.create_engine(url)
        for vendor in table:
            if vendor.dialect == dialect:
                vendor.create(engine)
        engine.dispose()
    yield root, table
    for gen in (pg, maria):
        gen.close()


def test_the_corpus_covers_what_the_issue_asks(corpus: tuple[Path, list[Vendor]]) -> None:
    _, table = corpus
    assert len(table) >= 14
    assert {v.dialect for v in table} == {"postgresql", "mariadb"}
    assert {v.structure for v in table} == {"bookings", "orders"}
    assert len({v.style.split()[0] for v in table}) >= 8


def test_discover_gets_at_least_90_percent_of_the_decisions_right(
    corpus: tuple[Path, list[Vendor]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, table = corpus
    project = load_project(root)
    scores: list[Score] = []
    parsed: list[str] = []
    for vendor in table:
        proposal = propose(project, vendor.dialect, vendor.name)
        scores.append(score(vendor, proposal))
        profile = proposal.profile
        if profile is not None and profile.range_note is not None:
            # text times in a format that does not sort like time: the range is the parsed one
            times = [
                wall(getattr(x, "at", None) or x.start, vendor.local) for x in vendor.records()
            ]
            assert (profile.minimum, profile.maximum) == (
                f"{min(times):%Y-%m-%d %H:%M:%S}",
                f"{max(times):%Y-%m-%d %H:%M:%S}",
            ), (vendor.name, profile.range_note)
            parsed.append(vendor.name)
        if vendor.structure == "orders" and proposal.profile is not None:
            # the fold's order at equal times concerns bookings only
            assert not any("END before START" in w for w in proposal.profile.warnings)
        if vendor.expected.get("zone") == "utc" and proposal.zone.verdict == "utc":
            # the connectors say Europe/Berlin: the evidence disagrees, so discover warns
            assert any("look like UTC" in w for w in proposal.warnings), proposal.warnings
    assert {"REGISTRAZIONI_BDE", "BDE_MASCHBUCH"} <= set(parsed)
    right = sum(s.right for s in scores)
    total = sum(s.total for s in scores)
    with capsys.disabled():
        print(f"\ndiscover corpus: {right}/{total} decisions right ({right / total:.1%})")
        for s in scores:
            print(f"  {s.table}: {s.right}/{s.total}")
        for s in scores:
            for wrong in s.wrong:
                print(f"  wrong: {wrong}")
    assert right / total >= TARGET


def test_an_accepted_proposal_gives_the_right_runs_on_its_first_run(
    corpus: tuple[Path, list[Vendor]], capsys: pytest.CaptureFixture[str]
) -> None:
    """`etl discover --job` on every vendor table, accepted unchanged, then `etl run`: as many
    runs as the history holds."""
    root, table = corpus
    results = []
    for vendor in table:
        name = f"corpus_{vendor.name.lower()}"
        code, out, err = _etl(
            "-p", str(root), "discover", vendor.dialect, "-t", vendor.name, "--job", name
        )
        assert code == 0, err
        assert (
            f"wrote {root / 'mappings' / name}.yaml" in out
            and "runs  " in out
            and "anomalies  " in out
        )
        result = run_job(load_project(root), name)
        results.append((vendor.name, result.runs_total, true_runs(vendor)))
    with capsys.disabled():
        for name, got, want in results:
            print(f"  first run of {name}: {got} runs (history: {want})")
    # exact on 15 of 17; AFRU's open confirmations ('00000000' end) and one booking in PRDTRNP's
    # repeated autumn hour are the known misses (docs/discover.md)
    right = [name for name, got, want in results if got == want]
    assert len(right) >= len(results) - 2, results
    assert all(abs(got - want) <= 0.03 * want for _, got, want in results), results


@pytest.mark.slow
@pytest.mark.postgres
def test_two_million_rows_are_judged_on_a_bounded_sample(
    postgres_database: str, tmp_path: Path
) -> None:
    """A 2M-row MES table built server-side (generate_series), never ANALYZEd and without an
    index: discover reads a bounded sample (rows and memory), and still decides right."""
    url = sa.make_url(postgres_database)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        # 20 machines, each running orders of 8 bookings (START, COUNT x3, PAUSE, RESUME, COUNT,
        # COMPLETE) one after another, a booking every 45 s per machine
        conn.execute(
            sa.text(
                """
                CREATE TABLE mes_events AS
                SELECT g AS event_id,
                       'S' || (g % 20 % 2) AS site,
                       'WC' || lpad((g % 20)::text, 2, '0') AS work_center,
                       'WO' || ((g % 20) * 1000000 + (g / 20) / 8) AS work_order,
                       'P' || (((g % 20) * 1000000 + (g / 20) / 8) % 37) AS item,
                       (ARRAY['START', 'COUNT', 'COUNT', 'COUNT', 'PAUSE', 'RESUME', 'COUNT',
                              'COMPLETE'])[(g / 20) % 8 + 1] AS event_type,
                       TIMESTAMP '2026-01-05 00:00' + (g / 20) * INTERVAL '45 seconds'
                           + (g % 20) * INTERVAL '2 seconds' AS event_time,
                       (g % 7) * 10 AS qty
                FROM generate_series(0, 1999999) AS s(g)
                """
            )
        )
    engine.dispose()
    root = tmp_path / "p"
    for folder in ("connectors", "mappings", "jobs"):
        (root / folder).mkdir(parents=True)
    (root / "etl.yaml").write_text("defaults: {start_from: 2026-01-01}\n")
    (root / "connectors" / "big.yaml").write_text(
        f"dialect: postgresql\nhost: {url.host}\nport: {url.port or 5432}\n"
        f"database: {url.database}\nuser: {url.username}\ntimezone: UTC\n"
    )
    tracemalloc.start()
    proposal = propose(load_project(root), "big", "mes_events")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert proposal.sample_rows <= PROFILE_ROWS
    assert peak < 400 * 2**20  # a 20,000-row sample, not 2M rows
    assert proposal.table.rows is None  # more than the bounded count: not counted out
    assert {k: v.source_columns() for k, v in proposal.columns.items()} == {
        "timestamp": ["event_time"],
        "order_code": ["work_order"],
        "machine_code": ["work_center"],
        "product_code": ["item"],
        "event": ["event_type"],
    }
    assert proposal.events == {
        "START": ["START", "RESUME"],
        "END": ["COMPLETE", "PAUSE"],
        "ignore": ["COUNT"],
    } or (
        sorted(proposal.events["START"]) == ["RESUME", "START"]
        and sorted(proposal.events["END"]) == ["COMPLETE", "PAUSE"]
        and proposal.events["ignore"] == ["COUNT"]
    )
    assert proposal.profile is not None and proposal.profile.scope == "a sample of 20,000 rows"
