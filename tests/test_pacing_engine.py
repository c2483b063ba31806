"""Pacing in the running engine against the simulated Asterisk, under trio's mock clock:
a cold start inside the abandon limit, the decision's inputs in the live state and the
decisions log, and learnt estimates that survive a restart."""

import csv
import io

import pytest
import sqlalchemy as sa
import trio
import trio.testing

from dialer.cli import main
from dialer.models import CallAttempt, LiveState, PacingDecisionRow, PacingEstimate
from tests.engine_harness import BUSINESS_HOURS, make_campaign, new_engine, numbers, server
from tests.engine_harness import originates, start_sim


pytestmark = pytest.mark.usefixtures("ami_secret")  # the simulator's AMI password (conftest.py)


async def run(sqlite_sessions, **kwargs):
    async with trio.open_nursery() as nursery:
        sim, port = await start_sim(nursery)
        engine = new_engine(sqlite_sessions, [server(port)], until_done=True, epoch=BUSINESS_HOURS, **kwargs)
        with trio.fail_after(7200):
            await engine.run()
        nursery.cancel_scope.cancel()
    return sim, engine


def abandon(sqlite_sessions):
    with sqlite_sessions.begin() as s:
        answered = s.scalar(sa.select(sa.func.count()).where(CallAttempt.answered_at.is_not(None)))
        dropped = s.scalar(sa.select(sa.func.count()).where(CallAttempt.disposition == "dropped"))
    return dropped, answered


async def test_a_new_predictive_campaign_starts_inside_the_abandon_limit(clock, sqlite_sessions):
    # The README's flow against `dialer sim`: its 3 agents, a new predictive
    # campaign with no history, 200 leads of which 120 answer.
    make_campaign(sqlite_sessions, phones=numbers(200), mode="predictive", max_concurrent=60)
    seen = []
    sim, engine = await run(sqlite_sessions, on_progress=lambda e: seen.append(abandon(sqlite_sessions)))
    dropped, answered = abandon(sqlite_sessions)
    assert answered == 120
    assert dropped / answered <= 0.03
    # Never over the target on the way either (taken over at least the 100
    # calls the rate needs).
    assert all(d / max(a, 100) <= 0.03 for d, a in seen)
    # And not slower than one call per agent: the model did dial ahead.
    run_ = next(iter(engine.runs.values()))
    assert run_.placed == 200


async def test_the_decision_inputs_are_in_the_live_state_and_the_decisions_log(clock, sqlite_sessions, sqlite_url):
    make_campaign(sqlite_sessions, phones=numbers(60), mode="predictive", max_concurrent=30)
    views = []

    def look(engine):
        view = engine.status()["campaigns"]["spring"]["pacing"]
        if view is not None:
            views.append(view)

    sim, engine = await run(sqlite_sessions, on_progress=look)
    assert views
    view = views[-1]
    for key in ("agents_logged_in", "agents_free", "agents_expected", "ringing", "waiting", "answer_rate",
                "calls", "total_calls", "cut", "allowed_drop", "abandon_rate", "hour_abandon_rate",
                "dial_level", "reason", "engines"):
        assert key in view, key
    assert view["engines"] == 1 and view["agents_logged_in"] == 3
    assert any(v["calls"] > 0 for v in views)
    with sqlite_sessions.begin() as s:
        doc = s.scalars(sa.select(LiveState.data)).one()
        assert doc["pacing"]["agents_logged_in"] == 3
        rows = s.scalars(sa.select(PacingDecisionRow).order_by(PacingDecisionRow.at)).all()
        # One row per second of dialing; the calls placed add up to the Originates.
        assert len({r.at.replace(microsecond=0) for r in rows}) == len(rows)
        assert sum(r.calls_placed for r in rows) == len(originates(sim)) == 60
        assert all(r.agents_logged_in == 3 and r.engines == 1 for r in rows)
    out, err = io.StringIO(), io.StringIO()
    assert main(["--db", sqlite_url, "report", "spring", "--decisions"], out, err) == 0, err.getvalue()
    table = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(table) == len(rows)
    assert sum(int(r["calls_placed"]) for r in table) == 60
    assert table[0]["at"].endswith("Z") and table[0]["mode"] == "predictive"
    # `dialer status` prints each engine's last decision with its inputs.
    import datetime as dt

    from dialer.cli import status

    shown = io.StringIO()
    status.render({"at": dt.datetime(2026, 11, 25, 16, 0), "engines": [engine.engine_id], "connections": [],
                   "campaigns": [{"name": "spring", "state": "running", "mode": "predictive", "leads_left": 0,
                                  "leads_due": 0, "calls_in_flight": 0, "abandon_30d": 0.0, "abandon_24h": 0.0,
                                  "abandon_target": 0.03,
                                  "live": {"ringing": 1, "waiting": 0, "connected": 2, "agents_free": 1,
                                           "agents_logged_in": 3, "dial_level": 1.0,
                                           "pacing": {engine.engine_id: view}}}]}, shown)
    line = shown.getvalue().splitlines()[-1]
    assert line.startswith(f"  pacing ({engine.engine_id}): free {view['agents_free']}, expected ")
    assert f"-> {view['calls']} calls" in line and view["reason"] in line
    err = io.StringIO()
    assert main(["--db", sqlite_url, "report", "spring", "--decisions", "--format", "table"],
                io.StringIO(), err) != 0
    assert "--decisions" in err.getvalue()


async def test_learnt_estimates_are_saved_and_read_back_at_a_restart(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, phones=numbers(80), mode="predictive", max_concurrent=30)
    sim, first = await run(sqlite_sessions)
    learnt = next(iter(first.runs.values())).estimator
    with sqlite_sessions.begin() as s:
        saved = s.scalars(sa.select(PacingEstimate)).one()
        assert saved.engine_id == first.engine_id
        assert len(saved.data["attempts"]) == 80
        # More leads for the same campaign, dialed by a new engine.
        from dialer.models import Campaign, Lead
        import datetime as dt

        c = s.scalars(sa.select(Campaign)).one()
        c.state = "running"
        s.add_all(Lead(campaign_id=c.id, phone_e164=p, timezone="America/New_York", state="new",
                       next_attempt_at=dt.datetime(2026, 1, 1)) for p in numbers(20, prefix="+1212556"))
    at_start = []
    sim, second = await run(sqlite_sessions, on_progress=lambda e: at_start.append(
        next(iter(e.runs.values())).estimator.attempts) if not at_start else None)
    # Before its own first call ended, the new engine knew the 80 calls.
    assert at_start[0] >= 80
    rate = next(iter(second.runs.values())).estimator
    assert learnt.estimates(1e9).answer_rate != 0.5  # (sanity: the prior is 0.5)
    assert rate.attempts >= 80


def test_engines_deal_shares_in_an_order_all_of_them_reckon_alike():
    from dialer.engine.shared import engine_order as _engine_order

    others = {"b": {}, "c": {}}
    # The same order whichever engine works it out, turned by one place a second.
    for wall in (1000.0, 1000.9, 1001.2, 1002.5):
        orders = {_engine_order(me, {o: {} for o in "abc" if o != me}, wall)[0] for me in "abc"}
        assert len(orders) == 1
    assert [_engine_order("a", others, t)[0] for t in (999.5, 1000.5, 1001.5)] == ["a", "b", "c"]
    assert _engine_order("a", {}, 5.0) == ["a"]


def test_other_engines_count_only_while_dialing_the_campaign_and_readable():
    from dialer.engine.shared import other_engines as _other_engines

    share = {"ringing": [1.5, 20.0], "waiting": 1, "in_flight": 5}
    rows = {
        "b": {"state": "running", "wall_time": 100.0, "speed": 1, "pacing": {"share": share}},
        "c": {"state": "paused", "wall_time": 100.0, "speed": 1, "pacing": {"share": share}},
        "d": {"state": "running", "wall_time": 100.0, "speed": 1, "pacing": None},
        "e": {"state": "running", "wall_time": "later", "pacing": {"share": share}},
    }
    assert _other_engines(rows) == {
        "b": {"wall": 100.0, "speed": 1.0, "ringing": [1.5, 20.0], "waiting": 1, "in_flight": 5}}


def test_other_engines_calls_are_aged_and_their_expected_calls_counted_until_seen():
    from dialer.engine.shared import shared_figures

    others = {"b": {"wall": 100.0, "speed": 2.0, "ringing": [1.0, 10.0], "waiting": 1, "in_flight": 4}}
    # This engine's decisions: at 99.5 (before b's row: b's row shows those
    # calls) and at 100.4 (after it: b's 2 calls not yet seen).
    expected = {"b": [(99.5, 1), (100.4, 2)]}
    got = shared_figures("a", others, expected, 100.5, 1.0)
    # b's calls aged by 0.5 real s at b's speed 2; the 2 expected ones 0.1 s old.
    assert got["shared_ringing_elapsed"] == pytest.approx((2.0, 11.0, 0.1, 0.1))
    assert (got["shared_waiting"], got["shared_in_flight"]) == (1, 6)
    assert expected == {"b": [(100.4, 2)]}
    assert (got["engines"], got["engine_rank"]) == (2, 0)  # second 100: "a" first
    # Once b's row is newer than the decision, its calls are counted from the row alone.
    others["b"] = dict(others["b"], wall=100.6, ringing=[1.2, 10.2, 0.2, 0.2], in_flight=6)
    got = shared_figures("a", others, expected, 101.0, 1.0)
    assert len(got["shared_ringing_elapsed"]) == 4 and expected == {"b": []}
    assert got["engine_rank"] == 1  # second 101: "b" first
