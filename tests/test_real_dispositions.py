"""Every disposition the dialer records, from real calls on a real Asterisk,
with the attempts' times checked against Asterisk's own event timestamps."""

from __future__ import annotations

import pytest
import trio

from dialer.engine import Engine
from tests.real_tier import (
    EventLog, attempts, campaign, epoch, fast_settings, phones, sessions_for,
)

pytestmark = pytest.mark.asterisk

#: within this many seconds of Asterisk's own time of the same step
CLOCK_SLACK = 1.0


def asterisk_times(log: EventLog, channel_id: str) -> dict[str, float]:
    """When Asterisk says each step of one call happened (Timestamp: headers)."""
    out: dict[str, float] = {}
    events = log.call_events(channel_id)
    for e in events:
        name, at = e.name, log.at(e)
        if name == "Newchannel" and e.get("Uniqueid") == channel_id:
            out.setdefault("originated_at", at)
        elif name in ("DialBegin", "DialState", "DialEnd") and e.get("DestUniqueid") == channel_id:
            out.setdefault("ringing_at", at)
            if name == "DialEnd" and e.get("DialStatus") == "ANSWER":
                out.setdefault("answered_at", at)
        elif name == "QueueCallerJoin" and e.get("Uniqueid") == channel_id:
            out.setdefault("queue_joined_at", at)
        elif name == "AgentConnect" and e.get("Uniqueid") == channel_id:
            out.setdefault("connected_at", at)
        elif name in ("HangupRequest", "SoftHangupRequest"):
            # A Hangup sent for a ringing originated leg shows on its other half.
            out.setdefault("hangup_request", at)
    response = [e for e in log.named("OriginateResponse") if e.get("Uniqueid") == channel_id]
    hangups = [log.at(e) for e in events if e.name == "Hangup"]
    if response:
        out["response"] = log.at(response[0])
        if response[0].get("Reason") == "4":
            out.setdefault("answered_at", log.at(response[0]))
    if hangups or response:
        out["ended_at"] = max(hangups + [out.get("response", 0.0)])
    return out


def pause_agents(asterisk, paused: bool) -> None:
    for i in range(1, asterisk.agents + 1):
        asterisk.action("QueuePause", Queue="agents", Interface=f"Local/agent{i}@agents",
                        Paused="true" if paused else "false")


async def test_every_disposition_from_real_calls(asterisk, sqlite_url):
    engine_db, sessions = sessions_for(sqlite_url)
    # One campaign per way of reaching the dialplan; all of them dial at once.
    campaign(sessions, "digits", phones("04568") + ["+442079460000"], mode="progressive",
             dial_ratio=10, max_dial_level=10, max_concurrent=20, ring_timeout=15)
    campaign(sessions, "drops", phones("0", start=20), mode="progressive",
             context="dialer-connect-busy")
    campaign(sessions, "badtech", phones("0", start=30), mode="progressive",
             channel="Bogus/{digits}")
    campaign(sessions, "cut", phones("6", start=40), mode="predictive", ring_timeout=30,
             hangup_after=15)
    engine = Engine(sessions, [asterisk.config_for_dialer()], settings=fast_settings(),
                    until_done=True)
    try:
        with EventLog(asterisk) as log:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(engine.run)
                # Once the answered call is with its agent and every call is out,
                # the agents pause: the ringing call of "cut" will find nobody,
                # so pacing hangs it up once it has rung 15 s.
                with trio.fail_after(10):
                    while log.first("AgentConnect") is None or engine.counters["originates"] < 9:
                        await trio.sleep(0.05)
                await trio.to_thread.run_sync(pause_agents, asterisk, True)
                with trio.fail_after(25):
                    while engine.counters["hangups"] == 0:
                        await trio.sleep(0.1)
                await trio.to_thread.run_sync(pause_agents, asterisk, False)
                with trio.fail_after(20):
                    while engine.pool is None or nursery.child_tasks:
                        await trio.sleep(0.1)
    finally:
        engine_db.dispose()
        pause_agents(asterisk, False)
    assert log.error is None
    rows = {a.phone_e164: a for a in attempts(sessions)}
    expected = {
        "+12125550000": "connected",     # answered, an agent took it at once
        "+12125550014": "busy",
        "+12125550025": "congestion",
        "+12125550036": "no_answer",     # rang out its 15 s
        "+12125550048": "invalid_number",  # the carrier says unallocated (cause 1)
        "+442079460000": "failed",       # no route in the dialplan: Asterisk says Reason 0, cause 0
        "+12125550200": "dropped",       # answered, no agent within 2 s
        "+12125550300": "failed",        # a channel technology that does not exist
        "+12125550406": "no_answer",     # cut by pacing while it rang
    }
    assert {p: a.disposition for p, a in rows.items()} == expected
    by = {p: a for p, a in rows.items()}
    assert by["+12125550014"].cause == 17 and by["+12125550025"].cause == 34
    assert by["+12125550048"].cause == 1 and by["+12125550036"].originate_reason == 3
    cut = by["+12125550406"]
    assert cut.hangup_at is not None and engine.counters["hangups"] == 1
    rang = epoch(cut.ended_at) - epoch(cut.ringing_at)
    assert 15 <= rang < 20, rang          # at least 15 s of ringing, well before its 30 s
    assert all(a.hangup_at is None for p, a in rows.items() if p != "+12125550406")
    dropped = by["+12125550200"]
    assert dropped.answered_at is not None and dropped.connected_at is None
    connected = by["+12125550000"]
    assert connected.time_to_agent is not None and 0 <= connected.time_to_agent < 2
    assert connected.agent and connected.agent.startswith("Agent")

    # Each step the dialer stored, against Asterisk's Timestamp of the same step.
    columns = ("originated_at", "ringing_at", "answered_at", "queue_joined_at", "connected_at",
               "ended_at")
    compared = 0
    for phone, a in rows.items():
        theirs = asterisk_times(log, a.channel_id)
        for column in columns:
            ours = epoch(getattr(a, column))
            if column not in theirs:
                # Only steps that did not happen lack an event (originated: no channel at all).
                assert ours is None or column == "originated_at", (phone, column)
                continue
            assert ours is not None, (phone, column)
            assert abs(ours - theirs[column]) <= CLOCK_SLACK, (phone, column, ours, theirs[column])
            compared += 1
        if a.hangup_at is not None:
            assert abs(epoch(a.hangup_at) - theirs["hangup_request"]) <= CLOCK_SLACK
    # Every step stored was compared, but the bad technology's Originate (no channel, no event).
    stored = sum(1 for a in rows.values() for column in columns if getattr(a, column) is not None)
    assert compared == stored - 1
