"""The dialing engine: hopper -> pacing -> AMI pool -> call tracker -> outcomes.

One :class:`Engine` dials every running campaign (or the ones it is given)
through one :class:`~dialer.ami.pool.AMIPool`. Its tasks, all in one nursery:

* the *control loop* reads campaign states every ``poll_interval`` seconds
  (supervisors change them from any shell), marks supervisor commands
  applied, finishes stopping and finished campaigns, renews this run's
  leases, hands back leads of engines whose run is dead (their liveness lock
  is free, see :mod:`dialer.liveness`) or whose lease ran out, and adopts
  their calls in flight when it can ask their Asterisk;
* the *dial loop* asks the pacing policy how many calls each running
  campaign should place, takes that many connections from the pool (each
  within its rate cap), claims as many leads and writes their call attempts in
  one transaction, and only then sends the Originates;
* the pool's readers feed every AMI event to the call tracker; the
  *writer* stores the resulting lifecycle steps in batches;
* the *reconciler* asks Asterisk (``CoreShowChannels``) about calls whose
  events may have been missed: after a connection gap, for calls adopted from
  a dead engine, and for calls that never got their ``OriginateResponse``.

An Originate that Asterisk refuses itself (``Response: Error``: permission
denied, shutting down, no such extension) placed no call: its lead goes back
to the hopper with the attempt not charged. A server that says it is shutting
down takes no more calls until it is back and fully booted (the pool sees to
that). The *circuit breaker*: when ``breaker_failures`` calls of a campaign in
a row fail at once (refused, or ``failed`` within ``breaker_within`` seconds
of their Originate without being answered: a channel template this Asterisk
cannot dial, a trunk down, a permission missing), the engine pauses the
campaign with a reason saying what Asterisk said, as a supervisor command
would, and takes back the charge of those calls and of the ones that fail
the same way until it is resumed.

Database work runs in a worker thread (SQLAlchemy is synchronous), one unit of
work at a time. An Originate is never resent: one whose fate is unknown is
found out by asking Asterisk, or recorded as ``unknown``.

Times: the engine's clock is wall-clock seconds derived from trio's clock,
optionally running ``speed`` times faster (the demo runs against a
simulated Asterisk sped up the same way), so everything time-dependent also
runs under trio's ``MockClock``.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
import trio
from sqlalchemy.orm import Session, sessionmaker

from dialer import abandon, control, db, hopper, live, liveness, rules
from dialer.ami.codec import LocalProtocolError, Message
from dialer.ami.errors import (
    AMIActionError, AMIError, ActionTimeout, ConnectionLost, NotConnected, PermissionDenied,
)
from dialer.ami.pool import AMIPool, PoolMember
from dialer.ami.timestamps import ServerClock
from dialer.calls import dispositions as disp
from dialer.calls.agents import AgentBoard
from dialer.calls.breaker import SHUTTING_DOWN, CircuitBreaker, failure_text
from dialer.calls.drops import DEFAULT_TARGET, DropNet, DropTarget
from dialer.calls.drops import move as move_to_drop
from dialer.calls.outcomes import LoggedEvent, RetryRules, record, to_datetime
from dialer.calls.tracker import CallTracker, Step, TrackedCall, Transition
from dialer.campaigns import render_channel
from dialer.dnc import add_dnc
from dialer.errors import UserError
from dialer.models import (
    AmiConnectionStats,
    EngineStatus,
    CallAttempt,
    Campaign,
    CampaignState,
    Lead,
    LeadState,
    LiveState,
    PacingDecisionRow,
    PacingEstimate,
    SupervisorCommand,
)
from dialer.pacing import CallStatsEstimator, PacingDecision, PacingSettings, PacingStats, decide

log = logging.getLogger("dialer.engine")
T = TypeVar("T")


class DatabaseBusy(Exception):
    """The database could not be reached or stayed locked (another writer, a
    restart): the unit of work did not happen and may be tried again."""


@dataclasses.dataclass
class EngineSettings:
    """Tunables, from the ``[engine]`` table of ``dialer.toml``."""

    poll_interval: float = 0.5       # real seconds between campaign-state polls
    flush_interval: float = 0.1      # real seconds between outcome writes
    lease: float = 60.0              # engine-clock seconds a claim lasts without renewal
    drop_after: float = rules.CONNECT_DEADLINE  # answered calls not with an agent by then are dropped
    stale_after: float = 60.0        # past ring timeout, a call with no result is looked up
    housekeeping_interval: float = 5.0
    stats_interval: float = 5.0
    batch_interval: float = 0.05     # real seconds between two claims, at least
    db_timeout: float = 10.0         # real seconds one unit of database work may take
    # Every AMI connection sends Ping this often (real seconds) and counts the
    # server as stalled when no answer, and no other byte, arrives in time:
    # the connection is then made again and the calls in flight reconciled.
    ping_interval: float = 5.0
    ping_timeout: float = 3.0
    speed: float = 1.0               # engine-clock seconds per real second
    breaker_failures: float = 20     # calls in a row failing at once pause their campaign
    breaker_within: float = 5.0      # a failure this soon after the Originate is "at once"
    # Where an answered call no agent took in time is moved (AMI Redirect), when the
    # dialplan did not move it itself: "context,exten,priority", or "off".
    drop_target: str = DEFAULT_TARGET

    @classmethod
    def from_config(cls, table: dict[str, Any], where: str = "[engine]") -> "EngineSettings":
        settings = cls()
        for key, value in table.items():
            if key not in {f.name for f in dataclasses.fields(cls)}:
                raise UserError(f"{where}: unknown setting {key!r}")
            if key == "drop_target":
                try:
                    if value != "off":
                        DropTarget.parse(value if isinstance(value, str) else "")
                except ValueError as exc:
                    raise UserError(f"{where}.{key}: {exc}") from None
                settings.drop_target = value
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UserError(f"{where}.{key}: must be a positive number")
            if key == "drop_after" and value > rules.CONNECT_DEADLINE:
                raise UserError(f"{where}.{key}: must be at most {rules.CONNECT_DEADLINE:g} seconds"
                                " (an answered call not with an agent by then is abandoned)")
            setattr(settings, key, float(value))
        return settings


class EngineClock:
    """Epoch seconds that follow trio's clock, ``speed`` times as fast."""

    def __init__(self, speed: float = 1.0, *, epoch: float | None = None) -> None:
        self.speed = speed
        self._epoch = time.time() if epoch is None else epoch
        self._origin = trio.current_time()

    def now(self) -> float:
        return self._epoch + (trio.current_time() - self._origin) * self.speed

    def utcnow(self) -> dt.datetime:
        return to_datetime(self.now())

    def real(self, seconds: float) -> float:
        """Real (trio) seconds for an engine-clock duration."""
        return seconds / self.speed


@dataclasses.dataclass(eq=False)
class CampaignRun:
    """What the engine keeps for one campaign between polls."""

    campaign: Campaign
    settings: PacingSettings
    rules: RetryRules
    estimator: CallStatsEstimator
    calls: set[TrackedCall] = dataclasses.field(default_factory=set)
    timezones: list[str] = dataclasses.field(default_factory=list)
    timezones_at: float = -math.inf
    hopper_empty_until: float = -math.inf
    abandon: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
    decision: PacingDecision | None = None
    placed: int = 0
    #: the inputs and result of the last pacing decision (``status()["pacing"]``)
    pacing: dict[str, Any] | None = None
    #: other engines dialing this campaign: engine id -> what their live state
    #: showed (wall time, speed, ringing ages, waiting, in flight)
    others: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: per other engine: (real time of a decision, calls it was to place) not
    #: yet seen in its live state
    expected: dict[str, list[tuple[float, int]]] = dataclasses.field(default_factory=dict)
    #: the decisions log: the second being gathered, and rows to write
    log_second: int | None = None
    log_row: dict[str, Any] | None = None
    log_rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    estimates_saved_at: float = -math.inf
    breaker: CircuitBreaker = dataclasses.field(default_factory=CircuitBreaker)

    @property
    def id(self) -> int:
        return self.campaign.id

    @property
    def state(self) -> str:
        return self.campaign.state


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


def _pacing_settings(c: Campaign) -> PacingSettings:
    return PacingSettings(
        mode=c.mode, dial_ratio=c.dial_ratio, max_dial_level=max(1.0, c.max_dial_level),
        abandon_target=c.abandon_target, max_concurrent=c.max_concurrent,
        hangup_after=float(c.hangup_after) if c.hangup_after else None,
    )


#: times the engine tries to write its last outcomes when it stops (0.5 s apart),
#: for at most FINAL_FLUSH_SECONDS (plus the db_timeout of the try under way)
FINAL_FLUSH_TRIES = 20
FINAL_FLUSH_SECONDS = 10.0
#: real seconds within which another engine's live state counts it as dialing a campaign
SHARE_FRESH = 3.0
#: engine-clock seconds between two saves of a campaign's learnt pacing estimates
ESTIMATES_EVERY = 60.0
#: The UserEvent the drop-message dialplan sends when the called party presses the
#: opt-out key (47 CFR 64.1200(a)(7)); it carries the Attempt (DIALER_ATTEMPT).
OPT_OUT_EVENT = "DialerOptOut"


def new_engine_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Engine:
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
        self.sessions = sessions
        self.settings = settings or EngineSettings()
        self.only = list(campaigns) if campaigns else None
        self.until_done = until_done
        self.engine_id = liveness.check_engine_id(engine_id) if engine_id else new_engine_id()
        # Leases are this run's: a restarted engine adopts its predecessor's
        # calls at once instead of renewing them (see dialer.liveness).
        self.run_token = uuid.uuid4().hex[:liveness.RUN_TOKEN_LENGTH]
        self.lease_owner = liveness.lease_owner(self.engine_id, self.run_token)
        self._lock: liveness.EngineLock | None = None
        self.on_progress = on_progress
        # Database work runs in a worker thread; tests under trio's MockClock run
        # it inline instead, since the mock clock jumps while a thread works.
        self.db_thread = db_thread
        self._epoch = epoch
        self.tracker = CallTracker(drop_after=self.settings.drop_after)
        self.agents = AgentBoard()
        self.drop_net = (None if self.settings.drop_target == "off"
                         else DropNet(DropTarget.parse(self.settings.drop_target)))
        self._redirect_denied: set[str] = set()  # servers that refused Redirect (warned once)
        # Recent samples for the console's health figures (appended from worker threads).
        self._lags: collections.deque[float] = collections.deque(maxlen=256)
        self._db_times: collections.deque[float] = collections.deque(maxlen=256)
        self.runs: dict[int, CampaignRun] = {}
        self._servers = list(servers)
        self._pool_kwargs = {"connect": connect} if connect is not None else {}
        self.pool: AMIPool | None = None
        self.clock: EngineClock | None = None
        self._db_limiter = trio.CapacityLimiter(1)
        self._pending: list[Transition] = []
        self._logged: list[LoggedEvent] = []
        self._cancelled: list[tuple[int, int]] = []   # (attempt id, lead id) never sent
        self._uncharge: list[tuple[int, int]] = []    # (attempt id, lead id) the breaker took back
        self._unsent: set[TrackedCall] = set()          # waiting for their send slot
        self._members: dict[str, PoolMember] = {}      # action_id -> connection
        self._gap_calls: dict[str, list[TrackedCall]] = {}
        self._check_calls: set[TrackedCall] = set()
        # Calls Asterisk did not list whose Originate may still run (no answer to
        # it and no channel seen yet): asked about again at the time given.
        self._recheck: dict[TrackedCall, float] = {}
        self._wake = trio.Event()
        self._reconcile_wake = trio.Event()
        self._draining = False
        self._flushing = 0
        self._hangup_denied: set[str] = set()  # servers that refused Hangup (warned once)
        self._server_clocks: dict[str, ServerClock] = {}  # events' Timestamps, per server
        self.database_down: str | None = None  # why the last unit of work timed out, until one works
        self._records_refused: set[str] = set()  # servers that refused DBGet (warned once)
        self._nursery: trio.Nursery | None = None
        self._last_housekeeping = -math.inf
        self._last_stats = -math.inf
        self.counters = {"opt_outs": 0, "originates": 0, "refused": 0, "lost": 0, "ended": 0, "events": 0,
                         "adopted": 0, "reconciled": 0, "not_sent": 0, "hangups": 0, "hung_up": 0,
                         "refused_stopping": 0, "breaker_trips": 0, "drop_redirects": 0}

    # -- helpers -------------------------------------------------------------------

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        # The worker thread cannot be cancelled; db.deadline bounds it instead,
        # by breaking its connection when db_timeout has passed.
        bind = self.sessions.kw["bind"]
        timeout = self.settings.db_timeout

        def unit() -> T:
            started = time.perf_counter()
            with db.deadline(bind, timeout), self.sessions.begin() as session:
                result = fn(session, *args)
            self._db_times.append(time.perf_counter() - started)
            return result

        try:
            if not self.db_thread:
                await trio.lowlevel.checkpoint()
                result = unit()
            else:
                result = await trio.to_thread.run_sync(unit, limiter=self._db_limiter)
        except db.DatabaseTimeout as exc:
            if self.database_down is None:
                log.error("%s; no new calls until it answers, outcomes are kept (%d call steps)"
                          " and written then", exc, len(self._pending))
            self.database_down = str(exc)
            raise DatabaseBusy(str(exc)) from exc
        except sa.exc.OperationalError as exc:
            reason = (str(exc.orig) if exc.orig is not None else str(exc)).strip().splitlines()[0]
            raise DatabaseBusy(reason) from exc
        if self.database_down is not None:
            self.database_down = None
            log.warning("the database answers again")
        return result

    def _poke(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    def in_flight(self) -> int:
        return len(self.tracker)

    # -- running -------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Dial until cancelled, or (``until_done``) until the campaigns are finished."""
        self.clock = EngineClock(self.settings.speed, epoch=self._epoch)
        self.pool = AMIPool(self._servers, now=trio.current_time(), ping_interval=self.settings.ping_interval,
                            ping_timeout=self.settings.ping_timeout, **self._pool_kwargs)
        await self._take_lock()
        try:
            await self._load_campaigns()
        except BaseException:
            self._release_lock()
            raise
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self.pool.run, self._on_event, self._on_gap)
                nursery.start_soon(self._control_loop)
                nursery.start_soon(self._writer_loop)
                nursery.start_soon(self._reconciler_loop)
                nursery.start_soon(self._dial_loop)
                nursery.start_soon(live.publish, self)
                task_status.started(self)
        finally:
            with trio.CancelScope(shield=True):
                await self._final_flush()
                await self._write_connection_stats()
                await self._save_pacing_now()
            self._release_lock()

    async def _take_lock(self) -> None:
        """Hold this engine name's liveness lock for the run (UserError if a
        live engine holds it)."""
        bind = self.sessions.kw["bind"]
        lock = liveness.EngineLock(bind, self.engine_id)
        if self.db_thread:
            await trio.to_thread.run_sync(lock.acquire, limiter=self._db_limiter)
        else:
            lock.acquire()
        self._lock = lock

    def _keep_lock(self) -> None:
        """Take the lock again if it was lost with its database connection
        (other engines would otherwise take this run for dead)."""
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

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def drain(self) -> None:
        """Place no new calls; follow the calls in flight to their end, then return."""
        self._draining = True
        self._poke()

    # -- campaigns -----------------------------------------------------------------

    def _campaign_query(self) -> sa.Select:
        stmt = sa.select(Campaign)
        if self.only is not None:
            stmt = stmt.where(Campaign.name.in_(self.only))
        return stmt

    async def _load_campaigns(self) -> None:
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

        found, saved = await self._db(load)
        assert self.clock is not None
        for c in found:
            run = self._update_run(c)
            if c.id in saved:
                n = run.estimator.restore(saved[c.id], self.clock.now())
                log.info("campaign %s: pacing starts from %d saved attempts", c.name, n)

    def _update_run(self, c: Campaign) -> CampaignRun:
        run = self.runs.get(c.id)
        if run is None:
            run = CampaignRun(
                campaign=c, settings=_pacing_settings(c),
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
            run.settings = _pacing_settings(c)
            run.rules = RetryRules(c.max_attempts, dict(c.retry_delays))
        return run

    async def _control_loop(self) -> None:
        while True:
            await self._poll()
            if self.on_progress is not None:
                self.on_progress(self)
            if self._finished():
                assert self._nursery is not None
                self._nursery.cancel_scope.cancel()
                return
            await trio.sleep(self.settings.poll_interval)

    def _finished(self) -> bool:
        if self._flushing:
            return False  # outcomes taken out of _pending are being written
        if self._draining:
            return (self.in_flight() == 0 and not self._pending and not self._cancelled
                    and not self._uncharge)
        if not self.until_done:
            return False
        return (
            self.in_flight() == 0
            and not self._pending
            and not self._cancelled
            and not self._uncharge
            and all(r.state in ("done", "stopped") for r in self.runs.values())
        )

    async def _poll(self) -> None:
        assert self.clock is not None
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
        servers = self.pool.servers if self.pool else []
        readable = [s for s in servers if self.pool.has_reader(s)] if self.pool else []
        empty = {cid for cid, run in self.runs.items() if run.hopper_empty_until > now_t}
        known = set(self.runs)
        wall = time.time()
        fresh_after = dt.datetime.fromtimestamp(wall - SHARE_FRESH, dt.UTC).replace(tzinfo=None)
        saves = self._estimates_to_save(stats)
        decisions = self._decision_rows()
        shared: dict[int, dict[str, dict[str, Any]]] = {}
        restored: dict[int, dict] = {}

        def poll(session: Session) -> tuple[list[Campaign], dict[int, tuple[int, ...]], list[dict]]:
            campaigns = list(session.scalars(self._campaign_query()))
            ids = [c.id for c in campaigns]
            _save_pacing(session, self.engine_id, now, saves, decisions)
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
                    and not _has_work(session, c.id)
                ):
                    c.state = CampaignState.DONE.value
                    c.updated_at = now
            orphans: list[dict] = []
            if housekeeping:
                self._keep_lock()
                others = hopper.lease_owners(session) - {self.lease_owner}
                dead = liveness.dead_owners(session, others, engine_id=self.engine_id,
                                            run=self.run_token) if others else set()
                hopper.renew_leases(session, engine_id=self.lease_owner, now=now, lease=lease)
                hopper.reclaim_expired(session, now=now)
                hopper.reclaim_owned(session, dead, now=now)
                if readable:
                    orphans = _adopt_orphans(session, self.lease_owner, readable, now, lease, dead)
            abandon = {}
            if stats:
                abandon = {c.id: _abandon_figures(session, c.id, now) for c in campaigns
                           if c.state == CampaignState.RUNNING.value}
            session.flush()
            for c in campaigns:
                session.expunge(c)
            return campaigns, abandon, orphans

        try:
            campaigns, abandon, orphans = await self._db(poll)
        except DatabaseBusy as exc:
            log.warning("campaign states not read (%s); trying again", exc)
            self._decision_rows_back(decisions)
            return
        for c in campaigns:
            run = self._update_run(c)
            if c.id in abandon:
                run.abandon = abandon[c.id]
            if c.id in restored:
                n = run.estimator.restore(restored[c.id], self.clock.now())
                log.info("campaign %s: pacing starts from %d saved attempts", c.name, n)
            run.others = _other_engines(shared.get(c.id, {}))
            for engine_id in list(run.expected):
                if engine_id not in run.others:
                    del run.expected[engine_id]
        if orphans:
            self._adopt(orphans)
        if stats:
            await self._write_connection_stats()
        await self._write_status()
        self._poke()

    # -- dialing -------------------------------------------------------------------

    def _stats_for(self, run: CampaignRun, capacity: int) -> tuple[PacingStats, list[TrackedCall]]:
        """The campaign's live figures, and its ringing calls in the order of
        ``ringing_elapsed`` (which ``hangup_candidates`` index)."""
        assert self.clock is not None
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
        stats = PacingStats(
            now=now, agents_logged_in=logged_in, agents_free=free, talk_elapsed=busy,
            calls_ringing=len(ringing), ringing_elapsed=tuple(ringing), calls_waiting=waiting,
            hangup_candidates=tuple(candidates), in_flight=len(run.calls), capacity=capacity,
            estimates=run.estimator.estimates(now),
            drops_30d=d30, answered_30d=a30, drops_24h=d24, answered_24h=a24,
            drops_1h=d1, answered_1h=a1,
            **self._shared_figures(run),
        )
        return stats, ringing_calls

    def _shared_figures(self, run: CampaignRun) -> dict[str, Any]:
        """The other engines' calls for this campaign, as PacingStats fields."""
        if not run.others:
            return {}
        return shared_figures(self.engine_id, run.others, run.expected, time.time(), self.settings.speed)

    async def _dial_loop(self) -> None:
        assert self.pool is not None
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
            with trio.move_on_after(0.25):
                await wake.wait()

    async def _dial_campaign(self, run: CampaignRun) -> int:
        assert self.pool is not None and self.clock is not None
        now_t = trio.current_time()
        capacity = self.pool.capacity()
        if run.hopper_empty_until > now_t or capacity <= 0 or run.breaker.tripped:
            self._hang_ups_only(run)
            return 0
        stats, ringing_calls = self._stats_for(run, capacity)
        run.decision = decide(stats, run.settings)
        if run.decision.hangup:
            self._hang_up(run, run.decision.hangup, ringing_calls)
        self._note_decision(run, stats, run.decision)
        wanted = min(run.decision.calls, capacity)
        if wanted <= 0:
            return 0
        members: list[PoolMember] = []
        while len(members) < wanted:
            member = self.pool.assign()
            if member is None:
                break
            members.append(member)
        if not members:
            return 0
        if now_t - run.timezones_at > 30.0:
            try:
                run.timezones = await self._db(hopper.campaign_timezones, run.id)
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
            attempts = await self._db(claim_and_start)
        except DatabaseBusy as exc:
            log.warning("%s: no leads claimed (%s); trying again", campaign.name, exc)
            attempts = []
        for member in members[len(attempts):]:
            self.pool.unassign(member)
        if not attempts:
            run.hopper_empty_until = now_t + 1.0
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

    def _note_decision(self, run: CampaignRun, stats: PacingStats, d: PacingDecision) -> None:
        """Keep the decision's inputs for status() and the decisions log, and,
        with other engines on the campaign, the calls they are to place."""
        if stats.engines > 1 and d.total_calls:
            wall = time.time()
            order = _engine_order(self.engine_id, run.others, wall)
            for rank, engine_id in enumerate(order):
                share = (d.total_calls + rank) // len(order)
                if engine_id != self.engine_id and share:
                    run.expected.setdefault(engine_id, []).append((wall, share))
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
            # for the other engines on this campaign (see _shared_figures)
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

    def _decision_rows(self) -> list[tuple[int, dict[str, Any]]]:
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

    def _estimates_to_save(self, due: bool) -> dict[int, dict]:
        """Snapshots of the campaigns' estimators due to be saved (every ESTIMATES_EVERY s)."""
        assert self.clock is not None
        now = self.clock.now()
        out = {}
        for run in self.runs.values():
            if run.campaign.mode == "unattended" or not run.estimator.attempts:
                continue
            if due and now - run.estimates_saved_at >= ESTIMATES_EVERY:
                out[run.id] = run.estimator.snapshot(now)
                run.estimates_saved_at = now
        return out

    def _originate_headers(self, run: CampaignRun, call: TrackedCall, lead: hopper.ClaimedLead) -> list[tuple[str, str]]:
        c = run.campaign
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

    async def _originate(self, run: CampaignRun, call: TrackedCall, lead: hopper.ClaimedLead,
                         member: PoolMember) -> None:
        assert self.clock is not None
        try:
            headers = self._originate_headers(run, call, lead)
        except (KeyError, ValueError, IndexError) as exc:
            # The channel template names a field this lead does not have.
            member.queued -= 1
            self._unsent.discard(call)
            self._apply(self.tracker.refused(call.action_id, self.clock.now(),
                                             f"channel template: {_one_line(exc)}"))
            return
        on_wire = await member.send_slot()
        self._unsent.discard(call)
        try:
            if member.ami is None or not member.up or member.originate_denied:
                raise NotConnected(f"{member.name}: not connected")
            if self.pool is not None and member.stalled(trio.current_time(), self.pool.stall_after):
                raise NotConnected(f"{member.name}: an Originate has waited"
                                   f" {self.pool.stall_after:g} s for its answer")
            if self.pool is not None and not self.pool.accepting(member.server):
                raise NotConnected(f"{member.server}: shutting down or not fully booted")
            if run.breaker.tripped:
                raise NotConnected(f"campaign {run.campaign.name}: paused by the circuit breaker")
            self.counters["originates"] += 1
            member.unanswered[call.action_id] = trio.current_time()
            try:
                await member.ami.action("Originate", headers, action_id=call.action_id, on_sent=on_wire)
            finally:
                member.unanswered.pop(call.action_id, None)
        except (NotConnected, LocalProtocolError) as exc:
            if isinstance(exc, LocalProtocolError):
                # A value that cannot be sent (CR/LF in a lead field): refused here.
                self.counters["refused"] += 1
                self._apply(self.tracker.refused(call.action_id, self.clock.now(), _one_line(exc)))
            else:
                self._not_sent(call, member)
        except PermissionDenied as exc:
            # The AMI user may not Originate: nothing was dialed, the lead goes
            # back uncharged, and this connection places no more calls.
            member.failures += 1
            self._not_sent(call, member)
            if not member.originate_denied:
                member.originate_denied = True
                log.error("%s: the AMI user %r may not Originate (%s): give it write = originate"
                          " in manager.conf; no calls are placed through %s", member.server,
                          member.ami.username, _one_line(exc), member.name)
                if self.pool is not None and all(m.originate_denied for m in self.pool.members):
                    # No connection may dial: say so where supervisors look, as the
                    # circuit breaker does, rather than sit "running" placing nothing.
                    reason = (f"no AMI connection may Originate ({exc.reason or 'Permission denied'}):"
                              f" give the AMI user write = originate in manager.conf")[:500]
                    assert self._nursery is not None
                    for other in list(self.runs.values()):
                        if other.campaign.state == CampaignState.RUNNING.value:
                            log.error("campaign %s paused: %s", other.campaign.name, reason)
                            self._nursery.start_soon(self._pause_campaign, other, reason)
        except AMIActionError as exc:
            # Asterisk refused it: no call was placed, so the lead is not charged.
            member.failures += 1
            self.counters["refused"] += 1
            if exc.reason == SHUTTING_DOWN:
                self.counters["refused_stopping"] += 1
            else:
                log.warning("attempt %s: %s", call.attempt_id, _one_line(exc))
            self._apply(self.tracker.refused(call.action_id, self.clock.now(),
                                             response_message=exc.reason or "error", charged=False))
        except ActionTimeout as exc:
            member.failures += 1
            if exc.sent:
                self._lost(call)
            else:
                self._not_sent(call, member)
        except (ConnectionLost, AMIError):
            member.failures += 1
            self._lost(call)
        else:
            self._apply(self.tracker.originated(call.action_id, self.clock.now()))

    def _move_overdue(self, run: CampaignRun) -> None:
        """The drop message's safety net (dialer.calls.drops)."""
        if self.drop_net is None or not run.calls:
            return
        assert self.clock is not None and self._nursery is not None
        for call in self.drop_net.overdue(run.calls, self.clock.now()):
            if (member := self._members.get(call.action_id)) is not None:
                self._nursery.start_soon(self._redirect, call, member)

    async def _redirect(self, call: TrackedCall, member: PoolMember) -> None:
        assert self.drop_net is not None and self.clock is not None
        if await move_to_drop(member, self.drop_net, call, self.clock.now(),
                              denied=self._redirect_denied):
            self.counters["drop_redirects"] += 1

    def _hang_ups_only(self, run: CampaignRun) -> None:
        """No new calls for this campaign now, but its ringing calls may still be too many."""
        if run.settings.hangup_after is None or not run.calls:
            return
        stats, ringing_calls = self._stats_for(run, 0)
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
        assert call.channel_name is not None and self.clock is not None
        if call.answered_at is not None or call.ended:
            return  # answered (or over) since pacing chose it: never cut
        call.hangup_at = self.clock.now()
        try:
            if member.ami is None or not member.up:
                raise NotConnected(f"{member.name}: not connected")
            await member.ami.action("Hangup", [("Channel", call.channel_name), ("Cause", "16")])
        except PermissionDenied as exc:
            call.hangup_at = None
            if member.server not in self._hangup_denied:
                self._hangup_denied.add(member.server)
                log.warning("%s: ringing calls cannot be cut (%s); give the AMI user"
                            " write = system (or call) in manager.conf, or set hangup_after = off",
                            member.server, _one_line(exc))
        except AMIActionError as exc:
            # "No such channel": it ended by itself meanwhile.
            call.hangup_at = None
            log.debug("attempt %s: hangup refused: %s", call.attempt_id, _one_line(exc))
        except (AMIError, LocalProtocolError) as exc:
            call.hangup_at = None
            log.info("attempt %s: hangup not sent: %s", call.attempt_id, _one_line(exc))
        else:
            self.counters["hangups"] += 1

    def _not_sent(self, call: TrackedCall, member: PoolMember) -> None:
        """The Originate never left: the lead goes back to the hopper as if
        this attempt had not been made."""
        assert self.pool is not None
        self.counters["not_sent"] += 1
        member.originates_sent -= 1  # counted when its send slot came
        self.tracker.forget(call)
        self._members.pop(call.action_id, None)
        self.pool.release(member)
        run = self.runs.get(call.campaign_id)
        if run is not None:
            run.calls.discard(call)
            run.hopper_empty_until = -math.inf
        self._cancelled.append((call.attempt_id, call.lead_id))

    def _lost(self, call: TrackedCall) -> None:
        """The Originate may or may not have run: never resend it; ask Asterisk
        about it if its events do not settle it soon."""
        self.counters["lost"] += 1
        if not call.ended:
            self._check_calls.add(call)
            self._reconcile_wake.set()

    # -- events --------------------------------------------------------------------

    async def _on_event(self, server: str, event: Message) -> None:
        assert self.clock is not None
        self.counters["events"] += 1
        if not self.counters["events"] % 64:  # a sample of the events is plenty
            self._note_lag(event)
        now = self.clock.now()
        if self.settings.speed == 1.0:
            # When Asterisk raised it (its Timestamp:), on this engine's clock.
            clock = self._server_clocks.get(server)
            if clock is None:
                clock = self._server_clocks[server] = ServerClock()
            now = clock.event_time(event.get("Timestamp"), now)
        name = event.name or ""
        if name.startswith("QueueMember"):
            if self.agents.handle(server, event, now):
                self._poke()
            return
        if name == "UserEvent":
            if event.get("UserEvent") == OPT_OUT_EVENT:
                await self._opt_out(server, event)
            return
        transitions = self.tracker.handle(event, now)
        if transitions:
            self._apply(transitions, event)

    def _note_lag(self, event: Message) -> None:
        """Seconds from Asterisk's Timestamp: header (timestampevents = yes) to now."""
        stamp = event.get("Timestamp")
        try:
            lag = time.time() - float(stamp) if stamp else None
        except ValueError:
            lag = None
        if lag is not None and self.settings.speed == 1:
            self._lags.append(lag)

    def health(self) -> dict[str, Any]:
        """Event lag and database unit-of-work times over the last samples (seconds)."""
        def summary(values) -> dict[str, Any]:
            ordered = sorted(values)
            if not ordered:
                return {"median": None, "max": None, "samples": 0}
            return {"median": round(ordered[len(ordered) // 2], 4), "max": round(ordered[-1], 4),
                    "samples": len(ordered)}
        return {"event_lag": summary(self._lags), "db_unit": summary(self._db_times)}

    async def _opt_out(self, server: str, event: Message) -> None:
        """The called party pressed the drop message's opt-out key: list the number now."""
        try:
            attempt_id = int(event.get("Attempt") or "")
        except ValueError:
            log.warning("%s: %s without a valid Attempt header ignored", server, OPT_OUT_EVENT)
            return
        assert self.clock is not None
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
            phone = await self._db(write)
        except DatabaseBusy as exc:
            # Never lost: tried again in a second, off the event reader's path.
            log.warning("attempt %d: opt-out not listed yet (%s); trying again", attempt_id, exc)
            assert self._nursery is not None
            self._nursery.start_soon(self._opt_out_later, server, event)
            return
        self.counters["opt_outs"] += 1
        if phone is None:
            log.warning("%s: %s for unknown attempt %d", server, OPT_OUT_EVENT, attempt_id)
        else:
            log.info("attempt %d: %s opted out, on the do-not-call list", attempt_id, phone)

    async def _opt_out_later(self, server: str, event: Message) -> None:
        await trio.sleep(1.0)
        await self._opt_out(server, event)

    def _apply(self, transitions: list[Transition], event: Message | None = None) -> None:
        if not transitions:
            return
        self._pending.extend(transitions)
        logged: set[int] = set()  # an event that moved a call several steps is logged once
        for t in transitions:
            if event is not None and t.call.attempt_id not in logged:
                logged.add(t.call.attempt_id)
                self._logged.append(LoggedEvent(t.call.attempt_id, t.at, event.name or "", event.items()))
            if t.step is Step.ENDED:
                self._call_ended(t.call)
            elif t.step in (Step.ANSWERED, Step.CONNECTED):
                self._poke()

    def _call_ended(self, call: TrackedCall) -> None:
        self.counters["ended"] += 1
        member = self._members.pop(call.action_id, None)
        if member is not None and self.pool is not None:
            self.pool.release(member)
        self._check_calls.discard(call)
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
        self._poke()

    # -- the circuit breaker ------------------------------------------------------------

    def _breaker(self, run: CampaignRun, call: TrackedCall) -> None:
        calls = run.breaker.call_ended(call)
        if calls is None:
            return
        self.counters["breaker_trips"] += 1
        for failed in calls:
            if failed.charged:
                # Written already (or about to be): take the charge back.
                failed.charged = False
                self._uncharge.append((failed.attempt_id, failed.lead_id))
        reason = (f"circuit breaker: {len(calls)} calls in a row failed at once;"
                  f" last: {failure_text(call, run.campaign.channel)}")[:500]
        log.error("campaign %s paused: %s", run.campaign.name, reason)
        assert self._nursery is not None
        self._nursery.start_soon(self._pause_campaign, run, reason)

    async def _pause_campaign(self, run: CampaignRun, reason: str) -> None:
        """Pause the campaign as a supervisor would, recorded with this engine's name."""
        assert self.clock is not None
        issued_by = f"engine {self.engine_id}"[:255]
        name = run.campaign.name
        while True:
            now = self.clock.utcnow()

            def pause(session: Session) -> None:
                control.issue(session, name, "pause", reason=reason, issued_by=issued_by, now=now)

            try:
                await self._db(pause)
            except DatabaseBusy as exc:
                log.warning("campaign %s: pause not written yet (%s); trying again", name, exc)
                await trio.sleep(1.0)
                continue
            except UserError as exc:
                log.info("campaign %s: not paused by the breaker: %s", name, exc)
            self._poke()
            return

    # -- writing outcomes -------------------------------------------------------------

    async def _writer_loop(self) -> None:
        while True:
            await trio.sleep(self.settings.flush_interval)
            await self._flush()

    async def _final_flush(self) -> None:
        """Write what is left before returning, waiting out a busy database for a while."""
        give_up = trio.current_time() + FINAL_FLUSH_SECONDS
        for _ in range(FINAL_FLUSH_TRIES):
            await self._flush()
            if not self._pending and not self._cancelled and not self._uncharge:
                return
            if trio.current_time() + 0.5 > give_up:
                break
            await trio.sleep(0.5)
        log.error("%d call steps and %d unsent attempts not written; a restart reconciles"
                  " their calls", len(self._pending), len(self._cancelled))

    async def _flush(self) -> None:
        if not self._pending and not self._cancelled and not self._uncharge:
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
        rules = {cid: run.rules for cid, run in self.runs.items()}
        assert self.clock is not None
        now = self.clock.utcnow()

        def write(session: Session) -> None:
            hopper.cancel_attempts(session, cancelled, now=now)
            record(session, batch, rules=rules, events=logged)
            hopper.uncharge_attempts(session, uncharge, now=now)

        try:
            await self._db(write)
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

    async def _save_pacing_now(self) -> None:
        """At a stop: the learnt estimates and the rest of the decisions log."""
        if self.clock is None:
            return
        for run in self.runs.values():
            run.estimates_saved_at = -math.inf
            if run.log_row is not None:
                run.log_rows.append(run.log_row)
                run.log_row, run.log_second = None, None
        saves = self._estimates_to_save(True)
        rows = self._decision_rows()
        now = self.clock.utcnow()
        if not saves and not rows:
            return
        with contextlib.suppress(DatabaseBusy):
            await self._db(_save_pacing, self.engine_id, now, saves, rows)

    async def _write_connection_stats(self) -> None:
        if self.pool is None:
            return
        rows = self.pool.statistics()
        engine_id = self.engine_id
        assert self.clock is not None
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
            await self._db(write)

    def status(self) -> dict[str, Any]:
        """The live figures ``dialer status`` shows, as plain data."""
        assert self.clock is not None and self.pool is not None
        now = self.clock.now()
        campaigns = {}
        for run in self.runs.values():
            c = run.campaign
            ringing = sum(1 for call in run.calls if call.answered_at is None)
            connected = sum(1 for call in run.calls if call.connected_at is not None)
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
                # As pacing last read them (every stats_interval), from dialer.abandon.
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
            "counters": dict(self.counters),
            "health": self.health(),
        }

    async def _write_status(self) -> None:
        assert self.clock is not None
        data = self.status()
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
            await self._db(write)

    # -- finding out what Asterisk knows ------------------------------------------

    async def _on_gap(self, server: str) -> None:
        # Called from a connection's reader task: only note it, never block.
        self._gap_calls.setdefault(server, []).extend(
            c for c in self.tracker.calls() if c.server == server and c not in self._unsent
        )
        self._reconcile_wake.set()
        # The server can be asked again: look for dead engines' calls on it at
        # the next poll rather than at the next housekeeping.
        self._last_housekeeping = -math.inf

    def _adopt(self, rows: list[dict]) -> None:
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
            self._gap_calls.setdefault(call.server, []).append(call)
            self.counters["adopted"] += 1
            adopted += 1
        if adopted:
            log.info("adopted %d calls in flight of engines that died or stopped renewing"
                     " their leases; asking Asterisk about them", adopted)
        self._reconcile_wake.set()

    async def _reconciler_loop(self) -> None:
        assert self.clock is not None
        while True:
            self._reconcile_wake = trio.Event()
            wake = self._reconcile_wake
            now = self.clock.now()
            self._apply(self.tracker.expire(now))
            for call in self.tracker.calls():
                # The Originate was sent (and maybe taken) but its result never came.
                run = self.runs.get(call.campaign_id)
                ring = run.campaign.ring_timeout if run else 60
                start = call.originated_at or call.queued_at
                if not call.response_seen and start is not None and call not in self._unsent and \
                        now - start > ring + self.settings.stale_after:
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
        assert self.pool is not None and self.clock is not None
        ami = self.pool.server_connection(server)
        if ami is None or not self.pool.has_reader(server):
            return  # try again once the server has a reader
        calls = self._gap_calls.pop(server, [])
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
            self._gap_calls.setdefault(server, []).extend(calls)
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
        run = self.runs.get(call.campaign_id)
        ring = run.campaign.ring_timeout if run else 60
        start = call.originated_at or call.queued_at or 0.0
        return start + ring + self.settings.stale_after

    async def _resolve_gone(self, ami: Any, server: str, call: TrackedCall) -> None:
        """A call Asterisk no longer has whose end the engine did not see: its
        end from the dialplan's hangup record (``dialer-end/<attempt>``), else
        estimated and flagged so."""
        assert self.clock is not None
        now = self.clock.now()
        record: tuple[float, int | None, str] | None = None
        try:
            _, items = await ami.list_action(
                "DBGet", [("Family", HANGUP_RECORD_FAMILY), ("Key", str(call.attempt_id))], timeout=10)
            for item in items:
                record = _parse_hangup_record(item.get("Val"))
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
                        HANGUP_RECORD_FAMILY, _one_line(exc))
        except AMIError as exc:
            log.warning("%s: attempt %d: %s record not read: %s", server, call.attempt_id,
                        HANGUP_RECORD_FAMILY, _one_line(exc))
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
        run = self.runs.get(call.campaign_id)
        end = now
        if call.answered_at is None:
            ring = run.campaign.ring_timeout if run else 60
            start = call.originated_at or call.queued_at or now
            end = min(now, max(start + ring, call.ringing_at or start))
        self._apply(self.tracker.resolve_lost(call, end))


#: AstDB family of the hangup records the dialplan writes (README: the dialplan it expects)
HANGUP_RECORD_FAMILY = "dialer-end"


def _parse_hangup_record(value: str | None) -> tuple[float, int | None, str] | None:
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


def _one_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:100]


def _has_work(session: Session, campaign_id: int) -> bool:
    """Whether a campaign still has leads waiting, leased or being dialed."""
    busy = (LeadState.NEW.value, LeadState.RETRY.value, LeadState.CLAIMED.value, LeadState.DIALING.value)
    return session.scalar(
        sa.select(sa.literal(True)).where(
            sa.exists().where(Lead.campaign_id == campaign_id, Lead.state.in_(busy))
        )
    ) is not None


def shared_figures(mine: str, others: dict[str, dict[str, Any]], expected: dict[str, list[tuple[float, int]]],
                   wall: float, speed: float) -> dict[str, Any]:
    """Other engines' calls on a campaign as PacingStats fields, at real time ``wall``.

    Their ringing calls as their live state last showed them, aged by the real
    time since (at their clock speed), plus the calls they were to place by
    this engine's decisions since then (counted as placed at the decision;
    ``expected`` is pruned of those their live state now shows); the engines
    in the order of :func:`_engine_order`.
    """
    ages: list[float] = []
    waiting = in_flight = 0
    for engine_id, other in others.items():
        lag = max(0.0, wall - other["wall"]) * other["speed"]
        ages += [a + lag for a in other["ringing"]]
        waiting += other["waiting"]
        in_flight += other["in_flight"]
        pending = [(t, n) for t, n in expected.get(engine_id, ()) if t >= other["wall"]]
        expected[engine_id] = pending
        for t, n in pending:
            ages += [max(0.0, wall - t) * speed] * n
            in_flight += n
    order = _engine_order(mine, others, wall)
    return dict(shared_ringing_elapsed=tuple(ages), shared_waiting=waiting, shared_in_flight=in_flight,
                engines=len(order), engine_rank=order.index(mine))


def _engine_order(mine: str, others: dict[str, Any], wall: float) -> list[str]:
    """The engines on a campaign in the order their shares are dealt: by id,
    turned by one place every real second, so that every engine reckons the same
    order and each has the larger share of an odd count in turn."""
    order = sorted([mine, *others])
    turn = int(wall) % len(order)
    return order[turn:] + order[:turn]


def _other_engines(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """From other engines' live-state documents for a campaign: those dialing it
    now, with what pacing needs of them."""
    out = {}
    for engine_id, doc in rows.items():
        pacing = (doc or {}).get("pacing") or {}
        share = pacing.get("share")
        if doc.get("state") != CampaignState.RUNNING.value or not isinstance(share, dict):
            continue
        try:
            out[engine_id] = {
                "wall": float(doc["wall_time"]), "speed": float(doc.get("speed") or 1.0),
                "ringing": [float(a) for a in share.get("ringing", [])],
                "waiting": int(share.get("waiting", 0)), "in_flight": int(share.get("in_flight", 0)),
            }
        except (KeyError, TypeError, ValueError):
            continue  # a document this version cannot read: not counted
    return out


def _save_pacing(session: Session, engine_id: str, now: dt.datetime, saves: dict[int, dict],
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


def _abandon_figures(session: Session, campaign_id: int, now: dt.datetime) -> tuple[int, ...]:
    """(drops, answered) over 30 days, over 24 hours and over the last hour, from
    the attempts (dialer.abandon's one definition)."""
    windows = (*abandon.rolling(now), abandon.Window("last_hour", now - dt.timedelta(hours=1)))
    return tuple(n for c in abandon.counts(session, campaign_id, windows).values()
                 for n in (c.dropped, c.answered))


def _epoch(value: dt.datetime | None) -> float | None:
    return None if value is None else value.replace(tzinfo=dt.UTC).timestamp()


def _adopt_orphans(session: Session, engine_id: str, servers: list[str], now: dt.datetime,
                   lease: dt.timedelta, dead: set[str] = frozenset()) -> list[dict]:
    """Take over the calls in flight of engines whose leases ran out or whose
    run is known to be dead (``dead`` lease owners, see dialer.liveness), on
    the servers this engine can ask; returns them as TrackedCall fields.
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
