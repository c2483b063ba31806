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

from dialer import audit
from dialer.campaigns import get_campaign, list_campaigns
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
    actor: audit.Actor | None = None,
) -> Campaign:
    """Apply a supervisor command to campaign ``name`` and record it (and in the
    audit log, as ``actor``: by default the person at this shell)."""
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
    before = campaign.state
    campaign.state = target
    campaign.updated_at = now
    actor = actor or audit.cli_actor()
    session.add(SupervisorCommand(
        campaign_id=campaign.id, command=command, reason=reason,
        issued_by=issued_by or (whoami() if actor.via == "cli" else actor.name), issued_at=now,
    ))
    audit.record(session, actor, f"campaign.{command}", campaign.name,
                 before={"state": before}, after={"state": target, "reason": reason}, now=now)
    session.flush()
    return campaign


def stop_all(
    session: Session,
    *,
    reason: str | None = None,
    now: dt.datetime,
    actor: audit.Actor | None = None,
) -> list[Campaign]:
    """The emergency stop: stop every running, paused or finished campaign at once.

    Returns the campaigns it stopped (those already stopped or stopping are
    left as they are). Engines act on it within their poll interval, as on
    ``stop``: no new call leaves, the calls in flight are followed to their end.
    """
    stoppable = TRANSITIONS["stop"][0]
    stopped = []
    for campaign in list_campaigns(session):
        if campaign.state in stoppable:
            stopped.append(issue(session, campaign.name, "stop", reason=reason, now=now, actor=actor))
    return stopped
