"""The dialer: claims leads, asks pacing, sends the Originates within the caps.

Its loop (:meth:`Dialer.run`) goes over the running campaigns whenever woken
(:meth:`poke`: a poll, a call answered or ended, an agent free) and at least
every 0.25 s. For each it asks the pure pacing function
(:func:`dialer.pacing.decide`) how many calls to place and which ringing
calls to cut, takes that many connections from the pool (each within its
rate cap), claims as many leads and writes their attempts in one unit of
work, and only then starts one task per Originate in its own nursery. The
task waits for its connection's send slot, sends, and hands the result to the
follower (:meth:`CallFollower.apply <dialer.engine.follower.CallFollower.apply>`):

* refused by Asterisk (``Response: Error``): no call, the lead not charged;
* never sent (connection down, server stopping, breaker tripped): the
  attempt is cancelled (the writer hands the lead back) as if never made;
* sent but its fate unknown (timeout after sending, connection lost): never
  resent; the reconciler is asked about it (:meth:`Reconciler.check
  <dialer.engine.reconciler.Reconciler.check>`).

Paused, stopping or draining campaigns place no new calls, but their ringing
calls that no agent will be free for may still be cut (``hangup_after``).

Bounds: one task and one entry of ``_members``/``_unsent`` per call in
flight, which the pool caps (``max_in_flight`` per connection): a campaign
places no more than the pool's capacity.

The drop message's safety net (:mod:`dialer.calls.drops`) runs in the same loop:
an answered call no agent took in time is moved there with AMI ``Redirect``.

May import: the AMI pool and errors, the call tracker and the drop safety net, pacing, hopper, and
:mod:`.campaign`, :mod:`.database`, :mod:`.settings`, :mod:`.shared`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
import trio
from sqlalchemy.orm import Session

from dialer.leads import hopper
from dialer.ami.codec.errors import LocalProtocolError
from dialer.ami.errors import (
    AMIActionError, AMIError, ActionTimeout, ConnectionLost, NotConnected, PermissionDenied,
)
from dialer.ami.pool import AMIPool, PoolMember
from dialer.calls.agents import AgentBoard
from dialer.calls.breaker import SHUTTING_DOWN
from dialer.calls.drops import DropNet, DropTarget
from dialer.calls.drops import move as move_to_drop
from dialer.calls.outcomes import to_datetime
from dialer.calls.tracker import CallTracker, TrackedCall, Transition
from dialer.campaigns import render_channel
from dialer.db import DatabaseBusy
from dialer.engine.campaign import CampaignRun
from dialer.engine.database import Database
from dialer.engine.settings import EngineClock, EngineSettings, one_line
from dialer.engine.shared import engine_order, shared_figures
from dialer.models import Campaign, CampaignState
from dialer.pacing import PacingDecision, PacingStats, decide

log = logging.getLogger("dialer.engine")


def lead_channel(template: str, lead: hopper.ClaimedLead) -> str:
    """The Originate channel for a lead from the campaign's template; lead
    columns take precedence over custom fields of the same name."""
    fields: dict[str, Any] = dict(lead.custom or {})
    fields.update(
        first_name=lead.first_name or "",
        last_name=lead.last_name or "",
        timezone=lead.timezone,
        region=lead.region or "",
        postal_code=lead.postal_code or "",
        priority=lead.priority,
        id=lead.id,
    )
    return render_channel(template, lead.phone_e164, fields)


def originate_headers(c: Campaign, call: TrackedCall, lead: hopper.ClaimedLead) -> list[tuple[str, str]]:
    headers = [
        ("Channel", lead_channel(c.channel, lead)),
        ("Context", c.context),
        ("Exten", c.exten),
        ("Priority", str(c.priority)),
        ("Async", "true"),
        ("Timeout", str(int(c.ring_timeout * 1000))),
    ]
    if c.caller_id:
        headers.append(("CallerID", c.caller_id))
    headers += [
        ("ChannelId", call.channel_id),
        ("OtherChannelId", call.other_channel_id),
        ("Variable", f"DIALER_ATTEMPT={call.attempt_id}"),
        ("Variable", f"DIALER_LEAD={lead.id}"),
        ("Variable", f"DIALER_CAMPAIGN={c.name}"),
    ]
    return headers


class Dialer:
    def __init__(self, *, pool: AMIPool, database: Database, clock: EngineClock, settings: EngineSettings,
                 tracker: CallTracker, agents: AgentBoard, runs: dict[int, CampaignRun],
                 engine_id: str, lease_owner: str,
                 apply: Callable[[list[Transition]], None],
                 check: Callable[[TrackedCall], None],
                 cancel: Callable[[int, int], None],
                 request_pause: Callable[[CampaignRun, str], None]) -> None:
        self.pool = pool
        self.database = database
        self.clock = clock
        self.settings = settings
        self.tracker = tracker
        self.agents = agents
        #: the watcher's campaigns (read; the dialing fields of each written here)
        self.runs = runs
        self.engine_id = engine_id
        self.lease_owner = lease_owner
        self._apply = apply            # results to the follower
        self._check = check            # calls whose fate is unknown, to the reconciler
        self._cancel = cancel          # attempts never sent, to the writer
        self._request_pause = request_pause
        self._members: dict[str, PoolMember] = {}   # action_id -> connection
        self._unsent: set[TrackedCall] = set()      # waiting for their send slot
        self._hangup_denied: set[str] = set()       # servers that refused Hangup (warned once)
        self.drop_net = (None if settings.drop_target == "off"
                         else DropNet(DropTarget.parse(settings.drop_target)))
        self._redirect_denied: set[str] = set()     # servers that refused Redirect (warned once)
        self._wake = trio.Event()
        self._draining = False
        self._nursery: trio.Nursery | None = None
        self.counters = {"originates": 0, "refused": 0, "lost": 0, "not_sent": 0, "hangups": 0,
                         "refused_stopping": 0, "drop_redirects": 0}

    # -- what the other parts ask ----------------------------------------------------

    def poke(self) -> None:
        """Look at the campaigns again now (something changed)."""
        self._wake.set()
        self._wake = trio.Event()

    def drain(self) -> None:
        """Place no new calls from now on."""
        self._draining = True
        self.poke()

    @property
    def draining(self) -> bool:
        return self._draining

    def is_unsent(self, call: TrackedCall) -> bool:
        """Whether the call still waits for its send slot (its Originate is not out)."""
        return call in self._unsent

    def call_ended(self, call: TrackedCall) -> None:
        """The call is over: its place on its connection is free."""
        member = self._members.pop(call.action_id, None)
        if member is not None:
            self.pool.release(member)

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                wake = self._wake
                started = trio.current_time()
                placed = 0
                for run in list(self.runs.values()):
                    self._move_overdue(run)
                    if run.state == CampaignState.RUNNING.value and not self._draining:
                        placed += await self._dial_campaign(run)
                    else:
                        # Paused, stopping or draining: no new calls, but ringing
                        # ones no agent will be free for may still be cut.
                        self._hang_ups_only(run)
                if placed:
                    # Let room gather for the next batch: each claim is a database
                    # transaction, and calls wait for their send slot meanwhile.
                    await trio.sleep_until(started + self.settings.batch_interval)
                    continue
                with trio.move_on_after(self._idle_wait()):
                    await wake.wait()

    def stats_for(self, run: CampaignRun, capacity: int) -> tuple[PacingStats, list[TrackedCall]]:
        """The campaign's live figures, and its ringing calls in the order of
        ``ringing_elapsed`` (which ``hangup_candidates`` index)."""
        now = self.clock.now()
        ringing: list[float] = []
        ringing_calls: list[TrackedCall] = []
        candidates: list[int] = []
        waiting = 0
        # A call may be hung up once the called line has rung this long, from
        # Asterisk's DialState RINGING (not DialBegin, which comes before any
        # post-dial delay; a call that never reported ringing is never cut),
        # and its channel's name is known.
        hangup_after = run.settings.hangup_after
        for call in run.calls:
            if call.answered_at is None:
                if (
                    hangup_after is not None
                    and call.alerting_at is not None
                    and not call.hangup_tried
                    and call.channel_name
                    and not call.ended
                    and now - call.alerting_at >= hangup_after
                ):
                    candidates.append(len(ringing))
                # As the estimator measures time to answer: from the Originate.
                ringing.append(now - (call.originated_at or call.queued_at or now))
                ringing_calls.append(call)
            elif call.connected_at is None:
                waiting += 1
        queue = run.campaign.queue
        if queue and run.campaign.mode != "unattended":
            logged_in, free, busy = self.agents.counts(queue, now)
        else:
            logged_in, free, busy = 0, 0, ()
        d30, a30, d24, a24, d1, a1 = run.abandon
        shared = (shared_figures(self.engine_id, run.others, run.expected, time.time(), self.settings.speed)
                  if run.others else {})
        stats = PacingStats(
            now=now, agents_logged_in=logged_in, agents_free=free, talk_elapsed=busy,
            calls_ringing=len(ringing), ringing_elapsed=tuple(ringing), calls_waiting=waiting,
            hangup_candidates=tuple(candidates), in_flight=len(run.calls), capacity=capacity,
            estimates=run.estimator.estimates(now),
            drops_30d=d30, answered_30d=a30, drops_24h=d24, answered_24h=a24,
            drops_1h=d1, answered_1h=a1,
            **shared,
        )
        return stats, ringing_calls

    async def _dial_campaign(self, run: CampaignRun) -> int:
        now_t = trio.current_time()
        capacity = self.pool.capacity()
        if run.hopper_empty_until > now_t or capacity <= 0 or run.breaker.tripped:
            self._hang_ups_only(run)
            return 0
        stats, ringing_calls = self.stats_for(run, capacity)
        run.decision = decide(stats, run.settings)
        if run.decision.hangup:
            self._hang_up(run, run.decision.hangup, ringing_calls)
        note_decision(run, stats, run.decision, self.engine_id)
        wanted = min(run.decision.calls, capacity)
        if wanted <= 0:
            return 0
        members = self.pool.assign_many(wanted)
        if not members:
            return 0
        if now_t - run.timezones_at > 30.0:
            try:
                run.timezones = await self.database.run(hopper.campaign_timezones, run.id)
            except DatabaseBusy:
                pass  # the previous list serves until the next try
            else:
                run.timezones_at = now_t
        now = self.clock.utcnow()
        campaign = run.campaign
        campaigns = Campaign.__table__

        def claim_and_start(session: Session) -> list[hopper.NewAttempt]:
            # The state as of now, not as of the last poll: a pause acts at once.
            state = session.scalar(sa.select(campaigns.c.state).where(campaigns.c.id == campaign.id))
            if state != CampaignState.RUNNING.value:
                return []
            leads = hopper.claim_leads(
                session, campaign, engine_id=self.lease_owner, now=now, limit=len(members),
                timezones=run.timezones, lease=dt.timedelta(seconds=self.settings.lease),
            )
            assignments = [(lead, m.server, m.name) for lead, m in zip(leads, members)]
            return hopper.start_attempts(session, campaign, assignments, engine_id=self.engine_id, now=now)

        try:
            attempts = await self.database.run(claim_and_start)
        except DatabaseBusy as exc:
            log.warning("%s: no leads claimed (%s); trying again", campaign.name, exc)
            attempts = []
        self.pool.unassign_many(members[len(attempts):])
        if not attempts:
            # From now, not from before the claim: a claim that took a second
            # would otherwise leave the campaign never seen empty.
            run.hopper_empty_until = trio.current_time() + 1.0
            return 0
        assert self._nursery is not None
        queued_at = self.clock.now()
        for attempt in attempts:
            member = self.pool.member(attempt.connection)
            assert member is not None
            call = TrackedCall(
                attempt_id=attempt.attempt_id, campaign_id=run.id, lead_id=attempt.lead.id,
                action_id=attempt.action_id, channel_id=attempt.channel_id,
                other_channel_id=attempt.other_channel_id, server=attempt.server,
                connection=attempt.connection, unattended=campaign.mode == "unattended",
                queued_at=queued_at,
            )
            self.tracker.add(call)
            run.calls.add(call)
            self._members[call.action_id] = member
            self._unsent.add(call)
            self._nursery.start_soon(self._originate, run, call, attempt.lead, member)
        run.placed += len(attempts)
        if run.log_row is not None:
            run.log_row["calls_placed"] += len(attempts)
        return len(attempts)

    async def _originate(self, run: CampaignRun, call: TrackedCall, lead: hopper.ClaimedLead,
                         member: PoolMember) -> None:
        pool = self.pool
        try:
            headers = originate_headers(run.campaign, call, lead)
        except (KeyError, ValueError, IndexError) as exc:
            # The channel template names a field this lead does not have.
            pool.not_queued(member)
            self._unsent.discard(call)
            self._apply(self.tracker.refused(call.action_id, self.clock.now(),
                                             f"channel template: {one_line(exc)}"))
            return
        on_wire = await member.send_slot()
        self._unsent.discard(call)
        try:
            pool.check_sendable(member)
            if run.breaker.tripped:
                raise NotConnected(f"campaign {run.campaign.name}: paused by the circuit breaker")
            self.counters["originates"] += 1
            await pool.originate(member, headers, action_id=call.action_id, on_sent=on_wire)
        except (NotConnected, LocalProtocolError) as exc:
            if isinstance(exc, LocalProtocolError):
                # A value that cannot be sent (CR/LF in a lead field): refused here.
                self.counters["refused"] += 1
                self._apply(self.tracker.refused(call.action_id, self.clock.now(), one_line(exc)))
            else:
                self._not_sent(call, member)
        except PermissionDenied as exc:
            # The AMI user may not Originate: nothing was dialed, the lead goes
            # back uncharged, and this connection places no more calls.
            pool.note_failure(member)
            self._not_sent(call, member)
            if pool.deny_originate(member):
                log.error("%s: the AMI user %r may not Originate (%s): give it write = originate"
                          " in manager.conf; no calls are placed through %s", member.server,
                          member.ami.username if member.ami else "?", one_line(exc), member.name)
                if pool.all_denied():
                    # No connection may dial: say so where supervisors look, as the
                    # circuit breaker does, rather than sit "running" placing nothing.
                    reason = (f"no AMI connection may Originate ({exc.reason or 'Permission denied'}):"
                              f" give the AMI user write = originate in manager.conf")[:500]
                    for other in list(self.runs.values()):
                        if other.campaign.state == CampaignState.RUNNING.value:
                            log.error("campaign %s paused: %s", other.campaign.name, reason)
                            self._request_pause(other, reason)
        except AMIActionError as exc:
            # Asterisk refused it: no call was placed, so the lead is not charged.
            pool.note_failure(member)
            self.counters["refused"] += 1
            if exc.reason == SHUTTING_DOWN:
                self.counters["refused_stopping"] += 1
            else:
                log.warning("attempt %s: %s", call.attempt_id, one_line(exc))
            self._apply(self.tracker.refused(call.action_id, self.clock.now(),
                                             response_message=exc.reason or "error", charged=False))
        except ActionTimeout as exc:
            pool.note_failure(member)
            if exc.sent:
                self._lost(call)
            else:
                self._not_sent(call, member)
        except (ConnectionLost, AMIError):
            pool.note_failure(member)
            self._lost(call)
        else:
            self._apply(self.tracker.originated(call.action_id, self.clock.now()))

    # -- the drop message's safety net ------------------------------------------------

    def _idle_wait(self) -> float:
        """Real seconds the loop may rest: a quarter second, or less when a call
        becomes due for the drop message's safety net sooner."""
        wait = 0.25
        if self.drop_net is not None:
            due = self.drop_net.next_due(c for run in self.runs.values() for c in run.calls)
            if due is not None:
                wait = min(wait, max(0.0, self.clock.real(due - self.clock.now())))
        return wait

    def _move_overdue(self, run: CampaignRun) -> None:
        if self.drop_net is None or not run.calls:
            return
        assert self._nursery is not None
        now = self.clock.now()
        for call in self.drop_net.overdue(run.calls, now):
            call.redirected_at = now  # once per call, whether or not it can be sent
            if (member := self._members.get(call.action_id)) is not None:
                self._nursery.start_soon(self._redirect, call, member)

    async def _redirect(self, call: TrackedCall, member: PoolMember) -> None:
        assert self.drop_net is not None
        if await move_to_drop(self.pool, member, self.drop_net, call, self.clock.now(),
                              denied=self._redirect_denied):
            self.counters["drop_redirects"] += 1

    # -- hang-ups ------------------------------------------------------------------------

    def _hang_ups_only(self, run: CampaignRun) -> None:
        """No new calls for this campaign now, but its ringing calls may still be too many."""
        if run.settings.hangup_after is None or not run.calls:
            return
        stats, ringing_calls = self.stats_for(run, 0)
        if stats.hangup_candidates:
            self._hang_up(run, decide(stats, run.settings).hangup, ringing_calls)

    def _hang_up(self, run: CampaignRun, indices: Sequence[int], ringing: list[TrackedCall]) -> None:
        """Ask Asterisk to hang up these ringing calls (pacing found them unneeded)."""
        assert self._nursery is not None
        for i in indices:
            call = ringing[i]
            member = self._members.get(call.action_id)
            if member is None or call.hangup_tried or call.answered_at is not None:
                continue
            call.hangup_tried = True
            self._nursery.start_soon(self._send_hangup, call, member)

    async def _send_hangup(self, call: TrackedCall, member: PoolMember) -> None:
        # Not retried: if it fails, the call rings on until answered or its
        # timeout, as it would have without hang-ups.
        assert call.channel_name is not None
        if call.answered_at is not None or call.ended:
            return  # answered (or over) since pacing chose it: never cut
        call.hangup_at = self.clock.now()
        try:
            await self.pool.action(member, "Hangup", [("Channel", call.channel_name), ("Cause", "16")])
        except PermissionDenied as exc:
            call.hangup_at = None
            if member.server not in self._hangup_denied:
                self._hangup_denied.add(member.server)
                log.warning("%s: ringing calls cannot be cut (%s); give the AMI user"
                            " write = system (or call) in manager.conf, or set hangup_after = off",
                            member.server, one_line(exc))
        except AMIActionError as exc:
            # "No such channel": it ended by itself meanwhile.
            call.hangup_at = None
            log.debug("attempt %s: hangup refused: %s", call.attempt_id, one_line(exc))
        except (AMIError, LocalProtocolError) as exc:
            call.hangup_at = None
            log.info("attempt %s: hangup not sent: %s", call.attempt_id, one_line(exc))
        else:
            self.counters["hangups"] += 1

    # -- calls that did not go ------------------------------------------------------------

    def _not_sent(self, call: TrackedCall, member: PoolMember) -> None:
        """The Originate never left: the lead goes back to the hopper as if
        this attempt had not been made."""
        self.counters["not_sent"] += 1
        self.tracker.forget(call)
        self._members.pop(call.action_id, None)
        self.pool.not_sent(member)  # its send slot had counted it
        run = self.runs.get(call.campaign_id)
        if run is not None:
            run.calls.discard(call)
            run.hopper_empty_until = -math.inf
        self._cancel(call.attempt_id, call.lead_id)

    def _lost(self, call: TrackedCall) -> None:
        """The Originate may or may not have run: never resend it; ask Asterisk
        about it if its events do not settle it soon."""
        self.counters["lost"] += 1
        if not call.ended:
            self._check(call)


def note_decision(run: CampaignRun, stats: PacingStats, d: PacingDecision, engine_id: str) -> None:
    """Keep the decision's inputs for status() and the decisions log, and,
    with other engines on the campaign, the calls they are to place."""
    if stats.engines > 1 and d.total_calls:
        wall = time.time()
        order = engine_order(engine_id, run.others, wall)
        for rank, other in enumerate(order):
            share = (d.total_calls + rank) // len(order)
            if other != engine_id and share:
                run.expected.setdefault(other, []).append((wall, share))
    est = stats.estimates
    own = [round(a, 1) for a in stats.ringing_elapsed]
    run.pacing = {
        "at": round(stats.now, 3), "mode": d.mode,
        "agents_logged_in": stats.agents_logged_in, "agents_free": stats.agents_free,
        "agents_talking": len(stats.talk_elapsed), "agents_expected": round(d.agents_expected, 2),
        "ringing": stats.calls_ringing, "waiting": stats.calls_waiting, "in_flight": stats.in_flight,
        "answer_rate": round(est.answer_rate, 4), "answer_delay_mean": round(est.answer_delay.mean, 2),
        "talk_mean": round(est.talk_time.mean, 1), "wrapup_mean": round(est.wrapup_time, 1),
        "abandon_rate": round(d.abandon_rate, 4), "hour_abandon_rate": round(d.hour_rate, 4),
        "allowed_drop": round(d.allowed_drop, 4), "dial_level": round(d.dial_level, 2),
        "calls": d.calls, "total_calls": d.total_calls, "cut": len(d.hangup), "reason": d.reason,
        "engines": stats.engines, "engine_rank": stats.engine_rank,
        "other_engines_ringing": len(stats.shared_ringing_elapsed),
        # for the other engines on this campaign (see dialer.engine.shared)
        "share": {"ringing": own, "waiting": stats.calls_waiting, "in_flight": stats.in_flight},
    }
    second = int(stats.now)
    if run.log_second != second:
        if run.log_row is not None:
            run.log_rows.append(run.log_row)
        run.log_second = second
        run.log_row = {"calls_placed": 0, "calls_cut": 0}
    assert run.log_row is not None
    run.log_row.update(
        at=to_datetime(stats.now), mode=d.mode, agents_logged_in=stats.agents_logged_in,
        agents_free=stats.agents_free, agents_expected=d.agents_expected, ringing=stats.calls_ringing,
        waiting=stats.calls_waiting, in_flight=stats.in_flight,
        other_engines_ringing=len(stats.shared_ringing_elapsed), engines=stats.engines,
        answer_rate=est.answer_rate, abandon_rate=d.abandon_rate, hour_abandon_rate=d.hour_rate,
        allowed_drop=d.allowed_drop, dial_level=d.dial_level, reason=d.reason[:200],
    )
    run.log_row["calls_cut"] += len(d.hangup)
