"""The engine's dialer alone, against the simulated Asterisk through a real
AMI pool: it places what pacing asks within the caps, hands every result on,
and places nothing for a campaign that may not dial."""

from __future__ import annotations

import pytest
import trio

from dialer.ami.pool import AMIPool
from dialer.calls.agents import AgentBoard
from dialer.calls.tracker import CallTracker, Step
from dialer.engine.database import Database
from dialer.engine.dialing import Dialer
from dialer.engine.settings import EngineClock, EngineSettings
from dialer.engine.watcher import CampaignWatcher
from dialer.sim import SimAsterisk
from tests.engine_harness import BUSINESS_HOURS, make_campaign, numbers, originates, server

pytestmark = pytest.mark.usefixtures("ami_secret")


class Outlets:
    """What the dialer hands the other parts, as it hands it."""

    def __init__(self) -> None:
        self.steps: list = []
        self.checks: list = []
        self.cancelled: list = []
        self.pauses: list = []


async def ignore(*_args) -> None:
    pass


async def start(nursery, sqlite_sessions, *, rate=2.0, burst=1, max_in_flight=500):
    """A simulator, a pool on it, the campaigns loaded, and a dialer running: (sim, dialer, outlets)."""
    sim = SimAsterisk()
    port = await nursery.start(sim.serve)
    pool = AMIPool([server(port, connections=1, rate=rate, burst=burst, max_in_flight=max_in_flight)],
                   now=trio.current_time())
    await nursery.start(pool.run, ignore, ignore)
    with trio.fail_after(30):
        while not pool.capacity():
            await pool.wait_changed()
    database = Database(sqlite_sessions, timeout=10.0, thread=False)
    clock = EngineClock(epoch=BUSINESS_HOURS)
    settings = EngineSettings(lease=30.0)
    watcher = CampaignWatcher(database, clock, settings, engine_id="e1", lease_owner="e1/run",
                              run_token="run", campaigns=None, servers=pool)
    await watcher.load()
    out = Outlets()
    dialer = Dialer(pool=pool, database=database, clock=clock, settings=settings, tracker=CallTracker(),
                    agents=AgentBoard(), runs=watcher.runs, engine_id="e1", lease_owner="e1/run",
                    apply=out.steps.extend, check=out.checks.append,
                    cancel=lambda attempt, lead: out.cancelled.append((attempt, lead)),
                    request_pause=lambda run, reason: out.pauses.append((run.id, reason)))
    nursery.start_soon(dialer.run)
    return sim, dialer, out


async def test_places_the_calls_within_the_connection_s_cap(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, phones=numbers(4), mode="unattended", queue=None, max_concurrent=10)
    async with trio.open_nursery() as nursery:
        sim, dialer, out = await start(nursery, sqlite_sessions, rate=2.0, burst=1)
        started = trio.current_time()
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    sent = [t - started for _, t, _ in originates(sim)]
    assert len(sent) == dialer.counters["originates"] == 4
    # 2 a second, a burst of one: half a second apart, the first at once.
    assert sent == [0.0, 0.5, 1.0, 1.5]
    assert [t.step for t in out.steps] == [Step.ORIGINATED] * 4
    assert out.checks == out.cancelled == out.pauses == []
    (run,) = dialer.runs.values()
    assert run.placed == 4 and len(run.calls) == 4
    assert run.pacing["mode"] == "unattended"


async def test_a_campaign_that_may_not_dial_places_nothing(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, "spring", phones=numbers(2), mode="unattended", queue=None, state="paused")
    make_campaign(sqlite_sessions, "autumn", phones=numbers(2, "+1212666"), mode="unattended", queue=None)
    async with trio.open_nursery() as nursery:
        sim, dialer, out = await start(nursery, sqlite_sessions)
        autumn = next(r for r in dialer.runs.values() if r.campaign.name == "autumn")
        autumn.breaker.tripped = True  # as after a run of calls failing at once
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    assert originates(sim) == [] and dialer.counters["originates"] == 0
    assert out.steps == out.cancelled == []


async def test_a_lead_the_channel_template_cannot_fill_is_refused_unsent(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, phones=numbers(1), mode="unattended", queue=None,
                  channel="Local/{trunk}/{digits}@carrier")
    async with trio.open_nursery() as nursery:
        sim, dialer, out = await start(nursery, sqlite_sessions)
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    assert originates(sim) == []
    (step,) = out.steps
    assert step.step is Step.ENDED and step.call.disposition == "failed"
    assert step.call.cause_txt == "channel template: channel 'Local/{trunk}/{digits}@carrier': no value for {trunk}"


async def test_draining_places_no_new_call(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, phones=numbers(3), mode="unattended", queue=None)
    async with trio.open_nursery() as nursery:
        sim, dialer, out = await start(nursery, sqlite_sessions)
        dialer.drain()
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    assert dialer.draining and originates(sim) == [] and out.steps == []
