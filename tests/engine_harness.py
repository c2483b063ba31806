"""Running the engine against the simulated Asterisk inside one trio run."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections import deque

import sqlalchemy as sa
import trio

from dialer import db
from dialer.campaigns import control, create_campaign
from dialer.config import AMIServerConfig
from dialer.engine import Engine, EngineSettings
from dialer.calls.tracker import CallTracker, TrackedCall
from dialer.leads import hopper
from dialer.models import Campaign, Lead
from dialer.sim import SimAsterisk

SECRET_ENV = "DIALER_TEST_AMI_SECRET"
# A Wednesday at 16:00 UTC: inside the calling window in every US zone but Hawaii.
BUSINESS_HOURS = dt.datetime(2026, 11, 25, 16, 0, tzinfo=dt.UTC).timestamp()


def business_zone(now: dt.datetime | None = None) -> str:
    """A fixed-offset IANA zone where it is about noon right now, for tests whose
    engines run on the real clock: their leads are inside the calling window
    whatever the time of day the tests run."""
    now = now or dt.datetime.now(dt.UTC)
    offset = 12 - now.hour  # -11 .. 12
    if offset == 0:
        return "Etc/GMT"
    # POSIX-style names: Etc/GMT-5 is five hours ahead of UTC.
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


def server(port: int, *, name="pbx1", connections=2, rate=50.0, burst=5, max_in_flight=500):
    return AMIServerConfig(
        name=name, host="127.0.0.1", port=port, username="dialer", secret_env=SECRET_ENV,
        connections=connections, originate_rate=rate, burst=burst, max_in_flight=max_in_flight,
    )


def numbers(count: int, prefix: str = "+1212555") -> list[str]:
    """Valid New York numbers whose last digits run 0..9 in turn."""
    return [f"{prefix}{1000 + i:04d}" for i in range(count)]


def make_campaign(sessions, name="spring", phones=(), *, state="running",
                  tz="America/New_York", **settings):
    settings.setdefault("channel", "Local/{digits}@carrier")
    settings.setdefault("context", "dialer-connect")
    settings.setdefault("queue", "agents")
    settings.setdefault("max_attempts", 1)
    with sessions.begin() as s:
        c = create_campaign(s, name, **settings)
        c.state = state
        s.flush()
        s.add_all(
            Lead(campaign_id=c.id, phone_e164=p, timezone=tz, state="new",
                 next_attempt_at=dt.datetime(2026, 1, 1))
            for p in phones
        )
    return c


def originates(sim: SimAsterisk) -> list[tuple[int, float, object]]:
    """(connection id, trio time, message) of every Originate the sim received."""
    out = []
    for conn, items in sim.received.items():
        out += [(conn, t, m) for t, m in items if m.name == "Originate"]
    return sorted(out, key=lambda x: x[1])


def max_in_window(times, width=1.0) -> int:
    best, window = 0, deque()
    for t in sorted(times):
        window.append(t)
        while window[0] + width <= t:
            window.popleft()
        best = max(best, len(window))
    return best


def new_engine(sessions, servers, **kwargs) -> Engine:
    settings = kwargs.pop("settings", None) or EngineSettings(lease=30.0)
    return Engine(sessions, servers, settings=settings, db_thread=False, **kwargs)


def lead_dispositions(sessions) -> dict[str, tuple[str, str | None]]:
    with sessions.begin() as s:
        return {l.phone_e164: (l.state, l.last_disposition) for l in s.scalars(sa.select(Lead))}


__all__ = [
    "BUSINESS_HOURS", "SECRET_ENV", "server", "numbers", "make_campaign", "originates",
    "max_in_window", "new_engine", "lead_dispositions", "control", "db", "trio",
    "start_calls", "lock", "start_sim", "run_scenario",
]


async def start_sim(nursery, **kwargs) -> tuple[SimAsterisk, int]:
    """A simulated Asterisk serving on a free loopback port in ``nursery``: (sim, port)."""
    sim = SimAsterisk(**kwargs)
    port = await nursery.start(sim.serve)
    return sim, port


async def run_scenario(sessions, text: str, **kwargs) -> tuple[SimAsterisk, Engine]:
    """An engine (``new_engine``'s, at BUSINESS_HOURS, ``kwargs`` added) dialing every
    running campaign to the end against a simulated Asterisk playing the scenario
    ``text``: (the simulator, the engine)."""
    from dialer.sim.scenario import parse_scenario

    async with trio.open_nursery() as nursery:
        sim, port = await start_sim(nursery, scenario=parse_scenario(text))
        engine = new_engine(sessions, [server(port)], until_done=True, epoch=BUSINESS_HOURS, **kwargs)
        with trio.fail_after(7200):
            await engine.run()
        nursery.cancel_scope.cancel()
    return sim, engine


def start_calls(sessions, count: int) -> tuple[CallTracker, list[TrackedCall]]:
    """``count`` attempts of an unattended campaign started by engine e1 at
    BUSINESS_HOURS, and a call tracker following them (for the engine's parts alone)."""
    now = dt.datetime.fromtimestamp(BUSINESS_HOURS, dt.UTC).replace(tzinfo=None)
    make_campaign(sessions, phones=numbers(count), mode="unattended", queue=None)
    with sessions.begin() as s:
        c = s.scalars(sa.select(Campaign)).one()
        leads = hopper.claim_leads(s, c, engine_id="e1", now=now, limit=count,
                                   timezones=hopper.campaign_timezones(s, c.id))
        attempts = hopper.start_attempts(s, c, [(lead, "pbx1", "pbx1#1") for lead in leads],
                                         engine_id="e1", now=now)
    tracker = CallTracker()
    calls = []
    for a in attempts:
        call = TrackedCall(attempt_id=a.attempt_id, campaign_id=c.id, lead_id=a.lead.id, action_id=a.action_id,
                           channel_id=a.channel_id, other_channel_id=a.other_channel_id, server="pbx1",
                           connection="pbx1#1", unattended=True, queued_at=BUSINESS_HOURS)
        tracker.add(call)
        calls.append(call)
    return tracker, calls


def lock(url: str) -> sqlite3.Connection:
    """Hold the write lock of the SQLite database at ``url`` (BEGIN IMMEDIATE) until closed."""
    blocker = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker
