"""Channels and calls of the simulated PBX, and the AMI event sequence of each outcome.

Every Originate to ``Local/<number>@<context>`` creates the Local channel pair
``Local/<number>@<context>-<seq>;1`` (the originated leg, which runs the
connect context once answered) and ``;2`` (the simulated carrier). The events,
their header sets and their order follow a real Asterisk 22's, as recorded in
``tests/transcripts/`` (``originate-*.txt``) and compared side by side in
``tests/test_sim_vs_asterisk.py``; where real Asterisk orders concurrent events
differently from one run to the next, one observed order is used (the fidelity
tests list the others).

Nothing here does I/O or sleeps: the owner (:class:`dialer.sim.server.SimAsterisk`)
provides ``emit(name, class, headers)``, ``call_later(seconds, fn, *args)``
and ``clock()`` (simulated seconds), and calls the entry points below.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from dialer.sim.queue import DEVICE_INUSE, DEVICE_NOT_INUSE, Member, QueueState
from dialer.sim.scenario import LAST_DIGIT_TABLE, Outcome, Scenario

if TYPE_CHECKING:  # pragma: no cover
    from dialer.sim.server import SimAsterisk

UNKNOWN = "<unknown>"

STATE_DESC = {0: "Down", 1: "Rsrvd", 2: "OffHook", 3: "Dialing", 4: "Ring", 5: "Ringing",
              6: "Up", 7: "Busy", 8: "Dialing Offhook", 9: "Pre-ring"}

# Q.850 cause texts as Asterisk prints them in Hangup's Cause-txt.
CAUSE_TEXT = {
    0: "Unknown", 1: "Unallocated (unassigned) number", 2: "No route to specified transmit network",
    3: "No route to destination", 16: "Normal Clearing", 17: "User busy",
    18: "No user responding", 19: "User alerting, no answer", 21: "Call Rejected",
    22: "Number changed", 27: "Destination out of order", 28: "Invalid number format",
    31: "Normal, unspecified", 34: "Circuit/channel congestion", 38: "Network out of order",
    41: "Temporary failure", 42: "Switching equipment congestion",
    127: "Interworking, unspecified",
}

# Carrier dialplan priorities per layout: (ringing, wait-ring, answer, wait-talk, hangup).
_LAYOUT_PRIO = {"answered": (23, 24, 25, 26, 27), "long": (18, 19, 20, 21, 22),
                "short": (None, None, 14, 15, 16)}

# Delays (simulated seconds) between steps that real Asterisk shows.
CARRIER_WAIT_DELAY = 0.5  # Answer() -> next Wait() on the carrier leg (Answer waits for media)
AGENT_WAIT_DELAY = 0.5  # agent Answer() -> Wait(talk)
QUEUE_POLL = 1.0  # a waiting caller checks for a free member once a second

_ROUTABLE = re.compile(r"^\+?[0-9]+$")


def fmt_seconds(x: float) -> str:
    """``Wait()`` argument text: integral seconds without a decimal point."""
    if abs(x - round(x)) < 1e-9:
        return str(int(round(x)))
    return f"{x:.3f}".rstrip("0").rstrip(".")


class Channel:
    """One simulated channel; ``headers(prefix)`` renders the standard snapshot."""

    __slots__ = ("name", "uniqueid", "linkedid", "state", "cid_num", "cid_name", "conn_num",
                 "conn_name", "context", "exten", "priority", "app", "appdata", "created",
                 "bridge", "call", "leg", "runs_pbx")

    def __init__(self, name: str, uniqueid: str, linkedid: str, state: int, context: str,
                 exten: str, created: float, call: "Call", leg: str):
        self.name = name
        self.uniqueid = uniqueid
        self.linkedid = linkedid
        self.state = state
        self.cid_num = self.cid_name = self.conn_num = self.conn_name = UNKNOWN
        self.context = context
        self.exten = exten
        self.priority = 1
        self.app = ""
        self.appdata = ""
        self.created = created
        self.bridge: str | None = None
        self.call = call
        self.leg = leg  # "1", "2", "agent1", "agent2"
        self.runs_pbx = False

    def headers(self, prefix: str = "") -> list[tuple[str, str]]:
        return [
            (prefix + "Channel", self.name),
            (prefix + "ChannelState", str(self.state)),
            (prefix + "ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            (prefix + "CallerIDNum", self.cid_num),
            (prefix + "CallerIDName", self.cid_name),
            (prefix + "ConnectedLineNum", self.conn_num),
            (prefix + "ConnectedLineName", self.conn_name),
            (prefix + "Language", "en"),
            (prefix + "AccountCode", ""),
            (prefix + "Context", self.context),
            (prefix + "Exten", self.exten),
            (prefix + "Priority", str(self.priority)),
            (prefix + "Uniqueid", self.uniqueid),
            (prefix + "Linkedid", self.linkedid),
        ]


@dataclass
class OriginateRequest:
    """The parts of an Originate action the PBX uses."""

    channel: str
    context: str = ""
    exten: str = ""
    priority: str = "1"
    application: str = ""
    data: str = ""
    timeout: float = 30.0  # seconds
    callerid: tuple[str, str] | None = None  # (name, number)
    variables: list[tuple[str, str]] = field(default_factory=list)
    channel_id: str | None = None
    other_channel_id: str | None = None
    action_id: str | None = None
    is_async: bool = True
    # Called once for a synchronous Originate: True when answered, False on failure.
    done: Callable[[bool], None] | None = None


@dataclass(eq=False)
class Call:
    id: int
    req: OriginateRequest
    number: str
    dial_context: str
    outcome: Outcome
    ch1: Channel = None  # type: ignore[assignment]
    ch2: Channel = None  # type: ignore[assignment]
    device: str = ""
    state: str = "ringing"  # ringing | answered | queued | bridged | app | ended
    created: float = 0.0
    answered_at: float = 0.0
    join_at: float = 0.0
    join_pos: int = 0
    bridged_at: float = 0.0
    member: Member | None = None
    a1: Channel | None = None
    a2: Channel | None = None
    bridge_id: str = ""
    timers: list = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)

    def cancel_timers(self) -> None:
        for t in self.timers:
            t.cancel()
        self.timers.clear()


class PBX:
    """The call model: channels, calls, the queue, and their events."""

    def __init__(self, sim: "SimAsterisk", scenario: Scenario, rng: random.Random):
        self.sim = sim
        self.scenario = scenario
        self.rng = rng
        self.ids = random.Random(rng.random())  # bridge ids, apart from outcome draws
        self.channels: dict[str, Channel] = {}
        self.calls: dict[int, Call] = {}
        self.local_seq = 0
        self.uid_seq = 0
        self.call_seq = 0
        self.calls_processed = 0
        self.peak_calls = 0
        self.calls_total = 0
        self.queue = QueueState.build(scenario.queue, int(time.time()))
        self._none_free = False
        self._poll_timer = None

    # --- helpers ----------------------------------------------------------------

    def _uid(self) -> str:
        u = f"{int(time.time())}.{self.uid_seq}"
        self.uid_seq += 1
        return u

    def _ev(self, name: str, cls: str, headers: list[tuple[str, str]]) -> None:
        self.sim.emit(name, cls, headers)

    def _later(self, call: Call, seconds: float, fn: Callable, *args) -> None:
        call.timers.append(self.sim.call_later(seconds, fn, *args))

    def _newexten(self, ch: Channel, prio: int, app: str, data: str) -> None:
        ch.priority = prio
        ch.app, ch.appdata = app, data
        self._ev("Newexten", "dialplan",
                 ch.headers() + [("Extension", ch.exten), ("Application", app), ("AppData", data)])

    def _varset(self, ch: Channel, var: str, value: str) -> None:
        self._ev("VarSet", "dialplan", ch.headers() + [("Variable", var), ("Value", value)])

    def _newstate(self, ch: Channel, state: int) -> None:
        ch.state = state
        self._ev("Newstate", "call", ch.headers())

    def _dsc(self, device: str, state: str) -> None:
        self._ev("DeviceStateChange", "call", [("Device", device), ("State", state)])

    def _hangup_request(self, ch: Channel, cause: int, soft: bool = False) -> None:
        self._ev("SoftHangupRequest" if soft else "HangupRequest", "call",
                 ch.headers() + [("Cause", str(cause))])

    def _hangup(self, ch: Channel, cause: int) -> None:
        self.channels.pop(ch.name, None)
        self._ev("Hangup", "call", ch.headers() + [("Cause", str(cause)),
                                                   ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown"))])

    def _local_bridge(self, one: Channel, two: Channel, context: str, exten: str) -> None:
        self._ev("LocalBridge", "call", one.headers("LocalOne") + two.headers("LocalTwo")
                 + [("Context", context), ("Exten", exten), ("LocalOptimization", "Yes")])

    def _bridge_headers(self, call: Call, n: int) -> list[tuple[str, str]]:
        return [("BridgeUniqueid", call.bridge_id), ("BridgeType", "basic"),
                ("BridgeTechnology", "simple_bridge"), ("BridgeCreator", UNKNOWN),
                ("BridgeName", UNKNOWN), ("BridgeNumChannels", str(n)),
                ("BridgeVideoSourceMode", "none")]

    def _originate_response(self, call_or_req, ok: bool, reason: int) -> None:
        if isinstance(call_or_req, Call):
            call, req = call_or_req, call_or_req.req
        else:
            call, req = None, call_or_req
        if not req.is_async:
            if req.done is not None:
                req.done(ok)
                req.done = None
            return
        h: list[tuple[str, str]] = []
        if req.action_id is not None:
            h.append(("ActionID", req.action_id))
        if ok and call is not None:
            chan, uid = call.ch1.name, call.ch1.uniqueid
            cnum, cname = call.ch1.cid_num, call.ch1.cid_name
        else:
            chan = req.channel
            uid = req.channel_id or UNKNOWN
            cnum = req.callerid[1] if req.callerid and req.callerid[1] else UNKNOWN
            cname = req.callerid[0] if req.callerid and req.callerid[0] else UNKNOWN
        h += [("Response", "Success" if ok else "Failure"), ("Channel", chan),
              ("Context", req.context), ("Exten", req.exten), ("Reason", str(reason)),
              ("Uniqueid", uid), ("CallerIDNum", cnum), ("CallerIDName", cname)]
        self._ev("OriginateResponse", "call", h)

    def _end_call(self, call: Call) -> None:
        call.state = "ended"
        call.cancel_timers()
        self.calls.pop(call.id, None)
        for ch in (call.ch1, call.ch2, call.a1, call.a2):
            if ch is not None:
                self.channels.pop(ch.name, None)

    def _start_pbx(self, ch: Channel) -> None:
        if not ch.runs_pbx:
            ch.runs_pbx = True
            self.calls_processed += 1

    # --- queries ------------------------------------------------------------------

    def active_calls(self) -> int:
        return len(self.calls)

    def pbx_channels(self) -> int:
        return sum(1 for ch in self.channels.values() if ch.runs_pbx)

    def find_channel(self, name: str) -> Channel | None:
        ch = self.channels.get(name)
        if ch is None and len(name) > 2 and name.startswith("/") and name.endswith("/"):
            try:
                pat = re.compile(name[1:-1])
            except re.error:
                return None
            for c in self.channels.values():
                if pat.search(c.name):
                    return c
        return ch

    # --- Originate ------------------------------------------------------------------

    def originate(self, req: OriginateRequest) -> None:
        """Start an Originate that was accepted (the caller sent the queued Response)."""
        tech, _, data = req.channel.partition("/")
        if tech.lower() != "local":
            # No such channel technology: no channels, just the failure.
            self._originate_response(req, False, 0)
            return
        data = data.split("/", 1)[0]
        number, _, context = data.partition("@")
        context = context or "default"
        member = self.queue.member(f"Local/{number}@{context}")
        if member is not None and context == member.context:
            self._outside_call(req, member)
            return
        self.call_seq += 1
        call = Call(self.call_seq, req, number, context, LAST_DIGIT_TABLE["0"])
        call.created = self.sim.clock()
        call.device = f"Local/{number}@{context}"
        routable = bool(_ROUTABLE.match(number))
        cap = self.scenario.channel_capacity
        if not routable:
            outcome = None
        elif cap and len(self.calls) >= cap:
            outcome = self.scenario.digits["5"]
        else:
            outcome = self.scenario.pick_outcome(number, self.rng)
        if outcome is not None:
            call.outcome = outcome
        self.calls[call.id] = call
        self.calls_total += 1
        self.peak_calls = max(self.peak_calls, len(self.calls))

        seq = self.local_seq
        self.local_seq += 1
        base = f"Local/{number}@{context}-{seq:08x}"
        uid1 = req.channel_id or self._uid()
        if req.other_channel_id:
            uid2 = req.other_channel_id
        elif req.channel_id:
            uid2 = req.channel_id + ";2"
        else:
            uid2 = self._uid()
        now = call.created
        ch1 = Channel(base + ";1", uid1, uid1, 0, context, number, now, call, "1")
        ch2 = Channel(base + ";2", uid2, uid1, 4, context, number, now, call, "2")
        call.ch1, call.ch2 = ch1, ch2
        self.channels[ch1.name] = ch1
        self.channels[ch2.name] = ch2
        self._ev("Newchannel", "call", ch1.headers())
        self._ev("Newchannel", "call", ch2.headers())
        self._newexten(ch1, 1, "AppDial2", "(Outgoing Line)")
        for k, v in req.variables:
            call.variables[k] = v
            self._varset(ch1, k, v)
        if req.callerid is not None:
            name, num = req.callerid
            ch1.cid_num, ch1.cid_name = num or UNKNOWN, name or UNKNOWN
            self._ev("NewCallerid", "call", ch1.headers() + [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
            ch1.conn_num, ch1.conn_name = ch1.cid_num, ch1.cid_name
            self._ev("NewConnectedLine", "call", ch1.headers())
        for k, v in req.variables:
            self._varset(ch2, k, v)
        if req.callerid is not None:
            ch2.cid_num = ch2.conn_num = ch1.cid_num
            ch2.cid_name = ch2.conn_name = ch1.cid_name
            self._ev("NewCallerid", "call", ch2.headers() + [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
            self._ev("NewConnectedLine", "call", ch2.headers())
        if outcome is None:
            # No extension matches in the dialed context (the caller id is set first).
            self._hangup(ch2, 0)
            self._hangup(ch1, 0)
            self._originate_response(req, False, 0)
            self._dsc(call.device, "INVALID")
            self._dsc(call.device, "INVALID")
            self._end_call(call)
            return
        self._local_bridge(ch1, ch2, context, number)
        self._ev("DialBegin", "call", ch1.headers("Dest") + [("DialString", f"{number}@{context}")])
        self._start_pbx(ch2)
        o = call.outcome
        self._newexten(ch2, 1, "NoOp", f"carrier: number {number} outcome {o.digit}")
        self._newexten(ch2, 2, "Goto", f"outcome{o.digit}")
        getattr(self, "_carrier_" + o.layout)(call)

    # --- carrier outcomes ---------------------------------------------------------

    def _carrier_busy(self, call: Call) -> None:
        ch1, ch2 = call.ch1, call.ch2
        self._newexten(ch2, 7, "Busy", "5")
        self._newstate(ch2, 7)
        self._ev("DialEnd", "call", ch1.headers("Dest") + [("DialStatus", "BUSY")])
        self._hangup_request(ch2, 0)
        self._hangup(ch1, 0)
        self._originate_response(call, False, 5)
        self._dsc(call.device, "INUSE")
        self._dsc(call.device, "NOT_INUSE")
        self._hangup_request(ch2, 16, soft=True)
        self._hangup(ch2, 17)
        self._dsc(call.device, "NOT_INUSE")
        self._end_call(call)

    def _carrier_congestion(self, call: Call) -> None:
        ch1, ch2 = call.ch1, call.ch2
        self._newexten(ch2, 9, "Congestion", "5")
        self._newstate(ch2, 7)
        self._ev("DialEnd", "call", ch1.headers("Dest") + [("DialStatus", "CONGESTION")])
        self._hangup_request(ch2, 0)
        self._originate_response(call, False, 8)
        self._hangup_request(ch2, 16, soft=True)
        self._hangup(ch1, 0)
        self._hangup(ch2, 34)
        for _ in range(3):
            self._dsc(call.device, "NOT_INUSE")
        self._end_call(call)

    def _carrier_invalid(self, call: Call) -> None:
        ch1, ch2 = call.ch1, call.ch2
        self._newexten(ch2, 17, "Hangup", "1")
        self._hangup_request(ch2, 16, soft=True)
        self._hangup_request(ch1, 1)
        self._hangup(ch2, 1)
        self._ev("DialEnd", "call", ch1.headers("Dest") + [("DialStatus", "NOANSWER")])
        self._originate_response(call, False, 0)
        self._hangup(ch1, 1)
        self._dsc(call.device, "NOT_INUSE")
        self._dsc(call.device, "NOT_INUSE")
        self._end_call(call)

    def _ringing(self, call: Call, ring_prio: int, wait_prio: int, wait_text: str) -> None:
        self._newexten(call.ch2, ring_prio, "Ringing", "")
        self._newstate(call.ch1, 5)
        self._newexten(call.ch2, wait_prio, "Wait", wait_text)
        self._dsc(call.device, "INUSE")
        self._ev("DialState", "call", call.ch1.headers("Dest") + [("DialStatus", "RINGING")])

    def _after_post_dial_delay(self, call: Call, fn: Callable, *args) -> float:
        """Run ``fn`` (the line starts ringing) after the scenario's post-dial delay; return the delay."""
        delay = self.scenario.post_dial_delay.sample(self.rng)
        if delay > 0:
            self._later(call, delay, fn, *args)
        else:
            fn(*args)
        return delay

    def _carrier_noanswer(self, call: Call) -> None:
        self._after_post_dial_delay(call, self._ringing, call, 11, 12, "120")
        # The Originate Timeout counts from the dial, not from the ringing.
        self._later(call, call.req.timeout, self._ring_timeout, call)

    def _carrier_answered(self, call: Call) -> None:
        o = call.outcome
        ring_p, wait_p, _, _, _ = _LAYOUT_PRIO[o.layout]
        if o.layout == "answered":
            # outcome0..3 are consecutive Goto(answered) lines of the carrier dialplan.
            self._newexten(call.ch2, 3 + (int(o.digit) if o.digit in "0123" else 0), "Goto", "answered")
        delay = self._after_post_dial_delay(call, self._ringing, call, ring_p, wait_p, fmt_seconds(o.ring))
        if delay + o.ring >= call.req.timeout:
            self._later(call, call.req.timeout, self._ring_timeout, call)
        else:
            self._later(call, delay + o.ring, self._answer, call)

    _carrier_long = _carrier_answered

    def _carrier_short(self, call: Call) -> None:
        self._answer(call)

    def _ring_timeout(self, call: Call) -> None:
        """The Originate's Timeout expired while the carrier leg was ringing."""
        if call.state != "ringing":
            return
        ch1, ch2 = call.ch1, call.ch2
        self._hangup_request(ch2, 19)
        self._originate_response(call, False, 3)
        self._hangup_request(ch2, 16, soft=True)
        self._hangup(ch2, 19)
        self._hangup(ch1, 19)
        self._dsc(call.device, "NOT_INUSE")
        self._dsc(call.device, "NOT_INUSE")
        self._end_call(call)

    def _answer(self, call: Call) -> None:
        if call.state != "ringing":
            return
        ch1, ch2 = call.ch1, call.ch2
        _, _, ans_p, talk_p, _ = _LAYOUT_PRIO[call.outcome.layout]
        call.cancel_timers()
        self._newexten(ch2, ans_p, "Answer", "")
        self._newstate(ch2, 6)
        self._dsc(call.device, "INUSE")
        self._newstate(ch1, 6)
        self._ev("DialEnd", "call", ch1.headers("Dest") + [("DialStatus", "ANSWER")])
        call.state = "answered"
        call.answered_at = self.sim.clock()
        self._later(call, CARRIER_WAIT_DELAY, self._carrier_talk, call, talk_p)
        req = call.req
        # The originated leg runs the connect context (or the application).
        self._start_pbx(ch1)
        if req.application:
            ch1.app, ch1.appdata = req.application, req.data
            self._originate_response(call, True, 4)
            self._dsc(call.device, "INUSE")
            call.state = "app"
            return
        ch1.context, ch1.exten = req.context, req.exten or "s"
        lead = call.variables.get("LEADID", "")
        if req.callerid is not None:
            cid = f'"{req.callerid[0]}" <{req.callerid[1]}>'
        else:
            cid = ""
        self._newexten(ch1, 1, "NoOp", f"lead answered: LEADID={lead} callerid={cid}")
        self._newexten(ch1, 2, "Queue", f"{self.queue.name},r")
        for var in ("ANSWEREDTIME", "ANSWEREDTIME_MS", "DIALEDTIME", "DIALEDTIME_MS",
                    "QUEUEWAIT", "QUEUEWAIT_MS"):
            self._varset(ch1, var, "")
        self._originate_response(call, True, 4)
        self._dsc(call.device, "INUSE")
        self._queue_join(call)

    def _carrier_talk(self, call: Call, talk_prio: int) -> None:
        if call.state in ("ended",) or call.ch2.name not in self.channels:
            return
        talk = call.outcome.talk
        self._newexten(call.ch2, talk_prio, "Wait", fmt_seconds(talk))
        self._later(call, talk, self._callee_hangup, call)

    # --- the queue ------------------------------------------------------------------

    def _queue_join(self, call: Call) -> None:
        q = self.queue
        if not q.config.joinempty and q.empty():
            # joinempty = no and every member paused: Queue() returns at once
            # (QUEUESTATUS=JOINEMPTY) without a QueueCallerJoin; the dialplan goes on.
            call.state = "answered"
            self._after_queue(call)
            return
        call.state = "queued"
        call.join_at = self.sim.clock()
        q.waiting.append(call)
        call.join_pos = len(q.waiting)
        if len(q.waiting) == 1:
            self._dsc(f"Queue:{q.name}", "RINGING")
        self._ev("QueueCallerJoin", "agent", call.ch1.headers() + [
            ("Queue", q.name), ("Position", str(call.join_pos)), ("Count", str(len(q.waiting)))])
        # queues.conf's timeout is how long a member's line rings, not how long a caller
        # waits: the caller waits until an agent frees, the Queue() application's own
        # timeout (drop_after) runs out, or the called party hangs up.
        if self.scenario.drop_after > 0:
            self._later(call, self.scenario.drop_after, self._drop_message, call)
        self._dispatch(call)

    def _dispatch(self, joined: Call) -> None:
        """Connect a caller who joins with nobody ahead and a member free; else wait."""
        q = self.queue
        if q.free and q.waiting and q.waiting[0] is joined:
            head = joined
            member = q.free_member()
            assert member is not None
            self._connect_agent(head, member)
        self._dispatch_later()

    def _dispatch_later(self) -> None:
        """Waiting callers check for a free member once a second (on the head caller's
        schedule, counted from when it joined); then every free member takes one."""
        q = self.queue
        if not (q.waiting and q.free) or self._poll_timer is not None:
            return
        head = q.waiting[0]
        now = self.sim.clock()
        k = int((now - head.join_at) // QUEUE_POLL) + 1
        self._poll_timer = self.sim.call_later(head.join_at + k * QUEUE_POLL - now, self._poll)

    def _poll(self) -> None:
        self._poll_timer = None
        q = self.queue
        while q.waiting and q.free:
            member = q.free_member()
            assert member is not None
            self._connect_agent(q.waiting[0], member)
        self._dispatch_later()

    def _leave_queue(self, call: Call) -> int:
        q = self.queue
        if q.waiting and q.waiting[0] is call:
            del q.waiting[0]
            return 1
        pos = q.waiting.index(call) + 1
        del q.waiting[pos - 1]
        return pos

    def _qms(self, m: Member) -> None:
        self._ev("QueueMemberStatus", "agent", m.status_headers(self.queue.name))

    def _connect_agent(self, call: Call, m: Member) -> None:
        q = self.queue
        ch1 = call.ch1
        now = self.sim.clock()
        pos = self._leave_queue(call)
        q.take(m)
        m.call = call
        call.member = m
        self._check_available()
        seq = self.local_seq
        self.local_seq += 1
        base = f"Local/{m.exten}@{m.context}-{seq:08x}"
        a1 = Channel(base + ";1", self._uid(), ch1.linkedid, 0, m.context, m.exten, now, call, "agent1")
        a2 = Channel(base + ";2", self._uid(), ch1.linkedid, 4, m.context, m.exten, now, call, "agent2")
        call.a1, call.a2 = a1, a2
        self.channels[a1.name] = a1
        self.channels[a2.name] = a2
        self._ev("Newchannel", "call", a1.headers())
        self._ev("Newchannel", "call", a2.headers())
        a1.cid_num, a1.cid_name = ch1.cid_num, ch1.cid_name
        self._newexten(a1, 1, "AppQueue", "(Outgoing Line)")
        self._ev("NewCallerid", "call", a1.headers() + [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        self._varset(a1, "DIALEDPEERNUMBER", f"{m.exten}@{m.context}")
        self._varset(a2, "DIALEDPEERNUMBER", f"{m.exten}@{m.context}")
        # The caller's number reaches the agent's legs: Asterisk reports a change
        # only when there is one (an Originate without CallerID leaves <unknown>).
        has_cid = (ch1.cid_num, ch1.cid_name) != (UNKNOWN, UNKNOWN)
        a2.cid_num = a2.conn_num = ch1.cid_num
        a2.cid_name = a2.conn_name = ch1.cid_name
        if has_cid:
            self._ev("NewCallerid", "call", a2.headers() + [("CID-CallingPres", "0 (Presentation Allowed, Not Screened)")])
        self._ev("NewConnectedLine", "call", a2.headers())
        self._local_bridge(a1, a2, m.context, m.exten)
        # app_queue's snapshot of the member channel already shows the connected line and exten s.
        a1.conn_num, a1.conn_name, a1.exten = ch1.cid_num, ch1.cid_name, "s"
        self._ev("AgentCalled", "agent", ch1.headers() + a1.headers("Dest") + [
            ("Queue", q.name), ("Interface", m.interface), ("MemberName", m.name)])
        a1.conn_num = a1.conn_name = UNKNOWN
        a1.exten = m.exten
        self._ev("DialBegin", "call", ch1.headers() + a1.headers("Dest") + [("DialString", m.interface)])
        self._start_pbx(a2)
        self._newexten(a2, 1, "Answer", "")
        self._newstate(a2, 6)
        a1.conn_num, a1.conn_name, a1.exten = ch1.cid_num, ch1.cid_name, "s"
        self._newstate(a1, 6)
        a1.app, a1.appdata = "AppQueue", "(Outgoing Line)"
        self._ev("Newexten", "dialplan", a1.headers() + [("Extension", "s"), ("Application", "AppQueue"), ("AppData", "(Outgoing Line)")])
        if has_cid:
            self._ev("NewConnectedLine", "call", a1.headers())
        self._ev("DialEnd", "call", ch1.headers() + a1.headers("Dest") + [("DialStatus", "ANSWER")])
        if not q.waiting:
            self._dsc(f"Queue:{q.name}", "NOT_INUSE")
        self._ev("QueueCallerLeave", "agent", ch1.headers() + [
            ("Queue", q.name), ("Position", str(pos)), ("Count", str(len(q.waiting)))])
        hold_ms = int(round((now - call.join_at) * 1000))
        hold = hold_ms // 1000
        q.record_hold(hold)
        self._varset(ch1, "QUEUEPOSITION", str(pos))
        self._varset(ch1, "QUEUEWAIT", str(hold))
        self._varset(ch1, "QUEUEWAIT_MS", str(hold_ms))
        self._ev("AgentConnect", "agent", ch1.headers() + a1.headers("Dest") + [
            ("Queue", q.name), ("Interface", m.interface), ("MemberName", m.name),
            ("HoldTime", str(hold)), ("RingTime", "0")])
        self._dsc(m.interface, "INUSE")
        self._dsc(m.interface, "INUSE")
        m.in_call = True
        m.status = DEVICE_INUSE
        self._qms(m)
        call.state = "bridged"
        call.bridged_at = now
        call.bridge_id = str(uuid.UUID(int=self.ids.getrandbits(128), version=4))
        self._ev("BridgeCreate", "call", self._bridge_headers(call, 0))
        a1.bridge = ch1.bridge = call.bridge_id
        self._ev("BridgeEnter", "call", self._bridge_headers(call, 1) + a1.headers())
        self._ev("BridgeEnter", "call", self._bridge_headers(call, 2) + ch1.headers())
        self._varset(a1, "BRIDGEPEER", ch1.name)
        self._varset(ch1, "BRIDGEPEER", a1.name)
        talk = q.config.agent_talk_time.sample(self.rng)
        self._later(call, AGENT_WAIT_DELAY, self._agent_talk, call, talk)

    def _agent_talk(self, call: Call, talk: float) -> None:
        if call.state != "bridged" or call.a2 is None:
            return
        self._newexten(call.a2, 2, "Wait", fmt_seconds(talk))
        self._later(call, talk, self._agent_hangup, call)

    def _answer_times(self, call: Call, now: float) -> None:
        ch1 = call.ch1
        ans_ms = int(round((now - call.bridged_at) * 1000))
        dial_ms = int(round((now - call.created) * 1000))
        self._varset(ch1, "ANSWEREDTIME", str(ans_ms // 1000))
        self._varset(ch1, "ANSWEREDTIME_MS", str(ans_ms))
        self._varset(ch1, "DIALEDTIME", str(dial_ms // 1000))
        self._varset(ch1, "DIALEDTIME_MS", str(dial_ms))

    def _member_done(self, call: Call, now: float) -> Member:
        m = call.member
        assert m is not None
        m.calls_taken += 1
        m.last_call = int(time.time())
        m.in_call = False
        m.status = DEVICE_NOT_INUSE
        return m

    def _release_member(self, m: Member) -> None:
        q = self.queue
        wrap = q.config.wrapup
        m.call = None
        now = self.sim.clock()
        m.wrapup_until = now + wrap
        if wrap > 0:
            self.sim.call_later(wrap, self._wrapup_done, m)
        else:
            q.make_free(m)
            self._check_available()
            self._dispatch_later()

    def _wrapup_done(self, m: Member) -> None:
        if m.call is None and m.busy:
            self.queue.make_free(m)
        self._check_available()
        self._dispatch_later()

    def _check_available(self) -> None:
        """``Queue:<name>_avail`` turns INUSE when no member is free, NOT_INUSE when one is."""
        q = self.queue
        none_free = q.available(self.sim.clock()) == 0
        if none_free != self._none_free:
            self._none_free = none_free
            self._dsc(f"Queue:{q.name}_avail", "INUSE" if none_free else "NOT_INUSE")

    def _agent_complete(self, call: Call, reason: str, now: float) -> None:
        q = self.queue
        m = call.member
        assert m is not None and call.a1 is not None
        talk = int(now - call.bridged_at)
        hold = int(call.bridged_at - call.join_at)
        q.completed += 1
        q.record_talk(talk)
        self._ev("AgentComplete", "agent", call.ch1.headers() + call.a1.headers("Dest") + [
            ("Queue", q.name), ("Interface", m.interface), ("MemberName", m.name),
            ("HoldTime", str(hold)), ("TalkTime", str(talk)), ("Reason", reason)])

    def _callee_hangup(self, call: Call, cause: int = 16, from_dialplan: bool = True) -> None:
        """The called party (carrier leg) hangs up."""
        if call.state == "ended":
            return
        ch1, ch2 = call.ch1, call.ch2
        now = self.sim.clock()
        hang_p = _LAYOUT_PRIO.get(call.outcome.layout, _LAYOUT_PRIO["answered"])[4]
        if from_dialplan:
            self._newexten(ch2, hang_p, "Hangup", "")
        if call.state == "bridged":
            a1, a2 = call.a1, call.a2
            assert a1 is not None and a2 is not None
            self._hangup_request(ch2, cause, soft=True)
            self._hangup_request(ch1, cause)
            self._agent_complete(call, "caller", now)
            self._hangup(ch2, cause)
            self._varset(ch1, "BRIDGEPEER", "")
            self._varset(a1, "BRIDGEPEER", "")
            ch1.bridge = a1.bridge = None
            self._ev("BridgeLeave", "call", self._bridge_headers(call, 1) + ch1.headers())
            self._ev("BridgeLeave", "call", self._bridge_headers(call, 0) + a1.headers())
            self._hangup_request(a2, cause)
            self._hangup(a1, cause)
            self._ev("BridgeDestroy", "call", self._bridge_headers(call, 0))
            self._answer_times(call, now)
            self._hangup_request(ch1, cause, soft=True)
            self._hangup(ch1, cause)
            self._hangup_request(a2, cause, soft=True)
            self._hangup(a2, cause)
            m = self._member_done(call, now)
            self._qms(m)
            self._dsc(m.interface, "NOT_INUSE")
            self._dsc(call.device, "NOT_INUSE")
            self._dsc(call.device, "NOT_INUSE")
            self._dsc(m.interface, "NOT_INUSE")
            self._end_call(call)
            self._release_member(m)
        elif call.state == "queued":
            self._hangup_request(ch2, cause, soft=True)
            self._hangup_request(ch1, cause)
            self._hangup(ch2, cause)
            self._abandon(call, now, cause)
        else:
            # Answered but outside the queue (application or redirected elsewhere).
            self._hangup_request(ch2, cause, soft=True)
            self._hangup_request(ch1, cause)
            self._hangup(ch2, cause)
            self._hangup_request(ch1, cause, soft=True)
            self._hangup(ch1, cause)
            self._dsc(call.device, "NOT_INUSE")
            self._dsc(call.device, "NOT_INUSE")
            self._end_call(call)

    def _abandon(self, call: Call, now: float, cause: int) -> None:
        self._leave_unanswered(call, now)
        self._hangup_lead(call, cause)

    def _leave_unanswered(self, call: Call, now: float) -> None:
        """The caller leaves the queue without an agent (Queue() gave up, the caller
        hung up, or a Redirect took it away): QueueCallerAbandon, QueueCallerLeave."""
        q = self.queue
        ch1 = call.ch1
        wait_ms = int(round((now - call.join_at) * 1000))
        dial_ms = int(round((now - call.created) * 1000))
        self._varset(ch1, "QUEUEWAIT", str(wait_ms // 1000))
        self._varset(ch1, "QUEUEWAIT_MS", str(wait_ms))
        self._varset(ch1, "DIALEDTIME", str(dial_ms // 1000))
        self._varset(ch1, "DIALEDTIME_MS", str(dial_ms))
        self._varset(ch1, "ANSWEREDTIME", "0")
        self._varset(ch1, "ANSWEREDTIME_MS", "0")
        self._varset(ch1, "ABANDONED", "TRUE")
        pos = self._leave_queue(call)
        q.abandoned += 1
        self._ev("QueueCallerAbandon", "agent", ch1.headers() + [
            ("Queue", q.name), ("Position", str(pos)), ("OriginalPosition", str(call.join_pos)),
            ("HoldTime", str(wait_ms // 1000))])
        if not q.waiting:
            self._dsc(f"Queue:{q.name}", "NOT_INUSE")
        self._ev("QueueCallerLeave", "agent", ch1.headers() + [
            ("Queue", q.name), ("Position", str(pos)), ("Count", str(len(q.waiting)))])
        self._varset(ch1, "QUEUEPOSITION", str(pos))
        call.state = "answered"
        self._dispatch_later()

    def _hangup_lead(self, call: Call, cause: int) -> None:
        """The dialplan hangs up the originated leg (after Queue() or the drop message)."""
        if call.state == "ended":
            return
        ch1 = call.ch1
        ch2_up = call.ch2.name in self.channels
        self._hangup_request(ch1, cause, soft=True)
        if ch2_up:
            # Queue() gave up and the dialplan hangs up the originated leg: the
            # carrier leg is asked to hang up too, as its own thread does it.
            self._hangup_request(call.ch2, cause)
        self._hangup(ch1, cause)
        if ch2_up:
            self._hangup_request(call.ch2, cause, soft=True)
            self._hangup(call.ch2, cause)
        self._dsc(call.device, "NOT_INUSE")
        self._dsc(call.device, "NOT_INUSE")
        self._end_call(call)

    def _drop_message(self, call: Call) -> None:
        """Queue()'s own timeout ran out (drop_after): the caller leaves the queue."""
        if call.state != "queued":
            return
        self._leave_unanswered(call, self.sim.clock())
        self._after_queue(call)

    def _after_queue(self, call: Call) -> None:
        """Queue() returned without an agent: the drop message (the README's
        dialer-drop), maybe an opt-out key press, then the dialplan hangs up."""
        call.state = "drop"
        if self.rng.random() < self.scenario.opt_out:
            self._ev("UserEvent", "user", call.ch1.headers() + [
                ("UserEvent", "DialerOptOut"),
                ("Attempt", call.variables.get("DIALER_ATTEMPT", "")),
                ("Lead", call.variables.get("DIALER_LEAD", ""))])
        if self.scenario.drop_message > 0:
            self._later(call, self.scenario.drop_message, self._hangup_lead, call, 16)
        else:
            self._hangup_lead(call, 16)

    def _agent_hangup(self, call: Call, cause: int = 16, from_dialplan: bool = True) -> None:
        """The agent hangs up first: the caller's Queue() ends, then the lead's leg."""
        if call.state != "bridged":
            return
        ch1, ch2, a1, a2 = call.ch1, call.ch2, call.a1, call.a2
        assert a1 is not None and a2 is not None
        now = self.sim.clock()
        if from_dialplan:
            self._newexten(a2, 3, "Hangup", "")
        self._hangup_request(a2, cause, soft=True)
        self._hangup_request(a1, cause)
        self._agent_complete(call, "agent", now)
        self._hangup(a2, cause)
        self._varset(a1, "BRIDGEPEER", "")
        self._varset(ch1, "BRIDGEPEER", "")
        ch1.bridge = a1.bridge = None
        self._ev("BridgeLeave", "call", self._bridge_headers(call, 1) + a1.headers())
        self._hangup(a1, cause)
        m = self._member_done(call, now)
        self._dsc(m.interface, "NOT_INUSE")
        self._qms(m)
        self._ev("BridgeLeave", "call", self._bridge_headers(call, 0) + ch1.headers())
        self._ev("BridgeDestroy", "call", self._bridge_headers(call, 0))
        self._answer_times(call, now)
        self._hangup_request(ch1, cause, soft=True)
        self._hangup_request(ch2, cause)
        self._hangup(ch1, cause)
        self._hangup_request(ch2, cause, soft=True)
        self._hangup(ch2, cause)
        self._dsc(m.interface, "NOT_INUSE")
        self._dsc(call.device, "NOT_INUSE")
        self._dsc(call.device, "NOT_INUSE")
        self._end_call(call)
        self._release_member(m)

    # --- actions on channels --------------------------------------------------------

    def hangup(self, ch: Channel, cause: int) -> None:
        """The Hangup action on ``ch``."""
        call = ch.call
        if call.state == "ended":
            return
        if call.state == "ringing":
            ch1, ch2 = call.ch1, call.ch2
            call.cancel_timers()
            self._ev("DialEnd", "call", ch1.headers("Dest") + [("DialStatus", "NOANSWER")])
            self._hangup_request(ch2, cause)
            self._originate_response(call, False, 0)
            self._hangup_request(ch2, cause, soft=True)
            self._hangup(ch2, cause)
            self._dsc(call.device, "NOT_INUSE")
            self._hangup(ch1, cause)
            self._dsc(call.device, "NOT_INUSE")
            self._end_call(call)
        elif ch.leg in ("agent1", "agent2") and call.state == "bridged":
            self._agent_hangup(call, cause, from_dialplan=False)
        else:
            self._callee_hangup(call, cause, from_dialplan=False)

    def redirect(self, ch: Channel, context: str, exten: str, priority: int) -> None:
        """The Redirect action: move the originated leg to ``context,exten,priority``."""
        call = ch.call
        q = self.queue
        now = self.sim.clock()
        if call.state == "queued":
            # As a real Asterisk reports a caller taken out of Queue(): abandoned, left.
            self._leave_unanswered(call, now)
        elif call.state == "bridged":
            a1, a2 = call.a1, call.a2
            assert a1 is not None and a2 is not None
            self._agent_complete(call, "transfer", now)
            self._varset(a1, "BRIDGEPEER", "")
            self._varset(call.ch1, "BRIDGEPEER", "")
            a1.bridge = call.ch1.bridge = None
            self._ev("BridgeLeave", "call", self._bridge_headers(call, 1) + call.ch1.headers())
            self._ev("BridgeLeave", "call", self._bridge_headers(call, 0) + a1.headers())
            self._ev("BridgeDestroy", "call", self._bridge_headers(call, 0))
            self._hangup_request(a2, 16)
            self._hangup(a1, 16)
            self._hangup_request(a2, 16, soft=True)
            self._hangup(a2, 16)
            m = self._member_done(call, now)
            self._qms(m)
            self._dsc(m.interface, "NOT_INUSE")
            call.a1 = call.a2 = None
            call.member = None
            self._release_member(m)
        target = call.ch1
        target.context, target.exten = context, exten
        if context == self.scenario.connect_context and exten == "s":
            self._newexten(target, priority, "Queue", f"{q.name},r")
            self._queue_join(call)
        elif context == self.scenario.drop_context:
            call.cancel_timers()
            self._newexten(target, priority, "Playback", "drop message")
            self._after_queue(call)
        else:
            self._newexten(target, priority, "Wait", "3600")
            call.state = "app"

    def pause(self, m: Member, paused: bool, reason: str = "") -> None:
        """QueuePause: a paused member is offered no call (one it has goes on);
        waiting callers stay (leavewhenempty = no)."""
        if m.paused == paused:
            return
        m.paused = paused
        m.paused_reason = reason if paused else ""
        m.last_pause = int(time.time())
        self.queue.refresh(m)
        self._dsc(f"Queue:{self.queue.name}_pause_{m.interface}", "INUSE" if paused else "NOT_INUSE")
        self._check_available()
        self._ev("QueueMemberPause", "agent", m.status_headers(self.queue.name))
        self._dispatch_later()

    def _outside_call(self, req: OriginateRequest, m: Member) -> None:
        """An Originate straight to a member's line: it answers and talks the queue's
        agent talk time, its line in use meanwhile (ringinuse = no: the queue does not
        ring it). Only what concerns the member is reported."""
        m.outside = True
        self.queue.refresh(m)
        m.status = DEVICE_INUSE
        self._dsc(m.interface, "INUSE")
        self._qms(m)
        self._check_available()
        ok = Call(0, req, m.exten, m.context, LAST_DIGIT_TABLE["0"])
        ok.ch1 = Channel(f"{m.interface}-{self.local_seq:08x};1", req.channel_id or self._uid(),
                         "", 6, m.context, m.exten, self.sim.clock(), ok, "1")
        self.local_seq += 1
        self._originate_response(ok, True, 4)
        talk = self.queue.config.agent_talk_time.sample(self.rng)
        self.sim.call_later(talk, self._outside_done, m)

    def _outside_done(self, m: Member) -> None:
        if not m.outside:
            return  # the server restarted meanwhile (SimAsterisk.reset): nothing to end
        m.outside = False
        if not m.in_call:
            # A member that was on a queue call already stays in use for it.
            m.status = DEVICE_NOT_INUSE
            self._dsc(m.interface, "NOT_INUSE")
        self._qms(m)
        self.queue.refresh(m)
        self._check_available()
        self._dispatch_later()

    def drop_all(self) -> None:
        """Forget every call without events (a restart that loses calls in progress)."""
        for call in list(self.calls.values()):
            call.cancel_timers()
            req = call.req
            if not req.is_async and req.done is not None:
                req.done(False)
                req.done = None
        self.calls.clear()
        self.channels.clear()
        self.queue.reset()
        self._none_free = False
        if self._poll_timer is not None:
            self._poll_timer.cancel()
            self._poll_timer = None
