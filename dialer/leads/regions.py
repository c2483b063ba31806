"""Calling rules per region, on top of each campaign's own, the stricter winning.

A region is an ISO 3166 code: a country (``US``) or a subdivision (``US-FL``).
Each lead carries the region(s) its rules come from (``leads.rules_region``,
set when it is loaded: see :func:`dialer.leads.phones.lead_region`). The rules
of a region are the shipped ones (:data:`dialer.compliance.rules.REGION_RULES`, each
with its source), replaced or added to by the operators' rows of
``region_rules`` (``dialer rules set``). The database, not the configuration
file, holds them: every engine dialing the same numbers must apply the same
rules, as with the do-not-call list, a change acts at the next claim without
a restart, and it is audited.

A lead in ``US-FL`` is under the rules of ``US-FL`` and of ``US``; a lead whose
region value names several (``US-FL|US-GA``: its data says Georgia, its
number is a Florida one) is under all of them. What applies is the strictest
of the campaign and every such rule, bound by bound: the latest opening, the
earliest closing, the smallest cap on calls to the number per 24 hours
(counted over every campaign).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.compliance import rules
from dialer.leads.calling_hours import CallingWindow
from dialer.errors import UserError
from dialer.models import RegionRuleRow
from dialer.compliance.rules import RegionRule

__all__ = [
    "AppliedRules",
    "RuleError",
    "applied_rules",
    "campaign_rules",
    "check_region",
    "describe_rules",
    "load_rules",
    "parse_rule",
    "set_rule",
    "unset_rule",
]

_REGION = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
RULE_KEYS = ("window", "max_calls_24h", "source")


class RuleError(UserError):
    """A region rule is refused; the message names the region and the field."""


@dataclass(frozen=True)
class AppliedRules:
    """What applies to one lead region in one campaign.

    ``window`` is None when the bounds leave no time to call at all;
    ``start_from``, ``end_from`` and ``cap_from`` name what set each: ``campaign``
    or a region.
    """

    window: CallingWindow | None
    max_calls_24h: int | None
    start_from: str
    end_from: str
    cap_from: str | None


def check_region(text: str) -> str:
    """A region code, upper-cased: ``US``, ``US-FL``, ``CA-ON``; RuleError otherwise."""
    code = text.strip().upper()
    if not _REGION.fullmatch(code):
        raise RuleError(f"region {text!r}: not an ISO 3166 code (a country such as US, or a"
                        " subdivision such as US-FL)")
    return code


def load_rules(session: Session) -> dict[str, RegionRule]:
    """The rules in force: the shipped ones, with the operators' rows over them."""
    table = dict(rules.REGION_RULES)
    t = RegionRuleRow.__table__.c
    for region, start, end, cap, source in session.execute(
        sa.select(t.region, t.window_start, t.window_end, t.max_calls_24h, t.source)
    ):
        table[region] = RegionRule(region, start, end, cap, source or "operator")
    return table


def _rules_of(region_value: str | None, table: Mapping[str, RegionRule]) -> list[RegionRule]:
    if not region_value:
        return []
    found: dict[str, RegionRule] = {}
    for part in region_value.split("|"):
        country = part.split("-")[0]
        for code in (country, part):
            rule = table.get(code)
            if rule is not None:
                found[code] = rule
    return [found[k] for k in sorted(found)]


def applied_rules(window: CallingWindow, region_value: str | None,
                  table: Mapping[str, RegionRule]) -> AppliedRules:
    """The campaign's window narrowed by the rules of a lead region, and its cap."""
    start, start_from = window.start, "campaign"
    end, end_from = window.end, "campaign"
    cap: int | None = None
    cap_from: str | None = None
    for rule in _rules_of(region_value, table):
        if rule.start is not None and rule.start > start:
            start, start_from = rule.start, rule.region
        if rule.end is not None and rule.end < end:
            end, end_from = rule.end, rule.region
        if rule.max_calls_24h is not None and (cap is None or rule.max_calls_24h < cap):
            cap, cap_from = rule.max_calls_24h, rule.region
    narrowed: CallingWindow | None
    if start >= end:
        narrowed = None
    elif (start, end) == (window.start, window.end):
        narrowed = window
    else:
        narrowed = CallingWindow(start, end, window.days, window.holidays)
    return AppliedRules(narrowed, cap, start_from, end_from, cap_from)


# --- Operators' rules -------------------------------------------------------------


def _time(region: str, text: str) -> dt.time:
    m = _TIME.fullmatch(text.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise RuleError(f"rules {region}: window: {text.strip()!r} is not a time of day (HH:MM)")
    return dt.time(int(m.group(1)), int(m.group(2)))


def parse_rule(region: str, items: list[str], base: RegionRule | None = None) -> RegionRule:
    """A region's rule from ``key=value`` items (``window=08:00-20:00``,
    ``max_calls_24h=3``, ``source=TEXT``; ``none`` clears a bound), over
    ``base`` (the rule in force). RuleError names the region and the field."""
    region = check_region(region)
    values: dict[str, Any] = {}
    if base is not None:
        values = {"start": base.start, "end": base.end, "max_calls_24h": base.max_calls_24h,
                  "source": base.source}
    if not items:
        raise RuleError(f"rules {region}: nothing to set (window=HH:MM-HH:MM, max_calls_24h=N,"
                        " source=TEXT)")
    seen = set()
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in RULE_KEYS:
            raise RuleError(f"rules {region}: {item!r}: expected one of"
                            f" {', '.join(k + '=...' for k in RULE_KEYS)}")
        if key in seen:
            raise RuleError(f"rules {region}: {key}: given twice")
        seen.add(key)
        text = text.strip()
        if key == "window":
            if text.lower() == "none":
                values["start"] = values["end"] = None
                continue
            first, dash, last = text.partition("-")
            if not dash:
                raise RuleError(f"rules {region}: window: {text!r} is not HH:MM-HH:MM"
                                " (e.g. 08:00-20:00) or none")
            start, end = _time(region, first), _time(region, last)
            if not start < end:
                raise RuleError(f"rules {region}: window: start {start:%H:%M} must be before"
                                f" end {end:%H:%M}")
            values["start"], values["end"] = start, end
        elif key == "max_calls_24h":
            if text.lower() == "none":
                values["max_calls_24h"] = None
                continue
            try:
                cap = int(text)
            except ValueError:
                cap = 0
            if not 1 <= cap <= 1000:
                raise RuleError(f"rules {region}: max_calls_24h: {text!r} is not a whole number"
                                " from 1 to 1000 (or none)")
            values["max_calls_24h"] = cap
        else:
            if any(ord(c) < 32 for c in text) or len(text) > 500:
                raise RuleError(f"rules {region}: source: must be one line of at most 500 characters")
            values["source"] = text
    return RegionRule(region, values.get("start"), values.get("end"),
                      values.get("max_calls_24h"), values.get("source") or "")


def _describe(rule: RegionRule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    return {
        "window": (f"{rule.start:%H:%M}-{rule.end:%H:%M}" if rule.start and rule.end
                   else "none"),
        "max_calls_24h": rule.max_calls_24h,
        "source": rule.source,
    }


def set_rule(session: Session, region: str, items: list[str], *, actor=None) -> RegionRule:
    """Write an operator's rule for a region (over the one in force), audited."""
    region = check_region(region)
    before = load_rules(session).get(region)
    rule = parse_rule(region, items, before)
    row = session.get(RegionRuleRow, region, with_for_update=True)
    if row is None:
        row = RegionRuleRow(region=region)
        session.add(row)
    row.window_start, row.window_end = rule.start, rule.end
    row.max_calls_24h = rule.max_calls_24h
    row.source = rule.source or None
    if actor is not None:
        from dialer import audit

        audit.record(session, actor, "rules.set", region, before=_describe(before),
                     after=_describe(rule))
    session.flush()
    return rule


def unset_rule(session: Session, region: str, *, actor=None) -> bool:
    """Remove an operator's rule: the shipped one, if any, applies again."""
    region = check_region(region)
    row = session.get(RegionRuleRow, region, with_for_update=True)
    if row is None:
        return False
    before = load_rules(session).get(region)
    session.delete(row)
    if actor is not None:
        from dialer import audit

        audit.record(session, actor, "rules.unset", region, before=_describe(before),
                     after=_describe(rules.REGION_RULES.get(region)))
    session.flush()
    return True


def describe_rules(session: Session) -> list[dict[str, Any]]:
    """Every region's rules in force, with where each comes from, by region."""
    overridden = set(session.scalars(sa.select(RegionRuleRow.region)))
    rows = []
    for region, rule in sorted(load_rules(session).items()):
        shipped = rules.REGION_RULES.get(region)
        origin = ("operator (replaces shipped)" if region in overridden and shipped is not None
                  else "operator" if region in overridden else "shipped")
        rows.append({"region": region, **_describe(rule), "origin": origin})
    return rows


def campaign_rules(session: Session, campaign) -> list[dict[str, Any]]:
    """What applies to each rules region among a campaign's leads, with the
    number of its leads (all states) and what set each bound."""
    from dialer.campaigns import calling_window
    from dialer.models import Lead

    window = calling_window(campaign)
    table = load_rules(session)
    counts = session.execute(
        sa.select(Lead.rules_region, sa.func.count())
        .where(Lead.campaign_id == campaign.id)
        .group_by(Lead.rules_region)
    ).all()
    out = []
    for region, count in sorted(counts, key=lambda r: r[0] or ""):
        applied = applied_rules(window, region, table)
        w = applied.window
        out.append({
            "region": region or "unknown",
            "leads": count,
            "window": f"{w.start:%H:%M}-{w.end:%H:%M}" if w is not None else "never",
            "window_from": (applied.start_from if applied.start_from == applied.end_from
                            else f"start {applied.start_from}, end {applied.end_from}"),
            "max_calls_24h": applied.max_calls_24h,
            "cap_from": applied.cap_from,
        })
    return out
