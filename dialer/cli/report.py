"""``dialer report``: a campaign's figures from the database, as a table, CSV or JSON."""

from __future__ import annotations

from dialer import reports
from dialer.cli.db import unit_of_work
from dialer.models import utcnow


def register(subparsers, common) -> None:
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
                   " offset), or a span back from now: 90m, 24h, 7d")
    p.add_argument("--format", choices=("table", "csv", "json"), default=None,
                   help="output format (default table; csv for --attempts)")
    p.add_argument("--attempts", action="store_true",
                   help="export one row per call attempt (CSV, or JSON with --format json)")
    p.add_argument("--decisions", action="store_true",
                   help="export the pacing decisions log: one row per engine and second of dialing"
                   " (CSV, or JSON with --format json)")
    p.set_defaults(handler=report)


def report(args, out, err) -> int:
    now = utcnow()
    since = reports.parse_since(args.since, now) if args.since is not None else None
    fmt = args.format
    if args.decisions:
        if fmt == "table" or args.attempts:
            raise reports.ReportOptionError("--decisions exports csv or json, on its own")
        with unit_of_work(args) as session:
            reports.export_decisions(session, args.name, out, fmt=fmt or "csv", since=since)
        return 0
    if args.attempts:
        if fmt == "table":
            raise reports.ReportOptionError("--format table: --attempts exports csv or json")
        with unit_of_work(args) as session:
            reports.export_attempts(session, args.name, out, fmt=fmt or "csv", since=since)
        return 0
    with unit_of_work(args) as session:
        data = reports.build_report(session, args.name, now=now, since=since)
    {"json": reports.render_json, "csv": reports.render_csv}.get(fmt or "table", reports.render_table)(data, out)
    return 0
