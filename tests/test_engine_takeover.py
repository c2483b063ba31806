"""A restarted engine takes over its dead predecessor's calls at once.

Each run of an engine holds its name's liveness lock (``dialer.liveness``) and
leases its leads as ``<name>#<run>``; the next run, or any other engine, sees
that the lock is free and adopts the calls without waiting out the lease.
Under trio's mock clock, against the simulated Asterisk.
"""


import pytest
import sqlalchemy as sa
import trio
import trio.testing

from dialer.engine import Engine, EngineSettings
from dialer.errors import UserError
from dialer.models import CallAttempt, Lead
from dialer.sim import SimAsterisk
from tests.engine_harness import BUSINESS_HOURS, make_campaign, numbers, originates, server

LEASE = 60.0
# Unattended: every answered call is connected.
BY_DIGIT = {"0": "connected", "1": "connected", "2": "connected", "3": "connected", "4": "busy",
            "5": "congestion", "6": "no_answer", "7": "connected", "8": "invalid_number", "9": "connected"}


pytestmark = pytest.mark.usefixtures("ami_secret")  # the simulator's AMI password (conftest.py)


def make_engine(sqlite_sessions, port, **kwargs):
    settings = EngineSettings(lease=LEASE, housekeeping_interval=5.0)
    return Engine(sqlite_sessions, [server(port)], settings=settings, db_thread=False,
                  epoch=BUSINESS_HOURS, **kwargs)


def open_attempts(sqlite_sessions):
    with sqlite_sessions.begin() as s:
        return s.execute(sa.select(CallAttempt.id, Lead.lease_owner).join(Lead, Lead.id == CallAttempt.lead_id)
                         .where(CallAttempt.ended_at.is_(None))).all()


async def run_for(engine, seconds):
    """Run an engine, then stop it as a crash would: its calls stay in flight
    (its last outcomes are written, as they would be had it died a moment later)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("same_name", [True, False], ids=["same-engine-id", "another-engine"])
async def test_restart_adopts_the_dead_runs_calls_at_once(clock, sqlite_sessions, same_name):
    phones = numbers(30)
    # Long talks: the calls are still up when the first engine dies.
    make_campaign(sqlite_sessions, phones=phones, mode="unattended", queue=None, max_concurrent=10)
    async with trio.open_nursery() as nursery:
        sim = SimAsterisk(scenario=None)
        port = await nursery.start(sim.serve)
        first = make_engine(sqlite_sessions, port, engine_id="pbx-a")
        await run_for(first, 3.0)
        left = open_attempts(sqlite_sessions)
        assert left and {owner for _, owner in left} == {first.lease_owner}

        second = make_engine(sqlite_sessions, port, engine_id="pbx-a" if same_name else "pbx-b",
                             until_done=True)
        assert second.lease_owner != first.lease_owner
        adopted_after = None

        async def watch():
            nonlocal adopted_after
            started = trio.current_time()
            while second.counters["adopted"] < len(left):
                await trio.sleep(0.05)
            adopted_after = trio.current_time() - started

        nursery.start_soon(watch)
        with trio.fail_after(600):
            await second.run()
        nursery.cancel_scope.cancel()
    assert adopted_after is not None and adopted_after < 1.5  # the lease is 60 s
    assert second.counters["adopted"] == len(left)
    dialed = [m.get("Channel") for _, _, m in originates(sim)]
    assert sorted(dialed) == sorted(f"Local/{p[1:]}@carrier" for p in phones)  # each once
    with sqlite_sessions.begin() as s:
        rows = s.execute(sa.select(CallAttempt.id, CallAttempt.phone_e164, CallAttempt.disposition,
                                   CallAttempt.estimated)).all()
        states = set(s.scalars(sa.select(Lead.state)))
    assert len(rows) == 30 and states <= {"done", "exhausted"}
    adopted = {aid for aid, _ in left}
    for aid, phone, disposition, estimated in rows:
        assert disposition == BY_DIGIT[phone[-1]], (aid, phone, disposition)
        if aid in adopted:
            # Still up at the restart: followed to their end through events. Only
            # an answer that came while no engine ran is an estimate.
            assert estimated in (None, "answered_at"), (aid, estimated)
        else:
            assert estimated is None


async def test_a_live_engines_name_is_refused_and_its_leases_left_alone(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, phones=numbers(30), mode="unattended", queue=None, max_concurrent=10)
    async with trio.open_nursery() as nursery:
        sim = SimAsterisk(scenario=None)
        port = await nursery.start(sim.serve)
        first = make_engine(sqlite_sessions, port, engine_id="pbx-a")
        await nursery.start(first.run)
        await trio.sleep(2.0)
        with pytest.raises(UserError, match="'pbx-a' is already running"):
            await make_engine(sqlite_sessions, port, engine_id="pbx-a").run()
        other = make_engine(sqlite_sessions, port, engine_id="pbx-b")
        await nursery.start(other.run)
        await trio.sleep(10.0)  # two housekeeping rounds
        assert other.counters["adopted"] == 0  # pbx-a is alive: its calls stay its own
        assert first.counters["adopted"] == 0
        nursery.cancel_scope.cancel()
