"""A clock whose time moves only when a test says so, for leases and their heartbeat.

``FakeClock`` is a ``etl.store.lease.Clock``: a lease's heartbeat thread sleeps in ``wait`` until
the test ``advance``s the time past its next renewal, renews, and ``advance`` returns only once
that renewal is done (the thread sleeps again or has ended). ``asleep()`` waits for a heartbeat
that has just started to fall asleep, so that no renewal is missed. ``on(store)`` moves the store's
clock too (its real clock plus the time advanced), so that lock expiries in the store run out
with it. No test waits for real seconds to pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from etl.store.db import Store
from etl.store.lease import Clock

_POLL = 0.01  # how often a sleeping heartbeat looks at its stop event (set without our condition)
_PATIENCE = 30.0  # real seconds after which a heartbeat that never comes fails the test


class FakeClock(Clock):
    """Test-driven time for a lease (this host) and, with ``on``, for the store."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self._cond = threading.Condition()
        self._sleeping: dict[threading.Thread, float] = {}  # thread -> the time it wakes at
        self._woken: set[threading.Thread] = set()  # woken by advance, not asleep again yet

    def monotonic(self) -> float:
        with self._cond:
            return 1000.0 + self.elapsed

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        me = threading.current_thread()
        with self._cond:
            self._woken.discard(me)
            self._sleeping[me] = self.elapsed + seconds
            self._cond.notify_all()
            while not stop.is_set() and self.elapsed < self._sleeping[me]:
                self._cond.wait(_POLL)
            del self._sleeping[me]
            if stop.is_set():
                return True
            self._woken.add(me)
            return False

    def asleep(self, count: int = 1) -> None:
        """Return once ``count`` heartbeats sleep on this clock."""
        with self._cond:
            self._until(lambda: len(self._sleeping) >= count, "a heartbeat to sleep")

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass; return when every heartbeat due by then has run."""
        with self._cond:
            self.elapsed += seconds
            self._cond.notify_all()
            self._until(
                lambda: (
                    not any(due <= self.elapsed for due in self._sleeping.values())
                    and not any(thread.is_alive() for thread in self._woken)
                ),
                "the heartbeats due to run",
            )

    def _until(self, done: Callable[[], bool], what: str) -> None:
        # polled: a heartbeat that ends (its lock lost) tells nobody
        deadline = time.monotonic() + _PATIENCE
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {_PATIENCE:.0f}s for {what}")
            self._cond.wait(_POLL)

    def on(self, store: Store) -> Store:
        """Make ``store``'s clock (the one lock expiries are compared with) move with this one."""
        real: Callable[[Connection], datetime] = store.clock
        store.clock = lambda conn: real(conn) + timedelta(seconds=self.elapsed)
        return store
