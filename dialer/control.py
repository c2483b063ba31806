"""Supervisor commands: start, pause, resume and stop a campaign from any shell.

A command changes the campaign's state in the database at once and is
recorded with who issued it, when and why. Engines poll campaign states
(every half second) and mark each command applied when they have seen it.
``stop`` moves a campaign to ``stopping``: engines place no new calls for it,
follow the calls in flight to their end, then mark it ``stopped``. With no
call in flight it is ``stopped`` at once.
"""

from __future__ import annotations

import datetime as dt
import getpass
import socket

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.campaigns import get_campaign
from dialer.errors import UserError
from dialer.models import CallAttempt, Campaign, CampaignState, SupervisorCommand

# command -> (states it applies to, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start": (frozenset({"stopped", "done", "stopping"}), CampaignState.RUNNING.value),
    "pause": (frozenset({"running"}), CampaignState.PAUSED.value),
    "resume": (frozenset({"paused"}), CampaignState.RUNNING.value),
    "stop": (frozenset({"running", "paused", "done"}), CampaignState.STOPPING.value),
}


def whoami() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def calls_in_flight(session: Session, campaign_id: int) -> int:
    return session.scalar(
        sa.select(sa.func.count())
        .select_from(CallAttempt)
        .where(CallAttempt.campaign_id == campaign_id, CallAttempt.ended_at.is_(None))
    ) or 0


def issue(
    session: Session,
    name: str,
    command: str,
    *,
    reason: str | None = None,
    issued_by: str | None = None,
    now: dt.datetime,
) -> Campaign:
    """Apply a supervisor command to campaign ``name`` and record it."""
    if command not in TRANSITIONS:
        raise UserError(f"unknown command {command!r}")
    if reason is not None and any(ord(c) < 32 for c in reason):
        raise UserError("--reason: control characters are not allowed")
    campaign = get_campaign(session, name, for_update=True)
    allowed, target = TRANSITIONS[command]
    if campaign.state not in allowed:
        raise UserError(f"campaign {name!r} is {campaign.state}: cannot {command} it")
    if command == "stop" and calls_in_flight(session, campaign.id) == 0:
        target = CampaignState.STOPPED.value
    campaign.state = target
    campaign.updated_at = now
    session.add(SupervisorCommand(
        campaign_id=campaign.id, command=command, reason=reason,
        issued_by=issued_by or whoami(), issued_at=now,
    ))
    session.flush()
    return campaign
