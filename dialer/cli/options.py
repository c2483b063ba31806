"""What every ``dialer`` command shares: the parser class, the global options, ``--format``.

Only argparse and :mod:`dialer.errors` here, so that any command module can
import it without loading another (and ``dialer --help`` stays fast).
"""

from __future__ import annotations

import argparse
from typing import Callable, Sequence

from dialer.errors import UserError

DEFAULT_CONFIG = "dialer.toml"
DEFAULT_DB_URL = "sqlite:///dialer.db"

FORMATS = ("table", "json", "csv", "jsonl")


class ArgumentError(UserError):
    exit_status = 2


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing and exiting.

    ``build`` (optional) adds the parser's arguments when it is first used,
    for arguments that need a library module: listing the commands in
    ``dialer --help`` then imports nothing but this package.
    """

    def __init__(self, *args, build: Callable[[argparse.ArgumentParser], None] | None = None, **kw):
        super().__init__(*args, **kw)
        self._build = build

    def _built(self) -> None:
        build, self._build = self._build, None
        if build is not None:
            build(self)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self._built()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._built()
        return super().format_help()

    def format_usage(self) -> str:
        self._built()
        return super().format_usage()

    def error(self, message: str):  # type: ignore[override]
        where = self.prog.partition(" ")[2]
        raise ArgumentError(f"{where}: {message}" if where else message)


def add_format(parser: argparse.ArgumentParser, choices: Sequence[str], *, default: str | None = "table",
               help: str | None = None) -> None:
    """``--format`` with the shared names (a subset of :data:`FORMATS`, in that order)."""
    unknown = set(choices) - set(FORMATS)
    if unknown:
        raise ValueError(f"--format: {sorted(unknown)} are not among {FORMATS}")
    names = [f for f in FORMATS if f in choices]
    parser.add_argument(
        "--format", choices=names, default=default,
        help=help or f"output format: {', '.join(names)} (default {default})",
    )


def common_options() -> argparse.ArgumentParser:
    # Global options are accepted before or after the subcommand; SUPPRESS keeps
    # a subcommand's parser from overwriting a value given before it.
    common = Parser(add_help=False)
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
