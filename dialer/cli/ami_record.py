"""``dialer ami record``: run a script of actions on one AMI connection and keep
the exact bytes both ways (see :mod:`dialer.ami.recorder` for the script)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO



def register(sub, common, server) -> None:
    p = sub.add_parser(
        "record", parents=[common, server],
        help="run a script of actions and record the connection byte for byte",
        description="Connect to the [[ami]] server, run the script's steps (login, actions, "
                    "waits for events) and write OUT.txt (every byte the server sent) and "
                    "OUT.json (every action sent and every message received, with times).",
    )
    p.add_argument("script", metavar="SCRIPT", help="TOML file of [[step]] tables")
    p.add_argument("--out", required=True, metavar="STEM",
                   help="output files STEM.txt and STEM.json")
    p.add_argument("--linger", type=_seconds, default=None, metavar="S",
                   help="seconds to wait for the server to close after the last step "
                        "(default: the script's linger, else 2)")
    p.add_argument("--keep-secrets", action="store_true",
                   help="write Secret: values into OUT.json (default: ********)")
    p.set_defaults(handler=record_command)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be 0 seconds or more")
    return value


def record_command(args, out: TextIO, err: TextIO) -> int:
    from dialer.ami import tools
    from dialer.ami.recorder import load_script, record
    from dialer.config import load_config

    steps, settings = load_script(args.script)
    server = load_config(args.config).server(args.server)
    linger = args.linger if args.linger is not None else float(settings.get("linger", 2.0))

    async def main():
        return await record(
            server.host, server.port, steps, username=server.username,
            secret=server.read_secret(), ssl_context=server.ssl_context(),
            server_hostname=server.server_hostname, note=str(settings.get("note", "")),
            linger=linger, keep_secrets=args.keep_secrets,
        )

    rec = tools.run(main)
    txt, meta = rec.write(Path(args.out))
    closed = "server closed" if rec.server_closed_at is not None else "client closed"
    out.write(f"{txt}: {len(rec.received)} messages, {len(rec.data)} bytes ({closed}); "
              f"{meta}: {len(rec.sent)} actions sent\n")
    return 0
