"""``dialer campaign`` (create campaigns, change and show their settings) and the
supervisor commands ``dialer start`` / ``pause`` / ``resume`` / ``stop``."""

from __future__ import annotations

import argparse

from dialer.cli.db import unit_of_work

SUPERVISOR_COMMANDS = (
    ("start", "start dialing a campaign"),
    ("pause", "pause a campaign: no new calls, calls in progress go on"),
    ("resume", "resume a paused campaign"),
    ("stop", "stop a campaign: no new calls, calls in flight finish, then stopped"),
)


def register(subparsers, common) -> None:
    from dialer.cli.options import add_format

    parser = subparsers.add_parser(
        "campaign", parents=[common], help="create campaigns, change and show their settings",
        description="Create campaigns, change and show their settings.",
    )
    sub = parser.add_subparsers(dest="campaign_command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "create", parents=[common], help="create a campaign (stopped)",
        description="Create a campaign; settings not given take their defaults.",
        build=_setting_flags,
    )
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=create)

    p = sub.add_parser(
        "set", parents=[common], help="change settings: NAME key=value ...",
        description="Change settings of a campaign: dialer campaign set NAME ring_timeout=30"
        " mode=predictive (see 'dialer campaign create --help' for the settings).",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("assignments", metavar="KEY=VALUE", nargs="+")
    p.set_defaults(handler=set_settings)

    p = sub.add_parser("list", parents=[common], help="list campaigns")
    add_format(p, ("table", "json", "csv"))
    p.set_defaults(handler=list_)

    p = sub.add_parser("show", parents=[common], help="show a campaign's settings and leads")
    p.add_argument("name", metavar="NAME")
    add_format(p, ("table", "json", "csv"))
    p.set_defaults(handler=show)

    for command, text in SUPERVISOR_COMMANDS:
        p = subparsers.add_parser(command, parents=[common], help=text, description=text + ".")
        if command == "stop":
            p.add_argument("name", metavar="NAME", nargs="?")
            p.add_argument("--all", action="store_true", dest="all_campaigns",
                           help="the emergency stop: stop every campaign at once")
        else:
            p.add_argument("name", metavar="NAME")
        p.add_argument("--reason", help="why (recorded with who and when)")
        p.set_defaults(handler=supervise, supervisor_command=command)


def _setting_flags(parser: argparse.ArgumentParser) -> None:
    from dialer import campaigns

    for setting in campaigns.SETTINGS.values():
        parser.add_argument(
            setting.flag, dest=f"setting_{setting.name}", metavar=setting.metavar,
            default=argparse.SUPPRESS,
            help=f"{setting.help} (default {setting.format(setting.default)})".replace("%", "%%"),
        )


def create(args, out, err) -> int:
    from dialer import campaigns

    values = {}
    for name in campaigns.SETTINGS:
        text = getattr(args, f"setting_{name}", None)
        if text is not None:
            values[name] = campaigns.parse_setting(name, text)
    campaigns.check_campaign_name(args.name)
    with unit_of_work(args) as session:
        campaign = campaigns.create_campaign(session, args.name, **values)
        name = campaign.name
    out.write(f"created campaign {name!r} (stopped)\n")
    return 0


def set_settings(args, out, err) -> int:
    from dialer import campaigns
    from dialer.audit import cli_actor

    values = campaigns.parse_assignments(args.assignments)
    with unit_of_work(args) as session:
        campaign = campaigns.set_campaign_settings(session, args.name, actor=cli_actor(), **values)
        shown = {k: campaigns.format_setting(k, v) for k, v in campaigns.campaign_settings(campaign).items() if k in values}
    for key, text in shown.items():
        out.write(f"{args.name}: {key} = {text}\n")
    return 0


def list_(args, out, err) -> int:
    from dialer import campaigns, output

    with unit_of_work(args) as session:
        rows = [campaigns.describe(session, c) for c in campaigns.list_campaigns(session)]
    if args.format == "json":
        output.write_json(
            [{"name": r["name"], "state": r["state"], "mode": r["settings"]["mode"], "leads": r["leads"]}
             for r in rows],
            out,
        )
        return 0
    header = ("name", "state", "mode", "leads", "waiting")
    table = [
        (r["name"], r["state"], r["settings"]["mode"], r["leads"]["total"],
         r["leads"].get("new", 0) + r["leads"].get("retry", 0))
        for r in rows
    ]
    if args.format == "csv":
        output.write_csv(header, table, out)
        return 0
    if not rows:
        out.write("no campaigns (create one with 'dialer campaign create NAME')\n")
        return 0
    output.write_table([h.upper() for h in header], table, out)
    return 0


def show(args, out, err) -> int:
    from dialer import campaigns, output

    with unit_of_work(args) as session:
        info = campaigns.describe(session, campaigns.get_campaign(session, args.name))
    if args.format == "json":
        output.write_json(info, out)
        return 0
    if args.format == "csv":
        rows = [("name", info["name"]), ("state", info["state"]),
                ("created_at", info["created_at"]), ("updated_at", info["updated_at"])]
        rows += [(key, text) for key, text in info["settings"].items()]
        rows += [(f"leads_{key}", n) for key, n in info["leads"].items()]
        output.write_csv(("key", "value"), rows, out)
        return 0
    out.write(f"campaign {info['name']}: {info['state']}\n")
    width = max(len(k) for k in info["settings"])
    for key, text in info["settings"].items():
        out.write(f"  {key.ljust(width)}  {text}\n")
    leads = info["leads"]
    detail = ", ".join(f"{k} {v}" for k, v in leads.items() if k != "total")
    out.write(f"  {'leads'.ljust(width)}  {leads['total']}" + (f" ({detail})" if detail else "") + "\n")
    return 0


def supervise(args, out, err) -> int:
    from dialer.campaigns import control
    from dialer.errors import UserError
    from dialer.models import utcnow

    if args.supervisor_command == "stop" and (args.all_campaigns == bool(args.name)):
        raise UserError("stop: give a campaign NAME or --all (not both)")
    if getattr(args, "all_campaigns", False):
        with unit_of_work(args) as session:
            stopped = [(c.name, c.state) for c in control.stop_all(session, reason=args.reason, now=utcnow())]
        for name, state in stopped:
            out.write(f"campaign {name}: {state}\n")
        if not stopped:
            out.write("no campaign to stop\n")
        return 0
    with unit_of_work(args) as session:
        campaign = control.issue(session, args.name, args.supervisor_command,
                                 reason=args.reason, now=utcnow())
        state = campaign.state
    out.write(f"campaign {args.name}: {state}\n")
    return 0
