"""Claiming leads: dialable-now rules, leases, atomicity, outcomes written back."""

import datetime as dt

import pytest
import sqlalchemy as sa

from dialer.leads import hopper
from dialer.calls import dispositions as d
from dialer.calls.outcomes import RetryRules, next_lead_state, record
from dialer.calls.tracker import CallTracker, TrackedCall
from dialer.campaigns import create_campaign
from dialer.leads.dnc import add_dnc
from dialer.models import CallAttempt, Lead

# A Wednesday, 15:00 UTC: 10:00 in New York, 07:00 in Los Angeles.
NOW = dt.datetime(2026, 11, 25, 15, 0)
NY, LA = "America/New_York", "America/Los_Angeles"


def add_leads(session, campaign, specs):
    """specs: (phone, timezone, state, next_attempt_at, attempts, priority)."""
    leads = []
    for phone, tz, state, due, attempts, priority in specs:
        lead = Lead(campaign_id=campaign.id, phone_e164=phone, timezone=tz, state=state,
                    next_attempt_at=due, attempts=attempts, priority=priority)
        session.add(lead)
        leads.append(lead)
    session.flush()
    return leads


@pytest.fixture
def campaign(sessions):
    with sessions.begin() as s:
        c = create_campaign(s, "spring", max_attempts=3)
        c.state = "running"
    return c


def claim(sessions, campaign, limit=10, engine_id="e1", now=NOW):
    with sessions.begin() as s:
        c = s.merge(campaign)
        zones = hopper.campaign_timezones(s, c.id)
        return hopper.claim_leads(s, c, engine_id=engine_id, now=now, limit=limit, timezones=zones)


def test_claims_only_what_is_dialable_now(sessions, campaign):
    due = NOW - dt.timedelta(minutes=5)
    with sessions.begin() as s:
        add_leads(s, campaign, [
            ("+12125550101", NY, "new", due, 0, 0),          # dialable
            ("+12125550102", NY, "retry", due, 1, 0),        # dialable
            ("+12125550103", NY, "retry", NOW + dt.timedelta(hours=1), 1, 0),  # not yet due
            ("+13105550104", LA, "new", due, 0, 0),          # 07:00 local: window closed
            ("+12125550105", NY, "done", None, 1, 0),        # finished
            ("+12125550106", NY, "new", due, 0, 0),          # on the DNC list
            ("+12125550107", NY, "retry", due, 3, 0),        # out of attempts
        ])
        add_dnc(s, ["+12125550106"])
    got = claim(sessions, campaign)
    assert sorted(lead.phone_e164 for lead in got) == ["+12125550101", "+12125550102"]
    with sessions.begin() as s:
        rows = {l.phone_e164: l for l in s.scalars(sa.select(Lead))}
        assert rows["+12125550101"].state == "claimed"
        assert rows["+12125550101"].lease_owner == "e1"
        assert rows["+12125550101"].next_attempt_at is None
        assert rows["+13105550104"].state == "new"  # skipped, not claimed and released


def test_window_opens_later_in_the_west(sessions, campaign):
    with sessions.begin() as s:
        add_leads(s, campaign, [("+13105550104", LA, "new", NOW - dt.timedelta(hours=1), 0, 0)])
    assert claim(sessions, campaign) == []
    later = NOW + dt.timedelta(hours=1)  # 08:00 in Los Angeles
    assert [l.phone_e164 for l in claim(sessions, campaign, now=later)] == ["+13105550104"]


def test_oldest_due_first_then_priority_and_limit(sessions, campaign):
    base = NOW - dt.timedelta(hours=1)
    with sessions.begin() as s:
        add_leads(s, campaign, [
            ("+12125550111", NY, "new", base, 0, 0),
            ("+12125550112", NY, "new", base, 0, 9),
            ("+12125550113", NY, "new", base - dt.timedelta(minutes=1), 0, 0),
        ])
    got = claim(sessions, campaign, limit=2)
    assert [l.phone_e164 for l in got] == ["+12125550113", "+12125550112"]


def test_a_lead_is_claimed_once(sessions, campaign):
    with sessions.begin() as s:
        add_leads(s, campaign, [("+12125550121", NY, "new", NOW, 0, 0)])
    first = claim(sessions, campaign, engine_id="e1")
    second = claim(sessions, campaign, engine_id="e2")
    assert len(first) == 1 and second == []


def test_no_redial_within_72_hours_of_an_abandoned_call(sessions, campaign):
    with sessions.begin() as s:
        (lead,) = add_leads(s, campaign, [("+12125550131", NY, "retry", NOW, 1, 0)])
        s.add(CallAttempt(lead_id=lead.id, campaign_id=campaign.id, phone_e164=lead.phone_e164,
                          attempt_no=1, action_id="a1", channel_id="c1", engine_id="e0",
                          server="pbx", connection="pbx#1", state="ended",
                          ended_at=NOW - dt.timedelta(hours=71), disposition="dropped"))
    assert claim(sessions, campaign) == []
    assert len(claim(sessions, campaign, now=NOW + dt.timedelta(hours=1, seconds=1))) == 1


def test_paused_campaign_claims_nothing(sessions, campaign):
    with sessions.begin() as s:
        add_leads(s, campaign, [("+12125550141", NY, "new", NOW, 0, 0)])
        s.merge(campaign).state = "paused"
    campaign.state = "paused"
    assert claim(sessions, campaign) == []


def test_release_and_expired_leases_hand_leads_back(sessions, campaign):
    with sessions.begin() as s:
        add_leads(s, campaign, [
            ("+12125550151", NY, "new", NOW, 0, 0),
            ("+12125550152", NY, "retry", NOW, 1, 0),
        ])
    got = claim(sessions, campaign, engine_id="e1")
    with sessions.begin() as s:
        assert hopper.release_leads(s, got[:1], engine_id="e1", now=NOW) == 1
        # the other one's engine dies: its lease runs out
        assert hopper.reclaim_expired(s, now=NOW + dt.timedelta(minutes=1)) == 0
        assert hopper.reclaim_expired(s, now=NOW + dt.timedelta(minutes=3)) == 1
        states = {l.phone_e164: (l.state, l.lease_owner) for l in s.scalars(sa.select(Lead))}
    assert states == {"+12125550151": ("new", None), "+12125550152": ("retry", None)}


def test_attempts_written_before_dialing_and_outcome_schedules_retry(sessions, campaign):
    with sessions.begin() as s:
        add_leads(s, campaign, [("+12125550161", NY, "new", NOW, 0, 0)])
    (lead,) = claim(sessions, campaign)
    with sessions.begin() as s:
        (attempt,) = hopper.start_attempts(s, s.merge(campaign), [(lead, "pbx1", "pbx1#1")],
                                           engine_id="e1", now=NOW)
    with sessions.begin() as s:
        row = s.get(CallAttempt, attempt.attempt_id)
        assert row.state == "queued" and row.action_id == attempt.action_id
        assert s.get(Lead, lead.id).state == "dialing"
        assert s.get(Lead, lead.id).attempts == 1

    tracker = CallTracker()
    call = TrackedCall(attempt.attempt_id, campaign.id, lead.id, attempt.action_id,
                       attempt.channel_id, attempt.other_channel_id)
    tracker.add(call)
    t0 = NOW.replace(tzinfo=dt.UTC).timestamp()
    steps = tracker.originated(attempt.action_id, t0 + 0.01)
    steps += tracker.refused(attempt.action_id, t0 + 0.02, "busy here")  # ends it
    rules = {campaign.id: RetryRules(3, {"failed": 1800})}
    with sessions.begin() as s:
        ended = record(s, steps, rules=rules)
        assert ended == [call]
    with sessions.begin() as s:
        row = s.get(CallAttempt, attempt.attempt_id)
        assert row.state == "ended" and row.disposition == "failed"
        assert row.originated_at == NOW + dt.timedelta(seconds=0.01)
        l = s.get(Lead, lead.id)
        assert l.state == "retry" and l.last_disposition == "failed"
        assert l.next_attempt_at == NOW + dt.timedelta(seconds=0.02 + 1800)
        assert l.lease_owner is None
    # replaying the same batch changes nothing
    with sessions.begin() as s:
        record(s, steps, rules=rules)
        assert s.get(CallAttempt, attempt.attempt_id).ended_at == NOW + dt.timedelta(seconds=0.02)


@pytest.mark.parametrize(
    "disposition,attempts,expected",
    [
        (d.CONNECTED, 1, ("done", None)),
        (d.INVALID_NUMBER, 1, ("done", None)),
        (d.BUSY, 1, ("retry", 600)),
        (d.BUSY, 3, ("exhausted", None)),
        (d.DROPPED, 1, ("retry", 72 * 3600)),
        (d.CONGESTION, 1, ("done", None)),  # no rule for it: not retried
    ],
)
def test_next_lead_state(disposition, attempts, expected):
    rules = RetryRules(3, {"busy": 600, "dropped": 60})
    state, at = next_lead_state(disposition, attempts, rules, NOW)
    want_state, delay = expected
    assert state == want_state
    assert at == (None if delay is None else NOW + dt.timedelta(seconds=delay))


def test_an_attempt_never_sent_is_undone(sessions, campaign):
    with sessions.begin() as s:
        add_leads(s, campaign, [("+12125550171", NY, "retry", NOW, 1, 0)])
    (lead,) = claim(sessions, campaign)
    with sessions.begin() as s:
        (attempt,) = hopper.start_attempts(s, s.merge(campaign), [(lead, "pbx1", "pbx1#1")],
                                           engine_id="e1", now=NOW)
    later = NOW + dt.timedelta(seconds=5)
    with sessions.begin() as s:
        assert hopper.cancel_attempts(s, [(attempt.attempt_id, lead.id)], now=later) == 1
    with sessions.begin() as s:
        assert s.get(CallAttempt, attempt.attempt_id) is None
        row = s.get(Lead, lead.id)
        assert (row.state, row.attempts, row.next_attempt_at, row.lease_owner) == ("retry", 1, later, None)
