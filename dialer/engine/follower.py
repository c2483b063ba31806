"""The call follower: AMI events to call steps.

The pool's event readers call :meth:`CallFollower.on_event` with every event
of every server. Queue-member events go to the agent board; the drop
message's opt-out ``UserEvent`` puts the number on the do-not-call list at
once; every other event goes to the call tracker, whose steps
(:meth:`apply`, also used by the dialer and the reconciler for theirs) go to
the writer. When a call ends, the follower teaches its campaign's pacing
estimator and circuit breaker, and tells the engine (``on_ended``) so that
its connection is freed and nobody asks Asterisk about it any more.

Opt-outs the database could not take go on a memory channel (capacity
``OPT_OUT_RETRIES``) to the follower's own task, which tries each again a
second later until it is written; when full, the event reader waits
(back-pressure on the AMI connection): an opt-out is never dropped.

Event-lag samples (``Timestamp:`` to now) are kept for the health figures,
the last ``LAG_SAMPLES`` (the oldest dropped).

May import: the call tracker, agents, breaker, dnc, and :mod:`.campaign`,
:mod:`.database`, :mod:`.settings`.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

import sqlalchemy as sa
import trio
from sqlalchemy.orm import Session

from dialer.ami.codec.message import Message
from dialer.ami.timestamps import ServerClock
from dialer.calls import dispositions as disp
from dialer.calls.agents import AgentBoard
from dialer.calls.breaker import failure_text
from dialer.calls.tracker import CallTracker, Step, TrackedCall, Transition
from dialer.db import DatabaseBusy
from dialer.leads.dnc import add_dnc
from dialer.engine.campaign import CampaignRun
from dialer.engine.database import Database
from dialer.engine.settings import OPT_OUT_EVENT, EngineClock
from dialer.models import CallAttempt, Lead

log = logging.getLogger("dialer.engine")

#: opt-outs waiting for another try (see the module docstring)
OPT_OUT_RETRIES = 1000
#: event-lag samples kept
LAG_SAMPLES = 256


class CallFollower:
    def __init__(self, *, database: Database, clock: EngineClock, speed: float, tracker: CallTracker,
                 agents: AgentBoard, runs: dict[int, CampaignRun],
                 add: Callable[[list[Transition], Message | None], None],
                 uncharge: Callable[[int, int], None],
                 request_pause: Callable[[CampaignRun, str], None],
                 on_ended: Callable[[TrackedCall], None] = lambda call: None,
                 wake: Callable[[], None] = lambda: None) -> None:
        self.database = database
        self.clock = clock
        self.speed = speed
        self.tracker = tracker
        self.agents = agents
        #: the watcher's campaigns (their estimator and breaker are taught here)
        self.runs = runs
        self._add = add                      # steps to the writer
        self._uncharge = uncharge            # charges the breaker takes back, to the writer
        self._request_pause = request_pause  # breaker trips, to the watcher
        #: called with each call that ended, and when the dialer should look
        #: again (the engine wires these once the dialer exists)
        self.on_ended = on_ended
        self.wake = wake
        self._server_clocks: dict[str, ServerClock] = {}  # events' Timestamps, per server
        self.lags: collections.deque[float] = collections.deque(maxlen=LAG_SAMPLES)
        self._retry_send, self._retries = trio.open_memory_channel[tuple[str, Message]](OPT_OUT_RETRIES)
        self.counters = {"opt_outs": 0, "ended": 0, "events": 0, "hung_up": 0, "breaker_trips": 0}

    # -- events ----------------------------------------------------------------------

    async def on_event(self, server: str, event: Message) -> None:
        counters = self.counters
        counters["events"] += 1
        if not counters["events"] % 64:  # a sample of the events is plenty
            self._note_lag(event)
        now = self.clock.now()
        if self.speed == 1.0:
            # When Asterisk raised it (its Timestamp:), on this engine's clock.
            clock = self._server_clocks.get(server)
            if clock is None:
                clock = self._server_clocks[server] = ServerClock()
            now = clock.event_time(event.get("Timestamp"), now)
        name = event.name or ""
        if name.startswith("QueueMember"):
            if self.agents.handle(server, event, now):
                self.wake()
            return
        if name == "UserEvent":
            if event.get("UserEvent") == OPT_OUT_EVENT:
                await self._opt_out(server, event)
            return
        transitions = self.tracker.handle(event, now)
        if transitions:
            self.apply(transitions, event)

    def _note_lag(self, event: Message) -> None:
        """Seconds from Asterisk's Timestamp: header (timestampevents = yes) to now."""
        stamp = event.get("Timestamp")
        try:
            lag = time.time() - float(stamp) if stamp else None
        except ValueError:
            lag = None
        if lag is not None and self.speed == 1:
            self.lags.append(lag)

    def apply(self, transitions: list[Transition], event: Message | None = None) -> None:
        """Call steps (from an event, or the dialer's and reconciler's findings)."""
        if not transitions:
            return
        self._add(transitions, event)
        for t in transitions:
            if t.step is Step.ENDED:
                self._call_ended(t.call)
            elif t.step in (Step.ANSWERED, Step.CONNECTED):
                self.wake()

    def _call_ended(self, call: TrackedCall) -> None:
        self.counters["ended"] += 1
        self.on_ended(call)
        run = self.runs.get(call.campaign_id)
        if run is not None:
            run.calls.discard(call)
            est = run.estimator
            now = call.ended_at or 0.0
            start = call.originated_at or call.queued_at or now
            if call.answered_at is not None:
                est.call_answered(now, max(0.0, call.answered_at - start))
                if call.disposition == disp.DROPPED:
                    est.call_dropped(now)
                if call.connected_at is not None:
                    est.talk_ended(now, max(0.0, now - call.connected_at))
            elif call.hangup_at is not None and call.disposition == disp.NO_ANSWER:
                self.counters["hung_up"] += 1
                est.call_hung_up(now, max(0.0, now - start))
            elif call.disposition != disp.UNKNOWN and call.response_message is None:
                # (An Originate Asterisk refused placed no call: nothing to learn.)
                est.call_not_answered(now, max(0.0, now - start))
            self._breaker(run, call)
        self.wake()

    def _breaker(self, run: CampaignRun, call: TrackedCall) -> None:
        calls = run.breaker.call_ended(call)
        if calls is None:
            return
        self.counters["breaker_trips"] += 1
        for failed in calls:
            if failed.charged:
                # Written already (or about to be): take the charge back.
                failed.charged = False
                self._uncharge(failed.attempt_id, failed.lead_id)
        reason = (f"circuit breaker: {len(calls)} calls in a row failed at once;"
                  f" last: {failure_text(call, run.campaign.channel)}")[:500]
        log.error("campaign %s paused: %s", run.campaign.name, reason)
        self._request_pause(run, reason)

    # -- opt-outs --------------------------------------------------------------------

    async def _opt_out(self, server: str, event: Message) -> None:
        """The called party pressed the drop message's opt-out key: list the number now."""
        try:
            attempt_id = int(event.get("Attempt") or "")
        except ValueError:
            log.warning("%s: %s without a valid Attempt header ignored", server, OPT_OUT_EVENT)
            return
        if not await self._list(server, attempt_id):
            # Never lost: tried again in a second, off the event reader's path.
            await self._retry_send.send((server, event))

    async def _list(self, server: str, attempt_id: int) -> bool:
        """Whether the opt-out was written (or needs no writing)."""
        now = self.clock.utcnow()

        def write(session: Session) -> str | None:
            phone = session.execute(
                sa.select(Lead.phone_e164).join(CallAttempt, CallAttempt.lead_id == Lead.id)
                .where(CallAttempt.id == attempt_id)
            ).scalar_one_or_none()
            if phone is not None:
                add_dnc(session, [phone], source=f"opt-out attempt {attempt_id}", now=now)
            return phone

        try:
            phone = await self.database.run(write)
        except DatabaseBusy as exc:
            log.warning("attempt %d: opt-out not listed yet (%s); trying again", attempt_id, exc)
            return False
        self.counters["opt_outs"] += 1
        if phone is None:
            log.warning("%s: %s for unknown attempt %d", server, OPT_OUT_EVENT, attempt_id)
        else:
            log.info("attempt %d: %s opted out, on the do-not-call list", attempt_id, phone)
        return True

    async def run(self) -> None:
        """Try the opt-outs the database did not take again, a second later, until written."""
        async for server, event in self._retries:
            await trio.sleep(1.0)
            while not await self._list(server, int(event.get("Attempt") or "")):
                await trio.sleep(1.0)
