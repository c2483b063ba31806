"""``dialer leads load``: import leads from a CSV file into a campaign.

The load is all or nothing: SIGINT and SIGTERM (any number of them) are held
back while it runs; one stops it at the next batch and rolls it back, one
that comes while it commits finds it loaded whole. Either way the last line
says which.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from dialer.errors import UserError

INTERRUPTED = 130


class LoadInterruptedError(UserError):
    exit_status = INTERRUPTED


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "leads", parents=[common], help="import leads into a campaign",
        description="Import leads into a campaign.",
    )
    sub = parser.add_subparsers(dest="leads_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "load", parents=[common], help="load leads from a CSV file",
        description=(
            "Load leads from a CSV file (UTF-8, or UTF-16 with a byte-order mark) with a header"
            " row and a 'phone' column. Known columns: first_name, last_name, timezone, state,"
            " postal_code, priority; any other column is kept as a custom field. Bad rows go to"
            " the rejects file with their line number and reason; loading the same file again"
            " adds nothing. The load is all or nothing: Ctrl-C or SIGTERM rolls it back whole."
        ),
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("--campaign", required=True, metavar="NAME", help="campaign to load into")
    p.add_argument("--region", default="US", metavar="CC",
                   help="region for numbers written without a country code (default US)")
    p.add_argument("--rejects", metavar="FILE",
                   help="where rejected rows go (default: FILE's name + .rejects.csv, in the"
                        " current directory)")
    p.set_defaults(handler=load)


def default_rejects(file: str) -> Path:
    """The rejects file of a load without --rejects: FILE's name + .rejects.csv, here."""
    return Path.cwd() / (Path(file).name + ".rejects.csv")


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
    from dialer.signals import DeferredSignals

    with DeferredSignals(to_exit=True) as signals:
        from dialer import audit
        from dialer.leads.importer import LoadInterrupted, load_leads, read_header

        read_header(args.file)  # refuse a file that is not a lead file before the database
        rejects = Path(args.rejects).resolve() if args.rejects else default_rejects(args.file)
        size = Path(args.file).stat().st_size
        try:
            with _progress_bar(err, size) as progress:
                result = load_leads(
                    args.db, args.campaign, args.file, region=args.region, rejects=str(rejects),
                    progress=progress, should_stop=signals.received, actor=audit.cli_actor(),
                )
        except LoadInterrupted:
            raise LoadInterruptedError(
                f"leads load {args.file}: interrupted ({signals.name}): nothing was loaded;"
                " run the same command again to load the file"
            ) from None
        out.write(result.summary() + "\n")
        if signals.received():
            err.write(f"dialer: leads load {args.file}: {signals.name} came as the load was"
                      f" committed: all {result.loaded} leads were loaded\n")
        out.flush()
    return 0
