"""The ``dialer`` command line: a thin entry point over plain functions.

Each command group is a module of this package with ``register(subparsers,
common)``; :data:`COMMANDS` lists those modules in the order ``dialer --help``
shows them, so a new group is a new module and one more entry there. A handler
is ``handler(args, out, err) -> int``: it parses what argparse left as text and
calls the library, which it imports inside the handler, so that ``dialer
--help`` and ``dialer ami ...`` start without the database layer.

:func:`main` maps :class:`~dialer.errors.UserError` (and argparse's usage
errors) to one line on stderr and a non-zero exit status; tracebacks only
appear under ``--debug``.

Every command that prints data takes ``--format`` (:func:`add_format`, in
:mod:`.options`) with the same names where they apply: ``table`` (the
default), ``json`` (one document), ``csv`` (tabular data) and ``jsonl``
(streams, one JSON object a line).

May import: any part of dialer (the library inside the handlers). Nothing
else imports it but ``dialer/__main__.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Sequence, TextIO

from dialer.cli import ami, campaign, db, demo, dnc, leads, report, rules, sim, status, web
from dialer.cli import run as engine
from dialer.cli.options import (
    DEFAULT_CONFIG,
    DEFAULT_DB_URL,
    FORMATS,
    ArgumentError,
    Parser,
    add_format,
    common_options,
)
from dialer.errors import UserError

__all__ = ["COMMANDS", "FORMATS", "ArgumentError", "add_format", "build_parser", "main", "run"]

#: The command groups, in the order ``dialer --help`` lists them.
COMMANDS = (db, campaign, leads, dnc, rules, engine, sim, ami, report, status, demo, web)


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = Parser(
        prog="dialer",
        description="A rate-limited predictive dialing orchestrator for Asterisk.",
        parents=[common],
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=Parser, required=True
    )
    for module in COMMANDS:
        module.register(subparsers, common)
    return parser


# Values that start with '-' but are not options, for the options that take them
# (argparse would take "--since -5h" for two options).
_DASH_VALUES = {"--since": re.compile(r"-\d+\s*[mhd]")}


def _join_dash_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        pattern = _DASH_VALUES.get(arg)
        if pattern is not None:
            value = next(it, None)
            if value is not None and pattern.fullmatch(value):
                out.append(f"{arg}={value}")
                continue
            out.append(arg)
            if value is not None:
                out.append(value)
            continue
        if arg == "--":
            out.append(arg)
            out.extend(it)
            break
        out.append(arg)
    return out


def _finish_defaults(args: argparse.Namespace) -> None:
    if not hasattr(args, "config"):
        args.config = DEFAULT_CONFIG
        args.config_given = False
    else:
        args.config_given = True
    if not hasattr(args, "db"):
        args.db = os.environ.get("DIALER_DB") or DEFAULT_DB_URL
    if not hasattr(args, "debug"):
        args.debug = False


def main(
    argv: Sequence[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser()
        if not argv or argv in (["-h"], ["--help"]):
            out.write(parser.format_help())
            return 0 if argv else 2
        args = parser.parse_args(_join_dash_values(argv))
        _finish_defaults(args)
        return int(args.handler(args, out, err) or 0)
    except UserError as exc:
        if debug:
            raise
        err.write(f"dialer: {exc}\n")
        return exc.exit_status
    except KeyboardInterrupt:
        err.write("dialer: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


def run() -> None:
    """Console-script entry point (defined after the import of ``dialer.cli.run``,
    which would otherwise take this name)."""
    from dialer.signals import hold_to_exit

    hold_to_exit()
    status = main()
    # The command is over and has said how it ended: a signal during the
    # interpreter's shutdown must not turn that into a traceback or another status.
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    sys.exit(status)
