"""Re-record every AMI transcript of ``tests/transcripts/`` from a real Asterisk.

    DIALER_TEST_ASTERISK=/path/to/asterisk-22 .venv/bin/python -m tests.record_transcripts [NAME ...]

Starts the test suite's Asterisk (``tests/asterisk/``, through
``tests/asterisk_harness.py``) with fixed, throwaway secrets (the replays in
the tests log in with them), runs each scenario below on one connection with
:func:`dialer.ami.recorder.record` (what ``dialer ami record`` runs) and writes
``NAME.txt`` and ``NAME.json`` plus ``INDEX.md``. Without NAME, every
scenario is recorded and files of scenarios no longer listed are removed.
"""

from __future__ import annotations

import argparse
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from dialer.ami.recorder import Step, record
from tests.asterisk_harness import AsteriskInstance, find_asterisk

OUT = Path(__file__).resolve().parent / "transcripts"
# The recording instance's secrets (never used anywhere else).
SECRETS = {"dialer": "dialerpass", "admin": "adminpass", "limited": "limitedpass",
           "monitor": "monitorpass"}
CALLER_ID = '"Campaign" <15550001000>'


def originate(number: str, action_id: str, *, context: str = "dialer-connect",
              extra: str = "", sync: bool = False, timeout_ms: int = 20000,
              channel: str | None = None) -> str:
    chan = channel or f"Local/{number}@carrier"
    return (f"Action: Originate\nChannel: {chan}\nContext: {context}\nExten: s\nPriority: 1\n"
            f"Async: {'false' if sync else 'true'}\nTimeout: {timeout_ms}\nCallerID: {CALLER_ID}\n"
            f"ActionID: {action_id}\nVariable: DIALER_LEAD=123\n" + extra)


def send(text: str, *, reply: bool = False, timeout: float = 30.0) -> Step:
    opts = {"reply": True, "timeout": timeout} if reply else {}
    return Step("send", text, opts)


def login(**opts) -> Step:
    opts.setdefault("action_id", "login-1")
    return Step("login", True, opts)


def until(name: str, count: int = 1, timeout: float = 40.0, **match) -> Step:
    return Step("until", name, {"match": match, "count": count, "timeout": timeout})


def wait(seconds: float) -> Step:
    return Step("wait", seconds)


LOGOFF = Step("send", "Action: Logoff\nActionID: logoff-1")
CLOSED = Step("closed", True, {"timeout": 10.0})


def call_steps(number: str, action_id: str, hangups: int, **kw) -> list[Step]:
    """Login, one Originate, wait for its channels' Hangups (and what trails them), Logoff."""
    return [login(), send(originate(number, action_id, **kw)),
            until("Hangup", hangups), wait(0.5), LOGOFF, CLOSED]


@dataclass
class Scenario:
    name: str
    note: str
    steps: list[Step]
    user: str = "dialer"
    tls: bool = False
    busy_agents: bool = False  # two answered calls talk to agents meanwhile
    shows: str = ""  # for INDEX.md


ANSWERED = "answered after 1 s, queue, agent; the called party hangs up after 2 s of talk"
SCENARIOS: list[Scenario] = [
    Scenario("login-success", "Login, Logoff", [login(), LOGOFF, CLOSED],
             shows="Login response, FullyBooted (no Timestamp), Response: Goodbye"),
    Scenario("login-failure", "Login as dialer with a wrong secret",
             [login(secret="wrongpass", expect="Error"), CLOSED],
             shows="Response: Error / Authentication failed about 1 s later, then the server closes"),
    Scenario("login-md5", "Challenge (MD5), Login with the key, Logoff",
             [login(md5=True), LOGOFF, CLOSED], shows="Challenge response, then as login-success"),
    Scenario("login-tls", "Login, Ping, Logoff over TLS",
             [login(), send("Action: Ping\nActionID: ping-1", reply=True), LOGOFF, CLOSED],
             tls=True, shows="the same messages as on plain TCP"),
    Scenario("action-before-login", "Originate and Ping sent before Login, then Login, Logoff",
             [send(originate("15551230007", "orig-nologin")),
              send("Action: Ping\nActionID: ping-nologin", reply=True),
              login(), LOGOFF, CLOSED],
             shows="actions before Login get Permission denied"),
    Scenario("ping", "Ping with ActionID, Ping without ActionID",
             [login(), send("Action: Ping\nActionID: ping-1", reply=True), send("Action: Ping"),
              wait(0.3), LOGOFF, CLOSED],
             shows="Ping: Pong + Timestamp; without ActionID the response has none"),
    Scenario("unknown-action", "Action: NoSuchAction",
             [login(), send("Action: NoSuchAction\nActionID: unknown-1", reply=True), LOGOFF, CLOSED],
             shows="Invalid/unknown command"),
    Scenario("missing-header",
             "Originate without Channel; a block without Action; Channel without '/'; "
             "an Exten that does not exist",
             [login(),
              send("Action: Originate\nContext: dialer-connect\nExten: s\nPriority: 1\nAsync: true\n"
                   f"Timeout: 20000\nCallerID: {CALLER_ID}\nActionID: orig-nochannel", reply=True),
              send("ActionID: no-action-header\nChannel: Local/15551230007@carrier", reply=True),
              send("Action: Originate\nChannel: nonsense\nContext: dialer-connect\nExten: s\n"
                   "Priority: 1\nAsync: true\nActionID: orig-badchannel", reply=True),
              send("Action: Originate\nChannel: Local/15551230007@carrier\nContext: dialer-connect\n"
                   "Exten: nosuchexten\nPriority: 1\nAsync: true\nActionID: orig-noexten", reply=True),
              LOGOFF, CLOSED],
             shows="Channel not specified, Missing action in request, Invalid channel, "
                   "Extension does not exist."),
    Scenario("permission-denied", "user limited: Originate; Command core show channels",
             [login(), send(originate("15551230007", "orig-denied"), reply=True),
              send("Action: Command\nCommand: core show channels\nActionID: cmd-denied", reply=True),
              LOGOFF, CLOSED],
             user="limited", shows="both Permission denied; no FullyBooted (read lacks system)"),
    Scenario("permission-denied-monitor", "user monitor: Originate; Ping",
             [login(), send(originate("15551230007", "orig-denied"), reply=True),
              send("Action: Ping\nActionID: ping-1", reply=True), LOGOFF, CLOSED],
             user="monitor", shows="Originate refused, Ping allowed"),
]
for digit, name in [("0", "originate-answered"), ("1", "originate-answered-1"),
                    ("2", "originate-answered-2"), ("3", "originate-answered-3")]:
    SCENARIOS.append(Scenario(name, f"Async Originate to 1555123000{digit}",
                              call_steps(f"1555123000{digit}", f"orig-{digit}", 4), shows=ANSWERED))
SCENARIOS += [
    Scenario("originate-busy", "Async Originate to 15551230004",
             call_steps("15551230004", "orig-4", 2), shows="Reason 5, causes 17 and 0"),
    Scenario("originate-congestion", "Async Originate to 15551230005",
             call_steps("15551230005", "orig-5", 2), shows="Reason 8, cause 34"),
    Scenario("originate-noanswer", "Async Originate to 15551230006 (rings until Timeout 20000)",
             call_steps("15551230006", "orig-6", 2), shows="Reason 3 after 20 s, cause 19"),
    Scenario("originate-short-answer", "Async Originate to 15551230007",
             call_steps("15551230007", "orig-7", 4),
             shows="answered at once, reaches an agent, hangs up after 1 s"),
    Scenario("originate-invalid", "Async Originate to 15551230008",
             call_steps("15551230008", "orig-8", 2), shows="Reason 0, cause 1"),
    Scenario("originate-queue-agent", "Async Originate to 15551230009",
             call_steps("15551230009", "orig-9", 4),
             shows="answered after 2 s; the agent hangs up first after 4 s"),
    Scenario("originate-sync-answered", "Originate with Async: false to 15551230007",
             call_steps("15551230007", "orig-sync-7", 4, sync=True),
             shows="the Response only after answer; no OriginateResponse"),
    Scenario("originate-sync-busy", "Originate with Async: false to 15551230004",
             call_steps("15551230004", "orig-sync-4", 2, sync=True),
             shows="Response: Error / Originate failed; no OriginateResponse"),
    Scenario("originate-channelid",
             "Async Originate to 15551230007 with ChannelId lead-123-a, OtherChannelId lead-123-b",
             call_steps("15551230007", "orig-chanid", 4,
                        extra="ChannelId: lead-123-a\nOtherChannelId: lead-123-b\n"),
             shows="Uniqueids lead-123-a and lead-123-b; Linkedid lead-123-a"),
    Scenario("originate-channelid-invalid",
             "Async Originate to 15551230008 with ChannelId lead-124-a, OtherChannelId lead-124-b",
             call_steps("15551230008", "orig-chanid-bad", 2,
                        extra="ChannelId: lead-124-a\nOtherChannelId: lead-124-b\n"),
             shows="the failed OriginateResponse carries Uniqueid lead-124-a"),
    Scenario("originate-bad-tech", "Async Originate with Channel: Foo/123",
             [login(), send(originate("", "orig-badtech", channel="Foo/123")),
              until("OriginateResponse"), wait(0.5), LOGOFF, CLOSED],
             shows="queued, then OriginateResponse Failure Reason 0, no channel events"),
    Scenario("originate-no-route", "Async Originate with Channel: Local/abc@carrier",
             [login(), send(originate("abc", "orig-noroute")), until("OriginateResponse"),
              wait(0.5), LOGOFF, CLOSED],
             shows="channels created and hung up with cause 0, OriginateResponse Failure Reason 0"),
    Scenario("originate-queue-timeout",
             "Async Originate to 15551230009 into dialer-connect-busy (every agent busy)",
             [login(), send(originate("15551230009", "orig-drop", context="dialer-connect-busy")),
              until("QueueCallerLeave"), Step("quiet", 1.0, {"timeout": 10.0}), LOGOFF, CLOSED],
             shows="QueueCallerJoin, the members ring busy, after Queue()'s 2 s QueueCallerLeave "
                   "(no QueueCallerAbandon), then the dialplan hangs up"),
    Scenario("hangup-while-ringing",
             "Async Originate to 15551230006; 2 s later Action: Hangup on its ;1 channel",
             [login(), send(originate("15551230006", "orig-cancel")),
              Step("until", "Newchannel", {"match": {"Channel": "Local/15551230006@carrier-*;1"},
                                           "capture": {"CHANNEL": "Channel"}, "timeout": 10.0}),
              wait(2.0),
              send("Action: Hangup\nChannel: {CHANNEL}\nCause: 16\nActionID: hangup-1", reply=True),
              until("Hangup", 2), wait(0.5), LOGOFF, CLOSED],
             shows="Channel Hungup; OriginateResponse Failure Reason 0; causes 16"),
]
for action, name, aid in [("CoreShowChannels", "coreshowchannels", "csc-1"),
                          ("Status", "status", "status-1"),
                          ("QueueStatus", "queuestatus", "qs-1"),
                          ("QueueSummary", "queuesummary", "qsum-1")]:
    for busy in (True, False):
        if not busy and action.startswith("Queue"):
            continue
        SCENARIOS.append(Scenario(
            name if busy else name + "-idle",
            f"{action} (login Events: off)" + (" while two answered calls talk to agents" if busy else ""),
            [login(events="off"), send(f"Action: {action}\nActionID: {aid}"), wait(0.3), LOGOFF, CLOSED],
            busy_agents=busy, shows="list events, then the ...Complete event"))
for busy in (True, False):
    SCENARIOS.append(Scenario(
        "command-core-show-channels" + ("" if busy else "-idle"),
        "user admin: Command core show channels (login Events: off)"
        + (" while two answered calls talk to agents" if busy else ""),
        [login(events="off"),
         send("Action: Command\nCommand: core show channels\nActionID: cmd-1", reply=True),
         LOGOFF, CLOSED],
        user="admin", busy_agents=busy, shows="Command output follows, one Output: line per CLI line"))
SCENARIOS += [
    Scenario("events-off", "Events EventMask: off; Originate to 15551230007; 5 s later Ping; Events on",
             [login(), send("Action: Events\nEventMask: off\nActionID: events-off-1", reply=True),
              send(originate("15551230007", "orig-eventsoff")), wait(5.0),
              send("Action: Ping\nActionID: ping-1", reply=True),
              send("Action: Events\nEventMask: on\nActionID: events-on-1", reply=True),
              wait(0.5), LOGOFF, CLOSED],
             shows="Events: Off; responses arrive, no event (OriginateResponse included)"),
    Scenario("filter", "Filter Add 'Event: Hangup'; Originate to 15551230000; 8 s later Ping",
             [login(),
              send("Action: Filter\nOperation: Add\nFilter: Event: Hangup\nActionID: filter-1", reply=True),
              send(originate("15551230000", "orig-filter")), wait(8.0),
              send("Action: Ping\nActionID: ping-1", reply=True), wait(0.5), LOGOFF, CLOSED],
             shows="only Hangup and HangupRequest (substring match); no OriginateResponse"),
    Scenario("filter-advanced",
             "Filter MatchCriteria name(OriginateResponse) and name(Hangup); Originate to 15551230007",
             [login(),
              send("Action: Filter\nOperation: Add\nMatchCriteria: name(OriginateResponse)\nFilter: \n"
                   "ActionID: filter-1", reply=True),
              send("Action: Filter\nOperation: Add\nMatchCriteria: name(Hangup)\nFilter: \n"
                   "ActionID: filter-2", reply=True),
              send(originate("15551230007", "orig-filter-adv")), until("Hangup", 4), wait(0.5),
              LOGOFF, CLOSED],
             shows="only OriginateResponse and Hangup"),
    Scenario("userevent", "user admin (Events: user): UserEvent DialerTest, LeadID 123, Campaign c1",
             [login(events="user"),
              send("Action: UserEvent\nUserEvent: DialerTest\nLeadID: 123\nCampaign: c1\nActionID: ue-1",
                   reply=True), until("UserEvent"), wait(0.3), LOGOFF, CLOSED],
             user="admin", shows="Event Sent, then Event: UserEvent repeating the headers and ActionID"),
    Scenario("originate-burst-20",
             "20 Originates back to back to Local/155512400NN@carrier, NN=00..19 (every outcome twice)",
             [login()] + [send(originate(f"155512400{n:02d}", f"burst-{n:02d}")) for n in range(20)]
             + [until("OriginateResponse", 20, timeout=60.0), wait(14.0),
                Step("quiet", 1.0, {"timeout": 30.0}), LOGOFF, CLOSED],
             shows="20 Responses in send order; OriginateResponses in completion order"),
    Scenario("queuepause", "user admin (Events: agent): QueuePause agent1 on, then off",
             [login(events="agent"),
              send("Action: QueuePause\nInterface: Local/agent1@agents\nPaused: true\nReason: break\n"
                   "ActionID: pause-1", reply=True), until("QueueMemberPause"),
              send("Action: QueuePause\nInterface: Local/agent1@agents\nPaused: false\n"
                   "ActionID: pause-2", reply=True), until("QueueMemberPause"), wait(0.3),
              LOGOFF, CLOSED],
             user="admin", shows="Interface paused/unpaused successfully; QueueMemberPause with "
                                 "Paused 1 (PausedReason) then 0"),
    Scenario("queue-joinempty",
             "user admin: every agent paused (QueuePause), Async Originate to 15551230000, unpause",
             [login(events="call,agent")]
             # (each pause's events waited for: Asterisk sends them from another thread)
             + [step for i in (1, 2, 3) for step in (
                 send(f"Action: QueuePause\nInterface: Local/agent{i}@agents\nPaused: true\n"
                      f"ActionID: pause-{i}", reply=True), until("QueueMemberPause"))]
             + [send(originate("15551230000", "orig-joinempty")), until("Hangup", 2)]
             + [step for i in (1, 2, 3) for step in (
                 send(f"Action: QueuePause\nInterface: Local/agent{i}@agents\nPaused: false\n"
                      f"ActionID: unpause-{i}", reply=True), until("QueueMemberPause"))]
             + [wait(0.5), LOGOFF, CLOSED],
             user="admin", shows="joinempty = no: answered, no QueueCallerJoin, Queue() returns at "
                                 "once (JOINEMPTY) and the dialplan hangs up"),
    Scenario("drop-message-opt-out",
             "Async Originate to 16465550009 into dialer-connect-drop (busy queue, then "
             "dialer-drop); the called party presses 9",
             [login(), send(originate("16465550009", "orig-drop", context="dialer-connect-drop",
                                      extra="Variable: DIALER_ATTEMPT=77\n")),
              until("UserEvent", timeout=20.0), wait(2.0), LOGOFF, CLOSED],
             shows="QueueCallerAbandon and QueueCallerLeave after 2 s, then UserEvent DialerOptOut "
                   "(Attempt, Lead) from the drop message"),
]


def _ssl(instance: AsteriskInstance) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(instance.ca_file))


def _wait_idle(instance: AsteriskInstance, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while instance.channel_count():
        if time.monotonic() > deadline:
            raise RuntimeError("calls still up after the scenario")
        time.sleep(0.2)


def _two_calls_talking(instance: AsteriskInstance):
    """Two answered calls talking to agents, placed on a connection of their own."""
    instance.set_agent_talk(60)
    ami = instance.ami(events="on")
    for n, number in enumerate(("15551230019", "15551230029")):
        ami.send("Originate", Channel=f"Local/{number}@carrier", Context="dialer-connect", Exten="s",
                 Priority="1", Async="true", Timeout="20000", CallerID=CALLER_ID)
    for _ in range(2):
        ami.wait_event("AgentConnect", timeout=15.0)
    return ami


def record_all(names: list[str] | None = None, out: Path = OUT) -> list[str]:
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    unknown = set(names or ()) - {s.name for s in SCENARIOS}
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    instance = AsteriskInstance(find_asterisk())
    instance.secrets.update(SECRETS)
    written = []
    try:
        instance.start()
        for scenario in chosen:
            _wait_idle(instance)
            background = _two_calls_talking(instance) if scenario.busy_agents else None
            port = instance.tls_port if scenario.tls else instance.port
            try:
                rec = trio.run(lambda: record(
                    instance.host, port, scenario.steps, username=scenario.user,
                    secret=SECRETS[scenario.user], note=scenario.note, keep_secrets=True,
                    ssl_context=_ssl(instance) if scenario.tls else None,
                    server_hostname=instance.server_hostname, linger=1.0))
            finally:
                if background is not None:
                    background.close()
                    instance.set_agent_talk(4)
                    instance.hangup_all()
            rec.write(out / scenario.name)
            written.append(scenario.name)
            print(f"{scenario.name}: {len(rec.received)} messages, {len(rec.data)} bytes", flush=True)
        if not names:
            keep = {s.name for s in SCENARIOS}
            for path in out.glob("*.*"):
                if path.suffix in (".txt", ".json") and path.stem not in keep:
                    path.unlink()
            write_index(out)
    finally:
        instance.cleanup()
    return written


def write_index(out: Path = OUT) -> None:
    lines = [
        "# AMI transcripts",
        "",
        "Recorded from the test suite's Asterisk 22 (`tests/asterisk/`) by",
        "`python -m tests.record_transcripts`, which rewrites every file here and this index.",
        "",
        "- `NAME.txt`: the bytes Asterisk sent on one connection, verbatim, from the banner to the end.",
        "- `NAME.json`: the connection's timeline: every action sent (exact text, time) and every",
        "  message received (time, byte offset, length, kind, name, ActionID); times are seconds",
        "  since the TCP connect, `connect_wall_clock_epoch` relates them to `Timestamp:` headers.",
        "",
        "Users: `dialer` is the README's least-privilege user (read system,call,agent,user; write",
        "originate,system,call), `admin` may do everything, `limited` reads and writes call only, `monitor`",
        "reads call,agent and writes nothing. The carrier's outcome follows the number's last digit",
        "(see `tests/asterisk/extensions.conf`). Answered calls run `dialer-connect`:",
        "`Queue(agents,,,,2)` with 3 agents who talk 4 s.",
        "",
        "| file | user | what it does | what it shows |",
        "|---|---|---|---|",
    ]
    for s in SCENARIOS:
        lines.append(f"| {s.name} | {s.user}{' (TLS)' if s.tls else ''} | {s.note} | {s.shows} |")
    (out / "INDEX.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.record_transcripts", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these scenarios")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default {OUT})")
    args = parser.parse_args(argv)
    record_all(args.names or None, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
