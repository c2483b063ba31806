"""The outcome writer: call steps to the database, in batches.

The follower, the dialer and the reconciler hand it (through :meth:`add`,
:meth:`cancel`, :meth:`uncharge`) what is to be stored; every
``flush_interval`` seconds it writes all of it in one unit of work, in order:
attempts never sent handed back, the calls' lifecycle steps and their events
(:func:`dialer.calls.outcomes.record`), the charges the circuit breaker took
back. A write that fails (database busy, or cancelled) puts everything back
in front for the next one: nothing is dropped. At a stop, :meth:`final_flush`
tries for at most ``FINAL_FLUSH_SECONDS``.

Bounds: these lists are not capped, and need not be: every entry belongs to a
call in flight (at most a fixed number of steps and logged events per call,
one cancel or uncharge per attempt), calls in flight are capped by the
pool's ``max_in_flight`` per connection, and no new call is claimed while the
database fails. So they hold at most a few times the calls in flight, which
is what the engine must keep to lose nothing.

Also writes the figures others read: the engine status row (every poll) and
the AMI connection statistics (every ``stats_interval``); those are figures
only, and a write that fails waits for the next.

May import: dialer's data modules and :mod:`.database`, :mod:`.settings`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import trio
from sqlalchemy.orm import Session

from dialer.leads import hopper
from dialer.calls.outcomes import LoggedEvent, RetryRules, record
from dialer.calls.tracker import Transition
from dialer.db import DatabaseBusy
from dialer.engine.database import Database
from dialer.engine.settings import FINAL_FLUSH_SECONDS, FINAL_FLUSH_TRIES, EngineClock
from dialer.models import AmiConnectionStats, EngineStatus

log = logging.getLogger("dialer.engine")


class OutcomeWriter:
    def __init__(self, database: Database, clock: EngineClock, *, engine_id: str, flush_interval: float,
                 rules: Callable[[], dict[int, RetryRules]]) -> None:
        self.database = database
        self.clock = clock
        self.engine_id = engine_id
        self.flush_interval = flush_interval
        #: the campaigns' retry rules as of now (campaign id -> rules)
        self._rules = rules
        self._pending: list[Transition] = []
        self._logged: list[LoggedEvent] = []
        self._cancelled: list[tuple[int, int]] = []   # (attempt id, lead id) never sent
        self._uncharge: list[tuple[int, int]] = []    # (attempt id, lead id) the breaker took back
        self._flushing = 0
        database.backlog = self.pending_steps

    # -- what the other parts hand in ------------------------------------------------------

    def add(self, transitions: list[Transition], event: Any = None) -> None:
        """Call steps to store, with the event that made them (logged once per call)."""
        self._pending.extend(transitions)
        if event is not None:
            logged: set[int] = set()  # an event that moved a call several steps is logged once
            for t in transitions:
                if t.call.attempt_id not in logged:
                    logged.add(t.call.attempt_id)
                    self._logged.append(LoggedEvent(t.call.attempt_id, t.at, event.name or "", event.items()))

    def cancel(self, attempt_id: int, lead_id: int) -> None:
        """An attempt whose Originate never left: its lead goes back uncharged."""
        self._cancelled.append((attempt_id, lead_id))

    def uncharge(self, attempt_id: int, lead_id: int) -> None:
        """An attempt the circuit breaker takes the charge of back."""
        self._uncharge.append((attempt_id, lead_id))

    # -- what the others may ask -------------------------------------------------------------

    def pending_steps(self) -> int:
        """Call steps not written yet."""
        return len(self._pending)

    def idle(self) -> bool:
        """Nothing waits to be written and no write is under way."""
        return not self._flushing and not self._unwritten()

    def _unwritten(self) -> bool:
        return bool(self._pending or self._cancelled or self._uncharge)

    # -- writing -----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            await trio.sleep(self.flush_interval)
            await self.flush()

    async def final_flush(self) -> None:
        """Write what is left before returning, waiting out a busy database for a while."""
        give_up = trio.current_time() + FINAL_FLUSH_SECONDS
        for _ in range(FINAL_FLUSH_TRIES):
            await self.flush()
            if not self._unwritten():
                return
            if trio.current_time() + 0.5 > give_up:
                break
            await trio.sleep(0.5)
        log.error("%d call steps and %d unsent attempts not written; a restart reconciles"
                  " their calls", len(self._pending), len(self._cancelled))

    async def flush(self) -> None:
        if not self._unwritten():
            return
        self._flushing += 1
        try:
            await self._flush_batch()
        finally:
            self._flushing -= 1

    async def _flush_batch(self) -> None:
        batch, self._pending = self._pending, []
        logged, self._logged = self._logged, []
        cancelled, self._cancelled = self._cancelled, []
        uncharge, self._uncharge = self._uncharge, []
        rules = self._rules()
        now = self.clock.utcnow()

        def write(session: Session) -> None:
            hopper.cancel_attempts(session, cancelled, now=now)
            record(session, batch, rules=rules, events=logged)
            hopper.uncharge_attempts(session, uncharge, now=now)

        try:
            await self.database.run(write)
        except BaseException as exc:
            # Keep them, in order, for the next flush: nothing is dropped,
            # whether the database was busy or the write was cancelled.
            self._pending[:0] = batch
            self._logged[:0] = logged
            self._cancelled[:0] = cancelled
            self._uncharge[:0] = uncharge
            if not isinstance(exc, DatabaseBusy):
                raise
            log.warning("outcomes not written yet (%s); trying again", exc)

    # -- figures -----------------------------------------------------------------------------

    async def write_connection_stats(self, rows: list[dict[str, Any]]) -> None:
        """The pool's statistics (``AMIPool.statistics()``) to ``ami_connection_stats``."""
        engine_id = self.engine_id
        now = self.clock.utcnow()

        def write(session: Session) -> None:
            for row in rows:
                stats = session.get(AmiConnectionStats, (engine_id, row["server"], row["connection"]))
                if stats is None:
                    stats = AmiConnectionStats(engine_id=engine_id, server=row["server"],
                                               connection=row["connection"])
                    session.add(stats)
                stats.originates_sent = row["originates_sent"]
                stats.failures = row["failures"]
                stats.reconnects = row["reconnects"]
                stats.rate_cap = row["rate_cap"]
                stats.updated_at = now

        with contextlib.suppress(DatabaseBusy):  # figures only: the next write catches up
            await self.database.run(write)

    async def write_status(self, data: dict[str, Any]) -> None:
        """The engine's status document (``Engine.status()``) to ``engine_status``."""
        engine_id = self.engine_id
        now = self.clock.utcnow()

        def write(session: Session) -> None:
            row = session.get(EngineStatus, engine_id)
            if row is None:
                session.add(EngineStatus(engine_id=engine_id, started_at=now, heartbeat_at=now, data=data))
            else:
                row.heartbeat_at = now
                row.data = data

        with contextlib.suppress(DatabaseBusy):  # figures only: the next write catches up
            await self.database.run(write)
