"""Whole campaigns on a real Asterisk: a progressive and a predictive one of a
few hundred leads run to completion, every lead ends as its number's last
digit says, and ``dialer report`` adds up to the attempts it was built from."""

from __future__ import annotations

import collections
import io
import json
import statistics

import pytest
import sqlalchemy as sa
import trio

from dialer.cli import main
from dialer.models import Campaign, Lead
from tests.real_tier import attempts, campaign, epoch, run_until_done, sessions_for

pytestmark = pytest.mark.asterisk

ANSWERED = {"connected", "dropped"}
BY_DIGIT = {
    "0": ANSWERED, "1": ANSWERED, "2": ANSWERED, "3": ANSWERED, "4": {"busy"},
    "5": {"congestion"}, "6": {"no_answer"}, "7": ANSWERED, "8": {"invalid_number"},
    "9": ANSWERED,
}
#: the last digits of every 40 leads: each outcome of the dialplan, mostly answered
#: calls (a never-answered one holds its line for the 15 s ring timeout)
MIX = "01230123012347794568" "01230123012347794508"
#: the dialplan's timings, shortened so that a few hundred calls take seconds
FAST_CARRIER = {"CARRIER_RING": "0.2", "CARRIER_TALK": "0.3", "LONG_RING": "0.4"}
DEFAULT_CARRIER = {"CARRIER_RING": "1", "CARRIER_TALK": "2", "LONG_RING": "2"}


def lead_phones(count: int, prefix: str) -> list[str]:
    """``count`` numbers in the proportions of MIX; the never-answered ones come
    within the first half, so that their 15 s rings overlap the other calls."""
    digits = [MIX[i % len(MIX)] for i in range(count)]
    rest = [d for d in digits if d != "6"]
    sixes = len(digits) - len(rest)
    step = max(1, count // 2 // max(1, sixes))
    for n in range(sixes):
        rest.insert(n * step + step // 2, "6")
    return [f"{prefix}{i:03d}{d}" for i, d in enumerate(rest)]


def set_globals(asterisk, values: dict[str, str]) -> None:
    for name, value in values.items():
        asterisk.action("Setvar", Variable=name, Value=value)


def report(url: str, name: str) -> dict:
    out, err = io.StringIO(), io.StringIO()
    assert main(["report", name, "--format", "json", "--db", url], out, err) == 0, err.getvalue()
    return json.loads(out.getvalue())


def share(part: int, whole: int):
    return round(part / whole, 4) if whole else None


def check_campaign(sessions, url: str, name: str, count: int) -> dict:
    """Every lead dialed once with its digit's outcome; the report's figures
    recomputed from the attempt rows. Returns the report."""
    rows = attempts(sessions, name)
    with sessions.begin() as s:
        leads = {l.id: (l.phone_e164, l.state, l.last_disposition, l.attempts)
                 for l in s.scalars(sa.select(Lead).join(Campaign, Campaign.id == Lead.campaign_id)
                                    .where(Campaign.name == name))}
    assert len(leads) == count
    assert len(rows) == count and sorted(a.lead_id for a in rows) == sorted(leads)
    for a in rows:
        phone, state, last, tries = leads[a.lead_id]
        assert a.disposition in BY_DIGIT[phone[-1]], (phone, a.disposition, a.cause)
        assert last == a.disposition and tries == 1
        assert state in ("done", "exhausted")
        assert a.ended_at is not None
        if a.disposition == "connected":
            assert a.connected_at is not None and a.time_to_agent <= 2.0
        if a.disposition == "dropped":
            assert a.answered_at is not None and (a.connected_at is None or a.time_to_agent > 2.0)

    got = report(url, name)
    assert got["campaign"]["state"] == "done"
    by = collections.Counter(a.disposition for a in rows)
    ended = len(rows)
    answered = sum(1 for a in rows if a.answered_at is not None)
    connected = sum(1 for a in rows if a.connected_at is not None)
    assert got["attempts"]["total"] == got["attempts"]["ended"] == ended
    assert got["attempts"]["in_progress"] == 0
    for disposition, figures in got["attempts"]["by_disposition"].items():
        assert figures == {"count": by.get(disposition, 0), "share": share(by.get(disposition, 0), ended)}
    assert got["rates"] == {
        "answer_rate": share(answered, ended),
        "contact_rate": share(connected, ended),
        "abandon_rate": share(by["dropped"], answered),
    }
    window = {"dropped": by["dropped"], "answered": answered, "rate": share(by["dropped"], answered)}
    assert got["abandon"]["rolling_30d"] == window and got["abandon"]["last_24h"] == window
    assert got["abandon"]["within_target"] == (window["rate"] is None or window["rate"] <= 0.03)
    states = collections.Counter(state for _, state, _, _ in leads.values())
    assert got["leads"]["total"] == count
    assert (got["leads"]["done"], got["leads"]["exhausted"]) == (states["done"], states["exhausted"])

    ring = [epoch(a.answered_at) - epoch(a.ringing_at or a.originated_at or a.created_at)
            for a in rows if a.answered_at is not None]
    talk = [epoch(a.ended_at) - epoch(a.connected_at) for a in rows if a.connected_at is not None]
    to_agent = [a.time_to_agent for a in rows if a.time_to_agent is not None]
    for key, values in (("ring_time", ring), ("time_to_agent", to_agent), ("talk_time", talk)):
        figures = got["timings"][key]
        assert figures["count"] == len(values), key
        if values:
            assert figures["avg"] == pytest.approx(statistics.fmean(values), abs=0.006), key
            assert figures["p90"] == pytest.approx(statistics.quantiles(values, n=10, method="inclusive")[-1],
                                                   abs=0.006), key
    assert sum(h["attempts"] for h in got["hours"]) == ended
    assert sum(h["dropped"] for h in got["hours"]) == by["dropped"]
    conns = got["connections"]
    assert sum(c["attempts"] for c in conns) == ended
    assert sum(c["failed"] for c in conns) == by["failed"] == 0
    return got


async def test_a_progressive_and_a_predictive_campaign_run_to_completion(
        asterisk, asterisk_factory, sqlite_url, tmp_path):
    """Side by side to save time: a progressive campaign with the shared
    Asterisk's 3 agents, a predictive one on an Asterisk of its own with 5,
    each with its own engine and database."""
    from dialer import db

    count = 200
    second_url = f"sqlite:///{tmp_path / 'second.db'}"
    migrate = db.create_engine(second_url)
    db.upgrade(migrate)
    migrate.dispose()
    pbx5 = asterisk_factory(agents=5)
    prog_db, prog_sessions = sessions_for(sqlite_url)
    pred_db, pred_sessions = sessions_for(second_url)
    campaign(prog_sessions, "prog", lead_phones(count, "+1212555"), mode="progressive",
             dial_ratio=2, max_concurrent=30, ring_timeout=15)
    campaign(pred_sessions, "pred", lead_phones(count, "+1415555"), mode="predictive",
             max_concurrent=30, ring_timeout=15)
    engines = {}

    async def run(name, sessions, pbx):
        engines[name] = await run_until_done(
            sessions, [pbx.config_for_dialer(connections=2, originate_rate=50, burst=5)], timeout=75)

    for pbx in (asterisk, pbx5):
        set_globals(pbx, FAST_CARRIER)
        pbx.set_agent_talk(0.3)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "prog", prog_sessions, asterisk)
            nursery.start_soon(run, "pred", pred_sessions, pbx5)
    finally:
        set_globals(asterisk, DEFAULT_CARRIER)
        prog_db.dispose()
        pred_db.dispose()
    for name, sessions, url in (("prog", prog_sessions, sqlite_url), ("pred", pred_sessions, second_url)):
        got = check_campaign(sessions, url, name, count)
        assert engines[name].counters["originates"] == count
        assert got["campaign"]["mode"] == {"prog": "progressive", "pred": "predictive"}[name]
