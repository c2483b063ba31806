"""``dialer rules``: calling rules per region (see :mod:`dialer.leads.regions`)."""

from __future__ import annotations

from dialer.cli.db import unit_of_work
from dialer.cli.options import add_format


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "rules", parents=[common], help="calling rules per region (US state, country)",
        description="Calling hours and a cap on calls per number per 24 hours, per region"
        " (ISO 3166: US, US-FL, CA-ON), on top of each campaign's own: the stricter wins.",
    )
    sub = parser.add_subparsers(dest="rules_command", metavar="COMMAND", required=True)

    p = sub.add_parser("show", parents=[common], help="the rules in force, or what applies to a campaign")
    p.add_argument("--campaign", metavar="NAME",
                   help="what applies to each region among this campaign's leads")
    add_format(p, ("table", "json"))
    p.set_defaults(handler=show)

    p = sub.add_parser(
        "set", parents=[common], help="set a region's rules (replaces a shipped one)",
        description="Set a region's rules: window=HH:MM-HH:MM (local time of the called party),"
        " max_calls_24h=N (calls to one number over 24 hours, every campaign together),"
        " source=TEXT (the law it comes from); none clears a bound. Keys not given keep"
        " the value in force.",
    )
    p.add_argument("region", metavar="REGION")
    p.add_argument("assignments", metavar="KEY=VALUE", nargs="+")
    p.set_defaults(handler=set_)

    p = sub.add_parser("unset", parents=[common],
                       help="remove a region's operator rules (a shipped rule applies again)")
    p.add_argument("region", metavar="REGION")
    p.set_defaults(handler=unset)


def _cap(value) -> str:
    return "none" if value is None else str(value)


def show(args, out, err) -> int:
    from dialer import campaigns, output
    from dialer.leads import regions

    with unit_of_work(args) as session:
        if args.campaign:
            campaign = campaigns.get_campaign(session, args.campaign)
            rows = regions.campaign_rules(session, campaign)
        else:
            rows = regions.describe_rules(session)
    if args.format == "json":
        output.write_json(rows, out)
        return 0
    if args.campaign:
        if not rows:
            out.write(f"campaign {args.campaign!r} has no leads\n")
            return 0
        output.write_table(
            ["REGION", "LEADS", "WINDOW", "WINDOW FROM", "MAX CALLS/24H", "CAP FROM"],
            [(r["region"], r["leads"], r["window"], r["window_from"], _cap(r["max_calls_24h"]),
              r["cap_from"] or "-") for r in rows],
            out,
        )
        return 0
    output.write_table(
        ["REGION", "WINDOW", "MAX CALLS/24H", "ORIGIN", "SOURCE"],
        [(r["region"], r["window"], _cap(r["max_calls_24h"]), r["origin"], r["source"] or "-")
         for r in rows],
        out,
    )
    return 0


def set_(args, out, err) -> int:
    from dialer.leads import regions
    from dialer.audit import cli_actor

    with unit_of_work(args) as session:
        rule = regions.set_rule(session, args.region, args.assignments, actor=cli_actor())
    window = f"{rule.start:%H:%M}-{rule.end:%H:%M}" if rule.start and rule.end else "none"
    out.write(f"{rule.region}: window = {window}, max_calls_24h = {_cap(rule.max_calls_24h)}\n")
    return 0


def unset(args, out, err) -> int:
    from dialer.leads import regions
    from dialer.audit import cli_actor

    with unit_of_work(args) as session:
        removed = regions.unset_rule(session, args.region, actor=cli_actor())
    code = regions.check_region(args.region)
    out.write(f"{code}: operator rules removed\n" if removed else f"{code}: no operator rules to remove\n")
    return 0 if removed else 1
