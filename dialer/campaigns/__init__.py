"""Campaigns: their settings, their rows, the supervisor's commands and the engines' live state.

``settings`` is the one table of campaign settings (parse, check, format,
defaults) and the channel template; ``store`` creates, finds, changes and
describes campaign rows; ``control`` is the supervisor's start, pause, resume
and stop; ``live`` is what each engine publishes per campaign for consoles
and pacing. The names below are importable from ``dialer.campaigns``
directly.

May import: dialer.errors, dialer.models, dialer.db, dialer.audit,
dialer.compliance, dialer.leads.calling_hours. Nothing that dials (AMI, the
engine, pacing, calls) or shows (reports, consoles).
"""

from dialer.campaigns.settings import (
    ABANDONED_REDIAL_DELAY,
    MAX_ABANDON_TARGET,
    MIN_RING_TIMEOUT,
    SETTINGS,
    Setting,
    SettingError,
    campaign_settings,
    check_setting,
    format_setting,
    parse_assignments,
    parse_setting,
    render_channel,
)
from dialer.campaigns.store import (
    calling_window,
    check_campaign_name,
    create_campaign,
    describe,
    get_campaign,
    lead_counts,
    list_campaigns,
    set_campaign_settings,
)

__all__ = [
    "ABANDONED_REDIAL_DELAY",
    "MAX_ABANDON_TARGET",
    "MIN_RING_TIMEOUT",
    "SETTINGS",
    "Setting",
    "SettingError",
    "calling_window",
    "campaign_settings",
    "check_campaign_name",
    "check_setting",
    "create_campaign",
    "describe",
    "format_setting",
    "get_campaign",
    "lead_counts",
    "list_campaigns",
    "parse_assignments",
    "parse_setting",
    "render_channel",
    "set_campaign_settings",
]
