"""What the campaigns are doing now, as plain data (for ``dialer status`` and anyone else).

Live figures (calls ringing, waiting for an agent, connected; agents free; dial
level; Originates per second per connection) come from the ``engine_status``
rows of engines whose heartbeat is recent; the rest (state, leads left, calls
in flight, abandon rate) from the database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer import reports
from dialer.campaigns import get_campaign, list_campaigns
from dialer.models import CallAttempt, CampaignState, EngineStatus, Lead, SupervisorCommand

# An engine whose last heartbeat is older than this is taken as stopped.
LIVE_WITHIN = 5.0
LEFT_STATES = ("new", "retry", "claimed", "dialing")

# The columns of ``dialer status --format csv``: one row per campaign.
CSV_COLUMNS = (
    "name", "state", "mode", "leads_left", "leads_due", "calls_in_flight", "abandon_target",
    "abandon_30d", "abandon_24h", "engines", "ringing", "waiting", "connected",
    "agents_logged_in", "agents_free", "dial_level",
)


def _live(row: EngineStatus, wall_now: float, now: dt.datetime) -> bool:
    wall = (row.data or {}).get("wall_time")
    if isinstance(wall, (int, float)):
        return abs(wall_now - wall) < LIVE_WITHIN
    return abs((now - row.heartbeat_at).total_seconds()) < LIVE_WITHIN


def collect(session: Session, name: str | None, *, now: dt.datetime, wall_now: float) -> dict[str, Any]:
    """The status of one campaign (or all) as plain data."""
    campaigns = [get_campaign(session, name)] if name else list_campaigns(session)
    engines = [r for r in session.scalars(sa.select(EngineStatus)) if _live(r, wall_now, now)]
    ids = [c.id for c in campaigns]
    left: dict[int, int] = {}
    due: dict[int, int] = {}
    if ids:
        for cid, n, n_due in session.execute(
            sa.select(Lead.campaign_id, sa.func.count(),
                      sa.func.count().filter(Lead.next_attempt_at <= now))
            .where(Lead.campaign_id.in_(ids), Lead.state.in_(LEFT_STATES))
            .group_by(Lead.campaign_id)
        ):
            left[cid], due[cid] = n, n_due
    in_flight = dict(session.execute(
        sa.select(CallAttempt.campaign_id, sa.func.count())
        .where(CallAttempt.campaign_id.in_(ids), CallAttempt.ended_at.is_(None))
        .group_by(CallAttempt.campaign_id)
    ).all()) if ids else {}
    out = []
    for c in campaigns:
        paused = None
        if c.state == CampaignState.PAUSED.value:
            # Who paused it and why (a supervisor, or an engine's circuit breaker).
            command = session.scalars(
                sa.select(SupervisorCommand)
                .where(SupervisorCommand.campaign_id == c.id, SupervisorCommand.command == "pause")
                .order_by(SupervisorCommand.id.desc()).limit(1)
            ).first()
            if command is not None:
                paused = {"by": command.issued_by, "at": command.issued_at, "reason": command.reason}
        abandon = reports.abandon_figures(session, c, now)
        item: dict[str, Any] = {
            "name": c.name, "state": c.state, "mode": c.mode, "leads_left": left.get(c.id, 0),
            "leads_due": due.get(c.id, 0), "calls_in_flight": in_flight.get(c.id, 0),
            "abandon_target": c.abandon_target, "abandon_30d": abandon["rolling_30d"]["rate"],
            "abandon_24h": abandon["last_24h"]["rate"], "live": None, "paused": paused,
        }
        parts = [e.data["campaigns"][c.name] for e in engines
                 if c.name in (e.data or {}).get("campaigns", {})]
        if parts:
            def total(key: str) -> int | None:
                values = [p.get(key) for p in parts if p.get(key) is not None]
                return sum(values) if values else None

            levels = [p["dial_level"] for p in parts if p.get("dial_level") is not None]
            item["live"] = {
                "engines": len(parts), "ringing": total("ringing"), "waiting": total("waiting"),
                "connected": total("connected"), "agents_logged_in": total("agents_logged_in"),
                "agents_free": total("agents_free"), "dial_level": max(levels) if levels else None,
                # each engine's last pacing decision: its inputs and result
                "pacing": {e.engine_id: e.data["campaigns"][c.name].get("pacing") for e in engines
                           if c.name in (e.data or {}).get("campaigns", {})},
            }
        out.append(item)
    connections = []
    for e in sorted(engines, key=lambda e: e.engine_id):
        for conn in (e.data or {}).get("connections", []):
            connections.append({"engine": e.engine_id, **conn})
    return {"campaigns": out, "engines": [e.engine_id for e in engines], "connections": connections,
            "at": now}


def _v(value: Any) -> str:
    return "-" if value is None else str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _pacing_line(engine_id: str, p: dict[str, Any]) -> str:
    others = f" (+{p['other_engines_ringing']} of {p['engines'] - 1} other engines)" if p.get("engines", 1) > 1 else ""
    share = f" of {p['total_calls']} for the campaign" if p.get("engines", 1) > 1 else ""
    return (f"  pacing ({engine_id}): free {p['agents_free']}, expected {p['agents_expected']:.1f};"
            f" ringing {p['ringing']}{others}, waiting {p['waiting']}; answer rate {_pct(p['answer_rate'])};"
            f" abandon {_pct(p['abandon_rate'])}, last hour {_pct(p['hour_abandon_rate'])};"
            f" allowed drop {_pct(p['allowed_drop'])} -> {p['calls']} calls{share}, {p['cut']} cut ({p['reason']})\n")


def render(data: dict[str, Any], out: TextIO) -> None:
    at = data["at"].strftime("%Y-%m-%d %H:%M:%S")
    engines = data["engines"]
    if engines:
        out.write(f"{at} UTC, {len(engines)} engine{'s' if len(engines) > 1 else ''} running:"
                  f" {', '.join(engines)}\n")
    else:
        out.write(f"{at} UTC, no engine running\n")
    if not data["campaigns"]:
        out.write("no campaigns (create one with 'dialer campaign create')\n")
    for c in data["campaigns"]:
        out.write(f"campaign {c['name']}: {c['state']} ({c['mode']}), {c['leads_left']} leads left"
                  f" ({c['leads_due']} due), {c['calls_in_flight']} calls in flight;"
                  f" abandon {_pct(c['abandon_30d'])} 30 d, {_pct(c['abandon_24h'])} 24 h"
                  f" (target {_pct(c['abandon_target'])})\n")
        paused = c.get("paused")
        if paused:
            why = f": {paused['reason']}" if paused["reason"] else ""
            out.write(f"  paused by {paused['by']} at {paused['at']:%Y-%m-%d %H:%M:%S} UTC{why}\n")
        live = c["live"]
        if live:
            out.write(f"  ringing {_v(live['ringing'])}, waiting for an agent {_v(live['waiting'])},"
                      f" connected {_v(live['connected'])}; agents free {_v(live['agents_free'])}"
                      f" of {_v(live['agents_logged_in'])}; dial level {_v(live['dial_level'])}\n")
            for engine_id, p in sorted((live.get("pacing") or {}).items()):
                if p:
                    out.write(_pacing_line(engine_id, p))
    for x in data["connections"]:
        cap = x.get("rate_cap")
        up = "up" if x.get("up") else "DOWN"
        if x.get("up") and x.get("ready") is False:
            up += " (not taking calls: Asterisk is stopping or not fully booted)"
        reader = ", events" if x.get("reader") else ""
        out.write(f"  connection {x.get('server')}/{x.get('connection')}: {up}{reader},"
                  f" {_v(x.get('rate_1s'))}/s of {_v(cap)}/s, {_v(x.get('in_flight'))} in flight,"
                  f" {_v(x.get('originates_sent'))} sent, {_v(x.get('failures'))} failures,"
                  f" {_v(x.get('reconnects'))} reconnects\n")




def as_json(data: dict[str, Any]) -> dict[str, Any]:
    """:func:`collect`'s data with its time as ISO 8601 UTC text."""
    return {**data, "at": data["at"].isoformat(timespec="milliseconds") + "Z"}


def csv_rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for c in data["campaigns"]:
        merged = {**(c["live"] or {}), **c}
        rows.append([merged.get(k) for k in CSV_COLUMNS])
    return rows
