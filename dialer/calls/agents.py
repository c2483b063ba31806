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

from dialer.ami.codec import Message

_NOT_IN_USE = 1
_UNAVAILABLE = frozenset({4, 5})  # invalid, unavailable: not logged in


@dataclasses.dataclass(slots=True)
class Member:
    interface: str
    name: str
    status: int = 0
    in_call: bool = False
    paused: bool = False
    busy_since: float | None = None

    @property
    def logged_in(self) -> bool:
        return self.status not in _UNAVAILABLE

    @property
    def free(self) -> bool:
        return self.logged_in and not self.paused and not self.in_call and self.status == _NOT_IN_USE


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
        if "Status" in event:
            member.status = _int(event.get("Status"))
        if "InCall" in event:
            member.in_call = _flag(event.get("InCall"))
        if "Paused" in event:
            member.paused = _flag(event.get("Paused"))
        busy = member.in_call or member.status not in (_NOT_IN_USE, 0) and member.logged_in
        if busy and member.busy_since is None:
            member.busy_since = now
        elif not busy:
            member.busy_since = None

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
