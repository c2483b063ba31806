"""``dialer status``: what the campaigns are doing now (see :mod:`dialer.reports.status`)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any, TextIO

from dialer.cli.db import unit_of_work
from dialer.errors import UserError


def register(subparsers, common) -> None:
    from dialer.cli.options import add_format

    p = subparsers.add_parser(
        "status", parents=[common], help="show what the campaigns are doing now",
        description="Show each campaign's state, calls ringing / waiting for an agent /"
        " connected, agents free, dial level, abandon rate and leads left, and each AMI"
        " connection's Originates per second against its cap. Live figures come from running"
        " engines (heartbeat within 5 s); the rest from the database.",
    )
    p.add_argument("name", metavar="NAME", nargs="?", help="only this campaign")
    p.add_argument("--watch", action="store_true",
                   help="refresh until Ctrl-C (in place on a terminal, else one block per refresh)")
    p.add_argument("--interval", metavar="SECONDS", default="1",
                   help="seconds between refreshes with --watch (default 1)")
    add_format(p, ("table", "json", "csv", "jsonl"),
               help="table (default), json (one document), csv (a row per campaign), jsonl (a"
                    " document a line: one per refresh with --watch)")
    p.set_defaults(handler=status)


def __getattr__(name: str) -> Any:
    # collect() and render() moved to dialer.reports.status; still found here.
    if name in ("collect", "render", "LIVE_WITHIN", "LEFT_STATES"):
        import dialer.reports.status

        return getattr(dialer.reports.status, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def snapshot(args) -> str:
    from dialer import output
    from dialer.reports import status as live
    from dialer.models import utcnow

    buf = io.StringIO()
    with unit_of_work(args) as session:
        data = live.collect(session, args.name, now=utcnow(), wall_now=time.time())
    fmt = getattr(args, "format", "table")
    if fmt == "json":
        output.write_json(live.as_json(data), buf)
    elif fmt == "jsonl":
        output.write_jsonl([live.as_json(data)], buf)
    elif fmt == "csv":
        output.write_csv(live.CSV_COLUMNS, live.csv_rows(data), buf)
    else:
        live.render(data, buf)
    return buf.getvalue()


def watch(block: Callable[[], str], out: TextIO, *, interval: float, tty: bool,
          sleep: Callable[[float], None] = time.sleep, separator: str = "\n") -> int:
    """Show ``block()`` every ``interval`` seconds until Ctrl-C (then exit status 0)."""
    try:
        if tty:
            from rich.console import Console
            from rich.live import Live
            from rich.text import Text

            with Live(Text(block()), console=Console(file=out, force_terminal=True), auto_refresh=False) as live:
                while True:
                    sleep(interval)
                    live.update(Text(block()), refresh=True)
        while True:
            out.write(block() + separator)
            out.flush()
            sleep(interval)
    except KeyboardInterrupt:
        return 0


def status(args, out, err) -> int:
    try:
        interval = float(args.interval)
    except ValueError:
        interval = -1.0
    if not 0.1 <= interval <= 3600:
        raise UserError(f"--interval {args.interval!r}: expected seconds between 0.1 and 3600")
    if not args.watch:
        out.write(snapshot(args))
        return 0
    if args.format in ("json", "csv"):
        raise UserError(f"--format {args.format}: --watch streams; use --format jsonl (a document"
                        " a line) or table")
    tty = args.format == "table" and bool(getattr(out, "isatty", None) and out.isatty())
    return watch(lambda: snapshot(args), out, interval=interval, tty=tty,
                 separator="\n" if args.format == "table" else "")
