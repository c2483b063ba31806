"""The AMI pool on its own, against the simulated Asterisk over real TCP, under trio's mock clock:
one event reader per server, promotion and gaps, assignment by room, the rate cap at the send slot."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from dialer.ami.pool import ENGINE_EVENTS, AMIPool, event_filter
from dialer.sim import SimAsterisk
from tests.engine_harness import server


pytestmark = pytest.mark.usefixtures("ami_secret")  # the simulator's AMI password (conftest.py)


class Running:
    """A pool running in a nursery against one or more simulators."""

    def __init__(self, pool: AMIPool, sims: dict[str, SimAsterisk]) -> None:
        self.pool, self.sims = pool, sims
        self.events: list[tuple[str, str]] = []   # (server, event name)
        self.gaps: list[str] = []

    async def on_event(self, server_name: str, event) -> None:
        self.events.append((server_name, event.name or ""))

    async def on_gap(self, server_name: str) -> None:
        self.gaps.append(server_name)

    async def wait_usable(self, count: int) -> None:
        with trio.fail_after(30):
            while sum(self.pool.usable(m) for m in self.pool.members) < count:
                await self.pool.wait_changed()


async def start(nursery, *configs, **pool_kwargs) -> Running:
    """configs: (name, connections, rate, burst, max_in_flight) for one simulator each."""
    sims, servers = {}, []
    for name, connections, rate, burst, max_in_flight in configs:
        sim = SimAsterisk()
        port = await nursery.start(sim.serve)
        sims[name] = sim
        servers.append(server(port, name=name, connections=connections, rate=rate, burst=burst,
                              max_in_flight=max_in_flight))
    pool = AMIPool(servers, now=trio.current_time(), **pool_kwargs)
    running = Running(pool, sims)
    await nursery.start(pool.run, running.on_event, running.on_gap)
    await running.wait_usable(sum(c[1] for c in configs))
    return running


def _sent(sim: SimAsterisk, action: str) -> dict[int, list]:
    """Per simulator connection id, the actions named ``action`` it received."""
    return {cid: [m for _, m in items if (m.name or "").lower() == action.lower()]
            for cid, items in sim.received.items()}


async def test_exactly_one_connection_per_server_reads_events(clock, nursery):
    r = await start(nursery, ("pbx1", 3, 50, 5, 500), ("pbx2", 2, 50, 5, 500))
    rows = r.pool.statistics()
    assert [row["connection"] for row in rows] == ["pbx1#1", "pbx1#2", "pbx1#3", "pbx2#1", "pbx2#2"]
    assert sum(row["reader"] for row in rows if row["server"] == "pbx1") == 1
    assert sum(row["reader"] for row in rows if row["server"] == "pbx2") == 1
    for sim in r.sims.values():
        events_on = {cid for cid, actions in _sent(sim, "Events").items() if actions}
        filtered = {cid for cid, actions in _sent(sim, "Filter").items() if actions}
        assert len(events_on) == 1 and filtered == events_on
        (cid,) = filtered
        (f,) = _sent(sim, "Filter")[cid]
        assert f.get("Filter") == event_filter(ENGINE_EVENTS) and f.get("Operation") == "Add"
    # Every server's reader was announced as a gap once: nobody read it before.
    assert sorted(r.gaps) == ["pbx1", "pbx2"]


async def test_an_originate_on_any_connection_is_heard_once_through_the_reader(clock, nursery):
    r = await start(nursery, ("pbx1", 3, 50, 5, 500))
    reader = next(m for m in r.pool.members if r.pool.statistics()[r.pool.members.index(m)]["reader"])
    sender = next(m for m in r.pool.members if m is not reader)
    await sender.ami.action("Originate", [
        ("Channel", "Local/12125550100@carrier"), ("Context", "dialer-connect"), ("Exten", "s"),
        ("Priority", "1"), ("Async", "true"), ("Timeout", "25000"),
    ], action_id="pool-test-1")
    with trio.fail_after(60):
        while ("pbx1", "Hangup") not in r.events:
            await trio.sleep(0.5)
    await trio.sleep(5)
    assert r.events.count(("pbx1", "OriginateResponse")) == 1
    # Only the filtered names reach the engine (the regex matches inside names too:
    # QueueMember lets QueueMemberStatus through).
    assert all(any(n in name for n in ENGINE_EVENTS) for _, name in r.events), r.events
    assert not any(name in ("VarSet", "Newexten") for _, name in r.events)


async def test_reader_lost_promotes_another_and_reports_the_gap(clock, nursery):
    r = await start(nursery, ("pbx1", 2, 50, 5, 500))
    sim = r.sims["pbx1"]
    (reader_cid,) = [cid for cid, s in sim.sessions.items() if s.filters]
    before = {row["connection"] for row in r.pool.statistics() if row["reader"]}
    assert r.gaps == ["pbx1"]
    sim.close_connection(reader_cid)
    with trio.fail_after(30):
        while len(r.gaps) < 2:
            await r.pool.wait_changed()
    after = {row["connection"] for row in r.pool.statistics() if row["reader"]}
    assert after and after != before  # the other connection reads now
    assert r.gaps == ["pbx1", "pbx1"]
    # The dropped one comes back (as a plain connection) and its reconnect is counted.
    await r.wait_usable(2)
    assert sum(row["reconnects"] for row in r.pool.statistics()) == 1
    assert sum(row["reader"] for row in r.pool.statistics()) == 1


async def test_a_server_without_a_reader_takes_no_calls(clock, nursery):
    r = await start(nursery, ("pbx1", 1, 50, 5, 500), ("pbx2", 1, 50, 5, 500))
    pbx2 = next(m for m in r.pool.members if m.server == "pbx2")
    (cid,) = list(r.sims["pbx2"].sessions)
    r.sims["pbx2"].refuse_logins()  # it cannot come back
    r.sims["pbx2"].close_connection(cid)
    with trio.fail_after(30):
        while r.pool.usable(pbx2):
            await r.pool.wait_changed()
    assert not pbx2.up and not r.pool.has_reader("pbx2") and r.pool.has_reader("pbx1")
    assert r.pool.server_connection("pbx2") is None and r.pool.server_connection("pbx1") is not None
    assert r.pool.capacity() == next(m for m in r.pool.members if m.server == "pbx1").room(r.pool.horizon)
    assigned = [r.pool.assign() for _ in range(5)]
    assert all(m is not None and m.server == "pbx1" for m in assigned)


async def test_assign_picks_the_connection_with_most_room_and_respects_max_in_flight(clock, nursery):
    # rate 10, burst 2, horizon 0.25 s: room = ceil(10 * 0.25) + 2 = 5 waiting at most,
    # and never more than max_in_flight = 6 in flight.
    r = await start(nursery, ("pbx1", 2, 10, 2, 6))
    pool = r.pool
    a, b = pool.members
    assert (a.room(pool.horizon), b.room(pool.horizon)) == (5, 5)
    assert pool.capacity() == 10
    got = [pool.assign() for _ in range(10)]
    # Equal room: the two take turns.
    assert [m.name for m in got] == ["pbx1#1", "pbx1#2"] * 5
    assert (a.queued, a.in_flight, b.queued, b.in_flight) == (5, 5, 5, 5)
    assert pool.assign() is None and pool.capacity() == 0
    # Two of a's calls are sent: room for waiting calls again, but only one more in flight.
    await a.send_slot()
    await a.send_slot()
    assert (a.queued, a.in_flight) == (3, 5)
    assert a.room(pool.horizon) == 1 and b.room(pool.horizon) == 0
    assert pool.assign() is a
    assert pool.assign() is None
    # A call that will not be sent, and one that ended, give their room back.
    pool.unassign(b)
    assert (b.queued, b.in_flight) == (4, 4)
    pool.release(a)
    assert a.in_flight == 5
    assert pool.capacity() == a.room(pool.horizon) + b.room(pool.horizon) == 1 + 1


async def test_assign_many_gives_what_assign_one_at_a_time_gives(clock, nursery):
    import random

    # rate 20, burst 3: room = ceil(20 * 0.25) + 3 = 8 waiting, up to 40 in flight.
    r = await start(nursery, ("pbx1", 4, 20, 3, 40))
    pool = r.pool
    rng = random.Random(7)

    def state():
        return pool._rr, [(m.queued, m.in_flight) for m in pool.members]

    def restore(saved):
        pool._rr = saved[0]
        for m, (queued, in_flight) in zip(pool.members, saved[1]):
            m.queued, m.in_flight = queued, in_flight

    for _ in range(300):
        for m in pool.members:
            m.queued = rng.randint(0, 8)
            m.in_flight = m.queued + rng.choice([0, 0, rng.randint(0, 40 - m.queued)])
        pool._rr = rng.randrange(4)
        count = rng.choice([0, 1, 2, 3, 5, 9, 17, rng.randint(0, 40), 10_000])
        before = state()
        one_by_one = []
        while len(one_by_one) < count and (m := pool.assign()) is not None:
            one_by_one.append(m)
        after = state()
        restore(before)
        assert pool.assign_many(count) == one_by_one
        assert state() == after
        pool.unassign_many(one_by_one)
        assert [(m.queued, m.in_flight) for m in pool.members] == before[1]


async def test_send_slots_follow_the_token_bucket_in_order(clock, nursery):
    r = await start(nursery, ("pbx1", 1, 10, 2, 500), horizon=1.0)  # room for 10 + 2 waiting
    member = r.pool.members[0]
    for _ in range(6):
        assert r.pool.assign() is member
    start_t = trio.current_time()
    times: list[tuple[int, float]] = []

    async def take(i: int) -> None:
        await member.send_slot()
        times.append((i, round(trio.current_time() - start_t, 6)))

    async with trio.open_nursery() as inner:
        for i in range(6):
            inner.start_soon(take, i)
            await trio.testing.wait_all_tasks_blocked()
    # Two at once (the burst), then one every 0.1 s, in the order they asked.
    assert [i for i, _ in times] == [0, 1, 2, 3, 4, 5]
    assert [t for _, t in times] == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3, 0.4])
    assert member.originates_sent == 6 and member.queued == 0
    assert member.peak_1s == 6
    row = r.pool.statistics(trio.current_time())[0]
    assert (row["originates_sent"], row["rate_1s"], row["rate_cap"], row["peak_1s"]) == (6, 6, 10, 6)


def test_the_event_filter_is_one_legacy_regex():
    assert event_filter(["A", "B"]) == "Event: (A|B)"
