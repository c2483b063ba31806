"""A stalled Asterisk (it stops reading and answering) under trio's mock clock:
the Ping deadline notices it, a connection whose Originate waits a second for
its answer gets no more, and nothing is sent twice."""

import pytest
import sqlalchemy as sa
import trio
import trio.testing

from dialer.engine import Engine, EngineSettings
from dialer.models import CallAttempt, Lead
from dialer.sim import SimAsterisk
from tests.engine_harness import BUSINESS_HOURS, make_campaign, numbers, originates, server


pytestmark = pytest.mark.usefixtures("ami_secret")  # the simulator's AMI password (conftest.py)


async def test_a_stall_is_noticed_and_nothing_is_sent_twice(clock, sqlite_sessions):
    phones = numbers(120)
    make_campaign(sqlite_sessions, phones=phones, mode="unattended", queue=None, max_concurrent=100)
    settings = EngineSettings(lease=60.0, ping_interval=2.0, ping_timeout=2.0, stale_after=5.0)
    async with trio.open_nursery() as nursery:
        sim = SimAsterisk(scenario=None)
        port = await nursery.start(sim.serve)
        engine = Engine(sqlite_sessions, [server(port, connections=1, rate=5.0, burst=1)], settings=settings,
                        db_thread=False, epoch=BUSINESS_HOURS, until_done=True)
        done = trio.Event()

        async def run():
            await engine.run()
            done.set()

        nursery.start_soon(run)
        await trio.sleep(5.0)
        before = engine.counters["originates"]
        sim.stall(10.0)  # the open connection,
        sim.stall_new_connections(10.0)  # and the ones the engine makes meanwhile
        await trio.sleep(1.0 + 0.2 + 0.05)  # the stall rule, one send slot, a dial loop pass
        sent_in_first_second = engine.counters["originates"] - before
        await trio.sleep(8.7)
        sent_during = engine.counters["originates"] - before
        reconnects = engine.pool.statistics()[0]["reconnects"]
        sim.stall_new_connections(0)
        with trio.fail_after(600):
            await done.wait()
        nursery.cancel_scope.cancel()
    # 5 a second: the first unanswered Originate and those within its second,
    # then none until the connection was made again.
    assert 5 <= sent_in_first_second <= 7
    assert sent_during == sent_in_first_second
    assert reconnects == 0  # still stalled: the new connection is not logged in yet
    assert engine.pool.statistics()[0]["reconnects"] >= 1
    dialed = [m.get("Channel") for _, _, m in originates(sim)]
    assert len(dialed) == len(set(dialed))  # never sent twice
    with sqlite_sessions.begin() as s:
        per_lead = s.execute(sa.select(CallAttempt.lead_id, sa.func.count()).group_by(CallAttempt.lead_id)).all()
        states = set(s.scalars(sa.select(Lead.state)))
    assert len(per_lead) == 120 and {n for _, n in per_lead} == {1}
    assert states <= {"done", "exhausted"}
