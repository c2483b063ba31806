"""The call tracker: AMI events in, lifecycle steps out.

Sans-IO, like the codec: :meth:`CallTracker.handle` takes one AMI event and the
time it arrived and returns the lifecycle steps it caused. The engine writes
those steps to the database; nothing here touches the network, the clock or
the database.

A call is registered before its ``Originate`` leaves, with the ActionID and
the ``ChannelId``/``OtherChannelId`` the dialer chose. Asterisk then gives
every channel of that call (the originated ``;1`` leg, the carrier ``;2`` leg,
the agents' channels) the ``ChannelId`` as its ``Linkedid``, so events are
matched by ActionID (``OriginateResponse``, which on failure says
``Uniqueid: <unknown>``) or by Linkedid (everything else). Dial events of the
originated leg carry only ``Dest*`` headers, so they are matched by
``DestLinkedid`` and ``DestUniqueid``.

A call has ended once its ``OriginateResponse`` has arrived and every channel
it created has hung up: the recordings show the response anywhere from before
the first ``Hangup`` (no answer) to between them (busy) to long before them
(answered). A failure can even be reported before the call's channels appear
(a burst of Originates shows it), and a bad technology creates no channel at
all; so a failure reported while no channel has been seen is settled only
``settle_after`` seconds later (:meth:`CallTracker.expire`), unless channels
turn up meanwhile.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Iterable

from dialer.compliance import rules
from dialer.calls import dispositions as d


class Step(enum.StrEnum):
    ORIGINATED = "originated"      # Asterisk queued the Originate
    RINGING = "ringing"            # the originated leg is being dialed
    ANSWERED = "answered"          # the called party answered
    QUEUE_JOINED = "queue_joined"  # the call entered the agents' queue
    CONNECTED = "connected"        # an agent took the call
    ENDED = "ended"                # every channel is gone; disposition known


@dataclass(eq=False)
class TrackedCall:
    """What the tracker knows of one attempt. Times are epoch seconds."""

    attempt_id: int
    campaign_id: int
    lead_id: int
    action_id: str
    channel_id: str
    other_channel_id: str
    server: str = ""
    connection: str = ""
    unattended: bool = False
    queued_at: float | None = None
    originated_at: float | None = None
    ringing_at: float | None = None
    answered_at: float | None = None
    queue_joined_at: float | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    reason: int | None = None
    dial_status: str | None = None
    cause: int | None = None
    cause_txt: str | None = None
    uniqueid: str | None = None
    agent: str | None = None
    disposition: str | None = None
    response_seen: bool = False
    cause_from_carrier: bool = False
    had_channels: bool = False
    settle_at: float | None = None
    live_channels: set[str] = field(default_factory=set)
    #: name of the originated channel (Uniqueid = channel_id), from Newchannel
    channel_name: str | None = None
    #: when the called line started ringing: DialState RINGING of the originated
    #: leg (DialBegin comes before any post-dial delay)
    alerting_at: float | None = None
    #: when the dialer sent Hangup for the call while it rang (cleared if refused)
    hangup_at: float | None = None
    #: a Hangup was tried: the call is not offered for one again
    hangup_tried: bool = False
    #: the times of the first and the latest event of this call
    first_event_at: float | None = None
    last_event_at: float | None = None
    #: when a failure that is settled later (settle_at) was reported
    reported_at: float | None = None
    #: channels whose Hangup was seen (a channel listing taken meanwhile may still show them)
    gone_channels: set[str] = field(default_factory=set)
    #: when the last Hangup of one of its channels arrived
    last_hangup_at: float | None = None
    #: the step columns (answered_at, ended_at, ...) and ``disposition`` that the
    #: engine did not observe but estimated (stored in the attempt's ``estimated``)
    estimated: set[str] = field(default_factory=set)
    #: the Message of the Originate's Response: Error (no call was placed)
    response_message: str | None = None
    #: whether the attempt counts against the lead's max_attempts
    charged: bool = True
    #: when the caller left the queue (QueueCallerLeave: to an agent, or the
    #: dialplan's Queue() gave up)
    queue_left_at: float | None = None
    #: when the engine sent Redirect to the drop message (dialer.calls.drops)
    redirected_at: float | None = None

    @property
    def ended(self) -> bool:
        return self.ended_at is not None

    @property
    def time_to_agent(self) -> float | None:
        if self.connected_at is None or self.answered_at is None:
            return None
        return self.connected_at - self.answered_at

    @property
    def phase(self) -> str:
        """Where the call is now: ringing, answered (waiting for an agent),
        connected, or ended."""
        if self.ended_at is not None:
            return "ended"
        if self.connected_at is not None:
            return "connected"
        if self.answered_at is not None:
            return "answered"
        return "ringing"


@dataclass(frozen=True, slots=True)
class Transition:
    call: TrackedCall
    step: Step
    at: float
    event: str | None = None  # name of the AMI event that caused it


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


class CallTracker:
    """Follows registered calls through AMI events."""

    def __init__(self, *, drop_after: float = rules.CONNECT_DEADLINE, settle_after: float = 2.0) -> None:
        self.drop_after = drop_after
        self.settle_after = settle_after
        self._settling: dict[str, TrackedCall] = {}
        self._by_action: dict[str, TrackedCall] = {}
        self._by_channel: dict[str, TrackedCall] = {}
        self.events_seen = 0
        self.events_matched = 0

    # -- registration ------------------------------------------------------

    def add(self, call: TrackedCall) -> None:
        if call.action_id in self._by_action or call.channel_id in self._by_channel:
            raise ValueError(f"call {call.action_id}/{call.channel_id} is already tracked")
        self._by_action[call.action_id] = call
        self._by_channel[call.channel_id] = call

    def get(self, action_id: str) -> TrackedCall | None:
        return self._by_action.get(action_id)

    def calls(self) -> list[TrackedCall]:
        return list(self._by_action.values())

    def __len__(self) -> int:
        return len(self._by_action)

    def forget(self, call: TrackedCall) -> None:
        """Stop tracking a call that was never placed."""
        self._drop(call)

    def _drop(self, call: TrackedCall) -> None:
        self._settling.pop(call.action_id, None)
        self._by_action.pop(call.action_id, None)
        self._by_channel.pop(call.channel_id, None)

    # -- results of the Originate action itself ------------------------------

    def originated(self, action_id: str, at: float) -> list[Transition]:
        """Asterisk answered the Originate with ``Response: Success``."""
        call = self._by_action.get(action_id)
        if call is None or call.originated_at is not None:
            return []
        if call.first_event_at is not None:
            # Read after events that Asterisk raised once it had queued the call.
            at = min(at, call.first_event_at)
        call.originated_at = at
        return [Transition(call, Step.ORIGINATED, at, "Response")]

    def refused(self, action_id: str, at: float, message: str = "", *,
                response_message: str | None = None, charged: bool = True) -> list[Transition]:
        """The Originate got ``Response: Error`` (``response_message`` is
        Asterisk's ``Message``; such a refusal is not ``charged`` to the lead)
        or could not be sent (``message`` says why): no call was placed."""
        call = self._by_action.get(action_id)
        if call is None:
            return []
        call.cause_txt = message or call.cause_txt
        if response_message is not None:
            call.response_message = response_message
        call.charged = charged
        return self._end(call, at, d.FAILED, "Response")

    # -- events ------------------------------------------------------------

    def handle(self, event, at: float) -> list[Transition]:
        """Apply one AMI event (a codec ``Message``) that arrived at ``at``."""
        self.events_seen += 1
        handler = self._HANDLERS.get(event.name)
        if handler is None:
            return []
        return handler(self, event, at)

    def _call_for(self, event, key: str = "Linkedid") -> TrackedCall | None:
        linked = event.get(key)
        if linked is None:
            return None
        call = self._by_channel.get(linked)
        if call is not None:
            self.events_matched += 1
        return call

    def _on_originate_response(self, event, at: float) -> list[Transition]:
        call = self._by_action.get(event.get("ActionID") or "")
        if call is None:
            call = self._by_channel.get(event.get("Uniqueid") or "")
        if call is None or call.response_seen:
            return []
        at = self._seen(call, at)
        self.events_matched += 1
        call.response_seen = True
        call.reason = _int(event.get("Reason"))
        uniqueid = event.get("Uniqueid")
        if uniqueid and uniqueid != "<unknown>":
            call.uniqueid = uniqueid
        out: list[Transition] = []
        if call.originated_at is None:
            # The action's own response can arrive after its event when another
            # connection reads events; the event proves it was queued.
            call.originated_at = at
            out.append(Transition(call, Step.ORIGINATED, at, event.name))
        if call.reason == d.REASON_ANSWERED:
            out += self._answer(call, at, event.name)
        out += self._maybe_end(call, at, event.name)
        return out

    def _on_newchannel(self, event, at: float) -> list[Transition]:
        call = self._call_for(event)
        if call is None or call.ended:
            return []
        at = self._seen(call, at)
        uniqueid = event.get("Uniqueid")
        if uniqueid:
            call.live_channels.add(uniqueid)
            call.had_channels = True
            if uniqueid == call.channel_id:
                call.channel_name = event.get("Channel")
            if call.settle_at is not None:
                call.settle_at = None
                self._settling.pop(call.action_id, None)
        return []

    def _on_dial(self, event, at: float) -> list[Transition]:
        call = self._call_for(event, "DestLinkedid")
        if call is None or call.ended or event.get("DestUniqueid") != call.channel_id:
            return []
        at = self._seen(call, at)
        out: list[Transition] = []
        if call.ringing_at is None:
            call.ringing_at = at
            out.append(Transition(call, Step.RINGING, at, event.name))
        if event.name == "DialState" and call.alerting_at is None and event.get("DialStatus") == "RINGING":
            call.alerting_at = at
        if event.name == "DialEnd":
            status = event.get("DialStatus") or ""
            call.dial_status = status
            if status == "ANSWER":
                out += self._answer(call, at, event.name)
        return out

    def _on_queue_join(self, event, at: float) -> list[Transition]:
        call = self._call_for(event)
        if call is None or call.ended or call.queue_joined_at is not None:
            return []
        at = self._seen(call, at)
        call.queue_joined_at = at
        return [Transition(call, Step.QUEUE_JOINED, at, event.name)]

    def _on_queue_leave(self, event, at: float) -> list[Transition]:
        call = self._call_for(event)
        if call is None or call.ended or event.get("Uniqueid") != call.channel_id:
            return []
        if call.queue_left_at is None:
            call.queue_left_at = self._seen(call, at)
        return []

    def _on_agent_connect(self, event, at: float) -> list[Transition]:
        call = self._call_for(event)
        if call is None or call.ended or call.connected_at is not None:
            return []
        at = self._seen(call, at)
        if event.get("Uniqueid") != call.channel_id:
            return []
        call.connected_at = at
        call.agent = event.get("MemberName") or event.get("Interface")
        return [Transition(call, Step.CONNECTED, at, event.name)]

    def _on_hangup(self, event, at: float) -> list[Transition]:
        call = self._call_for(event)
        if call is None or call.ended:
            return []
        at = self._seen(call, at)
        uniqueid = event.get("Uniqueid") or ""
        call.live_channels.discard(uniqueid)
        call.gone_channels.add(uniqueid)
        call.last_hangup_at = at
        cause = _int(event.get("Cause"))
        # The carrier leg's cause describes the called party; the originated
        # leg often says 0 (Unknown) for a busy or congested line. So the
        # carrier leg's non-zero cause wins, else the first non-zero one.
        if cause is not None and not call.cause_from_carrier:
            if uniqueid == call.other_channel_id and cause != 0:
                call.cause, call.cause_txt = cause, event.get("Cause-txt")
                call.cause_from_carrier = True
            elif not call.cause:
                call.cause, call.cause_txt = cause, event.get("Cause-txt")
        return self._maybe_end(call, at, event.name)

    _HANDLERS = {
        "OriginateResponse": _on_originate_response,
        "Newchannel": _on_newchannel,
        "DialBegin": _on_dial,
        "DialState": _on_dial,
        "DialEnd": _on_dial,
        "QueueCallerJoin": _on_queue_join,
        "QueueCallerLeave": _on_queue_leave,
        "AgentConnect": _on_agent_connect,
        "Hangup": _on_hangup,
    }

    @staticmethod
    def _seen(call: TrackedCall, at: float) -> float:
        """The time of an event of ``call``, kept in step order: event times are
        Asterisk's mapped onto the engine's clock (a mapping that can move a
        little from one event to the next), while the Originate's own response,
        which carries no time, counts when it was read."""
        if call.last_event_at is not None and at < call.last_event_at:
            at = call.last_event_at
        if call.originated_at is not None and at < call.originated_at:
            at = call.originated_at
        if call.queued_at is not None and at < call.queued_at:
            at = call.queued_at  # never before the dialer placed it
        if call.first_event_at is None:
            call.first_event_at = at
        call.last_event_at = at
        return at

    # -- transitions -------------------------------------------------------

    def _answer(self, call: TrackedCall, at: float, event: str) -> list[Transition]:
        if call.answered_at is not None:
            return []
        out: list[Transition] = []
        if call.ringing_at is None:
            call.ringing_at = at
            out.append(Transition(call, Step.RINGING, at, event))
        call.answered_at = at
        out.append(Transition(call, Step.ANSWERED, at, event))
        return out

    def _maybe_end(self, call: TrackedCall, at: float, event: str) -> list[Transition]:
        if not call.response_seen or call.live_channels:
            return []
        if not call.had_channels and call.answered_at is None:
            # Reported failed before any channel showed: wait for stragglers.
            call.settle_at = at + self.settle_after
            call.reported_at = at
            self._settling[call.action_id] = call
            return []
        return self._end(call, at, self._disposition(call), event)

    def next_settle_time(self) -> float | None:
        """When :meth:`expire` next has something to do."""
        return min((c.settle_at for c in self._settling.values()), default=None)

    def expire(self, now: float) -> list[Transition]:
        """Settle failures whose channels never showed within ``settle_after``;
        they end at the time the failure was reported."""
        out: list[Transition] = []
        for call in [c for c in self._settling.values() if c.settle_at <= now]:
            self._settling.pop(call.action_id, None)
            # It ended when Asterisk reported the failure, not when the wait was over.
            reported_at = call.settle_at if call.reported_at is None else call.reported_at
            out += self._end(call, reported_at, self._disposition(call), "OriginateResponse")
        return out

    def _disposition(self, call: TrackedCall) -> str:
        if call.answered_at is not None:
            return d.answered_disposition(
                call.answered_at, call.connected_at,
                unattended=call.unattended, drop_after=self.drop_after,
            )
        return d.unanswered_disposition(call.reason, call.dial_status, call.cause)

    def _end(self, call: TrackedCall, at: float, disposition: str, event: str | None) -> list[Transition]:
        if call.ended:
            return []
        call.ended_at = at
        call.disposition = disposition
        self._drop(call)
        return [Transition(call, Step.ENDED, at, event)]

    # -- calls whose events were missed ------------------------------------

    def resolve_lost(self, call: TrackedCall, at: float) -> list[Transition]:
        """End a call that Asterisk no longer knows of, from the evidence seen.

        The disposition is only stated where the evidence settles it: a call
        connected to an agent in time, an answered call still without an agent
        past the drop limit when last seen, or an unanswered call whose
        ``OriginateResponse`` arrived. Everything else is ``unknown``. ``at``
        is an estimate: the call is flagged so (``ended_at``), unless every
        channel seen had hung up and only the ``OriginateResponse`` was missed:
        the call then ended with its last ``Hangup``, as the events settle it.
        """
        if call.had_channels and not call.live_channels and call.last_hangup_at is not None:
            return self._end(call, call.last_hangup_at, self._disposition(call), None)
        call.estimated.add("ended_at")
        if call.answered_at is not None:
            if call.unattended or (
                call.connected_at is not None
                and call.connected_at - call.answered_at <= self.drop_after
            ):
                disposition = d.CONNECTED
            else:
                disposition = d.UNKNOWN
        elif call.response_seen:
            disposition = d.unanswered_disposition(call.reason, call.dial_status, call.cause)
        else:
            disposition = d.UNKNOWN
        return self._end(call, at, disposition, None)

    def resolve_recorded(self, call: TrackedCall, ended_at: float, cause: int | None, step: str,
                         *, answered_estimate: float) -> list[Transition]:
        """End a call from the record the dialplan's hangup handler left for it
        (``dialer-end/<attempt>``: written only for calls that were answered
        and reached the connect context). ``step`` is ``agent`` when an agent
        had taken the call. The end time and cause are Asterisk's; an answer
        time the engine did not see is ``answered_estimate``, flagged as an
        estimate."""
        out: list[Transition] = []
        if call.answered_at is None:
            at = min(answered_estimate, ended_at)
            if call.ringing_at is None:
                call.ringing_at = at
                call.estimated.add("ringing_at")
                out.append(Transition(call, Step.RINGING, at))
            call.answered_at = at
            call.estimated.add("answered_at")
            out.append(Transition(call, Step.ANSWERED, at))
        if cause is not None and not call.cause:
            call.cause = cause
        if call.unattended or step == "agent" or (
            call.connected_at is not None
            and call.connected_at - call.answered_at <= self.drop_after
        ):
            disposition = d.CONNECTED
        else:
            disposition = d.DROPPED
        return out + self._end(call, ended_at, disposition, None)

    def still_alive(self, call: TrackedCall, channels: Iterable[str]) -> None:
        """Asterisk reports these channels of the call as up: follow them."""
        call.live_channels = set(channels) - call.gone_channels
        if call.live_channels:
            call.had_channels = True
