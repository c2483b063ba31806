"""The live_state rows an engine publishes per campaign: on change and at least four times a second."""

import sqlalchemy as sa
import trio
import trio.testing

from dialer.models import LiveState
from dialer.sim import SimAsterisk
from tests.engine_harness import BUSINESS_HOURS, SECRET_ENV, make_campaign, new_engine, numbers, server


async def test_live_state_rows_of_a_running_engine(clock, sqlite_url, monkeypatch):
    from dialer import db

    monkeypatch.setenv(SECRET_ENV, "dialerpass")
    eng = db.create_engine(sqlite_url)
    sessions = db.session_factory(eng)
    make_campaign(sessions, phones=numbers(20), mode="progressive", max_concurrent=10)
    writes: list[tuple[float, dict]] = []

    async def watch():
        last = None
        while True:
            with sessions.begin() as s:
                rows = list(s.scalars(sa.select(LiveState)))
                seen = [(r.engine_id, r.campaign_id, r.heartbeat_at, dict(r.data)) for r in rows]
            if seen and seen[0][2] != last:
                last = seen[0][2]
                writes.append((trio.current_time(), seen[0][3]))
            await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        sim = SimAsterisk()
        port = await nursery.start(sim.serve)
        engine = new_engine(sessions, [server(port)], until_done=True, epoch=BUSINESS_HOURS)
        nursery.start_soon(watch)
        with trio.fail_after(3600):
            await engine.run()
        nursery.cancel_scope.cancel()
    with sessions.begin() as s:
        (row,) = s.scalars(sa.select(LiveState))
        assert row.engine_id == engine.engine_id
    eng.dispose()
    assert len(writes) > 20
    gaps = [b[0] - a[0] for a, b in zip(writes, writes[1:])]
    assert max(gaps) <= 0.25 + 0.011           # at least four writes a second (plus one poll tick)
    docs = [doc for _, doc in writes]
    assert {d["campaign"] for d in docs} == {"spring"}
    assert all({x["connection"] for x in d["connections"]} == {"pbx1#1", "pbx1#2"} for d in docs)
    assert any(d["in_flight"] >= 1 for d in docs) and any(d["placed"] == 20 for d in docs)
    assert any(d["agents_logged_in"] == 3 for d in docs)
