"""Which agents are free: AgentBoard from a real Asterisk's QueueStatus and queue events.

The recordings (tests/transcripts.py) are a real Asterisk 22's answer to
``QueueStatus`` (one agent free, two on calls: which ones is read from the
recording) and the events of a call that an agent took. The other cases are single events written the way those
recordings show them. Times are plain numbers: the board takes ``now``.
"""

from __future__ import annotations

from dialer.ami.codec.message import Message
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


def recorded_agents() -> tuple[int, list[int]]:
    """The recording's free agent and its two busy ones, by number."""
    members = [m for m in recorded_status() if m.name == "QueueMember" and m.get("Queue") == "agents"]
    number = {m.get("Name"): int(m.get("Name").removeprefix("Agent")) for m in members}
    free = [number[m.get("Name")] for m in members if (m.get("InCall"), m.get("Status")) == ("0", "1")]
    busy = sorted(set(number.values()) - set(free))
    assert len(free) == 1 and len(busy) == 2, "the recording has one agent free and two on calls"
    return free[0], busy


def pause(agent: int, paused: str) -> Message:
    iface = f"Local/agent{agent}@agents"
    return event("QueueMemberPause", Queue="agents", Interface=iface, StateInterface=iface, Paused=paused)


def test_queue_status_gives_logged_in_free_and_busy_times():
    board = AgentBoard()
    board.load_status("pbx1", recorded_status(), now=100.0)
    assert board.counts("agents", 100.0) == (3, 1, (0.0, 0.0))
    # Agents 2 and 3 have been busy since the answer was read.
    assert board.counts("agents", 130.0) == (3, 1, (30.0, 30.0))
    free, _ = recorded_agents()
    assert [(m.name, m.free) for m in board.members("agents")] == [
        (f"Agent{n}", n == free) for n in (1, 2, 3)]
    assert board.counts("other", 100.0) == (0, 0, ())


def test_the_recorded_call_takes_an_agent_and_gives_it_back():
    call = read_messages("originate-queue-agent")
    agent = next(int(m.get("MemberName").removeprefix("Agent")) for m in call if m.name == "AgentConnect")
    board = AgentBoard()
    board.load_status("pbx1", recorded_status(), now=0.0)
    # The status was read at another moment: before this call, its agent was free.
    board.handle("pbx1", member_status(agent, status="1"), 0.0)
    free = board.counts("agents", 0.0)[1]
    seen = []
    for t, m in enumerate(call, start=1):
        changed = board.handle("pbx1", m, float(t))
        if changed:
            seen.append(board.counts("agents", float(t))[1])
        elif m.name in ("AgentConnect", "AgentCalled", "QueueCallerJoin"):
            assert not changed  # not member events: nothing to change
    # The agent goes on the call (one fewer free), then comes back.
    assert seen == [free - 1, free]


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
    free, busy = recorded_agents()
    board = AgentBoard()
    board.load_status("pbx1", recorded_status(), now=0.0)
    assert board.handle("pbx1", pause(free, "1"), 1.0)
    assert board.counts("agents", 1.0) == (2, 0, (1.0, 1.0))
    board.handle("pbx1", member_status(busy[0], status="5"), 2.0)  # unavailable: logged out
    assert board.counts("agents", 2.0)[:2] == (1, 0)
    board.handle("pbx1", pause(free, "0"), 3.0)
    assert board.counts("agents", 3.0)[:2] == (2, 1)


def test_members_added_and_removed():
    board = AgentBoard()
    board.load_status("pbx1", recorded_status(), now=0.0)
    assert board.handle("pbx1", member_status(4, status="1", name="QueueMemberAdded"), 1.0)
    assert board.counts("agents", 1.0)[:2] == (4, 2)
    free, _ = recorded_agents()
    assert board.handle("pbx1", event("QueueMemberRemoved", Queue="agents",
                                      Interface=f"Local/agent{free}@agents"), 2.0)
    assert board.counts("agents", 2.0)[:2] == (3, 1)
    # Removing someone unknown changes nothing.
    assert not board.handle("pbx1", event("QueueMemberRemoved", Queue="agents", Interface="Local/x"), 3.0)


def test_each_server_has_its_own_picture_and_a_queue_name_sums_over_servers():
    board = AgentBoard()
    board.load_status("pbx1", recorded_status(), now=0.0)
    board.load_status("pbx2", recorded_status(), now=0.0)
    assert board.counts("agents", 0.0)[:2] == (6, 2)
    # A fresh QueueStatus from pbx2 replaces pbx2's picture only.
    free, _ = recorded_agents()
    board.load_status("pbx2", [m for m in recorded_status() if m.get("Name") != f"Agent{free}"], now=5.0)
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
