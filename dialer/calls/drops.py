"""The drop message's safety net: answered calls no agent took in time, moved with AMI Redirect.

The dialplan is meant to do this itself: ``Queue(agents,,,,2)`` gives up after
2 seconds and goes on to the drop message (the README's ``dialer-drop``). When
an operator's dialplan has no such give-up, a caller nobody takes would wait in
the queue in silence, against 47 CFR 64.1200(a)(7). The engine then moves each
answered call still without an agent ``GRACE`` seconds past the connect
deadline (:data:`dialer.compliance.rules.CONNECT_DEADLINE`) to the drop target with
``Redirect``, once per call.

The grace keeps the net out of the dialplan's way: a call whose own ``Queue()``
gave up at 2 s (its ``QueueCallerLeave`` is on its way) or that an agent took at
the last moment (``AgentConnect`` on its way) is not moved. A call that left
the queue without an agent (``queue_left_at``) is the dialplan's to handle.

:class:`DropNet` decides (no I/O); :func:`move` sends one Redirect on the
pool connection that placed the call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable

from dialer.compliance import rules
from dialer.ami.codec.errors import LocalProtocolError
from dialer.ami.errors import AMIActionError, AMIError, PermissionDenied
from dialer.calls.tracker import TrackedCall

log = logging.getLogger("dialer.calls.drops")

#: where dropped calls go unless configured otherwise: context,exten,priority
DEFAULT_TARGET = "dialer-drop,s,1"
#: seconds past the connect deadline before the net moves a call
GRACE = 0.25


@dataclass(frozen=True)
class DropTarget:
    context: str
    exten: str = "s"
    priority: int = 1

    @classmethod
    def parse(cls, text: str) -> "DropTarget":
        """``context[,exten[,priority]]``; ValueError saying what is wrong."""
        parts = [p.strip() for p in str(text).split(",")]
        if len(parts) > 3 or not parts[0]:
            raise ValueError(f"{text!r}: expected context,exten,priority (e.g. {DEFAULT_TARGET})")
        exten = parts[1] if len(parts) > 1 and parts[1] else "s"
        try:
            priority = int(parts[2]) if len(parts) > 2 and parts[2] else 1
        except ValueError:
            raise ValueError(f"{text!r}: the priority must be a whole number") from None
        if priority < 1:
            raise ValueError(f"{text!r}: the priority must be 1 or more")
        return cls(parts[0], exten, priority)

    def __str__(self) -> str:
        return f"{self.context},{self.exten},{self.priority}"


@dataclass
class DropNet:
    """Which answered calls are overdue for the drop message."""

    target: DropTarget
    deadline: float = rules.CONNECT_DEADLINE
    grace: float = GRACE

    def _waiting(self, calls: Iterable[TrackedCall]) -> list[TrackedCall]:
        """Answered calls without an agent, still in the queue as far as the events
        tell, not moved before."""
        return [
            c for c in calls
            if c.answered_at is not None
            and c.connected_at is None
            and c.redirected_at is None
            and c.queue_left_at is None
            and not c.ended
            and not c.unattended
            and c.channel_name
        ]

    def overdue(self, calls: Iterable[TrackedCall], now: float) -> list[TrackedCall]:
        """The waiting calls ``deadline + grace`` seconds or more after their answer."""
        limit = self.deadline + self.grace
        return [c for c in self._waiting(calls) if now - c.answered_at >= limit]  # type: ignore[operator]

    def next_due(self, calls: Iterable[TrackedCall]) -> float | None:
        """When the next waiting call becomes overdue (engine clock), if any."""
        limit = self.deadline + self.grace
        return min((c.answered_at + limit for c in self._waiting(calls)), default=None)  # type: ignore[operator]

    def headers(self, call: TrackedCall) -> list[tuple[str, str]]:
        assert call.channel_name is not None
        return [("Channel", call.channel_name), ("Context", self.target.context),
                ("Exten", self.target.exten), ("Priority", str(self.target.priority))]



async def move(pool: Any, member: Any, net: DropNet, call: TrackedCall, now: float, *,
               denied: set[str]) -> bool:
    """Redirect ``call`` to the drop message on its ``pool`` connection ``member``
    (the one that placed it). Tried once: a refusal is logged (a missing ``write = call``
    once per server, in ``denied``), never retried. True when Asterisk took it."""
    call.redirected_at = now
    try:
        await pool.action(member, "Redirect", net.headers(call))
    except PermissionDenied as exc:
        if member.server not in denied:
            denied.add(member.server)
            log.warning("%s: answered calls no agent takes cannot be moved to the drop message"
                        " (%s); give the AMI user write = call in manager.conf, or make the"
                        " dialplan's Queue() give up after 2 seconds", member.server, exc)
        return False
    except AMIActionError as exc:
        # "No such channel": it ended meanwhile.
        log.debug("attempt %s: redirect refused: %s", call.attempt_id, exc)
        return False
    except (AMIError, LocalProtocolError) as exc:
        log.info("attempt %s: redirect not sent: %s", call.attempt_id, exc)
        return False
    log.info("attempt %s: no agent after %.1f s, moved to %s", call.attempt_id,
             now - (call.answered_at or now), net.target)
    return True
