"""The simulated Asterisk: a trio TCP (or TLS) server speaking AMI.

One :class:`SimAsterisk` owns the call model (:class:`dialer.sim.calls.PBX`),
a single scheduler task that runs every timed step of every call from one heap
(no task per channel or per event), and one :class:`Session` per connection.

Events are encoded once and the same bytes are appended to the outbound
buffer of every session allowed to see them (read classes, ``Events``,
``Filter``). Each session has one writer task that sends whatever has piled up
in one ``send_all``.

Slow readers: Asterisk disconnects a client whose socket write times out
(``writetimeout``). The simulator does the same: a session whose unsent
backlog exceeds ``max_outbound_bytes`` (default 32 MiB), or whose pending
write makes no progress for ``write_timeout`` seconds (default 10), is
disconnected and counted in ``statistics()["slow_disconnects"]``. The
simulator itself never waits for a reader.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import Counter, deque
from typing import Any, Callable

import trio

from dialer.ami.codec.errors import RemoteProtocolError
from dialer.ami.codec.message import Message
from dialer.ami.codec.parser import NEED_DATA, AMIParser
from dialer.ami.codec.serialize import encode_message
from dialer.sim.calls import PBX
from dialer.sim.faults import FaultsMixin
from dialer.sim.actions import dispatch
from dialer.sim.scenario import ALL_CLASSES, CLASS_BIT, PRIVILEGE, Scenario, User, default_scenario

__all__ = ["SimAsterisk", "Session", "serve_sim", "BANNER"]

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


class Timer:
    """A scheduled call; ``cancel()`` makes the scheduler skip it."""

    __slots__ = ("due", "seq", "fn", "args", "cancelled")

    def __init__(self, due: float, seq: int, fn: Callable, args: tuple):
        self.due = due
        self.seq = seq
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: "Timer") -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class Session:
    """One AMI connection: login state, event settings, outbound buffer."""

    def __init__(self, sim: "SimAsterisk", stream: trio.abc.Stream, conn_id: int):
        self.sim = sim
        self.stream = stream
        self.id = conn_id
        self.peer = _peer_of(stream)
        self.parser = AMIParser(role="server", max_message_size=sim.max_action_size)
        self.user: User | None = None
        self.read_mask = 0
        self.write_mask = 0
        self.event_mask = ALL_CLASSES  # the Events setting
        self.filters: list[Any] = []
        self.challenge: str | None = None
        self.outq: deque[bytes] = deque()
        self.outbytes = 0
        self.held: list[bytes] | None = None  # events held back while a sync action runs
        self.messages_sent = 0
        self.bytes_sent = 0
        self.close_after: int | None = None
        self.closing = False
        self.closed = False
        self.stall_until = -math.inf
        self._wake = trio.Event()
        self._cancel: trio.CancelScope | None = None
        self.received: list[tuple[float, Message]] = sim.received.setdefault(conn_id, [])

    # --- outbound --------------------------------------------------------------------

    @property
    def logged_in(self) -> bool:
        return self.user is not None

    def wants(self, bit: int) -> bool:
        return bool(self.read_mask & bit and self.event_mask & bit)

    def queue_bytes(self, data: bytes, *, count: bool = True) -> None:
        """Append one encoded message to the outbound buffer (never blocks)."""
        if self.closing or self.closed:
            return
        if self.held is not None:
            self.held.append(data)
            return
        self._append(data, count)

    def _append(self, data: bytes, count: bool = True) -> None:
        if self.closing or self.closed:
            return
        self.outq.append(data)
        self.outbytes += len(data)
        if count:
            self.messages_sent += 1
            if self.close_after is not None and self.messages_sent >= self.close_after:
                self.sim.stats["fault_closes"] += 1
                self.close(flush=True)
        if self.outbytes > self.sim.max_outbound_bytes:
            self.sim.stats["slow_disconnects"] += 1
            self.close(flush=False)
            return
        self._wake.set()

    def send(self, headers: list[tuple[str, str]]) -> None:
        self.queue_bytes(encode_message(headers))

    def respond(self, msg: Message | None, response: str, rest: list[tuple[str, str]],
                *, direct: bool = False) -> None:
        """A Response: ``Response``, then ``ActionID`` when the action had one, then ``rest``."""
        h = [("Response", response)]
        aid = msg.get("ActionID") if msg is not None else None
        if aid:
            h.append(("ActionID", aid))
        h += rest
        data = encode_message(h)
        if direct:
            self._append(data)
        else:
            self.queue_bytes(data)

    def hold_events(self) -> None:
        if self.held is None:
            self.held = []

    def release_events(self) -> None:
        held, self.held = self.held, None
        for data in held or ():
            self._append(data)

    def close(self, *, flush: bool = True) -> None:
        """Close after sending what is queued (``flush``) or at once."""
        if self.closed:
            return
        self.closing = True
        if not flush:
            self.outq.clear()
            self.outbytes = 0
            if self._cancel is not None:
                self._cancel.cancel()
        self._wake.set()

    # --- tasks -------------------------------------------------------------------------

    async def _stalled(self) -> None:
        while trio.current_time() < self.stall_until:
            await trio.sleep_until(self.stall_until)

    async def writer(self) -> None:
        sim = self.sim
        while True:
            if not self.outq:
                if self.closing:
                    break
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            await self._stalled()
            data = b"".join(self.outq)
            self.outq.clear()
            self.outbytes = 0
            with trio.move_on_after(sim.write_timeout) as cs:
                await self.stream.send_all(data)
            if cs.cancelled_caught:
                sim.stats["slow_disconnects"] += 1
                break
            self.bytes_sent += len(data)
            sim.stats["bytes_sent"] += len(data)
        if self._cancel is not None:
            self._cancel.cancel()

    async def reader(self) -> None:
        sim = self.sim
        parser = self.parser
        with trio.move_on_after(sim.auth_timeout) as auth_cs:
            # The auth timeout applies until Login succeeds (manager.conf authtimeout).
            self._auth_cs = auth_cs
            await self._read_loop(parser)
            return
        if auth_cs.cancelled_caught and not self.logged_in:
            self.close(flush=True)

    async def _read_loop(self, parser: AMIParser) -> None:
        sim = self.sim
        while not self.closing:
            await self._stalled()
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            await self._stalled()
            if not data:
                self.close(flush=True)
                return
            parser.receive_data(data)
            while not self.closing:
                try:
                    ev = parser.next_event()
                    if ev is NEED_DATA:
                        break
                    if not isinstance(ev, Message):
                        break
                    ev.items()  # parse now: a malformed block is reported here
                except RemoteProtocolError:
                    # Oversized or malformed input: Asterisk drops such a client.
                    sim.stats["protocol_errors"] += 1
                    self.close(flush=True)
                    return
                self.received.append((trio.current_time(), ev))
                await sim._dispatch_action(self, ev)

    def logged_in_now(self) -> None:
        cs = getattr(self, "_auth_cs", None)
        if cs is not None:
            cs.deadline = math.inf


def _peer_of(stream: trio.abc.Stream) -> str:
    s = stream
    while hasattr(s, "transport_stream"):
        s = s.transport_stream  # type: ignore[attr-defined]
    try:
        host, port = s.socket.getpeername()[:2]  # type: ignore[attr-defined]
        return f"{host}:{port}"
    except Exception:  # pragma: no cover - not a socket
        return "?"


class SimAsterisk(FaultsMixin):
    """A simulated Asterisk 22 speaking AMI.

    ``speed`` divides every simulated delay (ring, talk, queue, login-failure
    delay); ``seed`` (or the scenario's) makes outcome draws repeatable.
    """

    def __init__(self, scenario: Scenario | None = None, *, speed: float = 1.0,
                 seed: int | None = None, max_outbound_bytes: int = 32 << 20,
                 write_timeout: float = 10.0, auth_timeout: float = 30.0,
                 max_action_size: int = 1 << 16):
        if not (isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, not {speed!r}")
        self.scenario = scenario if scenario is not None else default_scenario()
        self.speed = float(speed)
        self.seed = seed if seed is not None else self.scenario.seed
        self.rng = random.Random(self.seed)
        self.max_outbound_bytes = max_outbound_bytes
        self.write_timeout = write_timeout
        self.auth_timeout = auth_timeout
        self.max_action_size = max_action_size
        self.login_delay = 1.0  # seconds before "Authentication failed"
        self.version = "22.10.1"
        self.pbx = PBX(self, self.scenario, self.rng)
        self.sessions: dict[int, Session] = {}
        self.received: dict[int, list[tuple[float, Message]]] = {}
        self.stats: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self._conn_seq = 0
        self._heap: list[Timer] = []
        self._tseq = 0
        self._wakeup: trio.Event | None = None
        self._next_due = math.inf
        self._boot_wall = time.time()
        self._reload_wall = self._boot_wall
        self._wall_origin: tuple[float, float] | None = None
        self._nursery: trio.Nursery | None = None
        self.port: int | None = None
        self._init_faults()

    # --- time ----------------------------------------------------------------------

    def clock(self) -> float:
        """Simulated seconds (trio's clock multiplied by ``speed``)."""
        return trio.current_time() * self.speed

    def wall_clock(self) -> float:
        """Simulated epoch seconds, what events are stamped with: they run
        ``speed`` times as fast as real time, from the first time asked."""
        if self._wall_origin is None:
            self._wall_origin = (time.time(), trio.current_time())
        wall, origin = self._wall_origin
        return wall + (trio.current_time() - origin) * self.speed

    def call_later(self, seconds: float, fn: Callable, *args) -> Timer:
        """Run ``fn(*args)`` after ``seconds`` of simulated time."""
        return self.call_at(trio.current_time() + max(seconds, 0.0) / self.speed, fn, *args)

    def call_at(self, when: float, fn: Callable, *args) -> Timer:
        """Run ``fn(*args)`` at trio time ``when``."""
        self._tseq += 1
        t = Timer(when, self._tseq, fn, args)
        heapq.heappush(self._heap, t)
        if when < self._next_due and self._wakeup is not None:
            self._wakeup.set()
        return t

    async def _run_scheduler(self) -> None:
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0].due <= now:
                t = heapq.heappop(heap)
                if not t.cancelled:
                    t.fn(*t.args)
            while heap and heap[0].cancelled:
                heapq.heappop(heap)
            self._next_due = heap[0].due if heap else math.inf
            self._wakeup = trio.Event()
            with trio.move_on_at(self._next_due):
                await self._wakeup.wait()

    # --- events --------------------------------------------------------------------

    def emit(self, name: str, cls: str, headers: list[tuple[str, str]]) -> None:
        """Encode one event once and queue it for every session allowed to see it."""
        full = [("Event", name), ("Privilege", PRIVILEGE[cls]),
                ("Timestamp", f"{self.wall_clock():.6f}")]
        full += headers
        data = encode_message(full)
        self.stats["events_emitted"] += 1
        self.events[name] += 1
        bit = CLASS_BIT[cls]
        text = None
        for s in self.sessions.values():
            if not (s.read_mask & bit and s.event_mask & bit):
                continue
            if s.filters:
                if text is None:
                    text = data.decode("utf-8", "surrogateescape")
                if not _filters_allow(s.filters, name, full, text):
                    continue
            s.queue_bytes(data)
            self.stats["events_delivered"] += 1

    def uptime(self) -> int:
        return int(time.time() - self._boot_wall)

    # --- serving -------------------------------------------------------------------

    async def serve(self, host: str = "127.0.0.1", port: int = 0, *, ssl_context=None,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``host:port`` (TLS with ``ssl_context``); report the bound port to ``nursery.start``."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        if port == 0 and len(listeners) > 1:
            # A name with several addresses got a different free port on each: keep one.
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        bound = listeners[0].socket.getsockname()[1]
        if ssl_context is not None:
            listeners = [trio.SSLListener(lst, ssl_context, https_compatible=False)
                         for lst in listeners]
        self.port = bound
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._run_scheduler)
                for lst in listeners:
                    nursery.start_soon(self._accept_loop, lst, nursery)
                task_status.started(bound)
        finally:
            self._nursery = None
            for lst in listeners:
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(lst)

    async def _accept_loop(self, listener: trio.abc.Listener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (trio.BrokenResourceError, trio.ClosedResourceError):  # pragma: no cover
                return
            except OSError:  # pragma: no cover - e.g. EMFILE; back off
                await trio.sleep(0.05)
                continue
            nursery.start_soon(self._run_session, stream)

    async def _run_session(self, stream: trio.abc.Stream) -> None:
        self._conn_seq += 1
        s = Session(self, stream, self._conn_seq)
        self.stats["connections"] += 1
        self.sessions[s.id] = s
        self._apply_connect_faults(s)
        try:
            async with trio.open_nursery() as n:
                s._cancel = n.cancel_scope
                s.queue_bytes(BANNER, count=False)
                n.start_soon(s.writer)
                await s.reader()
                # The writer ends the session once everything queued is sent.
        except* (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away (reset, killed): only its session ends
        finally:
            s.closed = True
            self.sessions.pop(s.id, None)
            self.stats["disconnects"] += 1
            await trio.aclose_forcefully(stream)

    # --- actions -------------------------------------------------------------------

    async def _dispatch_action(self, s: Session, msg: Message) -> None:
        await dispatch(self, s, msg)

    # --- introspection -------------------------------------------------------------

    @property
    def channels(self):
        """Active channels by name, in creation order."""
        return self.pbx.channels

    @property
    def queue(self):
        return self.pbx.queue

    def statistics(self) -> dict[str, Any]:
        st = self.stats
        return {
            "connections": st["connections"],
            "connections_active": len(self.sessions),
            "disconnects": st["disconnects"],
            "logins": st["logins"],
            "login_failures": st["login_failures"],
            "actions": dict(self.actions),
            "actions_total": sum(self.actions.values()),
            "events_emitted": st["events_emitted"],
            "events_delivered": st["events_delivered"],
            "events_by_name": dict(self.events),
            "bytes_sent": st["bytes_sent"],
            "calls_active": self.pbx.active_calls(),
            "calls_peak": self.pbx.peak_calls,
            "calls_total": self.pbx.calls_total,
            "channels_active": len(self.pbx.channels),
            "queue_waiting": len(self.pbx.queue.waiting),
            "slow_disconnects": st["slow_disconnects"],
            "protocol_errors": st["protocol_errors"],
            "fault_closes": st["fault_closes"],
            "restarts": st["restarts"],
            "timers_pending": len(self._heap),
        }




def _filters_allow(filters: list, name: str, headers: list[tuple[str, str]], text: str) -> bool:
    """Asterisk's event filter: pass if some include filter matches (when any exist)
    and no exclude filter matches."""
    has_include = False
    included = False
    for f in filters:
        if f.include:
            has_include = True
            if not included and f.matches(name, headers, text):
                included = True
        elif f.matches(name, headers, text):
            return False
    return included or not has_include


async def serve_sim(*, host: str = "127.0.0.1", port: int = 0, scenario: Scenario | None = None,
                    speed: float = 1.0, seed: int | None = None, ssl_context=None,
                    sim: SimAsterisk | None = None,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run a simulator until cancelled; ``await nursery.start(serve_sim, ...)`` returns the port."""
    if sim is None:
        sim = SimAsterisk(scenario, speed=speed, seed=seed)
    await sim.serve(host, port, ssl_context=ssl_context, task_status=task_status)
