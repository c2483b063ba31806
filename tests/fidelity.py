"""The simulator held to the real Asterisk, side by side.

The same work runs against the test suite's Asterisk (``tests/asterisk/``) and
against ``dialer sim`` with ``tests/asterisk/sim.toml`` (the same dialplan and
queue): either a campaign dialed by the engine, or a script of Originates at
set times. An observer connection (the README's least-privilege ``dialer``
user, so no dialplan-class events) records every event meanwhile.

Each call is identified by the ChannelId its Originate chose (every channel of
the call carries it as Linkedid). What is compared, per call:

* the outcome: the lead's disposition (campaigns) or the call tracker's
  (scripts), both the project's own reading of the events;
* for each channel of the call (the originated ``;1`` leg, the carrier ``;2``
  leg, the agent's two legs), the sequence of event names concerning it, in
  order; and the multiset of the call's events that concern no one channel
  (OriginateResponse, Bridge*, DeviceStateChange).

Ids and times are not compared, nor the interleaving of different channels'
events: real Asterisk runs each channel on its own thread, and that order
differs from one run to the next (the recordings show it). Within one channel,
the pairs in ``RACES`` come in either order on a real Asterisk from one call to
the next; either order is accepted. ``AgentComplete`` is counted with the
channel-less events: app_queue sends it from its own message-router thread, so
where it falls among the caller's events varies; ``DeviceStateChange`` is
counted, not told apart by state (whether a short-lived INUSE is reported at
all depends on the device-state thread). ``QueueMemberStatus`` concerns agents,
not calls, and is left out.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio

from dialer.ami.codec.message import Banner, Message
from dialer.ami.codec.parser import NEED_DATA, AMIParser
from dialer.ami.codec.serialize import encode_message
from dialer.calls.tracker import CallTracker, TrackedCall
from dialer.config import AMIServerConfig
from dialer.engine import Engine, EngineSettings
from dialer.models import CallAttempt, Lead
from dialer.sim import SimAsterisk
from dialer.sim.scenario import Scenario, load_scenario

SIM_SCENARIO = Path(__file__).resolve().parent / "asterisk" / "sim.toml"
OBSERVER = "dialer"
NOT_PER_CALL = {"QueueMemberStatus", "FullyBooted"}
UNORDERED = {"AgentComplete"}
# Adjacent events of one channel that a real Asterisk sends in either order (each
# seen both ways for the same digit within one campaign run).
RACES = {
    # The originated leg: Dial() announces DialBegin while the carrier leg, on its
    # own thread, already reports Ringing (digit 6) or hangs up (digit 8).
    ("lead;1", "DialBegin", "Newstate"),
    ("lead;1", "DialBegin", "HangupRequest"),
    # The carrier leg of a congested call: Congestion() sets the Busy state while
    # the originated leg, hearing the congestion, already asks it to hang up.
    ("lead;2", "Newstate", "HangupRequest"),
}


def sim_scenario(**queue_overrides: Any) -> Scenario:
    scenario = load_scenario(SIM_SCENARIO)
    if queue_overrides:
        scenario = dataclasses.replace(
            scenario, queue=dataclasses.replace(scenario.queue, **queue_overrides))
    return scenario


def sim_secret(user: str) -> str:
    found = sim_scenario().user(user)
    assert found is not None, user
    return found.secret


# --- watching the events --------------------------------------------------------------


@dataclass
class EventLog:
    messages: list[Message] = field(default_factory=list)


async def observe(host: str, port: int, secret: str, log: EventLog, *,
                  task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Log in as the observer and keep every event until cancelled."""
    stream = await trio.open_tcp_stream(host, port)
    parser = AMIParser(role="client")
    try:
        await stream.send_all(encode_message([
            ("Action", "Login"), ("Username", OBSERVER), ("Secret", secret),
            ("ActionID", "observer-login")]))
        started = False
        while True:
            data = await stream.receive_some(1 << 16)
            if not data:
                raise ConnectionError("the observer's connection closed")
            parser.receive_data(data)
            while (item := parser.next_event()) is not NEED_DATA:
                if isinstance(item, Banner):
                    continue
                if item.kind == "response" and item.action_id == "observer-login":
                    if item.get("Response") != "Success":
                        raise ConnectionError(f"observer login: {item.get('Message')}")
                    if not started:
                        started = True
                        task_status.started()
                elif item.kind == "event":
                    log.messages.append(item)
    finally:
        await trio.aclose_forcefully(stream)


# --- what one call looked like --------------------------------------------------------

_AGENT = re.compile(r"^Local/agent\d+@agents-[0-9a-f]+;([12])$")


def _role(channel: str, number: str) -> str | None:
    if channel.startswith(f"Local/{number}@carrier-"):
        return "lead;" + channel[-1]
    hit = _AGENT.match(channel)
    if hit:
        return "agent;" + hit.group(1)
    return None


def _concerns(m: Message) -> tuple[str | None, str | None]:
    """(channel, linkedid) an event is about."""
    for prefix in ("", "Dest", "LocalOne"):
        channel = m.get(prefix + "Channel")
        if channel is not None:
            return channel, m.get(prefix + "Linkedid")
    return None, None


def call_signature(messages: list[Message], channel_id: str, number: str,
                   action_id: str | None = None) -> dict[str, Any]:
    """The event names of one call, per channel role, and its channel-less events."""
    per_role: dict[str, list[str]] = {}
    other: Counter[str] = Counter()
    bridges: set[str] = set()
    member_call: dict[str, str | None] = {}
    device = f"Local/{number}@carrier"
    for m in messages:
        name = m.name or "?"
        if name in NOT_PER_CALL:
            continue
        channel, linked = _concerns(m)
        if name == "OriginateResponse":
            if m.get("Uniqueid") == channel_id or (action_id and m.action_id == action_id):
                other[name] += 1
            continue
        if name.startswith("Bridge") and channel is None:
            if m.get("BridgeUniqueid") in bridges:
                other[name] += 1
            continue
        if name == "DeviceStateChange":
            if m.get("Device") == device:
                other[name] += 1
            continue
        if name == "AgentConnect":
            member_call[m.get("MemberName") or ""] = linked
        if name == "AgentComplete" and channel is None:
            # Sent once the caller's channel is gone: no channel headers, only the
            # member, whose last AgentConnect names the call.
            if member_call.get(m.get("MemberName") or "") == channel_id:
                other[name] += 1
            continue
        if linked != channel_id or channel is None:
            continue
        if name in UNORDERED:
            other[name] += 1
            continue
        role = _role(channel, number) or "other"
        if name == "BridgeEnter":
            bridges.add(m.get("BridgeUniqueid") or "")
        per_role.setdefault(role, []).append(name)
    return {"channels": per_role, "other": dict(sorted(other.items()))}


def _same_up_to_races(role: str, a: list[str], b: list[str]) -> bool:
    """``a`` equals ``b`` once adjacent pairs listed in RACES are swapped as needed."""
    if len(a) != len(b):
        return False
    a = list(a)
    i = 0
    while i < len(a):
        if a[i] != b[i]:
            pair = tuple(sorted((a[i], b[i])))
            if (i + 1 < len(a) and a[i + 1] == b[i] and a[i] == b[i + 1]
                    and (role, *pair) in {(r, *sorted((x, y))) for r, x, y in RACES}):
                a[i], a[i + 1] = a[i + 1], a[i]
            else:
                return False
        i += 1
    return True


def signature_differences(real: dict[str, Any], sim: dict[str, Any]) -> list[str]:
    out = []
    for role in sorted(set(real["channels"]) | set(sim["channels"])):
        a, b = real["channels"].get(role, []), sim["channels"].get(role, [])
        if not _same_up_to_races(role, a, b):
            out.append(f"{role}: real {' '.join(a) or '-'} | sim {' '.join(b) or '-'}")
    if real["other"] != sim["other"]:
        ra, sb = Counter(real["other"]), Counter(sim["other"])
        out.append(f"call: real only {dict(ra - sb)} | sim only {dict(sb - ra)}")
    return out


@dataclass
class Run:
    """One side's result: per lead (phone or script label), outcome and signature."""

    outcomes: dict[str, str]
    signatures: dict[str, dict[str, Any]]
    events: int


def compare_runs(real: Run, sim: Run) -> list[dict[str, Any]]:
    """Every difference, one dict per lead that differs."""
    out = []
    for key in sorted(set(real.outcomes) | set(sim.outcomes)):
        diff: dict[str, Any] = {}
        if real.outcomes.get(key) != sim.outcomes.get(key):
            diff["outcome"] = {"real": real.outcomes.get(key), "sim": sim.outcomes.get(key)}
        rs, ss = real.signatures.get(key), sim.signatures.get(key)
        if rs is not None and ss is not None:
            events = signature_differences(rs, ss)
            if events:
                diff["events"] = events
        if diff:
            out.append({"lead": key, **diff})
    return out


# --- a campaign dialed by the engine ----------------------------------------------------


def campaign_phones(digits: str, prefix: str = "+1212555") -> list[str]:
    return [f"{prefix}{i:03d}{d}" for i, d in enumerate(digits)]


def fast_settings() -> EngineSettings:
    return EngineSettings(poll_interval=0.1, flush_interval=0.05, housekeeping_interval=1.0,
                          stats_interval=1.0, lease=60.0)


async def run_campaign(port: int, sessions, secret_file: Path, observer_secret: str, *,
                       timeout: float = 120.0) -> Run:
    """Dial every running campaign of ``sessions`` to the end on the AMI at ``port``."""
    server = AMIServerConfig(name="pbx1", host="127.0.0.1", port=port, username="dialer",
                             secret_file=secret_file, connections=1, originate_rate=20, burst=5)
    log = EventLog()
    async with trio.open_nursery() as nursery:
        await nursery.start(observe, "127.0.0.1", port, observer_secret, log)
        engine = Engine(sessions, [server], settings=fast_settings(), until_done=True,
                        db_thread=False)
        with trio.fail_after(timeout):
            await engine.run()
            # The last calls' trailing events (agents' hang-ups, device states).
            await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    outcomes, signatures = {}, {}
    with sessions.begin() as s:
        rows = s.execute(sa.select(Lead.phone_e164, Lead.last_disposition, CallAttempt.channel_id,
                                   CallAttempt.action_id)
                         .join(CallAttempt, CallAttempt.lead_id == Lead.id)).all()
    for phone, disposition, channel_id, action_id in rows:
        outcomes[phone] = disposition
        signatures[phone] = call_signature(log.messages, channel_id, phone.lstrip("+"), action_id)
    return Run(outcomes, signatures, len(log.messages))


# --- a script of Originates ---------------------------------------------------------------


@dataclass(frozen=True)
class Dial:
    at: float  # seconds after the start
    number: str
    label: str


@dataclass(frozen=True)
class Pause:
    """QueuePause of one agent (as the admin user: the dialer's user has no agent write)."""

    at: float
    agent: str  # agent1
    paused: bool = True


@dataclass(frozen=True)
class Busy:
    """The agent's line in use outside the queue: an Originate straight to the member
    (it answers and talks AGENT_TALK seconds), as the admin user."""

    at: float
    agent: str


Step = Dial | Pause | Busy


def _step_message(step: Step, n: int) -> list[tuple[str, str]]:
    if isinstance(step, Dial):
        return [
            ("Action", "Originate"), ("Channel", f"Local/{step.number}@carrier"),
            ("Context", "dialer-connect"), ("Exten", "s"), ("Priority", "1"),
            ("Async", "true"), ("Timeout", "15000"), ("CallerID", '"Fidelity" <15550001000>'),
            ("ChannelId", step.label), ("OtherChannelId", step.label + "-2"),
            ("ActionID", "orig-" + step.label)]
    if isinstance(step, Pause):
        return [("Action", "QueuePause"), ("Interface", f"Local/{step.agent}@agents"),
                ("Paused", "true" if step.paused else "false"), ("Reason", "fidelity"),
                ("ActionID", f"pause-{n}")]
    return [("Action", "Originate"), ("Channel", f"Local/{step.agent}@agents"),
            ("Application", "Wait"), ("Data", "30"), ("Async", "true"), ("Timeout", "15000"),
            ("ActionID", f"busy-{n}")]


async def _login(port: int, user: str, secret: str) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(encode_message([
        ("Action", "Login"), ("Username", user), ("Secret", secret), ("Events", "off"),
        ("ActionID", "script-login")]))
    return stream


async def run_script(port: int, secret: str, observer_secret: str, steps: list[Step], *,
                     settle: float = 12.0, admin_secret: str | None = None) -> Run:
    """Send each step at its time (a Dial's Originate has ChannelId = its label), watch
    until ``settle`` seconds after the last one; outcomes from the call tracker."""
    log = EventLog()
    dials = [d for d in steps if isinstance(d, Dial)]
    async with trio.open_nursery() as nursery:
        await nursery.start(observe, "127.0.0.1", port, observer_secret, log)
        stream = await _login(port, "dialer", secret)
        admin = None
        if any(not isinstance(d, Dial) for d in steps):
            assert admin_secret is not None
            admin = await _login(port, "admin", admin_secret)
        t0 = trio.current_time()
        for n, step in enumerate(sorted(steps, key=lambda x: x.at)):
            await trio.sleep_until(t0 + step.at)
            target = stream if isinstance(step, Dial) else admin
            assert target is not None
            await target.send_all(encode_message(_step_message(step, n)))
        await trio.sleep_until(t0 + max(d.at for d in steps) + settle)
        await trio.aclose_forcefully(stream)
        if admin is not None:
            await trio.aclose_forcefully(admin)
        nursery.cancel_scope.cancel()
    tracker = CallTracker()
    calls = {}
    for n, dial in enumerate(dials):
        call = TrackedCall(n + 1, 1, n + 1, "orig-" + dial.label, dial.label, dial.label + "-2")
        tracker.add(call)
        tracker.originated(call.action_id, 0.0)
        calls[dial.label] = call
    for m in log.messages:
        tracker.handle(m, float(m.get("Timestamp") or 0))
    outcomes = {label: str(c.disposition) for label, c in calls.items()}
    signatures = {d.label: call_signature(log.messages, d.label, d.number, "orig-" + d.label)
                  for d in dials}
    return Run(outcomes, signatures, len(log.messages))


# --- the sides --------------------------------------------------------------------------


def on_sim(fn, *args, scenario: Scenario | None = None, **kw) -> Run:
    """Run ``fn(port, ...)`` against a fresh simulator, on the real clock (the engine's
    timings and the simulator's must meet as they do against Asterisk)."""

    async def main() -> Run:
        sim = SimAsterisk(scenario or sim_scenario())
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve, "127.0.0.1", 0)
            result = await fn(port, *args, **kw)
            nursery.cancel_scope.cancel()
        return result

    return trio.run(main)


def on_asterisk(instance, fn, *args, **kw) -> Run:
    async def main() -> Run:
        return await fn(instance.port, *args, **kw)

    return trio.run(main)


CAMPAIGN_DIGITS = "0123456789" * 2


def campaign_side_by_side(instance, folder: Path, digits: str = CAMPAIGN_DIGITS) -> tuple[Run, Run]:
    """The same progressive campaign (one lead per digit given, one attempt each, three
    agents, two calls at most) on the
    real Asterisk ``instance`` and on the simulator, each with a database of its own."""
    from dialer import db
    from tests.engine_harness import business_zone, make_campaign

    sim_secret_file = folder / "sim-secret"
    sim_secret_file.write_text(sim_secret("dialer") + "\n")
    phones = campaign_phones(digits)
    runs = {}
    for side in ("real", "sim"):
        engine = db.create_engine(f"sqlite:///{folder / (side + '.db')}")
        try:
            db.upgrade(engine)
            sessions = db.session_factory(engine)
            # Fewer calls than agents: an answered call always finds an agent free, so
            # its outcome never depends on how fast an agent who just hung up is free
            # again (app_queue hears of it from the device-state thread; drops are
            # held side by side in queue_busy_side_by_side).
            make_campaign(sessions, "side", phones, mode="progressive", ring_timeout=15,
                          max_concurrent=2, tz=business_zone())
            if side == "real":
                wait_idle(instance)
                runs[side] = on_asterisk(instance, run_campaign, sessions,
                                         instance.secret_file("dialer"), instance.secrets["dialer"])
            else:
                runs[side] = on_sim(run_campaign, sessions, sim_secret_file, sim_secret("dialer"))
        finally:
            engine.dispose()
    return runs["real"], runs["sim"]


# Three long calls (digit 9: answered after 2 s) take the three agents, who hang
# up about 6.5 s later (Answer, then Wait(6)); a call answered while they talk
# waits in the queue and gives up after Queue()'s 2 s (dropped); one answered
# 0.6 s before they are free keeps waiting (the queue tries its members once a
# second; ringinuse = no: no busy agent is rung) and reaches one (connected).
QUEUE_BUSY = [
    Dial(0.0, "15551230019", "long-1"),
    Dial(0.0, "15551230029", "long-2"),
    Dial(0.0, "15551230039", "long-3"),
    Dial(2.5, "15551230040", "drop"),
    Dial(6.9, "15551230051", "waits"),
]
QUEUE_BUSY_AGENT_TALK = 6.0


def queue_busy_side_by_side(instance) -> tuple[Run, Run]:
    from dialer.sim.scenario import Distribution

    wait_idle(instance)
    instance.set_agent_talk(QUEUE_BUSY_AGENT_TALK)
    try:
        real = on_asterisk(instance, run_script, instance.secrets["dialer"],
                           instance.secrets["dialer"], QUEUE_BUSY)
    finally:
        instance.set_agent_talk(4)
    scenario = sim_scenario(agent_talk_time=Distribution.fixed(QUEUE_BUSY_AGENT_TALK))
    sim = on_sim(run_script, sim_secret("dialer"), sim_secret("dialer"), QUEUE_BUSY,
                 scenario=scenario)
    return real, sim


# --- the queue behaviours the dialer relies on (README's queues.conf) ----------------
#
# Every call here is digit 9 (rings 2 s, then stays on the line: only the dialplan or
# the agent ends it) unless said otherwise; agents talk QUEUE_BUSY_AGENT_TALK (6 s).
#
# paused: agent1 and agent2 paused; the long call reaches agent3 (paused members are
# skipped); "waits" joins while agent3 talks (an agent in a call does not make the
# queue empty) and is dropped at Queue()'s 2 s; "stays" joins, then agent3 pauses
# too: leavewhenempty = no keeps it waiting until the 2 s; "joinempty" finds every
# member paused: joinempty = no, Queue() returns at once (JOINEMPTY), dropped.
PAUSED = [
    Pause(0.0, "agent1"), Pause(0.0, "agent2"),
    Dial(0.2, "15551230109", "long"),
    Dial(2.0, "15551230119", "waits"),
    Dial(5.0, "15551230129", "stays"),
    Pause(7.5, "agent3"),
    Dial(9.5, "15551230139", "joinempty"),
]

# wrapuptime (4 s): only agent1 (the others paused). "first" (digit 0: the called
# party hangs up after 2 s of talk, about 3.5 s in) reaches agent1; "in-wrapup"
# waits while agent1 wraps up (until about 7.5 s) and is dropped at Queue()'s 2 s
# (7 s); "after" finds agent1 free again.
WRAPUP = [
    Pause(0.0, "agent2"), Pause(0.0, "agent3"),
    Dial(0.2, "15551230200", "first"),
    Dial(3.0, "15551230219", "in-wrapup"),
    Dial(8.5, "15551230220", "after"),
]
WRAPUP_SECONDS = 4

# ringinuse = no: agent1 is on a call that did not come from the queue (an Originate
# straight to its line), the others paused: the queue does not ring an agent whose
# line is in use, so "inuse" is dropped at Queue()'s 2 s; "free" comes once agent1's
# call ended (it talks 6 s) and reaches it.
RINGINUSE = [
    Pause(0.0, "agent2"), Pause(0.0, "agent3"),
    Busy(0.2, "agent1"),
    Dial(0.5, "15551230309", "inuse"),
    Dial(7.0, "15551230310", "free"),
]

QUEUE_SCENARIOS = {"paused": PAUSED, "wrapuptime": WRAPUP, "ringinuse": RINGINUSE}


def queue_behaviour_side_by_side(instance, name: str) -> tuple[Run, Run]:
    """One of QUEUE_SCENARIOS on the real Asterisk and on the simulator."""
    from dialer.sim.scenario import Distribution

    steps = QUEUE_SCENARIOS[name]
    real_queue: dict[str, str] = {}
    sim_queue: dict[str, Any] = {"agent_talk_time": Distribution.fixed(QUEUE_BUSY_AGENT_TALK)}
    if name == "wrapuptime":
        real_queue["wrapuptime"] = str(WRAPUP_SECONDS)
        sim_queue["wrapup"] = float(WRAPUP_SECONDS)
    wait_idle(instance)
    instance.set_agent_talk(QUEUE_BUSY_AGENT_TALK)
    if real_queue:
        instance.set_queue(**real_queue)
    try:
        real = on_asterisk(instance, run_script, instance.secrets["dialer"],
                           instance.secrets["dialer"], steps,
                           admin_secret=instance.secrets["admin"])
    finally:
        instance.reset()
    sim = on_sim(run_script, sim_secret("dialer"), sim_secret("dialer"), steps,
                 admin_secret=sim_secret("admin"), scenario=sim_scenario(**sim_queue))
    return real, sim


def wait_idle(instance, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while instance.channel_count():
        if time.monotonic() > deadline:
            raise TimeoutError("calls still up on the Asterisk")
        time.sleep(0.2)
