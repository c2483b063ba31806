"""The engine's database work: one unit of work at a time, each within a deadline.

SQLAlchemy is synchronous, so every unit runs in a worker thread (or inline,
``thread=False``, for tests under trio's MockClock, whose clock jumps while a
thread works). The thread cannot be cancelled: :func:`dialer.db.deadline`
bounds it instead, by breaking its connection once ``timeout`` has passed. A
unit that times out or cannot reach the database raises
:class:`~dialer.db.DatabaseBusy`: it did not happen and may be tried again.

Also holds this run's liveness lock (see :mod:`dialer.liveness`).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
import trio
from sqlalchemy.orm import Session, sessionmaker

from dialer import db, liveness
from dialer.db import DatabaseBusy
from dialer.errors import UserError

log = logging.getLogger("dialer.engine")
T = TypeVar("T")

#: unit-of-work times kept for the health figures (the oldest is dropped when full)
SAMPLES = 256


class Database:
    """Runs the engine's units of work (``fn(session, *args)``) one at a time."""

    def __init__(self, sessions: sessionmaker[Session], *, timeout: float, thread: bool = True) -> None:
        self.sessions = sessions
        self.timeout = timeout
        self.thread = thread
        #: why the last unit of work timed out, until one works
        self.down: str | None = None
        #: seconds of the last units of work (appended from the worker thread)
        self.times: collections.deque[float] = collections.deque(maxlen=SAMPLES)
        #: how many call steps wait to be written, for the message when the database stops answering
        self.backlog: Callable[[], int] = lambda: 0
        self._limiter = trio.CapacityLimiter(1)
        self._lock: liveness.EngineLock | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        bind = self.sessions.kw["bind"]
        timeout = self.timeout
        sessions = self.sessions

        def unit() -> T:
            started = time.perf_counter()
            with db.deadline(bind, timeout), sessions.begin() as session:
                result = fn(session, *args)
            self.times.append(time.perf_counter() - started)
            return result

        try:
            if not self.thread:
                await trio.lowlevel.checkpoint()
                result = unit()
            else:
                result = await trio.to_thread.run_sync(unit, limiter=self._limiter)
        except db.DatabaseTimeout as exc:
            if self.down is None:
                log.error("%s; no new calls until it answers, outcomes are kept (%d call steps)"
                          " and written then", exc, self.backlog())
            self.down = str(exc)
            raise DatabaseBusy(str(exc)) from exc
        except sa.exc.OperationalError as exc:
            reason = (str(exc.orig) if exc.orig is not None else str(exc)).strip().splitlines()[0]
            raise DatabaseBusy(reason) from exc
        if self.down is not None:
            self.down = None
            log.warning("the database answers again")
        return result

    # -- the liveness lock ---------------------------------------------------------

    async def take_lock(self, engine_id: str) -> None:
        """Hold this engine name's liveness lock for the run (UserError if a
        live engine holds it)."""
        lock = liveness.EngineLock(self.sessions.kw["bind"], engine_id)
        if self.thread:
            await trio.to_thread.run_sync(lock.acquire, limiter=self._limiter)
        else:
            lock.acquire()
        self._lock = lock

    def keep_lock(self) -> None:
        """Take the lock again if it was lost with its database connection
        (other engines would otherwise take this run for dead). Called from a
        unit of work."""
        lock = self._lock
        if lock is None or lock.held():
            return
        lock.release()
        try:
            lock.acquire()
        except UserError as exc:
            log.error("liveness lock lost and not taken again: %s", exc)
        else:
            log.warning("liveness lock lost with its database connection; taken again")

    def release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
