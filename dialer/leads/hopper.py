"""The lead hopper: claiming dialable leads, atomically and under a lease.

A lead is dialable now when its campaign is running, it waits in state
``new`` or ``retry`` with ``next_attempt_at`` reached, it has attempts left,
its calling window is open in its own time zone, its number is not on the
do-not-call list, and no call to its number was abandoned in the last 72
hours. The calling window is the campaign's narrowed by the rules of the
lead's region (:mod:`dialer.leads.regions`), and where a region caps the calls to
a number per 24 hours, a lead whose number had that many calls (in any
campaign) is not claimed: its next attempt moves to when the oldest of those
calls is 24 hours old, so later claims do not step over it again. Claiming moves it to ``claimed`` with this engine's name and a lease;
starting a call moves it to ``dialing``. An engine that dies leaves leases
that expire, and :func:`reclaim_expired` hands its leads back; once its
liveness lock shows it dead (:mod:`dialer.liveness`), :func:`reclaim_owned`
does so at once.

The calling window is evaluated in Python once per distinct ``(timezone,
rules_region)`` pair of the campaign (a few dozen at most), and the claim
query then reads one index range per open zone, ``(campaign_id, timezone,
next_attempt_at)``, from its oldest due row, keeping the rows of the regions
open there (the region is the index's last column, so that filter needs no
table row): leads that are done, in flight or due later are never
walked past, however old the campaign. Only in the hour a region is closed
while its zone is open (20:00-21:00 for the 08:00-20:00 states) are that
region's due leads stepped over, from the index. On PostgreSQL the rows are taken
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
from dialer.leads import regions
from dialer.leads.calling_hours import CallingWindow, is_callable
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


def campaign_timezones(session: Session, campaign_id: int) -> list[tuple[str, str | None]]:
    """The distinct (time zone, rules region) pairs of a campaign's waiting leads
    (what :func:`claim_leads` takes as ``timezones``)."""
    stmt = (
        sa.select(Lead.timezone, Lead.rules_region)
        .where(Lead.campaign_id == campaign_id, Lead.next_attempt_at.is_not(None))
        .distinct()
    )
    return [(zone, region) for zone, region in session.execute(stmt)]


@dataclasses.dataclass(slots=True)
class _OpenZone:
    """The leads of one zone that may be called now: by rules region, its cap."""

    zone: str
    regions: dict[str | None, int | None] = dataclasses.field(default_factory=dict)


def _open_zones(session: Session, campaign: Campaign, groups: Iterable, now: dt.datetime) -> list[_OpenZone]:
    """For each zone, the rules regions whose narrowed window is open at ``now``."""
    window = calling_window(campaign)
    table = regions.load_rules(session)
    applied: dict[str | None, regions.AppliedRules] = {}
    callable_now: dict[tuple[str, CallingWindow], bool] = {}
    zones: dict[str, _OpenZone] = {}
    for group in groups:
        zone, region = (group, None) if isinstance(group, str) else group
        if not zone:
            continue
        rules_here = applied.get(region)
        if rules_here is None:
            rules_here = applied[region] = regions.applied_rules(window, region, table)
        if rules_here.window is None:
            continue
        key = (zone, rules_here.window)
        is_open = callable_now.get(key)
        if is_open is None:
            try:
                is_open = is_callable(zone, rules_here.window, now)
            except ValueError:
                is_open = False  # an unknown zone is never callable (the loader reports them)
            callable_now[key] = is_open
        if is_open:
            zones.setdefault(zone, _OpenZone(zone)).regions[region] = rules_here.max_calls_24h
    return [zones[z] for z in sorted(zones)]


def _recently_abandoned(now: dt.datetime) -> sa.ColumnElement[bool]:
    a = CallAttempt.__table__.c
    return sa.exists().where(
        a.phone_e164 == Lead.__table__.c.phone_e164,
        a.ended_at > now - ABANDON_QUIET_PERIOD,
        a.disposition == Disposition.DROPPED.value,
    )


def _recent_calls(now: dt.datetime, capped: list[str]) -> tuple[sa.ColumnElement, sa.ColumnElement]:
    """For a lead of a capped region: the calls placed to its number over the
    cap period, in any campaign (an Originate Asterisk refused placed none),
    and the oldest one's time; not looked up for other leads."""
    a = CallAttempt.__table__.c
    where = (
        a.phone_e164 == _L.phone_e164,
        a.created_at > now - rules.CALL_CAP_PERIOD,
        a.response_message.is_(None),
    )
    is_capped = _L.rules_region.in_(capped)
    return (
        sa.case((is_capped, sa.select(sa.func.count()).where(*where).scalar_subquery()), else_=0),
        sa.case((is_capped, sa.select(sa.func.min(a.created_at)).where(*where).scalar_subquery())),
    )


def claim_leads(
    session: Session,
    campaign: Campaign,
    *,
    engine_id: str,
    now: dt.datetime,
    limit: int,
    timezones: Iterable[tuple[str, str | None] | str],
    lease: dt.timedelta = dt.timedelta(minutes=2),
) -> list[ClaimedLead]:
    """Lease up to ``limit`` dialable leads of a running campaign, oldest due first.

    ``now`` is naive UTC; ``timezones`` are the campaign's distinct (zone,
    rules region) pairs (:func:`campaign_timezones`, which the caller may
    cache); a bare zone stands for the leads of that zone with no region.
    """
    if limit <= 0 or campaign.state != "running":
        return []
    open_zones = _open_zones(session, campaign, timezones, now.replace(tzinfo=dt.timezone.utc))
    if not open_zones:
        return []
    postgres = session.get_bind().dialect.name == "postgresql"
    candidates: list[tuple[dt.datetime, int, int, tuple]] = []
    deferred: list[dict[str, Any]] = []
    width = len(_LEAD_COLUMNS)
    for open_zone in open_zones:
        allowed = open_zone.regions
        capped = sorted(r for r, cap in allowed.items() if cap is not None)
        named = [r for r in allowed if r is not None]
        # Only the regions known open: a region value not yet in ``timezones``
        # waits for the caller's next refresh rather than escaping its rules.
        region_ok = _L.rules_region.in_(named) if named else sa.false()
        if None in allowed:
            region_ok = sa.or_(_L.rules_region.is_(None), region_ok)
        columns: tuple = (*_LEAD_COLUMNS, _L.next_attempt_at)
        if capped:
            columns += (_L.rules_region, *_recent_calls(now, capped))
        stmt = (
            sa.select(*columns)
            .where(
                _L.campaign_id == campaign.id,
                _L.timezone == open_zone.zone,
                _L.next_attempt_at <= now,
                region_ok,
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
            if capped:
                cap = allowed.get(row[width + 1])
                if cap is not None and row[width + 2] >= cap:
                    # Capped: due again when the oldest call of the period is that old.
                    deferred.append({"v_id": row.id, "v_due": row[width + 3] + rules.CALL_CAP_PERIOD})
                    continue
            candidates.append((row.next_attempt_at, -row.priority, row.id, tuple(row[:width])))
    if deferred:
        leads = Lead.__table__
        session.execute(
            leads.update()
            .where(leads.c.id == sa.bindparam("v_id"), leads.c.state.in_(WAITING))
            .values(next_attempt_at=sa.bindparam("v_due")),
            deferred,
        )
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


def _hand_back(session: Session, *where: Any, now: dt.datetime) -> int:
    """Claimed leads matching ``where`` back to the hopper, due at once."""
    result = session.execute(
        sa.update(Lead)
        .where(Lead.state == LeadState.CLAIMED.value, *where)
        .values(
            state=sa.case((Lead.attempts > 0, LeadState.RETRY.value), else_=LeadState.NEW.value),
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def reclaim_expired(session: Session, *, now: dt.datetime) -> int:
    """Hand back leads claimed by an engine whose lease ran out (it died before
    dialing them). Leads that were being dialed are reconciled by the engine
    that can ask their Asterisk (see the engine's recovery), not here."""
    return _hand_back(session, Lead.lease_expires_at.is_not(None), Lead.lease_expires_at < now, now=now)


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
    return _hand_back(session, Lead.lease_owner.in_(owners), now=now)


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
