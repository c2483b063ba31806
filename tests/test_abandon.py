"""The abandon rate: one definition, the same figures in pacing, status, report and live state."""

import datetime as dt
import time

import pytest
import sqlalchemy as sa

from dialer import reports
from dialer.compliance import abandon, rules
from dialer.campaigns import create_campaign, get_campaign
from dialer.cli.status import collect
from dialer.engine.watcher import abandon_figures as _abandon_figures
from dialer.models import CallAttempt, Lead

NOW = dt.datetime(2026, 11, 26, 12, 0, 0)
H = dt.timedelta(hours=1)
D = dt.timedelta(days=1)


def _attempt(n, lead, *, ended, disp, answered=True, created=None):
    created = created or (ended - dt.timedelta(seconds=30) if ended else NOW - dt.timedelta(seconds=30))
    return CallAttempt(
        lead_id=lead.id, campaign_id=lead.campaign_id, phone_e164=lead.phone_e164, attempt_no=1,
        action_id=f"a{lead.campaign_id}-{n}", channel_id=f"c{lead.campaign_id}-{n}", engine_id="e1",
        server="pbx1", connection="pbx1#1", state="ended" if disp else "answered",
        created_at=created, originated_at=created,
        answered_at=created + dt.timedelta(seconds=10) if answered else None,
        ended_at=ended, disposition=disp,
    )


# (ended at, disposition, answered): what each case tests is in the expectations below.
CASES = [
    (NOW - 1 * H, "dropped", True),            # 24 h, 30 d
    (NOW - 2 * H, "connected", True),          # 24 h, 30 d
    (NOW - 3 * H, "connected", True),          # 24 h, 30 d
    (NOW - 24 * H, "connected", True),         # exactly 24 h old: inside both
    (NOW - 24 * H - H, "dropped", True),       # 30 d only
    (NOW - 10 * D, "dropped", True),           # 30 d only
    (NOW - 10 * D, "unknown", True),           # answered, end unknown: answered, not abandoned
    (NOW - 30 * D, "connected", True),         # exactly 30 d old: inside 30 d
    (NOW - 30 * D - H, "dropped", True),       # outside both; counts for the campaign's life
    (NOW - 4 * H, "no_answer", False),         # not answered: neither
    (NOW - 5 * H, "busy", False),
    (None, None, True),                        # answered, still in progress: not counted yet
]
EXPECTED = {"rolling_30d": (3, 8), "last_24h": (1, 4), "life": (4, 9)}


def _fill(session, name, cases, first=0):
    c = create_campaign(session, name, channel="Local/{digits}@carrier", queue="agents")
    leads = [Lead(campaign_id=c.id, phone_e164=f"+1212555{first + i:04d}", timezone="America/New_York",
                  state="done") for i in range(len(cases))]
    session.add_all(leads)
    session.flush()
    session.add_all(_attempt(i, lead, ended=ended, disp=disp, answered=ans)
                    for i, (lead, (ended, disp, ans)) in enumerate(zip(leads, cases)))
    return c


@pytest.fixture(params=["most_of_the_table", "small_share"])
def known(request, sessions):
    """Campaign spring holds CASES; another campaign's drops must never count.
    With ``small_share`` the other campaign is large, so the report reads
    spring through its index instead of straight through the table."""
    others = 300 if request.param == "small_share" else 3
    with sessions.begin() as s:
        c = _fill(s, "spring", CASES)
        _fill(s, "other", [(NOW - H, "dropped", True)] * others, first=5000)
        cid = c.id
    return sessions, cid


def test_one_query_counts_every_window(known):
    sessions, cid = known
    windows = (*abandon.rolling(NOW), abandon.LIFE)
    with sessions.begin() as s:
        got = abandon.counts(s, cid, windows)
    assert {k: (v.dropped, v.answered) for k, v in got.items()} == EXPECTED
    assert got["rolling_30d"].rate == 0.375 and got["last_24h"].rate == 0.25


def test_an_hour_of_the_day_is_a_window(known):
    sessions, cid = known
    with sessions.begin() as s:
        got = abandon.counts(s, cid, [abandon.hour(NOW - H), abandon.hour(NOW - 2 * H)])
    # The drop that ended at 11:00 and the connected call that ended at 10:00.
    assert {k: (v.dropped, v.answered) for k, v in got.items()} == {
        "2026-11-26T11:00Z": (1, 1), "2026-11-26T10:00Z": (0, 1)}


def test_pacing_status_report_and_live_state_agree(known):
    sessions, cid = known
    (d30, a30), (d24, a24) = EXPECTED["rolling_30d"], EXPECTED["last_24h"]
    with sessions.begin() as s:
        engine_figures = _abandon_figures(s, cid, NOW)
        status = collect(s, "spring", now=NOW, wall_now=time.time())["campaigns"][0]
        report = reports.build_report(s, "spring", now=NOW)
        # --since inside the 30 days: the windows come from their own query.
        recent = reports.build_report(s, "spring", now=NOW, since=NOW - 2 * D)
        figures = reports.abandon_figures(s, get_campaign(s, "spring"), NOW)
    assert engine_figures[:4] == (d30, a30, d24, a24)
    windows = {"rolling_30d": {"dropped": d30, "answered": a30, "rate": 0.375},
               "last_24h": {"dropped": d24, "answered": a24, "rate": 0.25}}
    for got in (report["abandon"], recent["abandon"], figures):
        assert {k: got[k] for k in windows} == windows
        assert got["within_target"] is False
    assert (status["abandon_30d"], status["abandon_24h"]) == (0.375, 0.25)
    # The campaign's life: the report's rate and the sum of its hours.
    life_dropped, life_answered = EXPECTED["life"]
    assert report["rates"]["abandon_rate"] == abandon.rate(life_dropped, life_answered)
    assert sum(h["dropped"] for h in report["hours"]) == life_dropped
    assert sum(h["answered"] for h in report["hours"]) == life_answered
    # The engine's live figures are built from the same counts.
    assert abandon.rate(engine_figures[0], engine_figures[1]) == status["abandon_30d"]


def test_rate_is_none_without_answered_calls():
    assert abandon.rate(0, 0) is None
    assert abandon.Count(1, 3).rate == 0.3333


def test_the_rules_are_what_the_settings_enforce():
    from dialer import campaigns, pacing
    from dialer.leads import hopper
    from dialer.engine import EngineSettings

    assert campaigns.MIN_RING_TIMEOUT == rules.MIN_RING == 15
    assert campaigns.MAX_ABANDON_TARGET == rules.MAX_ABANDON_RATE == 0.03
    assert campaigns.ABANDONED_REDIAL_DELAY == 72 * 3600
    assert hopper.ABANDON_QUIET_PERIOD == rules.ABANDONED_REST
    assert pacing.PacingSettings().connect_deadline == EngineSettings().drop_after == rules.CONNECT_DEADLINE == 2
    assert rules.ROLLING_30D == dt.timedelta(days=30) and rules.LAST_24H == dt.timedelta(hours=24)
    assert [w.start for w in abandon.rolling(NOW)] == [NOW - 30 * D, NOW - D]


def test_drop_after_beyond_the_two_second_rule_is_refused():
    from dialer.engine import EngineSettings
    from dialer.errors import UserError

    assert EngineSettings.from_config({"drop_after": 1.5}).drop_after == 1.5
    with pytest.raises(UserError, match=r"\[engine\]\.drop_after: must be at most 2 seconds"):
        EngineSettings.from_config({"drop_after": 3})


def test_the_database_refuses_a_ring_shorter_than_the_rule(sessions):
    with sessions.begin() as s:
        c = create_campaign(s, "short")
        cid = c.id
    with pytest.raises(sa.exc.IntegrityError):
        with sessions.begin() as s:
            s.execute(sa.text("UPDATE campaigns SET ring_timeout = :v WHERE id = :id"),
                      {"v": rules.MIN_RING - 1, "id": cid})
