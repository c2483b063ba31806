"""A bare AMI client for the simulator's own tests, and the simulator on a free port.

:class:`Client` speaks AMI over a trio stream with the sans-IO codec alone (no
dialer.ami.connection), so the simulator is tested against the wire, not
against the client it serves.
"""

from __future__ import annotations

import trio

from dialer.ami.codec.message import Banner, Message
from dialer.ami.codec.parser import NEED_DATA, AMIParser
from dialer.ami.codec.serialize import encode_message
from dialer.sim import SimAsterisk

#: The Originate headers every test call carries but its Channel.
STANDARD = [("Context", "dialer-connect"), ("Exten", "s"), ("Priority", "1"),
            ("Async", "true"), ("Timeout", "20000"),
            ("CallerID", '"Campaign" <15550001000>'), ("Variable", "LEADID=123")]


class Client:
    """A minimal AMI client over a trio stream, for tests."""

    def __init__(self, stream: trio.abc.Stream, **parser_kw):
        self.stream = stream
        self.parser = AMIParser(role="client", **parser_kw)
        self.messages: list = []
        self.times: list[float] = []
        self.eof = False

    @classmethod
    async def connect(cls, port: int, **kw) -> "Client":
        c = cls(await trio.open_tcp_stream("127.0.0.1", port), **kw)
        banner = await c.next()
        assert isinstance(banner, Banner) and banner.line == "Asterisk Call Manager/11.0.0"
        return c

    async def send(self, action: str, *headers: tuple[str, str], action_id: str | None = None) -> None:
        h = [("Action", action)] + list(headers)
        if action_id is not None:
            h.append(("ActionID", action_id))
        await self.stream.send_all(encode_message(h))

    async def next(self, timeout: float = 60.0):
        """The next message, or None at end of stream."""
        with trio.fail_after(timeout):
            while True:
                ev = self.parser.next_event()
                if ev is not NEED_DATA:
                    if not isinstance(ev, (Banner, Message)):
                        return None
                    self.messages.append(ev)
                    self.times.append(trio.current_time())
                    return ev
                if self.eof:
                    return None
                try:
                    data = await self.stream.receive_some(1 << 16)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    self.eof = True
                self.parser.receive_data(data)

    async def until(self, pred, timeout: float = 120.0) -> Message:
        with trio.fail_after(timeout):
            while True:
                m = await self.next()
                if m is None:
                    raise AssertionError("connection closed while waiting")
                if pred(m):
                    return m

    async def response(self, action_id: str) -> Message:
        return await self.until(lambda m: m.kind == "response" and m.action_id == action_id)

    async def event(self, name: str, **match) -> Message:
        return await self.until(lambda m: m.kind == "event" and m.name == name
                                and all(m.get(k) == v for k, v in match.items()))

    async def login(self, user="dialer", secret=None, **extra) -> Message:
        secret = secret if secret is not None else f"{user}pass"
        h = [("Username", user), ("Secret", secret)] + list(extra.items())
        await self.send("Login", *h, action_id="login")
        return await self.response("login")

    async def originate(self, number: str, action_id: str, *extra: tuple[str, str]) -> Message:
        await self.send("Originate", ("Channel", f"Local/{number}@carrier"), *STANDARD, *extra,
                        action_id=action_id)
        return await self.response(action_id)

    async def drain(self, seconds: float) -> list:
        """Everything that arrives in the next ``seconds``."""
        got = []
        with trio.move_on_after(seconds):
            while True:
                m = await self.next()
                if m is None:
                    break
                got.append(m)
        return got

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


async def start(nursery, **kw):
    sim = SimAsterisk(**kw)
    port = await nursery.start(sim.serve, "127.0.0.1", 0)
    return sim, port
