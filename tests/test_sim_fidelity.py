"""Fidelity of the simulated Asterisk against the recordings of a real Asterisk 22.

For every recording with a ``.json`` timeline, the exact bytes the recording
sent are replayed to the simulator at their recorded times (under trio's
MockClock) and what comes back is compared with the ``.txt``: the same
messages, each with the same header keys in the same order and the same values
wherever a value does not depend on time, uniqueids, channel sequence numbers
or the recording server's earlier calls (``tests/sim_replay.py`` says which).

Every remaining difference is listed below with its reason. Two kinds are
handled by rule rather than listed one by one:

* ``DeviceStateChange`` and ``QueueMemberStatus`` are compared as a multiset,
  not in order: Asterisk raises them from its device-state taskprocessor
  thread, so they land at varying places among a call's events from one run to
  the next (compare originate-answered with originate-answered-1..3).
* List items (``CoreShowChannel``, ``Status``, ``core show channels`` rows) are
  compared as a set: Asterisk lists channels in its container's hash order;
  the simulator lists them in creation order.
"""

from __future__ import annotations

import bisect
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio
import trio.testing

from dialer.ami.codec import NEED_DATA, AMIParser, Banner, Message
from dialer.sim import SimAsterisk

# --- replaying a recording and comparing the answers ---------------------------------

TRANSCRIPTS = Path(__file__).resolve().parents[1].parent / "shared" / "ami-transcripts"
if not TRANSCRIPTS.is_dir():
    pytest.skip(f"no AMI recordings at {TRANSCRIPTS} (../shared is absent)", allow_module_level=True)


def load_recording(name: str) -> tuple[dict, list]:
    """The .json timeline and the messages of the .txt (banner first)."""
    meta = json.loads((TRANSCRIPTS / f"{name}.json").read_text())
    return meta, parse_stream((TRANSCRIPTS / f"{name}.txt").read_bytes())


def parse_stream(data: bytes) -> list:
    p = AMIParser(role="client")
    p.receive_data(data)
    out = []
    while True:
        ev = p.next_event()
        if ev is NEED_DATA or not isinstance(ev, (Banner, Message)):
            break
        out.append(ev)
    return out


@dataclass
class Replay:
    messages: list = field(default_factory=list)  # Banner / Message, in arrival order
    times: list = field(default_factory=list)  # seconds since connect
    closed_at: float | None = None


async def replay(sim: SimAsterisk, port: int, meta: dict, *, linger: float = 3.0) -> Replay:
    """Send the recording's bytes at their recorded times; collect what comes back.

    Stops when the server closes the connection, or ``linger`` seconds after
    the last send when it does not.
    """
    result = Replay()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    t0 = trio.current_time()
    parser = AMIParser(role="client")

    async def reader() -> None:
        while True:
            try:
                data = await stream.receive_some(1 << 16)
            except trio.BrokenResourceError:
                data = b""
            now = trio.current_time() - t0
            if not data:
                result.closed_at = now
                return
            parser.receive_data(data)
            while True:
                ev = parser.next_event()
                if ev is NEED_DATA:
                    break
                result.messages.append(ev)
                result.times.append(now)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        for item in meta["sent"]:
            await trio.sleep_until(t0 + item["t"])
            if result.closed_at is not None:
                break
            await stream.send_all(item["text"].encode())
        last = meta["sent"][-1]["t"] if meta["sent"] else 0.0
        with trio.move_on_at(t0 + max(last, meta.get("server_closed_at") or 0) + linger):
            while result.closed_at is None:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    await trio.aclose_forcefully(stream)
    return result


# --- normalisation ----------------------------------------------------------------

# Values that depend on the wall clock or on elapsed time.
TIME_KEYS = {"timestamp", "uptime", "lastreload", "logintime", "lastcall", "duration", "seconds"}
# Values that count what the recording server did before the recording.
HISTORY_KEYS = {"callstaken"}
HISTORY_BY_EVENT = {
    "QueueParams": {"holdtime", "talktime", "completed", "abandoned", "servicelevelperf",
                    "servicelevelperf2"},
    "QueueSummary": {"holdtime", "talktime"},
}
TIME_VARS = {"ANSWEREDTIME_MS", "DIALEDTIME_MS", "QUEUEWAIT_MS"}
_UID = re.compile(r"^\d{9,11}\.\d+$")
_BRIDGE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_SEQ = re.compile(r"-([0-9a-f]{8});([12])")
_AGENT = re.compile(r"([Aa]gent)\d+")


class Normaliser:
    """Replaces time-dependent values by a placeholder, and uniqueids, channel
    sequence numbers and bridge ids by their rank: uniqueids and sequence numbers
    by numeric order (so that two lists in different orders still agree), bridge
    ids by order of first appearance."""

    def __init__(self, messages: list, *, any_agent: bool = False) -> None:
        self.any_agent = any_agent
        uids, seqs = set(), set()
        for msg in messages:
            if isinstance(msg, Banner):
                continue
            for _, v in msg.items():
                if _UID.match(v):
                    uids.add(v)
                for m in _SEQ.finditer(v):
                    seqs.add(m.group(1))
        self.uid = {u: f"<U{i + 1}>" for i, u in enumerate(sorted(uids, key=lambda u: int(u.split(".")[1])))}
        self.seq = {q: f"<S{i + 1}>" for i, q in enumerate(sorted(seqs, key=lambda q: int(q, 16)))}
        self.bridges: dict[str, str] = {}

    def value(self, key: str, value: str, var: str | None, event: str | None = None) -> str:
        k = key.lower()
        if k in TIME_KEYS:
            return "<time>"
        if k in HISTORY_KEYS or k in HISTORY_BY_EVENT.get(event or "", ()):
            return "<history>"
        if k == "value" and var in TIME_VARS:
            return "<ms>"
        if _UID.match(value):
            return self.uid[value]
        if _BRIDGE.match(value):
            if value not in self.bridges:
                self.bridges[value] = f"<B{len(self.bridges) + 1}>"
            return self.bridges[value]
        if "-" in value and ";" in value:
            value = _SEQ.sub(lambda m: f"-{self.seq[m.group(1)]};{m.group(2)}", value)
        if self.any_agent:
            value = _AGENT.sub(lambda m: m.group(1) + "N", value)
        return value

    def message(self, msg) -> tuple:
        if isinstance(msg, Banner):
            return ("banner", msg.line)
        items = msg.items()
        var = None
        for k, v in items:
            if k == "Variable":
                var = v
        event = msg.name if msg.kind == "event" else None
        out = [(k, self.value(k, v, var, event)) for k, v in items]
        outputs = [i for i, (k, _) in enumerate(out) if k == "Output"]
        if len(outputs) > 4:
            # "core show channels": one row per channel in the channel container's
            # hash order, then three summary lines; compare the rows as a set.
            rows = outputs[1:-3]
            ordered = sorted(out[i][1] for i in rows)
            for i, v in zip(rows, ordered):
                out[i] = ("Output", v)
        for i in outputs:
            k, v = out[i]
            if v.endswith(" calls processed") or v.endswith(" call processed"):
                out[i] = (k, "<history> calls processed")
        return tuple(out)


def describe(sig: tuple) -> str:
    """A short label for a normalised message: its name and the channel it concerns."""
    if sig and sig[0] == "banner":
        return "banner"
    d = dict(sig)
    first = f"{sig[0][0]}: {sig[0][1]}" if sig else "?"
    extra = [d[k] for k in ("Channel", "DestChannel", "Device", "Variable", "State", "DialStatus",
                            "MemberName", "Message", "Application") if k in d]
    return " ".join([first] + extra)


@dataclass
class Comparison:
    missing: list[str]  # in the recording, not from the simulator
    extra: list[str]  # from the simulator, not in the recording
    moved: list[str]  # recorded messages the simulator sent in another order

    @property
    def same(self) -> bool:
        return not (self.missing or self.extra or self.moved)


def _lis_keep(seq: list[int]) -> set[int]:
    """Indices (into seq) of one longest increasing subsequence."""
    tails: list[int] = []
    tails_idx: list[int] = []
    prev = [-1] * len(seq)
    for i, v in enumerate(seq):
        j = bisect.bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tails_idx.append(i)
        else:
            tails[j] = v
            tails_idx[j] = i
        prev[i] = tails_idx[j - 1] if j else -1
    keep = set()
    i = tails_idx[-1] if tails_idx else -1
    while i >= 0:
        keep.add(i)
        i = prev[i]
    return keep


def compare(recorded: list, simulated: list, *, unordered=lambda sig: False,
            any_agent: bool = False) -> Comparison:
    """Compare two message lists after normalisation.

    Messages for which ``unordered(sig)`` is true are compared as a multiset only;
    ``any_agent`` makes agent numbers irrelevant.
    """
    nr = Normaliser(recorded, any_agent=any_agent)
    ns = Normaliser(simulated, any_agent=any_agent)
    rec = [nr.message(m) for m in recorded]
    sim = [ns.message(m) for m in simulated]
    pool: dict[tuple, list[int]] = {}
    for i, sig in enumerate(sim):
        pool.setdefault(sig, []).append(i)
    used: Counter = Counter()
    missing, order, order_labels = [], [], []
    for sig in rec:
        idxs = pool.get(sig, [])
        if used[sig] < len(idxs):
            j = idxs[used[sig]]
            used[sig] += 1
            if not unordered(sig):
                order.append(j)
                order_labels.append(describe(sig))
        else:
            missing.append(describe(sig))
    extra = []
    for sig, idxs in pool.items():
        for _ in range(len(idxs) - used[sig]):
            extra.append(describe(sig))
    keep = _lis_keep(order)
    moved = [order_labels[i] for i in range(len(order)) if i not in keep]
    return Comparison(missing, extra, moved)


# --- the recordings -----------------------------------------------------------------------

RECORDINGS = sorted(p.stem for p in TRANSCRIPTS.glob("*.json"))

# Recordings made "while two answered leads were talking to agents".
WITH_TWO_CALLS = {"status", "coreshowchannels", "command-core-show-channels", "queuestatus",
                  "queuesummary"}

LIST_EVENTS = {"CoreShowChannel", "Status"}


def unordered(sig: tuple) -> bool:
    if not sig or sig[0] == "banner" or sig[0][0] != "Event":
        return False
    return sig[0][1] in ("DeviceStateChange", "QueueMemberStatus") or sig[0][1] in LIST_EVENTS


# Why a listed difference remains (each KNOWN entry names one of these).
QMS_RACE = (
    "QueueMemberStatus for the agent's device turning INUSE: whether app_queue has set "
    "InCall by then depends on which Asterisk thread runs first (InCall 0 in this "
    "recording, 1 in originate-answered); the simulator always sends it after "
    "AgentConnect with InCall 1")
RACE = (
    "events from different Asterisk threads (carrier leg, originated leg, bridge, "
    "agent leg) interleave differently from run to run; the simulator uses the order of "
    "originate-answered for every answered call")
WALL_SECONDS = (
    "AgentComplete TalkTime is a difference of whole wall-clock seconds in Asterisk "
    "(time(NULL)); a 1.02 s talk crossing a second boundary shows 2, the simulator shows 1")

KNOWN: dict[str, dict[str, object]] = {
    "filter": {"moved": ["Event: Hangup Local/agent3@agents-<S2>;2"], "why": RACE},
    "originate-answered-1": {
        "missing": ["Event: QueueMemberStatus Agent3"],
        "extra": ["Event: QueueMemberStatus Agent3"],
        "moved": ["Event: Hangup Local/agent3@agents-<S2>;1"],
        "why": QMS_RACE + "; " + RACE,
    },
    "originate-answered-2": {
        "missing": ["Event: QueueMemberStatus Agent1"],
        "extra": ["Event: QueueMemberStatus Agent1"],
        "moved": [
            "Event: DialState Local/15551230002@carrier-<S1>;1 RINGING",
            "Event: Hangup Local/15551230002@carrier-<S1>;2",
            "Event: BridgeLeave Local/agent1@agents-<S2>;1",
            "Event: BridgeDestroy",
            "Event: HangupRequest Local/agent1@agents-<S2>;2",
            "Event: Hangup Local/agent1@agents-<S2>;1",
        ],
        "why": QMS_RACE + "; " + RACE,
    },
    "originate-answered-3": {
        "missing": ["Event: QueueMemberStatus Agent2"],
        "extra": ["Event: QueueMemberStatus Agent2"],
        "moved": [
            "Event: OriginateResponse Local/15551230003@carrier-<S1>;1",
            "Event: AgentComplete Local/15551230003@carrier-<S1>;1 Local/agent2@agents-<S2>;1 Agent2",
            "Event: BridgeLeave Local/agent2@agents-<S2>;1",
            "Event: BridgeDestroy",
            "Event: HangupRequest Local/agent2@agents-<S2>;2",
            "Event: Hangup Local/agent2@agents-<S2>;1",
        ],
        "why": QMS_RACE + "; " + RACE,
    },
    "originate-channelid": {
        "missing": ["Event: QueueMemberStatus Agent2",
                    "Event: AgentComplete Local/15551230007@carrier-<S1>;1 Local/agent2@agents-<S2>;1 Agent2"],
        "extra": ["Event: QueueMemberStatus Agent2",
                  "Event: AgentComplete Local/15551230007@carrier-<S1>;1 Local/agent2@agents-<S2>;1 Agent2"],
        "moved": [
            "Event: OriginateResponse Local/15551230007@carrier-<S1>;1",
            "Event: BridgeLeave Local/agent2@agents-<S2>;1",
            "Event: BridgeDestroy",
            "Event: HangupRequest Local/agent2@agents-<S2>;2",
            "Event: Hangup Local/agent2@agents-<S2>;1",
        ],
        "why": QMS_RACE + "; " + WALL_SECONDS + "; " + RACE,
    },
    "originate-channelid-invalid": {
        "moved": ["Event: Hangup Local/15551230008@carrier-<S1>;1"], "why": RACE},
    "originate-queue-agent": {
        "moved": [
            "Event: DialState Local/15551230009@carrier-<S1>;1 RINGING",
            "Event: OriginateResponse Local/15551230009@carrier-<S1>;1",
            "Event: Newstate Local/15551230009@carrier-<S1>;2",
        ],
        "why": RACE,
    },
    "originate-short-answer": {
        "missing": ["Event: QueueMemberStatus Agent3"],
        "extra": ["Event: QueueMemberStatus Agent3"],
        "moved": [
            "Event: OriginateResponse Local/15551230007@carrier-<S1>;1",
            "Event: Hangup Local/15551230007@carrier-<S1>;2",
            "Event: BridgeLeave Local/agent3@agents-<S2>;1",
            "Event: BridgeDestroy",
            "Event: HangupRequest Local/agent3@agents-<S2>;2",
            "Event: Hangup Local/agent3@agents-<S2>;1",
        ],
        "why": QMS_RACE + "; " + RACE,
    },
    "originate-sync-answered": {
        "moved": [
            "Event: Newstate Local/15551230007@carrier-<S1>;2",
            "Event: Hangup Local/15551230007@carrier-<S1>;2",
            "Event: BridgeLeave Local/agent3@agents-<S2>;1",
            "Event: BridgeDestroy",
            "Event: HangupRequest Local/agent3@agents-<S2>;2",
            "Event: Hangup Local/agent3@agents-<S2>;1",
        ],
        "why": RACE,
    },
}


def _first_agent(rec: list) -> str | None:
    for m in rec:
        if isinstance(m, Message):
            for _, v in m.items():
                hit = re.search(r"Local/agent(\d+)@agents-([0-9a-f]{8})", v)
                if hit:
                    return f"Agent{hit.group(1)}"
    return None


def _first_seq(rec: list) -> int | None:
    seqs = []
    for m in rec:
        if isinstance(m, Message):
            for _, v in m.items():
                seqs += [int(x, 16) for x in re.findall(r"-([0-9a-f]{8});[12]", v)]
    return min(seqs) if seqs else None


async def _two_calls_talking(port: int) -> None:
    """Two leads answered and talking to agents, set up on another connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    msg = (b"Action: Login\r\nUsername: dialer\r\nSecret: dialerpass\r\nEvents: off\r\n\r\n")
    for number in ("15551230019", "15551230029"):
        msg += (b"Action: Originate\r\nChannel: Local/" + number.encode() + b"@carrier\r\n"
                b"Context: dialer-connect\r\nExten: s\r\nPriority: 1\r\nAsync: true\r\n"
                b"Timeout: 20000\r\nCallerID: \"Campaign\" <15550001000>\r\n\r\n")
    await stream.send_all(msg)
    await trio.sleep(5.3)
    await stream.aclose()


async def run_recording(name: str):
    meta, rec = load_recording(name)
    sim = SimAsterisk()
    seq = _first_seq(rec)
    if seq is not None:
        sim.pbx.local_seq = seq
    agent = _first_agent(rec)
    if agent is not None:
        sim.queue.set_next_member(agent)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        if name in WITH_TWO_CALLS:
            # The recordings show agents 2 and 3 with the two leads.
            sim.queue.set_next_member("Agent2")
            await _two_calls_talking(port)
        result = await replay(sim, port, meta)
        nursery.cancel_scope.cancel()
    return meta, rec, result, sim


TIMED = [
    ("OriginateResponse", lambda m: isinstance(m, Message) and m.name == "OriginateResponse"),
    ("last Hangup", lambda m: isinstance(m, Message) and m.name == "Hangup"),
    ("last response", lambda m: isinstance(m, Message) and m.kind == "response"),
]


@pytest.mark.parametrize("name", [n for n in RECORDINGS if n != "originate-burst-20"])
def test_recording_replayed(name):
    meta, rec, result, sim = trio.run(
        run_recording, name, clock=trio.testing.MockClock(autojump_threshold=0))
    got = compare(rec, result.messages, unordered=unordered)
    known = KNOWN.get(name, {})
    assert not known or known["why"]
    assert sorted(got.missing) == sorted(known.get("missing", []))
    assert sorted(got.extra) == sorted(known.get("extra", []))
    assert got.moved == known.get("moved", [])
    # The same timing: each OriginateResponse and the last Hangup arrive when they did
    # in the recording (the recorded times are real-clock times, hence 50 ms of tolerance).
    rec_times = [r["t"] for r in meta["received"]]
    assert len(rec_times) == len(rec)
    for label, pick in TIMED:
        want = [t for m, t in zip(rec, rec_times) if pick(m)]
        got_t = [t for m, t in zip(result.messages, result.times) if pick(m)]
        if want:
            assert got_t, label
            assert got_t[-1] == pytest.approx(want[-1], abs=0.05), label
    # Same ending: the server closes where the recording's server did.
    if meta.get("server_closed_at") is not None:
        assert result.closed_at is not None
        assert result.closed_at == pytest.approx(meta["server_closed_at"], abs=0.05)


def test_every_recording_is_covered():
    assert len(RECORDINGS) >= 37
    assert "originate-burst-20" in RECORDINGS


# --- originate-burst-20: twenty calls at once -------------------------------------------
#
# Twenty concurrent calls interleave their events differently on every run of a real
# Asterisk (each Originate runs on its own thread), so the burst is compared call by
# call. What remains different, and why:
#
# * The eight answered 0-3 calls all answer 1 s after their Originate. Asterisk's
#   threads queued them in the order 001, 002, 013, 012, 011, 010, 003, 000; the
#   simulator queues them in Originate order. With 3 agents, that decides who reaches
#   an agent and who abandons: in the recording 013 got an agent and 000 abandoned,
#   in the simulator the other way round. Queue positions, hold and talk times and
#   agent numbers of the answered calls follow from that order, so for the twelve
#   answered calls only each call's set of messages (event names and header keys)
#   is compared, not their values.
# * The queue empties once more in the simulator (two more DeviceStateChange for
#   Queue:agents), for the same reason.
BURST_QUEUE_ORDER_SWAP = {"1555124000": "1555124013"}
BURST_MOVED = {
    # Calls that never reach the queue: compared exactly, except for this many
    # events that real Asterisk interleaved differently (see RACE).
    "1555124004": 2, "1555124005": 2, "1555124006": 0, "1555124008": 1,
    "1555124014": 1, "1555124015": 3, "1555124016": 1, "1555124018": 1,
}
BURST_AGENTCOMPLETE_WITHOUT_CALLER = {"1555124013"}
BURST_CONTENT = {
    # (missing, extra) for the calls that never reach the queue. Congestion: whether
    # the carrier leg's Newstate Busy comes before its HangupRequest differs between
    # runs (so the HangupRequest shows ChannelState 7 or 4), and so does whether a
    # device state INUSE is reported before the NOT_INUSE ones.
    "1555124005": (["Event: DeviceStateChange Local/1555124005@carrier INUSE",
                    "Event: HangupRequest Local/1555124005@carrier-<S1>;2"],
                   ["Event: HangupRequest Local/1555124005@carrier-<S1>;2",
                    "Event: DeviceStateChange Local/1555124005@carrier NOT_INUSE"]),
    "1555124015": (["Event: HangupRequest Local/1555124015@carrier-<S1>;2"],
                   ["Event: HangupRequest Local/1555124015@carrier-<S1>;2"]),
}


def _calls_of(messages: list) -> dict[str, list]:
    """The events of each call of the burst, keyed by dialed number."""
    owner: dict[str, str] = {}
    for m in messages:
        if isinstance(m, Message) and m.name == "Newchannel":
            hit = re.search(r"Local/(\d+)@carrier-[0-9a-f]+;1$", m.get("Channel") or "")
            if hit:
                owner[m.get("Uniqueid")] = hit.group(1)
    calls: dict[str, list] = {}
    bridges: dict[str, list] = {}
    bridge_owner: dict[str, str] = {}
    for m in messages:
        if not isinstance(m, Message) or m.kind != "event":
            continue
        num = owner.get(m.get("Linkedid") or m.get("DestLinkedid") or m.get("LocalOneLinkedid") or "")
        if m.name == "OriginateResponse" or m.name == "DeviceStateChange":
            hit = re.search(r"Local/(\d+)@carrier", m.get("Channel") or m.get("Device") or "")
            num = hit.group(1) if hit else None
        if m.name.startswith("Bridge"):
            bid = m.get("BridgeUniqueid")
            bridges.setdefault(bid, []).append(m)
            if num is not None:
                bridge_owner.setdefault(bid, num)
            continue
        if num is not None:
            calls.setdefault(num, []).append(m)
    for bid, msgs in bridges.items():
        calls.setdefault(bridge_owner[bid], []).extend(msgs)
    return calls


def _shape(messages: list) -> Counter:
    return Counter((m.name, tuple(k for k, _ in m.items())) for m in messages)


def test_burst_of_twenty_originates():
    meta, rec, result, sim = trio.run(
        run_recording, "originate-burst-20", clock=trio.testing.MockClock(autojump_threshold=0))
    got = result.messages
    # Every Originate answered at once, in send order.
    def responses(msgs):
        return [(m.name, m.action_id, m.get("Message")) for m in msgs
                if isinstance(m, Message) and m.kind == "response"]
    assert responses(got) == responses(rec)
    # The same outcome for every ActionID.
    def outcomes(msgs):
        return {m.action_id: (m.get("Response"), m.get("Reason"))
                for m in msgs if isinstance(m, Message) and m.name == "OriginateResponse"}
    assert outcomes(got) == outcomes(rec)
    assert len(outcomes(got)) == 20
    # The same number of each message, but for the queue emptying once more.
    count_rec = Counter((m.kind, m.name) for m in rec[1:])
    count_sim = Counter((m.kind, m.name) for m in got[1:])
    assert count_sim - count_rec == Counter({("event", "DeviceStateChange"): 2})
    assert not count_rec - count_sim
    rec_calls, sim_calls = _calls_of(rec), _calls_of(got)
    assert sorted(rec_calls) == sorted(sim_calls) == [f"15551240{n:02d}" for n in range(20)]

    def fate(calls, num):
        names = {m.name for m in calls[num]}
        return "agent" if "AgentConnect" in names else "abandon" if "QueueCallerAbandon" in names else "none"

    for num in rec_calls:
        want = BURST_QUEUE_ORDER_SWAP.get(num) or {v: k for k, v in BURST_QUEUE_ORDER_SWAP.items()}.get(num) or num
        assert fate(sim_calls, want) == fate(rec_calls, num), num
        if num in BURST_MOVED:
            c = compare(rec_calls[num], sim_calls[num], unordered=unordered)
            missing, extra = BURST_CONTENT.get(num, ([], []))
            assert (sorted(c.missing), sorted(c.extra)) == (sorted(missing), sorted(extra)), num
            assert len(c.moved) == BURST_MOVED[num], (num, c.moved)
        else:
            want_shape, got_shape = _shape(rec_calls[num]), _shape(sim_calls[want])
            if num in BURST_AGENTCOMPLETE_WITHOUT_CALLER:
                # The caller hung up at the instant the agent's call ended; Asterisk
                # sent this AgentComplete after the caller's channel was gone, so
                # without the caller's channel headers. The simulator always has them.
                for shape in (want_shape, got_shape):
                    for key in [k for k in shape if k[0] == "AgentComplete"]:
                        del shape[key]
                ac = [m for m in rec_calls[num] if m.name == "AgentComplete"]
                assert len(ac) == 1 and "Channel" not in ac[0]
            assert got_shape == want_shape, num
