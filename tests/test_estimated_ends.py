"""Calls whose end no engine saw: resolved from the dialplan's hangup record,
or estimated and flagged so; either way they count in the abandon windows,
the 72-hour rule and retry timing like any other attempt."""

import datetime as dt

import pytest
import sqlalchemy as sa

from dialer.leads import hopper
from dialer.calls.outcomes import RetryRules, record, to_datetime
from dialer.calls.tracker import CallTracker, TrackedCall
from dialer.campaigns import create_campaign
from dialer.engine.reconciler import parse_hangup_record as _parse_hangup_record
from dialer.engine.watcher import abandon_figures as _abandon_figures
from dialer.models import CallAttempt, Lead

NOW = dt.datetime(2026, 11, 25, 15, 0)  # 10:00 in New York
T0 = NOW.replace(tzinfo=dt.UTC).timestamp()
RULES = RetryRules(3, {"dropped": 259200, "no_answer": 3600, "unknown": 1800})


def setup(sessions, phone="+12125550101"):
    with sessions.begin() as s:
        c = create_campaign(s, "spring", max_attempts=3, retry_delays=dict(RULES.retry_delays))
        c.state = "running"
        s.flush()
        lead = Lead(campaign_id=c.id, phone_e164=phone, timezone="America/New_York", state="dialing",
                    attempts=1)
        s.add(lead)
        s.flush()
        a = CallAttempt(lead_id=lead.id, campaign_id=c.id, phone_e164=phone, attempt_no=1,
                        action_id="a1", channel_id="c1", other_channel_id="c2", engine_id="e",
                        server="pbx1", connection="pbx1#1", state="originated",
                        created_at=to_datetime(T0), originated_at=to_datetime(T0))
        s.add(a)
        s.flush()
        call = TrackedCall(attempt_id=a.id, campaign_id=c.id, lead_id=lead.id, action_id="a1",
                           channel_id="c1", other_channel_id="c2", server="pbx1",
                           queued_at=T0, originated_at=T0)
        return c.id, lead.id, a.id, call


def write(sessions, transitions, campaign_id):
    with sessions.begin() as s:
        record(s, transitions, rules={campaign_id: RULES})


def attempt_and_lead(sessions, attempt_id, lead_id):
    with sessions.begin() as s:
        a = s.get(CallAttempt, attempt_id)
        lead = s.get(Lead, lead_id)
        s.expunge_all()
    return a, lead


def test_an_answered_call_ended_unseen_is_dropped_from_its_record_and_counts(sessions):
    cid, lid, aid, call = setup(sessions)
    tracker = CallTracker()
    tracker.add(call)
    ended = T0 + 12.345
    # Left the queue without an agent ("TIMEOUT"): abandoned, per Asterisk.
    write(sessions, tracker.resolve_recorded(call, ended, 16, "TIMEOUT", answered_estimate=T0), cid)
    a, lead = attempt_and_lead(sessions, aid, lid)
    assert (a.disposition, a.cause, a.ended_at) == ("dropped", 16, to_datetime(ended))
    assert a.answered_at == to_datetime(T0)
    assert a.estimated == "answered_at,ringing_at"  # the end is Asterisk's, the answer time ours
    # the abandon windows count it
    with sessions.begin() as s:
        assert _abandon_figures(s, cid, to_datetime(ended + 60)) == (1, 1, 1, 1, 1, 1)  # 30 days, 24 hours, the last hour
    # retried no sooner than 72 hours after the end it recorded
    assert (lead.state, lead.next_attempt_at) == ("retry", to_datetime(ended) + dt.timedelta(hours=72))
    # and the number is not claimed in those 72 hours, by any campaign
    with sessions.begin() as s:
        c2 = create_campaign(s, "autumn")
        c2.state = "running"
        s.flush()
        s.add(Lead(campaign_id=c2.id, phone_e164="+12125550101", timezone="America/New_York",
                   state="new", next_attempt_at=NOW))
        s.flush()
        got = hopper.claim_leads(s, c2, engine_id="e2", now=to_datetime(ended + 3600), limit=5,
                                 timezones=["America/New_York"])
    assert got == []


def test_an_agent_record_is_connected(sessions):
    cid, lid, aid, call = setup(sessions)
    tracker = CallTracker()
    tracker.add(call)
    write(sessions, tracker.resolve_recorded(call, T0 + 30, 16, "agent", answered_estimate=T0 + 1), cid)
    a, lead = attempt_and_lead(sessions, aid, lid)
    assert a.disposition == "connected" and lead.state == "done"
    with sessions.begin() as s:
        assert _abandon_figures(s, cid, to_datetime(T0 + 60)) == (0, 1, 0, 1, 0, 1)


def test_an_end_nobody_saw_is_flagged_estimated_and_timed_for_retry(sessions):
    cid, lid, aid, call = setup(sessions)
    tracker = CallTracker()
    tracker.add(call)
    end = T0 + 25  # e.g. the ring timeout
    write(sessions, tracker.resolve_lost(call, end), cid)
    a, lead = attempt_and_lead(sessions, aid, lid)
    assert (a.disposition, a.ended_at, a.estimated) == ("unknown", to_datetime(end), "ended_at")
    assert (lead.state, lead.next_attempt_at) == ("retry", to_datetime(end) + dt.timedelta(seconds=1800))


def test_an_estimate_already_stored_is_kept_when_more_are_added(sessions):
    cid, lid, aid, call = setup(sessions)
    tracker = CallTracker()
    tracker.add(call)
    call.estimated.add("answered_at")
    call.answered_at = T0 + 3
    from dialer.calls.tracker import Step, Transition
    write(sessions, [Transition(call, Step.ANSWERED, T0 + 3)], cid)
    assert attempt_and_lead(sessions, aid, lid)[0].estimated == "answered_at"
    write(sessions, tracker.resolve_lost(call, T0 + 40), cid)
    assert attempt_and_lead(sessions, aid, lid)[0].estimated == "answered_at,ended_at"


@pytest.mark.parametrize("value, parsed", [
    ("1796278756.445,16,queue", (1796278756.445, 16, "queue")),
    ("1796278756.445,,agent", (1796278756.445, None, "agent")),
    ("1796278756,17,TIMEOUT", (1796278756.0, 17, "TIMEOUT")),
    ("garbage", None), ("x,16,queue", None), ("1.5,abc,queue", None), ("", None), (None, None),
    ("nan,16,queue", None), ("-5,16,queue", None),
])
def test_hangup_record_values(value, parsed):
    assert _parse_hangup_record(value) == parsed


def test_a_call_whose_hangups_were_seen_ends_with_them_when_only_its_result_was_missed(sessions):
    cid, lid, aid, call = setup(sessions)
    tracker = CallTracker()
    tracker.add(call)
    from dialer.ami.codec.message import Message
    for name, headers in [
        ("Newchannel", [("Uniqueid", "c1"), ("Linkedid", "c1"), ("Channel", "Local/1@carrier-1;1")]),
        ("Newchannel", [("Uniqueid", "c2"), ("Linkedid", "c1"), ("Channel", "Local/1@carrier-1;2")]),
        ("Hangup", [("Uniqueid", "c2"), ("Linkedid", "c1"), ("Cause", "17"), ("Cause-txt", "User busy")]),
        ("Hangup", [("Uniqueid", "c1"), ("Linkedid", "c1"), ("Cause", "17"), ("Cause-txt", "User busy")]),
    ]:
        assert tracker.handle(Message([("Event", name), *headers]), T0 + 2) == []  # no OriginateResponse yet
    write(sessions, tracker.resolve_lost(call, T0 + 90), cid)
    a, _ = attempt_and_lead(sessions, aid, lid)
    assert (a.disposition, a.ended_at, a.estimated) == ("busy", to_datetime(T0 + 2), None)
