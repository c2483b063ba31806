"""``dialer dnc``: the do-not-call list."""

from __future__ import annotations

from dialer.cli.db import unit_of_work


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "dnc", parents=[common], help="the do-not-call list",
        description="Numbers on the do-not-call list are never dialed, in any campaign.",
    )
    sub = parser.add_subparsers(dest="dnc_command", metavar="COMMAND", required=True)

    p = sub.add_parser("add", parents=[common], help="list one or more numbers")
    p.add_argument("numbers", metavar="NUMBER", nargs="+")
    p.add_argument("--region", default="US", metavar="CC",
                   help="region for numbers written without a country code (default US)")
    p.add_argument("--source", metavar="TEXT", help="where the request came from (stored)")
    p.set_defaults(handler=add)

    p = sub.add_parser(
        "load", parents=[common], help="list every number of a file",
        description="List every number of a file: CSV with a 'phone' column, or one number a line.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--region", default="US", metavar="CC",
                   help="region for numbers written without a country code (default US)")
    p.add_argument("--rejects", metavar="FILE", help="where invalid numbers go, with their line")
    p.add_argument("--source", metavar="TEXT", help="stored with each number (default the file name)")
    p.set_defaults(handler=load)

    p = sub.add_parser("check", parents=[common], help="tell whether a number is listed")
    p.add_argument("number", metavar="NUMBER")
    p.add_argument("--region", default="US", metavar="CC")
    p.set_defaults(handler=check)


def add(args, out, err) -> int:
    from dialer.leads import dnc
    from dialer.audit import cli_actor

    with unit_of_work(args) as session:
        added = dnc.add_dnc(session, args.numbers, region=args.region, source=args.source or "cli",
                            actor=cli_actor())
    already = len({dnc.normalize_number(n, args.region) for n in args.numbers}) - added
    out.write(f"{added} added to the do-not-call list" + (f", {already} already listed" if already > 0 else "") + "\n")
    return 0


def load(args, out, err) -> int:
    from dialer import audit
    from dialer.leads import dnc
    from dialer.audit import cli_actor

    with unit_of_work(args, bounded=False) as session:  # as 'leads load'
        result = dnc.load_dnc(session, args.file, region=args.region, rejects=args.rejects, source=args.source)
        audit.record(session, cli_actor(), "dnc.load", args.file, after=result.summary())
    out.write(result.summary() + "\n")
    return 0


def check(args, out, err) -> int:
    from dialer.leads import dnc

    number = dnc.normalize_number(args.number, args.region)
    with unit_of_work(args) as session:
        listed = dnc.is_dnc(session, number)
    out.write(f"{number}: {'on' if listed else 'not on'} the do-not-call list\n")
    return 0 if listed else 1
