"""Recording one AMI connection byte for byte: what was sent, what came back, and when.

A *script* is a list of steps run in order on one TCP (or TLS) connection:

``send``
    the text of one action, ``Key: Value`` lines (written with CRLF, a blank
    line added); ``{username}`` and ``{secret}`` stand for the login's. With
    ``reply = true`` the step waits for the Response carrying the action's
    ActionID (or the next Response, when it has none).
``login``
    ``Action: Login`` with the username and secret (``md5 = true``: the
    ``Challenge`` form), ``events`` (an ``Events:`` header) and
    ``action_id``; waits for its Response.
``wait``
    seconds to sleep.
``until``
    an event name to wait for (counting from the last ``send``), with ``match`` (headers it must carry, as
    shell-style patterns: ``Local/*;1``), ``count`` (how many such events,
    default 1) and ``capture`` (``{NAME = "Header"}``: the first such event's
    header becomes ``{NAME}`` in later ``send`` steps).
``quiet``
    wait until nothing has arrived for this many seconds.
``closed``
    wait until the server closes the connection.

Every waiting step has a deadline (``timeout``, default 30 s) and fails with
:class:`RecordError` naming the step. At the end the recorder waits ``linger``
seconds for the server to close, then closes.

The result is two files, as ``NAME.txt`` and ``NAME.json``: the ``.txt`` holds
the bytes the server sent, verbatim, from the banner to the end; the ``.json``
holds the time (seconds since connect) and exact text of every action sent,
and the arrival time, byte offset, length, kind, name and ActionID of every
message received (a message's time is that of the read that completed it).
``Secret:`` values are written as ``********`` unless ``keep_secrets``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import ssl
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from dialer.ami.codec.errors import LocalProtocolError
from dialer.ami.codec.message import Banner, Message
from dialer.ami.codec.parser import NEED_DATA, AMIParser
from dialer.ami.codec.serialize import encode_message
from dialer.errors import UserError

__all__ = ["Recording", "RecordError", "Step", "load_script", "parse_script", "record"]

STEP_KINDS = ("send", "login", "wait", "until", "quiet", "closed")
_STEP_KEYS = {
    "send": {"reply", "timeout"},
    "login": {"username", "secret", "md5", "events", "action_id", "timeout", "expect"},
    "wait": set(),
    "until": {"match", "count", "capture", "timeout"},
    "quiet": {"timeout"},
    "closed": {"timeout"},
}
REDACTED = "********"


class RecordError(UserError):
    """A script that cannot be run, or a step whose wait ran out."""


@dataclass(frozen=True)
class Step:
    kind: str
    value: Any
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self, index: int) -> str:
        shown = self.value if self.kind != "send" else self.value.splitlines()[0] if self.value else ""
        return f"step {index + 1} ({self.kind} {shown!s})".replace("  ", " ")


def parse_script(data: dict[str, Any], where: str = "<script>") -> tuple[list[Step], dict[str, Any]]:
    """Steps and top-level settings (``note``, ``linger``) from a parsed script."""
    settings = {k: v for k, v in data.items() if k != "step"}
    for key in settings:
        if key not in ("note", "linger"):
            raise RecordError(f"{where}: {key}: unknown setting (expected note, linger, [[step]])")
    steps = []
    raw_steps = data.get("step", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise RecordError(f"{where}: no [[step]] tables")
    for i, raw in enumerate(raw_steps):
        if not isinstance(raw, dict):
            raise RecordError(f"{where}: step {i + 1}: must be a table")
        kinds = [k for k in raw if k in STEP_KINDS]
        if len(kinds) != 1:
            raise RecordError(
                f"{where}: step {i + 1}: needs exactly one of {', '.join(STEP_KINDS)}")
        kind = kinds[0]
        options = {k: v for k, v in raw.items() if k != kind}
        for key in options:
            if key not in _STEP_KEYS[kind]:
                raise RecordError(f"{where}: step {i + 1}: {key}: not an option of {kind}")
        value = raw[kind]
        if kind == "send" and not isinstance(value, str):
            raise RecordError(f"{where}: step {i + 1}: send: must be the action's text")
        if kind in ("wait", "quiet"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise RecordError(f"{where}: step {i + 1}: {kind}: must be a number of seconds")
        if kind == "until" and not isinstance(value, str):
            raise RecordError(f"{where}: step {i + 1}: until: must be an event name")
        if "timeout" in options:
            t = options["timeout"]
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
                raise RecordError(f"{where}: step {i + 1}: timeout: must be more than 0 seconds")
        steps.append(Step(kind, value, options))
    return steps, settings


def load_script(path: str | Path) -> tuple[list[Step], dict[str, Any]]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecordError(f"{p}: script file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{p}: cannot read script file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecordError(f"{p}: invalid TOML: {exc}") from None
    return parse_script(data, str(p))


def action_bytes(text: str, **values: str) -> bytes:
    """The wire form of an action written as ``Key: Value`` lines."""
    headers = []
    for n, line in enumerate(text.strip("\r\n").splitlines(), 1):
        for key, value in values.items():
            line = line.replace("{" + key + "}", value)
        name, sep, value = line.partition(":")
        if not sep:
            raise RecordError(f"line {n} of an action: {line!r} is not 'Key: Value'")
        headers.append((name, value[1:] if value.startswith(" ") else value))
    try:
        return encode_message(headers)
    except LocalProtocolError as exc:
        raise RecordError(str(exc)) from None


@dataclass
class Recording:
    """One connection's traffic (times are seconds since the TCP connect)."""

    host: str
    port: int
    tls: bool
    note: str = ""
    connect_epoch: float = 0.0
    data: bytearray = field(default_factory=bytearray)
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    server_closed_at: float | None = None
    keep_secrets: bool = False

    def timeline(self) -> dict[str, Any]:
        sent = []
        for item in self.sent:
            text = item["text"]
            if not self.keep_secrets:
                text = _redact(text)
            sent.append({"t": item["t"], "text": text})
        return {
            "recorded_from": f"AMI at {self.host}:{self.port}" + (" over TLS" if self.tls else ""),
            "connect_wall_clock_epoch": self.connect_epoch,
            "times": "seconds since TCP connect (monotonic clock); a message's time is the "
                     "arrival of the read that completed it",
            "note": self.note,
            "sent": sent,
            "received": self.received,
            "received_bytes": len(self.data),
            "server_closed_at": self.server_closed_at,
        }

    def write(self, stem: Path) -> tuple[Path, Path]:
        """Write ``stem.txt`` (the bytes received) and ``stem.json`` (the timeline)."""
        txt = stem.with_name(stem.name + ".txt")
        meta = stem.with_name(stem.name + ".json")
        txt.parent.mkdir(parents=True, exist_ok=True)
        txt.write_bytes(bytes(self.data))
        meta.write_text(json.dumps(self.timeline(), indent=1) + "\n")
        return txt, meta


def _redact(text: str) -> str:
    out = []
    for line in text.split("\r\n"):
        if line.lower().startswith("secret:"):
            line = line.split(":", 1)[0] + ": " + REDACTED
        out.append(line)
    return "\r\n".join(out)


class _Session:
    def __init__(self, stream: trio.abc.Stream, rec: Recording, t0: float) -> None:
        self.stream = stream
        self.rec = rec
        self.t0 = t0
        self.parser = AMIParser(role="client")
        self.changed = trio.Event()
        self.last_arrival = 0.0
        self.closed = False
        self.lock = trio.StrictFIFOLock()

    def now(self) -> float:
        return trio.current_time() - self.t0

    async def reader(self) -> None:
        while True:
            try:
                data = await self.stream.receive_some(1 << 16)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            t = round(self.now(), 6)
            if not data:
                self.closed = True
                self.rec.server_closed_at = t
                self._wake()
                return
            self.rec.data += data
            self.parser.receive_data(data)
            self.last_arrival = t
            while (item := self.parser.next_event()) is not NEED_DATA:
                if isinstance(item, Banner):
                    entry = {"t": t, "offset": item.offset, "length": item.length,
                             "kind": "banner", "name": item.line, "ActionID": None}
                else:
                    entry = {"t": t, "offset": item.offset, "length": item.length,
                             "kind": item.kind, "name": item.name, "ActionID": item.action_id}
                    self.rec.messages.append(item)
                self.rec.received.append(entry)
            self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def send(self, data: bytes) -> None:
        async with self.lock:
            self.rec.sent.append({"t": round(self.now(), 6), "text": data.decode("utf-8", "surrogateescape")})
            await self.stream.send_all(data)

    async def wait_for(self, test, what: str, timeout: float) -> Any:
        """Wait until ``test()`` returns something other than None."""
        with trio.move_on_after(timeout):
            while True:
                found = test()
                if found is not None:
                    return found
                if self.closed:
                    raise RecordError(f"{what}: the server closed the connection")
                await self.changed.wait()
        raise RecordError(f"{what}: nothing within {timeout:g} s")


async def record(
    host: str,
    port: int,
    steps: list[Step],
    *,
    username: str = "",
    secret: str = "",
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    note: str = "",
    linger: float = 2.0,
    connect_timeout: float = 10.0,
    keep_secrets: bool = False,
) -> Recording:
    """Run ``steps`` on one connection to ``host:port`` and return what was exchanged."""
    rec = Recording(host, port, ssl_context is not None, note=note, keep_secrets=keep_secrets)
    where = f"{host}:{port}"
    try:
        with trio.fail_after(connect_timeout):
            epoch = time.time()
            t0 = trio.current_time()
            stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
            if ssl_context is not None:
                stream = trio.SSLStream(stream, ssl_context, server_hostname=server_hostname or host,
                                        https_compatible=False)
                await stream.do_handshake()
    except trio.TooSlowError:
        raise RecordError(f"{where}: no connection within {connect_timeout:g} s") from None
    except (OSError, ssl.SSLError, trio.BrokenResourceError) as exc:
        raise RecordError(f"{where}: cannot connect: {exc}") from None
    rec.connect_epoch = epoch
    session = _Session(stream, rec, t0)
    counter = 0
    values = {"username": username, "secret": secret}
    mark = 0  # where the last send began: until counts the events from there
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.reader)
            for index, step in enumerate(steps):
                what = f"{where}: {step.describe(index)}"
                timeout = float(step.options.get("timeout", 30.0))
                if step.kind == "wait":
                    await trio.sleep(float(step.value))
                elif step.kind == "send":
                    data = action_bytes(step.value, **values)
                    seen = mark = len(rec.messages)
                    await _send(session, data, what)
                    if step.options.get("reply"):
                        aid = _action_id(data)
                        await session.wait_for(lambda: _response(rec.messages, seen, aid), what, timeout)
                elif step.kind == "login":
                    counter += 1
                    await _login(session, step, what, timeout, username, secret, counter)
                elif step.kind == "until":
                    match = {str(k): str(v) for k, v in step.options.get("match", {}).items()}
                    count = int(step.options.get("count", 1))
                    seen = mark

                    def found(seen=seen, name=step.value, match=match, count=count):
                        hits = [m for m in rec.messages[seen:]
                                if m.kind == "event" and m.name == name
                                and all(fnmatch.fnmatchcase(m.get(k) or "", v)
                                        for k, v in match.items())]
                        return hits if len(hits) >= count else None

                    hits = await session.wait_for(found, what, timeout)
                    for var, header in step.options.get("capture", {}).items():
                        values[str(var)] = hits[0].get(str(header)) or ""
                elif step.kind == "quiet":
                    span = float(step.value)
                    with trio.move_on_after(timeout) as scope:
                        while not session.closed:
                            idle = session.now() - session.last_arrival
                            if idle >= span:
                                break
                            with trio.move_on_after(span - idle):
                                await session.changed.wait()
                    if scope.cancelled_caught:
                        raise RecordError(f"{what}: still busy after {timeout:g} s")
                elif step.kind == "closed":
                    await session.wait_for(lambda: True if session.closed else None, what, timeout)
                    break
            if not session.closed and linger > 0:
                with trio.move_on_after(linger):
                    while not session.closed:
                        await session.changed.wait()
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)
    return rec


async def _send(session: _Session, data: bytes, what: str) -> None:
    try:
        await session.send(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise RecordError(f"{what}: the connection is closed") from None


def _action_id(data: bytes) -> str | None:
    for line in data.decode("utf-8", "surrogateescape").split("\r\n"):
        if line.lower().startswith("actionid:"):
            return line.split(":", 1)[1].strip()
    return None


def _response(messages: list[Message], seen: int, aid: str | None) -> Message | None:
    for m in messages[seen:]:
        if m.kind == "response" and (aid is None or m.action_id == aid):
            return m
    return None


async def _login(session: _Session, step: Step, what: str, timeout: float, username: str,
                 secret: str, counter: int) -> None:
    opts = step.options
    user = str(opts.get("username", username))
    key = str(opts.get("secret", secret))
    aid = str(opts.get("action_id", f"login-{counter}"))
    headers: list[tuple[str, str]] = [("Action", "Login"), ("Username", user)]
    if opts.get("md5"):
        challenge_id = f"challenge-{counter}"
        seen = len(session.rec.messages)
        await _send(session, encode_message(
            [("Action", "Challenge"), ("AuthType", "MD5"), ("ActionID", challenge_id)]), what)
        reply = await session.wait_for(
            lambda: _response(session.rec.messages, seen, challenge_id), what, timeout)
        challenge = reply.get("Challenge") or ""
        digest = hashlib.md5((challenge + key).encode()).hexdigest()
        headers += [("AuthType", "MD5"), ("Key", digest)]
    else:
        headers.append(("Secret", key))
    if "events" in opts:
        headers.append(("Events", str(opts["events"])))
    headers.append(("ActionID", aid))
    try:
        data = encode_message(headers)
    except LocalProtocolError as exc:
        raise RecordError(f"{what}: {exc}") from None
    seen = len(session.rec.messages)
    await _send(session, data, what)
    reply = await session.wait_for(lambda: _response(session.rec.messages, seen, aid), what, timeout)
    expect = str(opts.get("expect", "Success"))
    if expect != "any" and reply.get("Response") != expect:
        raise RecordError(f"{what}: login as {user}: {reply.get('Message') or reply.name}")
