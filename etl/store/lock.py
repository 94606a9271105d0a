"""The per-job lock: one row of ``job_state`` (``lock_owner``, ``lock_expires``), taken, renewed
and given back in the caller's transaction, measured by the store's clock (``now``).

An owner token is ``host:pid:token:pidspace``. A lock whose lease ran out is taken over by the
next run; so is one whose owner was a process of this host and PID namespace that is gone.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.errors import LockHeldError
from etl.store.schema import job_state

log = logging.getLogger(__name__)


def owner_token() -> str:
    """A new owner token for a lock this process takes."""
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if _pid_space():
        owner += f":{_pid_space()}"
    return owner


def take(conn: Connection, now: datetime, job: str, ttl: timedelta, owner: str) -> tuple[bool, Any]:
    """Take the job's lock for ``owner`` until ``now + ttl`` when it is free, expired or held
    by a dead local process: (taken, the holder's (owner, expires) row when not)."""
    holder = None
    exists = conn.execute(sa.select(job_state.c.job).where(job_state.c.job == job)).first()
    if exists is None:
        try:
            with conn.begin_nested():
                conn.execute(job_state.insert().values(job=job, updated_at=now))
        except sa.exc.IntegrityError:
            pass  # another process created it a moment ago
    before = conn.execute(sa.select(job_state.c.lock_owner).where(job_state.c.job == job)).scalar()
    taken = conn.execute(
        job_state.update()
        .where(job_state.c.job == job)
        .where(sa.or_(job_state.c.lock_owner.is_(None), job_state.c.lock_expires < now))
        .values(lock_owner=owner, lock_expires=now + ttl)
    ).rowcount
    if taken == 1 and before is not None:
        log.warning("%s: took over the expired lock of %s", job, before)
    if taken != 1:
        holder = conn.execute(
            sa.select(job_state.c.lock_owner, job_state.c.lock_expires).where(
                job_state.c.job == job
            )
        ).first()
        if holder is not None and _dead_local_owner(holder[0]):
            # the holder ran on this host and its process is gone (killed): take over
            taken = conn.execute(
                job_state.update()
                .where(job_state.c.job == job, job_state.c.lock_owner == holder[0])
                .values(lock_owner=owner, lock_expires=now + ttl)
            ).rowcount
            if taken == 1:
                log.warning("%s: took over the lock of %s (process gone)", job, holder[0])
    return taken == 1, holder


def held_error(job: str, holder: Any) -> LockHeldError:
    """The error for a lock ``take`` could not take, naming its holder."""
    who, until = holder if holder else ("?", None)
    return LockHeldError(
        f"job {job!r} is already running ({who}, lock expires "
        f"{until.isoformat(timespec='seconds') if until else '?'})",
        hint="wait for it to finish; a crashed run's lock expires by itself",
    )


def renew(conn: Connection, now: datetime, job: str, owner: str, ttl: timedelta) -> bool:
    """Extend our lock to now + ``ttl``; False when it is no longer ours (expired and taken)."""
    renewed = conn.execute(
        job_state.update()
        .where(job_state.c.job == job, job_state.c.lock_owner == owner)
        .values(lock_expires=now + ttl)
    ).rowcount
    return renewed == 1


def holds(conn: Connection, now: datetime, job: str, owner: str) -> bool:
    """Whether ``owner`` holds the job's lock and its lease has not run out at ``now``."""
    held = conn.execute(
        sa.select(job_state.c.job).where(
            job_state.c.job == job,
            job_state.c.lock_owner == owner,
            job_state.c.lock_expires >= now,
        )
    ).first()
    return held is not None


def release(conn: Connection, job: str, owner: str) -> None:
    """Give the lock back (only if we still hold it)."""
    conn.execute(
        job_state.update()
        .where(job_state.c.job == job, job_state.c.lock_owner == owner)
        .values(lock_owner=None, lock_expires=None)
    )


@functools.cache
def _pid_space() -> str:
    """Which process-ID space this process lives in: a short digest of the kernel's boot id and
    the PID namespace, or "" where /proc does not tell. Two containers with the same hostname
    (on two hosts, or on one host in two PID namespaces) have different ones, so a PID in a lock
    owner token is only looked up where it means the same process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        space = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return hashlib.sha256(f"{boot}/{space}".encode()).hexdigest()[:8]


def _dead_local_owner(owner: str | None) -> bool:
    """Whether a lock owner token (``host:pid:token:pidspace``) names a process of this host and
    PID namespace that no longer exists. Tokens without a PID space (older versions, systems
    without /proc) are never taken over early: their lease runs out instead."""
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) != 4:
        return False
    host, pid_text, _token, space = parts
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    if not space or space != _pid_space():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
