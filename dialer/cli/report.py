"""``dialer report``: a campaign's figures from the database, as a table, CSV or JSON."""

from __future__ import annotations

from dialer.cli.db import unit_of_work
from dialer.errors import UserError


def register(subparsers, common) -> None:
    from dialer.cli.options import add_format

    p = subparsers.add_parser(
        "report", parents=[common], help="report a campaign's figures from the database",
        description="Report a campaign from the database alone: leads by state, calls by"
        " disposition, answer/contact/abandon rates, abandon rate against the target over"
        " 30 days and 24 hours, ring time / time to agent / talk time (average and 90th"
        " percentile), calls per hour and per AMI connection. With --attempts, export one"
        " row per call attempt instead.",
    )
    p.add_argument("name", metavar="NAME", help="campaign")
    p.add_argument("--since", metavar="WHEN",
                   help="only calls placed since WHEN: an ISO date or time (UTC unless it has an"
                   " offset), or a span back from now: 90m, 24h, 7d (or -24h)")
    add_format(p, ("table", "json", "csv", "jsonl"), default=None,
               help="table (default), json (one document) or csv (one section,key,metric,value"
                    " row per figure); with --attempts or --decisions: csv (default), json (one array)"
                    " or jsonl (one row a line)")
    p.add_argument("--attempts", action="store_true",
                   help="export one row per call attempt (csv, json or jsonl)")
    p.add_argument("--decisions", action="store_true",
                   help="export the pacing decisions log: one row per engine and second of dialing"
                   " (csv, json or jsonl)")
    p.set_defaults(handler=report)


def report(args, out, err) -> int:
    from dialer import reports
    from dialer.models import utcnow

    now = utcnow()
    since = reports.parse_since(args.since, now) if args.since is not None else None
    fmt = args.format
    if args.decisions:
        if fmt == "table" or args.attempts:
            raise reports.ReportOptionError("--decisions exports csv, json or jsonl, on its own")
        with unit_of_work(args) as session:
            reports.export_decisions(session, args.name, out, fmt=fmt or "csv", since=since)
        return 0
    if args.attempts:
        if fmt == "table":
            raise reports.ReportOptionError("--format table: --attempts exports csv, json or jsonl")
        with unit_of_work(args, bounded=False) as session:
            reports.export_attempts(session, args.name, out, fmt=fmt or "csv", since=since)
        return 0
    if fmt == "jsonl":
        raise UserError("--format jsonl: a report is one document (json); jsonl is for --attempts")
    with unit_of_work(args) as session:
        data = reports.build_report(session, args.name, now=now, since=since)
    {"json": reports.render_json, "csv": reports.render_csv}.get(fmt or "table", reports.render_table)(data, out)
    return 0
