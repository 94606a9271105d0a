"""The job lease: a holder notices by itself when its lease may have run out, the heartbeat
survives unexpected errors, and the store fences every write of a run that lost its lock."""

from __future__ import annotations

import logging
import socket
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import etl.pipeline.run
import etl.pipeline.sync
from etl.config.loader import load_project
from etl.errors import LockHeldError, LockLost, StoreError
from etl.ops.schedule import Daemon
from etl.outputs.parquet import publish
from etl.pipeline.sync import open_store
from etl.store.audit import Audit
from etl.store.db import Store
from etl.store.lease import Lease
from etl.store.schema import job_state
from tests.store.test_store import no_anomalies, runs
from tests.support.clock import FakeClock
from tests.support.plant import Plant

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def steal(store: Store, job: str, owner: str = "elsewhere:1:thief") -> None:
    """Another worker took the lock over (after our lease ran out)."""
    with store.begin() as conn:
        conn.execute(
            job_state.update()
            .where(job_state.c.job == job)
            .values(lock_owner=owner, lock_expires=datetime.now(UTC) + timedelta(minutes=5))
        )


def commit_one_month(store: Store, owner: str) -> None:
    data = runs(("M1", "A", "P", T0 + timedelta(hours=1), T0 + timedelta(hours=2)))
    store.commit_sync(
        "j", T0, T0 + timedelta(days=1), data, no_anomalies(), Audit(started_at=T0), owner=owner
    )


def test_a_holder_whose_renewals_fail_gives_up_before_its_lease_runs_out(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[str] = []

    def unreachable(job: str, *_args: object) -> bool:
        tried.append(job)
        raise StoreError("store unreachable")

    monkeypatch.setattr(store, "renew_lock", unreachable)
    clock = FakeClock()
    held = Lease(store, "j", timedelta(seconds=2), timedelta(milliseconds=300), clock).acquire()
    try:
        clock.asleep()
        held.check()  # fresh
        for _ in range(5):  # 1.5 s of failed renewals: within lease - margin (1.7 s)
            clock.advance(0.3)
        held.check()
        clock.advance(0.3)  # 1.8 s: past lease - margin, no renewal got through
        with pytest.raises(LockHeldError, match="lost its lock"):
            held.check()
        assert tried == ["j"] * 6  # the heartbeat kept trying
    finally:
        held.release()


def test_the_heartbeat_survives_an_unexpected_error(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = store.renew_lock
    calls: list[int] = []

    def flaky(job: str, owner: str, ttl: timedelta) -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in a driver")
        return real(job, owner, ttl)

    monkeypatch.setattr(store, "renew_lock", flaky)
    clock = FakeClock()
    clock.on(store)
    with Lease(store, "j", timedelta(seconds=2), timedelta(milliseconds=300), clock) as held:
        clock.asleep()
        for _ in range(10):  # 3 s, longer than the lease: only renewals after the error keep it
            clock.advance(0.3)
        assert len(calls) == 10
        with pytest.raises(LockHeldError):
            store.acquire_lock("j", timedelta(seconds=2))
        held.check()


def test_publishing_asks_the_store_whether_the_lock_is_still_ours(
    store: Store, tmp_path: Path
) -> None:
    held = Lease(store, "j", timedelta(minutes=5), timedelta(hours=1)).acquire()  # no heartbeat
    try:
        commit_one_month(store, held.owner)
        steal(store, "j")  # the heartbeat has not noticed yet
        with pytest.raises(LockHeldError, match="lost its lock"):
            publish(store, "j", ["2026-03"], tmp_path / "out", held.verify)
        assert not (tmp_path / "out").exists()
    finally:
        held.release()


def test_a_lease_that_ran_out_fails_the_publish_check_even_if_nobody_took_it(
    store: Store, tmp_path: Path
) -> None:
    held = Lease(store, "j", timedelta(minutes=5), timedelta(hours=1)).acquire()
    try:
        with store.begin() as conn:
            conn.execute(
                job_state.update()
                .where(job_state.c.job == "j")
                .values(lock_expires=datetime.now(UTC) - timedelta(seconds=1))
            )
        with pytest.raises(LockHeldError):
            held.verify()
    finally:
        held.release()


def test_clearing_pending_months_is_fenced_by_the_owner(store: Store) -> None:
    owner = store.acquire_lock("j", timedelta(minutes=5))
    commit_one_month(store, owner)
    steal(store, "j")
    with pytest.raises(LockHeldError, match="lost its lock"):
        store.clear_pending("j", ["2026-03"], owner)
    state = store.state("j")
    assert state is not None and state.publish_pending == ["2026-03"]
    with store.begin() as conn:
        assert conn.execute(sa.select(job_state.c.lock_owner)).scalar() == "elsewhere:1:thief"


def test_a_run_whose_lease_ran_out_commits_nothing_even_if_nobody_took_it(store: Store) -> None:
    owner = store.acquire_lock("j", timedelta(seconds=-1))  # held, but already run out
    with pytest.raises(LockHeldError, match="nothing was committed"):
        commit_one_month(store, owner)
    state = store.state("j")
    assert state is not None and state.watermark is None and state.publish_pending == []
    assert store.runs_between("j").empty


def lose_the_lease_while_publishing(monkeypatch: pytest.MonkeyPatch, plant: Plant) -> None:
    """Another worker takes the lock over just after this run committed."""
    real = etl.pipeline.run.publish

    def stolen_then_publish(store: Store, job: str, *args: Any, **kwargs: Any) -> list[str]:
        steal(store, job)
        return real(store, job, *args, **kwargs)

    monkeypatch.setattr(etl.pipeline.run, "publish", stolen_then_publish)


def audit_statuses(plant: Plant) -> list[str]:
    with sqlite3.connect(plant.root / "store.sqlite") as conn:
        return [row[0] for row in conn.execute("SELECT status FROM sync_runs ORDER BY id")]


def test_a_lease_lost_after_the_commit_says_so_and_adds_no_failed_audit_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=3))
    lose_the_lease_while_publishing(monkeypatch, plant)
    with pytest.raises(LockLost) as info:
        plant.run()
    assert info.value.exit_code == 5 and isinstance(info.value, LockHeldError)
    assert "committed sync 1; publishing stopped because the lease was lost" in info.value.message
    assert "nothing was committed" not in info.value.message
    assert audit_statuses(plant) == ["ok"]
    store = open_store(load_project(plant.root))
    try:
        state = store.state("bookings")
        assert state is not None and state.publish_pending  # the next run republishes
    finally:
        store.close()
    assert not (plant.root / "output" / "parquet").exists()


def test_the_daemon_logs_a_lost_lease_as_lost_not_as_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    plant = Plant(tmp_path / "p")
    plant.book("M1", "A", 10, plant.ago(hours=3))
    lose_the_lease_while_publishing(monkeypatch, plant)
    caplog.set_level(logging.INFO, logger="etl.runs")
    Daemon(load_project(plant.root))._fire("bookings")
    [record] = [r for r in caplog.records if r.name == "etl.runs"]
    assert record.levelno == logging.ERROR
    assert getattr(record, "status", None) == "lock_lost"
    assert "skipped" not in record.getMessage() and "committed sync 1" in record.getMessage()


def test_leased_releases_the_lock_and_closes_the_store_however_the_block_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plant = Plant(tmp_path / "p")
    project = load_project(plant.root)
    closed: list[Store] = []
    real_close = Store.close

    def close(self: Store) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(Store, "close", close)
    with (
        pytest.raises(RuntimeError, match="boom"),
        etl.pipeline.sync.leased(project, "bookings") as (store, held),
    ):
        assert store.state("bookings").lock_owner == held.owner  # type: ignore[union-attr]
        raise RuntimeError("boom")
    assert len(closed) == 1
    other = open_store(project)
    try:
        assert other.state("bookings").lock_owner is None  # type: ignore[union-attr]
        owner = other.acquire_lock("bookings", timedelta(minutes=5))
        with (
            pytest.raises(LockHeldError, match="already running"),
            etl.pipeline.sync.leased(project, "bookings"),
        ):
            raise AssertionError("the block must not run without the lock")
        assert len(closed) == 2  # closed although the lock was not taken
        other.release_lock("bookings", owner)
    finally:
        other.close()


def hold_as(store: Store, job: str, owner: str) -> None:
    store.acquire_lock(job, timedelta(minutes=5))
    with store.begin() as conn:
        conn.execute(job_state.update().where(job_state.c.job == job).values(lock_owner=owner))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_dead_local_owner_is_taken_over_only_in_the_same_pid_space(store: Store) -> None:
    from etl.store.lock import _pid_space

    host, pid = socket.gethostname(), dead_pid()
    assert _pid_space(), "this test needs /proc (boot id and PID namespace)"
    hold_as(store, "here", f"{host}:{pid}:0badc0de:{_pid_space()}")
    taken = store.acquire_lock("here", timedelta(minutes=5))  # its process is gone: taken over
    assert taken.endswith(f":{_pid_space()}")
    # a container elsewhere (or in another PID namespace) with the same hostname: its PID means
    # nothing here, so its lock is not taken over before its lease runs out
    hold_as(store, "twin", f"{host}:{pid}:0badc0de:{'0' * 8}")
    with pytest.raises(LockHeldError, match="already running"):
        store.acquire_lock("twin", timedelta(minutes=5))
    hold_as(store, "old", f"{host}:{pid}:0badc0de")  # a token without a PID space
    with pytest.raises(LockHeldError, match="already running"):
        store.acquire_lock("old", timedelta(minutes=5))
