"""The call tracker against the recorded event streams of a real Asterisk."""

import pytest

from dialer.calls import dispositions as d
from dialer.calls.tracker import CallTracker, Step, TrackedCall
from tests.transcripts import read_messages


def originate_action_id(messages):
    for msg in messages:
        if msg.name == "OriginateResponse":
            return msg.action_id
    raise AssertionError("no OriginateResponse")


def linked_id(messages):
    for msg in messages:
        if msg.name == "Newchannel":
            return msg["Linkedid"]
    return "never-created"


def other_id(messages, channel_id):
    for msg in messages:
        if msg.name == "Newchannel" and msg["Uniqueid"] != channel_id:
            return msg["Uniqueid"]
    return channel_id + "-2"


def replay(name, *, unattended=False):
    """Track the recording's Originate as if the dialer had chosen the
    ChannelId the recording shows, and feed it every message."""
    messages = read_messages(name)
    action_id = originate_action_id(messages)
    channel_id = linked_id(messages)
    call = TrackedCall(
        attempt_id=1, campaign_id=1, lead_id=1, action_id=action_id,
        channel_id=channel_id, other_channel_id=other_id(messages, channel_id),
        unattended=unattended,
    )
    tracker = CallTracker()
    tracker.add(call)
    steps = []
    for msg in messages:
        at = float(msg.get("Timestamp") or 0)
        if msg.kind == "response" and msg.action_id == action_id:
            steps += tracker.originated(action_id, at)
        elif msg.kind == "event":
            steps += tracker.handle(msg, at)
    return call, steps, tracker


@pytest.mark.parametrize(
    "name,disposition,cause,reason",
    [
        ("originate-busy", d.BUSY, 17, 5),
        ("originate-congestion", d.CONGESTION, 34, 8),
        ("originate-noanswer", d.NO_ANSWER, 19, 3),
        ("originate-invalid", d.INVALID_NUMBER, 1, 0),
        ("originate-no-route", d.FAILED, 0, 0),
        ("hangup-while-ringing", d.NO_ANSWER, 16, 0),
    ],
)
def test_unanswered_outcomes(name, disposition, cause, reason):
    call, steps, tracker = replay(name)
    assert call.disposition == disposition
    assert call.cause == cause
    assert call.reason == reason
    assert call.answered_at is None
    assert [s.step for s in steps][-1] == Step.ENDED
    assert Step.ANSWERED not in [s.step for s in steps]
    assert len(tracker) == 0  # ended calls are no longer tracked


def test_bad_technology_settles_once_no_channel_turned_up():
    call, steps, tracker = replay("originate-bad-tech")
    assert [s.step for s in steps] == [Step.ORIGINATED]
    response_at = call.settle_at - tracker.settle_after
    assert tracker.next_settle_time() == call.settle_at
    assert tracker.expire(call.settle_at - 0.001) == []
    ended = tracker.expire(call.settle_at)
    assert [s.step for s in ended] == [Step.ENDED]
    # settled after the wait, but ended when Asterisk reported the failure
    assert ended[0].at == response_at == call.ended_at
    assert call.disposition == d.FAILED
    assert len(tracker) == 0 and tracker.next_settle_time() is None


def test_busy_ends_only_after_the_last_channel_hangs_up():
    # The recording puts OriginateResponse between the two Hangups.
    messages = read_messages("originate-busy")
    call, steps, _ = replay("originate-busy")
    last_hangup = [m for m in messages if m.name == "Hangup"][-1]
    assert steps[-1].event == "Hangup"
    assert call.ended_at == float(last_hangup["Timestamp"])


@pytest.mark.parametrize(
    "name", ["originate-answered", "originate-answered-1", "originate-short-answer",
             "originate-channelid", "originate-queue-agent"],
)
def test_answered_calls_walk_every_step(name):
    call, steps, _ = replay(name)
    assert [s.step for s in steps] == [
        Step.ORIGINATED, Step.RINGING, Step.ANSWERED, Step.QUEUE_JOINED,
        Step.CONNECTED, Step.ENDED,
    ]
    times = [s.at for s in steps]
    assert times == sorted(times)
    assert call.agent.startswith("Agent")
    assert call.cause == 16
    assert call.time_to_agent is not None and call.time_to_agent >= 0


def test_agent_within_two_seconds_is_connected_and_later_is_dropped():
    call, _, _ = replay("originate-answered")
    assert call.time_to_agent <= 2.0
    assert call.disposition == d.CONNECTED

    # The same call, judged with a stricter limit than its measured wait.
    messages = read_messages("originate-answered")
    strict = CallTracker(drop_after=call.time_to_agent / 2 if call.time_to_agent else -1)
    again = TrackedCall(1, 1, 1, call.action_id, call.channel_id, call.other_channel_id)
    strict.add(again)
    for msg in messages:
        if msg.kind == "event":
            strict.handle(msg, float(msg.get("Timestamp") or 0))
    assert again.disposition == d.DROPPED


def test_channel_id_call_has_the_chosen_uniqueid():
    call, _, _ = replay("originate-channelid")
    assert call.channel_id == "lead-123-a"
    assert call.uniqueid == "lead-123-a"


def test_failed_originate_with_channel_id_matches_by_action_id():
    call, _, _ = replay("originate-channelid-invalid")
    assert call.channel_id == "lead-124-a"
    assert call.disposition == d.INVALID_NUMBER


def test_events_of_other_calls_are_ignored():
    messages = read_messages("originate-answered")
    tracker = CallTracker()
    stranger = TrackedCall(1, 1, 1, "not-this", "no-such-linkedid", "x")
    tracker.add(stranger)
    for msg in messages:
        if msg.kind == "event":
            assert tracker.handle(msg, 0.0) == []
    assert tracker.events_matched == 0
    assert stranger.phase == "ringing" and not stranger.ended


def test_burst_of_twenty_calls_each_gets_its_own_outcome():
    messages = read_messages("originate-burst-20")
    tracker = CallTracker()
    calls = {}
    # The recording did not set ChannelId; take the Linkedid Asterisk chose for
    # each call from its first Newchannel.
    number_of = {}
    for msg in messages:
        if msg.name == "Newchannel" and msg["Linkedid"] == msg["Uniqueid"]:
            number = msg["Channel"].split("/")[1].split("@")[0]
            number_of[msg["Linkedid"]] = number
    for linked, number in number_of.items():
        nn = number[-2:]
        call = TrackedCall(1, 1, 1, f"burst-{nn}", linked, linked + "-other")
        tracker.add(call)
        calls[number] = call
    for msg in messages:
        if msg.kind == "response" and (msg.action_id or "").startswith("burst-"):
            tracker.originated(msg.action_id, 0.0)
        elif msg.kind == "event":
            tracker.handle(msg, float(msg.get("Timestamp") or 0))
    # burst-18 is reported failed before its channels appear; they do appear.
    assert calls["15551240018"].disposition == d.INVALID_NUMBER
    expected = {
        "0": d.CONNECTED, "1": d.CONNECTED, "2": d.CONNECTED, "3": d.CONNECTED,
        "4": d.BUSY, "5": d.CONGESTION, "6": d.NO_ANSWER, "7": d.CONNECTED,
        "8": d.INVALID_NUMBER, "9": d.CONNECTED,
    }
    assert len(calls) == 20
    for number, call in calls.items():
        if call.ended and expected[number[-1]] == d.CONNECTED:
            # Three agents for a burst of answered calls: some wait too long.
            waited = call.time_to_agent
            if waited is not None and waited <= 2.0:
                assert call.disposition == d.CONNECTED, number
            else:
                assert call.disposition == d.DROPPED, number
        elif call.ended:
            assert call.disposition == expected[number[-1]], number
        else:
            # The recording stops while the long calls are still up.
            assert expected[number[-1]] == d.CONNECTED, number
    assert sum(c.ended for c in calls.values()) >= 10


def test_refused_originate_ends_failed():
    tracker = CallTracker()
    call = TrackedCall(1, 1, 1, "a1", "c1", "c2")
    tracker.add(call)
    steps = tracker.refused("a1", 5.0, "Permission denied")
    assert [s.step for s in steps] == [Step.ENDED]
    assert call.disposition == d.FAILED and call.cause_txt == "Permission denied"


def test_lost_call_is_unknown_unless_the_evidence_settles_it():
    tracker = CallTracker()
    ringing = TrackedCall(1, 1, 1, "a1", "c1", "c2", ringing_at=1.0)
    connected = TrackedCall(2, 1, 2, "a2", "c3", "c4", answered_at=1.0, connected_at=2.5)
    tracker.add(ringing)
    tracker.add(connected)
    tracker.resolve_lost(ringing, 10.0)
    tracker.resolve_lost(connected, 10.0)
    assert ringing.disposition == d.UNKNOWN
    assert connected.disposition == d.CONNECTED
    assert len(tracker) == 0


def test_duplicate_registration_is_refused():
    tracker = CallTracker()
    tracker.add(TrackedCall(1, 1, 1, "a1", "c1", "c2"))
    with pytest.raises(ValueError):
        tracker.add(TrackedCall(2, 1, 1, "a1", "c9", "c8"))


def test_steps_stay_in_order_when_event_times_are_asterisks_and_the_response_is_read_late():
    from dialer.ami.codec.message import Message

    def event(name, **headers):
        return Message([("Event", name)] + list(headers.items()))

    tracker = CallTracker()
    call = TrackedCall(attempt_id=1, campaign_id=1, lead_id=1, action_id="a-1",
                       channel_id="c-1", other_channel_id="c-2")
    tracker.add(call)
    # Asterisk raised the call's first events at 10.001 and 10.002; the
    # Originate's response (no Timestamp of its own) was read at 10.050.
    tracker.handle(event("Newchannel", Uniqueid="c-1", Linkedid="c-1", Channel="Local/x;1"), 10.001)
    tracker.handle(event("DialBegin", DestUniqueid="c-1", DestLinkedid="c-1"), 10.002)
    tracker.originated("a-1", 10.050)
    assert call.originated_at == 10.001 <= call.ringing_at == 10.002
    # An event Asterisk stamped before a response read earlier never goes back in time.
    other = TrackedCall(attempt_id=2, campaign_id=1, lead_id=2, action_id="a-2",
                        channel_id="d-1", other_channel_id="d-2")
    tracker.add(other)
    tracker.originated("a-2", 20.050)
    tracker.handle(event("DialBegin", DestUniqueid="d-1", DestLinkedid="d-1"), 20.040)
    assert other.ringing_at == other.originated_at == 20.050
