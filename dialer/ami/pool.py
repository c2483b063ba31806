"""The AMI pool: every connection to every Asterisk server, each within its cap.

Originates are spread over every usable connection. Each connection has its
own :class:`~dialer.ami.ratelimit.RateLimiter` and a ceiling on Originates in
flight. Claiming leads is a database transaction, so the engine claims a
little ahead: :meth:`AMIPool.assign` gives each new call a connection that has
room in its next ``horizon`` seconds of sending, and the call then waits for
that connection's next send slot (:meth:`PoolMember.send_slot`), which is
where the cap is enforced, at the moment the bytes go on the wire.

Events: every connection whose user may read ``call`` events receives every
call event of its server, including the ``OriginateResponse`` to an Originate
sent on another connection. Reading them all would multiply the work by the
number of connections and need deduplication, so every connection logs in
with ``Events: off`` and the pool switches events on (``Action: Events``) on
exactly one connection per server, its *reader*. When the reader drops,
another connection of that server is promoted; the events of the gap are
lost, so the pool reports the gap (``on_gap``) and the engine asks Asterisk
what became of the calls in flight. A server without a reader is not used for
dialing: calls placed there could not be followed.

Before switching events on, the reader installs an event filter (the legacy
regex form of ``Action: Filter``, which every Asterisk since 13 accepts) that
lets through only the events the engine acts on. A call makes about 40 events,
most of them ``VarSet`` and ``Newexten``; the filter keeps about a quarter,
which is that much less for Asterisk to write and for the engine to read.

Readiness: every connection logs in with ``Events: system`` rather than off,
so that Asterisk tells each one ``FullyBooted`` (at login, or once it has
finished starting: AMI accepts logins before the dialplan and the queues are
loaded) and ``Shutdown``. A server takes calls only once its connections have
heard ``FullyBooted`` and none of them has been told ``Asterisk is shutting
down`` (what every action gets once a graceful stop has begun): calls wait
for the restarted server, they are not sent to a stopping one. An AMI user
that may not read ``system`` never hears ``FullyBooted``: its server is taken
as ready ``boot_wait`` seconds after the login, with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import trio

from dialer.ami.codec.message import Message
from dialer.ami.connection import AMIConnection, ConnectionStateChanged, open_ami
from dialer.ami.errors import AMIError, NotConnected, PermissionDenied
from dialer.ami.ratelimit import RateLimiter

EventSink = Callable[[str, Message], Awaitable[None]]
log = logging.getLogger("dialer.ami.pool")

#: The events the engine acts on (the regex matches anywhere in an event, so
#: ``Hangup`` also lets ``HangupRequest`` through).
ENGINE_EVENTS = (
    "OriginateResponse", "Newchannel", "Hangup", "DialBegin", "DialState", "DialEnd",
    "QueueCallerJoin", "QueueCallerLeave", "AgentConnect", "QueueMember", "UserEvent", "FullyBooted", "Shutdown",
)
#: Events the pool itself acts on (readiness), not passed on.
_READINESS_EVENTS = frozenset({"FullyBooted", "Shutdown"})


def event_filter(names: Sequence[str]) -> str:
    return "Event: (" + "|".join(names) + ")"
GapHandler = Callable[[str], Awaitable[None]]


@dataclasses.dataclass(eq=False)
class PoolMember:
    """One AMI connection of the pool."""

    server: str
    name: str
    limiter: RateLimiter
    max_in_flight: int
    ami: AMIConnection | None = None
    in_flight: int = 0        # calls assigned here and not ended (queued ones included)
    queued: int = 0           # calls assigned here waiting for their send slot
    originates_sent: int = 0
    failures: int = 0
    reconnects: int = 0
    generation: int = 0
    gate: trio.StrictFIFOLock = dataclasses.field(default_factory=trio.StrictFIFOLock)
    peak_1s: int = 0          # most Originates this connection sent in any one second
    originate_denied: bool = False  # the AMI user may not Originate: not used for dialing
    # Originates written and not answered yet: ActionID -> trio time sent
    unanswered: dict[str, float] = dataclasses.field(default_factory=dict)
    boot_warned: int = 0      # generation for which a missing FullyBooted was reported

    @property
    def up(self) -> bool:
        return self.ami is not None and self.ami.is_connected

    def stalled(self, now: float, after: float) -> bool:
        """Whether an Originate has waited more than ``after`` seconds for its
        answer while no answer at all came: the server may have stopped
        reading (it is stalled), so no more go this way until it answers or
        the connection is made again. (A server that answers, if slowly,
        works through what it was sent: Originates pipelined faster than
        it takes them may wait longer than ``after`` in its queue.)"""
        if not self.unanswered:
            return False
        # The oldest first: entered as they are sent.
        if now - next(iter(self.unanswered.values())) <= after:
            return False
        ami = self.ami
        return ami is None or now - ami.last_response_at > after

    def room(self, horizon: float) -> int:
        """How many more calls may wait here: what the cap lets out within
        ``horizon`` seconds (plus the burst), less those already waiting."""
        ahead = math.ceil(self.limiter.rate * horizon) + self.limiter.burst
        return min(ahead - self.queued, self.max_in_flight - self.in_flight)

    async def send_slot(self) -> Callable[[], None]:
        """Wait until the cap lets one more Originate out on this connection.

        Calls get their slots in the order they asked, and only the first in
        line watches the clock: the others wait on the gate, not on a timer.
        Returns the function to call once the bytes are on the wire (the
        ``on_sent`` of :meth:`AMIConnection.action`): the cap then counts the
        send from that moment, so that sends delayed on the way to the socket
        cannot bunch up past it."""
        async with self.gate:
            while not self.limiter.try_take(now := trio.current_time()):
                await trio.sleep_until(self.limiter.next_time(now))
        self.queued -= 1
        self.originates_sent += 1
        self.peak_1s = max(self.peak_1s, self.limiter.sent_last_second(now))
        return lambda: self.limiter.restamp(now, trio.current_time())


@dataclasses.dataclass(eq=False)
class _Server:
    config: Any
    members: list[PoolMember]
    reader: PoolMember | None = None
    promoting: trio.Lock = dataclasses.field(default_factory=trio.Lock)
    unfiltered: bool = False  # the user may not install the event filter (warned once)


class AMIPool:
    """The connections of every configured server (``AMIServerConfig``);
    :meth:`run` keeps them up, in the caller's nursery."""

    def __init__(self, servers: Sequence[Any], *, now: float, connect: Callable[..., Any] = open_ami,
                 action_timeout: float = 10.0, ping_interval: float | None = 20.0,
                 ping_timeout: float = 5.0, stall_after: float = 1.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 events: Sequence[str] | None = ENGINE_EVENTS, horizon: float = 0.25,
                 boot_wait: float = 10.0) -> None:
        self._connect = connect
        self.boot_wait = boot_wait
        self.horizon = horizon
        self._events = events
        self._action_timeout = action_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self.stall_after = stall_after
        self._backoff = (backoff_initial, backoff_max)
        self._servers: dict[str, _Server] = {}
        self.members: list[PoolMember] = []
        for config in servers:
            members = [
                PoolMember(
                    server=config.name,
                    name=f"{config.name}#{i + 1}",
                    limiter=RateLimiter(config.originate_rate, config.burst, now=now),
                    max_in_flight=config.max_in_flight,
                )
                for i in range(config.connections)
            ]
            self._servers[config.name] = _Server(config, members)
            self.members += members
        self._rr = 0
        self._changed = trio.Event()

    # -- dialing -------------------------------------------------------------------

    def usable(self, member: PoolMember) -> bool:
        server = self._servers[member.server]
        return (member.up and not member.originate_denied
                and server.reader is not None and server.reader.up
                and not (member.unanswered and member.stalled(trio.current_time(), self.stall_after))
                and self.accepting(member.server))

    def _ready(self, member: PoolMember) -> bool:
        ami = member.ami
        if ami is None or not ami.is_connected:
            return False
        if ami.booted:
            return True
        if trio.current_time() - ami.connected_since < self.boot_wait:
            return False
        if member.boot_warned != ami.generation:
            member.boot_warned = ami.generation
            log.warning("%s: no FullyBooted from Asterisk %.0f s after login; taking it as ready"
                        " (give the AMI user read = system in manager.conf)", member.name, self.boot_wait)
        return True

    def shutting_down(self, server: str) -> bool:
        """Whether Asterisk said it is stopping, on any connection of ``server``."""
        return any(m.ami is not None and m.up and m.ami.shutting_down
                   for m in self._servers[server].members)

    def accepting(self, server: str) -> bool:
        """Whether ``server`` takes calls now: each of its live connections has
        heard ``FullyBooted`` (see the module docstring) and none has been told
        it is shutting down."""
        state = self._servers[server]
        live = [m for m in state.members if m.up]
        return bool(live) and not self.shutting_down(server) and all(self._ready(m) for m in live)

    def capacity(self) -> int:
        """How many more calls the pool can take on now."""
        return sum(max(0, m.room(self.horizon)) for m in self.members if self.usable(m))

    def assign(self) -> PoolMember | None:
        """The usable connection with the most room for one more call (counted
        in flight and waiting to send there), or None."""
        best, best_room = None, 0
        n = len(self.members)
        for step in range(n):
            member = self.members[(self._rr + step) % n]
            if not self.usable(member):
                continue
            room = member.room(self.horizon)
            if room > best_room:
                best, best_room = member, room
        if best is None:
            return None
        self._rr = (self.members.index(best) + 1) % n
        best.in_flight += 1
        best.queued += 1
        return best

    def assign_many(self, count: int) -> list[PoolMember]:
        """``count`` calls of :meth:`assign` at once, stopping at the first
        None: the same connections in the same order, worked out per level of
        room rather than per call (a campaign with the caps lifted asks for
        tens of thousands at a time)."""
        n = len(self.members)
        # Whether a connection is usable does not change while calls are
        # assigned (nothing here awaits), and each assignment takes exactly
        # one from the room of its connection.
        rooms = {}
        for i, member in enumerate(self.members):
            if self.usable(member):
                room = member.room(self.horizon)
                if room > 0:
                    rooms[i] = room
        out: list[PoolMember] = []
        taken = dict.fromkeys(rooms, 0)
        rr = self._rr
        while count > 0 and rooms:
            level = max(rooms.values())
            top = sorted((i for i, room in rooms.items() if room == level), key=lambda i: (i - rr) % n)
            lower = max((room for room in rooms.values() if room < level), default=0)
            order = [self.members[i] for i in top]
            # Whole rounds over the connections with the most room, in turn
            # from the last one assigned, then part of a round.
            rounds = min(count // len(top), level - lower)
            if rounds:
                out += order * rounds
                count -= rounds * len(top)
                for i in top:
                    rooms[i] -= rounds
                    taken[i] += rounds
                rr = (top[-1] + 1) % n
            else:
                out += order[:count]
                for i in top[:count]:
                    rooms[i] -= 1
                    taken[i] += 1
                rr = (top[count - 1] + 1) % n
                count = 0
            rooms = {i: room for i, room in rooms.items() if room > 0}
        if not out:
            return out
        self._rr = rr
        for i, n_taken in taken.items():
            self.members[i].in_flight += n_taken
            self.members[i].queued += n_taken
        return out

    def unassign_many(self, members: Sequence[PoolMember]) -> None:
        """:meth:`unassign` for each of ``members``."""
        if not members:
            return
        for member in self.members:
            count = members.count(member)  # by identity, and a pool has few members
            if count:
                member.queued -= count
                member.in_flight = max(0, member.in_flight - count)
        self._notify()

    def unassign(self, member: PoolMember) -> None:
        """Undo :meth:`assign` for a call that will not be sent."""
        member.queued -= 1
        self.release(member)

    def release(self, member: PoolMember) -> None:
        """A call placed on ``member`` ended (or was never placed)."""
        if member.in_flight > 0:
            member.in_flight -= 1
        self._notify()

    def not_queued(self, member: PoolMember) -> None:
        """A call assigned to ``member`` will not wait for a send slot after
        all; it stays counted in flight until :meth:`release`."""
        member.queued -= 1

    def not_sent(self, member: PoolMember) -> None:
        """A call whose send slot came never left: not counted as sent, and
        its place on ``member`` is free again."""
        member.originates_sent -= 1
        self.release(member)

    def check_sendable(self, member: PoolMember) -> None:
        """Raise NotConnected unless an Originate may go out on ``member`` now:
        it is up and may Originate, it is not stalled (an Originate there has
        waited ``stall_after`` seconds for its answer while no answer at all
        came, see :meth:`PoolMember.stalled`), and its server takes calls."""
        if member.ami is None or not member.up or member.originate_denied:
            raise NotConnected(f"{member.name}: not connected")
        if member.stalled(trio.current_time(), self.stall_after):
            raise NotConnected(f"{member.name}: an Originate has waited"
                               f" {self.stall_after:g} s for its answer")
        if not self.accepting(member.server):
            raise NotConnected(f"{member.server}: shutting down or not fully booted")

    async def originate(self, member: PoolMember, headers: list[tuple[str, str]], *, action_id: str,
                        on_sent: Callable[[], None]) -> Message:
        """Send an Originate on ``member`` (after :meth:`check_sendable`) and
        wait for its answer; it counts as unanswered meanwhile (see
        :meth:`PoolMember.stalled`)."""
        assert member.ami is not None
        member.unanswered[action_id] = trio.current_time()
        try:
            return await member.ami.action("Originate", headers, action_id=action_id, on_sent=on_sent)
        finally:
            member.unanswered.pop(action_id, None)

    async def action(self, member: PoolMember, name: str, headers: list[tuple[str, str]]) -> Message:
        """Send one action on ``member`` (NotConnected if it is down)."""
        if member.ami is None or not member.up:
            raise NotConnected(f"{member.name}: not connected")
        return await member.ami.action(name, headers)

    def note_failure(self, member: PoolMember) -> None:
        """An Originate on ``member`` failed (refused, timed out, lost)."""
        member.failures += 1

    def deny_originate(self, member: PoolMember) -> bool:
        """The AMI user of ``member`` may not Originate: no more calls go
        there. Whether this is news (the first refusal)."""
        if member.originate_denied:
            return False
        member.originate_denied = True
        return True

    def all_denied(self) -> bool:
        """Whether no connection of the pool may Originate."""
        return all(m.originate_denied for m in self.members)

    def member(self, name: str) -> PoolMember | None:
        for m in self.members:
            if m.name == name:
                return m
        return None

    def server_connection(self, server: str) -> AMIConnection | None:
        """A logged-in connection of ``server`` for queries, or None."""
        state = self._servers.get(server)
        if state is None:
            return None
        for m in state.members:
            if m.up:
                return m.ami
        return None

    def has_reader(self, server: str) -> bool:
        state = self._servers.get(server)
        return state is not None and state.reader is not None and state.reader.up

    @property
    def servers(self) -> list[str]:
        return list(self._servers)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self) -> None:
        """Wait until a connection comes up or goes down, or a call slot frees."""
        await self._changed.wait()

    # -- connections ---------------------------------------------------------------

    async def run(self, on_event: EventSink, on_gap: GapHandler, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for server in self._servers.values():
                for member in server.members:
                    nursery.start_soon(self._keep, server, member, on_event, on_gap)
            task_status.started()

    async def _keep(self, server: _Server, member: PoolMember, on_event: EventSink, on_gap: GapHandler) -> None:
        config = server.config
        async with AsyncExitStack() as stack:
            kwargs = config.open_kwargs()
            kwargs["name"] = member.name
            ami = await stack.enter_async_context(self._connect(
                **kwargs, events="system", require_initial=False,
                action_timeout=self._action_timeout, ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                backoff_initial=self._backoff[0], backoff_max=self._backoff[1],
            ))
            member.ami = ami
            channel = await stack.enter_async_context(ami.subscribe(max_buffer=4096))
            while True:
                try:
                    item = await channel.receive()
                except trio.EndOfChannel:
                    # The connection gave up: a refused login is the user's to fix.
                    with contextlib.suppress(NotConnected):
                        await ami.wait_connected(timeout=0)
                    return
                # Then drain what is already there without a scheduler pass per event.
                while True:
                    if isinstance(item, ConnectionStateChanged):
                        await self._state_changed(server, member, item, on_gap)
                    elif item.name in _READINESS_EVENTS:
                        self._notify()  # the connection keeps the state; dialers re-check
                    else:
                        await on_event(member.server, item)
                    try:
                        item = channel.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break

    async def _state_changed(self, server: _Server, member: PoolMember, change: ConnectionStateChanged,
                             on_gap: GapHandler) -> None:
        if change.up:
            if member.generation and change.generation != member.generation:
                member.reconnects += 1
            member.generation = change.generation
            if server.reader is None or not server.reader.up:
                await self._promote(server, on_gap)
        elif server.reader is member:
            server.reader = None
            await self._promote(server, on_gap)
        self._notify()

    async def _promote(self, server: _Server, on_gap: GapHandler) -> None:
        """Switch events on for one live connection of ``server``."""
        async with server.promoting:
            if server.reader is not None and server.reader.up:
                return  # another connection's task promoted one meanwhile
            await self._promote_locked(server, on_gap)

    async def _promote_locked(self, server: _Server, on_gap: GapHandler) -> None:
        server.reader = None
        for candidate in server.members:
            if not candidate.up or candidate.ami is None:
                continue
            try:
                if self._events:
                    try:
                        await candidate.ami.action(
                            "Filter", [("Operation", "Add"), ("Filter", event_filter(self._events))]
                        )
                    except PermissionDenied:
                        # Filter needs write = system: read every event instead.
                        if not server.unfiltered:
                            server.unfiltered = True
                            log.warning("%s: events are not filtered (Filter: Permission denied;"
                                        " give the AMI user write = system)", server.config.name)
                await candidate.ami.action("Events", [("EventMask", "on")])
            except AMIError:
                continue
            server.reader = candidate
            break
        self._notify()
        if server.reader is not None:
            # Until now nobody read this server's events: what happened meanwhile
            # to its calls in flight is unknown until Asterisk is asked.
            await on_gap(server.config.name)

    def statistics(self, now: float | None = None) -> list[dict[str, Any]]:
        """One dict per connection; with ``now``, also the Originates sent in
        the last second (``rate_1s``)."""
        rows = []
        for m in self.members:
            row = {
                "server": m.server, "connection": m.name, "up": m.up,
                "reader": self._servers[m.server].reader is m,
                "in_flight": m.in_flight, "queued": m.queued, "originates_sent": m.originates_sent,
                "failures": m.failures, "reconnects": m.reconnects, "rate_cap": m.limiter.rate,
                "peak_1s": m.peak_1s,
                "ready": m.up and self.accepting(m.server),
            }
            if now is not None:
                row["rate_1s"] = m.limiter.sent_last_second(now)
            rows.append(row)
        return rows
