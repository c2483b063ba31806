"""The engine: its parts wired together and started in one nursery."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import trio
from sqlalchemy.orm import Session, sessionmaker

from dialer import liveness
from dialer.campaigns import live
from dialer.compliance import abandon
from dialer.ami.pool import AMIPool
from dialer.calls.agents import AgentBoard
from dialer.calls.tracker import CallTracker, TrackedCall
from dialer.engine.campaign import CampaignRun
from dialer.engine.database import Database
from dialer.engine.dialing import Dialer
from dialer.engine.follower import CallFollower
from dialer.engine.reconciler import Reconciler
from dialer.engine.settings import EngineClock, EngineSettings, new_engine_id
from dialer.engine.watcher import CampaignWatcher
from dialer.engine.writer import OutcomeWriter


#: the counters of status()["counters"], in the order shown
COUNTERS = ("opt_outs", "originates", "refused", "lost", "ended", "events", "adopted", "reconciled",
            "not_sent", "hangups", "hung_up", "refused_stopping", "breaker_trips", "drop_redirects")


class Engine:
    """Dials every running campaign (or the ones named) through one AMI pool;
    see :mod:`dialer.engine` for its parts."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        servers: Sequence[Any],
        *,
        settings: EngineSettings | None = None,
        campaigns: Sequence[str] | None = None,
        until_done: bool = False,
        engine_id: str | None = None,
        connect: Callable[..., Any] | None = None,
        on_progress: Callable[["Engine"], None] | None = None,
        db_thread: bool = True,
        epoch: float | None = None,
    ) -> None:
        self.settings = settings or EngineSettings()
        self.only = list(campaigns) if campaigns else None
        self.until_done = until_done
        self.engine_id = liveness.check_engine_id(engine_id) if engine_id else new_engine_id()
        # Leases are this run's: a restarted engine adopts its predecessor's
        # calls at once instead of renewing them (see dialer.liveness).
        self.run_token = uuid.uuid4().hex[:liveness.RUN_TOKEN_LENGTH]
        self.lease_owner = liveness.lease_owner(self.engine_id, self.run_token)
        self.on_progress = on_progress
        # Database work runs in a worker thread; tests under trio's MockClock run
        # it inline instead, since the mock clock jumps while a thread works.
        self.database = Database(sessions, timeout=self.settings.db_timeout, thread=db_thread)
        self._epoch = epoch
        self.tracker = CallTracker(drop_after=self.settings.drop_after)
        self.agents = AgentBoard()
        self._servers = list(servers)
        self._pool_kwargs = {"connect": connect} if connect is not None else {}
        self.pool: AMIPool | None = None
        self.clock: EngineClock | None = None
        # The parts, made by run() (they need trio's clock):
        self.watcher: CampaignWatcher | None = None
        self.writer: OutcomeWriter | None = None
        self.follower: CallFollower | None = None
        self.reconciler: Reconciler | None = None
        self.dialer: Dialer | None = None
        self._draining = False

    # -- what callers see ------------------------------------------------------------

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.database.sessions

    @sessions.setter
    def sessions(self, value: sessionmaker[Session]) -> None:
        self.database.sessions = value

    @property
    def database_down(self) -> str | None:
        """Why the last unit of database work timed out, until one works."""
        return self.database.down

    @property
    def runs(self) -> dict[int, CampaignRun]:
        return self.watcher.runs if self.watcher is not None else {}

    @property
    def counters(self) -> dict[str, int]:
        out = dict.fromkeys(COUNTERS, 0)
        for part in (self.dialer, self.follower, self.reconciler):
            if part is not None:
                out.update(part.counters)
        return out

    def in_flight(self) -> int:
        return len(self.tracker)

    def unwritten(self) -> int:
        """Call steps not written to the database yet."""
        return self.writer.pending_steps() if self.writer is not None else 0

    def idle(self) -> bool:
        """No call in flight and nothing left to write."""
        return self.in_flight() == 0 and (self.writer is None or self.writer.idle())

    def drain(self) -> None:
        """Place no new calls; follow the calls in flight to their end, then return."""
        self._draining = True
        if self.dialer is not None:
            self.dialer.drain()

    # -- wiring ------------------------------------------------------------------------

    def _build(self) -> None:
        s = self.settings
        self.clock = clock = EngineClock(s.speed, epoch=self._epoch)
        self.pool = pool = AMIPool(self._servers, now=trio.current_time(), ping_interval=s.ping_interval,
                                   ping_timeout=s.ping_timeout, **self._pool_kwargs)
        self.watcher = watcher = CampaignWatcher(
            self.database, clock, s, engine_id=self.engine_id, lease_owner=self.lease_owner,
            run_token=self.run_token, campaigns=self.only, servers=pool)
        runs = watcher.runs
        self.writer = writer = OutcomeWriter(
            self.database, clock, engine_id=self.engine_id, flush_interval=s.flush_interval,
            rules=lambda: {cid: run.rules for cid, run in runs.items()})
        self.follower = follower = CallFollower(
            database=self.database, clock=clock, speed=s.speed, tracker=self.tracker, agents=self.agents,
            runs=runs, add=writer.add, uncharge=writer.uncharge, request_pause=watcher.request_pause)
        self.reconciler = reconciler = Reconciler(
            pool=pool, clock=clock, settings=s, tracker=self.tracker, agents=self.agents, runs=runs,
            apply=follower.apply, is_unsent=lambda call: dialer.is_unsent(call), on_gap=watcher.housekeep_soon)
        self.dialer = dialer = Dialer(
            pool=pool, database=self.database, clock=clock, settings=s, tracker=self.tracker,
            agents=self.agents, runs=runs, engine_id=self.engine_id, lease_owner=self.lease_owner,
            apply=follower.apply, check=reconciler.check, cancel=writer.cancel,
            request_pause=watcher.request_pause)
        release, forget = dialer.call_ended, reconciler.call_ended

        def call_ended(call: TrackedCall) -> None:
            release(call)   # its connection's place is free
            forget(call)    # nothing to ask Asterisk about it

        follower.on_ended = call_ended
        follower.wake = dialer.poke
        if self._draining:
            self.dialer.drain()

    # -- running -----------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Dial until cancelled, or (``until_done``) until the campaigns are finished."""
        self._build()
        assert self.pool and self.watcher and self.writer and self.follower and self.reconciler and self.dialer
        await self.database.take_lock(self.engine_id)
        try:
            await self.watcher.load()
        except BaseException:
            self.database.release_lock()
            raise
        try:
            async with trio.open_nursery() as nursery:
                # events -> follower -> writer; gaps -> reconciler
                await nursery.start(self.pool.run, self.follower.on_event, self.reconciler.on_gap)
                nursery.start_soon(self._control, nursery.cancel_scope)  # watcher polls
                nursery.start_soon(self.watcher.run_pauses, self.dialer.poke)
                nursery.start_soon(self.dialer.run)       # claims -> Originates
                nursery.start_soon(self.follower.run)     # opt-outs tried again
                nursery.start_soon(self.reconciler.run)   # calls whose end was not seen
                nursery.start_soon(self.writer.run)       # outcomes, in batches
                nursery.start_soon(live.publish, self)    # live state for consoles and pacing
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True):
                await self.writer.final_flush()
                await self.writer.write_connection_stats(self.pool.statistics())
                await self.watcher.save_pacing_now()
            self.database.release_lock()

    async def _control(self, scope: trio.CancelScope) -> None:
        assert self.watcher and self.writer and self.reconciler and self.dialer and self.pool
        while True:
            polled = await self.watcher.poll()
            if polled is not None:
                if polled.orphans:
                    self.reconciler.adopt(polled.orphans)
                if polled.stats_due:
                    await self.writer.write_connection_stats(self.pool.statistics())
                await self.writer.write_status(self.status())
                self.dialer.poke()
            if self.on_progress is not None:
                self.on_progress(self)
            if self._finished():
                scope.cancel()
                return
            await trio.sleep(self.settings.poll_interval)

    def _finished(self) -> bool:
        if not self.idle():
            return False
        return self._draining or (self.until_done and self.watcher is not None and self.watcher.all_finished())

    # -- figures -----------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Event lag and database unit-of-work times over the last samples (seconds)."""
        def summary(values) -> dict[str, Any]:
            ordered = sorted(values)
            if not ordered:
                return {"median": None, "max": None, "samples": 0}
            return {"median": round(ordered[len(ordered) // 2], 4), "max": round(ordered[-1], 4),
                    "samples": len(ordered)}
        lags = self.follower.lags if self.follower is not None else ()
        return {"event_lag": summary(lags), "db_unit": summary(self.database.times)}

    def status(self) -> dict[str, Any]:
        """The live figures ``dialer status`` shows, as plain data."""
        assert self.clock is not None and self.pool is not None
        now = self.clock.now()
        campaigns = {}
        for run in self.runs.values():
            c = run.campaign
            ringing = connected = 0
            for call in run.calls:  # one pass: this runs 20 times a second
                if call.answered_at is None:
                    ringing += 1
                if call.connected_at is not None:
                    connected += 1
            if c.queue and c.mode != "unattended":
                logged_in, free, _ = self.agents.counts(c.queue, now)
                agents = self.agents.board(c.queue, now)
            else:
                logged_in = free = agents = None
            d = run.decision
            campaigns[c.name] = {
                "state": c.state, "mode": c.mode, "in_flight": len(run.calls),
                "ringing": ringing, "waiting": len(run.calls) - ringing - connected,
                "connected": connected, "agents_logged_in": logged_in, "agents_free": free,
                "dial_level": None if d is None else round(d.dial_level, 2),
                "decision": None if d is None else d.calls,
                "reason": None if d is None else d.reason,
                "placed": run.placed, "agents": agents,
                # As pacing last read them (every stats_interval), from dialer.compliance.abandon.
                "abandon_30d": abandon.rate(run.abandon[0], run.abandon[1]),
                "abandon_24h": abandon.rate(run.abandon[2], run.abandon[3]),
                "pacing": run.pacing,
            }
        return {
            "engine_id": self.engine_id,
            # Real wall-clock seconds: the engine clock may run fast or start elsewhere.
            "wall_time": time.time(),
            "clock": now,  # the engine clock then (agents' "since" times are on it)
            "speed": self.settings.speed,
            "campaigns": campaigns,
            "connections": self.pool.statistics(trio.current_time()),
            "counters": self.counters,
            "health": self.health(),
        }
