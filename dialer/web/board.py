"""The wallboard's document: what every campaign is doing now, from the database alone.

Two reads make it. The *live* read (every ``poll`` seconds, cheap): campaign
states and the engines' ``live_state`` rows. The *figures* read (every
``figures_every`` seconds): lead progress, both abandon windows and today's
hourly counts. :class:`Wallboard` keeps the latest document, serialised once,
and wakes every subscriber when it changes; a slow subscriber skips to the
newest document instead of queueing old ones.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
import trio
from sqlalchemy.orm import Session, sessionmaker

from dialer import reports
from dialer.models import Campaign, Lead, LiveState

log = logging.getLogger("dialer.web")

# A live_state row older than this (real seconds) belongs to an engine that stopped.
STALE_AFTER = 5.0
LEFT = ("new", "retry", "claimed", "dialing")
FINISHED = ("done", "exhausted", "dnc")
# The abandon rate turns amber at this share of the campaign's target.
WARN_AT = 0.8


def _naive(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


def _sum(parts: list[dict], key: str) -> int | None:
    values = [p[key] for p in parts if isinstance(p.get(key), (int, float))]
    return sum(values) if values else None


def read_live(session: Session, *, wall_now: float, stale_after: float = STALE_AFTER) -> dict[str, Any]:
    """Campaign states and the engines' live rows, merged per campaign."""
    campaigns = list(session.execute(
        sa.select(Campaign.id, Campaign.name, Campaign.state, Campaign.mode, Campaign.abandon_target,
                  Campaign.max_concurrent).order_by(Campaign.name)))
    rows = list(session.execute(sa.select(LiveState.engine_id, LiveState.campaign_id, LiveState.heartbeat_at,
                                          LiveState.data)))
    engines: dict[str, dict[str, Any]] = {}
    by_campaign: dict[int, list[dict]] = {}
    connections: dict[str, list[dict]] = {}
    clock = None
    for engine_id, campaign_id, heartbeat_at, data in rows:
        data = data or {}
        wall = data.get("wall_time")
        if not isinstance(wall, (int, float)):
            wall = heartbeat_at.replace(tzinfo=dt.UTC).timestamp()
        e = engines.setdefault(engine_id, {"engine_id": engine_id, "heartbeat": wall, "campaigns": []})
        e["heartbeat"] = max(e["heartbeat"], wall)
        if data.get("health") and wall >= e.get("_health_wall", 0):
            e["_health_wall"], e["health"] = wall, data["health"]
        fresh = wall_now - wall < stale_after
        e["campaigns"].append(data.get("campaign"))
        if not fresh:
            continue
        by_campaign.setdefault(campaign_id, []).append(data)
        if len(connections.get(engine_id, [])) == 0 or wall >= e.get("_conn_wall", 0):
            e["_conn_wall"] = wall
            connections[engine_id] = data.get("connections") or []
        if isinstance(data.get("clock"), (int, float)):
            speed = data.get("speed") or 1
            c = data["clock"] + (wall_now - wall) * speed
            clock = c if clock is None else max(clock, c)
    out_campaigns = []
    for cid, name, state, mode, target, max_concurrent in campaigns:
        parts = by_campaign.get(cid, [])
        live = None
        if parts:
            agents: dict[str, Any] = {"free": 0, "talking": 0, "wrapup": 0, "paused": 0, "agents": []}
            have_agents = False
            for p in parts:
                board = p.get("agents")
                if not board:
                    continue
                have_agents = True
                for k in ("free", "talking", "wrapup", "paused"):
                    agents[k] += board.get(k, 0)
                speed = p.get("speed") or 1
                for a in board.get("agents", []):
                    since = a.get("since")
                    since_wall = (p["wall_time"] - (p["clock"] - since) / speed
                                  if isinstance(since, (int, float)) and isinstance(p.get("clock"), (int, float))
                                  else None)
                    agents["agents"].append({"name": a.get("name"), "state": a.get("state"),
                                             "since": None if since_wall is None else round(since_wall, 1)})
            waiting, connected = _sum(parts, "waiting"), _sum(parts, "connected")
            levels = [p["dial_level"] for p in parts if isinstance(p.get("dial_level"), (int, float))]
            live = {
                "engines": sorted(p.get("engine_id") for p in parts),
                "in_flight": _sum(parts, "in_flight"), "ringing": _sum(parts, "ringing"),
                "waiting": waiting, "talking": connected,
                "answered": None if waiting is None and connected is None else (waiting or 0) + (connected or 0),
                "agents_logged_in": _sum(parts, "agents_logged_in"), "agents_free": _sum(parts, "agents_free"),
                "agents": agents if have_agents else None,
                "dial_level": max(levels) if levels else None,
                "decision": _sum(parts, "decision"),
                "reasons": sorted({p["reason"] for p in parts if p.get("reason")}),
                "placed": _sum(parts, "placed"),
            }
        out_campaigns.append({"id": cid, "name": name, "state": state, "mode": mode, "target": target,
                              "max_concurrent": max_concurrent, "live": live})
    conns = []
    for engine_id in sorted(connections):
        for c in connections[engine_id]:
            conns.append({"engine": engine_id, "server": c.get("server"), "connection": c.get("connection"),
                          "up": bool(c.get("up")), "reader": bool(c.get("reader")), "rate_1s": c.get("rate_1s"),
                          "rate_cap": c.get("rate_cap"), "in_flight": c.get("in_flight"),
                          "originates_sent": c.get("originates_sent"), "failures": c.get("failures"),
                          "reconnects": c.get("reconnects")})
    engine_list = []
    health: dict[str, Any] = {}
    for e in sorted(engines.values(), key=lambda e: e["engine_id"]):
        engine_list.append({"engine_id": e["engine_id"], "heartbeat": round(e["heartbeat"], 3),
                            "live": wall_now - e["heartbeat"] < stale_after,
                            "campaigns": sorted(c for c in e["campaigns"] if c)})
        health[e["engine_id"]] = e.get("health")
    return {"campaigns": out_campaigns, "engines": engine_list, "connections": conns, "clock": clock,
            "health": health}


def read_figures(session: Session, campaigns: list[dict], now: dt.datetime) -> dict[int, dict[str, Any]]:
    """Per campaign id: lead progress, abandon windows against target, today's hours."""
    ids = [c["id"] for c in campaigns]
    if not ids:
        return {}
    counts: dict[int, dict[str, int]] = {}
    for cid, state, n in session.execute(
        sa.select(Lead.campaign_id, Lead.state, sa.func.count()).where(Lead.campaign_id.in_(ids))
        .group_by(Lead.campaign_id, Lead.state)
    ):
        counts.setdefault(cid, {})[state] = n
    dialed = dict(session.execute(
        sa.select(Lead.campaign_id, sa.func.count()).where(Lead.campaign_id.in_(ids), Lead.attempts > 0)
        .group_by(Lead.campaign_id)).all())
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    out = {}
    rows = {c.id: c for c in session.scalars(sa.select(Campaign).where(Campaign.id.in_(ids)))}
    for cid in ids:
        c = rows.get(cid)
        if c is None:
            continue
        by_state = counts.get(cid, {})
        ab = reports.abandon_figures(session, c, now)
        worst = max((ab[k]["rate"] or 0.0) for k in ("rolling_30d", "last_24h"))
        level = "ok" if worst < WARN_AT * c.abandon_target else "warn" if worst <= c.abandon_target else "over"
        out[cid] = {
            "leads": {"total": sum(by_state.values()), "left": sum(by_state.get(s, 0) for s in LEFT),
                      "dialed": dialed.get(cid, 0), "finished": sum(by_state.get(s, 0) for s in FINISHED),
                      "by_state": by_state},
            "abandon": {"rolling_30d": ab["rolling_30d"], "last_24h": ab["last_24h"],
                        "target": c.abandon_target, "level": level},
            "hours": reports.hours_since(session, c, today),
        }
    return out


def compose(live: dict[str, Any], figures: dict[int, dict[str, Any]]) -> dict[str, Any]:
    campaigns = []
    for c in live["campaigns"]:
        f = figures.get(c["id"], {})
        campaigns.append({**c, "leads": f.get("leads"), "abandon": f.get("abandon"), "hours": f.get("hours", [])})
    return {"format": "dialer-wallboard/1", "campaigns": campaigns, "engines": live["engines"],
            "connections": live["connections"]}


class Wallboard:
    """The latest wallboard document and its subscribers."""

    def __init__(self, sessions: sessionmaker, *, poll: float = 0.1, figures_every: float = 1.0,
                 stale_after: float = STALE_AFTER) -> None:
        self.sessions = sessions
        self.poll, self.figures_every, self.stale_after = poll, figures_every, stale_after
        self.doc: dict[str, Any] | None = None
        self.text = ""              # the document as JSON, with "at" and "version"
        self.version = 0
        self.changed_at = 0.0       # wall time of the last change
        self._changed = trio.Event()
        self._figures: dict[int, dict[str, Any]] = {}
        self._live: dict[str, Any] | None = None   # the latest live read (its "clock": the engines')
        self._ready = trio.Event()
        self.subscribers = 0
        self.reads = 0

    def _read_live(self) -> dict[str, Any]:
        with self.sessions.begin() as s:
            return read_live(s, wall_now=time.time(), stale_after=self.stale_after)

    def _read_figures(self, campaigns: list[dict], clock: float | None) -> dict[int, dict[str, Any]]:
        now = _naive(clock if clock is not None else time.time())
        with self.sessions.begin() as s:
            return read_figures(s, campaigns, now)

    def _publish(self) -> bool:
        if self._live is None:
            return False
        doc = compose(self._live, self._figures)
        if doc == self.doc:
            return False
        self.doc = doc
        self.version += 1
        self.changed_at = time.time()
        self.text = json.dumps({**doc, "at": round(self.changed_at, 3), "version": self.version},
                               separators=(",", ":"))
        self._changed.set()
        self._changed = trio.Event()
        self._ready.set()
        return True

    async def refresh(self, *, figures: bool = True) -> bool:
        """Read the database once (the live rows, and with ``figures`` the
        counts too); True when the document changed."""
        self._live = await trio.to_thread.run_sync(self._read_live)
        self.reads += 1
        if figures:
            self._figures = await trio.to_thread.run_sync(
                self._read_figures, self._live["campaigns"], self._live["clock"])
        return self._publish()

    async def _figures_loop(self) -> None:
        while True:
            started = time.monotonic()
            if self._live is not None:
                try:
                    self._figures = await trio.to_thread.run_sync(
                        self._read_figures, self._live["campaigns"], self._live["clock"])
                    self._publish()
                except Exception as exc:
                    log.warning("wallboard: reading the figures failed: %s", exc)
            await trio.sleep(max(self.poll, self.figures_every - (time.monotonic() - started)))

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Keep the document current until cancelled: the live rows every
        ``poll`` seconds, the counts (slower to read) every ``figures_every``
        in a task of their own, so that they never hold the live figures up.
        A failed read is logged and tried again."""
        try:
            await self.refresh()
        except Exception as exc:  # the database restarting, a lock: try again next tick
            log.warning("wallboard: reading the database failed: %s", exc)
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._figures_loop)
            while True:
                await trio.sleep(self.poll)
                try:
                    self._live = await trio.to_thread.run_sync(self._read_live)
                    self.reads += 1
                    self._publish()
                except Exception as exc:
                    log.warning("wallboard: reading the live state failed: %s", exc)

    @property
    def health(self) -> dict[str, Any]:
        """Per engine: its event lag and database times (not part of the document:
        they change all the time and would wake every wallboard)."""
        return {} if self._live is None else self._live["health"]

    @property
    def clock(self) -> float | None:
        """The running engines' clock (epoch seconds) at the last read, None without one."""
        return None if self._live is None else self._live["clock"]

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def updates(self, *, keepalive: float = 15.0) -> AsyncIterator[str | None]:
        """The document now, then each new version; None every ``keepalive`` seconds of quiet."""
        await self.wait_ready()
        seen = self.version
        self.subscribers += 1
        try:
            yield self.text
            while True:
                changed = self._changed
                if self.version == seen:
                    with trio.move_on_after(keepalive):
                        await changed.wait()
                if self.version == seen:
                    yield None
                    continue
                seen = self.version
                yield self.text
        finally:
            self.subscribers -= 1
