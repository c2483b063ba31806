"""The database schema: typed SQLAlchemy models for every table the dialer keeps.

Schema changes go through Alembic (``migrations/``); ``dialer db check`` fails
when these models and the migrations disagree.

All timestamps are naive UTC ``datetime`` values. Every set of allowed values
(campaign states, lead states, attempt states, dispositions, supervisor
commands) is a ``StrEnum`` here and a CHECK constraint in the database.

Campaign states::

    stopped  --start-->  running  --pause-->  paused  --resume-->  running
    running/paused  --stop-->  stopping  --(calls in flight ended)-->  stopped
    running  --(no lead left to dial, nothing in flight)-->  done
    done  --start (after new leads were loaded)-->  running

Lead states (``next_attempt_at`` is set exactly when the lead waits to be dialed,
i.e. in ``new`` and ``retry``)::

    new        loaded, never dialed; due from ``next_attempt_at`` (the load time)
    retry      dialed before; due again at ``next_attempt_at``
    claimed    leased by an engine (``lease_owner`` until ``lease_expires_at``)
    dialing    a call attempt for it is in flight
    done       reached a final disposition (no retry rule applies)
    exhausted  ``max_attempts`` reached without a final disposition
    dnc        its number was put on the do-not-call list while the lead was
               new, retry or claimed (see dialer.leads.dnc)

Call attempt states (each step has its own timestamp column)::

    queued -> originated -> ringing -> answered -> connected -> ended
    (any state may go straight to ended; ``disposition`` is set when it does)
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    Time,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from dialer.compliance import rules

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit ids on PostgreSQL; SQLite only auto-increments INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# JSON documents: jsonb on PostgreSQL, JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")

# Longest E.164 number is 15 digits, plus the leading '+'.
E164_LENGTH = 16


class CampaignState(enum.StrEnum):
    STOPPED = "stopped"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    DONE = "done"


class DialMode(enum.StrEnum):
    PROGRESSIVE = "progressive"
    PREDICTIVE = "predictive"
    UNATTENDED = "unattended"


class LeadState(enum.StrEnum):
    NEW = "new"
    RETRY = "retry"
    CLAIMED = "claimed"
    DIALING = "dialing"
    DONE = "done"
    EXHAUSTED = "exhausted"
    DNC = "dnc"


class AttemptState(enum.StrEnum):
    QUEUED = "queued"
    ORIGINATED = "originated"
    RINGING = "ringing"
    ANSWERED = "answered"
    CONNECTED = "connected"
    ENDED = "ended"


class Disposition(enum.StrEnum):
    """How a call attempt ended.

    connected       answered and connected to an agent (or, in unattended mode,
                    answered and sent to the connect target)
    dropped         answered but not connected to an agent within 2 s (abandoned)
    no_answer       rang until the ring timeout, or hung up before answering
    busy            the called party was busy
    congestion      congestion or carrier failure
    invalid_number  the number does not exist or cannot be routed
    failed          the Originate failed for another reason
    unknown         the end of the call was never seen and Asterisk could not tell
    """

    CONNECTED = "connected"
    DROPPED = "dropped"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CONGESTION = "congestion"
    INVALID_NUMBER = "invalid_number"
    FAILED = "failed"
    UNKNOWN = "unknown"


class SupervisorCommandName(enum.StrEnum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"


def _one_of(column: str, values: type[enum.StrEnum]) -> str:
    allowed = ", ".join(f"'{v.value}'" for v in values)
    return f"{column} IN ({allowed})"


def utcnow() -> dt.datetime:
    """The current time as a naive UTC datetime, the form the database stores."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: DateTime(),
        dt.time: Time(),
        dict[str, Any]: Json,
        list[Any]: Json,
    }


class Campaign(Base):
    """A campaign and its settings (see :mod:`dialer.campaigns` for their meaning)."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=CampaignState.STOPPED.value)

    mode: Mapped[str] = mapped_column(String(16))
    dial_ratio: Mapped[float] = mapped_column(Float)
    max_dial_level: Mapped[float] = mapped_column(Float)
    abandon_target: Mapped[float] = mapped_column(Float)
    channel: Mapped[str] = mapped_column(String(255))
    context: Mapped[str] = mapped_column(String(80))
    exten: Mapped[str] = mapped_column(String(80))
    priority: Mapped[int] = mapped_column(Integer)
    queue: Mapped[str | None] = mapped_column(String(80))
    caller_id: Mapped[str | None] = mapped_column(String(255))
    ring_timeout: Mapped[int] = mapped_column(Integer)
    # Seconds of ringing after which a call may be hung up; 0: never.
    hangup_after: Mapped[int] = mapped_column(Integer, server_default=sa.text("0"))
    calling_window_start: Mapped[dt.time] = mapped_column()
    calling_window_end: Mapped[dt.time] = mapped_column()
    # Weekday numbers, 0 = Monday .. 6 = Sunday, sorted.
    calling_days: Mapped[list[Any]] = mapped_column()
    # ISO dates ('2026-12-25'), sorted.
    holidays: Mapped[list[Any]] = mapped_column()
    max_attempts: Mapped[int] = mapped_column(Integer)
    # Disposition name -> seconds until the next attempt; no entry means no retry.
    retry_delays: Mapped[dict[str, Any]] = mapped_column()
    max_concurrent: Mapped[int] = mapped_column(Integer)

    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint(_one_of("state", CampaignState), name="state"),
        CheckConstraint(_one_of("mode", DialMode), name="mode"),
        # The minimum ring (dialer.compliance.rules.MIN_RING; the migrations write its value).
        CheckConstraint(f"ring_timeout >= {rules.MIN_RING}", name="ring_timeout"),
        CheckConstraint(f"hangup_after = 0 OR hangup_after >= {rules.MIN_RING}", name="hangup_after"),
        CheckConstraint("max_attempts >= 1", name="max_attempts"),
        CheckConstraint("max_concurrent >= 1", name="max_concurrent"),
        CheckConstraint("abandon_target > 0 AND abandon_target < 1", name="abandon_target"),
    )

    def __repr__(self) -> str:
        return f"<Campaign {self.name!r} {self.state}>"


class Lead(Base):
    """One number to call in one campaign."""

    __tablename__ = "leads"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE")
    )
    phone_e164: Mapped[str] = mapped_column(String(E164_LENGTH))
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    # IANA zone key; a number spanning several zones stores all, '|'-joined, sorted
    # (a toll-free number may carry dozens).
    timezone: Mapped[str] = mapped_column(Text)
    # The CSV's state/province column (not the lead's dialing state).
    region: Mapped[str | None] = mapped_column(Text)
    # The region(s) whose calling rules apply (dialer.leads.regions): ISO 3166 codes
    # ('US-FL', 'US', 'GB'), '|'-joined and sorted when several; from the CSV's
    # state column and the number. NULL: unknown, only the campaign's rules.
    rules_region: Mapped[str | None] = mapped_column(Text)
    postal_code: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=LeadState.NEW.value)
    # Higher is dialed first among leads due at the same time.
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column()
    last_disposition: Mapped[str | None] = mapped_column(String(16))
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column()
    # The CSV's extra columns, by header name.
    custom: Mapped[dict[str, Any] | None] = mapped_column()
    source_file: Mapped[str | None] = mapped_column(Text)
    source_line: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    campaign: Mapped[Campaign] = relationship()

    __table_args__ = (
        UniqueConstraint("campaign_id", "phone_e164"),
        # Expired leases, for reclaiming leads of an engine that died. Partial:
        # only leased leads are in it, so loading leads does not pay for it.
        Index(
            None,
            "lease_expires_at",
            sqlite_where=sa.text("lease_expires_at IS NOT NULL"),
            postgresql_where=sa.text("lease_expires_at IS NOT NULL"),
        ),
        CheckConstraint(_one_of("state", LeadState), name="state"),
        CheckConstraint(
            "(next_attempt_at IS NULL) = (state NOT IN ('new', 'retry'))",
            name="next_attempt_at",
        ),
        CheckConstraint(
            "last_disposition IS NULL OR " + _one_of("last_disposition", Disposition),
            name="last_disposition",
        ),
    )

    def __repr__(self) -> str:
        return f"<Lead {self.id} {self.phone_e164} {self.state}>"


# The hopper: due leads of a campaign in one time zone, in claim order
# (next_attempt_at, priority DESC). Leads loaded together share one
# next_attempt_at, so the descending priority spares sorting all of them. The
# rules region comes last: the claim's filter on it is read from the index.
Index(
    "ix_leads_hopper",
    Lead.campaign_id,
    Lead.timezone,
    Lead.next_attempt_at,
    Lead.priority.desc(),
    Lead.rules_region,
)


class CallAttempt(Base):
    """One dial: created before the Originate leaves, updated from AMI events."""

    __tablename__ = "call_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE")
    )
    phone_e164: Mapped[str] = mapped_column(String(E164_LENGTH))
    attempt_no: Mapped[int] = mapped_column(Integer)
    action_id: Mapped[str] = mapped_column(String(64), unique=True)
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)
    other_channel_id: Mapped[str | None] = mapped_column(String(64))
    engine_id: Mapped[str] = mapped_column(String(100))
    server: Mapped[str] = mapped_column(String(100))
    connection: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(16), default=AttemptState.QUEUED.value)

    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    originated_at: Mapped[dt.datetime | None] = mapped_column()
    ringing_at: Mapped[dt.datetime | None] = mapped_column()
    answered_at: Mapped[dt.datetime | None] = mapped_column()
    queue_joined_at: Mapped[dt.datetime | None] = mapped_column()
    connected_at: Mapped[dt.datetime | None] = mapped_column()
    ended_at: Mapped[dt.datetime | None] = mapped_column()

    disposition: Mapped[str | None] = mapped_column(String(16))
    cause: Mapped[int | None] = mapped_column(Integer)
    cause_txt: Mapped[str | None] = mapped_column(String(100))
    originate_reason: Mapped[int | None] = mapped_column(Integer)
    uniqueid: Mapped[str | None] = mapped_column(String(64))
    agent: Mapped[str | None] = mapped_column(String(100))
    time_to_agent: Mapped[float | None] = mapped_column(Float)
    # When the dialer asked Asterisk to hang the call up while it rang (hangup_after).
    hangup_at: Mapped[dt.datetime | None] = mapped_column()
    # Columns of this row the engine did not observe but estimated, comma-separated
    # (e.g. "ended_at" for a call whose end no engine saw and Asterisk kept no
    # record of); NULL when every value was observed.
    estimated: Mapped[str | None] = mapped_column(String(100))
    # The Message of an Originate that Asterisk answered with Response: Error
    # ("Permission denied", "Asterisk is shutting down", ...): no call was placed.
    response_message: Mapped[str | None] = mapped_column(String(255))
    # False when the attempt did not count against the lead's max_attempts: Asterisk
    # refused the Originate, or the campaign's circuit breaker took it back.
    charged: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa.true())

    __table_args__ = (
        Index(None, "lead_id"),
        Index(None, "campaign_id", "ended_at"),
        Index(None, "campaign_id", "disposition"),
        # No repeat call soon after an abandoned one (rules.ABANDONED_REST), across campaigns.
        Index(None, "phone_e164", "ended_at"),
        # In-flight attempts of one engine, reconciled on restart.
        Index(None, "engine_id", "ended_at"),
        CheckConstraint(_one_of("state", AttemptState), name="state"),
        CheckConstraint(
            "disposition IS NULL OR " + _one_of("disposition", Disposition),
            name="disposition",
        ),
    )

    def __repr__(self) -> str:
        return f"<CallAttempt {self.action_id} {self.state} {self.disposition}>"


class CallEvent(Base):
    """Append-only log of the AMI events the engine acted on."""

    __tablename__ = "call_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    attempt_id: Mapped[int | None] = mapped_column(
        ForeignKey("call_attempts.id", ondelete="CASCADE")
    )
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(64))
    # The event's headers, in order, as [[key, value], ...] or {key: value}.
    data: Mapped[Any] = mapped_column(Json)

    __table_args__ = (Index(None, "attempt_id"),)


class DncNumber(Base):
    """A number that must never be dialed."""

    __tablename__ = "dnc_numbers"

    phone_e164: Mapped[str] = mapped_column(String(E164_LENGTH), primary_key=True)
    source: Mapped[str | None] = mapped_column(Text)
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SupervisorCommand(Base):
    """A supervisor's start/pause/resume/stop, applied by the engine."""

    __tablename__ = "supervisor_commands"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE")
    )
    command: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    issued_by: Mapped[str] = mapped_column(String(255))
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[dt.datetime | None] = mapped_column()

    __table_args__ = (
        Index(None, "campaign_id", "applied_at"),
        CheckConstraint(_one_of("command", SupervisorCommandName), name="command"),
    )


class AmiConnectionStats(Base):
    """Counters per AMI connection of each engine, upserted by the engine."""

    __tablename__ = "ami_connection_stats"

    engine_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    server: Mapped[str] = mapped_column(String(100), primary_key=True)
    connection: Mapped[str] = mapped_column(String(100), primary_key=True)
    originates_sent: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[int] = mapped_column(BigInteger, default=0)
    reconnects: Mapped[int] = mapped_column(Integer, default=0)
    rate_cap: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EngineStatus(Base):
    """What each running engine is doing, written by it every second.

    ``data`` holds the live figures that exist only in the engine's memory: per
    campaign the calls ringing / waiting / connected, agents free, the pacing
    decision and dial level; per AMI connection whether it is up, whether it
    reads events, Originates sent and the rate achieved against its cap.
    ``dialer status`` reads it; a row whose ``heartbeat_at`` is old belongs to an
    engine that has stopped.
    """

    __tablename__ = "engine_status"

    engine_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column()


class LiveState(Base):
    """The live state of one campaign as one engine sees it, for consoles and pacing.

    Written by each engine for each of its campaigns when it changes and at least
    four times a second (``heartbeat_at``, real wall-clock time). ``data`` is the
    campaign's entry of ``Engine.status()`` plus the engine's AMI connections, so
    a new live figure needs no schema change. A row whose ``heartbeat_at`` is old
    belongs to an engine that has stopped.
    """

    __tablename__ = "live_state"

    engine_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(Json)


class Role(enum.StrEnum):
    """What a console user or API token may do; each role includes the ones before it."""

    VIEWER = "viewer"          # wallboard, reports, live state: read-only
    SUPERVISOR = "supervisor"  # campaign state, lead upload, do-not-call additions
    ADMIN = "admin"            # users, tokens, campaign settings


class WebUser(Base):
    """A person who logs in to the web console (``dialer web user add``)."""

    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # An Argon2id hash in PHC form ($argon2id$v=19$m=...).
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column()

    __table_args__ = (CheckConstraint(_one_of("role", Role), name="role"),)


class ApiToken(Base):
    """A bearer token for the JSON API and /metrics; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column()

    __table_args__ = (CheckConstraint(_one_of("role", Role), name="role"),)


class WebSession(Base):
    """A logged-in browser: the cookie holds a random key, the table its SHA-256."""

    __tablename__ = "web_sessions"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()

    __table_args__ = (Index(None, "user_id"),)


class AuditEntry(Base):
    """One state-changing action, from the command line, the API or the browser.

    ``actor`` is who (``web:alice``, ``token:crm``, ``cli:bob@host``), ``via``
    where it came from (cli, web, api), ``address`` the client's IP address
    (or the host, for the command line); ``before``/``after`` the values the
    action changed.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(255))
    via: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(Text)
    before: Mapped[Any] = mapped_column(Json, nullable=True)
    after: Mapped[Any] = mapped_column(Json, nullable=True)

    __table_args__ = (Index(None, "at"),)


class PacingEstimate(Base):
    """What pacing has learnt of a campaign's calls, saved so that a restarted
    engine (or one taking the campaign over) does not start dialing blind.

    ``data`` is :meth:`dialer.pacing.CallStatsEstimator.snapshot`: the recent
    attempts (answered or not, ring time), times to answer, talk and wrap-up
    times, each as an age in seconds at ``saved_at``.
    """

    __tablename__ = "pacing_estimates"

    campaign_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True)
    engine_id: Mapped[str] = mapped_column(String(100))
    saved_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]] = mapped_column(Json)


class PacingDecisionRow(Base):
    """One second of a campaign's pacing as one engine decided it: the inputs of
    its last decision in that second and the calls placed and cut during it
    (``dialer report NAME --decisions`` exports them)."""

    __tablename__ = "pacing_decisions"
    __table_args__ = (Index("ix_pacing_decisions_campaign_at", "campaign_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    campaign_id: Mapped[int] = mapped_column(BigId, ForeignKey("campaigns.id", ondelete="CASCADE"))
    engine_id: Mapped[str] = mapped_column(String(100))
    at: Mapped[dt.datetime] = mapped_column()
    mode: Mapped[str] = mapped_column(String(20))
    agents_logged_in: Mapped[int] = mapped_column(Integer)
    agents_free: Mapped[int] = mapped_column(Integer)
    agents_expected: Mapped[float] = mapped_column(Float)
    ringing: Mapped[int] = mapped_column(Integer)
    waiting: Mapped[int] = mapped_column(Integer)
    in_flight: Mapped[int] = mapped_column(Integer)
    other_engines_ringing: Mapped[int] = mapped_column(Integer)
    engines: Mapped[int] = mapped_column(Integer)
    answer_rate: Mapped[float] = mapped_column(Float)
    abandon_rate: Mapped[float] = mapped_column(Float)
    hour_abandon_rate: Mapped[float] = mapped_column(Float)
    allowed_drop: Mapped[float] = mapped_column(Float)
    dial_level: Mapped[float] = mapped_column(Float)
    calls_placed: Mapped[int] = mapped_column(Integer)
    calls_cut: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))


class RegionRuleRow(Base):
    """An operator's calling rules for one region (``dialer rules set``): they
    replace the shipped rule of that region (:data:`dialer.compliance.rules.REGION_RULES`)
    or add one. NULL bounds or cap: none of the region's own."""

    __tablename__ = "region_rules"

    region: Mapped[str] = mapped_column(String(16), primary_key=True)
    window_start: Mapped[dt.time | None] = mapped_column()
    window_end: Mapped[dt.time | None] = mapped_column()
    max_calls_24h: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        CheckConstraint("max_calls_24h IS NULL OR max_calls_24h >= 1", name="max_calls_24h"),
        CheckConstraint(
            "window_start IS NULL OR window_end IS NULL OR window_start < window_end",
            name="window",
        ),
    )
