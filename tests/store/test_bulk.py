"""etl.store.bulk on the embedded SQLite store and on the real PostgreSQL server: frames written in bulk
(COPY on PostgreSQL, one executemany on SQLite) read back exactly, inside the caller's transaction."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.errors import StoreError
from etl.shapes import ANOMALY_COLUMNS, RUN_COLUMNS, empty_anomalies, empty_runs
from etl.store.backends import COPY_BATCH
from etl.store.bulk import insert_frame, read_frame
from etl.store.db import Store, _stamps_as_stored
from etl.store.schema import anomalies, production_runs

EXTRA = {"job": "j", "sync_id": 1}
BERLIN = ZoneInfo("Europe/Berlin")
# half an hour before Europe/Berlin leaves CET for CEST (01:00 UTC): offsets change mid-frame
T0 = datetime(2026, 3, 29, 0, 30, 0, 123456, tzinfo=UTC)
TEXT_COLUMNS = ["machine_code", "order_code", "product_code", "flags", "kind", "detail"]
STAMP_COLUMNS = ["start", "end", "ts"]
RUN_KEY = ["machine_code", "order_code", "start"]

HOSTILE = [
    "comma, inside",
    'double "quoted" ""',
    "single 'quoted'",
    "new\nline",
    "carriage\rreturn\r\n",
    "tab\there",
    "back\\slash\\",
    "\\N",
    "\\.",
    "line\n\\.\nafter the COPY end marker",
    "Prüfstand 3 – Ø",
    "NULL",
    " padded ",
    "",
]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """An empty SQLite store with its schema."""
    store = Store("sqlite:///store.sqlite", tmp_path)
    store.ensure_schema()
    yield store
    store.close()


@pytest.fixture
def postgres_store(postgres_database: str, tmp_path: Path) -> Iterator[Store]:
    """An empty store with its schema on the real PostgreSQL server."""
    store = Store(postgres_database, tmp_path)
    store.ensure_schema()
    yield store
    store.close()


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the dtypes ``read_frame`` returns: strings, UTC microseconds."""
    out = frame.copy()
    for col in out.columns:
        if col in TEXT_COLUMNS:
            out[col] = out[col].astype("string")
        elif col in STAMP_COLUMNS:
            out[col] = pd.to_datetime(out[col], utc=True).astype("datetime64[us, UTC]")
    return out


def by_key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(RUN_KEY, ignore_index=True)


def read_runs(conn: sa.Connection, job: str = "j") -> pd.DataFrame:
    query = sa.select(*_stamps_as_stored(production_runs, RUN_COLUMNS)).where(
        production_runs.c.job == job
    )
    return read_frame(conn, query, RUN_COLUMNS)


def read_anomalies(conn: sa.Connection, job: str = "j") -> pd.DataFrame:
    query = sa.select(*_stamps_as_stored(anomalies, ANOMALY_COLUMNS)).where(anomalies.c.job == job)
    return read_frame(conn, query.order_by(anomalies.c.id), ANOMALY_COLUMNS)


def hostile_runs() -> pd.DataFrame:
    """One run per hostile text (in every text column), plus runs with NULL product and flags and
    an open run; timestamps in Europe/Berlin, across its DST switch, most with microseconds."""
    rows: list[tuple[object, ...]] = []
    for at, text in enumerate(HOSTILE):
        start = T0 + timedelta(minutes=7 * at, microseconds=at * 100_001)
        rows.append(
            (text, f"{text}/o", text, start, start + timedelta(seconds=at, microseconds=1), text)
        )
    rows.append(("M-null", "O-null", None, T0 + timedelta(hours=3), T0 + timedelta(hours=4), None))
    rows.append(
        ("M-open", "O-open", "P", T0 + timedelta(hours=5, microseconds=999_999), None, pd.NA)
    )
    rows.append(
        ("M-whole", "O-whole", "P", T0.replace(microsecond=0), T0.replace(microsecond=0), "")
    )
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for col in ("machine_code", "order_code", "product_code", "flags"):
        frame[col] = frame[col].astype("string")
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True).dt.tz_convert(BERLIN)
    return frame


def simple_runs(count: int, prefix: str = "M") -> pd.DataFrame:
    at = pd.RangeIndex(count)
    start = pd.Series(pd.Timestamp(T0) + pd.to_timedelta(at * 1_000_003, unit="us"))
    return canonical(
        pd.DataFrame(
            {
                "machine_code": [f"{prefix}{i:07d}" for i in at],
                "order_code": [f"O{i % 97}" for i in at],
                "product_code": [None if i % 5 == 0 else f"P{i % 7}" for i in at],
                "start": start,
                "end": start.where(at % 11 != 0) + pd.Timedelta(minutes=3, microseconds=7),
                "flags": [None if i % 3 else "gap" for i in at],
            }
        )
    )


def test_runs_round_trip_hostile_text_nulls_and_instants(store: Store) -> None:
    runs = hostile_runs().iloc[::-1]  # a frame's index (here reversed) has no say in the rows
    with store.begin() as conn:
        insert_frame(conn, production_runs, runs, RUN_COLUMNS, EXTRA)
    with store.begin() as conn:
        got = read_runs(conn)
        t = production_runs
        empty = conn.execute(sa.select(sa.func.count()).where(t.c.product_code == "")).scalar()
        null = conn.execute(sa.select(sa.func.count()).where(t.c.product_code.is_(None))).scalar()
        open_runs = conn.execute(sa.select(t.c.machine_code).where(t.c.end.is_(None))).all()
        stored = dict(conn.execute(sa.select(t.c.order_code, t.c.start)).all())
        extra = conn.execute(sa.select(t.c.job, t.c.sync_id).distinct()).all()

    expected = canonical(runs)
    pd.testing.assert_frame_equal(by_key(got), by_key(expected))
    assert got["start"].dt.microsecond.nunique() > 10
    assert (empty, null) == (1, 1)  # '' stays text, None stays NULL
    assert got["flags"].isna().sum() == 2 and (got["flags"] == "").sum() == 2
    assert open_runs == [("M-open",)]
    assert extra == [("j", 1)]
    # the stored instants, read through SQLAlchemy's own types, are the Berlin input's UTC instants
    assert stored == {
        order: start.to_pydatetime().astimezone(UTC)
        for order, start in zip(runs["order_code"], runs["start"], strict=True)
    }


@pytest.mark.parametrize(
    "stamp",
    [
        datetime(2026, 3, 29, 1, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 0, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 0, 0, 1, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(2026, 10, 25, 2, 30, 0, 10, tzinfo=BERLIN).replace(fold=1),
    ],
    ids=["whole", "before", "after", "y2k", "pre-epoch", "berlin-fold"],
)
def test_sqlite_bulk_stamps_are_stored_as_sqlalchemy_stores_them(
    sqlite_store: Store, stamp: datetime
) -> None:
    end = stamp + timedelta(hours=1, microseconds=3)
    frame = canonical(
        pd.DataFrame(
            [("M", "O", "P", stamp, end, None), ("M", "Q", "P", stamp, None, None)],
            columns=RUN_COLUMNS,
        )
    )
    with sqlite_store.begin() as conn:
        insert_frame(conn, production_runs, frame, RUN_COLUMNS, {"job": "bulk", "sync_id": 1})
        conn.execute(
            production_runs.insert(),
            [
                {"job": "core", "machine_code": "M", "order_code": "O", "start": stamp, "end": end},
                {
                    "job": "core",
                    "machine_code": "M",
                    "order_code": "Q",
                    "start": stamp,
                    "end": None,
                },
            ],
        )
    with sqlite_store.begin() as conn:
        raw = conn.exec_driver_sql(
            'SELECT job, order_code, start, "end" FROM production_runs ORDER BY job, order_code'
        ).all()
    bulk = [row[1:] for row in raw if row[0] == "bulk"]
    core = [row[1:] for row in raw if row[0] == "core"]
    assert bulk == core
    (_, start, end), (_, open_start, open_end) = bulk
    assert start == open_start == stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", end)
    assert open_end is None


def test_sqlite_range_predicates_find_bulk_rows_on_microsecond_boundaries(
    sqlite_store: Store,
) -> None:
    base = datetime(2026, 3, 29, 0, 59, 59, 999_998, tzinfo=UTC)
    stamps = [base + timedelta(microseconds=step) for step in range(5)]  # ...998 to 01:00:00.000002
    stamps += [
        datetime(2026, 3, 29, 9, 5, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 10, 0, 0, 10, tzinfo=UTC),
    ]
    frame = canonical(
        pd.DataFrame(
            {
                "machine_code": "M",
                "order_code": [f"O{at}" for at in range(len(stamps))],
                "product_code": None,
                "start": stamps,
                "end": stamps,
                "flags": None,
            }
        )
    )
    with sqlite_store.begin() as conn:
        insert_frame(conn, production_runs, frame, RUN_COLUMNS, EXTRA)
    t = production_runs
    for bound in [*stamps, datetime(2026, 3, 29, 11, 0, 0, 10, tzinfo=BERLIN)]:
        with sqlite_store.begin() as conn:
            at_or_after = conn.execute(
                sa.select(t.c.order_code).where(t.c.start >= bound).order_by(t.c.order_code)
            ).scalars()
            before = conn.execute(sa.select(sa.func.count()).where(t.c.end < bound)).scalar()
            exactly = conn.execute(sa.select(sa.func.count()).where(t.c.start == bound)).scalar()
        want = sorted(f"O{at}" for at, stamp in enumerate(stamps) if stamp >= bound)
        assert list(at_or_after) == want, bound
        assert before == sum(stamp < bound for stamp in stamps), bound
        assert exactly == stamps.count(bound), bound


def test_anomalies_round_trip_with_null_ts_and_null_codes(store: Store) -> None:
    # the first row undated: the column's kind is not guessed from a NULL
    found = pd.DataFrame(
        [
            ("overlap", None, "O,1", None, None),
            ("gap", "M1", None, T0, "x" * 5000 + "\n" + "y, \"z\" \\ 'w'\r\n"),
            (
                "unknown_machine",
                "Prüfstand 3 – Ø",
                '"O2"',
                datetime(2026, 3, 29, 3, 0, 0, 1, tzinfo=BERLIN),
                "",
            ),
            ("gap", "", "O3", T0 + timedelta(microseconds=1), "\\."),
            ("bad\nkind", "M\t2", "", pd.NaT, "detail\nwith\n\\.\nlines"),
            ("ü", "\\N", "O'4", datetime(2026, 3, 29, 2, 0, 0, tzinfo=UTC), "Prüfstand 3 – Ø"),
        ],
        columns=ANOMALY_COLUMNS,
    )
    with store.begin() as conn:
        insert_frame(conn, anomalies, found, ANOMALY_COLUMNS, EXTRA)
    with store.begin() as conn:
        got = read_anomalies(conn)
        undated = conn.execute(sa.select(sa.func.count()).where(anomalies.c.ts.is_(None))).scalar()
        blank = conn.execute(sa.select(sa.func.count()).where(anomalies.c.detail == "")).scalar()
    pd.testing.assert_frame_equal(got, canonical(found))
    assert (undated, blank) == (2, 1)
    assert got["ts"].isna().tolist() == [True, False, False, False, True, False]
    assert got["ts"][2] == pd.Timestamp("2026-03-29 01:00:00.000001", tz="UTC")
    assert got["machine_code"].isna().tolist() == [True] + [False] * 5


@pytest.mark.parametrize("duplicate", ["within-the-frame", "already-stored"])
def test_a_failed_bulk_insert_rolls_the_transaction_back(store: Store, duplicate: str) -> None:
    stored = simple_runs(3)
    with store.begin() as conn:
        insert_frame(conn, production_runs, stored, RUN_COLUMNS, EXTRA)
    with store.begin() as conn:
        before = by_key(read_runs(conn))

    fresh = simple_runs(4, prefix="N")
    clash = (
        pd.concat([fresh.iloc[2:], fresh.iloc[3:]], ignore_index=True)
        if duplicate == "within-the-frame"
        else pd.concat([fresh.iloc[2:], stored.iloc[1:2]], ignore_index=True)
    )
    with pytest.raises(StoreError, match=r"(?i)unique") as info, store.begin() as conn:
        insert_frame(conn, production_runs, fresh.iloc[:2], RUN_COLUMNS, EXTRA)
        insert_frame(conn, production_runs, clash, RUN_COLUMNS, EXTRA)
    assert info.value.exit_code == 6

    with store.begin() as conn:
        after = by_key(read_runs(conn))
    pd.testing.assert_frame_equal(after, before)
    # the pooled connection is usable again: the same fresh runs go in cleanly now
    with store.begin() as conn:
        insert_frame(conn, production_runs, fresh, RUN_COLUMNS, EXTRA)
    with store.begin() as conn:
        assert len(read_runs(conn)) == 3 + 4


def test_frames_larger_than_a_copy_batch_arrive_complete_and_in_order(store: Store) -> None:
    count = COPY_BATCH * 2 + 7
    runs = simple_runs(count)
    found = canonical(
        pd.DataFrame(
            {
                "kind": "gap",
                "machine_code": runs["machine_code"],
                "order_code": runs["order_code"],
                "ts": runs["end"],
                "detail": runs["product_code"],
            }
        )
    )
    with store.begin() as conn:
        insert_frame(conn, production_runs, runs, RUN_COLUMNS, EXTRA)
        insert_frame(conn, anomalies, found, ANOMALY_COLUMNS, EXTRA)
    with store.begin() as conn:
        got_runs = read_frame(
            conn,
            sa.select(*_stamps_as_stored(production_runs, RUN_COLUMNS)).order_by(
                production_runs.c.machine_code
            ),
            RUN_COLUMNS,
        )
        got_anomalies = read_anomalies(conn)  # by id: the order the rows were inserted in
    assert len(got_runs) == len(got_anomalies) == count
    pd.testing.assert_frame_equal(got_runs, runs)
    pd.testing.assert_frame_equal(got_anomalies, found)


@pytest.mark.parametrize("text", HOSTILE)
def test_a_column_with_one_value_in_every_row_reads_back_as_written(
    store: Store, text: str
) -> None:
    # SQLite writes such columns (the job, the sync id, one product, no flags) into the
    # statement instead of binding them per row: hostile text, '' and NULL stay what they were
    runs = simple_runs(5)
    runs["product_code"] = pd.Series([text] * 5, dtype="string")
    runs["flags"] = pd.Series([None] * 5, dtype="string")
    extra = {"job": f"{text}'job", "sync_id": 7}
    with store.begin() as conn:
        insert_frame(conn, production_runs, runs, RUN_COLUMNS, extra)
    with store.begin() as conn:
        got = read_runs(conn, job=f"{text}'job")
        t = production_runs
        ids = conn.execute(sa.select(t.c.sync_id).distinct()).scalars().all()
    pd.testing.assert_frame_equal(by_key(got), by_key(runs))
    assert ids == [7]


def test_an_empty_frame_inserts_nothing(store: Store) -> None:
    with store.begin() as conn:
        insert_frame(conn, production_runs, empty_runs(), RUN_COLUMNS, EXTRA)
        insert_frame(conn, anomalies, empty_anomalies(), ANOMALY_COLUMNS, EXTRA)
        insert_frame(conn, production_runs, simple_runs(0), RUN_COLUMNS, EXTRA)
    with store.begin() as conn:
        runs = conn.execute(sa.select(sa.func.count()).select_from(production_runs)).scalar()
        found = conn.execute(sa.select(sa.func.count()).select_from(anomalies)).scalar()
    assert (runs, found) == (0, 0)


def test_reading_no_rows_gives_empty_frames_of_the_right_shape(store: Store) -> None:
    with store.begin() as conn:
        insert_frame(conn, production_runs, simple_runs(2), RUN_COLUMNS, EXTRA)
    with store.begin() as conn:
        runs = read_runs(conn, job="nobody")
        found = read_anomalies(conn, job="nobody")
    pd.testing.assert_frame_equal(runs, empty_runs())
    pd.testing.assert_frame_equal(found, empty_anomalies())
    assert [str(dtype) for dtype in runs.dtypes] == [
        "string",
        "string",
        "string",
        "datetime64[us, UTC]",
        "datetime64[us, UTC]",
        "string",
    ]


def test_postgres_session_time_zone_changes_no_instant(postgres_store: Store) -> None:
    runs = hostile_runs()
    with postgres_store.begin() as conn:
        conn.exec_driver_sql("SET LOCAL TIME ZONE 'America/St_Johns'")  # UTC-02:30 in summer
        insert_frame(conn, production_runs, runs, RUN_COLUMNS, EXTRA)
        got_there = read_runs(conn)
    with postgres_store.begin() as conn:
        conn.exec_driver_sql("SET LOCAL TIME ZONE 'Europe/Berlin'")
        got_here = read_runs(conn)
    expected = by_key(canonical(runs))
    pd.testing.assert_frame_equal(by_key(got_there), expected)
    pd.testing.assert_frame_equal(by_key(got_here), expected)
