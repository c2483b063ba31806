"""A trio AMI client: one logical connection that survives reconnects.

Use it as ``async with open_ami(host, port, username=..., secret=...) as ami:``.
Inside, :class:`AMIConnection` offers :meth:`~AMIConnection.action`,
:meth:`~AMIConnection.list_action`, :meth:`~AMIConnection.subscribe`,
:meth:`~AMIConnection.wait_connected` and :meth:`~AMIConnection.statistics`.

How it behaves:

* The first connection and login happen before ``open_ami`` returns; a
  refused connection raises :class:`ConnectError`, a refused login
  :class:`AuthenticationError` (pass ``require_initial=False`` to start
  disconnected and let the background task keep trying instead).
* When the connection drops it is made again with exponential backoff and
  jitter (``backoff_initial`` doubling up to ``backoff_max``, each delay
  multiplied by a random factor in [0.5, 1]), and the client logs in again.
  A login refused on reconnect stops the retries: the connection stays down
  and :meth:`~AMIConnection.wait_connected` raises the error.
* Actions in flight when a connection drops fail with :class:`ConnectionLost`;
  nothing is ever resent. An action started while disconnected fails at once
  with :class:`NotConnected` (nothing was sent).
* A ``Ping`` every ``ping_interval`` seconds must be answered within
  ``ping_timeout``, or the connection is treated as dead and made again. A
  Ping that is late only because this client is not reading (a subscriber is
  full, see below) or while other bytes keep arriving does not count.
* Events go to every subscriber's bounded channel. When a subscriber's
  channel is full the reader waits for room: backpressure, nothing is
  dropped. While it waits no other message is read, so action answers wait
  too (and may hit their deadline) and Asterisk buffers the events (it drops
  the connection itself past its ``writetimeout``). A consumer must keep
  draining its channel, or leave :meth:`~AMIConnection.subscribe`.
* Events carrying the ActionID of a pending :meth:`~AMIConnection.list_action`
  are that action's answer and are not published. Everything else (including
  an ``OriginateResponse`` that carries an Originate's ActionID) is.
* A subscription made at the start of the ``async with`` block, before any
  other ``await``, sees every event after the login (events that arrive
  while nobody is subscribed are counted, not kept).
* Readiness: :attr:`~AMIConnection.booted` turns true when Asterisk says
  ``FullyBooted`` on this login (it does, right after the login, to a user
  that reads ``system`` and logged in with events of that class on:
  ``events="system"``; or later, once it has finished starting).
  :attr:`~AMIConnection.shutting_down` turns true when Asterisk answers an
  action (or a login) with ``Asterisk is shutting down``, as it does for every
  action once a graceful stop has begun, or sends ``Shutdown``; it turns
  false again on the next successful answer (the stop was called off) or
  login. A login refused that way is retried with backoff, not given up.
* Subscribers also get :class:`ConnectionStateChanged` notices: ``up=True``
  with a new ``generation`` after each login, ``up=False`` when a connection
  drops; events between the two of a generation arrived on one TCP connection
  without a gap. When the connection is finished for good (closing, retries
  off, login refused) every subscriber's channel is closed.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import random
import secrets
import ssl
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Iterable

import trio

from dialer.ami.codec.errors import LocalProtocolError, RemoteProtocolError
from dialer.ami.codec.message import Banner, Message
from dialer.ami.codec.parser import CLOSED, NEED_DATA, AMIParser
from dialer.ami.codec.serialize import encode_action
from dialer.ami.errors import (
    SHUTTING_DOWN,
    ActionTimeout,
    AMIActionError,
    AMIError,
    AuthenticationError,
    ConnectError,
    ConnectionLost,
    NotConnected,
    PermissionDenied,
)

__all__ = [
    "open_ami",
    "AMIConnection",
    "ConnectionStateChanged",
    "AMIStatistics",
    "next_action_id",
]

log = logging.getLogger("dialer.ami")

# ActionIDs are unique across every connection of this process, and across
# processes too: the prefix is random per process (an engine restarted after
# a crash must not reuse the ActionIDs of the Originates it sent before).
_ACTION_ID_PREFIX = secrets.token_hex(4)
_action_ids = itertools.count(1)


def next_action_id() -> str:
    """A new process-wide unique ActionID."""
    return f"{_ACTION_ID_PREFIX}-{next(_action_ids)}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionStateChanged:
    """Put in subscribers' channels when a connection comes up or goes down."""

    up: bool
    generation: int
    reason: str | None = None


@dataclass(kw_only=True, slots=True)
class AMIStatistics:
    """Counters since ``open_ami``; :meth:`AMIConnection.statistics` returns a copy."""

    connected: bool = False
    generation: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    events_in: int = 0
    responses_in: int = 0
    unmatched_responses: int = 0
    unexpected_messages: int = 0
    events_delivered: int = 0
    backpressure_waits: int = 0
    backpressure_seconds: float = 0.0
    actions_sent: int = 0
    action_errors: int = 0
    action_timeouts: int = 0
    actions_lost: int = 0
    pings_sent: int = 0
    ping_failures: int = 0
    connects: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    disconnects: int = 0
    pending_actions: int = 0
    subscribers: int = 0
    last_error: str | None = None


class _Drop(Exception):
    """Ends one TCP connection (the logical connection may reconnect)."""


class _Pending:
    __slots__ = ("name", "event", "response", "error", "items", "is_list", "done_list")

    def __init__(self, name: str, is_list: bool) -> None:
        self.name = name
        self.event = trio.Event()
        self.response: Message | None = None
        self.error: BaseException | None = None
        self.items: list[Message] = []
        self.is_list = is_list
        self.done_list = False


class _Subscriber:
    __slots__ = ("send", "names", "batches")

    def __init__(
        self, send: trio.MemorySendChannel, names: frozenset[str] | None, batches: bool = False
    ) -> None:
        self.send = send
        self.names = names
        self.batches = batches


_DROP_ERRORS = (
    _Drop,
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    RemoteProtocolError,
    ssl.SSLError,
)


def _describe_os_error(exc: OSError) -> str:
    """One line for a failed connect; trio groups the per-address errors as the cause."""
    causes = getattr(exc.__cause__, "exceptions", None) or [exc]
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
    first = causes[0]
    if isinstance(first, OSError) and first.strerror:
        return first.strerror.lower() if first is not exc else first.strerror
    return str(first)


def _describe_tls_error(exc: ssl.SSLError) -> str:
    """One line for a failed handshake; for a certificate that does not
    verify, why (an unknown CA, a name it does not carry) and what to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = (exc.verify_message or "").rstrip(".") or str(exc.reason)
        return (f"certificate verify failed: {why} (check ca_file and server_hostname)")
    return str(exc.reason or exc)


class AMIConnection:
    """One logical AMI connection; build it with :func:`open_ami`."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str,
        secret: str,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
        name: str,
        events: bool | str,
        connect_timeout: float,
        login_timeout: float,
        action_timeout: float,
        ping_interval: float | None,
        ping_timeout: float,
        reconnect: bool,
        backoff_initial: float,
        backoff_max: float,
        md5: bool,
        max_message_size: int,
        rng: random.Random | None,
        logoff_timeout: float = 2.0,
    ) -> None:
        self.host = host
        self.port = port
        self.name = name
        self.username = username
        self._secret = secret
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.events = events
        self.connect_timeout = connect_timeout
        self.login_timeout = login_timeout
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.md5 = md5
        self.max_message_size = max_message_size
        self.logoff_timeout = logoff_timeout
        self._rng = rng or random.Random()
        self.banner: Banner | None = None

        self._stats = AMIStatistics()
        self._write_lock = trio.StrictFIFOLock()
        self._pending: dict[str, _Pending] = {}
        # The list actions among them: only their ActionIDs are looked for in events.
        self._pending_lists: dict[str, _Pending] = {}
        self._subscribers: list[_Subscriber] = []
        self._batch_subscribers: list[_Subscriber] = []
        self._stream: trio.abc.Stream | None = None
        self._connected = False
        self._generation = 0
        self._state_event = trio.Event()
        self._fatal: BaseException | None = None
        self._finished = False
        self._closing = False
        self._conn_scope: trio.CancelScope | None = None
        self._drop_reason: str | None = None
        self._initial: tuple | None = None
        self._last_rx = 0.0
        self._delivering = False
        self.booted = False
        self.shutting_down = False
        self.connected_since = 0.0
        #: trio time of the last response to an action (of the login, at first)
        self.last_response_at = 0.0

    def __repr__(self) -> str:
        return (
            f"<AMIConnection {self.name} {self.host}:{self.port} user={self.username}"
            f" connected={self._connected} generation={self._generation}>"
        )

    @property
    def where(self) -> str:
        return f"AMI server {self.name} ({self.host}:{self.port})"

    # -- public state -------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def generation(self) -> int:
        """Counts logins: 1 after the first, +1 after each reconnect."""
        return self._generation

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until logged in; raises the login error if retries stopped, NotConnected on timeout."""
        deadline = math.inf if timeout is None else trio.current_time() + timeout
        with trio.move_on_at(deadline):
            while not self._connected:
                if self._fatal is not None:
                    raise self._fatal
                if self._finished:
                    raise NotConnected(f"{self.where}: connection closed")
                await self._state_event.wait()
            return
        raise NotConnected(f"{self.where}: not connected after {timeout} s")

    def statistics(self) -> AMIStatistics:
        stats = AMIStatistics(**{f: getattr(self._stats, f) for f in AMIStatistics.__slots__})
        stats.connected = self._connected
        stats.generation = self._generation
        stats.pending_actions = len(self._pending)
        stats.subscribers = len(self._subscribers)
        return stats

    # -- actions ------------------------------------------------------------------

    async def action(
        self,
        name: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        action_id: str | None = None,
        timeout: float | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> Message:
        """Send an action and return its response.

        ``on_sent`` is called once the action's bytes have been written to
        the connection (not at all when they were not).

        Raises :class:`AMIActionError` (:class:`PermissionDenied` for
        ``Permission denied``) on ``Response: Error``; :class:`NotConnected`,
        :class:`ConnectionLost`, :class:`ActionTimeout` as described in
        :mod:`dialer.ami.errors`; :class:`~dialer.ami.codec.errors.LocalProtocolError`
        for a header that cannot be sent (nothing is sent then).
        """
        pending = await self._send(name, headers, action_id, timeout, is_list=False, on_sent=on_sent)
        response = pending.response
        assert response is not None
        return response

    async def list_action(
        self,
        name: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        action_id: str | None = None,
        timeout: float | None = None,
    ) -> tuple[Message, list[Message]]:
        """Send a list action (Status, CoreShowChannels, QueueStatus, ...).

        Returns the response and the events that carried its ActionID, up to
        (not including) the one with ``EventList: Complete``. A response
        without ``EventList: start`` returns an empty list. The deadline
        covers the whole list.
        """
        pending = await self._send(name, headers, action_id, timeout, is_list=True)
        assert pending.response is not None
        return pending.response, pending.items

    async def _send(
        self,
        name: str,
        headers: Iterable[tuple[str, str]],
        action_id: str | None,
        timeout: float | None,
        *,
        is_list: bool,
        on_sent: Callable[[], None] | None = None,
    ) -> _Pending:
        if not self._connected:
            raise NotConnected(f"{self.where}: not connected; {name} not sent")
        aid = action_id if action_id is not None else next_action_id()
        if aid in self._pending:
            raise LocalProtocolError(f"ActionID {aid!r} is already in flight on {self.name}")
        data = encode_action(name, headers, aid)
        timeout = self.action_timeout if timeout is None else timeout
        pending = _Pending(name, is_list)
        generation = self._generation
        self._pending[aid] = pending
        if is_list:
            self._pending_lists[aid] = pending
        sent = False
        try:
            with trio.fail_after(timeout):
                async with self._write_lock:
                    if not self._connected or self._generation != generation:
                        raise NotConnected(f"{self.where}: connection dropped; {name} not sent")
                    stream = self._stream
                    assert stream is not None
                    try:
                        await stream.send_all(data)
                        sent = True
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                        self._kill(f"send failed: {exc!r}")
                        raise ConnectionLost(
                            f"{self.where}: connection lost while sending {name} (ActionID {aid})"
                        ) from exc
                    finally:
                        if not sent:
                            # A send cut short leaves the stream in an unknown state.
                            self._kill("send interrupted")
                    self._stats.actions_sent += 1
                    self._stats.bytes_out += len(data)
                    if on_sent is not None:
                        on_sent()
                await pending.event.wait()
        except trio.TooSlowError:
            self._stats.action_timeouts += 1
            if not sent:
                raise ActionTimeout(
                    f"{self.where}: {name} (ActionID {aid}) not sent within {timeout} s",
                    sent=False,
                ) from None
            raise ActionTimeout(
                f"{self.where}: no answer to {name} (ActionID {aid}) within {timeout} s",
                sent=True,
            ) from None
        finally:
            if self._pending.get(aid) is pending:
                del self._pending[aid]
            if is_list and self._pending_lists.get(aid) is pending:
                del self._pending_lists[aid]
        if pending.error is not None:
            raise pending.error
        response = pending.response
        assert response is not None
        if (response.name or "").lower() == "error":
            self._stats.action_errors += 1
            reason = response.get("Message") or "error"
            cls = PermissionDenied if reason.lower() == "permission denied" else AMIActionError
            raise cls(f"{self.where}: {name} refused: {reason}", action=name, response=response)
        return pending

    # -- events ---------------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(
        self, max_buffer: int = 1000, *, names: Iterable[str] | None = None,
        batches: bool = False,
    ) -> AsyncIterator[trio.MemoryReceiveChannel]:
        """Receive events (and :class:`ConnectionStateChanged` notices) in a bounded channel.

        ``names`` keeps only events with those names. When the channel is
        full the reader waits (backpressure; see the module docstring). If
        the connection is up, the first item is ``ConnectionStateChanged(up=True)``
        with the current generation.

        ``batches=True``: each item is a list of the events (in order, never
        empty) that one read from the socket brought, or a notice; ``max_buffer``
        then counts lists. For a consumer that handles events by the
        thousand (``dialer ami events``): one channel hand-off per read
        instead of one per event.

        Each ``await receive()`` is a trio checkpoint (a pass through the
        scheduler). A consumer that must keep up with a flood should, after
        each ``await receive()``, take what is already buffered with
        ``receive_nowait()`` until it raises ``trio.WouldBlock``: that costs
        a few microseconds per event instead of one scheduler pass each.
        """
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        send, receive = trio.open_memory_channel(max_buffer)
        sub = _Subscriber(send, frozenset(names) if names is not None else None, batches)
        subscribers = self._batch_subscribers if batches else self._subscribers
        if self._connected:
            send.send_nowait(ConnectionStateChanged(up=True, generation=self._generation))
        if self._finished:
            send.close()
        else:
            subscribers.append(sub)
        try:
            async with receive:
                yield receive
        finally:
            if sub in subscribers:
                subscribers.remove(sub)
            send.close()

    async def _publish(self, item: Message | ConnectionStateChanged) -> None:
        blocked = self._offer(item)
        if blocked:
            await self._wait_send(blocked, item)
        if self._batch_subscribers:
            if isinstance(item, Message):
                await self._offer_batch([item])
            else:
                await self._offer_batch(item)

    async def _offer_batch(self, batch: list[Message] | ConnectionStateChanged) -> None:
        """Hand a list of events (or a notice) to every batch subscriber, with backpressure."""
        is_notice = isinstance(batch, ConnectionStateChanged)
        first = True
        for sub in list(self._batch_subscribers):
            if is_notice:
                item = batch
            elif sub.names is not None:
                names = sub.names
                item = [e for e in batch if e.name in names]  # type: ignore[union-attr]
                if not item:
                    continue
            else:
                item = batch if first else list(batch)  # type: ignore[arg-type]
                first = False
            try:
                await self._send_or_wait(sub, item)
                if not is_notice:
                    self._stats.events_delivered += len(item)  # type: ignore[arg-type]
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                if sub in self._batch_subscribers:
                    self._batch_subscribers.remove(sub)

    async def _send_or_wait(self, sub: _Subscriber, item: Any) -> None:
        """Send ``item`` to ``sub``; when its channel is full, wait for room
        (backpressure), counted in the connection's stats."""
        try:
            sub.send.send_nowait(item)
        except trio.WouldBlock:
            self._stats.backpressure_waits += 1
            started = trio.current_time()
            self._delivering = True
            try:
                await sub.send.send(item)
            finally:
                self._delivering = False
                self._stats.backpressure_seconds += trio.current_time() - started

    def _offer(self, item: Message | ConnectionStateChanged) -> list[_Subscriber] | None:
        """Put the item in every interested subscriber's channel that has room.

        Returns the subscribers whose channel was full (None if there were none).
        """
        is_event = isinstance(item, Message)
        blocked = None
        for sub in self._subscribers:
            if is_event and sub.names is not None and item.name not in sub.names:  # type: ignore[union-attr]
                continue
            try:
                sub.send.send_nowait(item)
                if is_event:
                    self._stats.events_delivered += 1
            except trio.WouldBlock:
                if blocked is None:
                    blocked = []
                blocked.append(sub)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                if blocked is None:
                    blocked = []
                blocked.append(sub)  # removed in _wait_send
        return blocked

    async def _wait_send(
        self, blocked: list[_Subscriber], item: Message | ConnectionStateChanged
    ) -> None:
        """Backpressure: wait until each full subscriber has room for the item."""
        for sub in blocked:
            try:
                await self._send_or_wait(sub, item)
                if isinstance(item, Message):
                    self._stats.events_delivered += 1
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                if sub in self._subscribers:
                    self._subscribers.remove(sub)

    def _close_subscribers(self) -> None:
        for sub in self._subscribers + self._batch_subscribers:
            sub.send.close()
        self._subscribers.clear()
        self._batch_subscribers.clear()

    # -- connection management -------------------------------------------------------

    def _set_state(self) -> None:
        self._state_event.set()
        self._state_event = trio.Event()

    def _kill(self, reason: str) -> None:
        """Drop the current TCP connection (from any task)."""
        if self._conn_scope is not None and self._drop_reason is None:
            self._drop_reason = reason
            self._conn_scope.cancel()

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_initial * (2 ** min(attempt, 30)))
        return delay * self._rng.uniform(0.5, 1.0)

    async def _open_stream(self) -> trio.abc.Stream:
        try:
            with trio.fail_after(self.connect_timeout):
                tcp = await trio.open_tcp_stream(self.host, self.port)
                if self.ssl_context is None:
                    return tcp
                stream = trio.SSLStream(
                    tcp,
                    self.ssl_context,
                    server_hostname=self.server_hostname or self.host,
                    https_compatible=False,
                )
                try:
                    await stream.do_handshake()
                except BaseException:
                    await trio.aclose_forcefully(tcp)
                    raise
                return stream
        except trio.TooSlowError:
            raise ConnectError(
                f"{self.where}: no connection within {self.connect_timeout} s"
            ) from None
        except ssl.SSLError as exc:
            raise ConnectError(f"{self.where}: TLS handshake failed: {_describe_tls_error(exc)}") from None
        except trio.BrokenResourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                raise ConnectError(
                    f"{self.where}: TLS handshake failed: {_describe_tls_error(cause)}"
                ) from None
            raise ConnectError(f"{self.where}: connection closed during TLS handshake") from None
        except OSError as exc:
            raise ConnectError(f"{self.where}: {_describe_os_error(exc)}") from None

    async def _connect_and_login(self) -> tuple[trio.abc.Stream, AMIParser, list[Message]]:
        """Connect, read the banner, log in. Returns the stream, parser and early messages."""
        stream = await self._open_stream()
        parser = AMIParser(max_message_size=self.max_message_size)
        early: list[Message] = []
        ok = False
        try:
            with trio.fail_after(self.login_timeout):
                first = await self._read_one(stream, parser, early, None)
                if not isinstance(first, Banner):  # pragma: no cover - parser guarantees it
                    raise ConnectError(f"{self.where}: no AMI banner")
                self.banner = first
                if self.md5:
                    challenge_id = next_action_id()
                    await self._raw_send(
                        stream,
                        encode_action("Challenge", [("AuthType", "MD5")], challenge_id),
                    )
                    reply = await self._read_one(stream, parser, early, challenge_id)
                    if (reply.name or "").lower() != "success" or not reply.get("Challenge"):
                        raise AuthenticationError(
                            f"{self.where}: MD5 challenge refused: "
                            f"{reply.get('Message') or reply.name}"
                        )
                    key = hashlib.md5(
                        (reply["Challenge"] + self._secret).encode("utf-8")
                    ).hexdigest()
                    credentials = [("AuthType", "MD5"), ("Username", self.username), ("Key", key)]
                else:
                    credentials = [("Username", self.username), ("Secret", self._secret)]
                if isinstance(self.events, str):
                    credentials.append(("Events", self.events))
                elif not self.events:
                    credentials.append(("Events", "off"))
                login_id = next_action_id()
                try:
                    login = encode_action("Login", credentials, login_id)
                except LocalProtocolError as exc:
                    # The message names the field, never its value.
                    raise AuthenticationError(f"{self.where}: cannot send login: {exc}") from None
                await self._raw_send(stream, login)
                reply = await self._read_one(stream, parser, early, login_id)
                if (reply.name or "").lower() != "success":
                    reason = reply.get("Message") or reply.name or "refused"
                    if reason == SHUTTING_DOWN:
                        # Not the user's to fix: Asterisk is stopping; try again later.
                        raise ConnectError(f"{self.where}: login refused: {reason}")
                    raise AuthenticationError(
                        f"{self.where}: login as {self.username!r} failed: {reason}"
                    )
            ok = True
            return stream, parser, early
        except trio.TooSlowError:
            raise ConnectError(
                f"{self.where}: no AMI banner or login answer within {self.login_timeout} s"
            ) from None
        except RemoteProtocolError as exc:
            raise ConnectError(f"{self.where}: not an AMI server? {exc}") from None
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ConnectError(f"{self.where}: connection lost during login ({exc!r})") from None
        finally:
            if not ok:
                await trio.aclose_forcefully(stream)

    async def _raw_send(self, stream: trio.abc.Stream, data: bytes) -> None:
        await stream.send_all(data)
        self._stats.bytes_out += len(data)

    async def _read_one(
        self,
        stream: trio.abc.Stream,
        parser: AMIParser,
        early: list[Message],
        action_id: str | None,
    ) -> Message | Banner:
        """Read until the banner (action_id None) or the response with this ActionID."""
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                data = await stream.receive_some(65536)
                self._stats.bytes_in += len(data)
                parser.receive_data(data)
                continue
            if event is CLOSED:
                raise ConnectError(f"{self.where}: connection closed by the server during login")
            if action_id is None:
                return event  # type: ignore[return-value]
            assert isinstance(event, Message)
            if event.kind == "response" and event.action_id == action_id:
                return event
            early.append(event)

    async def _supervise(self) -> None:
        """Owns the TCP connections: serve one, reconnect with backoff, repeat."""
        attempt = 0
        try:
            while True:
                announce = True
                if self._initial is not None:
                    # Served even when closing already: it carries the Logoff.
                    conn, self._initial = self._initial, None
                    announce = False
                elif self._closing:
                    return
                else:
                    try:
                        conn = await self._connect_and_login()
                    except AuthenticationError as exc:
                        self._stats.last_error = str(exc)
                        self._stats.connect_failures += 1
                        self._fatal = exc
                        log.error("%s", exc)
                        return
                    except ConnectError as exc:
                        self._stats.last_error = str(exc)
                        self._stats.connect_failures += 1
                        delay = self._backoff(attempt)
                        attempt += 1
                        log.warning("%s; retrying in %.1f s", exc, delay)
                        await trio.sleep(delay)
                        continue
                    if self._stats.connects:
                        self._stats.reconnects += 1
                attempt = 0
                self._stats.connects += 1
                await self._serve(*conn, announce=announce)
                if self._closing:
                    return
                if not self.reconnect:
                    self._stats.last_error = self._stats.last_error or "connection closed"
                    return
                await trio.sleep(self._backoff(0))
        finally:
            self._finished = True
            self._connected = False
            self._set_state()
            self._close_subscribers()

    def _activate(self, stream: trio.abc.Stream) -> None:
        """Mark a freshly logged-in connection as the current one (no checkpoint)."""
        self._generation += 1
        self._stream = stream
        self._drop_reason = None
        self._last_rx = trio.current_time()
        self.connected_since = self._last_rx
        self.last_response_at = self._last_rx
        self.booted = False
        self.shutting_down = False
        self._connected = True
        self._set_state()
        log.info(
            "%s: logged in as %s (generation %d)", self.where, self.username, self._generation
        )

    async def _serve(
        self, stream: trio.abc.Stream, parser: AMIParser, early: list[Message],
        *, announce: bool = True,
    ) -> None:
        if self._stream is not stream:
            self._activate(stream)
        generation = self._generation
        reason = "connection closed"
        try:
            if announce:
                # (The first connection's subscribers got this notice from subscribe().)
                await self._publish(ConnectionStateChanged(up=True, generation=generation))
            with trio.CancelScope() as scope:
                self._conn_scope = scope
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._reader, stream, parser, early)
                        if self.ping_interval:
                            nursery.start_soon(self._pinger)
                except* _DROP_ERRORS as group:
                    reason = "; ".join(str(e) or type(e).__name__ for e in group.exceptions)
            if scope.cancelled_caught and self._drop_reason:
                reason = self._drop_reason
        finally:
            self._conn_scope = None
            self._connected = False
            self._stream = None
            self._set_state()
            lost = list(self._pending.items())
            self._pending.clear()
            self._pending_lists.clear()
            for aid, pending in lost:
                self._stats.actions_lost += 1
                pending.error = ConnectionLost(
                    f"{self.where}: connection lost with {pending.name} in flight"
                    f" (ActionID {aid}); not resent"
                )
                pending.event.set()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
        if not self._closing:
            self._stats.disconnects += 1
            self._stats.last_error = reason
            log.warning("%s: disconnected: %s", self.where, reason)
            await self._publish(
                ConnectionStateChanged(up=False, generation=generation, reason=reason)
            )

    async def _reader(self, stream: trio.abc.Stream, parser: AMIParser, early: list[Message]) -> None:
        for message in early:
            if self._dispatch(message):
                await self._publish(message)
        stats = self._stats
        next_events = parser.next_events
        dispatch = self._dispatch
        offer = self._offer
        while True:
            events = next_events()
            if not events:
                if parser.closed:
                    raise _Drop("connection closed by the server")
                data = await stream.receive_some(65536)
                self._last_rx = trio.current_time()
                stats.bytes_in += len(data)
                parser.receive_data(data)
                continue
            if self._batch_subscribers:
                events = list(filter(dispatch, events))  # type: ignore[arg-type]
                if self._subscribers:
                    for event in events:
                        blocked = offer(event)  # type: ignore[arg-type]
                        if blocked:
                            await self._wait_send(blocked, event)  # type: ignore[arg-type]
                if events:
                    await self._offer_batch(events)  # type: ignore[arg-type]
                continue
            for event in events:
                if dispatch(event):  # type: ignore[arg-type]
                    blocked = offer(event)  # type: ignore[arg-type]
                    if blocked:
                        await self._wait_send(blocked, event)  # type: ignore[arg-type]

    def _dispatch(self, message: Message) -> bool:
        """Account for one message and hand responses to their actions.

        Returns True for an event to publish to subscribers.
        """
        stats = self._stats
        stats.messages_in += 1
        kind = message.kind
        if kind == "event":
            stats.events_in += 1
            name = message.name
            if name == "FullyBooted":
                self.booted = True
            elif name == "Shutdown":
                self.shutting_down = True
            if self._pending_lists:
                # (Not for every event: finding its ActionID costs a header search.)
                aid = message.action_id
                pending = self._pending_lists.get(aid) if aid is not None else None
                if pending is not None and not pending.done_list:
                    if (message.get("EventList") or "").lower() == "complete":
                        pending.done_list = True
                        if pending.response is not None:
                            pending.event.set()
                    else:
                        pending.items.append(message)
                    return False
            return True
        if kind == "response":
            stats.responses_in += 1
            self.last_response_at = trio.current_time()
            aid = message.action_id
            pending = self._pending.get(aid) if aid is not None else None
            if pending is None or pending.response is not None:
                stats.unmatched_responses += 1
                log.debug("%s: response matches no pending action: %r", self.where, message)
                return False
            pending.response = message
            if (message.name or "").lower() == "error":
                if message.get("Message") == SHUTTING_DOWN:
                    if not self.shutting_down:
                        log.warning("%s: Asterisk is shutting down", self.where)
                    self.shutting_down = True
            elif self.shutting_down:
                log.info("%s: Asterisk answers again (its stop was called off)", self.where)
                self.shutting_down = False
            if (
                not pending.is_list
                or pending.done_list
                or (message.name or "").lower() == "error"
                or (message.get("EventList") or "").lower() != "start"
            ):
                pending.event.set()
            return False
        stats.unexpected_messages += 1
        log.warning("%s: unexpected %s message skipped: %r", self.where, kind, message)
        return False

    async def _pinger(self) -> None:
        assert self.ping_interval
        while True:
            await trio.sleep(self.ping_interval)
            sent_at = trio.current_time()
            self._stats.pings_sent += 1
            try:
                await self.action("Ping", timeout=self.ping_timeout)
            except ActionTimeout:
                if self._delivering or self._last_rx > sent_at:
                    continue  # the peer is alive; we are the slow side
                self._stats.ping_failures += 1
                self._connected = False  # no new action goes to a dead peer
                raise _Drop(f"no answer to Ping within {self.ping_timeout} s") from None
            except (NotConnected, ConnectionLost):
                return
            except AMIActionError:
                pass  # Refused, but answered: the peer is alive.

    async def _shutdown(self) -> None:
        """Log off (best effort, bounded) and stop."""
        self._closing = True
        if self._connected and self._stream is not None:
            if self.logoff_timeout > 0:
                with trio.move_on_after(min(self.logoff_timeout, self.action_timeout)):
                    try:
                        await self.action("Logoff")
                    except (AMIError, LocalProtocolError):
                        pass
            else:
                # Say goodbye without reading through what is still queued for us.
                with trio.move_on_after(1.0):
                    try:
                        async with self._write_lock:
                            await self._raw_send(
                                self._stream, encode_action("Logoff", (), next_action_id())
                            )
                    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
        if self._conn_scope is not None:
            self._conn_scope.cancel()


@asynccontextmanager
async def open_ami(
    host: str,
    port: int = 5038,
    *,
    username: str,
    secret: str,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    name: str = "ami",
    events: bool | str = True,
    connect_timeout: float = 10,
    login_timeout: float = 10,
    action_timeout: float = 10,
    ping_interval: float | None = 20,
    ping_timeout: float = 5,
    reconnect: bool = True,
    backoff_initial: float = 0.5,
    backoff_max: float = 30,
    md5: bool = False,
    require_initial: bool = True,
    max_message_size: int = 1 << 20,
    rng: random.Random | None = None,
    logoff_timeout: float = 2.0,
) -> AsyncIterator[AMIConnection]:
    """Connect, log in, and keep one logical AMI connection up until the block exits.

    ``events=False`` logs in with ``Events: off`` (responses only), a string
    such as ``"system"`` with that event mask. ``md5``
    uses the challenge login. ``ping_interval=None`` disables keepalive.
    ``rng`` seeds the backoff jitter (tests). When the block ends the client
    sends ``Logoff`` and waits up to ``logoff_timeout`` seconds for its answer
    (reading what comes before it); 0 sends it and closes at once, for a
    reader that leaves a flood of events. See the module docstring.

    Errors raised inside the block come out wrapped in an ExceptionGroup
    (the block runs inside the connection's nursery).
    """
    ami = AMIConnection(
        host, port, username=username, secret=secret, ssl_context=ssl_context,
        server_hostname=server_hostname, name=name, events=events,
        connect_timeout=connect_timeout, login_timeout=login_timeout,
        action_timeout=action_timeout, ping_interval=ping_interval,
        ping_timeout=ping_timeout, reconnect=reconnect, backoff_initial=backoff_initial,
        backoff_max=backoff_max, md5=md5, max_message_size=max_message_size, rng=rng,
        logoff_timeout=logoff_timeout,
    )
    if require_initial:
        try:
            ami._initial = await ami._connect_and_login()
        except (ConnectError, AuthenticationError) as exc:
            ami._stats.connect_failures += 1
            ami._stats.last_error = str(exc)
            raise
        # Connected before the block starts and before the reader runs, so a
        # subscription made first thing in the block sees every event.
        ami._activate(ami._initial[0])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ami._supervise)
        try:
            yield ami
        finally:
            with trio.CancelScope(shield=True):
                with trio.move_on_after(5):
                    await ami._shutdown()
            nursery.cancel_scope.cancel()


# Re-exported for callers that only import this module.
__all__ += [
    "AMIError", "AMIActionError", "ActionTimeout", "AuthenticationError", "ConnectError",
    "ConnectionLost", "NotConnected", "PermissionDenied",
]
