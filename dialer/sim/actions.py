"""AMI actions of the simulated Asterisk: login, permissions, and each action's responses.

Messages, header order and permission classes follow Asterisk 22's
``manager.c`` / ``app_queue.c`` as the recordings show them.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Awaitable, Callable

import trio

from dialer.ami.codec.message import Message
from dialer.sim.calls import Channel, OriginateRequest
from dialer.sim.scenario import ALL_CLASSES, CLASS_BIT, class_mask

if TYPE_CHECKING:  # pragma: no cover
    from dialer.sim.server import Session, SimAsterisk

Handler = Callable[["SimAsterisk", "Session", Message], Awaitable[None] | None]

# Write class an action needs (0: none); Asterisk allows an action when the
# user's write classes share a bit with these.
_SYSTEM, _CALL, _REPORTING = CLASS_BIT["system"], CLASS_BIT["call"], CLASS_BIT["reporting"]
AUTHORITY: dict[str, int] = {
    "ping": 0, "logoff": 0, "events": 0, "filter": 0, "listcommands": 0,
    "originate": CLASS_BIT["originate"],
    "hangup": _SYSTEM | _CALL,
    "redirect": _CALL,
    "status": _SYSTEM | _CALL | _REPORTING,
    "coreshowchannels": _SYSTEM | _REPORTING,
    "command": CLASS_BIT["command"],
    "queuestatus": 0,
    "queuesummary": 0,
    "queuepause": CLASS_BIT["agent"],
    "userevent": CLASS_BIT["user"],
}

PERMISSION_DENIED = [("Message", "Permission denied")]


async def dispatch(sim: "SimAsterisk", s: "Session", msg: Message) -> None:
    action = (msg.get("Action") or "").strip()
    key = action.lower()
    if not action:
        s.respond(msg, "Error", [("Message", "Missing action in request")])
        return
    sim.actions[action] += 1
    if sim.stopping and key != "logoff":
        s.respond(msg, "Error", [("Message", "Asterisk is shutting down")])
        return
    if key in ("login", "challenge", "logoff"):
        await _PRE_LOGIN[key](sim, s, msg)
        return
    if not s.logged_in:
        s.respond(msg, "Error", PERMISSION_DENIED)
        return
    handler = HANDLERS.get(key)
    if handler is None:
        s.respond(msg, "Error", [("Message", f"Invalid/unknown command: {action}. "
                                  "Use Action: ListCommands to show available commands.")])
        return
    need = AUTHORITY.get(key, 0)
    if need and not (s.write_mask & need):
        s.respond(msg, "Error", PERMISSION_DENIED)
        return
    result = handler(sim, s, msg)
    if result is not None:
        await result


# --- login -------------------------------------------------------------------------


def _event_mask(value: str | None) -> int | None:
    """Parse an Events/EventMask value: on, off, or a class list (None: unchanged)."""
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("on", "yes", "true", "1", "all"):
        return ALL_CLASSES
    if v in ("off", "no", "false", "0", "none", ""):
        return 0
    return class_mask(p.strip() for p in v.split(","))


async def _login(sim: "SimAsterisk", s: "Session", msg: Message) -> None:
    name = msg.get("Username") or ""
    user = sim.scenario.user(name)
    ok = False
    if user is not None and not sim.logins_refused:
        auth = (msg.get("AuthType") or "").lower()
        if auth == "md5":
            key = msg.get("Key") or ""
            if s.challenge:
                want = hashlib.md5((s.challenge + user.secret).encode()).hexdigest()
                ok = key.lower() == want
        elif not auth:
            ok = (msg.get("Secret") or "") == user.secret
    if not ok:
        sim.stats["login_failures"] += 1
        await trio.sleep(sim.login_delay / sim.speed)
        s.respond(msg, "Error", [("Message", "Authentication failed")])
        s.close(flush=True)
        return
    assert user is not None
    s.user = user
    s.read_mask = class_mask(user.read)
    s.write_mask = class_mask(user.write)
    mask = _event_mask(msg.get("Events"))
    if mask is not None:
        s.event_mask = mask
    s.logged_in_now()
    sim.stats["logins"] += 1
    s.respond(msg, "Success", [("Message", "Authentication accepted")])
    if s.read_mask & CLASS_BIT["system"] and s.event_mask & CLASS_BIT["system"]:
        up = str(sim.uptime())
        s.send([("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", up),
                ("LastReload", str(int(sim._reload_wall - sim._boot_wall) + int(up))),
                ("Status", "Fully Booted")])


async def _challenge(sim: "SimAsterisk", s: "Session", msg: Message) -> None:
    if (msg.get("AuthType") or "").lower() != "md5":
        s.respond(msg, "Error", [("Message", "Must specify AuthType")])
        return
    if not s.challenge:
        s.challenge = str(sim.rng.randrange(100000000, 999999999))
    s.respond(msg, "Success", [("Challenge", s.challenge)])


async def _logoff(sim: "SimAsterisk", s: "Session", msg: Message) -> None:
    s.respond(msg, "Goodbye", [("Message", "Thanks for all the fish.")])
    s.close(flush=True)


_PRE_LOGIN = {"login": _login, "challenge": _challenge, "logoff": _logoff}


# --- simple actions ------------------------------------------------------------------


def _ping(sim, s, msg) -> None:
    import time

    s.respond(msg, "Success", [("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")])


def _events(sim, s, msg) -> None:
    mask = _event_mask(msg.get("EventMask"))
    if mask is None:
        s.respond(msg, "Error", [("Message", "Missing EventMask")])
        return
    s.event_mask = mask
    s.respond(msg, "Success", [("Events", "On" if mask else "Off")])


class EventFilter:
    """One Filter: legacy regex over the whole event text, or MatchCriteria."""

    def __init__(self, include: bool, regex: re.Pattern | None, name: str | None,
                 header: str | None, method: str):
        self.include = include
        self.regex = regex
        self.name = name
        self.header = header
        self.method = method
        self.value = regex.pattern if regex is not None else ""

    def matches(self, event: str, headers: list[tuple[str, str]], text: str) -> bool:
        if self.name is not None and event.lower() != self.name.lower():
            return False
        if self.header is not None:
            hv = None
            hl = self.header.lower()
            for k, v in headers:
                if k.lower() == hl:
                    hv = v
                    break
            if hv is None:
                return False
            target = hv
        elif self.name is not None:
            target = text
            if not self.value:
                return True
        else:
            target = text
        m = self.method
        if m == "regex":
            return self.regex is None or bool(self.regex.search(target))
        if m == "exact":
            return target == self.value
        if m == "starts_with":
            return target.startswith(self.value)
        if m == "ends_with":
            return target.endswith(self.value)
        if m == "contains":
            return self.value in target
        return True  # method(none)


_CRIT = re.compile(r"\s*(action|name|header|method)\s*\(([^)]*)\)\s*,?", re.I)


def _filter(sim, s, msg) -> None:
    op = (msg.get("Operation") or "Add").strip().lower()
    if op != "add":
        s.respond(msg, "Error", [("Message", "Unknown operation")])
        return
    value = msg.get("Filter") or ""
    include = True
    if value.startswith("!"):
        include, value = False, value[1:]
    criteria = msg.get("MatchCriteria")
    name = header = None
    method = "regex"
    if criteria:
        pos = 0
        for m in _CRIT.finditer(criteria):
            if m.start() != pos:
                break
            pos = m.end()
            k, v = m.group(1).lower(), m.group(2).strip()
            if k == "name":
                name = v
            elif k == "header":
                header = v
            elif k == "method":
                method = v.lower()
            elif k == "action":
                include = v.lower() != "exclude"
        if pos != len(criteria) or method not in ("regex", "exact", "starts_with", "ends_with",
                                                  "contains", "none"):
            s.respond(msg, "Error", [("Message", "Invalid MatchCriteria")])
            return
    try:
        regex = re.compile(value) if method == "regex" else None
    except re.error:
        s.respond(msg, "Error", [("Message", "Filter Not Added")])
        return
    f = EventFilter(include, regex, name, header, method)
    if method != "regex":
        f.value = value
    s.filters.append(f)
    s.respond(msg, "Success", [("Message", "Success")])


def _userevent(sim, s, msg) -> None:
    name = msg.get("UserEvent")
    if not name:
        s.respond(msg, "Error", [("Message", "Missing UserEvent")])
        return
    s.respond(msg, "Success", [("Message", "Event Sent")])
    rest = [(k, v) for k, v in msg.items() if k.lower() not in ("action", "userevent")]
    sim.emit("UserEvent", "user", [("UserEvent", name)] + rest)


# --- Originate ----------------------------------------------------------------------


def parse_callerid(text: str) -> tuple[str, str]:
    """``"Name" <number>`` -> (name, number), like ast_callerid_parse."""
    text = text.strip()
    m = re.match(r'^\s*(?:"([^"]*)"|([^<]*?))\s*<([^>]*)>\s*$', text)
    if m:
        return ((m.group(1) if m.group(1) is not None else m.group(2) or "").strip(), m.group(3).strip())
    if re.fullmatch(r"[0-9+*#() .-]+", text):
        return ("", text)
    return (text.strip('"'), "")


async def _originate(sim: "SimAsterisk", s: "Session", msg: Message) -> None:
    pbx = sim.pbx
    chan = msg.get("Channel")
    if not chan:
        s.respond(msg, "Error", [("Message", "Channel not specified")])
        return
    prio = msg.get("Priority") or "1"
    if not re.fullmatch(r"\s*-?\d+\s*", prio):
        s.respond(msg, "Error", [("Message", "Invalid priority")])
        return
    tmo = msg.get("Timeout")
    timeout_ms = 30000
    if tmo:
        if not re.fullmatch(r"\s*-?\d+\s*", tmo):
            s.respond(msg, "Error", [("Message", "Invalid timeout")])
            return
        timeout_ms = int(tmo)
    if "/" not in chan:
        s.respond(msg, "Error", [("Message", "Invalid channel")])
        return
    cid1, cid2 = msg.get("ChannelId"), msg.get("OtherChannelId")
    for cid in (cid1, cid2):
        if cid is not None and len(cid) >= 150:
            s.respond(msg, "Error", [("Message", "Uniqueid length exceeds maximum of 149")])
            return
    context = msg.get("Context") or ""
    exten = msg.get("Exten") or ""
    app = msg.get("Application") or ""
    if exten and not app:
        if (context or "default") != sim.scenario.connect_context or exten != "s":
            s.respond(msg, "Error", [("Message", "Extension does not exist.")])
            return
    variables = []
    for v in msg.get_all("Variable"):
        for part in v.split(","):
            k, eq, val = part.partition("=")
            if eq and k.strip():
                variables.append((k.strip(), val))
    callerid = msg.get("CallerID")
    is_async = (msg.get("Async") or "").strip().lower() in ("yes", "true", "y", "t", "1", "on")
    req = OriginateRequest(
        channel=chan, context=context, exten=exten, priority=prio.strip(), application=app,
        data=msg.get("Data") or "", timeout=max(timeout_ms, 0) / 1000.0,
        callerid=parse_callerid(callerid) if callerid else None, variables=variables,
        channel_id=cid1 or None, other_channel_id=cid2 or None,
        action_id=msg.get("ActionID") or None, is_async=is_async,
    )
    sim.stats["originates"] += 1
    if is_async:
        s.respond(msg, "Success", [("Message", "Originate successfully queued")])
        pbx.originate(req)
        return
    # Synchronous: this session handles nothing else until the call is answered or
    # fails; events that arrive meanwhile are written after the Response.
    done = trio.Event()
    result: list[bool] = []

    def finish(ok: bool) -> None:
        if not result:
            result.append(ok)
            s.respond(msg, "Success" if ok else "Error",
                      [("Message", "Originate successfully queued" if ok else "Originate failed")],
                      direct=True)
            s.release_events()
            done.set()

    req.done = finish
    s.hold_events()
    pbx.originate(req)
    await done.wait()


# --- channel actions -------------------------------------------------------------------


def _find(sim, s, msg, header: str = "Channel") -> Channel | None:
    name = msg.get(header)
    if not name:
        s.respond(msg, "Error", [("Message", "No channel specified")])
        return None
    ch = sim.pbx.find_channel(name)
    if ch is None:
        s.respond(msg, "Error", [("Message", "No such channel")])
    return ch


def _hangup(sim, s, msg) -> None:
    ch = _find(sim, s, msg)
    if ch is None:
        return
    cause_text = msg.get("Cause") or "16"
    try:
        cause = int(cause_text)
    except ValueError:
        cause = 16
    s.respond(msg, "Success", [("Message", "Channel Hungup")])
    sim.pbx.hangup(ch, cause)


def _redirect(sim, s, msg) -> None:
    ch = _find(sim, s, msg)
    if ch is None:
        return
    context = msg.get("Context") or ""
    exten = msg.get("Exten") or ""
    prio = msg.get("Priority") or "1"
    if not exten:
        s.respond(msg, "Error", [("Message", "Exten not specified")])
        return
    if not prio.strip().isdigit():
        s.respond(msg, "Error", [("Message", "Invalid priority")])
        return
    if ch.leg != "1" or ch.call.state not in ("queued", "bridged", "app"):
        s.respond(msg, "Error", [("Message", "Redirect failed")])
        return
    s.respond(msg, "Success", [("Message", "Redirect successful")])
    sim.pbx.redirect(ch, context, exten, int(prio))


def _duration(seconds: float) -> str:
    n = int(max(seconds, 0))
    return f"{n // 3600:02d}:{(n % 3600) // 60:02d}:{n % 60:02d}"


def _status(sim, s, msg) -> None:
    aid = msg.get("ActionID") or None
    name = msg.get("Channel")
    if name:
        ch = sim.pbx.find_channel(name)
        if ch is None:
            s.respond(msg, "Error", [("Message", "No such channel")])
            return
        chans = [ch]
    else:
        chans = list(sim.pbx.channels.values())
    s.respond(msg, "Success", [("EventList", "start"), ("Message", "Channel status will follow")])
    now = sim.clock()
    for ch in chans:
        h = [("Event", "Status"), ("Privilege", "Call")] + ch.headers() + [
            ("Type", "Local"), ("DNID", ""), ("EffectiveConnectedLineNum", ch.conn_num),
            ("EffectiveConnectedLineName", ch.conn_name), ("TimeToHangup", "0"),
            ("BridgeID", ch.bridge or ""), ("Application", ch.app), ("Data", ch.appdata),
            ("Nativeformats", "(slin)"), ("Readformat", "slin"), ("Readtrans", ""),
            ("Writeformat", "slin"), ("Writetrans", ""), ("Callgroup", "0"),
            ("Pickupgroup", "0"), ("Seconds", str(int(now - ch.created)))]
        if aid:
            h.append(("ActionID", aid))
        s.send(h)
    tail = [("Event", "StatusComplete")] + ([("ActionID", aid)] if aid else [])
    s.send(tail + [("EventList", "Complete"), ("ListItems", str(len(chans))),
                   ("Items", str(len(chans)))])


def _coreshowchannels(sim, s, msg) -> None:
    aid = msg.get("ActionID") or None
    s.respond(msg, "Success", [("EventList", "start"), ("Message", "Channels will follow")])
    now = sim.clock()
    chans = list(sim.pbx.channels.values())
    for ch in chans:
        h = [("Event", "CoreShowChannel")] + ([("ActionID", aid)] if aid else []) + ch.headers() + [
            ("Application", ch.app), ("ApplicationData", ch.appdata),
            ("Duration", _duration(now - ch.created)), ("BridgeId", ch.bridge or "")]
        s.send(h)
    s.send([("Event", "CoreShowChannelsComplete")] + ([("ActionID", aid)] if aid else [])
           + [("EventList", "Complete"), ("ListItems", str(len(chans)))])


def _queuestatus(sim, s, msg) -> None:
    aid = msg.get("ActionID") or None
    q = sim.pbx.queue
    want = msg.get("Queue")
    member = msg.get("Member")
    s.respond(msg, "Success", [("EventList", "start"), ("Message", "Queue status will follow")])
    n = 0
    if not want or want == q.name:
        s.send(q.params_headers(aid))
        n += 1
        for m in q.members:
            if member and member not in (m.name, m.interface):
                continue
            s.send(m.list_headers(q.name, aid))
            n += 1
        now = sim.clock()
        for pos, call in enumerate(q.waiting, 1):
            s.send(q.entry_headers(pos, call, int(now - call.join_at), aid))
            n += 1
    s.send([("Event", "QueueStatusComplete")] + ([("ActionID", aid)] if aid else [])
           + [("EventList", "Complete"), ("ListItems", str(n))])


def _queuesummary(sim, s, msg) -> None:
    aid = msg.get("ActionID") or None
    q = sim.pbx.queue
    want = msg.get("Queue")
    s.respond(msg, "Success", [("EventList", "start"), ("Message", "Queue summary will follow")])
    n = 0
    if not want or want == q.name:
        now = sim.clock()
        longest = int(now - q.waiting[0].join_at) if q.waiting else 0
        s.send(q.summary_headers(now, longest, aid))
        n = 1
    s.send([("Event", "QueueSummaryComplete")] + ([("ActionID", aid)] if aid else [])
           + [("EventList", "Complete"), ("ListItems", str(n))])


def _queuepause(sim, s, msg) -> None:
    interface = msg.get("Interface") or ""
    if not interface:
        s.respond(msg, "Error", [("Message", "Need 'Interface' parameter.")])
        return
    q = sim.pbx.queue
    want = msg.get("Queue")
    member = q.member(interface)
    if member is None or (want and want != q.name):
        s.respond(msg, "Error", [("Message", "Interface not found")])
        return
    paused = (msg.get("Paused") or "").strip().lower() in ("1", "true", "yes", "on")
    s.respond(msg, "Success", [("Message", "Interface paused successfully" if paused
                                else "Interface unpaused successfully")])
    sim.pbx.pause(member, paused, msg.get("Reason") or "")


def _ess(n: int) -> str:
    return "" if n == 1 else "s"


def _cli_summary(sim) -> list[str]:
    pbx = sim.pbx
    n = len(pbx.channels)
    calls = pbx.pbx_channels()
    return [f"{n} active channel{_ess(n)}", f"{calls} active call{_ess(calls)}",
            f"{pbx.calls_processed} call{_ess(pbx.calls_processed)} processed"]


def _cli(sim, command: str) -> list[str] | None:
    words = command.split()
    low = [w.lower() for w in words]
    if low == ["core", "show", "channels"]:
        fmt = "%-64.64s %-32.32s %-7.7s %-30.30s"
        out = [fmt % ("Channel", "Location", "State", "Application(Data)")]
        for ch in sim.pbx.channels.values():
            out.append(fmt % (ch.name, f"{ch.exten}@{ch.context}:{ch.priority}",
                              {6: "Up", 4: "Ring", 5: "Ringing", 0: "Down", 7: "Busy"}.get(ch.state, "Unknown"),
                              f"{ch.app}({ch.appdata})"))
        return out + _cli_summary(sim)
    if low == ["core", "show", "channels", "count"]:
        return _cli_summary(sim)
    if low == ["core", "show", "version"]:
        return [f"Asterisk {sim.version} built by dialer-sim on a x86_64 running Linux"]
    if low == ["core", "show", "uptime"]:
        up = sim.uptime()
        return [f"System uptime: {up} second{_ess(up)}", f"Last reload: {up} second{_ess(up)}"]
    return None


def _command(sim, s, msg) -> None:
    command = msg.get("Command") or ""
    if not command.strip():
        s.respond(msg, "Error", [("Message", "No command provided")])
        return
    out = _cli(sim, command)
    if out is None:
        s.respond(msg, "Error", [("Message", "Command output follows"),
                                 ("Output", f"No such command '{command.strip()}' (type 'core show help "
                                            f"{command.strip()}' for other possible commands)")])
        return
    s.respond(msg, "Success", [("Message", "Command output follows")] + [("Output", line) for line in out])


def _listcommands(sim, s, msg) -> None:
    rest = [(name, f"{name} (Priv: {'<none>'})") for name in
            ("Login", "Logoff", "Challenge") + tuple(sorted(n for n in _NAMES))]
    s.respond(msg, "Success", rest)


HANDLERS: dict[str, Handler] = {
    "ping": _ping,
    "events": _events,
    "filter": _filter,
    "userevent": _userevent,
    "originate": _originate,
    "hangup": _hangup,
    "redirect": _redirect,
    "status": _status,
    "coreshowchannels": _coreshowchannels,
    "queuestatus": _queuestatus,
    "queuesummary": _queuesummary,
    "queuepause": _queuepause,
    "command": _command,
    "listcommands": _listcommands,
}
_NAMES = ("Ping", "Events", "Filter", "UserEvent", "Originate", "Hangup", "Redirect", "Status",
          "CoreShowChannels", "QueueStatus", "QueueSummary", "QueuePause", "Command", "ListCommands")

__all__ = ["dispatch", "parse_callerid", "EventFilter", "AUTHORITY", "HANDLERS"]
