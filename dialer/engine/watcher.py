"""The campaign watcher: campaign states and settings, leases, pauses.

Every ``poll_interval`` seconds (:meth:`CampaignWatcher.poll`, called by the
engine's control loop) it reads the campaigns in one unit of work, and in the
same unit:

* marks supervisor commands applied, finishes stopping campaigns with no call
  in flight and running ones with no lead left (``done``);
* writes the decisions log and, every ``ESTIMATES_EVERY`` seconds, the learnt
  pacing estimates;
* reads the other engines' live states for the shared-budget figures;
* every ``housekeeping_interval``: renews this run's leases, hands back the
  leads of engines whose run is dead or whose lease ran out, and takes over
  their calls in flight on servers it can ask (returned for the reconciler);
* every ``stats_interval``: the abandon figures (:mod:`dialer.compliance.abandon`).

Each campaign's :class:`~dialer.engine.campaign.CampaignRun` is created
here; its ``campaign`` is a fresh snapshot after each poll.

Pauses the engine decides itself (the circuit breaker, no connection allowed
to Originate) come in on a memory channel (:attr:`pauses`, capacity
``PAUSES``); a campaign trips at most once until it is resumed, so it fills
only when more campaigns than that trip at once: the pause is then dropped,
with an error, and the breaker still keeps the campaign from dialing.

May import: dialer's data modules (models, hopper, control, liveness,
abandon), the pacing estimator, and :mod:`.campaign`, :mod:`.database`,
:mod:`.settings`, :mod:`.shared`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import trio
from sqlalchemy.orm import Session

from dialer import liveness
from dialer.campaigns import control
from dialer.compliance import abandon
from dialer.leads import hopper
from dialer.calls.breaker import CircuitBreaker
from dialer.calls.outcomes import RetryRules
from dialer.db import DatabaseBusy
from dialer.engine.campaign import CampaignRun, pacing_settings
from dialer.engine.database import Database
from dialer.engine.settings import ESTIMATES_EVERY, SHARE_FRESH, EngineClock, EngineSettings
from dialer.engine.shared import other_engines
from dialer.errors import UserError
from dialer.models import (
    CallAttempt, Campaign, CampaignState, Lead, LeadState, LiveState, PacingDecisionRow, PacingEstimate,
    SupervisorCommand,
)
from dialer.pacing import CallStatsEstimator

log = logging.getLogger("dialer.engine")

#: pause requests the channel holds (see the module docstring)
PAUSES = 256
#: decisions-log rows kept per campaign while the database cannot take them
#: (one per second; the oldest are dropped past this)
LOG_ROWS_KEPT = 3600


@dataclasses.dataclass(frozen=True)
class Polled:
    """What one poll found for the other parts."""

    #: calls in flight of dead engines taken over (TrackedCall fields)
    orphans: list[dict]
    #: whether the connection figures are due (every stats_interval)
    stats_due: bool


class CampaignWatcher:
    def __init__(self, database: Database, clock: EngineClock, settings: EngineSettings, *,
                 engine_id: str, lease_owner: str, run_token: str,
                 campaigns: Sequence[str] | None, servers: Any) -> None:
        self.database = database
        self.clock = clock
        self.settings = settings
        self.engine_id = engine_id
        self.lease_owner = lease_owner
        self.run_token = run_token
        self.only = list(campaigns) if campaigns else None
        #: the pool's public view of its servers (``servers``, ``has_reader``)
        self._servers = servers
        self.runs: dict[int, CampaignRun] = {}
        self._last_housekeeping = -math.inf
        self._last_stats = -math.inf
        self.pauses, self._pause_requests = trio.open_memory_channel[tuple[int, str]](PAUSES)

    # -- what the other parts ask ----------------------------------------------------

    def housekeep_soon(self) -> None:
        """Look for dead engines' calls at the next poll (a server can be asked again)."""
        self._last_housekeeping = -math.inf

    def request_pause(self, run: CampaignRun, reason: str) -> None:
        """Pause ``run``'s campaign as a supervisor would (see the module docstring)."""
        try:
            self.pauses.send_nowait((run.id, reason))
        except trio.WouldBlock:
            log.error("campaign %s: pause not queued (%d waiting); its calls stay held back",
                      run.campaign.name, PAUSES)

    def in_flight(self, campaign_id: int) -> int:
        run = self.runs.get(campaign_id)
        return 0 if run is None else len(run.calls)

    def all_finished(self) -> bool:
        return all(r.state in ("done", "stopped") for r in self.runs.values())

    # -- reading -----------------------------------------------------------------------

    def _campaign_query(self) -> sa.Select:
        stmt = sa.select(Campaign)
        if self.only is not None:
            stmt = stmt.where(Campaign.name.in_(self.only))
        return stmt

    async def load(self) -> None:
        """The campaigns at the start (UserError for a name that does not exist)."""
        def load(session: Session) -> tuple[list[Campaign], dict[int, dict]]:
            found = list(session.scalars(self._campaign_query()))
            if self.only is not None:
                missing = set(self.only) - {c.name for c in found}
                if missing:
                    raise UserError(f"no campaign named {sorted(missing)[0]!r}")
            for c in found:
                session.expunge(c)
            saved = dict(session.execute(
                sa.select(PacingEstimate.campaign_id, PacingEstimate.data)
                .where(PacingEstimate.campaign_id.in_([c.id for c in found]))).all()) if found else {}
            return found, saved

        found, saved = await self.database.run(load)
        for c in found:
            run = self._update_run(c)
            if c.id in saved:
                n = run.estimator.restore(saved[c.id], self.clock.now())
                log.info("campaign %s: pacing starts from %d saved attempts", c.name, n)

    def _update_run(self, c: Campaign) -> CampaignRun:
        run = self.runs.get(c.id)
        if run is None:
            run = CampaignRun(
                campaign=c, settings=pacing_settings(c),
                rules=RetryRules(c.max_attempts, dict(c.retry_delays)),
                estimator=CallStatsEstimator(),
                breaker=CircuitBreaker(failures=max(1, round(self.settings.breaker_failures)),
                                       within=self.settings.breaker_within),
            )
            self.runs[c.id] = run
        else:
            if c.state != run.campaign.state:
                log.info("campaign %s: %s -> %s", c.name, run.campaign.state, c.state)
                run.hopper_empty_until = -math.inf
                if c.state == CampaignState.RUNNING.value:
                    run.breaker.reset()
            run.campaign = c
            run.settings = pacing_settings(c)
            run.rules = RetryRules(c.max_attempts, dict(c.retry_delays))
        return run

    async def poll(self) -> Polled | None:
        """One read of the campaigns (see the module docstring); None if the
        database did not answer."""
        now_t = trio.current_time()
        now = self.clock.utcnow()
        housekeeping = now_t - self._last_housekeeping >= self.settings.housekeeping_interval
        stats = now_t - self._last_stats >= self.settings.stats_interval
        if housekeeping:
            self._last_housekeeping = now_t
        if stats:
            self._last_stats = now_t
        local_in_flight = {cid: len(run.calls) for cid, run in self.runs.items()}
        lease = dt.timedelta(seconds=self.settings.lease)
        readable = [s for s in self._servers.servers if self._servers.has_reader(s)]
        empty = {cid for cid, run in self.runs.items() if run.hopper_empty_until > now_t}
        known = set(self.runs)
        wall = time.time()
        fresh_after = dt.datetime.fromtimestamp(wall - SHARE_FRESH, dt.UTC).replace(tzinfo=None)
        saves = self.estimates_to_save(stats)
        decisions = self.decision_rows()
        shared: dict[int, dict[str, dict[str, Any]]] = {}
        restored: dict[int, dict] = {}
        database = self.database

        def poll(session: Session) -> tuple[list[Campaign], dict[int, tuple[int, ...]], list[dict]]:
            campaigns = list(session.scalars(self._campaign_query()))
            ids = [c.id for c in campaigns]
            save_pacing(session, self.engine_id, now, saves, decisions)
            new = [cid for cid in ids if cid not in known]
            if new:
                restored.update(session.execute(
                    sa.select(PacingEstimate.campaign_id, PacingEstimate.data)
                    .where(PacingEstimate.campaign_id.in_(new))).all())
            if ids:
                for cid, engine_id, data in session.execute(
                    sa.select(LiveState.campaign_id, LiveState.engine_id, LiveState.data).where(
                        LiveState.campaign_id.in_(ids), LiveState.engine_id != self.engine_id,
                        LiveState.heartbeat_at >= fresh_after)
                ):
                    shared.setdefault(cid, {})[engine_id] = data
            if ids:
                session.execute(
                    sa.update(SupervisorCommand)
                    .where(SupervisorCommand.campaign_id.in_(ids), SupervisorCommand.applied_at.is_(None))
                    .values(applied_at=now)
                )
            for c in campaigns:
                if c.state == CampaignState.STOPPING.value and local_in_flight.get(c.id, 0) == 0:
                    if control.calls_in_flight(session, c.id) == 0:
                        c.state = CampaignState.STOPPED.value
                        c.updated_at = now
                elif (
                    c.state == CampaignState.RUNNING.value
                    and c.id in empty
                    and local_in_flight.get(c.id, 0) == 0
                    and not has_work(session, c.id)
                ):
                    c.state = CampaignState.DONE.value
                    c.updated_at = now
            orphans: list[dict] = []
            if housekeeping:
                database.keep_lock()
                others = hopper.lease_owners(session) - {self.lease_owner}
                dead = liveness.dead_owners(session, others, engine_id=self.engine_id,
                                            run=self.run_token) if others else set()
                hopper.renew_leases(session, engine_id=self.lease_owner, now=now, lease=lease)
                hopper.reclaim_expired(session, now=now)
                hopper.reclaim_owned(session, dead, now=now)
                if readable:
                    orphans = adopt_orphans(session, self.lease_owner, readable, now, lease, dead)
            figures = {}
            if stats:
                figures = {c.id: abandon_figures(session, c.id, now) for c in campaigns
                           if c.state == CampaignState.RUNNING.value}
            session.flush()
            for c in campaigns:
                session.expunge(c)
            return campaigns, figures, orphans

        try:
            campaigns, figures, orphans = await database.run(poll)
        except DatabaseBusy as exc:
            log.warning("campaign states not read (%s); trying again", exc)
            self._decision_rows_back(decisions)
            return None
        for c in campaigns:
            run = self._update_run(c)
            if c.id in figures:
                run.abandon = figures[c.id]
            if c.id in restored:
                n = run.estimator.restore(restored[c.id], self.clock.now())
                log.info("campaign %s: pacing starts from %d saved attempts", c.name, n)
            run.others = other_engines(shared.get(c.id, {}))
            for engine_id in list(run.expected):
                if engine_id not in run.others:
                    del run.expected[engine_id]
        return Polled(orphans=orphans, stats_due=stats)

    # -- the pacing record -----------------------------------------------------------

    def decision_rows(self) -> list[tuple[int, dict[str, Any]]]:
        """The decisions log rows gathered since the last write (whole seconds only)."""
        out = []
        for run in self.runs.values():
            out += [(run.id, row) for row in run.log_rows]
            run.log_rows = []
        return out

    def _decision_rows_back(self, rows: list[tuple[int, dict[str, Any]]]) -> None:
        for cid, row in reversed(rows):
            run = self.runs.get(cid)
            if run is not None:
                run.log_rows.insert(0, row)
        for run in self.runs.values():
            if len(run.log_rows) > LOG_ROWS_KEPT:
                del run.log_rows[:len(run.log_rows) - LOG_ROWS_KEPT]

    def estimates_to_save(self, due: bool) -> dict[int, dict]:
        """Snapshots of the campaigns' estimators due to be saved (every ESTIMATES_EVERY s)."""
        now = self.clock.now()
        out = {}
        for run in self.runs.values():
            if run.campaign.mode == "unattended" or not run.estimator.attempts:
                continue
            if due and now - run.estimates_saved_at >= ESTIMATES_EVERY:
                out[run.id] = run.estimator.snapshot(now)
                run.estimates_saved_at = now
        return out

    async def save_pacing_now(self) -> None:
        """At a stop: the learnt estimates and the rest of the decisions log."""
        for run in self.runs.values():
            run.estimates_saved_at = -math.inf
            if run.log_row is not None:
                run.log_rows.append(run.log_row)
                run.log_row, run.log_second = None, None
        saves = self.estimates_to_save(True)
        rows = self.decision_rows()
        now = self.clock.utcnow()
        if not saves and not rows:
            return
        try:
            await self.database.run(save_pacing, self.engine_id, now, saves, rows)
        except DatabaseBusy:
            pass

    # -- pauses ------------------------------------------------------------------------

    async def run_pauses(self, on_paused: Any = None) -> None:
        """Write the pauses asked for, each until it is written (``on_paused()`` after each)."""
        async for campaign_id, reason in self._pause_requests:
            run = self.runs.get(campaign_id)
            if run is not None:
                await self._pause(run.campaign.name, reason)
                if on_paused is not None:
                    on_paused()

    async def _pause(self, name: str, reason: str) -> None:
        """Pause the campaign as a supervisor would, recorded with this engine's name."""
        issued_by = f"engine {self.engine_id}"[:255]
        while True:
            now = self.clock.utcnow()

            def pause(session: Session) -> None:
                control.issue(session, name, "pause", reason=reason, issued_by=issued_by, now=now)

            try:
                await self.database.run(pause)
            except DatabaseBusy as exc:
                log.warning("campaign %s: pause not written yet (%s); trying again", name, exc)
                await trio.sleep(1.0)
                continue
            except UserError as exc:
                log.info("campaign %s: not paused by the breaker: %s", name, exc)
            return


def has_work(session: Session, campaign_id: int) -> bool:
    """Whether a campaign still has leads waiting, leased or being dialed."""
    busy = (LeadState.NEW.value, LeadState.RETRY.value, LeadState.CLAIMED.value, LeadState.DIALING.value)
    return session.scalar(
        sa.select(sa.literal(True)).where(
            sa.exists().where(Lead.campaign_id == campaign_id, Lead.state.in_(busy))
        )
    ) is not None


def save_pacing(session: Session, engine_id: str, now: dt.datetime, saves: dict[int, dict],
                rows: list[tuple[int, dict[str, Any]]]) -> None:
    if saves:
        # Several engines on one campaign save it: the last one wins, never a
        # duplicate key.
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(PacingEstimate).values(
            [dict(campaign_id=cid, engine_id=engine_id, saved_at=now, data=data) for cid, data in saves.items()])
        session.execute(stmt.on_conflict_do_update(
            index_elements=[PacingEstimate.campaign_id],
            set_=dict(engine_id=stmt.excluded.engine_id, saved_at=stmt.excluded.saved_at, data=stmt.excluded.data)))
    if rows:
        session.execute(sa.insert(PacingDecisionRow),
                        [dict(row, campaign_id=cid, engine_id=engine_id) for cid, row in rows])


def abandon_figures(session: Session, campaign_id: int, now: dt.datetime) -> tuple[int, ...]:
    """(drops, answered) over 30 days, over 24 hours and over the last hour, from
    the attempts (dialer.compliance.abandon's one definition)."""
    windows = (*abandon.rolling(now), abandon.Window("last_hour", now - dt.timedelta(hours=1)))
    return tuple(n for c in abandon.counts(session, campaign_id, windows).values()
                 for n in (c.dropped, c.answered))


def _epoch(value: dt.datetime | None) -> float | None:
    return None if value is None else value.replace(tzinfo=dt.UTC).timestamp()


def adopt_orphans(session: Session, engine_id: str, servers: list[str], now: dt.datetime,
                  lease: dt.timedelta, dead: set[str] = frozenset()) -> list[dict]:
    """Take over the calls in flight of engines whose leases ran out or whose
    run is known to be dead (``dead`` lease owners, see dialer.liveness), on
    the servers this engine can ask; returns them as TrackedCall fields
    (at most 1,000 a poll: the rest are taken at the next housekeeping).
    ``engine_id`` is the lease owner this engine's run writes."""
    orphaned = Lead.lease_expires_at < now
    if dead:
        orphaned = sa.or_(orphaned, Lead.lease_owner.in_(sorted(dead)))
    rows = session.execute(
        sa.select(CallAttempt, Lead.id)
        .join(Lead, Lead.id == CallAttempt.lead_id)
        .where(
            CallAttempt.ended_at.is_(None),
            CallAttempt.server.in_(servers),
            Lead.state == LeadState.DIALING.value,
            orphaned,
        )
        .limit(1000)
    ).all()
    if not rows:
        return []
    lead_ids = [lead_id for _, lead_id in rows]
    taken = set(session.scalars(
        sa.update(Lead)
        .where(Lead.id.in_(lead_ids), orphaned)
        .values(lease_owner=engine_id, lease_expires_at=now + lease)
        .returning(Lead.id)
        .execution_options(synchronize_session=False)
    ))
    out = []
    for attempt, lead_id in rows:
        if lead_id not in taken:
            continue
        out.append(dict(
            attempt_id=attempt.id, campaign_id=attempt.campaign_id, lead_id=lead_id,
            action_id=attempt.action_id, channel_id=attempt.channel_id,
            other_channel_id=attempt.other_channel_id or "", server=attempt.server,
            connection=attempt.connection, queued_at=_epoch(attempt.created_at),
            originated_at=_epoch(attempt.originated_at), ringing_at=_epoch(attempt.ringing_at),
            answered_at=_epoch(attempt.answered_at), queue_joined_at=_epoch(attempt.queue_joined_at),
            connected_at=_epoch(attempt.connected_at), reason=attempt.originate_reason,
            response_seen=attempt.originate_reason is not None, agent=attempt.agent,
            estimated=set(filter(None, (attempt.estimated or "").split(","))),
        ))
    return out
