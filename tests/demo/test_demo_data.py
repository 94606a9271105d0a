"""The demo plant database (etl.demo.plant) and the independent reference fold (tests/support/reference_fold.py)."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import sqlite3
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from etl.config.loader import load_project
from etl.demo.plant import DB_FILE, PLANT_ZONE, create_booking_system, data_range, dst_transitions
from etl.demo.project import write_demo_project
from tests.support.reference_fold import (
    reference_booking_runs,
    reference_order_runs,
    reference_order_runs_and_anomalies,
    to_utc,
)

NOWS = {
    # autumn change (2024-10-27) inside the last 90 days
    "autumn": datetime(2024, 11, 15, 10, 0, tzinfo=UTC),
    # spring change (2025-03-30) inside the last 90 days
    "spring": datetime(2025, 4, 20, 10, 0, 17, 250_000, tzinfo=UTC),
    # no change in the last 90 days: the range reaches back to 3 days before 2024-10-27
    "winter": datetime(2025, 2, 15, 10, 0, tzinfo=UTC),
}


@pytest.fixture(scope="module", params=sorted(NOWS))
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    now = NOWS[request.param]
    path = tmp_path_factory.mktemp(request.param) / DB_FILE
    counts = create_booking_system(path, now=now)
    return request.param, now, path, counts


def _rows(path: Path, sql: str, *args: object) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def _scalar(path: Path, sql: str, *args: object) -> object:
    return _rows(path, sql, *args)[0][0]


def _local_instants(path: Path) -> list[datetime]:
    """Every parseable booking and order time, read as plant-local time, in UTC."""
    out = []
    for day, clock in _rows(path, "SELECT BUCHDAT, BUCHZEIT FROM BDE_BUCHUNGEN"):
        with contextlib.suppress(TypeError, ValueError):
            out.append(to_utc(datetime.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S")))
    for (text,) in _rows(
        path, "SELECT START_ZEIT FROM FA_AUFTRAEGE UNION ALL SELECT ENDE_ZEIT FROM FA_AUFTRAEGE"
    ):
        if text:
            out.append(to_utc(datetime.strptime(text, "%Y-%m-%d %H:%M:%S")))
    return out


# --------------------------------------------------------------------------- the generator


def test_same_seed_and_now_give_the_same_database(tmp_path: Path) -> None:
    now = NOWS["autumn"]
    paths = [tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "c.sqlite"]
    first = create_booking_system(paths[0], now=now, seed=3)
    second = create_booking_system(paths[1], now=now, seed=3)
    other = create_booking_system(paths[2], now=now, seed=4)

    def dump(path: Path) -> list[str]:
        con = sqlite3.connect(path)
        try:
            return list(con.iterdump())
        finally:
            con.close()

    assert first == second
    assert dump(paths[0]) == dump(paths[1])
    assert dump(paths[0]) != dump(paths[2])
    assert other.keys() == first.keys()


def test_regenerating_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / DB_FILE
    create_booking_system(path, now=NOWS["spring"], seed=1)
    counts = create_booking_system(path, now=NOWS["spring"], seed=1)
    assert _scalar(path, "SELECT COUNT(*) FROM BDE_BUCHUNGEN") == counts["BDE_BUCHUNGEN"]
    assert not list(tmp_path.glob("*.tmp"))


def test_now_must_be_aware(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="aware"):
        create_booking_system(tmp_path / DB_FILE, now=datetime(2025, 1, 1))


def test_range_is_90_days_up_to_half_an_hour_ago_with_a_dst_change(demo) -> None:
    name, now, path, counts = demo
    lo, hi = data_range(now)
    assert hi == (now - timedelta(minutes=30)).replace(microsecond=0)
    assert lo.astimezone(PLANT_ZONE).time().isoformat() == "00:00:00"
    assert counts["days"] == (hi - lo).days >= 90
    instants = _local_instants(path)
    first, last = min(instants), max(instants)
    assert lo <= first < lo + timedelta(days=1)
    assert hi - timedelta(hours=12) < last < hi
    changes = dst_transitions(PLANT_ZONE, first, last)
    assert changes and counts["dst_changes"] == len(changes)
    # the last change (at least 2 days before the end) is at least 3 days inside the data
    latest = dst_transitions(PLANT_ZONE, now - timedelta(days=400), hi - timedelta(days=2))[-1]
    assert first <= latest - timedelta(days=3)
    if name == "winter":
        assert (hi - lo).days > 100


@pytest.mark.parametrize(
    "now",
    [
        datetime(2025, 3, 30, 1, 10, tzinfo=UTC),  # 10 minutes after the spring change
        datetime(2025, 10, 27, 0, 0, tzinfo=UTC),  # a day after the autumn change
        datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ],
)
def test_edge_nows_keep_every_promise(now: datetime, tmp_path: Path) -> None:
    path = tmp_path / DB_FILE
    counts = create_booking_system(path, now=now, seed=11, machines=21)
    lo, hi = data_range(now)
    assert (hi - lo).days >= 90 and counts["machines"] == 21
    instants = _local_instants(path)
    assert lo <= min(instants) and max(instants) < hi
    assert dst_transitions(PLANT_ZONE, min(instants), max(instants))
    assert counts["dst_repeated_hour"] + counts["dst_nonexistent_hour"] >= 1
    runs, anomalies = reference_booking_runs(path, now)
    assert anomalies == Counter(orphan_end=3, duplicate_start=3, unknown_event=3, bad_timestamp=4)
    assert all(r["end"] is None or r["end"] > r["start"] for r in runs)
    assert sum(r["end"] is None for r in runs) == counts["open_booking_machines"]


def test_dst_transitions_of_berlin() -> None:
    lo, hi = datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    assert dst_transitions(PLANT_ZONE, lo, hi) == [
        datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
        datetime(2024, 10, 27, 1, 0, tzinfo=UTC),
    ]


def test_at_least_20_machines_over_90_days(demo) -> None:
    _, now, path, counts = demo
    lo, hi = data_range(now)
    spans: dict[str, list[str]] = {}
    for machine, day in _rows(
        path,
        "SELECT MASCHNR, BUCHDAT FROM BDE_BUCHUNGEN WHERE WERK = '1000' "
        "UNION ALL SELECT ARBEITSPLATZ, substr(START_ZEIT, 1, 10) FROM FA_AUFTRAEGE "
        "WHERE WERK = '1000' AND START_ZEIT IS NOT NULL",
    ):
        spans.setdefault(machine.strip(), []).append(day)
    assert len(spans) == counts["machines"] == 24
    assert counts["booking_machines"] + counts["order_machines"] == 24
    first_week = (lo + timedelta(days=7)).astimezone(PLANT_ZONE).date().isoformat()
    last_week = (hi - timedelta(days=7)).astimezone(PLANT_ZONE).date().isoformat()
    for days in spans.values():  # every machine has data at both ends of the range
        assert min(days) < first_week and max(days) > last_week


def test_machine_codes_are_blank_padded(demo) -> None:
    _, _, path, _ = demo
    codes = _rows(
        path,
        "SELECT DISTINCT MASCHNR FROM BDE_BUCHUNGEN UNION "
        "SELECT DISTINCT ARBEITSPLATZ FROM FA_AUFTRAEGE",
    )
    assert codes
    for (code,) in codes:
        assert len(code) == 8 and code != code.rstrip() and code == code.lstrip()


def test_formats_of_the_source_columns(demo) -> None:
    _, _, path, counts = demo
    bad = _scalar(
        path,
        "SELECT COUNT(*) FROM BDE_BUCHUNGEN WHERE BUCHZEIT NOT GLOB "
        "'[0-2][0-9]:[0-5][0-9]:[0-5][0-9]' OR BUCHDAT NOT GLOB "
        "'[12][0-9][0-9][0-9]-[01][0-9]-[0-3][0-9]'",
    )
    assert bad == 0  # whole seconds everywhere (NULL times aside) ...
    assert counts["bad_time"] == 1  # ... and one end-of-day '24:00:00'
    assert _scalar(path, "SELECT COUNT(*) FROM BDE_BUCHUNGEN WHERE BUCHZEIT > '23:59:59'") == 1
    orders = _rows(path, "SELECT DISTINCT length(FA_NR), length(START_ZEIT) FROM FA_AUFTRAEGE")
    assert {length for length, _ in orders} == {12}
    assert {length for _, length in orders} <= {19, None}
    aunr = _rows(path, "SELECT DISTINCT length(AUNR) FROM BDE_BUCHUNGEN")
    assert aunr == [(8,)]
    kinds = {code for (code,) in _rows(path, "SELECT DISTINCT SATZART FROM BDE_BUCHUNGEN")}
    assert kinds == {10, 20, 30, 40, 99}


def test_every_deliberate_anomaly_is_there(demo) -> None:
    _, now, path, counts = demo
    scalar = lambda sql: _scalar(path, sql)  # noqa: E731
    assert counts["BDE_BUCHUNGEN"] == scalar("SELECT COUNT(*) FROM BDE_BUCHUNGEN")
    assert counts["FA_AUFTRAEGE"] == scalar("SELECT COUNT(*) FROM FA_AUFTRAEGE")
    for kind in ("orphan_end", "duplicate_start", "unknown_event", "null_time"):
        assert counts[kind] == 3, kind
    assert counts["bad_time"] == 1
    assert counts["cancelled"] >= 6
    assert counts["cancelled"] == scalar("SELECT COUNT(*) FROM BDE_BUCHUNGEN WHERE STORNO = 1")
    assert counts["other_plant"] == scalar("SELECT COUNT(*) FROM BDE_BUCHUNGEN WHERE WERK = '2000'")
    assert counts["other_plant"] > 100
    assert counts["null_time"] == scalar(
        "SELECT COUNT(*) FROM BDE_BUCHUNGEN WHERE BUCHZEIT IS NULL"
    )
    assert counts["unknown_event"] == scalar(
        "SELECT COUNT(*) FROM BDE_BUCHUNGEN WHERE SATZART = 99"
    )
    # the reference fold finds exactly the deliberate ones
    _, anomalies = reference_booking_runs(path, now)
    assert anomalies == Counter(
        orphan_end=counts["orphan_end"],
        duplicate_start=counts["duplicate_start"],
        unknown_event=counts["unknown_event"],
        bad_timestamp=counts["null_time"] + counts["bad_time"],
    )
    # orders: deleted, other plant, end before start, never started
    assert counts["orders_deleted"] == scalar(
        "SELECT COUNT(*) FROM FA_AUFTRAEGE WHERE STATUS = 'DLT'"
    )
    assert counts["orders_deleted"] >= 2
    assert counts["orders_other_plant"] == scalar(
        "SELECT COUNT(*) FROM FA_AUFTRAEGE WHERE WERK = '2000'"
    )
    assert counts["orders_other_plant"] > 10
    _, order_anomalies = reference_order_runs_and_anomalies(path, now)
    assert order_anomalies == Counter(
        end_before_start=counts["orders_end_before_start"],
        bad_timestamp=counts["orders_null_start"],
    )


def test_cancelled_and_foreign_rows_would_change_the_result(demo, tmp_path: Path) -> None:
    _, now, path, _ = demo
    runs, _ = reference_booking_runs(path, now)
    orders = reference_order_runs(path, now)
    for sql in (
        "UPDATE BDE_BUCHUNGEN SET STORNO = 0",
        "UPDATE BDE_BUCHUNGEN SET WERK = '1000'",
        "UPDATE FA_AUFTRAEGE SET STATUS = 'CNF' WHERE STATUS = 'DLT'",
        "UPDATE FA_AUFTRAEGE SET WERK = '1000'",
    ):
        copy = tmp_path / "copy.sqlite"
        shutil.copy(path, copy)
        con = sqlite3.connect(copy)
        with con:
            con.execute(sql)
        con.close()
        changed_runs, _ = reference_booking_runs(copy, now)
        assert (changed_runs, reference_order_runs(copy, now)) != (runs, orders), sql


def test_dst_bookings_are_deliberate_and_harmless(demo) -> None:
    name, now, path, counts = demo
    if name == "spring":
        assert counts["dst_nonexistent_hour"] == 1 and counts["dst_repeated_hour"] == 0
        rows = _rows(
            path,
            "SELECT BUCHDAT, BUCHZEIT, SATZART FROM BDE_BUCHUNGEN "
            "WHERE BUCHDAT = '2025-03-30' AND BUCHZEIT LIKE '02:%'",
        )
        assert rows == [("2025-03-30", "02:30:00", 10)]
    else:
        assert counts["dst_nonexistent_hour"] == 0 and counts["dst_repeated_hour"] == 2
        rows = _rows(
            path,
            "SELECT BUCHZEIT, SATZART FROM BDE_BUCHUNGEN "
            "WHERE BUCHDAT = '2024-10-27' AND BUCHZEIT LIKE '02:%' ORDER BY 1",
        )
        assert rows == [("02:15:00", 10), ("02:40:00", 10)]  # first and second pass
    runs, _ = reference_booking_runs(path, now)
    orders = reference_order_runs(path, now)
    for run in runs + orders:
        assert run["end"] is None or run["end"] > run["start"], run
    for group in (runs, orders):  # no machine runs two things at once
        by_machine: dict[str, list[dict]] = {}
        for run in group:
            by_machine.setdefault(run["machine_code"], []).append(run)
        for machine_runs in by_machine.values():
            machine_runs.sort(key=lambda r: r["start"])
            for a, b in itertools.pairwise(machine_runs):
                assert a["end"] is not None and a["end"] <= b["start"], (a, b)


def test_most_machines_are_still_running(demo) -> None:
    _, now, path, counts = demo
    runs, _ = reference_booking_runs(path, now)
    open_runs = [r for r in runs if r["end"] is None]
    assert len(open_runs) == counts["open_booking_machines"]
    assert len(open_runs) > counts["booking_machines"] / 2
    open_orders = [r for r in reference_order_runs(path, now) if r["end"] is None]
    assert len(open_orders) == counts["open_orders"] >= 1
    # a pause/resume order gives several runs; several orders per machine
    per_order = Counter((r["machine_code"], r["order_code"]) for r in runs)
    assert max(per_order.values()) >= 3
    assert len(runs) > 50 * counts["booking_machines"]


def test_the_same_order_runs_on_two_machines(demo) -> None:
    _, now, path, _ = demo
    runs, _ = reference_booking_runs(path, now)
    machines: dict[str, set[str]] = {}
    for run in runs:
        machines.setdefault(run["order_code"], set()).add(run["machine_code"])
    assert any(len(found) > 1 for found in machines.values())


# --------------------------------------------------------------------------- the demo project


def test_demo_project_loads_and_is_kept_on_rerun(tmp_path: Path) -> None:
    now = NOWS["winter"]
    create_booking_system(tmp_path / DB_FILE, now=now)
    write_demo_project(tmp_path)
    project = load_project(tmp_path, env={})
    assert sorted(project.jobs) == ["demo_bookings", "demo_orders"]
    assert project.spec.store == "sqlite:///store.sqlite"
    assert project.spec.parquet == "output/parquet"
    connector = project.connectors["demo_bde"]
    assert connector.dialect == "sqlite" and connector.path == DB_FILE
    assert connector.timezone == "Europe/Berlin"
    start = data_range(now)[0].astimezone(PLANT_ZONE).date()
    for job in project.jobs.values():
        assert job.start_from == datetime.combine(start, datetime.min.time())
    bookings = project.mappings["demo_bookings"]
    assert bookings.structure == "bookings" and bookings.source.table == "BDE_BUCHUNGEN"
    assert [(f.column, f.op, f.operand) for f in bookings.filters] == [
        ("STORNO", "eq", 0),
        ("WERK", "eq", "1000"),
    ]
    assert bookings.events is not None and bookings.events.lookup() == {
        "10": "START",
        "20": "END",
        "30": "END",
        "40": "IGNORE",
    }
    spec = bookings.booking_columns
    assert (spec.timestamp.date, spec.timestamp.time) == ("BUCHDAT", "BUCHZEIT")
    assert spec.machine_code.trim is True
    orders = project.mappings["demo_orders"]
    assert orders.structure == "orders" and orders.source.table == "FA_AUFTRAEGE"
    assert [(f.column, f.op, f.operand) for f in orders.filters] == [
        ("WERK", "eq", "1000"),
        ("STATUS", "not_in", ["DLT"]),
    ]
    assert orders.order_columns.start.format == "%Y-%m-%d %H:%M:%S"

    # a rerun (even against a regenerated database) keeps what is there
    texts = {p: p.read_text() for p in tmp_path.rglob("*.yaml")}
    assert len(texts) == 6
    edited = tmp_path / "jobs" / "demo_orders.yaml"
    edited.write_text(texts[edited] + "# edited by hand\n")
    create_booking_system(tmp_path / DB_FILE, now=now + timedelta(days=30))
    write_demo_project(tmp_path)
    assert edited.read_text().endswith("# edited by hand\n")
    for path, text in texts.items():
        if path != edited:
            assert path.read_text() == text
    (tmp_path / "jobs" / "demo_bookings.yaml").unlink()
    write_demo_project(tmp_path)
    assert load_project(tmp_path, env={}).jobs["demo_bookings"].start_from.date() == (
        data_range(now + timedelta(days=30))[0].astimezone(PLANT_ZONE).date()
    )


def test_demo_project_without_a_database(tmp_path: Path) -> None:
    write_demo_project(tmp_path)
    job = load_project(tmp_path, env={}).jobs["demo_orders"]
    assert job.start_from.date() <= date.today() - timedelta(days=200)


# --------------------------------------------------------------------------- the reference fold

_BDE = """CREATE TABLE BDE_BUCHUNGEN (BUCHUNG_ID INTEGER PRIMARY KEY, WERK TEXT, MASCHNR TEXT,
AUNR TEXT, ARTNR TEXT, SATZART INTEGER, BUCHDAT TEXT, BUCHZEIT TEXT, STORNO INTEGER,
MENGE_GUT INTEGER)"""
_FA = """CREATE TABLE FA_AUFTRAEGE (FA_NR TEXT, ARTIKEL TEXT, ARBEITSPLATZ TEXT, WERK TEXT,
STATUS TEXT, START_ZEIT TEXT, ENDE_ZEIT TEXT)"""


def _tiny(tmp_path: Path, bookings: list[tuple], orders: list[tuple] | None = None) -> Path:
    path = tmp_path / "tiny.sqlite"
    con = sqlite3.connect(path)
    with con:
        con.execute(_BDE)
        con.execute(_FA)
        con.executemany(
            "INSERT INTO BDE_BUCHUNGEN (WERK, MASCHNR, AUNR, ARTNR, SATZART, BUCHDAT, BUCHZEIT, "
            "STORNO) VALUES (?,?,?,?,?,?,?,?)",
            bookings,
        )
        con.executemany("INSERT INTO FA_AUFTRAEGE VALUES (?,?,?,?,?,?,?)", orders or [])
    con.close()
    return path


def _b(
    code: int,
    day: str,
    clock: str | None,
    order: str = "40000001",
    product: str = "P1",
    machine: str = "M-01    ",
    werk: str = "1000",
    storno: int = 0,
) -> tuple:
    return (werk, machine, order, product, code, day, clock, storno)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


HI = datetime(2030, 1, 1, tzinfo=UTC)


def test_reference_pause_resume_equal_times_and_filters(tmp_path: Path) -> None:
    path = _tiny(
        tmp_path,
        [
            _b(10, "2024-06-03", "06:00:00"),
            _b(40, "2024-06-03", "07:00:00"),
            _b(10, "2024-06-03", "14:00:00", product="P2"),  # resume: same second as the END
            _b(20, "2024-06-03", "14:00:00"),
            _b(20, "2024-06-03", "09:00:00", storno=1),  # cancelled: would split the run
            _b(10, "2024-06-03", "09:30:00", werk="2000"),  # another plant
            _b(30, "2024-06-03", "18:00:00"),
        ],
    )
    runs, anomalies = reference_booking_runs(path, HI)
    assert anomalies == Counter()
    assert runs == [
        {
            "machine_code": "M-01",
            "order_code": "40000001",
            "product_code": "P1",
            "start": _utc("2024-06-03T04:00:00"),
            "end": _utc("2024-06-03T12:00:00"),
        },
        {
            "machine_code": "M-01",
            "order_code": "40000001",
            "product_code": "P2",
            "start": _utc("2024-06-03T12:00:00"),
            "end": _utc("2024-06-03T16:00:00"),
        },
    ]


def test_reference_anomalies_and_hi(tmp_path: Path) -> None:
    path = _tiny(
        tmp_path,
        [
            _b(30, "2024-01-10", "05:00:00"),  # orphan END
            _b(10, "2024-01-10", "06:00:00"),
            _b(10, "2024-01-10", "06:30:00", product="P9"),  # duplicate START: first one kept
            _b(99, "2024-01-10", "07:00:00"),  # unknown code
            _b(20, "2024-01-10", None),  # no time
            _b(20, "2024-01-10", "24:00:00"),  # unparseable time
            _b(20, "2024-01-10", "10:00:00"),
            _b(10, "2024-01-10", "11:00:00", order="40000002"),
            _b(30, "2024-01-10", "13:00:00", order="40000002"),  # after hi: the run stays open
            _b(99, "2024-01-10", "13:30:00"),  # after hi: not seen
        ],
    )
    hi = _utc("2024-01-10T11:30:00")
    runs, anomalies = reference_booking_runs(path, hi)
    assert anomalies == Counter(orphan_end=1, duplicate_start=1, unknown_event=1, bad_timestamp=2)
    assert [(r["order_code"], r["product_code"], r["start"], r["end"]) for r in runs] == [
        ("40000001", "P1", _utc("2024-01-10T05:00:00"), _utc("2024-01-10T09:00:00")),
        ("40000002", "P1", _utc("2024-01-10T10:00:00"), None),
    ]


def test_reference_dst_readings(tmp_path: Path) -> None:
    path = _tiny(
        tmp_path,
        [
            _b(10, "2024-10-27", "02:15:00"),  # repeated hour: the earlier (summer time) reading
            _b(30, "2024-10-27", "06:00:00"),
            _b(10, "2025-03-30", "02:30:00", order="40000002"),  # skipped hour: shifted by the gap
            _b(30, "2025-03-30", "05:00:00", order="40000002"),
        ],
    )
    runs, _ = reference_booking_runs(path, HI)
    assert [(r["start"], r["end"]) for r in runs] == [
        (_utc("2024-10-27T00:15:00"), _utc("2024-10-27T05:00:00")),
        (_utc("2025-03-30T01:30:00"), _utc("2025-03-30T03:00:00")),
    ]


def test_reference_orders(tmp_path: Path) -> None:
    path = _tiny(
        tmp_path,
        [],
        [
            (
                "000000000001",
                "P1",
                "M-17    ",
                "1000",
                "CNF",
                "2024-06-03 06:00:00",
                "2024-06-03 08:00:00",
            ),
            ("000000000002", "P2", "M-17    ", "1000", "REL", "2024-06-03 09:00:00", None),
            ("000000000003", "P3", "M-17    ", "1000", "DLT", "2024-06-03 09:00:00", None),
            ("000000000004", "P4", "M-17    ", "2000", "REL", "2024-06-03 09:00:00", None),
            (
                "000000000005",
                "P5",
                "M-18    ",
                "1000",
                "CNF",
                "2024-06-03 09:00:00",
                "2024-06-02 09:00:00",
            ),
            ("000000000006", "P6", "M-18    ", "1000", "REL", None, None),
            (
                "000000000007",
                "P7",
                "M-18    ",
                "1000",
                None,
                "2024-06-03 09:00:00",
                None,
            ),  # NULL status
            ("000000000008", "P8", "M-18    ", "1000", "REL", "2024-06-04 09:00:00", None),  # >= hi
        ],
    )
    hi = _utc("2024-06-04T00:00:00")
    runs, anomalies = reference_order_runs_and_anomalies(path, hi)
    assert anomalies == Counter(end_before_start=1, bad_timestamp=1)
    assert (
        runs
        == reference_order_runs(path, hi)
        == [
            {
                "machine_code": "M-17",
                "order_code": "000000000001",
                "product_code": "P1",
                "start": _utc("2024-06-03T04:00:00"),
                "end": _utc("2024-06-03T06:00:00"),
            },
            {
                "machine_code": "M-17",
                "order_code": "000000000002",
                "product_code": "P2",
                "start": _utc("2024-06-03T07:00:00"),
                "end": None,
            },
        ]
    )
