"""Which agents are free: AgentBoard from a real Asterisk's QueueStatus and queue events.

The recordings (tests/transcripts.py) are a real Asterisk 22's answer to
``QueueStatus`` (agent1 free, agents 2 and 3 on calls) and the events of a call
that an agent took. The other cases are single events written the way those
recordings show them. Times are plain numbers: the board takes ``now``.
"""

from __future__ import annotations

from dialer.ami.codec import Message
from dialer.calls.agents import AgentBoard
from tests.transcripts import read_messages


def event(name: str, **headers: str) -> Message:
    return Message([("Event", name), *((k.replace("_", "-"), v) for k, v in headers.items())])


def member_status(agent: int, *, status: str, in_call: str = "0", paused: str = "0",
                  queue: str = "agents", name: str = "QueueMemberStatus") -> Message:
    iface = f"Local/agent{agent}@agents"
    return event(name, Queue=queue, MemberName=f"Agent{agent}", Interface=iface, StateInterface=iface,
                 InCall=in_call, Status=status, Paused=paused)


def recorded_status() -> list[Message]:
    return [m for m in read_messages("queuestatus") if m.name in ("QueueParams", "QueueMember")]


def test_queue_status_gives_logged_in_free_and_busy_times():
    board = AgentBoard()
    board.load_status("pbx1", recorded_status(), now=100.0)
    assert board.counts("agents", 100.0) == (3, 1, (0.0, 0.0))
    # Agents 2 and 3 have been busy since the answer was read.
    assert board.counts("agents", 130.0) == (3, 1, (30.0, 30.0))
    assert [(m.name, m.free) for m in board.members("agents")] == [
        ("Agent1", True), ("Agent2", False), ("Agent3", False)]
    assert board.counts("other", 100.0) == (0, 0, ())


def test_the_recorded_call_takes_an_agent_and_gives_it_back():
    board = AgentBoard()
    board.load_status("pbx1", recorded_status(), now=0.0)
    seen = []
    for t, m in enumerate(read_messages("originate-queue-agent")):
        changed = board.handle("pbx1", m, float(t))
        if changed:
            seen.append((m.get("InCall"), board.counts("agents", float(t))[1]))
        elif m.name in ("AgentConnect", "AgentCalled", "QueueCallerJoin"):
            assert not changed  # not member events: nothing to change
    # Agent1 goes on the call (no one free), then comes back (one free).
    assert seen == [("1", 0), ("0", 1)]


def test_busy_since_holds_through_repeated_busy_events_and_clears_when_free():
    board = AgentBoard()
    board.handle("pbx1", member_status(1, status="2", in_call="1"), 10.0)
    board.handle("pbx1", member_status(1, status="2", in_call="1"), 25.0)
    assert board.counts("agents", 40.0) == (1, 0, (30.0,))
    board.handle("pbx1", member_status(1, status="1"), 41.0)
    assert board.counts("agents", 50.0) == (1, 1, ())
    # Ringing (6) is not free either, and counts as busy from then.
    board.handle("pbx1", member_status(1, status="6"), 60.0)
    assert board.counts("agents", 61.0) == (1, 0, (1.0,))


def test_paused_and_unavailable_members_are_not_counted_as_logged_in():
    board = AgentBoard()
    board.load_status("pbx1", recorded_status(), now=0.0)
    assert board.handle("pbx1", event("QueueMemberPause", Queue="agents", Interface="Local/agent1@agents",
                                      StateInterface="Local/agent1@agents", Paused="1"), 1.0)
    assert board.counts("agents", 1.0) == (2, 0, (1.0, 1.0))
    board.handle("pbx1", member_status(2, status="5"), 2.0)  # unavailable: logged out
    assert board.counts("agents", 2.0)[:2] == (1, 0)
    board.handle("pbx1", event("QueueMemberPause", Queue="agents", Interface="Local/agent1@agents",
                               StateInterface="Local/agent1@agents", Paused="0"), 3.0)
    assert board.counts("agents", 3.0)[:2] == (2, 1)


def test_members_added_and_removed():
    board = AgentBoard()
    board.load_status("pbx1", recorded_status(), now=0.0)
    assert board.handle("pbx1", member_status(4, status="1", name="QueueMemberAdded"), 1.0)
    assert board.counts("agents", 1.0)[:2] == (4, 2)
    assert board.handle("pbx1", event("QueueMemberRemoved", Queue="agents",
                                      Interface="Local/agent1@agents"), 2.0)
    assert board.counts("agents", 2.0)[:2] == (3, 1)
    # Removing someone unknown changes nothing.
    assert not board.handle("pbx1", event("QueueMemberRemoved", Queue="agents", Interface="Local/x"), 3.0)


def test_each_server_has_its_own_picture_and_a_queue_name_sums_over_servers():
    board = AgentBoard()
    board.load_status("pbx1", recorded_status(), now=0.0)
    board.load_status("pbx2", recorded_status(), now=0.0)
    assert board.counts("agents", 0.0)[:2] == (6, 2)
    # A fresh QueueStatus from pbx2 replaces pbx2's picture only.
    board.load_status("pbx2", [m for m in recorded_status() if m.get("Name") != "Agent1"], now=5.0)
    assert board.counts("agents", 5.0)[:2] == (5, 1)
    # A queue pbx2 no longer reports is gone from pbx2, kept on pbx1.
    board.handle("pbx2", member_status(7, status="1", queue="sales"), 6.0)
    board.handle("pbx1", member_status(8, status="1", queue="sales"), 6.0)
    board.load_status("pbx2", recorded_status(), now=7.0)
    assert board.counts("sales", 7.0)[:2] == (1, 1)


def test_unrelated_events_change_nothing():
    board = AgentBoard()
    for name in ("AgentConnect", "Hangup", "QueueCallerJoin", "QueueParams"):
        assert not board.handle("pbx1", event(name, Queue="agents", Interface="Local/agent1@agents"), 0.0)
    assert board.members("agents") == []
