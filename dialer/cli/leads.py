"""``dialer leads load``: import leads from a CSV file into a campaign."""

from __future__ import annotations

import contextlib
from pathlib import Path

from dialer.campaigns import get_campaign
from dialer.cli.db import unit_of_work
from dialer.leads.importer import import_leads, read_header


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "leads", parents=[common], help="import leads into a campaign",
        description="Import leads into a campaign.",
    )
    sub = parser.add_subparsers(dest="leads_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "load", parents=[common], help="load leads from a CSV file",
        description=(
            "Load leads from a CSV file with a header row and a 'phone' column. Known columns:"
            " first_name, last_name, timezone, state, postal_code, priority; any other column"
            " is kept as a custom field. Bad rows go to the rejects file with their line number"
            " and reason; loading the same file again adds nothing."
        ),
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--campaign", required=True, metavar="NAME", help="campaign to load into")
    p.add_argument("--region", default="US", metavar="CC",
                   help="region for numbers written without a country code (default US)")
    p.add_argument("--rejects", metavar="FILE",
                   help="where rejected rows go (default FILE's name + .rejects.csv in the current directory)")
    p.set_defaults(handler=load)


def _default_rejects(file: str) -> str:
    return Path(file).name + ".rejects.csv"


@contextlib.contextmanager
def _progress_bar(err, total: int):
    """A rich progress bar on stderr when it is a terminal, else nothing."""
    isatty = getattr(err, "isatty", None)
    if not (isatty and isatty()):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("loading"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=Console(file=err), transient=True,
    ) as bar:
        task = bar.add_task("load", total=total)
        yield lambda done, total_: bar.update(task, completed=done, total=total_)


def load(args, out, err) -> int:
    # Refuse a file that is not a CSV lead file before touching the database.
    read_header(args.file)
    rejects = args.rejects or _default_rejects(args.file)
    size = Path(args.file).stat().st_size
    # A large file takes as long as it takes: each statement has its own timeout.
    with unit_of_work(args, bounded=False) as session:
        campaign = get_campaign(session, args.campaign)
        with _progress_bar(err, size) as progress:
            result = import_leads(
                session, campaign, args.file, region=args.region, rejects=rejects, progress=progress
            )
    out.write(result.summary() + "\n")
    return 0
