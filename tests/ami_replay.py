"""A replaying AMI peer for tests: real TCP (or TLS) on 127.0.0.1.

:class:`ReplayServer` answers each action with the bytes a real Asterisk sent
for the same action in a recorded transcript (``NAME.txt`` + ``NAME.json``),
with the recorded ActionID replaced by the client's. It checks the login,
answers the MD5 challenge, refuses configured actions with the recorded
``Permission denied``, and can drop or stall its connections on demand so
that reconnects and dead-peer detection can be exercised.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from dialer.ami.codec.message import Message
from dialer.ami.codec.parser import CLOSED, NEED_DATA, AMIParser
from dialer.ami.codec.serialize import encode_message


@dataclass
class Transcript:
    """One recorded connection: the banner, and each action with what followed it."""

    name: str
    banner: bytes
    exchanges: list[tuple[Message, list[bytes]]]  # action, messages received after it
    data: bytes

    @classmethod
    def load(cls, directory: Path, name: str) -> "Transcript":
        data = (directory / f"{name}.txt").read_bytes()
        meta = json.loads((directory / f"{name}.json").read_text())
        received = meta["received"]
        banner = data[: received[0]["length"]]
        sent = meta["sent"]
        exchanges = []
        for k, item in enumerate(sent):
            parser = AMIParser(role="server")
            parser.receive_data(item["text"].encode())
            action = parser.next_event()
            assert isinstance(action, Message)
            start = item["t"]
            stop = sent[k + 1]["t"] if k + 1 < len(sent) else float("inf")
            replies = [
                data[r["offset"] : r["offset"] + r["length"]]
                for r in received[1:]
                if start <= r["t"] < stop
            ]
            exchanges.append((action, replies))
        return cls(name=name, banner=banner, exchanges=exchanges, data=data)

    def replies_to(self, action_name: str, nth: int = 0) -> tuple[Message, list[bytes]]:
        """The nth recorded exchange for this action name."""
        matches = [e for e in self.exchanges if (e[0].name or "").lower() == action_name.lower()]
        return matches[nth]


def _rewrite(block: bytes, old: str | None, new: str | None) -> bytes:
    if old is None:
        return block
    needle = b"\r\nActionID: " + old.encode() + b"\r\n"
    if new is None:
        return block.replace(needle, b"\r\n")
    return block.replace(needle, b"\r\nActionID: " + new.encode() + b"\r\n")


@dataclass(eq=False)
class _Conn:
    stream: trio.abc.Stream
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    user: str | None = None
    challenge: str | None = None
    lock: trio.StrictFIFOLock = field(default_factory=trio.StrictFIFOLock)

    async def send(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(data)


class ReplayServer:
    """Answers actions with recorded bytes.

    ``script`` maps an action name (any case) to the exchange whose replies
    are sent back, as ``(transcript, nth)``; ``users`` maps user names to
    secrets; ``deny`` maps a user name to action names answered with
    ``Permission denied``. ``after_login`` is sent after each successful
    login (e.g. recorded events). ``actions`` records every action received.
    """

    def __init__(
        self,
        transcripts: dict[str, Transcript],
        *,
        script: dict[str, tuple[str, int]] | None = None,
        users: dict[str, str] | None = None,
        deny: dict[str, set[str]] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        auth_delay: float = 1.0,
        after_login: bytes = b"",
    ) -> None:
        self.transcripts = transcripts
        self.script = {k.lower(): v for k, v in (script or {}).items()}
        self.users = users if users is not None else {"dialer": "dialerpass"}
        self.deny = {u: {a.lower() for a in acts} for u, acts in (deny or {}).items()}
        self.ssl_context = ssl_context
        self.auth_delay = auth_delay  # Asterisk answers a bad login after about 1 s
        self.after_login = after_login  # bytes sent right after a successful login
        self.port = 0
        self.actions: list[Message] = []
        self.logins = 0
        self.connections = 0
        self.stalled = False
        self.silent: set[str] = set()  # action names (lower) never answered
        self._conns: set[_Conn] = set()
        login = transcripts["login-success"]
        self.banner = login.banner
        self._login_ok = login.replies_to("Login")
        self._login_bad = transcripts["login-failure"].replies_to("Login")
        self._goodbye = login.replies_to("Logoff")
        denied = transcripts["permission-denied"].replies_to("Originate")
        self._denied = denied
        self._unknown = transcripts["unknown-action"].replies_to("NoSuchAction")

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            if self.ssl_context is None:
                listeners = await nursery.start(
                    partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1")
                )
            else:
                listeners = await nursery.start(
                    partial(
                        trio.serve_ssl_over_tcp, self._handle, 0, self.ssl_context,
                        host="127.0.0.1",
                    )
                )
            first = listeners[0]
            sock = first.socket if hasattr(first, "socket") else first.transport_listener.socket
            self.port = sock.getsockname()[1]
            task_status.started(self.port)

    @property
    def active(self) -> int:
        return len(self._conns)

    def drop(self) -> None:
        """Close every open connection now."""
        for conn in list(self._conns):
            conn.scope.cancel()

    async def push(self, data: bytes) -> None:
        """Send raw bytes (e.g. events) to every logged-in connection."""
        for conn in list(self._conns):
            if conn.user is not None:
                await conn.send(data)

    async def _handle(self, stream: trio.abc.Stream) -> None:
        conn = _Conn(stream)
        self._conns.add(conn)
        self.connections += 1
        try:
            with conn.scope:
                await conn.send(self.banner)
                parser = AMIParser(role="server")
                while True:
                    action = parser.next_event()
                    if action is NEED_DATA:
                        parser.receive_data(await stream.receive_some(65536))
                        continue
                    if action is CLOSED:
                        return
                    assert isinstance(action, Message)
                    self.actions.append(action)
                    if self.stalled:
                        await trio.sleep_forever()
                    if not await self._answer(conn, action):
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._conns.discard(conn)
            await trio.aclose_forcefully(stream)

    async def _reply(self, conn: _Conn, exchange: tuple[Message, list[bytes]], aid: str | None) -> None:
        recorded, replies = exchange
        old = recorded.action_id
        await conn.send(b"".join(_rewrite(r, old, aid) for r in replies))

    async def _answer(self, conn: _Conn, action: Message) -> bool:
        name = (action.name or "").lower()
        aid = action.action_id
        if name in self.silent:
            return True
        if name == "challenge":
            conn.challenge = "840415273"
            await conn.send(
                encode_message(
                    [("Response", "Success")]
                    + ([("ActionID", aid)] if aid else [])
                    + [("Challenge", conn.challenge)]
                )
            )
            return True
        if name == "login":
            user = action.get("Username") or ""
            if (action.get("AuthType") or "").lower() == "md5":
                expected = self.users.get(user)
                ok = (
                    expected is not None
                    and conn.challenge is not None
                    and action.get("Key")
                    == hashlib.md5((conn.challenge + expected).encode()).hexdigest()
                )
            else:
                ok = user in self.users and self.users[user] == action.get("Secret")
            if not ok:
                await trio.sleep(self.auth_delay)
                await self._reply(conn, self._login_bad, aid)
                return False
            conn.user = user
            self.logins += 1
            await self._reply(conn, self._login_ok, aid)
            if self.after_login:
                await conn.send(self.after_login)
            return True
        if name == "logoff":
            await self._reply(conn, self._goodbye, aid)
            return False
        if conn.user is None or name in self.deny.get(conn.user, ()):
            await self._reply(conn, self._denied, aid)
            return True
        where = self.script.get(name)
        if where is None:
            await self._reply(conn, self._unknown, aid)
            return True
        transcript, nth = where
        await self._reply(conn, self.transcripts[transcript].replies_to(name, nth), aid)
        return True
