"""Several workers over one PostgreSQL store: every job runs on schedule, never beside itself.

Three ``etl schedule`` daemons share four jobs (sources on the real PostgreSQL and MariaDB) while
a writer process adds bookings. One job starts out locked by a worker on another host that died
(its lease must run out first); one daemon is killed with SIGKILL in the middle of a run (its
lock is taken over). At the end the store equals a from-scratch derivation and the Parquet
equals the store. The long version of this is ``make soak`` (tests/soak.py).
"""

from __future__ import annotations

import itertools
import os
import signal
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.errors import LockHeldError
from etl.store.audit import Audit
from etl.store.db import Store
from etl.store.lease import Lease
from etl.store.schema import job_state
from tests.ops.test_schedule import as_utc, audit_rows
from tests.support.clock import FakeClock
from tests.support.daemon import Daemon, wait_for
from tests.support.fleet import Fleet, Source
from tests.support.plant import _sorted


def parquet_runs(root: Path, job: str) -> pd.DataFrame:
    frame = pd.read_parquet(root / "output" / "parquet" / "runs" / f"job={job}")
    return _sorted(frame[["machine_code", "order_code", "product_code", "start", "end", "flags"]])


def ok_runs_since(url: str, job: str, since: datetime) -> int:
    return sum(r.status == "ok" and as_utc(r.started_at) >= since for r in audit_rows(url, job))


def test_three_workers_share_four_jobs_through_a_dead_remote_lock_and_a_kill(
    tmp_path: Path,
    postgres_database: str,
    mariadb_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ETL_CRON_SECONDS", "1")
    fleet = Fleet(
        root=tmp_path / "p",
        store=postgres_database,
        sources=[
            Source("pg", postgres_database, "postgresql"),
            Source("maria", mariadb_database, "mariadb"),
        ],
        jobs=4,
        every_s=2,
        lease="3s",
        suffix=uuid.uuid4().hex[:6],
    )
    fleet.create()
    store = Store(postgres_database, fleet.root)
    store.ensure_schema()
    # j00 is locked by a worker on another host that died: nobody renews its lease
    remote_expiry = datetime.now(UTC) + timedelta(seconds=3)
    with store.begin() as conn:
        conn.execute(
            job_state.insert().values(
                job="j00", lock_owner="gone-host:4242:deadbeef", lock_expires=remote_expiry
            )
        )
    store.close()
    marker = tmp_path / "c-frozen"
    stop = tmp_path / "stop-writer"
    writer = fleet.writer(stop, tmp_path / "writer.log")
    try:
        with (
            Daemon(fleet.root, "--workers", "2", name="a") as a,
            Daemon(fleet.root, "--workers", "2", name="b") as b,
            Daemon(
                fleet.root,
                "--workers",
                "2",
                name="c",
                env={"ETL_FAILPOINT": "extract", "ETL_FAILPOINT_FILE": str(marker)},
            ) as c,
        ):
            wait_for(
                lambda: marker.exists() and marker.read_text().strip(),
                30,
                "daemon c frozen in a run",
            )
            frozen_job_pid = int(marker.read_text())
            assert frozen_job_pid == c.process.pid
            os.kill(c.process.pid, signal.SIGKILL)  # mid-run: its lock stays behind
            c.process.wait()
            killed_at = datetime.now(UTC)

            def cycles(n: int, since: datetime) -> bool:
                return all(
                    ok_runs_since(postgres_database, job, since) >= n for job in fleet.job_names()
                )

            wait_for(lambda: cycles(3, killed_at), 60, "three runs of every job after the kill")
            stop.touch()
            assert writer.wait(30) == 0
            stopped = datetime.now(UTC) + timedelta(seconds=1)
            wait_for(lambda: cycles(1, stopped), 30, "a run of every job after the writer stopped")
            assert (a.stop(), b.stop()) == (0, 0)
            logs = a.log() + b.log() + c.log()
    finally:
        stop.touch()
        writer.wait(30)

    rows = audit_rows(postgres_database)
    assert rows and all(r.status == "ok" for r in rows), [r.error for r in rows if r.error]
    for job in fleet.job_names():
        spans = sorted((as_utc(r.started_at), as_utc(r.finished_at)) for r in rows if r.job == job)
        assert len(spans) >= 4
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"two runs of {job} overlapped: {end} > {start}"
    # the dead remote worker's lock blocked j00 until its lease ran out, then it was taken over
    first_j00 = min(as_utc(r.started_at) for r in rows if r.job == "j00")
    assert first_j00 >= remote_expiry - timedelta(milliseconds=50)
    assert "took over the expired lock of gone-host:4242:deadbeef" in logs
    assert "(process gone)" in logs  # the killed daemon's lock: its process is gone
    assert "Traceback" not in logs
    # both remaining daemons did work
    assert a.log().count(": window ") > 0 and b.log().count(": window ") > 0

    expected = fleet.from_scratch(tmp_path / "scratch")
    stored = fleet.store_runs(postgres_database, fleet.root)
    for job in fleet.job_names():
        assert len(stored[job]) > 40
        pd.testing.assert_frame_equal(stored[job], expected[job], obj=job)
        pd.testing.assert_frame_equal(parquet_runs(fleet.root, job), stored[job], obj=job)


def test_a_heartbeat_keeps_a_long_run_locked_past_its_lease(store: Store) -> None:
    clock = FakeClock()
    clock.on(store)
    with Lease(store, "j", timedelta(seconds=2), timedelta(milliseconds=300), clock) as held:
        clock.asleep()
        for _ in range(10):  # 3 s, longer than the lease
            clock.advance(0.3)
            with pytest.raises(LockHeldError):
                store.acquire_lock("j", timedelta(seconds=2))
            held.check()
    store.acquire_lock("j", timedelta(seconds=2))  # released at the end of the block


def test_a_run_that_lost_its_lock_commits_nothing(store: Store) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    clock = FakeClock()
    clock.on(store)
    held = Lease(store, "j", timedelta(seconds=2), timedelta(hours=1), clock).acquire()
    try:
        clock.advance(3)  # no heartbeat in 3 s (one an hour): the lease runs out
        assert _expired(store, "j")
        thief = store.acquire_lock("j", timedelta(minutes=5))  # another worker takes over
        empty = _sorted(store.runs_between("j"))
        runs = empty.iloc[0:0]
        with pytest.raises(LockHeldError, match="lost its lock"):
            store.commit_sync(
                "j",
                t0,
                t0 + timedelta(days=1),
                runs,
                store.anomalies_between("j"),
                Audit(started_at=t0),
                owner=held.owner,
            )
        state = store.state("j")
        assert state is not None and state.watermark is None and state.lock_owner == thief
        with store.begin() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM sync_runs")).scalar() == 0
    finally:
        held.release()
    assert store.state("j").lock_owner == thief  # type: ignore[union-attr]  # not released by the loser


def _expired(store: Store, job: str) -> bool:
    """Whether the job's lock has run out by the store's clock (the one leases are measured by)."""
    state = store.state(job)
    with store.begin() as conn:
        now = store.clock(conn)
    return state is not None and state.lock_expires is not None and state.lock_expires < now
