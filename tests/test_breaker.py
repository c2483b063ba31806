"""Originates Asterisk refuses, a server that is shutting down, and the circuit breaker,
against the simulated Asterisk over real TCP under trio's mock clock."""

from __future__ import annotations

import csv
import io
import json
import logging
import time

import pytest
import sqlalchemy as sa
import trio
import trio.testing

from dialer.campaigns import control
from dialer.calls.breaker import CircuitBreaker, failure_text
from dialer.calls.tracker import TrackedCall
from dialer.cli import main
from dialer.cli import status as status_cli
from dialer.models import CallAttempt, Campaign, Lead, SupervisorCommand
from dialer.sim import SimAsterisk
from dialer.sim.scenario import DEFAULT_USERS, Scenario, User
from tests.engine_harness import (
    BUSINESS_HOURS, lead_dispositions, make_campaign, new_engine, numbers, originates,
    server,
)

BY_DIGIT = {
    "0": {"connected", "dropped"}, "1": {"connected", "dropped"}, "2": {"connected", "dropped"},
    "3": {"connected", "dropped"}, "4": {"busy"}, "5": {"congestion"}, "6": {"no_answer"},
    "7": {"connected", "dropped"}, "8": {"invalid_number"}, "9": {"connected", "dropped"},
}


pytestmark = pytest.mark.usefixtures("ami_secret")  # the simulator's AMI password (conftest.py)


# ``sessions`` (tests/conftest.py): each test runs on SQLite and on PostgreSQL.


def attempts(sessions) -> list[CallAttempt]:
    with sessions.begin() as s:
        rows = list(s.scalars(sa.select(CallAttempt).order_by(CallAttempt.id)))
        s.expunge_all()
    return rows


def leads(sessions) -> list[Lead]:
    with sessions.begin() as s:
        rows = list(s.scalars(sa.select(Lead).order_by(Lead.id)))
        s.expunge_all()
    return rows


def pauses(sessions) -> list[SupervisorCommand]:
    with sessions.begin() as s:
        rows = list(s.scalars(sa.select(SupervisorCommand).where(SupervisorCommand.command == "pause")))
        s.expunge_all()
    return rows


def campaign_state(sessions) -> str:
    with sessions.begin() as s:
        return s.scalar(sa.select(Campaign.state))


async def wait_for(predicate, *, timeout: float = 600, step: float = 0.5) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)


# --- the breaker on its own ---------------------------------------------------------------


def _call(i: int, **kw) -> TrackedCall:
    call = TrackedCall(attempt_id=i, campaign_id=1, lead_id=i, action_id=f"a{i}", channel_id=f"c{i}",
                       other_channel_id=f"o{i}", queued_at=100.0)
    for k, v in kw.items():
        setattr(call, k, v)
    return call


def test_breaker_trips_on_the_nth_failure_in_a_row_and_any_other_end_restarts_the_count():
    b = CircuitBreaker(failures=3, within=5.0)
    fail = dict(disposition="failed", originated_at=100.5, ended_at=102.5)
    assert b.call_ended(_call(1, **fail)) is None
    assert b.call_ended(_call(2, **fail)) is None
    assert b.call_ended(_call(3, disposition="busy", originated_at=100.5, ended_at=101.0)) is None
    # a failure later than `within` after its Originate is not "at once"
    assert b.call_ended(_call(4, disposition="failed", originated_at=100.0, ended_at=105.01)) is None
    # Asterisk shutting down, or an unknown end, neither count nor break the run
    assert b.call_ended(_call(5, **fail)) is None
    assert b.call_ended(_call(6, disposition="failed", response_message="Asterisk is shutting down",
                              ended_at=100.1)) is None
    assert b.call_ended(_call(7, disposition="unknown", ended_at=100.2)) is None
    assert b.call_ended(_call(8, **fail)) is None
    tripped = b.call_ended(_call(9, disposition="failed", response_message="Permission denied",
                                 ended_at=100.0))
    assert [c.attempt_id for c in tripped] == [5, 8, 9] and b.tripped
    # once tripped, calls failing the same way are not charged; others are
    late = _call(10, **fail)
    assert b.call_ended(late) is None and late.charged is False
    ok = _call(11, disposition="no_answer", originated_at=100.0, ended_at=125.0)
    assert b.call_ended(ok) is None and ok.charged is True
    b.reset()
    assert not b.tripped and b.call_ended(_call(12, **fail)) is None


def test_failure_text_says_what_asterisk_said():
    assert failure_text(_call(1, response_message="Permission denied"), "Local/{digits}@x") == (
        "Asterisk refused the Originate: Permission denied")
    text = failure_text(_call(2, reason=0, response_seen=True, originated_at=1.0), "PJSIP/{digits}@carrier")
    assert text == ("OriginateResponse Reason 0 (failed), no channel was created: can this Asterisk"
                    " dial 'PJSIP/{digits}@carrier'?")
    text = failure_text(_call(3, reason=0, response_seen=True, originated_at=1.0, had_channels=True,
                              cause=66, cause_txt="Channel not implemented", dial_status="CHANUNAVAIL"),
                        "Local/{digits}@carrier")
    assert text == "OriginateResponse Reason 0 (failed), cause 66 (Channel not implemented), DialStatus CHANUNAVAIL"


# --- against the simulator -----------------------------------------------------------------


async def test_a_channel_template_the_server_cannot_dial_pauses_the_campaign_and_charges_nobody(
        clock, sessions, db_url, caplog):
    """PJSIP on a server without it: each call fails at once, with no channel. The 20th
    failure in a row pauses the campaign; none of the leads is charged or parked; fixed
    and resumed, the campaign dials every lead once and finishes."""
    phones = numbers(60)
    make_campaign(sessions, phones=phones, mode="unattended", queue=None, max_concurrent=5,
                  channel="PJSIP/{digits}@carrier", max_attempts=1)
    caplog.set_level(logging.ERROR, logger="dialer.engine")
    async with trio.open_nursery() as nursery:
        sim = SimAsterisk()
        port = await nursery.start(sim.serve)
        engine = new_engine(sessions, [server(port, connections=2, rate=10, burst=2)],
                            epoch=BUSINESS_HOURS)
        await nursery.start(engine.run)
        await wait_for(lambda: campaign_state(sessions) == "paused")
        started = trio.current_time()
        # Paused: nothing more is dialed, and what was in flight has ended.
        await trio.sleep(30)
        sent_while_paused = len(originates(sim))
        await wait_for(lambda: engine.in_flight() == 0 and not engine.unwritten())
        await trio.sleep(1)

        rows = attempts(sessions)
        assert 20 <= len(rows) <= 20 + 5  # the run, and the calls in flight when it tripped
        assert len(rows) == len(originates(sim)) == sent_while_paused
        assert all(r.disposition == "failed" and r.originate_reason == 0 and not r.charged
                   and r.cause is None and r.response_message is None for r in rows)
        for lead in leads(sessions):
            # not charged, not parked for the failed retry delay, not exhausted
            assert (lead.state, lead.attempts) == ("new", 0), lead.phone_e164
        (pause,) = pauses(sessions)
        assert pause.issued_by == f"engine {engine.engine_id}"
        assert pause.reason == (
            "circuit breaker: 20 calls in a row failed at once; last: OriginateResponse Reason 0"
            " (failed), no channel was created: can this Asterisk dial 'PJSIP/{digits}@carrier'?")
        assert [r.message for r in caplog.records if "paused" in r.message] == [
            f"campaign spring paused: {pause.reason}"]
        out = io.StringIO()
        with sessions.begin() as s:
            status_cli.render(status_cli.collect(s, "spring", now=engine.clock.utcnow(),
                                                 wall_now=0.0), out)
        assert f"  paused by engine {engine.engine_id} at " in out.getvalue()
        assert out.getvalue().rstrip().endswith(pause.reason)
        assert engine.counters["breaker_trips"] == 1
        assert trio.current_time() - started >= 30

        # The operator fixes the template and resumes.
        with sessions.begin() as s:
            s.execute(sa.update(Campaign).values(channel="Local/{digits}@carrier"))
            control.issue(s, "spring", "resume", now=engine.clock.utcnow())
        await wait_for(lambda: campaign_state(sessions) == "done")
        nursery.cancel_scope.cancel()
    outcomes = lead_dispositions(sessions)
    assert all(outcomes[p][1] in BY_DIGIT[p[-1]] for p in phones)
    charged = [r for r in attempts(sessions) if r.charged]
    assert sorted(r.phone_e164 for r in charged) == sorted(phones)  # each dialed once more
    out, err = io.StringIO(), io.StringIO()
    assert main(["report", "spring", "--db", db_url, "--attempts", "--format", "json"], out, err) == 0
    exported = json.loads(out.getvalue())
    failed = [r for r in exported if not r["charged"]]
    assert len(failed) == len(exported) - len(phones)
    assert {(r["disposition"], r["originate_reason"], r["originate_reason_txt"], r["cause"],
             r["response_message"]) for r in failed} == {("failed", 0, "failed", None, None)}


NO_ORIGINATE = Scenario(users=(
    User("dialer", "dialerpass", DEFAULT_USERS[0].read, frozenset({"system", "call", "agent", "user"})),
))


async def test_a_user_that_may_not_originate_hands_its_leads_back_and_the_campaign_pauses(
        clock, sessions, db_url):
    """A user without the originate write class: its first Originate gets Response:
    Error (Permission denied). That connection places no more calls, no lead is
    charged or left with an attempt, and with no connection left that may dial the
    campaign is paused, with the reason, at once."""
    phones = numbers(40)
    make_campaign(sessions, phones=phones, mode="unattended", queue=None, max_concurrent=50,
                  max_attempts=1)
    async with trio.open_nursery() as nursery:
        sim = SimAsterisk(scenario=NO_ORIGINATE)
        port = await nursery.start(sim.serve)
        engine = new_engine(sessions, [server(port, connections=1, rate=5, burst=1)],
                            epoch=BUSINESS_HOURS)
        await nursery.start(engine.run)
        await wait_for(lambda: campaign_state(sessions) == "paused", step=0.05)
        paused_at = trio.current_time()
        await trio.sleep(10)
        await wait_for(lambda: not engine.unwritten())
        nursery.cancel_scope.cancel()
    # One Originate, refused; the pause follows it within a moment.
    assert len(originates(sim)) == 1
    assert paused_at == pytest.approx(originates(sim)[0][1], abs=0.2)
    assert attempts(sessions) == []
    assert {(lead.state, lead.attempts) for lead in leads(sessions)} == {("new", 0)}
    (pause,) = pauses(sessions)
    assert pause.reason == ("no AMI connection may Originate (Permission denied): give the AMI"
                            " user write = originate in manager.conf")
    # The export has nothing to show for leads that were never dialed.
    out, err = io.StringIO(), io.StringIO()
    assert main(["report", "spring", "--db", db_url, "--attempts"], out, err) == 0, err.getvalue()
    assert list(csv.DictReader(io.StringIO(out.getvalue()))) == []


async def test_failures_among_calls_that_work_are_charged_and_the_breaker_stays_quiet(
        clock, sessions):
    """Calls whose template picks a technology the server lacks, between calls that work:
    those fail (charged, as any failed call), the others run, the campaign is not paused."""
    phones = numbers(30)
    make_campaign(sessions, phones=[], mode="unattended", queue=None, max_concurrent=5,
                  channel="{tech}/{digits}@carrier", max_attempts=1)
    with sessions.begin() as s:
        cid = s.scalar(sa.select(Campaign.id))
        import datetime as dt
        s.add_all(Lead(campaign_id=cid, phone_e164=p, timezone="America/New_York", state="new",
                       next_attempt_at=dt.datetime(2026, 1, 1),
                       custom={"tech": "PJSIP" if i % 3 == 0 else "Local"})
                  for i, p in enumerate(phones))
    async with trio.open_nursery() as nursery:
        sim = SimAsterisk()
        port = await nursery.start(sim.serve)
        engine = new_engine(sessions, [server(port)], epoch=BUSINESS_HOURS, until_done=True)
        with trio.fail_after(3600):
            await engine.run()
        nursery.cancel_scope.cancel()
    assert campaign_state(sessions) == "done" and pauses(sessions) == []
    outcomes = lead_dispositions(sessions)
    for i, p in enumerate(phones):
        if i % 3 == 0:
            assert outcomes[p] == ("exhausted", "failed")  # charged: its one attempt is spent
        else:
            assert outcomes[p][1] in BY_DIGIT[p[-1]]
    assert all(r.charged for r in attempts(sessions))


async def test_a_server_shutting_down_takes_no_calls_until_it_is_back(clock, sessions):
    """Asterisk stopping gracefully answers every action 'Asterisk is shutting down':
    the Originates it refused hand their leads back uncharged, no more are sent until
    it has restarted, the campaign is not paused, and every lead is dialed once."""
    phones = numbers(80)
    make_campaign(sessions, phones=phones, mode="unattended", queue=None, max_concurrent=20,
                  max_attempts=1)
    async with trio.open_nursery() as nursery:
        sim = SimAsterisk()
        port = await nursery.start(sim.serve)
        engine = new_engine(sessions, [server(port, connections=2, rate=5, burst=1)],
                            epoch=BUSINESS_HOURS, until_done=True)

        async def maintenance():
            await trio.sleep(3)
            sim.stop_gracefully()
            await trio.sleep(5)
            assert [c["ready"] for c in engine.status()["connections"]] == [False, False]
            out = io.StringIO()
            with sessions.begin() as s:
                status_cli.render(status_cli.collect(s, "spring", now=engine.clock.utcnow(),
                                                     wall_now=time.time()), out)
            times["status"] = out.getvalue()
            await trio.sleep(25)
            sim.restart(keep_calls=True)
            times["restart"] = trio.current_time()

        times: dict[str, float] = {}
        nursery.start_soon(maintenance)
        with trio.fail_after(3600):
            await engine.run()
        nursery.cancel_scope.cancel()
    rows = attempts(sessions)
    refused = [r for r in rows if r.response_message is not None]
    assert refused and all(r.response_message == "Asterisk is shutting down" and not r.charged
                           and r.disposition == "failed" for r in refused)
    assert len(refused) <= 2  # one in flight per connection at most, then no more sent
    sent = [t for _, t, _ in originates(sim)]
    stopping = [t for t in sent if 3 < t < times["restart"]]
    assert len(stopping) == len(refused)
    assert min(t for t in sent if t > 3 + 1) > times["restart"]
    assert engine.counters["refused_stopping"] == len(refused)
    assert times["status"].count(
        ": up (not taking calls: Asterisk is stopping or not fully booted)") == 2, times["status"]
    assert pauses(sessions) == [] and campaign_state(sessions) == "done"
    charged = sorted(r.phone_e164 for r in rows if r.charged)
    assert charged == sorted(phones)  # each lead dialed once, none lost
    outcomes = lead_dispositions(sessions)
    assert all(outcomes[p][1] in BY_DIGIT[p[-1]] for p in phones)


async def test_without_fullybooted_a_server_is_taken_as_ready_after_boot_wait(clock, sessions, caplog):
    """An AMI user that may not read 'system' never hears FullyBooted: its server is
    used boot_wait (10 s) after the login, with a warning saying what to change."""
    no_system = Scenario(users=(
        User("dialer", "dialerpass", frozenset({"call", "agent", "user"}), DEFAULT_USERS[0].write),
    ))
    make_campaign(sessions, phones=numbers(5), mode="unattended", queue=None, max_attempts=1)
    async with trio.open_nursery() as nursery:
        sim = SimAsterisk(scenario=no_system)
        port = await nursery.start(sim.serve)
        engine = new_engine(sessions, [server(port, connections=1)], epoch=BUSINESS_HOURS,
                            until_done=True)
        start = trio.current_time()
        with trio.fail_after(3600):
            await engine.run()
        nursery.cancel_scope.cancel()
    first = originates(sim)[0][1]
    assert 10.0 <= first - start <= 10.0 + 0.5
    assert any("no FullyBooted" in r.message and "read = system" in r.message for r in caplog.records)


# --- the connection's view of a stopping Asterisk ---------------------------------------------


async def test_a_connection_hears_fullybooted_notes_a_stop_and_retries_logins_refused_meanwhile(
        clock, nursery):
    from dialer.ami.connection import open_ami
    from dialer.ami.errors import AMIActionError

    sim = SimAsterisk()
    port = await nursery.start(sim.serve)
    async with open_ami("127.0.0.1", port, username="dialer", secret="dialerpass", events="system",
                        backoff_initial=0.5, backoff_max=4, ping_interval=None) as ami:
        await wait_for(lambda: ami.booted, timeout=5, step=0.01)
        assert not ami.shutting_down
        sim.stop_gracefully()
        with pytest.raises(AMIActionError) as info:
            await ami.action("Ping")
        assert info.value.reason == "Asterisk is shutting down" and ami.shutting_down
        sim.stop_gracefully(False)  # the stop is called off: the next answer says so
        assert (await ami.action("Ping"))["Ping"] == "Pong" and not ami.shutting_down

        sim.stop_gracefully()
        sim.close_connection()  # and now the connection drops while it is stopping
        await trio.sleep(10)
        stats = ami.statistics()
        assert not ami.is_connected and stats.connect_failures >= 3
        assert stats.last_error.endswith("login refused: Asterisk is shutting down")
        sim.restart()  # back: the retries (4 s apart at most) log in again
        await ami.wait_connected(timeout=5)
        assert ami.generation == 2 and not ami.shutting_down
        await wait_for(lambda: ami.booted, timeout=5, step=0.01)
