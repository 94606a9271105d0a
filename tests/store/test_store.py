"""The store on the embedded SQLite default and on the real PostgreSQL server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.errors import LockHeldError, StoreError
from etl.shapes import empty_anomalies
from etl.store.audit import Audit
from etl.store.db import Store
from etl.store.months import month_bounds
from etl.store.schema import SCHEMA_VERSION, schema_info


def runs(*rows: tuple[str, str, str, datetime, datetime | None]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["machine_code", "order_code", "product_code", "start", "end"]
    )
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True).astype("datetime64[us, UTC]")
    frame["flags"] = pd.Series(pd.NA, index=frame.index, dtype="string")
    return frame


def minute_runs(count: int) -> pd.DataFrame:
    """``count`` closed 30-second runs of machine M1, one a minute from T0."""
    return runs(
        *[
            ("M1", f"A{i}", "P", T0 + timedelta(minutes=i), T0 + timedelta(minutes=i, seconds=30))
            for i in range(count)
        ]
    )


def no_anomalies() -> pd.DataFrame:
    return empty_anomalies()


T0 = datetime(2026, 3, 29, 0, 30, 0, 123456, tzinfo=UTC)


def test_schema_is_created_once_and_versioned(store: Store) -> None:
    store.ensure_schema()  # idempotent
    with store.begin() as conn:
        version = conn.execute(
            sa.select(schema_info.c.value).where(schema_info.c.key == "version")
        ).scalar()
    assert version == str(SCHEMA_VERSION)


def test_a_store_from_a_newer_version_is_refused(store: Store) -> None:
    with store.begin() as conn:
        conn.execute(schema_info.update().values(value=str(SCHEMA_VERSION + 1)))
    with pytest.raises(StoreError, match="upgrade booking-etl") as info:
        store.ensure_schema()
    assert info.value.exit_code == 6


def test_replace_keeps_microseconds_utc_and_counts_changes(store: Store) -> None:
    first = runs(
        ("M1", "A", "P", T0, T0 + timedelta(hours=2)),
        ("M1", "B", "P", T0 + timedelta(hours=3), None),
    )
    store.acquire_lock("j", timedelta(minutes=5))
    _, changes = store.commit_sync(
        "j", T0, T0 + timedelta(days=1), first, no_anomalies(), Audit(started_at=T0)
    )
    assert (changes.inserted, changes.updated, changes.deleted) == (2, 0, 0)
    back = store.runs_in_month("j", "2026-03")
    assert back["start"].tolist() == first["start"].tolist()
    assert back["start"][0].microsecond == 123456
    assert str(back["start"].dtype) == "datetime64[us, UTC]"

    second = runs(("M1", "B", "P", T0 + timedelta(hours=3), T0 + timedelta(hours=4)))
    _, changes = store.commit_sync(
        "j", T0, T0 + timedelta(days=1), second, no_anomalies(), Audit(started_at=T0)
    )
    assert (changes.inserted, changes.updated, changes.deleted) == (0, 1, 1)
    assert changes.months == ["2026-03"]
    state = store.state("j")
    assert state is not None and state.watermark == T0 + timedelta(days=1)


def test_runs_corrected_long_ago_are_looked_up_in_a_few_statements(store: Store) -> None:
    # 1,201 closed runs far before the window, re-derived from corrected order rows: each
    # replaces the stored run with its key, looked up and deleted in chunks, not key by key
    count = 1201
    old = minute_runs(count)
    store.acquire_lock("j", timedelta(minutes=5))
    store.commit_sync("j", T0, T0 + timedelta(days=1), old, no_anomalies(), Audit(started_at=T0))
    lo = T0 + timedelta(days=30)
    corrected = old.copy()
    corrected["end"] = corrected["end"] + pd.Timedelta(seconds=1)
    corrected.loc[0, "product_code"] = "Q"
    statements: list[str] = []

    def count_statements(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(store.engine, "before_cursor_execute", count_statements)
    try:
        _, changes = store.commit_sync(
            "j", lo, lo + timedelta(days=1), corrected, no_anomalies(), Audit(started_at=lo)
        )
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count_statements)
    assert (changes.inserted, changes.updated, changes.deleted) == (0, count, 0)
    assert changes.months == ["2026-03"]  # the window's own month holds nothing and kept it
    assert len(statements) < 20
    back = store.runs_between("j")
    assert len(back) == count
    assert back["end"].tolist() == sorted(corrected["end"].tolist())
    assert back.loc[back["order_code"] == "A0", "product_code"].tolist() == ["Q"]


def test_carried_runs_are_those_open_at_lo(store: Store) -> None:
    lo = T0 + timedelta(days=2)
    data = runs(
        ("M1", "closed-before", "P", T0, T0 + timedelta(hours=1)),
        ("M1", "open", "P", T0 + timedelta(hours=2), None),
        ("M2", "ends-after-lo", "P", T0, lo + timedelta(hours=1)),
    )
    store.acquire_lock("j", timedelta(minutes=5))
    store.commit_sync("j", T0, lo + timedelta(days=1), data, no_anomalies(), Audit(started_at=T0))
    carried = store.carried_runs("j", lo)
    assert sorted(carried["order_code"]) == ["ends-after-lo", "open"]


def test_lock_is_exclusive_and_expires(store: Store) -> None:
    owner = store.acquire_lock("j", timedelta(minutes=5))
    with pytest.raises(LockHeldError):
        store.acquire_lock("j", timedelta(minutes=5))
    store.release_lock("j", owner)
    store.acquire_lock("j", timedelta(seconds=-1))  # a crashed holder: already expired
    store.acquire_lock("j", timedelta(minutes=5))  # taken over


def test_month_bounds_wrap_the_year() -> None:
    assert month_bounds("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )


def test_unreachable_store_is_a_store_error_without_the_password(tmp_path: Path) -> None:
    store = Store("postgresql+psycopg://etl:s3cret-pw@127.0.0.1:9/nowhere", tmp_path, ["s3cret-pw"])
    with pytest.raises(StoreError) as info:
        store.ensure_schema()
    assert "s3cret-pw" not in str(info.value)
    assert info.value.exit_code == 6


def test_a_large_write_refreshes_sqlite_statistics_so_the_window_uses_its_indexes(
    tmp_path: Path,
) -> None:
    from etl.store.db import ANALYZE_AFTER
    from etl.store.schema import production_runs

    store = Store("sqlite:///store.sqlite", tmp_path)
    store.ensure_schema()
    many = minute_runs(ANALYZE_AFTER)
    store.acquire_lock("j", timedelta(minutes=5))
    store.commit_sync("j", T0, T0 + timedelta(days=30), many, no_anomalies(), Audit(started_at=T0))
    lo = T0 + timedelta(days=6)
    select = sa.select(production_runs.c.machine_code)
    query = sa.union_all(*(select.where(part) for part in store._replaced("j", lo, timedelta(0))))
    with store.begin() as conn:
        stats = conn.exec_driver_sql("SELECT tbl FROM sqlite_stat1").scalars().all()
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
    store.close()
    assert "production_runs" in stats
    # one index range per part (starting from lo on; open; ending from lo on), not the whole job
    searches = [step for step in plan if step.startswith("SEARCH")]
    assert len(searches) == 3 and not [step for step in plan if step.startswith("SCAN")], plan
    assert "start>?" in searches[0], plan
    assert all("ix_production_runs_job_end (job=? AND end" in step for step in searches[1:]), plan
