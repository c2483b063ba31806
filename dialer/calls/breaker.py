"""The circuit breaker: a campaign whose calls fail at once, one after another, stops itself.

A wrong channel template (``PJSIP/...`` on an Asterisk without PJSIP), a trunk
that is down or a permission missing makes every call fail before it rings
anybody. Left alone, the dialer would burn through the lead list at the rate
cap, charging each lead an attempt and parking it for the ``failed`` retry
delay. :class:`CircuitBreaker` counts such failures in a row for one campaign
(sans-IO, like the tracker: calls in, a verdict out); at ``failures`` of them
it trips, and the engine pauses the campaign with :func:`failure_text` as the
reason and takes back the charge of the calls of the run. Until the campaign
runs again, every call of it that fails the same way is not charged either.

A call "fails at once" when it ends ``failed`` without being answered within
``within`` seconds of its Originate (of its claim, if it was never sent):
refused by Asterisk, not sendable, or reported failed at once. Any other end
(answered, no answer, busy, congestion, invalid number, a slow failure) ends
the run. Refusals saying Asterisk is shutting down, and calls whose end is
unknown, neither count nor end it: a stopping server is the pool's business.
"""

from __future__ import annotations

from dialer.ami.errors import SHUTTING_DOWN
from dialer.calls import dispositions as d
from dialer.calls.tracker import TrackedCall


class CircuitBreaker:
    def __init__(self, *, failures: int = 20, within: float = 5.0) -> None:
        self.failures = failures
        self.within = within
        self.run: list[TrackedCall] = []
        self.tripped = False

    def failed_at_once(self, call: TrackedCall) -> bool:
        start = call.originated_at or call.queued_at
        return (call.disposition == d.FAILED and call.answered_at is None
                and start is not None and call.ended_at is not None
                and call.ended_at - start <= self.within)

    def call_ended(self, call: TrackedCall) -> list[TrackedCall] | None:
        """Count one ended call; returns the calls of the run when this one trips it.

        Once tripped, a call that fails at once is marked not ``charged``."""
        if call.response_message == SHUTTING_DOWN or call.disposition == d.UNKNOWN:
            return None
        if not self.failed_at_once(call):
            self.run.clear()
            return None
        if self.tripped:
            call.charged = False
            return None
        self.run.append(call)
        if len(self.run) < self.failures:
            return None
        self.tripped = True
        calls, self.run = self.run, []
        return calls

    def reset(self) -> None:
        """The campaign runs again (resumed or started): count afresh."""
        self.tripped = False
        self.run.clear()


def failure_text(call: TrackedCall, channel: str) -> str:
    """What Asterisk said of a failed call, in words (``channel``: the
    campaign's channel template)."""
    if call.response_message:
        return f"Asterisk refused the Originate: {call.response_message}"
    if call.cause_txt and not call.response_seen and call.originated_at is None:
        return call.cause_txt  # never sent: the dialer's own reason
    parts = []
    if call.reason is not None:
        parts.append(f"OriginateResponse Reason {call.reason}"
                     f" ({d.REASON_TEXT.get(call.reason, 'unknown')})")
    if call.cause:
        parts.append(f"cause {call.cause} ({call.cause_txt or 'unknown'})")
    if call.dial_status:
        parts.append(f"DialStatus {call.dial_status}")
    if not call.had_channels:
        parts.append(f"no channel was created: can this Asterisk dial {channel!r}?")
    return ", ".join(parts) or "no reason given"
