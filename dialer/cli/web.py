"""``dialer web``: the supervisor's console, its users and API tokens."""

from __future__ import annotations

import functools
import getpass
import logging
import sys

from dialer.cli.db import unit_of_work
from dialer.cli.options import add_format
from dialer.errors import UserError

ROLES = ("viewer", "supervisor", "admin")
_WEB_KEYS = {"bind", "cert_file", "key_file", "allow_insecure_http"}


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "web", parents=[common], help="the web console: wallboard, control, JSON API, /metrics",
        description="Serve the supervisor's web console (wallboard, campaign control, lead upload,"
        " JSON API under /api/v1, Prometheus /metrics). It reads the engines' live state from the"
        " database, so engines may run anywhere. Settings may also come from a [web] table of the"
        " configuration file (bind, cert_file, key_file, allow_insecure_http).",
    )
    parser.add_argument("--bind", metavar="HOST:PORT", help="where to listen (default 127.0.0.1:8080)")
    parser.add_argument("--cert", metavar="FILE", help="TLS certificate (PEM, with its chain)")
    parser.add_argument("--key", metavar="FILE", help="TLS private key (PEM)")
    parser.add_argument("--allow-insecure-http", action="store_true",
                        help="serve plain HTTP on a non-loopback address (only behind a TLS proxy)")
    parser.set_defaults(handler=serve)
    sub = parser.add_subparsers(dest="web_command", metavar="COMMAND")

    users = sub.add_parser("user", parents=[common], help="console users")
    usub = users.add_subparsers(dest="user_command", metavar="COMMAND", required=True)
    p = usub.add_parser("add", parents=[common], help="add a user (password from a prompt, or stdin's first line)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--replace", action="store_true", help="set a new password and role for an existing user")
    p.set_defaults(handler=user_add)
    p = usub.add_parser("list", parents=[common], help="list users")
    add_format(p, ("table", "json", "csv"))
    p.set_defaults(handler=user_list)
    p = usub.add_parser("disable", parents=[common], help="disable a user and end their sessions")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=user_disable)

    tokens = sub.add_parser("token", parents=[common], help="API tokens")
    tsub = tokens.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    p = tsub.add_parser("add", parents=[common], help="create a token (printed once; only its hash is kept)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--role", required=True, choices=ROLES)
    p.set_defaults(handler=token_add)
    p = tsub.add_parser("list", parents=[common], help="list tokens")
    add_format(p, ("table", "json", "csv"))
    p.set_defaults(handler=token_list)
    p = tsub.add_parser("revoke", parents=[common], help="revoke a token")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=token_revoke)


def read_password(stdin=None, err=None) -> str:
    stdin = stdin if stdin is not None else sys.stdin
    if stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise UserError("password: the two entries differ")
        return first
    line = stdin.readline()
    if not line:
        raise UserError("password: nothing on standard input (give it as the first line)")
    return line.rstrip("\r\n")


def user_add(args, out, err) -> int:
    from dialer.audit import cli_actor
    from dialer.web import auth

    auth.check_name(args.name)
    password = read_password(getattr(args, "stdin", None))
    with unit_of_work(args) as session:
        auth.add_user(session, args.name, args.role, password, actor=cli_actor(), replace=args.replace)
    out.write(f"user {args.name}: {args.role}\n")
    return 0


def user_list(args, out, err) -> int:
    from dialer.web import auth

    with unit_of_work(args) as session:
        rows = [(u.name, u.role, "disabled" if u.disabled_at else "active") for u in auth.list_users(session)]
    if not rows and args.format == "table":
        out.write("no users (add one with 'dialer web user add NAME --role admin')\n")
        return 0
    _write_rows(("name", "role", "state"), rows, args.format, out)
    return 0


def _write_rows(header: tuple[str, ...], rows: list[tuple], fmt: str, out) -> None:
    from dialer import output

    if fmt == "json":
        output.write_json([dict(zip(header, row)) for row in rows], out)
    elif fmt == "csv":
        output.write_csv(header, rows, out)
    else:
        output.write_table(header, rows, out)


def user_disable(args, out, err) -> int:
    from dialer.audit import cli_actor
    from dialer.web import auth

    with unit_of_work(args) as session:
        auth.disable_user(session, args.name, actor=cli_actor())
    out.write(f"user {args.name}: disabled\n")
    return 0


def token_add(args, out, err) -> int:
    from dialer.audit import cli_actor
    from dialer.web import auth

    with unit_of_work(args) as session:
        token = auth.add_token(session, args.name, args.role, actor=cli_actor())
    err.write(f"token {args.name} ({args.role}); it is shown only now:\n")
    out.write(token + "\n")
    return 0


def token_list(args, out, err) -> int:
    from dialer.web import auth

    with unit_of_work(args) as session:
        rows = [(t.name, t.role, "revoked" if t.revoked_at else "active",
                 t.last_used_at.isoformat(timespec="seconds") + "Z" if t.last_used_at else None)
                for t in auth.list_tokens(session)]
    if not rows and args.format == "table":
        out.write("no tokens\n")
        return 0
    if args.format == "table":
        rows = [(*row[:3], row[3] or "never used") for row in rows]
    _write_rows(("name", "role", "state", "last_used_at"), rows, args.format, out)
    return 0


def token_revoke(args, out, err) -> int:
    from dialer.audit import cli_actor
    from dialer.web import auth

    with unit_of_work(args) as session:
        auth.revoke_token(session, args.name, actor=cli_actor())
    out.write(f"token {args.name}: revoked\n")
    return 0


def _web_settings(args) -> dict:
    from pathlib import Path

    from dialer.config import load_config

    if not args.config_given and not Path(args.config).exists():
        return {}
    table = load_config(args.config).web
    for key in table:
        if key not in _WEB_KEYS:
            raise UserError(f"{args.config}: [web].{key}: unknown setting (expected {', '.join(sorted(_WEB_KEYS))})")
    return table


def serve(args, out, err) -> int:
    import trio

    from dialer import db
    from dialer.web.server import DEFAULT_BIND, check_exposure, check_tls, parse_bind, serve as serve_console

    table = _web_settings(args)
    bind = parse_bind(args.bind or table.get("bind") or DEFAULT_BIND)
    tls = check_tls(args.cert or table.get("cert_file"), args.key or table.get("key_file"))
    check_exposure(bind, tls is not None, args.allow_insecure_http or bool(table.get("allow_insecure_http")))
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=err)
    logging.getLogger("dialer").setLevel(logging.DEBUG if args.debug else logging.INFO)
    engine = db.open_database(args.db)
    try:
        sessions = db.session_factory(engine)
        with unit_of_work(args) as session:
            from dialer.web import auth
            if not auth.list_users(session):
                err.write("dialer web: no users yet: add one with 'dialer web user add NAME --role admin'\n")

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(functools.partial(serve_console, sessions, bind, tls=tls))
                out.write(f"dialer web: serving on {url} (Ctrl-C stops)\n")
                out.flush()
        try:
            trio.run(main)
        except KeyboardInterrupt:
            out.write("dialer web: stopped\n")
    finally:
        engine.dispose()
    return 0
