"""The ``dialer`` command line: a thin entry point over plain functions.

Each command group lives in its own module of this package and exposes
``register(subparsers, common)``; a handler is ``handler(args, out, err) -> int``.
:func:`main` maps :class:`~dialer.errors.UserError` (and argparse's usage
errors) to one line on stderr and a non-zero exit status; tracebacks only
appear under ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence, TextIO

from dialer.errors import UserError

# Command groups, in the order ``dialer --help`` lists them.
COMMAND_MODULES: list[str] = ["db", "campaign", "leads", "dnc", "run", "sim", "ami", "report", "status", "demo", "web"]

DEFAULT_CONFIG = "dialer.toml"
DEFAULT_DB_URL = "sqlite:///dialer.db"


class ArgumentError(UserError):
    exit_status = 2


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing and exiting."""

    def error(self, message: str):  # type: ignore[override]
        where = self.prog.partition(" ")[2]
        raise ArgumentError(f"{where}: {message}" if where else message)


def _common_options() -> argparse.ArgumentParser:
    # Global options are accepted before or after the subcommand; SUPPRESS keeps
    # a subcommand's parser from overwriting a value given before it.
    common = _Parser(add_help=False)
    common.add_argument(
        "--config", metavar="FILE", default=argparse.SUPPRESS,
        help=f"configuration file (default ./{DEFAULT_CONFIG})",
    )
    common.add_argument(
        "--db", metavar="URL", default=argparse.SUPPRESS,
        help="database URL (default $DIALER_DB, else sqlite:///dialer.db)",
    )
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="show tracebacks",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = _Parser(
        prog="dialer",
        description="A rate-limited predictive dialing orchestrator for Asterisk.",
        parents=[common],
    )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser, required=True
    )
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"dialer.cli.{name}")
        module.register(subparsers, common)
    return parser


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
        args = parser.parse_args(argv)
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
    """Console-script entry point."""
    sys.exit(main())
