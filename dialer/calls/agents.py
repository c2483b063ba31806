"""Which agents of a queue are free, from ``QueueStatus`` and queue events.

Asterisk reports each queue member's device state (``Status``: 1 not in
use, 2 in use, 3 busy, 6 ringing, ...), whether it is on a queue call
(``InCall``) and whether it is paused. A member is free when it is logged in,
not paused, not on a call and its device is not in use. ``QueueStatus`` gives
the whole picture; ``QueueMemberStatus``, ``QueueMemberAdded/Removed`` and
``QueueMemberPause`` keep it current. Times are the caller's clock, passed in.
"""

from __future__ import annotations

import dataclasses

from dialer.ami.codec.message import Message

_NOT_IN_USE = 1
_UNAVAILABLE = frozenset({4, 5})  # invalid, unavailable: not logged in
_TALKING = frozenset({2, 3, 6, 7})  # in use, busy, ringing, in use and ringing


@dataclasses.dataclass(slots=True)
class Member:
    interface: str
    name: str
    status: int = 0
    in_call: bool = False
    paused: bool = False
    busy_since: float | None = None
    # What the console shows: the member's state and since when (caller's clock).
    shown: str = ""
    shown_since: float = 0.0
    wrapup: float = 0.0            # the member's Wrapuptime (0: not reported)
    last_call_end: float | None = None

    @property
    def logged_in(self) -> bool:
        return self.status not in _UNAVAILABLE

    @property
    def free(self) -> bool:
        return self.logged_in and not self.paused and not self.in_call and self.status == _NOT_IN_USE

    def state(self, now: float) -> str:
        """logged_out, paused, talking (on a call or ringing), wrapup (within its
        reported Wrapuptime after a call) or free."""
        if not self.logged_in:
            return "logged_out"
        if self.paused:
            return "paused"
        if self.in_call or self.status in _TALKING:
            return "talking"
        if self.wrapup and self.last_call_end is not None and now - self.last_call_end < self.wrapup:
            return "wrapup"
        return "free" if self.status in (_NOT_IN_USE, 0) else "talking"


def _flag(value: str | None) -> bool:
    return (value or "0").strip() not in ("0", "", "false", "no")


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


class AgentBoard:
    """Members of the queues the engine dials for, keyed by (server, queue)."""

    def __init__(self) -> None:
        self._queues: dict[tuple[str, str], dict[str, Member]] = {}

    def load_status(self, server: str, events: list[Message], now: float) -> None:
        """Replace what is known of ``server``'s queues with a QueueStatus answer."""
        fresh: dict[tuple[str, str], dict[str, Member]] = {}
        for event in events:
            if event.name == "QueueParams":
                fresh.setdefault((server, event.get("Queue") or ""), {})
            elif event.name == "QueueMember":
                queue = event.get("Queue") or ""
                interface = event.get("StateInterface") or event.get("Location") or ""
                member = Member(interface, event.get("Name") or interface)
                old = self._queues.get((server, queue), {}).get(interface)
                if old is not None:
                    member.status, member.in_call, member.paused = old.status, old.in_call, old.paused
                    member.shown, member.shown_since = old.shown, old.shown_since
                    member.last_call_end, member.busy_since = old.last_call_end, old.busy_since
                self._apply(member, event, now)
                fresh.setdefault((server, queue), {})[interface] = member
        for key in [k for k in self._queues if k[0] == server]:
            del self._queues[key]
        self._queues.update(fresh)

    def handle(self, server: str, event: Message, now: float) -> bool:
        """Apply a queue event; True when it changed a member."""
        name = event.name
        if name not in ("QueueMemberStatus", "QueueMemberAdded", "QueueMemberRemoved",
                        "QueueMemberPause", "QueueMemberPaused"):
            return False
        key = (server, event.get("Queue") or "")
        interface = event.get("StateInterface") or event.get("Interface") or event.get("Location") or ""
        members = self._queues.setdefault(key, {})
        if name == "QueueMemberRemoved":
            return members.pop(interface, None) is not None
        member = members.get(interface)
        if member is None:
            member = members[interface] = Member(interface, event.get("MemberName") or interface)
        self._apply(member, event, now)
        return True

    @staticmethod
    def _apply(member: Member, event: Message, now: float) -> None:
        was_in_call = member.in_call or member.status in _TALKING
        if "Status" in event:
            member.status = _int(event.get("Status"))
        if "InCall" in event:
            member.in_call = _flag(event.get("InCall"))
        if "Paused" in event:
            member.paused = _flag(event.get("Paused"))
        if "Wrapuptime" in event:
            member.wrapup = float(_int(event.get("Wrapuptime")))
        if was_in_call and not (member.in_call or member.status in _TALKING):
            member.last_call_end = now
        busy = member.in_call or member.status not in (_NOT_IN_USE, 0) and member.logged_in
        if busy and member.busy_since is None:
            member.busy_since = now
        elif not busy:
            member.busy_since = None
        shown = member.state(now)
        if shown != member.shown:
            member.shown, member.shown_since = shown, now

    def members(self, queue: str) -> list[Member]:
        out: list[Member] = []
        for (server, name), members in self._queues.items():
            if name == queue:
                out.extend(members.values())
        return out

    def counts(self, queue: str, now: float) -> tuple[int, int, tuple[float, ...]]:
        """(logged in, free, seconds each busy agent has been busy) for a queue."""
        members = self.members(queue)
        logged_in = [m for m in members if m.logged_in and not m.paused]
        free = sum(1 for m in logged_in if m.free)
        busy = tuple(now - m.busy_since for m in logged_in if m.busy_since is not None)
        return len(logged_in), free, busy

    def board(self, queue: str, now: float) -> dict:
        """The console's view of a queue: agents by state, and each agent's
        state with the time (the caller's clock) it entered it."""
        counts = {"free": 0, "talking": 0, "wrapup": 0, "paused": 0}
        agents = []
        for m in sorted(self.members(queue), key=lambda m: m.name):
            state = m.state(now)
            if state != m.shown:
                m.shown, m.shown_since = state, now
            if state == "logged_out":
                continue
            counts[state] += 1
            agents.append({"name": m.name, "state": state, "since": round(m.shown_since, 3)})
        return {**counts, "agents": agents}
