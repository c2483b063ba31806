"""Writing what the call tracker saw back to the database.

:func:`record` takes a batch of lifecycle transitions and applies them in one
unit of work: the attempts' step timestamps and final disposition, the call
events log, and, for calls that ended, their lead's next state under the
campaign's retry rules (:func:`next_lead_state`). Steps only ever fill empty
columns, so replaying a batch changes nothing. An attempt that is not
``charged`` (Asterisk refused its Originate before any channel existed, or the
campaign's circuit breaker took it back) hands its lead back due at once, with
the attempt not counted (:func:`dialer.leads.hopper.hand_back`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.calls.tracker import Step, TrackedCall, Transition
from dialer.campaigns import ABANDONED_REDIAL_DELAY
from dialer.leads.hopper import hand_back
from dialer.models import AttemptState, CallAttempt, CallEvent, Disposition, Lead, LeadState

STEP_COLUMN = {
    Step.ORIGINATED: "originated_at",
    Step.RINGING: "ringing_at",
    Step.ANSWERED: "answered_at",
    Step.QUEUE_JOINED: "queue_joined_at",
    Step.CONNECTED: "connected_at",
    Step.ENDED: "ended_at",
}
STEP_STATE = {
    Step.ORIGINATED: AttemptState.ORIGINATED,
    Step.RINGING: AttemptState.RINGING,
    Step.ANSWERED: AttemptState.ANSWERED,
    Step.QUEUE_JOINED: AttemptState.ANSWERED,
    Step.CONNECTED: AttemptState.CONNECTED,
    Step.ENDED: AttemptState.ENDED,
}
_STATE_ORDER = {s: i for i, s in enumerate(AttemptState)}
_FINAL = frozenset({Disposition.CONNECTED.value, Disposition.INVALID_NUMBER.value})


@dataclasses.dataclass(frozen=True, slots=True)
class RetryRules:
    max_attempts: int
    retry_delays: Mapping[str, int]


def next_lead_state(
    disposition: str, attempts: int, rules: RetryRules, ended_at: dt.datetime
) -> tuple[str, dt.datetime | None]:
    """A lead's state and next attempt time after an attempt ended.

    Connected and invalid numbers are done; a disposition with no retry delay
    is done; a lead out of attempts is exhausted; otherwise it is retried
    after its disposition's delay, and never sooner than 72 hours after a
    dropped (abandoned) call.
    """
    if disposition in _FINAL:
        return LeadState.DONE.value, None
    delay = rules.retry_delays.get(disposition)
    if delay is None:
        return LeadState.DONE.value, None
    if attempts >= rules.max_attempts:
        return LeadState.EXHAUSTED.value, None
    if disposition == Disposition.DROPPED.value:
        delay = max(delay, ABANDONED_REDIAL_DELAY)
    return LeadState.RETRY.value, ended_at + dt.timedelta(seconds=delay)


def to_datetime(epoch: float) -> dt.datetime:
    """Epoch seconds as the naive UTC datetime the database stores."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


_ATTEMPT_FIELDS = (
    "originated_at", "ringing_at", "answered_at", "queue_joined_at", "connected_at",
    "ended_at", "disposition", "cause", "cause_txt", "originate_reason", "uniqueid",
    "agent", "time_to_agent", "hangup_at", "response_message",
)
# Overwritten rather than filled once: the set of estimated columns only grows.
_LATEST_FIELDS = ("estimated",)


@functools.cache
def _attempt_update() -> sa.Update:
    table = CallAttempt.__table__
    values: dict[str, Any] = {
        name: sa.func.coalesce(table.c[name], sa.bindparam(f"v_{name}"))
        for name in _ATTEMPT_FIELDS
    }
    for name in _LATEST_FIELDS:
        values[name] = sa.func.coalesce(sa.bindparam(f"v_{name}"), table.c[name])
    values["state"] = sa.bindparam("v_state")
    values["charged"] = sa.and_(table.c.charged, sa.bindparam("v_charged", type_=sa.Boolean()))
    return table.update().where(table.c.id == sa.bindparam("v_id")).values(values)


_CALL_EVENTS = CallEvent.__table__


@dataclasses.dataclass(slots=True)
class LoggedEvent:
    attempt_id: int
    at: float
    name: str
    headers: list[tuple[str, str]]


def record(
    session: Session,
    transitions: Sequence[Transition],
    *,
    rules: Mapping[int, RetryRules],
    events: Iterable[LoggedEvent] = (),
) -> list[TrackedCall]:
    """Apply a batch of transitions; returns the calls that ended in it."""
    latest: dict[int, TrackedCall] = {}
    states: dict[int, AttemptState] = {}
    for t in transitions:
        attempt_id = t.call.attempt_id
        latest[attempt_id] = t.call
        state = STEP_STATE[t.step]
        if attempt_id not in states or _STATE_ORDER[state] > _STATE_ORDER[states[attempt_id]]:
            states[attempt_id] = state
    if not latest:
        return []
    params = []
    for attempt_id, call in latest.items():
        ended = call.ended_at is not None and states[attempt_id] is AttemptState.ENDED
        row = {
            "v_id": attempt_id,
            "v_state": states[attempt_id].value,
            "v_originated_at": _dt(call.originated_at),
            "v_ringing_at": _dt(call.ringing_at),
            "v_answered_at": _dt(call.answered_at),
            "v_queue_joined_at": _dt(call.queue_joined_at),
            "v_connected_at": _dt(call.connected_at),
            "v_ended_at": _dt(call.ended_at) if ended else None,
            "v_disposition": call.disposition if ended else None,
            "v_cause": call.cause,
            "v_cause_txt": (call.cause_txt or None) and call.cause_txt[:100],
            "v_originate_reason": call.reason,
            "v_uniqueid": call.uniqueid,
            "v_agent": call.agent,
            "v_time_to_agent": call.time_to_agent,
            "v_hangup_at": _dt(call.hangup_at),
            "v_estimated": ",".join(sorted(call.estimated)) or None,
            "v_response_message": (call.response_message or None) and call.response_message[:255],
            "v_charged": call.charged,
        }
        params.append(row)
    session.execute(_attempt_update(), params)

    # The header pairs go as they are: JSON writes a tuple as a list.
    logged = [
        {"attempt_id": e.attempt_id, "received_at": to_datetime(e.at), "event": e.name[:64],
         "data": e.headers}
        for e in events
    ]
    if logged:
        session.execute(_CALL_EVENTS.insert(), logged)

    ended_calls = [
        call for attempt_id, call in latest.items()
        if states[attempt_id] is AttemptState.ENDED and call.ended_at is not None
    ]
    _finish_leads(session, ended_calls, rules)
    return ended_calls


def _dt(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else to_datetime(epoch)


def _finish_leads(session: Session, calls: Sequence[TrackedCall], rules: Mapping[int, RetryRules]) -> None:
    if not calls:
        return
    handed_back = [c for c in calls if not c.charged]
    if handed_back:
        hand_back(session, [c.lead_id for c in handed_back], now=to_datetime(max(c.ended_at for c in handed_back)))
    calls = [c for c in calls if c.charged]
    if not calls:
        return
    attempts = dict(
        session.execute(
            sa.select(Lead.id, Lead.attempts).where(Lead.id.in_([c.lead_id for c in calls]))
        ).all()
    )
    params = []
    for call in calls:
        if call.lead_id not in attempts:
            continue
        state, next_at = next_lead_state(
            call.disposition or Disposition.UNKNOWN.value,
            attempts[call.lead_id],
            rules[call.campaign_id],
            to_datetime(call.ended_at),
        )
        params.append({
            "v_id": call.lead_id, "v_state": state, "v_next": next_at,
            "v_disp": call.disposition,
        })
    if not params:
        return
    table = Lead.__table__
    session.execute(
        table.update()
        .where(table.c.id == sa.bindparam("v_id"), table.c.state == LeadState.DIALING.value)
        .values(
            state=sa.bindparam("v_state"),
            next_attempt_at=sa.bindparam("v_next"),
            last_disposition=sa.bindparam("v_disp"),
            lease_owner=None,
            lease_expires_at=None,
        ),
        params,
    )
