"""The reconciler: calls whose end the engine may not have seen.

It asks Asterisk (``CoreShowChannels``) about

* the calls in flight on a server after a gap in its events (:meth:`on_gap`,
  called by the pool when a server gets a new event reader);
* the calls of dead engines the watcher took over (:meth:`adopt`);
* calls whose Originate was sent but whose fate is unknown (:meth:`check`,
  from the dialer), and calls that never got their ``OriginateResponse``
  within their ring timeout plus ``stale_after``.

A call Asterisk still has goes on being followed (marked answered or with an
agent if its channel says so); one it does not list, whose Originate may not
have run yet, is asked about again once it should have settled; one that is
gone ends as the dialplan's hangup record (``dialer-end/<attempt>`` in AstDB)
says, or at an estimated time, flagged so. Its loop also expires the call
tracker's timers (answered calls not with an agent in time are dropped).

Bounds: every set here holds calls the tracker follows (each at most once
per server), which the pool's ``max_in_flight`` caps; a call no longer
followed is dropped from them when next looked at.

May import: the AMI errors, the call tracker, agents, and :mod:`.campaign`,
:mod:`.settings`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import trio

from dialer.ami.codec import Message
from dialer.ami.errors import AMIActionError, AMIError
from dialer.ami.pool import AMIPool
from dialer.calls.agents import AgentBoard
from dialer.calls.tracker import CallTracker, Step, TrackedCall, Transition
from dialer.engine.campaign import CampaignRun
from dialer.engine.settings import HANGUP_RECORD_FAMILY, EngineClock, EngineSettings, one_line

log = logging.getLogger("dialer.engine")

#: ring timeout assumed for a call of a campaign this engine does not know
DEFAULT_RING = 60


class Reconciler:
    def __init__(self, *, pool: AMIPool, clock: EngineClock, settings: EngineSettings, tracker: CallTracker,
                 agents: AgentBoard, runs: dict[int, CampaignRun],
                 apply: Callable[[list[Transition]], None],
                 is_unsent: Callable[[TrackedCall], bool],
                 on_gap: Callable[[], None]) -> None:
        self.pool = pool
        self.clock = clock
        self.settings = settings
        self.tracker = tracker
        self.agents = agents
        #: the watcher's campaigns (ring timeouts; adopted calls join theirs)
        self.runs = runs
        self._apply = apply            # findings, to the follower
        self._is_unsent = is_unsent    # the dialer: the call's Originate is not out yet
        self._on_gap = on_gap          # the watcher: look for dead engines' calls soon
        # server -> calls to ask about (a dict as an ordered set)
        self._gap_calls: dict[str, dict[TrackedCall, None]] = {}
        self._check_calls: set[TrackedCall] = set()
        # Calls Asterisk did not list whose Originate may still run (no answer to
        # it and no channel seen yet): asked about again at the time given.
        self._recheck: dict[TrackedCall, float] = {}
        self._wake = trio.Event()
        self._records_refused: set[str] = set()  # servers that refused DBGet (warned once)
        self.counters = {"adopted": 0, "reconciled": 0}

    # -- what the other parts ask ----------------------------------------------------

    async def on_gap(self, server: str) -> None:
        """The pool: ``server``'s events were not read for a while."""
        # Called from a connection's reader task: only note it, never block.
        pending = self._gap_calls.setdefault(server, {})
        for c in self.tracker.calls():
            if c.server == server and not self._is_unsent(c):
                pending[c] = None
        self._wake.set()
        # The server can be asked again: look for dead engines' calls on it at
        # the next poll rather than at the next housekeeping.
        self._on_gap()

    def check(self, call: TrackedCall) -> None:
        """Ask Asterisk about this call (its Originate's fate is unknown)."""
        self._check_calls.add(call)
        self._wake.set()

    def call_ended(self, call: TrackedCall) -> None:
        """The call's end was seen: nothing to ask about it any more."""
        self._check_calls.discard(call)

    def adopt(self, rows: list[dict]) -> None:
        """Follow calls of a dead engine (their leads' leases are now ours)."""
        adopted = 0
        for row in rows:
            call = TrackedCall(**row)
            if self.tracker.get(call.action_id) is not None:
                continue
            run = self.runs.get(call.campaign_id)
            call.unattended = run is not None and run.campaign.mode == "unattended"
            self.tracker.add(call)
            if run is not None:
                run.calls.add(call)
            self._gap_calls.setdefault(call.server, {})[call] = None
            self.counters["adopted"] += 1
            adopted += 1
        if adopted:
            log.info("adopted %d calls in flight of engines that died or stopped renewing"
                     " their leases; asking Asterisk about them", adopted)
        self._wake.set()

    # -- the loop ------------------------------------------------------------------------

    def _ring(self, call: TrackedCall) -> float:
        run = self.runs.get(call.campaign_id)
        return run.ring_timeout if run else DEFAULT_RING

    async def run(self) -> None:
        while True:
            self._wake = trio.Event()
            wake = self._wake
            now = self.clock.now()
            self._apply(self.tracker.expire(now))
            for call in self.tracker.calls():
                # The Originate was sent (and maybe taken) but its result never came.
                start = call.originated_at or call.queued_at
                if not call.response_seen and start is not None and not self._is_unsent(call) and \
                        now - start > self._ring(call) + self.settings.stale_after:
                    self._check_calls.add(call)
            for call, at in list(self._recheck.items()):
                if call.ended or self.tracker.get(call.action_id) is not call:
                    del self._recheck[call]
                elif now >= at:
                    del self._recheck[call]
                    self._check_calls.add(call)
            servers = set(self._gap_calls) | {c.server for c in self._check_calls}
            for server in servers:
                await self._reconcile(server)
            timeout = 1.0
            settle = self.tracker.next_settle_time()
            if settle is not None:
                timeout = max(0.001, min(timeout, self.clock.real(settle - now)))
            with trio.move_on_after(timeout):
                await wake.wait()

    async def _reconcile(self, server: str) -> None:
        ami = self.pool.server_connection(server)
        if ami is None or not self.pool.has_reader(server):
            return  # try again once the server has a reader
        calls = list(self._gap_calls.pop(server, {}))
        calls += [c for c in self._check_calls if c.server == server]
        try:
            _, queue_events = await ami.list_action("QueueStatus", timeout=15)
            self.agents.load_status(server, queue_events, self.clock.now())
        except AMIError as exc:
            log.warning("%s: QueueStatus failed: %s", server, exc)
        calls = [c for c in calls if not c.ended]
        if not calls:
            return
        try:
            _, channels = await ami.list_action("CoreShowChannels", timeout=15)
        except AMIError as exc:
            log.warning("%s: CoreShowChannels failed: %s", server, exc)
            pending = self._gap_calls.setdefault(server, {})
            for c in calls:
                pending[c] = None
            return
        alive: dict[str, dict[str, Message]] = {}
        for ch in channels:
            alive.setdefault(ch.get("Linkedid") or "", {})[ch.get("Uniqueid") or ""] = ch
        now = self.clock.now()
        gone: list[TrackedCall] = []
        for call in calls:
            if call.ended or self.tracker.get(call.action_id) is not call:
                continue  # ended meanwhile, or never sent and handed back
            self._check_calls.discard(call)
            self.counters["reconciled"] += 1
            # Channels whose Hangup arrived while the listing was on its way are gone.
            live = {uid: ch for uid, ch in alive.get(call.channel_id, {}).items()
                    if uid not in call.gone_channels}
            if live:
                self.tracker.still_alive(call, live)
                first = live.get(call.channel_id)
                if first is not None and (first.get("ChannelStateDesc") or "").lower() == "up":
                    call.response_seen = True
                    transitions = []
                    if call.answered_at is None:
                        # Answered while nobody followed it: when is not known.
                        call.answered_at = now
                        call.estimated.add("answered_at")
                        transitions.append(Transition(call, Step.ANSWERED, now, "CoreShowChannel"))
                    if first.get("BridgeId") and call.connected_at is None and not call.unattended:
                        # In a bridge in the connect context: an agent has it.
                        call.connected_at = now
                        call.estimated.add("connected_at")
                        transitions.append(Transition(call, Step.CONNECTED, now, "CoreShowChannel"))
                    self._apply(transitions)
            elif not call.response_seen and not call.had_channels and now < self._settled_by(call):
                # Asterisk may not have run the Originate yet (it was stalled,
                # or is slow): its channels can still appear. Ask again later.
                self._recheck[call] = self._settled_by(call)
            else:
                gone.append(call)
        for call in gone:
            await self._resolve_gone(ami, server, call)

    def _settled_by(self, call: TrackedCall) -> float:
        """When a call whose Originate got no result and showed no channel can
        be taken as gone: past its ring timeout and ``stale_after``."""
        start = call.originated_at or call.queued_at or 0.0
        return start + self._ring(call) + self.settings.stale_after

    async def _resolve_gone(self, ami: Any, server: str, call: TrackedCall) -> None:
        """A call Asterisk no longer has whose end the engine did not see: its
        end from the dialplan's hangup record (``dialer-end/<attempt>``), else
        estimated and flagged so."""
        now = self.clock.now()
        record: tuple[float, int | None, str] | None = None
        try:
            _, items = await ami.list_action(
                "DBGet", [("Family", HANGUP_RECORD_FAMILY), ("Key", str(call.attempt_id))], timeout=10)
            for item in items:
                record = parse_hangup_record(item.get("Val"))
                if record is None:
                    log.warning("%s: attempt %d: unreadable %s record %r", server, call.attempt_id,
                                HANGUP_RECORD_FAMILY, item.get("Val"))
        except AMIActionError as exc:
            if "not found" not in exc.reason.lower():
                # Refused (no write = system or reporting, or no DBGet): said once per server.
                level = logging.DEBUG if server in self._records_refused else logging.WARNING
                self._records_refused.add(server)
                log.log(level, "%s: attempt %d: %s record not read (%s); ends of calls missed"
                        " while no engine followed them are estimated", server, call.attempt_id,
                        HANGUP_RECORD_FAMILY, one_line(exc))
        except AMIError as exc:
            log.warning("%s: attempt %d: %s record not read: %s", server, call.attempt_id,
                        HANGUP_RECORD_FAMILY, one_line(exc))
        if call.ended or self.tracker.get(call.action_id) is not call:
            return  # its end arrived meanwhile
        if record is not None:
            ended_at, cause, step = record
            # It was answered after the last step the engine saw.
            seen = [t for t in (call.queued_at, call.originated_at, call.ringing_at) if t is not None]
            last_seen = max(seen, default=ended_at)
            self._apply(self.tracker.resolve_recorded(call, ended_at, cause, step,
                                                      answered_estimate=last_seen))
            return
        # No record: the call never reached the connect context (it was not
        # answered, when the dialplan writes records). Its end time is an
        # estimate: an unanswered call ends by its ring timeout.
        end = now
        if call.answered_at is None:
            start = call.originated_at or call.queued_at or now
            end = min(now, max(start + self._ring(call), call.ringing_at or start))
        self._apply(self.tracker.resolve_lost(call, end))


def parse_hangup_record(value: str | None) -> tuple[float, int | None, str] | None:
    """``"<epoch seconds>,<HANGUPCAUSE>,<step>"`` -> (epoch, cause, step), or None."""
    parts = (value or "").split(",", 2)
    if len(parts) != 3:
        return None
    try:
        epoch = float(parts[0])
        cause = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        return None
    if not math.isfinite(epoch) or epoch <= 0:
        return None
    return epoch, cause, parts[2].strip()
