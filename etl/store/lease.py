"""A job's lease: its lock (etl/store/lock.py) held for a ``with`` block and kept alive by a
heartbeat thread, with the checks a run makes before it commits or publishes."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from etl.config.durations import format_duration
from etl.errors import LockLost, StoreError

if TYPE_CHECKING:
    from etl.store.db import Store

log = logging.getLogger(__name__)


class Clock:
    """The time a lease is measured by on this host: ``monotonic()``, and ``wait()``, the
    heartbeat's sleep between renewals. Tests pass a clock whose time moves only when they say."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""
        return time.monotonic()

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        """Sleep ``seconds``, or less when ``stop`` is set; whether it was set."""
        return stop.wait(seconds)


SYSTEM_CLOCK = Clock()


class Lease:
    """A job's lock held for the length of a ``with`` block and kept alive by a heartbeat.

    The lock is taken with an expiry of now + ``lease`` (store clock); a background thread
    renews it every ``heartbeat`` while the block runs. A process that dies stops renewing, so
    its lock expires ``lease`` after the last heartbeat at the latest and the next run of the job,
    on any host, takes it over. ``check()`` raises once a renewal found the lock taken, and also
    by time alone: once no renewal has succeeded for ``lease`` minus a safety margin (the store
    was unreachable), the lock may have expired and been taken without this process hearing of it.
    ``verify()`` additionally asks the store (before each partition is published).
    """

    def __init__(
        self,
        store: Store,
        job: str,
        lease: timedelta,
        heartbeat: timedelta,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store, self.job, self.lease, self.heartbeat = store, job, lease, heartbeat
        self.clock = clock
        self.owner = ""
        self.lost = False
        self._last_ok = 0.0  # clock.monotonic() when the last successful take/renewal was sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def margin(self) -> timedelta:
        """How long before the lease runs out (by this host's clock) ``check()`` gives up: one
        heartbeat, at most half the lease; room for clock drift and one partition's upload."""
        return min(self.heartbeat, self.lease / 2)

    def acquire(self) -> Lease:
        """Take the lock (LockHeldError when another run holds it) and start the heartbeat."""
        sent = self.clock.monotonic()
        self.owner = self.store.acquire_lock(self.job, self.lease)
        self._last_ok = sent
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.job}", daemon=True)
        self._thread.start()
        return self

    def release(self) -> None:
        """Stop the heartbeat and give the lock back (if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.owner and not self.lost:
            self.store.release_lock(self.job, self.owner)

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *_exc: object) -> None:
        self.release()

    def _beat(self) -> None:
        while not self.clock.wait(self._stop, self.heartbeat.total_seconds()):
            sent = self.clock.monotonic()
            try:
                held = self.store.renew_lock(self.job, self.owner, self.lease)
            except StoreError as exc:  # the store may come back before the lease runs out
                log.warning("%s: could not renew the lock: %s", self.job, exc)
                continue
            except Exception:  # never let the heartbeat die silently; check() expires by time
                log.exception("%s: could not renew the lock (unexpected error)", self.job)
                continue
            if not held:
                self.lost = True
                log.error("%s: lost the lock: the lease expired and another run took it", self.job)
                return
            self._last_ok = sent

    def expired(self) -> bool:
        """Whether the lock may have run out by time: no renewal succeeded for ``lease - margin``."""
        return self.clock.monotonic() - self._last_ok > (self.lease - self.margin).total_seconds()

    def check(self) -> None:
        """Raise LockHeldError when the lock is no longer ours, or may no longer be: a renewal
        found it taken, or none succeeded for nearly a lease."""
        if self.lost:
            raise LockLost(
                f"job {self.job!r} lost its lock (its lease expired and another run took it)",
                hint="raise 'lock.lease' in etl.yaml if the store was unreachable for long",
            )
        if self.expired():
            raise LockLost(
                f"job {self.job!r} lost its lock (no renewal reached the store for "
                f"{format_duration(self.lease - self.margin)}; its lease may have run out)",
                hint="raise 'lock.lease' in etl.yaml if the store was unreachable for long",
            )

    def verify(self) -> None:
        """``check()``, then ask the store that the lock is still ours and not expired (by the
        store's clock): the test before each partition is published."""
        self.check()
        if not self.store.holds_lock(self.job, self.owner):
            self.lost = True
            raise LockLost(
                f"job {self.job!r} lost its lock (its lease expired and another run took it)",
                hint="raise 'lock.lease' in etl.yaml if the store was unreachable for long",
            )
