"""Campaign rows: create, find, list, change settings, describe.

Functions take a Session; the caller owns the unit of work
(``with sessions.begin() as session: ...``).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer import audit
from dialer.campaigns.settings import (
    SETTINGS,
    apply_settings,
    campaign_settings,
    check_combination,
    check_setting,
    format_setting,
)
from dialer.errors import UserError
from dialer.leads.calling_hours import CallingWindow
from dialer.models import Campaign, CampaignState, Lead

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_campaign_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(
            f"campaign name {name!r}: use letters, digits and _ . - (starting with a letter"
            " or digit, at most 100)"
        )
    return name


def create_campaign(session: Session, name: str, **settings: Any) -> Campaign:
    """Add a campaign (state ``stopped``) with defaults for the settings not given.

    Values may be typed (``ring_timeout=30``) or text (``ring_timeout="30s"``).
    """
    check_campaign_name(name)
    values = {n: s.default for n, s in SETTINGS.items()}
    for key, value in settings.items():
        values[key] = check_setting(key, value)
    check_combination(values)
    if session.scalar(sa.select(Campaign.id).where(Campaign.name == name)) is not None:
        raise UserError(f"campaign {name!r} already exists")
    campaign = Campaign(name=name, state=CampaignState.STOPPED.value)
    apply_settings(campaign, {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v)
                      for k, v in values.items()})
    session.add(campaign)
    session.flush()
    return campaign


def get_campaign(session: Session, name: str, *, for_update: bool = False) -> Campaign:
    """The campaign called ``name``; UserError when there is none."""
    stmt = sa.select(Campaign).where(Campaign.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    campaign = session.scalar(stmt)
    if campaign is None:
        raise UserError(f"campaign {name!r}: no such campaign (see 'dialer campaign list')")
    return campaign


def list_campaigns(session: Session) -> list[Campaign]:
    return list(session.scalars(sa.select(Campaign).order_by(Campaign.name)))


def set_campaign_settings(session: Session, campaign: Campaign | str, *, actor=None, **settings: Any) -> Campaign:
    """Change some settings of a campaign; nothing changes if any value is refused.

    With ``actor`` (a :class:`dialer.audit.Actor`) the change is written to the
    audit log with the values before and after.
    """
    if isinstance(campaign, str):
        campaign = get_campaign(session, campaign, for_update=True)
    values = campaign_settings(campaign)
    before = {k: format_setting(k, values[k]) for k in settings if k in values}
    for key, value in settings.items():
        values[key] = check_setting(key, value)
    check_combination(values)
    apply_settings(campaign, {k: values[k] for k in settings})
    if actor is not None:
        audit.record(session, actor, "campaign.settings", campaign.name, before=before,
                     after={k: format_setting(k, values[k]) for k in settings})
    session.flush()
    return campaign


def lead_counts(session: Session, campaign: Campaign) -> dict[str, int]:
    """Number of leads of a campaign in each lead state (states with none omitted)."""
    rows = session.execute(
        sa.select(Lead.state, sa.func.count())
        .where(Lead.campaign_id == campaign.id)
        .group_by(Lead.state)
    )
    return {state: count for state, count in rows}


def describe(session: Session, campaign: Campaign) -> dict[str, Any]:
    """A campaign as plain data: name, state, times, settings as text, leads by state."""
    counts = lead_counts(session, campaign)
    return {
        "name": campaign.name,
        "state": campaign.state,
        "created_at": campaign.created_at.isoformat(sep=" ", timespec="seconds") + "Z",
        "updated_at": campaign.updated_at.isoformat(sep=" ", timespec="seconds") + "Z",
        "settings": {k: format_setting(k, v) for k, v in campaign_settings(campaign).items()},
        "leads": {"total": sum(counts.values()), **counts},
    }


def calling_window(campaign: Campaign):
    """The campaign's calling hours as a :class:`dialer.leads.calling_hours.CallingWindow`."""
    return CallingWindow(
        start=campaign.calling_window_start,
        end=campaign.calling_window_end,
        days=frozenset(campaign.calling_days),
        holidays=frozenset(dt.date.fromisoformat(d) for d in campaign.holidays),
    )
