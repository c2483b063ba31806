"""The engine's reconciler alone, against the simulated Asterisk through a
real AMI pool: calls Asterisk does not list are ended, at the time the
evidence allows and flagged as estimated, but not before their Originate
could still have run."""

from __future__ import annotations

import pytest
import trio

from dialer.ami.pool import AMIPool
from dialer.calls.agents import AgentBoard
from dialer.calls.tracker import CallTracker, Step, TrackedCall
from dialer.engine.reconciler import Reconciler
from dialer.engine.settings import EngineClock, EngineSettings
from dialer.sim import SimAsterisk
from tests.engine_harness import BUSINESS_HOURS, server

pytestmark = pytest.mark.usefixtures("ami_secret")

RING = 60  # the ring timeout assumed for a campaign the engine does not know


async def ignore(*_args) -> None:
    pass


class Running:
    def __init__(self, reconciler: Reconciler, tracker: CallTracker, clock: EngineClock) -> None:
        self.reconciler, self.tracker, self.clock = reconciler, tracker, clock
        self.steps: list = []     # (trio time, transition) as the reconciler applied them
        self.unsent: set = set()
        self.gaps = 0


async def start(nursery, stale_after=60.0) -> Running:
    sim = SimAsterisk()
    port = await nursery.start(sim.serve)
    pool = AMIPool([server(port, connections=1)], now=trio.current_time())
    await nursery.start(pool.run, ignore, ignore)
    with trio.fail_after(30):
        while not pool.has_reader("pbx1"):
            await pool.wait_changed()
    clock = EngineClock(epoch=BUSINESS_HOURS)
    tracker = CallTracker()
    running: Running

    def apply(transitions):
        running.steps += [(trio.current_time(), t) for t in transitions]

    def on_gap():
        running.gaps += 1

    reconciler = Reconciler(pool=pool, clock=clock, settings=EngineSettings(stale_after=stale_after),
                            tracker=tracker, agents=AgentBoard(), runs={}, apply=apply,
                            is_unsent=lambda call: call in running.unsent, on_gap=on_gap)
    running = Running(reconciler, tracker, clock)
    nursery.start_soon(reconciler.run)
    return running


def call(n: int, at: float, **fields) -> TrackedCall:
    return TrackedCall(attempt_id=n, campaign_id=1, lead_id=n, action_id=f"a{n}", channel_id=f"c{n}",
                       other_channel_id=f"o{n}", server="pbx1", connection="pbx1#1", queued_at=at,
                       originated_at=at, **fields)


async def test_a_call_not_listed_is_asked_about_again_until_it_has_settled(clock):
    async with trio.open_nursery() as nursery:
        r = await start(nursery)
        t0 = trio.current_time()
        lost = call(1, r.clock.now())
        r.tracker.add(lost)
        r.reconciler.check(lost)       # sent, but no answer to it
        await trio.sleep(RING + 60 - 1)
        assert r.steps == []           # its Originate could still run
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    ((at, step),) = r.steps
    assert step.call is lost and step.step is Step.ENDED and at - t0 >= RING + 60
    # Never seen ringing or answered: it ended by its ring timeout, an estimate.
    assert lost.ended_at == lost.originated_at + RING and "ended_at" in lost.estimated
    assert lost.disposition == "unknown"
    assert r.reconciler.counters == {"adopted": 0, "reconciled": 2}  # asked twice


async def test_adopted_calls_asterisk_no_longer_has_end_at_once(clock):
    async with trio.open_nursery() as nursery:
        r = await start(nursery)
        start_at = r.clock.now() - 300
        r.reconciler.adopt([dict(
            attempt_id=7, campaign_id=1, lead_id=7, action_id="a7", channel_id="c7", other_channel_id="o7",
            server="pbx1", connection="pbx1#2", queued_at=start_at, originated_at=start_at,
            response_seen=True, reason=0)])
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    ((_, step),) = r.steps
    adopted = step.call
    assert adopted.attempt_id == 7 and adopted.connection == "pbx1#2"
    assert r.tracker.get("a7") is None  # ended: no longer followed
    assert adopted.ended_at == start_at + RING
    assert r.reconciler.counters == {"adopted": 1, "reconciled": 1}


async def test_after_a_gap_only_calls_whose_originate_went_out_are_asked_about(clock):
    async with trio.open_nursery() as nursery:
        r = await start(nursery)
        now = r.clock.now()
        sent, waiting = call(1, now - 300, response_seen=True), call(2, now - 300)
        r.tracker.add(sent)
        r.tracker.add(waiting)
        r.unsent.add(waiting)
        await r.reconciler.on_gap("pbx1")
        assert r.gaps == 1             # the watcher looks for dead engines' calls soon
        await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert [step.call for _, step in r.steps] == [sent]
    assert not waiting.ended
