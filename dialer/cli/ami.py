"""``dialer ami``: the one-liners people otherwise type into ``nc``.

``ping``, ``command``, ``events`` and ``originate`` against one ``[[ami]]``
server of the configuration file (``--server NAME``, default the first), done
by :mod:`dialer.ami.tools`. Every failure (missing config, refused connection,
wrong secret, permission denied, timeout) is one line on stderr and a
non-zero exit status.
"""

from __future__ import annotations

import argparse
import math
from typing import TextIO

from dialer.errors import UserError


def register(subparsers, common) -> None:
    from dialer.cli.options import add_format

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
        description="Print events as they arrive: as 'Key: Value' blocks (--format table, the"
                    " default) or one JSON object a line (--format jsonl; a repeated key's values"
                    " as a list). Filters on the same key are alternatives; filters on different"
                    " keys must all match. With --stats, print the count of events per name and"
                    " the events/s when done instead (table, json or csv).",
    )
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="only events whose KEY header equals VALUE (repeatable)")
    p.add_argument("--count", type=_positive_int, metavar="N", help="stop after N events")
    p.add_argument("--duration", type=_seconds, metavar="S", help="stop after S seconds")
    p.add_argument("--stats", action="store_true",
                   help="instead of the events, print their count per event name and the "
                        "events/s when done")
    add_format(p, ("table", "json", "csv", "jsonl"),
               help="table (default: Key: Value blocks; with --stats a table), jsonl (one"
                    " event a line), json or csv (with --stats)")
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


def _server(args):
    from dialer.config import load_config

    return load_config(args.config).server(args.server)


def _write_message(out: TextIO, message) -> None:
    out.write("".join(f"{k}: {v}\n" for k, v in message.items()) + "\n")


# -- commands ----------------------------------------------------------------------------------


def ping(args, out: TextIO, err: TextIO) -> int:
    from dialer.ami import tools

    server = _server(args)
    out.write(tools.run(lambda: tools.ping(server, timeout=args.timeout)) + "\n")
    return 0


def command(args, out: TextIO, err: TextIO) -> int:
    from dialer.ami import tools

    server = _server(args)
    lines = tools.run(lambda: tools.command(server, args.cli_command, timeout=args.timeout))
    out.write("".join(line + "\n" for line in lines))
    return 0


def events(args, out: TextIO, err: TextIO) -> int:
    from collections import Counter
    from operator import attrgetter

    from dialer.ami import tools

    fmt = args.format
    if args.stats and fmt == "jsonl":
        raise UserError("--format jsonl: --stats prints one table (table, json or csv)")
    if not args.stats and fmt in ("json", "csv"):
        raise UserError(f"--format {fmt}: events stream as table (Key: Value blocks) or jsonl;"
                        f" {fmt} is for --stats")
    server = _server(args)
    event_filter = tools.EventFilter.from_pairs(_pairs("--filter", args.filter))

    def notice(item) -> None:
        if not item.up:
            err.write(f"dialer: {server.name}: connection lost ({item.reason}); reconnecting\n")

    counts: Counter[str] = Counter()
    if args.stats:
        name_of = attrgetter("name")

        def on_batch(batch) -> None:
            counts.update(map(name_of, batch))
    elif fmt == "table" and hasattr(out, "buffer"):
        # Standard output: the bytes as received, one write per batch.
        out.flush()
        write, flush = out.buffer.write, out.buffer.flush

        def on_batch(batch) -> None:
            if batch:
                write(tools.blocks_bytes(batch))
                flush()
    else:
        text = tools.jsonl_text if fmt == "jsonl" else tools.blocks_text
        write, flush = out.write, out.flush

        def on_batch(batch) -> None:
            if batch:
                write(text(batch))
                flush()

    total, elapsed = tools.run(lambda: tools.watch_events(
        server, on_batch, filter=event_filter, count=args.count, duration=args.duration,
        on_notice=notice,
    ))
    if args.stats:
        _write_stats(out, fmt, counts, total, elapsed)
    return 0


def _write_stats(out: TextIO, fmt: str, counts, total: int, elapsed: float) -> None:
    from dialer import output

    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] or ""))
    if fmt == "json":
        output.write_json({
            "events": total, "seconds": round(elapsed, 3), "per_s": round(total / elapsed, 1),
            "names": [{"name": name, "events": n, "per_s": round(n / elapsed, 1)} for name, n in ranked],
        }, out)
        return
    if fmt == "csv":
        output.write_csv(("name", "events", "per_s"),
                         [(name, n, round(n / elapsed, 1)) for name, n in ranked]
                         + [("total", total, round(total / elapsed, 1))], out)
        return
    out.write(f"{'events':>8} {'per s':>9}  name\n")
    for name, n in ranked:
        out.write(f"{n:>8} {n / elapsed:>9.1f}  {name}\n")
    out.write(f"{total:>8} {total / elapsed:>9.1f}  total in {elapsed:.1f} s\n")


def originate(args, out: TextIO, err: TextIO) -> int:
    from dialer.ami import tools

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
    result = tools.run(lambda: tools.originate(server, headers, wait=args.wait, timeout=args.timeout))
    if not args.wait:
        reply = result.reply
        out.write(f"{reply.get('Message') or reply.name} (ActionID {result.action_id})\n")
        return 0
    _write_message(out, result.response)
    if result.answered:
        return 0
    reason = result.response.get("Reason") or "?"
    raise UserError(
        f"{server.name}: call to {args.channel} not answered: Reason "
        f"{reason} ({tools.ORIGINATE_REASONS.get(reason, 'unknown')})"
    )
