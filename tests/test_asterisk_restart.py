"""A real Asterisk stopped (gracefully, as for maintenance, and with SIGKILL) and
restarted under a running campaign, and a channel template it cannot dial."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
import trio

from dialer.engine import Engine, EngineSettings
from dialer.models import CallAttempt, Campaign, Lead, SupervisorCommand
from tests.engine_harness import lead_dispositions, make_campaign, numbers

pytestmark = pytest.mark.asterisk

BY_DIGIT = {
    "0": {"connected", "dropped"}, "1": {"connected", "dropped"}, "2": {"connected", "dropped"},
    "3": {"connected", "dropped"}, "4": {"busy"}, "5": {"congestion"}, "6": {"no_answer"},
    "7": {"connected", "dropped"}, "8": {"invalid_number"}, "9": {"connected", "dropped"},
}


def dialer_engine(sqlite_sessions, instance, **kwargs) -> Engine:
    config = instance.config_for_dialer(connections=2, originate_rate=10, burst=2)
    settings = EngineSettings(lease=30.0, poll_interval=0.2, housekeeping_interval=1.0)
    return Engine(sqlite_sessions, [config], settings=settings, **kwargs)


def campaign(sqlite_sessions, phones, **settings):
    settings.setdefault("mode", "unattended")
    settings.setdefault("queue", None)
    settings.setdefault("ring_timeout", 15)
    # "now" is the real time here: put the leads where it is midday.
    from tests.engine_harness import business_zone
    return make_campaign(sqlite_sessions, phones=phones, tz=business_zone(), **settings)


def rows(sqlite_sessions):
    with sqlite_sessions.begin() as s:
        out = list(s.scalars(sa.select(CallAttempt).order_by(CallAttempt.id)))
        s.expunge_all()
    return out


async def run_until_paused(engine, sqlite_sessions, *, settle: float = 0.0) -> None:
    """Run ``engine`` until its campaign is paused (by the breaker) and every call it
    placed is resolved, then ``settle`` seconds more, then stop it."""
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        with trio.fail_after(60):
            while True:
                with sqlite_sessions.begin() as s:
                    if s.scalar(sa.select(Campaign.state)) == "paused":
                        break
                await trio.sleep(0.2)
        with trio.fail_after(30):
            while not engine.idle():
                await trio.sleep(0.2)
        await trio.sleep(settle)
        nursery.cancel_scope.cancel()


def epoch(value):
    import datetime as dt
    return None if value is None else value.replace(tzinfo=dt.UTC).timestamp()


async def test_graceful_stop_and_restart_mid_campaign(sqlite_sessions, asterisk_factory):
    """Calls up when the stop begins are followed to their end; the Originates Asterisk
    refuses meanwhile hand their leads back uncharged; nothing is sent while it is down;
    dialing resumes once it is back, and every lead is dialed once."""
    instance = asterisk_factory()
    instance.set_agent_talk(2)
    phones = numbers(30, prefix="+1212556")
    campaign(sqlite_sessions, phones, max_concurrent=6)
    engine = dialer_engine(sqlite_sessions, instance, until_done=True)
    marks: dict[str, float] = {}

    async def maintenance():
        await trio.sleep(2.5)
        marks["stop"] = time.time()
        await trio.to_thread.run_sync(instance.stop, True)
        marks["down"] = time.time()
        await trio.sleep(1)
        await trio.to_thread.run_sync(instance.start)
        marks["up"] = time.time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(maintenance)
        with trio.fail_after(240):
            await engine.run()
    attempts = rows(sqlite_sessions)
    assert all(a.ended_at is not None for a in attempts)
    refused = [a for a in attempts if a.response_message is not None]
    assert all(a.response_message == "Asterisk is shutting down" and not a.charged for a in refused)
    assert len(refused) <= 2, [a.response_message for a in refused]
    charged = [a for a in attempts if a.charged]
    assert sorted(a.phone_e164 for a in charged) == sorted(phones)  # once each
    outcomes = lead_dispositions(sqlite_sessions)
    assert all(outcomes[p][1] in BY_DIGIT[p[-1]] for p in phones), outcomes
    # Calls up when the stop began ended normally (Asterisk waits for them).
    before = [a for a in charged if epoch(a.created_at) < marks["stop"]]
    after = [a for a in charged if epoch(a.created_at) > marks["stop"]]
    assert before and after
    assert all(a.disposition != "unknown" for a in attempts)
    # Nothing was placed between the start of the stop and the restart.
    assert all(epoch(a.originated_at) >= marks["up"] - 1.0 for a in after), (marks, [
        (a.created_at, a.originated_at) for a in after])
    with sqlite_sessions.begin() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(SupervisorCommand)) == 0
        assert s.scalar(sa.select(Campaign.state)) == "done"
    assert engine.counters["refused_stopping"] == len(refused)
    connections = engine.pool.statistics()
    assert all(c["reconnects"] >= 1 for c in connections)


async def test_sigkill_and_restart_mid_campaign(sqlite_sessions, asterisk_factory):
    """Asterisk killed with calls up: no Originate is resent, the calls in flight are
    resolved once it is back, and the rest of the campaign is dialed."""
    instance = asterisk_factory()
    instance.set_agent_talk(3)
    phones = numbers(30, prefix="+1212557")
    campaign(sqlite_sessions, phones, max_concurrent=6)
    engine = dialer_engine(sqlite_sessions, instance, until_done=True)
    marks: dict[str, float] = {}

    async def crash():
        await trio.sleep(2.5)
        marks["kill"] = time.time()
        in_flight = [c.attempt_id for c in engine.tracker.calls()]
        marks["in_flight"] = len(in_flight)
        instance.kill()
        await trio.sleep(2)
        await trio.to_thread.run_sync(instance.start)
        marks["up"] = time.time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(crash)
        with trio.fail_after(240):
            await engine.run()
    assert marks["in_flight"] >= 1
    attempts = rows(sqlite_sessions)
    assert all(a.ended_at is not None for a in attempts)
    per_lead: dict[int, int] = {}
    for a in attempts:
        per_lead[a.lead_id] = per_lead.get(a.lead_id, 0) + 1
    assert set(per_lead.values()) == {1}  # nothing dialed twice: max_attempts is 1
    assert len(per_lead) == len(phones)
    cut = [a for a in attempts if epoch(a.created_at) < marks["kill"] and
           (a.ended_at is None or epoch(a.ended_at) >= marks["kill"])]
    assert cut  # some calls were up when Asterisk died, and they were resolved
    later = [a for a in attempts if epoch(a.created_at) > marks["kill"]]
    assert later and all(epoch(a.originated_at) >= marks["up"] - 1.0 for a in later)
    outcomes = lead_dispositions(sqlite_sessions)
    assert all(outcomes[a.phone_e164][1] in BY_DIGIT[a.phone_e164[-1]] for a in later)
    assert engine.counters["refused"] == 0


async def test_a_channel_template_asterisk_cannot_dial_pauses_the_campaign(sqlite_sessions, asterisk_factory):
    """PJSIP on an Asterisk without it: every call fails at once; the breaker pauses
    the campaign, says why, and no lead is charged or parked."""
    instance = asterisk_factory()
    phones = numbers(40, prefix="+1212558")
    campaign(sqlite_sessions, phones, max_concurrent=5, channel="PJSIP/{digits}@carrier")
    engine = dialer_engine(sqlite_sessions, instance)
    await run_until_paused(engine, sqlite_sessions, settle=0.5)
    attempts = rows(sqlite_sessions)
    assert 20 <= len(attempts) <= 25
    assert {(a.disposition, a.originate_reason, a.charged) for a in attempts} == {("failed", 0, False)}
    with sqlite_sessions.begin() as s:
        assert {(l.state, l.attempts) for l in s.scalars(sa.select(Lead))} == {("new", 0)}
        (pause,) = s.scalars(sa.select(SupervisorCommand)).all()
    assert pause.command == "pause" and pause.issued_by == f"engine {engine.engine_id}"
    assert "20 calls in a row failed at once" in pause.reason
    assert "can this Asterisk dial 'PJSIP/{digits}@carrier'?" in pause.reason


async def test_originates_asterisk_refuses_are_not_charged_and_pause_the_campaign(sqlite_sessions, asterisk_factory):
    """A context that does not exist: Asterisk answers each Originate with Response: Error.
    The refusals are recorded with its message, charge no lead, and 20 of them pause the
    campaign."""
    instance = asterisk_factory()
    phones = numbers(30, prefix="+1212554")
    campaign(sqlite_sessions, phones, max_concurrent=5, context="no-such-context")
    engine = dialer_engine(sqlite_sessions, instance)
    await run_until_paused(engine, sqlite_sessions)
    attempts = rows(sqlite_sessions)
    assert len(attempts) == 20
    assert {(a.disposition, a.response_message, a.charged, a.originated_at) for a in attempts} == {
        ("failed", "Extension does not exist.", False, None)}
    with sqlite_sessions.begin() as s:
        assert {(l.state, l.attempts) for l in s.scalars(sa.select(Lead))} == {("new", 0)}
        (pause,) = s.scalars(sa.select(SupervisorCommand)).all()
    assert pause.reason == ("circuit breaker: 20 calls in a row failed at once; last: Asterisk"
                            " refused the Originate: Extension does not exist.")
