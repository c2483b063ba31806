"""``dialer campaign``: create campaigns, change and show their settings."""

from __future__ import annotations

import argparse
import json

from dialer import campaigns
from dialer.audit import cli_actor
from dialer.cli.db import unit_of_work


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "campaign", parents=[common], help="create campaigns, change and show their settings",
        description="Create campaigns, change and show their settings.",
    )
    sub = parser.add_subparsers(dest="campaign_command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "create", parents=[common], help="create a campaign (stopped)",
        description="Create a campaign; settings not given take their defaults.",
    )
    p.add_argument("name", metavar="NAME")
    for setting in campaigns.SETTINGS.values():
        p.add_argument(
            setting.flag, dest=f"setting_{setting.name}", metavar=setting.metavar,
            default=argparse.SUPPRESS,
            help=f"{setting.help} (default {setting.format(setting.default)})".replace("%", "%%"),
        )
    p.set_defaults(handler=create)

    p = sub.add_parser(
        "set", parents=[common], help="change settings: NAME key=value ...",
        description="Change settings of a campaign: dialer campaign set NAME ring_timeout=30 mode=predictive."
        f" Settings: {', '.join(campaigns.SETTINGS)}.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("assignments", metavar="KEY=VALUE", nargs="+")
    p.set_defaults(handler=set_settings)

    p = sub.add_parser("list", parents=[common], help="list campaigns")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(handler=list_)

    p = sub.add_parser("show", parents=[common], help="show a campaign's settings and leads")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(handler=show)


def create(args, out, err) -> int:
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
    values = campaigns.parse_assignments(args.assignments)
    with unit_of_work(args) as session:
        campaign = campaigns.set_campaign_settings(session, args.name, actor=cli_actor(), **values)
        shown = {k: campaigns.format_setting(k, v) for k, v in campaigns.campaign_settings(campaign).items() if k in values}
    for key, text in shown.items():
        out.write(f"{args.name}: {key} = {text}\n")
    return 0


def _describe(session, campaign) -> dict:
    counts = campaigns.lead_counts(session, campaign)
    return {
        "name": campaign.name,
        "state": campaign.state,
        "created_at": campaign.created_at.isoformat(sep=" ", timespec="seconds") + "Z",
        "updated_at": campaign.updated_at.isoformat(sep=" ", timespec="seconds") + "Z",
        "settings": {
            k: campaigns.format_setting(k, v) for k, v in campaigns.campaign_settings(campaign).items()
        },
        "leads": {"total": sum(counts.values()), **counts},
    }


def list_(args, out, err) -> int:
    with unit_of_work(args) as session:
        rows = [_describe(session, c) for c in campaigns.list_campaigns(session)]
    if args.format == "json":
        json.dump(
            [{"name": r["name"], "state": r["state"], "mode": r["settings"]["mode"], "leads": r["leads"]} for r in rows],
            out, indent=2,
        )
        out.write("\n")
        return 0
    if not rows:
        out.write("no campaigns (create one with 'dialer campaign create NAME')\n")
        return 0
    table = [("NAME", "STATE", "MODE", "LEADS", "WAITING")]
    for r in rows:
        waiting = r["leads"].get("new", 0) + r["leads"].get("retry", 0)
        table.append((r["name"], r["state"], r["settings"]["mode"], str(r["leads"]["total"]), str(waiting)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
    return 0


def show(args, out, err) -> int:
    with unit_of_work(args) as session:
        info = _describe(session, campaigns.get_campaign(session, args.name))
    if args.format == "json":
        json.dump(info, out, indent=2)
        out.write("\n")
        return 0
    out.write(f"campaign {info['name']}: {info['state']}\n")
    width = max(len(k) for k in info["settings"])
    for key, text in info["settings"].items():
        out.write(f"  {key.ljust(width)}  {text}\n")
    leads = info["leads"]
    detail = ", ".join(f"{k} {v}" for k, v in leads.items() if k != "total")
    out.write(f"  {'leads'.ljust(width)}  {leads['total']}" + (f" ({detail})" if detail else "") + "\n")
    return 0
