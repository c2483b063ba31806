"""The agents queue: members, waiting callers, statistics and their AMI renderings.

The queue holds state only; :mod:`dialer.sim.calls` moves callers and agents
through it and emits the call events. Field names and values follow
``app_queue.c`` as the recordings show them (``QueueMemberStatus``,
``QueueParams``, ``QueueMember``, ``QueueEntry``, ``QueueSummary``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dialer.sim.scenario import QueueConfig

if TYPE_CHECKING:  # pragma: no cover
    from dialer.sim.calls import Call

# Device states as app_queue prints them in Status: (enum ast_device_state).
DEVICE_NOT_INUSE = 1
DEVICE_INUSE = 2


@dataclass
class Member:
    name: str  # Agent1
    interface: str  # Local/agent1@agents
    exten: str  # agent1
    context: str  # agents
    login_time: int
    calls_taken: int = 0
    last_call: int = 0
    status: int = DEVICE_NOT_INUSE
    in_call: bool = False
    busy: bool = False  # ringing, talking or wrapping up
    paused: bool = False  # QueuePause: offered no call (a call it has goes on)
    outside: bool = False  # its line is in use by a call that did not come from the queue
    wrapup_until: float = 0.0
    call: "Call | None" = None
    index: int = 0
    paused_reason: str = ""
    last_pause: int = 0

    def status_headers(self, queue: str) -> list[tuple[str, str]]:
        return [
            ("Queue", queue), ("MemberName", self.name), ("Interface", self.interface),
            ("StateInterface", self.interface), ("Membership", "static"), ("Penalty", "0"),
            ("CallsTaken", str(self.calls_taken)), ("LastCall", str(self.last_call)),
            ("LastPause", str(self.last_pause)), ("LoginTime", str(self.login_time)),
            ("InCall", "1" if self.in_call else "0"), ("Status", str(self.status)),
            ("Paused", "1" if self.paused else "0"), ("PausedReason", self.paused_reason),
            ("Ringinuse", "0"), ("Wrapuptime", "0"),
        ]

    def list_headers(self, queue: str, action_id: str | None) -> list[tuple[str, str]]:
        h = [
            ("Event", "QueueMember"), ("Queue", queue), ("Name", self.name),
            ("Location", self.interface), ("StateInterface", self.interface),
            ("Membership", "static"), ("Penalty", "0"), ("CallsTaken", str(self.calls_taken)),
            ("LastCall", str(self.last_call)), ("LastPause", str(self.last_pause)),
            ("LoginTime", str(self.login_time)), ("InCall", "1" if self.in_call else "0"),
            ("Status", str(self.status)), ("Paused", "1" if self.paused else "0"),
            ("PausedReason", self.paused_reason), ("Wrapuptime", "0"),
        ]
        if action_id is not None:
            h.append(("ActionID", action_id))
        return h


@dataclass
class QueueState:
    config: QueueConfig
    members: list[Member]
    waiting: list["Call"] = field(default_factory=list)  # longest-waiting first
    rr_next: int = 0  # rrmemory: index of the member to try first
    holdtime: int = 0  # rolling averages as app_queue keeps them (seconds)
    talktime: int = 0
    completed: int = 0
    abandoned: int = 0

    # Indices of the members free to take a call, kept sorted (rrmemory walks them in order).
    free: list[int] = field(default_factory=list)

    @classmethod
    def build(cls, config: QueueConfig, login_time: int) -> "QueueState":
        members = [
            Member(f"Agent{i}", f"Local/agent{i}@{config.name}", f"agent{i}", config.name,
                   login_time, index=i - 1)
            for i in range(1, config.agents + 1)
        ]
        return cls(config, members, free=list(range(len(members))))

    @property
    def name(self) -> str:
        return self.config.name

    def take(self, m: Member) -> None:
        """``m`` starts ringing/talking: it is no longer free."""
        m.busy = True
        i = bisect.bisect_left(self.free, m.index)
        if i < len(self.free) and self.free[i] == m.index:
            del self.free[i]

    def make_free(self, m: Member) -> None:
        """``m`` can take a call again (after its wrap-up), unless paused or its line
        is in use outside the queue (ringinuse = no)."""
        m.busy = False
        self.refresh(m)

    def refresh(self, m: Member) -> None:
        """Put ``m`` in the free list or take it out, as its state says."""
        i = bisect.bisect_left(self.free, m.index)
        listed = i < len(self.free) and self.free[i] == m.index
        offered = not (m.busy or m.paused or m.outside)
        if offered and not listed:
            self.free.insert(i, m.index)
        elif listed and not offered:
            del self.free[i]

    def empty(self) -> bool:
        """No member could ever take a caller as ``joinempty = no`` sees it: every one
        paused (the simulator's members are never invalid or unavailable; one on a
        call or in wrap-up still counts)."""
        return all(m.paused for m in self.members)

    def member(self, interface: str) -> Member | None:
        for m in self.members:
            if m.interface == interface or m.name == interface:
                return m
        return None

    def reset(self) -> None:
        for m in self.members:
            m.busy = m.in_call = m.paused = m.outside = False
            m.paused_reason = ""
            m.status = DEVICE_NOT_INUSE
            m.call = None
            m.wrapup_until = 0.0
        self.free = list(range(len(self.members)))
        self.waiting.clear()

    def free_member(self, now: float = 0.0) -> Member | None:
        """The free member the strategy picks (rrmemory: the next one after the last used)."""
        free = self.free
        if not free:
            return None
        strategy = self.config.strategy
        if strategy == "leastrecent":
            return min((self.members[i] for i in free), key=lambda m: m.last_call)
        if strategy == "fewestcalls":
            return min((self.members[i] for i in free), key=lambda m: m.calls_taken)
        if strategy in ("rrmemory", "random"):
            j = bisect.bisect_left(free, self.rr_next)
            m = self.members[free[j % len(free)]]
            self.rr_next = (m.index + 1) % len(self.members)
            return m
        return self.members[free[0]]

    def set_next_member(self, name: str) -> None:
        """Make ``name`` the member rrmemory tries next (used to line up with a recording)."""
        for i, m in enumerate(self.members):
            if m.name == name:
                self.rr_next = i
                return
        raise KeyError(name)

    def record_hold(self, seconds: int) -> None:
        self.holdtime = (((self.holdtime << 2) - self.holdtime) + seconds) >> 2

    def record_talk(self, seconds: int) -> None:
        self.talktime = (((self.talktime << 2) - self.talktime) + seconds) >> 2

    def available(self, now: float = 0.0) -> int:
        return len(self.free)

    # --- list-action renderings -------------------------------------------------

    def params_headers(self, action_id: str | None) -> list[tuple[str, str]]:
        total = self.completed + self.abandoned
        perf = "100.0" if self.completed else "0.0"
        perf2 = "100.0" if total else "0.0"
        h = [
            ("Event", "QueueParams"), ("Queue", self.name), ("Max", "0"),
            ("Strategy", self.config.strategy), ("Calls", str(len(self.waiting))),
            ("Holdtime", str(self.holdtime)), ("TalkTime", str(self.talktime)),
            ("Completed", str(self.completed)), ("Abandoned", str(self.abandoned)),
            ("ServiceLevel", "0"), ("ServicelevelPerf", perf), ("ServicelevelPerf2", perf2),
            ("Weight", "0"),
        ]
        if action_id is not None:
            h.append(("ActionID", action_id))
        return h

    def entry_headers(self, pos: int, call: "Call", wait: int, action_id: str | None) -> list[tuple[str, str]]:
        ch = call.ch1
        h = [
            ("Event", "QueueEntry"), ("Queue", self.name), ("Position", str(pos)),
            ("Channel", ch.name), ("Uniqueid", ch.uniqueid), ("CallerIDNum", ch.cid_num),
            ("CallerIDName", ch.cid_name), ("ConnectedLineNum", ch.conn_num),
            ("ConnectedLineName", ch.conn_name), ("Wait", str(wait)), ("Priority", "0"),
        ]
        if action_id is not None:
            h.append(("ActionID", action_id))
        return h

    def summary_headers(self, now: float, longest_hold: int, action_id: str | None) -> list[tuple[str, str]]:
        h: list[tuple[str, Any]] = [
            ("Event", "QueueSummary"), ("Queue", self.name), ("LoggedIn", str(len(self.members))),
            ("Available", str(self.available(now))), ("Callers", str(len(self.waiting))),
            ("HoldTime", str(self.holdtime)), ("TalkTime", str(self.talktime)),
            ("LongestHoldTime", str(longest_hold)),
        ]
        if action_id is not None:
            h.append(("ActionID", action_id))
        return h
