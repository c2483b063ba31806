"""The engine against the simulated Asterisk over real TCP, under trio's mock clock."""

import datetime as dt

import pytest
import sqlalchemy as sa
import trio
import trio.testing

from dialer.campaigns import control
from dialer.models import CallAttempt, Campaign, EngineStatus, Lead, SupervisorCommand
from tests.engine_harness import (
    BUSINESS_HOURS, lead_dispositions, make_campaign, max_in_window, new_engine,
    numbers, originates, server, start_sim,
)

ANSWERED = {"connected", "dropped"}
BY_DIGIT = {
    "0": ANSWERED, "1": ANSWERED, "2": ANSWERED, "3": ANSWERED, "4": {"busy"},
    "5": {"congestion"}, "6": {"no_answer"}, "7": ANSWERED, "8": {"invalid_number"},
    "9": ANSWERED,
}


pytestmark = pytest.mark.usefixtures("ami_secret")  # the simulator's AMI password (conftest.py)


async def run_until_done(sqlite_sessions, *, scenario=None, epoch=BUSINESS_HOURS, timeout=3600, **engine_kwargs):
    """One engine against a fresh simulator until its campaigns are done: (sim, engine)."""
    async with trio.open_nursery() as nursery:
        sim, port = await start_sim(nursery, scenario=scenario)
        engine = new_engine(sqlite_sessions, [server(port)], until_done=True, epoch=epoch, **engine_kwargs)
        with trio.fail_after(timeout):
            await engine.run()
        nursery.cancel_scope.cancel()
    return sim, engine


def actions(sim, name):
    """Every action named ``name`` the simulator received, on any connection."""
    return [m for items in sim.received.values() for _, m in items if m.name == name]


async def test_campaign_runs_to_completion_with_each_outcome(clock, sqlite_sessions):
    phones = numbers(40)
    make_campaign(sqlite_sessions, phones=phones, mode="progressive", max_concurrent=10)
    sim, engine = await run_until_done(sqlite_sessions)

    leads = lead_dispositions(sqlite_sessions)
    assert len(leads) == 40
    for phone, (state, disposition) in leads.items():
        assert disposition in BY_DIGIT[phone[-1]], (phone, disposition)
        assert state in ("done", "exhausted")
    # every number was dialed exactly once
    dialed = [m.get("Channel") for _, _, m in originates(sim)]
    assert sorted(dialed) == sorted(f"Local/{p[1:]}@carrier" for p in phones)
    with sqlite_sessions.begin() as s:
        assert s.scalar(sa.select(Campaign.state)) == "done"
        attempts = list(s.scalars(sa.select(CallAttempt)))
        assert len(attempts) == 40
        for a in attempts:
            assert a.ended_at is not None and a.created_at <= a.originated_at <= a.ended_at
            if a.disposition in ANSWERED:
                assert a.answered_at is not None
            if a.disposition == "connected":
                assert a.connected_at is not None and a.time_to_agent <= 2.0
    # progressive with 3 agents: never more calls in flight than free agents allow
    assert sim.statistics()["calls_peak"] <= 10
    with sqlite_sessions.begin() as s:
        status = s.get(EngineStatus, engine.engine_id).data
    assert status["counters"]["originates"] == 40
    assert status["campaigns"]["spring"]["placed"] == 40
    assert status["campaigns"]["spring"]["agents_logged_in"] == 3
    assert {c["connection"] for c in status["connections"]} == {"pbx1#1", "pbx1#2"}
    assert sum(c["reader"] for c in status["connections"]) == 1


async def test_rate_cap_per_connection_is_never_exceeded(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, phones=numbers(300), mode="unattended", queue=None,
                  max_concurrent=1000)
    async with trio.open_nursery() as nursery:
        sim, port = await start_sim(nursery)
        engine = new_engine(
            sqlite_sessions, [server(port, connections=3, rate=10, burst=3)],
            until_done=True, epoch=BUSINESS_HOURS,
        )
        with trio.fail_after(3600):
            await engine.run()
        nursery.cancel_scope.cancel()
    sent = originates(sim)
    assert len(sent) == 300
    by_conn = {}
    for conn, t, _ in sent:
        by_conn.setdefault(conn, []).append(t)
    assert len(by_conn) == 3
    for times in by_conn.values():
        assert max_in_window(times) <= 10
    # 30/s in total: 300 calls in about 10 s, the last ones sent at ~9.9 s
    first, last = sent[0][1], sent[-1][1]
    assert 9.0 <= last - first <= 11.0


async def test_pause_resume_and_stop_from_the_database(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, phones=numbers(200), mode="unattended", queue=None,
                  max_concurrent=1000)
    now = dt.datetime(2026, 11, 25, 16, 0)
    async with trio.open_nursery() as nursery:
        sim, port = await start_sim(nursery)
        engine = new_engine(sqlite_sessions, [server(port, connections=1, rate=10, burst=1)],
                            epoch=BUSINESS_HOURS)
        await nursery.start(engine.run)
        await trio.sleep(3)
        with sqlite_sessions.begin() as s:
            control.issue(s, "spring", "pause", reason="lunch", issued_by="sup@host", now=now)
        await trio.sleep(1.0)  # the engine acts within a second
        paused_at = len(originates(sim))
        await trio.sleep(10)
        assert len(originates(sim)) == paused_at
        assert 25 <= paused_at <= 45
        with sqlite_sessions.begin() as s:
            control.issue(s, "spring", "resume", issued_by="sup@host", now=now)
        await trio.sleep(3)
        resumed = len(originates(sim))
        assert resumed > paused_at + 15
        with sqlite_sessions.begin() as s:
            control.issue(s, "spring", "stop", reason="done for today", issued_by="sup@host", now=now)
        await trio.sleep(1.0)
        stopped_at = len(originates(sim))
        await trio.sleep(60)  # every call in flight ends meanwhile
        assert len(originates(sim)) == stopped_at
        nursery.cancel_scope.cancel()
    with sqlite_sessions.begin() as s:
        assert s.scalar(sa.select(Campaign.state)) == "stopped"
        commands = s.execute(
            sa.select(SupervisorCommand.command, SupervisorCommand.reason, SupervisorCommand.issued_by)
            .order_by(SupervisorCommand.id)
        ).all()
        assert [c[0] for c in commands] == ["pause", "resume", "stop"]
        assert commands[0][1] == "lunch" and commands[0][2] == "sup@host"
        assert s.scalar(sa.select(sa.func.count()).where(SupervisorCommand.applied_at.is_(None))) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(CallAttempt)) == stopped_at
        assert s.scalar(sa.select(sa.func.count()).where(CallAttempt.ended_at.is_(None))) == 0
        undialed = s.scalar(sa.select(sa.func.count()).where(Lead.state == "new"))
        assert undialed == 200 - stopped_at
        assert s.scalar(sa.select(sa.func.count()).where(Lead.state == "claimed")) == 0


async def test_dropped_connection_keeps_dialing_on_the_others_and_resends_nothing(clock, sqlite_sessions):
    phones = numbers(200)
    make_campaign(sqlite_sessions, phones=phones, mode="unattended", queue=None, max_concurrent=1000)
    async with trio.open_nursery() as nursery:
        sim, port = await start_sim(nursery)
        engine = new_engine(sqlite_sessions, [server(port, connections=2, rate=10, burst=1)],
                            until_done=True, epoch=BUSINESS_HOURS)

        async def break_one():
            await trio.sleep(4)
            # the connection that reads events (the others logged in with Events: off)
            (reader,) = [sid for sid, sess in sim.sessions.items() if sess.filters]
            sim.close_connection(reader)

        nursery.start_soon(break_one)
        with trio.fail_after(3600):
            await engine.run()
        nursery.cancel_scope.cancel()
    dialed = [m.get("Channel") for _, _, m in originates(sim)]
    assert len(dialed) == len(set(dialed))  # nothing dialed twice
    leads = lead_dispositions(sqlite_sessions)
    with sqlite_sessions.begin() as s:
        per_lead = s.execute(sa.select(CallAttempt.lead_id, sa.func.count()).group_by(CallAttempt.lead_id)).all()
    assert len(per_lead) == 200 and {n for _, n in per_lead} == {1}
    # An Originate cut off with the connection may never have reached Asterisk:
    # it is not resent, and its outcome is unknown.
    never_arrived = {p for p in phones if f"Local/{p[1:]}@carrier" not in set(dialed)}
    assert len(never_arrived) < 10
    assert all(leads[p][1] == "unknown" for p in never_arrived)
    assert all(state in ("done", "exhausted") for state, _ in leads.values())
    unknown = [p for p, (_, d) in leads.items() if d == "unknown"]
    # only calls whose events fell into the gap may be unknown; the rest match
    assert len(unknown) < 40
    for phone, (_, disposition) in leads.items():
        if disposition != "unknown":
            expected = BY_DIGIT[phone[-1]] | ({"connected"} if phone[-1] in "0123479" else set())
            assert disposition in expected, (phone, disposition)
    assert engine.counters["reconciled"] > 0


def test_business_zone_is_inside_the_window_at_every_hour():
    from zoneinfo import ZoneInfo

    from tests.engine_harness import business_zone

    for hour in range(24):
        now = dt.datetime(2026, 11, 26, hour, 30, tzinfo=dt.UTC)
        local = now.astimezone(ZoneInfo(business_zone(now)))
        assert 11 <= local.hour <= 13, (hour, local)


async def test_predictive_campaign_runs_against_the_simulator(clock, sqlite_sessions):
    phones = numbers(120)
    make_campaign(sqlite_sessions, phones=phones, mode="predictive", max_concurrent=50)
    levels = []
    sim, engine = await run_until_done(sqlite_sessions, on_progress=lambda e: levels.append(
        e.runs[next(iter(e.runs))].decision.dial_level if e.runs[next(iter(e.runs))].decision else 0
    ))
    leads = lead_dispositions(sqlite_sessions)
    assert all(d in BY_DIGIT[p[-1]] for p, (_, d) in leads.items())
    assert len(originates(sim)) == 120
    # hangup_after is off by default: no call is cut short.
    assert actions(sim, "Hangup") == []
    # With 3 agents and 60 % of calls unanswered, predictive keeps more lines
    # busy than agents: the dial level goes above 1.
    assert max(levels) > 1.0


HANGUP_SCENARIO = """
seed = 7
post_dial_delay = 4
[outcomes]
answered = 0.3
noanswer = 0.7
[ring_time]
dist = "uniform"
min = 5
max = 25
[talk_time]
dist = "fixed"
value = 900
[queue]
name = "agents"
agents = 3
timeout = 30
wrapup = 5
agent_talk_time = 60
"""


async def test_predictive_hangs_up_unneeded_calls_only_after_they_rang_long_enough(clock, sqlite_sessions):
    from dialer.sim.scenario import parse_scenario

    make_campaign(sqlite_sessions, phones=numbers(150), mode="predictive", max_concurrent=40,
                  ring_timeout=40, hangup_after=15, retry_delays={})
    sim, engine = await run_until_done(sqlite_sessions, scenario=parse_scenario(HANGUP_SCENARIO), timeout=7200)
    hangups = actions(sim, "Hangup")
    with sqlite_sessions.begin() as s:
        attempts = s.scalars(sa.select(CallAttempt)).all()
        rows = [(a.disposition, a.cause, a.ringing_at, a.ended_at, a.answered_at) for a in attempts]
        marked = sorted(a.id for a in attempts if a.hangup_at is not None)
        cut = sorted(a.id for a in attempts if a.disposition == "no_answer"
                     and (a.ended_at - a.ringing_at).total_seconds() < 39)
    assert len(rows) == 150 and all(d is not None for d, *_ in rows)
    # The attempts pacing cut are the ones marked with when it did.
    assert marked == cut
    # Three agents on 60 s calls, 70 % of numbers never answer: the dialer
    # keeps several calls ringing per agent and hangs some up.
    assert hangups and len(hangups) == engine.counters["hangups"]
    assert all(m.get("Channel").startswith("Local/") and m.get("Cause") == "16" for m in hangups)
    # A call hung up ends before its 40 s timeout, and only after the called
    # line rang at least 15 s: the simulated line rings 4 s after DialBegin
    # (ringing_at), so not before 19 s from there.
    rung = [(e - r).total_seconds() for d, _, r, e, a in rows if d == "no_answer" and r is not None]
    cut_short = [t for t in rung if t < 39]
    # (Times are Asterisk's Timestamps, to the microsecond.)
    assert min(rung) >= 19 - 1e-5
    assert len(cut_short) == engine.counters["hung_up"] > 0
    # Each of those is a no-answer with cause 16, as Asterisk reports it.
    assert all(c == 16 for d, c, r, e, a in rows if d == "no_answer" and r is not None
               and (e - r).total_seconds() < 39)


async def test_a_hangup_the_ami_user_may_not_send_is_tried_once_per_call_and_reported_once(
        clock, sqlite_sessions, caplog):
    from dialer.sim.scenario import parse_scenario

    users = """
[[users]]
name = "dialer"
secret = "dialerpass"
read = ["system", "call", "agent", "user", "dialplan", "originate", "reporting"]
write = ["originate", "reporting"]
"""
    make_campaign(sqlite_sessions, phones=numbers(60), mode="predictive", max_concurrent=40,
                  ring_timeout=40, hangup_after=15, retry_delays={})
    sim, engine = await run_until_done(sqlite_sessions, scenario=parse_scenario(HANGUP_SCENARIO + users),
                                       timeout=7200)
    tried = [m.get("Channel") for m in actions(sim, "Hangup")]
    assert tried and len(tried) == len(set(tried))
    assert engine.counters["hangups"] == engine.counters["hung_up"] == 0
    assert caplog.text.count("ringing calls cannot be cut") == 1
    assert "Permission denied" in caplog.text and "write = system" in caplog.text
    with sqlite_sessions.begin() as s:
        assert s.scalar(sa.select(sa.func.count()).where(CallAttempt.hangup_at.is_not(None))) == 0
        assert s.scalar(sa.select(sa.func.count()).where(CallAttempt.ended_at.is_(None))) == 0


async def test_sample_leads_each_get_the_outcome_of_their_last_digit(clock, sqlite_sessions):
    from pathlib import Path

    from dialer.leads.importer import import_leads

    sample = Path(__file__).resolve().parents[1] / "sample_leads.csv"
    make_campaign(sqlite_sessions, mode="progressive", max_concurrent=30)
    loaded_at = dt.datetime(2026, 11, 25, 18, 0)
    with sqlite_sessions.begin() as s:
        result = import_leads(s, "spring", sample, now=loaded_at)
    assert result.loaded == 200
    # 19:00 UTC on a Wednesday: 14:00 in New York, 09:00 in Honolulu.
    epoch = dt.datetime(2026, 11, 25, 19, 0, tzinfo=dt.UTC).timestamp()
    sim, engine = await run_until_done(sqlite_sessions, epoch=epoch, timeout=7200)
    leads = lead_dispositions(sqlite_sessions)
    assert len(leads) == 200
    for phone, (state, disposition) in leads.items():
        assert disposition in BY_DIGIT[phone[-1]], (phone, disposition)
    assert len(originates(sim)) == 200


async def test_a_locked_database_delays_outcomes_but_loses_none(clock, sqlite_sessions, sqlite_url, caplog):
    """Another writer holds SQLite's lock for a while (a long lead load): the
    engine keeps following its calls and writes every outcome afterwards."""
    import sqlite3

    phones = numbers(60)
    make_campaign(sqlite_sessions, phones=phones, mode="unattended", queue=None, max_concurrent=100)
    path = sqlite_url.removeprefix("sqlite:///")
    async with trio.open_nursery() as nursery:
        sim, port = await start_sim(nursery)
        engine = new_engine(sqlite_sessions, [server(port, connections=1, rate=10, burst=2)],
                            until_done=True, epoch=BUSINESS_HOURS)
        from dialer import db as dbmod

        impatient = dbmod.create_engine(sqlite_url)
        # Give up on the lock after 10 ms of real time instead of 10 s.
        sa.event.listen(impatient, "connect",
                        lambda conn, _: conn.execute("PRAGMA busy_timeout = 10"))
        engine.sessions = dbmod.session_factory(impatient)
        blocker = sqlite3.connect(path, timeout=0, isolation_level=None)

        async def hold_lock():
            await trio.sleep(2)
            blocker.execute("BEGIN IMMEDIATE")
            await trio.sleep(5)
            blocker.rollback()

        nursery.start_soon(hold_lock)
        with trio.fail_after(3600):
            await engine.run()
        nursery.cancel_scope.cancel()
        impatient.dispose()
    blocker.close()
    assert engine.counters["ended"] == 60
    assert "database is locked" in caplog.text and "trying again" in caplog.text
    leads = lead_dispositions(sqlite_sessions)
    assert len(leads) == 60
    assert all(state in ("done", "exhausted") for state, _ in leads.values())
    with sqlite_sessions.begin() as s:
        assert s.scalar(sa.select(sa.func.count()).where(CallAttempt.ended_at.is_(None))) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(CallAttempt)) == 60


async def test_outcomes_left_at_a_stop_wait_out_a_locked_database(clock, sqlite_sessions, sqlite_url, caplog):
    """The engine is stopped while another writer holds SQLite's lock: its
    last outcomes are written once the lock is gone, not dropped."""
    import sqlite3

    from dialer import db as dbmod

    make_campaign(sqlite_sessions, phones=numbers(60), mode="unattended", queue=None, max_concurrent=100)
    path = sqlite_url.removeprefix("sqlite:///")
    impatient = dbmod.create_engine(sqlite_url)
    sa.event.listen(impatient, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout = 10"))
    blocker = sqlite3.connect(path, timeout=0, isolation_level=None)

    async def release_after(seconds):
        await trio.sleep(seconds)
        blocker.rollback()

    async with trio.open_nursery() as nursery:
        sim, port = await start_sim(nursery)
        engine = new_engine(sqlite_sessions, [server(port, connections=1, rate=10, burst=2)], epoch=BUSINESS_HOURS)
        engine.sessions = dbmod.session_factory(impatient)
        with trio.move_on_after(30):
            async with trio.open_nursery() as inner:
                inner.start_soon(engine.run)
                await trio.sleep(25)
                blocker.execute("BEGIN IMMEDIATE")  # outcomes pile up from here
                nursery.start_soon(release_after, 8)  # 3 s after the stop
        nursery.cancel_scope.cancel()
    impatient.dispose()
    blocker.close()
    assert "outcomes not written yet" in caplog.text
    with sqlite_sessions.begin() as s:
        ended = s.scalar(sa.select(sa.func.count()).where(CallAttempt.ended_at.is_not(None)))
    assert ended == engine.counters["ended"] > 0


async def test_the_final_flush_gives_up_after_a_bounded_time(clock, sqlite_sessions, sqlite_url, caplog, monkeypatch):
    """The database stays locked after the stop: the engine returns within
    FINAL_FLUSH_SECONDS, however many tries it would have left, and says what
    it could not write."""
    import sqlite3

    from dialer import db as dbmod
    from dialer.engine import writer as engine_module

    monkeypatch.setattr(engine_module, "FINAL_FLUSH_TRIES", 1000)
    make_campaign(sqlite_sessions, phones=numbers(60), mode="unattended", queue=None, max_concurrent=100)
    impatient = dbmod.create_engine(sqlite_url)
    sa.event.listen(impatient, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout = 10"))
    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
    async with trio.open_nursery() as nursery:
        sim, port = await start_sim(nursery)
        engine = new_engine(sqlite_sessions, [server(port, connections=1, rate=10, burst=2)], epoch=BUSINESS_HOURS)
        engine.sessions = dbmod.session_factory(impatient)
        with trio.move_on_after(600) as scope:
            async with trio.open_nursery() as inner:
                inner.start_soon(engine.run)
                await trio.sleep(25)
                blocker.execute("BEGIN IMMEDIATE")  # never released before the engine returns
                await trio.sleep(3)
                inner.cancel_scope.cancel()
                stopped = trio.current_time()
        returned = trio.current_time()
        nursery.cancel_scope.cancel()
    blocker.rollback()
    blocker.close()
    impatient.dispose()
    assert not scope.cancelled_caught
    assert returned - stopped <= engine_module.FINAL_FLUSH_SECONDS + 0.5
    assert "not written; a restart reconciles their calls" in caplog.text


def test_peak_per_second_is_tracked_per_connection():
    from dialer.ami.pool import PoolMember
    from dialer.ami.ratelimit import RateLimiter

    async def main():
        member = PoolMember("pbx", "pbx#1", RateLimiter(5, burst=5, now=trio.current_time()), 100)
        member.queued = 12
        for _ in range(12):
            await member.send_slot()
        return member, trio.current_time()

    member, elapsed = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert member.peak_1s == 5 and member.originates_sent == 12 and member.queued == 0
    # a burst of 5 at once; then the one-second window allows 5 more at 1.0 s
    # and the last 2 at 2.0 s
    assert elapsed == pytest.approx(2.0)
