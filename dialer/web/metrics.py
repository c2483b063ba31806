"""Prometheus metrics at ``/metrics``, from the live state and the database.

Nothing is counted in the console process itself: the figures are read when
Prometheus scrapes (engines' counters from their ``live_state`` rows, calls
by disposition from ``call_attempts``), so any number of consoles report the
same values and a restarted console loses nothing.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from sqlalchemy.orm import Session

from dialer.models import CallAttempt, Campaign


class _Collector:
    def __init__(self, session: Session, doc: dict[str, Any] | None,
                 health: dict[str, Any] | None = None) -> None:
        self.session, self.doc = session, doc or {"campaigns": [], "connections": [], "engines": []}
        self.health = health or {}

    def collect(self):
        doc = self.doc
        labels = ["engine", "server", "connection"]
        sent = CounterMetricFamily("dialer_originates_sent", "Originates sent, per AMI connection", labels=labels)
        refused = CounterMetricFamily("dialer_originates_refused",
                                      "Originates refused or failed at once, per AMI connection", labels=labels)
        up = GaugeMetricFamily("dialer_connection_up", "1 when the AMI connection is logged in", labels=labels)
        cap = GaugeMetricFamily("dialer_connection_rate_cap", "Originates per second allowed", labels=labels)
        rate = GaugeMetricFamily("dialer_connection_originate_rate", "Originates sent in the last second",
                                 labels=labels)
        for c in doc["connections"]:
            key = [c["engine"], c["server"] or "", c["connection"] or ""]
            sent.add_metric(key, c.get("originates_sent") or 0)
            refused.add_metric(key, c.get("failures") or 0)
            up.add_metric(key, 1 if c.get("up") else 0)
            if c.get("rate_cap") is not None:
                cap.add_metric(key, c["rate_cap"])
            if c.get("rate_1s") is not None:
                rate.add_metric(key, c["rate_1s"])
        yield from (sent, refused, up, cap, rate)

        calls = CounterMetricFamily("dialer_calls", "Ended calls by campaign and disposition",
                                    labels=["campaign", "disposition"])
        for name, disposition, n in self.session.execute(
            sa.select(Campaign.name, CallAttempt.disposition, sa.func.count())
            .join(Campaign, Campaign.id == CallAttempt.campaign_id)
            .where(CallAttempt.disposition.is_not(None))
            .group_by(Campaign.name, CallAttempt.disposition)
        ):
            calls.add_metric([name, disposition], n)
        yield calls

        in_flight = GaugeMetricFamily("dialer_calls_in_flight", "Calls in flight", labels=["campaign"])
        ringing = GaugeMetricFamily("dialer_calls_ringing", "Calls ringing", labels=["campaign"])
        waiting = GaugeMetricFamily("dialer_calls_waiting", "Answered calls waiting for an agent",
                                    labels=["campaign"])
        agents = GaugeMetricFamily("dialer_agents", "Agents by state", labels=["campaign", "state"])
        abandon = GaugeMetricFamily("dialer_abandon_rate", "Dropped / answered calls", labels=["campaign", "window"])
        target = GaugeMetricFamily("dialer_abandon_target", "The campaign's abandon target", labels=["campaign"])
        running = GaugeMetricFamily("dialer_campaign_state", "1 for the campaign's current state",
                                    labels=["campaign", "state"])
        for c in doc["campaigns"]:
            running.add_metric([c["name"], c["state"]], 1)
            target.add_metric([c["name"]], c["target"])
            live = c.get("live") or {}
            in_flight.add_metric([c["name"]], live.get("in_flight") or 0)
            ringing.add_metric([c["name"]], live.get("ringing") or 0)
            waiting.add_metric([c["name"]], live.get("waiting") or 0)
            for state in ("free", "talking", "wrapup", "paused"):
                if live.get("agents"):
                    agents.add_metric([c["name"], state], live["agents"][state])
            for key, window in (("rolling_30d", "30d"), ("last_24h", "24h")):
                rate_value = ((c.get("abandon") or {}).get(key) or {}).get("rate")
                if rate_value is not None:
                    abandon.add_metric([c["name"], window], rate_value)
        yield from (in_flight, ringing, waiting, agents, abandon, target, running)

        age = GaugeMetricFamily("dialer_engine_report_age_seconds",
                                "Seconds since the engine last wrote its live state", labels=["engine"])
        now = time.time()
        for e in doc["engines"]:
            age.add_metric([e["engine_id"]], round(now - e["heartbeat"], 3))
        yield age

        lag = GaugeMetricFamily("dialer_event_lag_seconds",
                                "AMI events: now minus Asterisk's Timestamp, over the engine's recent samples",
                                labels=["engine", "stat"])
        db_unit = GaugeMetricFamily("dialer_db_unit_seconds",
                                    "The engine's database units of work (mostly writes), recent samples",
                                    labels=["engine", "stat"])
        for engine_id, h in sorted(self.health.items()):
            for family, key in ((lag, "event_lag"), (db_unit, "db_unit")):
                figures = (h or {}).get(key) or {}
                for stat in ("median", "max"):
                    if figures.get(stat) is not None:
                        family.add_metric([engine_id, stat], figures[stat])
        yield lag
        yield db_unit


def render(session: Session, doc: dict[str, Any] | None, health: dict[str, Any] | None = None
           ) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(session, doc, health))
    return generate_latest(registry), CONTENT_TYPE_LATEST
