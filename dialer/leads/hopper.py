"""The lead hopper: claiming dialable leads, atomically and under a lease.

A lead is dialable now when its campaign is running, it waits in state
``new`` or ``retry`` with ``next_attempt_at`` reached, it has attempts left,
its calling window is open in its own time zone, its number is not on the
do-not-call list, and no call to its number was abandoned in the last 72
hours. Claiming moves it to ``claimed`` with this engine's name and a lease;
starting a call moves it to ``dialing``. An engine that dies leaves leases
that expire, and :func:`reclaim_expired` hands its leads back; once its
liveness lock shows it dead (:mod:`dialer.liveness`), :func:`reclaim_owned`
does so at once.

The calling window is evaluated in Python once per distinct ``timezone`` value
of the campaign (a few dozen at most), and the claim query then reads one
index range per open zone, ``(campaign_id, timezone, next_attempt_at)``, from
its oldest due row: leads that are done, in flight or due later are never
walked past, however old the campaign. On PostgreSQL the rows are taken
``FOR UPDATE SKIP LOCKED``, so engines sharing the database never wait on or
take each other's leads; on SQLite the write transaction is the lock.

Functions take a Session; the caller owns the unit of work.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.compliance import rules
from dialer.leads.calling_hours import callable_timezones
from dialer.campaigns import calling_window
from dialer.leads.dnc import not_on_dnc_list
from dialer.models import (
    AttemptState,
    CallAttempt,
    Campaign,
    Disposition,
    Lead,
    LeadState,
)

ABANDON_QUIET_PERIOD = rules.ABANDONED_REST
WAITING = (LeadState.NEW.value, LeadState.RETRY.value)


@dataclasses.dataclass(frozen=True, slots=True)
class ClaimedLead:
    id: int
    phone_e164: str
    timezone: str
    attempts: int
    first_name: str | None
    last_name: str | None
    region: str | None
    postal_code: str | None
    priority: int
    custom: dict[str, Any] | None
    previous_state: str


_L = Lead.__table__.c
_LEAD_COLUMNS = (
    _L.id, _L.phone_e164, _L.timezone, _L.attempts, _L.first_name,
    _L.last_name, _L.region, _L.postal_code, _L.priority, _L.custom, _L.state,
)


def campaign_timezones(session: Session, campaign_id: int) -> list[str]:
    """The distinct time zone values of a campaign's waiting leads."""
    stmt = (
        sa.select(Lead.timezone)
        .where(Lead.campaign_id == campaign_id, Lead.next_attempt_at.is_not(None))
        .distinct()
    )
    return list(session.scalars(stmt))


def _recently_abandoned(now: dt.datetime) -> sa.ColumnElement[bool]:
    a = CallAttempt.__table__.c
    return sa.exists().where(
        a.phone_e164 == Lead.__table__.c.phone_e164,
        a.ended_at > now - ABANDON_QUIET_PERIOD,
        a.disposition == Disposition.DROPPED.value,
    )


def claim_leads(
    session: Session,
    campaign: Campaign,
    *,
    engine_id: str,
    now: dt.datetime,
    limit: int,
    timezones: Iterable[str],
    lease: dt.timedelta = dt.timedelta(minutes=2),
) -> list[ClaimedLead]:
    """Lease up to ``limit`` dialable leads of a running campaign, oldest due first.

    ``now`` is naive UTC; ``timezones`` are the campaign's distinct zone values
    (:func:`campaign_timezones`, which the caller may cache).
    """
    if limit <= 0 or campaign.state != "running":
        return []
    aware_now = now.replace(tzinfo=dt.timezone.utc)
    open_zones = sorted(callable_timezones(timezones, calling_window(campaign), aware_now))
    if not open_zones:
        return []
    postgres = session.get_bind().dialect.name == "postgresql"
    candidates: list[tuple[dt.datetime, int, int, tuple]] = []
    for zone in open_zones:
        stmt = (
            sa.select(*_LEAD_COLUMNS, _L.next_attempt_at)
            .where(
                _L.campaign_id == campaign.id,
                _L.timezone == zone,
                _L.next_attempt_at <= now,
                _L.attempts < campaign.max_attempts,
                not_on_dnc_list(_L.phone_e164),
                ~_recently_abandoned(now),
            )
            .order_by(_L.next_attempt_at, _L.priority.desc())
            .limit(limit)
        )
        if postgres:
            stmt = stmt.with_for_update(skip_locked=True, of=Lead.__table__)
        for row in session.execute(stmt):
            candidates.append((row.next_attempt_at, -row.priority, row.id, tuple(row[:-1])))
    chosen = heapq.nsmallest(limit, candidates)
    if not chosen:
        return []
    ids = [c[2] for c in chosen]
    leads = Lead.__table__
    claimed_ids = set(
        session.scalars(
            leads.update()
            .where(leads.c.id.in_(ids), leads.c.state.in_(WAITING))
            .values(
                state=LeadState.CLAIMED.value,
                next_attempt_at=None,
                lease_owner=engine_id,
                lease_expires_at=now + lease,
            )
            .returning(leads.c.id)
        )
    )
    return [ClaimedLead(*c[3]) for c in chosen if c[2] in claimed_ids]


def release_leads(session: Session, leads: Sequence[ClaimedLead], *, engine_id: str, now: dt.datetime) -> int:
    """Hand claimed leads that were not dialed back to the hopper, due at once."""
    released = 0
    for state in WAITING:
        ids = [lead.id for lead in leads if lead.previous_state == state]
        if not ids:
            continue
        result = session.execute(
            sa.update(Lead)
            .where(Lead.id.in_(ids), Lead.state == LeadState.CLAIMED.value, Lead.lease_owner == engine_id)
            .values(state=state, next_attempt_at=now, lease_owner=None, lease_expires_at=None)
            .execution_options(synchronize_session=False)
        )
        released += result.rowcount
    return released


def renew_leases(session: Session, *, engine_id: str, now: dt.datetime, lease: dt.timedelta) -> int:
    """Extend every lease this engine holds (claimed and dialing leads).

    ``engine_id`` is the lease owner of this run (:func:`dialer.liveness.lease_owner`),
    never just the engine's name: a restarted engine must not renew its dead
    predecessor's leases as its own, it adopts them."""
    result = session.execute(
        sa.update(Lead)
        .where(Lead.lease_owner == engine_id)
        .values(lease_expires_at=now + lease)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


@dataclasses.dataclass(frozen=True, slots=True)
class NewAttempt:
    attempt_id: int
    lead: ClaimedLead
    attempt_no: int
    action_id: str
    channel_id: str
    other_channel_id: str
    server: str
    connection: str


def start_attempts(
    session: Session,
    campaign: Campaign,
    assignments: Sequence[tuple[ClaimedLead, str, str]],
    *,
    engine_id: str,
    now: dt.datetime,
) -> list[NewAttempt]:
    """Write one call attempt per (lead, server, connection) and mark the leads
    ``dialing``; the caller commits before any Originate leaves."""
    if not assignments:
        return []
    rows = []
    for lead, server, connection in assignments:
        token = uuid.uuid4().hex
        rows.append({
            "lead_id": lead.id,
            "campaign_id": campaign.id,
            "phone_e164": lead.phone_e164,
            "attempt_no": lead.attempts + 1,
            "action_id": f"dl-{token}",
            "channel_id": f"dl-{token[:24]}-a",
            "other_channel_id": f"dl-{token[:24]}-b",
            "engine_id": engine_id,
            "server": server,
            "connection": connection,
            "state": AttemptState.QUEUED.value,
            "created_at": now,
        })
    attempts = CallAttempt.__table__
    ids = list(session.scalars(
        attempts.insert().returning(attempts.c.id, sort_by_parameter_order=True), rows
    ))
    leads = Lead.__table__
    session.execute(
        leads.update()
        .where(leads.c.id.in_([lead.id for lead, _, _ in assignments]))
        .values(state=LeadState.DIALING.value, attempts=leads.c.attempts + 1)
    )
    return [
        NewAttempt(attempt_id, lead, row["attempt_no"], row["action_id"], row["channel_id"],
                   row["other_channel_id"], server, connection)
        for attempt_id, row, (lead, server, connection) in zip(ids, rows, assignments)
    ]


def reclaim_expired(session: Session, *, now: dt.datetime) -> int:
    """Hand back leads claimed by an engine whose lease ran out (it died before
    dialing them). Leads that were being dialed are reconciled by the engine
    that can ask their Asterisk (see the engine's recovery), not here."""
    result = session.execute(
        sa.update(Lead)
        .where(
            Lead.state == LeadState.CLAIMED.value,
            Lead.lease_expires_at.is_not(None),
            Lead.lease_expires_at < now,
        )
        .values(
            state=sa.case((Lead.attempts > 0, LeadState.RETRY.value), else_=LeadState.NEW.value),
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def lease_owners(session: Session) -> set[str]:
    """Every lease owner of a claimed or dialing lead."""
    return set(session.scalars(
        sa.select(Lead.lease_owner)
        .where(Lead.lease_expires_at.is_not(None), Lead.lease_owner.is_not(None))
        .distinct()
    ))


def reclaim_owned(session: Session, owners: Iterable[str], *, now: dt.datetime) -> int:
    """Hand back leads claimed by runs known to be dead, whatever their lease
    says (see :mod:`dialer.liveness`); like :func:`reclaim_expired`."""
    owners = list(owners)
    if not owners:
        return 0
    result = session.execute(
        sa.update(Lead)
        .where(Lead.state == LeadState.CLAIMED.value, Lead.lease_owner.in_(owners))
        .values(
            state=sa.case((Lead.attempts > 0, LeadState.RETRY.value), else_=LeadState.NEW.value),
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def cancel_attempts(session: Session, attempts: Sequence[tuple[int, int]], *, now: dt.datetime) -> int:
    """Undo attempts whose Originate never left (their connection went down
    before it could be sent): the rows go, and their leads go back to the
    hopper, due at once, with the attempt not counted. ``attempts`` holds
    (attempt id, lead id) pairs."""
    if not attempts:
        return 0
    a = CallAttempt.__table__
    leads = Lead.__table__
    session.execute(
        a.delete().where(a.c.id.in_([aid for aid, _ in attempts]), a.c.originated_at.is_(None))
    )
    result = session.execute(
        leads.update()
        .where(leads.c.id.in_([lid for _, lid in attempts]), leads.c.state == LeadState.DIALING.value)
        .values(
            state=sa.case((leads.c.attempts > 1, LeadState.RETRY.value), else_=LeadState.NEW.value),
            attempts=leads.c.attempts - 1,
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    return result.rowcount


def hand_back(session: Session, lead_ids: Sequence[int], *, now: dt.datetime) -> int:
    """Hand leads whose attempt is not charged (Asterisk refused the Originate
    before any channel existed) back to the hopper, due at once, with that
    attempt not counted; the attempt rows stay, with ``charged`` false."""
    if not lead_ids:
        return 0
    leads = Lead.__table__
    result = session.execute(
        leads.update()
        .where(leads.c.id.in_(list(lead_ids)), leads.c.state == LeadState.DIALING.value)
        .values(
            state=sa.case((leads.c.attempts > 1, LeadState.RETRY.value), else_=LeadState.NEW.value),
            attempts=leads.c.attempts - 1,
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
    )
    return result.rowcount


def uncharge_attempts(session: Session, attempts: Sequence[tuple[int, int]], *, now: dt.datetime) -> int:
    """Take back ended attempts that were charged (the circuit breaker found
    them part of a run of immediate failures): each row's ``charged`` goes
    false, and its lead, if that attempt was its last and it is waiting for a
    retry, out of attempts or done, is due again at once with the attempt not
    counted. ``attempts`` holds (attempt id, lead id) pairs; returns the leads
    handed back."""
    if not attempts:
        return 0
    a = CallAttempt.__table__
    leads = Lead.__table__
    rows = session.execute(
        sa.select(a.c.id, a.c.lead_id, a.c.attempt_no)
        .where(a.c.id.in_([aid for aid, _ in attempts]), a.c.charged, a.c.ended_at.is_not(None))
    ).all()
    if not rows:
        return 0
    session.execute(a.update().where(a.c.id.in_([r.id for r in rows])).values(charged=False))
    result = session.execute(
        leads.update()
        .where(
            leads.c.id == sa.bindparam("v_lead"),
            leads.c.attempts == sa.bindparam("v_no"),
            sa.or_(*(leads.c.state == st for st in (
                LeadState.RETRY.value, LeadState.EXHAUSTED.value, LeadState.DONE.value))),
        )
        .values(
            state=sa.case((leads.c.attempts > 1, LeadState.RETRY.value), else_=LeadState.NEW.value),
            attempts=leads.c.attempts - 1,
            next_attempt_at=now,
        ),
        [{"v_lead": r.lead_id, "v_no": r.attempt_no} for r in rows],
    )
    return result.rowcount
