"""``dialer ami``: the one-liners people otherwise type into ``nc``.

``ping``, ``command``, ``events`` and ``originate`` against one ``[[ami]]``
server of the configuration file (``--server NAME``, default the first).
Every failure (missing config, refused connection, wrong secret, permission
denied, timeout) is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import math
import signal
import threading
from collections import Counter
from typing import Any, Awaitable, Callable, TextIO

import trio

from dialer.ami.codec import LocalProtocolError, Message
from dialer.ami.connection import ConnectionStateChanged, next_action_id, open_ami
from dialer.ami.errors import AMIError
from dialer.config import AMIServerConfig, load_config
from dialer.errors import UserError

ORIGINATE_REASONS = {
    "0": "failed", "1": "hung up", "3": "no answer", "4": "answered", "5": "busy",
    "8": "congestion",
}


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "ami", parents=[common], help="talk to an Asterisk server over AMI",
        description="Talk to an Asterisk server configured in the [[ami]] tables of the "
                    "configuration file (the secret comes from its secret_env or secret_file).",
    )
    sub = parser.add_subparsers(dest="ami_command", metavar="COMMAND", required=True)

    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--server", metavar="NAME",
                        help="the [[ami]] entry to use (default: the first)")

    p = sub.add_parser("ping", parents=[common, server],
                       help="log in, send Ping, print the round trip")
    p.add_argument("--timeout", type=_seconds, default=10.0, metavar="S",
                   help="seconds to wait for each answer (default 10)")
    p.set_defaults(handler=ping)

    p = sub.add_parser("command", parents=[common, server],
                       help="run an Asterisk CLI command and print its output")
    p.add_argument("cli_command", metavar="CLI_COMMAND", help='e.g. "core show channels"')
    p.add_argument("--timeout", type=_seconds, default=10.0, metavar="S",
                   help="seconds to wait for the answer (default 10)")
    p.set_defaults(handler=command)

    p = sub.add_parser(
        "events", parents=[common, server], help="print events as they arrive",
        description="Print events as they arrive, as 'Key: Value' blocks. Filters on the "
                    "same key are alternatives; filters on different keys must all match.",
    )
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="only events whose KEY header equals VALUE (repeatable)")
    p.add_argument("--count", type=_positive_int, metavar="N", help="stop after N events")
    p.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds")
    p.add_argument("--stats", action="store_true",
                   help="instead of the events, print their count per event name and the "
                        "events/s when done")
    p.set_defaults(handler=events)

    p = sub.add_parser(
        "originate", parents=[common, server], help="place one call (Originate, Async)",
        description="Send one asynchronous Originate. With --wait, wait for its "
                    "OriginateResponse and print it (exit status 0 only if answered).",
    )
    p.add_argument("--channel", required=True, help="e.g. Local/15551230000@carrier")
    p.add_argument("--context", required=True)
    p.add_argument("--exten", required=True)
    p.add_argument("--priority", default="1")
    p.add_argument("--caller-id", metavar="CALLERID", help="e.g. '\"Acme\" <15550001000>'")
    p.add_argument("--timeout", type=_seconds, default=30.0, metavar="S",
                   help="seconds to let it ring (default 30)")
    p.add_argument("--channel-id", metavar="ID", help="Uniqueid for the new channel (ChannelId)")
    p.add_argument("--var", action="append", default=[], metavar="K=V",
                   help="channel variable (repeatable)")
    p.add_argument("--wait", action="store_true", help="wait for the OriginateResponse and print it")
    p.set_defaults(handler=originate)

    from dialer.cli import ami_record

    ami_record.register(sub, common, server)


# -- argument types ------------------------------------------------------------------------


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be more than 0 seconds")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def _pairs(option: str, items: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"{option} {item!r}: expected KEY=VALUE")
        pairs.append((key.strip(), value))
    return pairs


# -- plumbing -----------------------------------------------------------------------------


def _server(args) -> AMIServerConfig:
    return load_config(args.config).server(args.server)


def _run(main: Callable[[], Awaitable[int]]) -> int:
    """Run under trio; AMI and user errors become one UserError line."""
    try:
        return trio.run(main)
    except* LocalProtocolError as group:
        raise UserError("; ".join(str(e) for e in group.exceptions)) from None
    except* (AMIError, UserError) as group:
        raise UserError("; ".join(str(e) for e in _leaves(group))) from None


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


def _write_message(out: TextIO, message: Message) -> None:
    out.write("".join(f"{k}: {v}\n" for k, v in message.items()) + "\n")


async def _until_interrupted(scope: trio.CancelScope) -> None:
    """Cancel ``scope`` on Ctrl-C (or SIGTERM), so a summary can still be printed."""
    if threading.current_thread() is not threading.main_thread():
        return
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


# -- commands ----------------------------------------------------------------------------------


def ping(args, out: TextIO, err: TextIO) -> int:
    server = _server(args)

    async def main() -> int:
        async with _connect(server, events=False, timeout=args.timeout, ping_interval=None) as ami:
            start = trio.current_time()
            reply = await ami.action("Ping")
            elapsed = (trio.current_time() - start) * 1000
            banner = ami.banner.line if ami.banner else "?"
            out.write(
                f"{server.name} ({server.host}:{server.port}): {reply.get('Ping') or reply.name}"
                f" in {elapsed:.1f} ms ({banner})\n"
            )
        return 0

    return _run(main)


def command(args, out: TextIO, err: TextIO) -> int:
    server = _server(args)

    async def main() -> int:
        async with _connect(server, events=False, timeout=args.timeout, ping_interval=None) as ami:
            reply = await ami.action("Command", [("Command", args.cli_command)])
        for line in reply.output:
            out.write(line + "\n")
        return 0

    return _run(main)


def events(args, out: TextIO, err: TextIO) -> int:
    server = _server(args)
    wanted: dict[str, set[str]] = {}
    for key, value in _pairs("--filter", args.filter):
        wanted.setdefault(key, set()).add(value)
    names = wanted.pop("Event", None) or wanted.pop("event", None)

    def matches(message: Message) -> bool:
        return all(message.get(key) in values for key, values in wanted.items())

    async def main() -> int:
        counts: Counter[str] = Counter()
        total = 0
        async with _connect(server, events=True, timeout=10.0) as ami:
            start = trio.current_time()
            with trio.CancelScope() as scope:
                if args.duration:
                    scope.deadline = trio.current_time() + args.duration
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_until_interrupted, nursery.cancel_scope)
                    async with ami.subscribe(max_buffer=10_000, names=names) as channel:
                        async for item in channel:
                            if isinstance(item, ConnectionStateChanged):
                                if not item.up:
                                    err.write(
                                        f"dialer: {server.name}: connection lost ({item.reason});"
                                        " reconnecting\n"
                                    )
                                continue
                            if not matches(item):
                                continue
                            total += 1
                            if args.stats:
                                counts[item.name or "?"] += 1
                            else:
                                _write_message(out, item)
                                out.flush()
                            if args.count and total >= args.count:
                                break
                    nursery.cancel_scope.cancel()
            elapsed = max(trio.current_time() - start, 1e-9)
        if args.stats:
            out.write(f"{'events':>8} {'per s':>9}  name\n")
            for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
                out.write(f"{n:>8} {n / elapsed:>9.1f}  {name}\n")
            out.write(f"{total:>8} {total / elapsed:>9.1f}  total in {elapsed:.1f} s\n")
        return 0

    return _run(main)


def originate(args, out: TextIO, err: TextIO) -> int:
    server = _server(args)
    headers = [
        ("Channel", args.channel), ("Context", args.context), ("Exten", args.exten),
        ("Priority", args.priority), ("Async", "true"), ("Timeout", str(int(args.timeout * 1000))),
    ]
    if args.caller_id:
        headers.append(("CallerID", args.caller_id))
    if args.channel_id:
        headers.append(("ChannelId", args.channel_id))
    headers += [("Variable", f"{k}={v}") for k, v in _pairs("--var", args.var)]
    action_id = next_action_id()

    async def main() -> int:
        async with _connect(server, events=args.wait, timeout=10.0) as ami:
            if not args.wait:
                reply = await ami.action("Originate", headers, action_id=action_id)
                out.write(f"{reply.get('Message') or reply.name} (ActionID {action_id})\n")
                return 0
            async with ami.subscribe(names={"OriginateResponse"}) as channel:
                await ami.action("Originate", headers, action_id=action_id)
                with trio.move_on_after(args.timeout + 30):
                    async for item in channel:
                        if isinstance(item, Message) and item.action_id == action_id:
                            _write_message(out, item)
                            if (item.get("Response") or "").lower() == "success":
                                return 0
                            reason = item.get("Reason") or "?"
                            raise UserError(
                                f"{server.name}: call to {args.channel} not answered: Reason "
                                f"{reason} ({ORIGINATE_REASONS.get(reason, 'unknown')})"
                            )
                raise UserError(
                    f"{server.name}: no OriginateResponse for ActionID {action_id} within "
                    f"{args.timeout + 30:g} s"
                )

    return _run(main)
