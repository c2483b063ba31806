"""How an attempt's AMI evidence maps to its final disposition.

The inputs are what the recordings of a real Asterisk show for each outcome:
the ``OriginateResponse`` ``Reason``, the ``DialEnd`` ``DialStatus`` of the
originated leg, and the Q.850 ``Cause`` of the carrier leg's ``Hangup``.
``Reason: 0`` covers many things (unallocated number, bad technology, no
route, a ringing call hung up by the dialer), so the cause decides there.
"""

from __future__ import annotations

from dialer.compliance import rules
from dialer.models import Disposition

# The documented set lives in dialer.models.Disposition; these are its values.
CONNECTED = Disposition.CONNECTED.value
DROPPED = Disposition.DROPPED.value
NO_ANSWER = Disposition.NO_ANSWER.value
BUSY = Disposition.BUSY.value
CONGESTION = Disposition.CONGESTION.value
INVALID_NUMBER = Disposition.INVALID_NUMBER.value
FAILED = Disposition.FAILED.value
UNKNOWN = Disposition.UNKNOWN.value

# OriginateResponse Reason codes (AST_CONTROL_* values Asterisk reports).
REASON_FAILED = 0
REASON_HANGUP = 1
REASON_RING_TIMEOUT = 3
REASON_ANSWERED = 4
REASON_BUSY = 5
REASON_CONGESTION = 8

#: What each Reason means, in words.
REASON_TEXT = {
    REASON_FAILED: "failed", REASON_HANGUP: "hung up", 2: "local ring", REASON_RING_TIMEOUT:
    "no answer", REASON_ANSWERED: "answered", REASON_BUSY: "busy", REASON_CONGESTION: "congestion",
}

_BY_REASON = {
    REASON_HANGUP: NO_ANSWER,
    REASON_RING_TIMEOUT: NO_ANSWER,
    REASON_BUSY: BUSY,
    REASON_CONGESTION: CONGESTION,
}

# Q.850 causes that say the number itself is wrong.
_INVALID_CAUSES = frozenset({1, 2, 3, 22, 28})
_BUSY_CAUSES = frozenset({17})
_NO_ANSWER_CAUSES = frozenset({16, 18, 19, 21, 31})
_CONGESTION_CAUSES = frozenset({34, 38, 41, 42, 44, 47, 58})

_BY_DIALSTATUS = {
    "BUSY": BUSY,
    "CONGESTION": CONGESTION,
    "CHANUNAVAIL": FAILED,
}


def unanswered_disposition(reason: int | None, dial_status: str | None, cause: int | None) -> str:
    """The disposition of a call that was never answered."""
    if reason in _BY_REASON:
        return _BY_REASON[reason]
    if cause in _INVALID_CAUSES:
        return INVALID_NUMBER
    if cause in _BUSY_CAUSES:
        return BUSY
    if cause in _CONGESTION_CAUSES:
        return CONGESTION
    if dial_status in _BY_DIALSTATUS:
        return _BY_DIALSTATUS[dial_status]
    if cause in _NO_ANSWER_CAUSES or dial_status in ("NOANSWER", "CANCEL"):
        # A ringing call hung up by the dialer (or by its own timeout).
        return NO_ANSWER
    return FAILED


def answered_disposition(
    answered_at: float, connected_at: float | None, *, unattended: bool,
    drop_after: float = rules.CONNECT_DEADLINE,
) -> str:
    """An answered call is connected when an agent took it within ``drop_after``
    seconds of answer (or, unattended, when it was answered at all); otherwise
    it was dropped, which is what the abandon rate counts."""
    if unattended:
        return CONNECTED
    if connected_at is not None and connected_at - answered_at <= drop_after:
        return CONNECTED
    return DROPPED
