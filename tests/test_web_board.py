"""The wallboard's figures: agents by state with time in state, and the live
rows of several engines merged, a stopped engine's left out."""

from __future__ import annotations

import datetime as dt


from dialer import db
from dialer.ami.codec.message import Message
from dialer.calls.agents import AgentBoard
from dialer.models import LiveState
from dialer.web.board import read_figures, read_live
from tests.engine_harness import make_campaign, numbers
from tests.web_harness import live_doc


def member_event(name: str, **fields) -> Message:
    headers = [("Event", "QueueMemberStatus"), ("Queue", "agents"), ("MemberName", name),
               ("StateInterface", f"Local/{name}@agents")]
    return Message(headers + [(k, str(v)) for k, v in fields.items()])


def test_agents_by_state_with_the_time_each_entered_it():
    board = AgentBoard()
    board.handle("pbx", member_event("a1", Status=1, InCall=0, Paused=0, Wrapuptime=10), 100.0)
    board.handle("pbx", member_event("a2", Status=1, InCall=0, Paused=0), 100.0)
    board.handle("pbx", member_event("a3", Status=1, InCall=0, Paused=1), 100.0)
    board.handle("pbx", member_event("a4", Status=5, InCall=0, Paused=0), 100.0)  # unavailable
    board.handle("pbx", member_event("a1", Status=2, InCall=1), 103.0)
    view = board.board("agents", 105.0)
    assert {k: view[k] for k in ("free", "talking", "wrapup", "paused")} == \
        {"free": 1, "talking": 1, "wrapup": 0, "paused": 1}
    assert view["agents"] == [{"name": "a1", "state": "talking", "since": 103.0},
                              {"name": "a2", "state": "free", "since": 100.0},
                              {"name": "a3", "state": "paused", "since": 100.0}]
    # The call ends: wrap-up for the member's Wrapuptime, then free.
    board.handle("pbx", member_event("a1", Status=1, InCall=0), 140.0)
    assert board.board("agents", 145.0)["agents"][0] == {"name": "a1", "state": "wrapup", "since": 140.0}
    assert board.board("agents", 150.0)["agents"][0] == {"name": "a1", "state": "free", "since": 150.0}
    # A member without a reported Wrapuptime is free as soon as its call ends.
    board.handle("pbx", member_event("a2", Status=2, InCall=1), 151.0)
    board.handle("pbx", member_event("a2", Status=1, InCall=0), 160.0)
    assert board.board("agents", 161.0)["agents"][1] == {"name": "a2", "state": "free", "since": 160.0}


def test_live_rows_of_two_engines_are_summed_and_a_stopped_one_left_out(sqlite_url):
    engine = db.create_engine(sqlite_url)
    sessions = db.session_factory(engine)
    c = make_campaign(sessions, "spring", numbers(3))
    wall = 1_800_000_000.0
    at = dt.datetime.fromtimestamp(wall, dt.UTC).replace(tzinfo=None)
    with sessions.begin() as s:
        s.add_all([
            LiveState(engine_id="e1", campaign_id=c.id, heartbeat_at=at, data=live_doc("spring", "e1", wall - 0.2)),
            LiveState(engine_id="e2", campaign_id=c.id, heartbeat_at=at,
                      data=live_doc("spring", "e2", wall - 0.1, ringing=4, dial_level=2.0)),
            LiveState(engine_id="e3", campaign_id=c.id, heartbeat_at=at, data=live_doc("spring", "e3", wall - 9)),
        ])
    with sessions.begin() as s:
        live = read_live(s, wall_now=wall)
        figures = read_figures(s, live["campaigns"], at)
    (camp,) = live["campaigns"]
    assert camp["live"]["engines"] == ["e1", "e2"]
    assert (camp["live"]["ringing"], camp["live"]["in_flight"], camp["live"]["answered"]) == (7, 10, 4)
    assert camp["live"]["dial_level"] == 2.0
    assert camp["live"]["agents"]["talking"] == 2
    assert [a["since"] for a in camp["live"]["agents"]["agents"]] == [round(wall - 30.2, 1), round(wall - 30.1, 1)]
    assert [(e["engine_id"], e["live"]) for e in live["engines"]] == [("e1", True), ("e2", True), ("e3", False)]
    assert [x["connection"] for x in live["connections"]] == ["e1#1", "e2#1"]
    assert figures[c.id]["leads"] == {"total": 3, "left": 3, "dialed": 0, "finished": 0, "by_state": {"new": 3}}
    assert figures[c.id]["abandon"]["level"] == "ok"
    engine.dispose()
