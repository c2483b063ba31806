"""The operator's one-liners over AMI, callable from Python as from ``dialer ami``.

:func:`ping`, :func:`command`, :func:`watch_events` and :func:`originate` each
open one connection to an ``[[ami]]`` server of the configuration, do one job
and close it; :func:`run` runs one of them under trio and turns every AMI or
user error into one :class:`~dialer.errors.UserError` line. Nothing here
imports the database layer, so ``dialer ami`` starts in the time trio takes.

:func:`watch_events` reads events in batches (one list per socket read, see
``AMIConnection.subscribe(batches=True)``) and hands each batch to a
callback, so counting or printing a flood of events costs no channel hand-off
and no write per event.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable
from itertools import chain
from dataclasses import dataclass
from typing import Any

import trio

from dialer.ami.codec.errors import LocalProtocolError
from dialer.ami.codec.message import Message
from dialer.ami.connection import ConnectionStateChanged, next_action_id, open_ami
from dialer.ami.errors import AMIError
from dialer.config import AMIServerConfig
from dialer.errors import UserError

__all__ = [
    "ORIGINATE_REASONS", "EventFilter", "OriginateResult", "command", "event_dict",
    "originate", "ping", "run", "watch_events",
]

ORIGINATE_REASONS = {
    "0": "failed", "1": "hung up", "3": "no answer", "4": "answered", "5": "busy",
    "8": "congestion",
}


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``main`` under trio; AMI and user errors become one UserError line."""
    try:
        return trio.run(main)
    except* LocalProtocolError as group:
        raise UserError("; ".join(str(e) for e in group.exceptions)) from None
    except* (AMIError, UserError) as group:
        raise UserError("; ".join(dict.fromkeys(str(e) for e in _leaves(group)))) from None
    except* BrokenPipeError:
        raise BrokenPipeError from None


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out


def _connect(server: AMIServerConfig, *, events: bool, timeout: float, **kw: Any):
    return open_ami(
        **server.open_kwargs(), events=events, connect_timeout=timeout, login_timeout=timeout,
        action_timeout=timeout, **kw,
    )


async def _until_interrupted(scope: trio.CancelScope) -> None:
    """Cancel ``scope`` on Ctrl-C (or SIGTERM), so a summary can still be given."""
    if threading.current_thread() is not threading.main_thread():
        return
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


# -- ping, command ---------------------------------------------------------------------


async def ping(server: AMIServerConfig, *, timeout: float = 10.0) -> str:
    """Log in, send Ping; one line with the answer, the round trip and the banner."""
    async with _connect(server, events=False, timeout=timeout, ping_interval=None) as ami:
        start = trio.current_time()
        reply = await ami.action("Ping")
        elapsed = (trio.current_time() - start) * 1000
        banner = ami.banner.line if ami.banner else "?"
    return (f"{server.name} ({server.host}:{server.port}): {reply.get('Ping') or reply.name}"
            f" in {elapsed:.1f} ms ({banner})")


async def command(server: AMIServerConfig, cli_command: str, *, timeout: float = 10.0) -> list[str]:
    """The output lines of an Asterisk CLI command."""
    async with _connect(server, events=False, timeout=timeout, ping_interval=None) as ami:
        reply = await ami.action("Command", [("Command", cli_command)])
    return reply.output


# -- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    """Which events to keep: by name, and by header values (``KEY=VALUE`` pairs).

    Values given for one key are alternatives; different keys must all match.
    """

    names: frozenset[str] | None
    headers: tuple[tuple[str, frozenset[str]], ...]

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> "EventFilter":
        wanted: dict[str, set[str]] = {}
        for key, value in pairs:
            wanted.setdefault(key.lower(), set()).add(value)
        names = wanted.pop("event", None)
        return cls(frozenset(names) if names else None,
                   tuple((k, frozenset(v)) for k, v in wanted.items()))

    def keep(self, batch: list[Message]) -> list[Message]:
        if not self.headers:
            return batch
        headers = self.headers
        return [m for m in batch if all(m.get(k) in values for k, values in headers)]


async def watch_events(
    server: AMIServerConfig,
    on_batch: Callable[[list[Message]], None],
    *,
    filter: EventFilter | None = None,
    count: int | None = None,
    duration: float | None = None,
    on_notice: Callable[[ConnectionStateChanged], None] | None = None,
    interruptible: bool = True,
) -> tuple[int, float]:
    """Hand the server's events to ``on_batch``, a list at a time, until ``count``
    events, ``duration`` seconds or (``interruptible``) SIGINT/SIGTERM.

    Returns (events handed over, seconds since the login).
    """
    keep = filter.keep if filter is not None and filter.headers else None
    names = filter.names if filter is not None else None
    total = 0
    async with _connect(server, events=True, timeout=10.0, logoff_timeout=0) as ami:
        start = trio.current_time()
        with trio.CancelScope() as scope:
            if duration:
                scope.deadline = start + duration
            async with trio.open_nursery() as nursery:
                if interruptible:
                    nursery.start_soon(_until_interrupted, nursery.cancel_scope)
                async with ami.subscribe(max_buffer=64, names=names, batches=True) as channel:
                    async for batch in channel:
                        if type(batch) is not list:
                            if on_notice is not None:
                                on_notice(batch)
                            continue
                        if keep is not None:
                            batch = keep(batch)
                        if count is not None and total + len(batch) >= count:
                            batch = batch[: count - total]
                            total = count
                            on_batch(batch)
                            break
                        total += len(batch)
                        on_batch(batch)
                nursery.cancel_scope.cancel()
        elapsed = max(trio.current_time() - start, 1e-9)
    return total, elapsed


def event_dict(message: Message) -> dict[str, str | list[str]]:
    """An event as one JSON object: headers in order; a repeated key's values as a list."""
    items = message.items()
    out: dict[str, Any] = dict(items)
    if len(out) == len(items):
        return out
    out = {}
    for key, value in items:
        had = out.get(key)
        if had is None:
            out[key] = value
        elif type(had) is list:
            had.append(value)
        else:
            out[key] = [had, value]
    return out


def blocks_bytes(batch: list[Message]) -> bytes:
    """Events as AMI wrote them (``Key: Value`` lines, an empty line after each),
    byte for byte but for newlines as line ends."""
    raw = b"\r\n\r\n".join([m.raw for m in batch]) + b"\r\n\r\n"  # type: ignore[misc]
    return raw.replace(b"\r\n", b"\n")


def blocks_text(batch: list[Message]) -> str:
    """:func:`blocks_bytes` as text; bytes that are not UTF-8 shown as U+FFFD."""
    return blocks_bytes(batch).decode("utf-8", "replace")


def jsonl_text(batch: list[Message]) -> str:
    """Events as JSON lines (see :func:`event_dict`), ASCII: anything else escaped."""
    quote = _quote
    lines = []
    for message in batch:
        items = message.items()
        if len(dict(items)) == len(items):
            # No repeated key: the object is written from the quoted strings, in C.
            it = map(quote, chain.from_iterable(items))
            lines.append("{" + ",".join(map(":".join, zip(it, it))) + "}\n")
        else:
            lines.append(_ENCODER.encode(event_dict(message)) + "\n")
    return "".join(lines)


_quote = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
_ENCODER = json.JSONEncoder(separators=(",", ":"))


# -- originate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OriginateResult:
    action_id: str
    reply: Message | None = None         # the Originate's response (without waiting)
    response: Message | None = None      # the OriginateResponse event (waiting)

    @property
    def answered(self) -> bool:
        return self.response is not None and (self.response.get("Response") or "").lower() == "success"


async def originate(
    server: AMIServerConfig, headers: list[tuple[str, str]], *, wait: bool, timeout: float,
) -> OriginateResult:
    """Send one asynchronous Originate; with ``wait``, also wait ``timeout`` + 30 s
    for its OriginateResponse (a UserError if none comes)."""
    action_id = next_action_id()
    async with _connect(server, events=wait, timeout=10.0) as ami:
        if not wait:
            reply = await ami.action("Originate", headers, action_id=action_id)
            return OriginateResult(action_id, reply=reply)
        async with ami.subscribe(names={"OriginateResponse"}) as channel:
            await ami.action("Originate", headers, action_id=action_id)
            with trio.move_on_after(timeout + 30):
                async for item in channel:
                    if isinstance(item, Message) and item.action_id == action_id:
                        return OriginateResult(action_id, response=item)
    raise UserError(
        f"{server.name}: no OriginateResponse for ActionID {action_id} within {timeout + 30:g} s"
    )
