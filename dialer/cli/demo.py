"""``dialer demo``: a whole campaign against the simulated Asterisk, then its report."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from dialer.cli.sim import parse_speed
from dialer.errors import UserError


def register(subparsers, common) -> None:
    p = subparsers.add_parser(
        "demo", parents=[common], help="run a demo campaign against the simulated Asterisk",
        description="Create a SQLite database, start the simulated Asterisk on a free loopback"
        " port, create a campaign, load sample_leads.csv, dial it to the end (pausing and"
        " resuming once) and print the report. Everything runs in this process; the temporary"
        " directory is removed afterwards unless --dir is given.",
    )
    p.add_argument("--dir", metavar="DIR",
                   help="keep the database (DIR/dialer.db) here for 'dialer report' afterwards")
    p.add_argument("--speed", metavar="X",
                   help="run the simulator and the engine clock X times faster (default 20; 5 with --web)")
    p.add_argument("--web", action="store_true",
                   help="open the web console on loopback (--web-bind) to watch, pause and resume the demo;"
                   " it stays open after the last call until Ctrl-C")
    p.add_argument("--web-bind", metavar="HOST:PORT", default="127.0.0.1:8080",
                   help="where the console listens with --web (default 127.0.0.1:8080; a free port if taken)")
    p.add_argument("--leads", metavar="FILE", help="lead file (default: the sample_leads.csv shipped"
                   " with the project)")
    p.set_defaults(handler=demo)


def demo(args, out, err) -> int:
    import trio

    from dialer import reports
    from dialer.demo import SAMPLE_LEADS, run_demo

    speed = parse_speed(args.speed or ("5" if args.web else "20"))
    web = None
    if args.web:
        from dialer.web.server import check_exposure, parse_bind

        web = parse_bind(args.web_bind, "--web-bind")
        check_exposure(web, False, False)
    leads = Path(args.leads) if args.leads else SAMPLE_LEADS
    if not leads.is_file():
        raise UserError(f"--leads {leads}: file not found")
    with contextlib.ExitStack() as stack:
        if args.dir:
            directory = Path(args.dir)
            directory.mkdir(parents=True, exist_ok=True)
            if (directory / "dialer.db").exists():
                raise UserError(f"--dir {args.dir}: already holds a dialer.db; give another directory")
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dialer-demo.")))
        tty = bool(getattr(out, "isatty", None) and out.isatty())
        result = trio.run(lambda: run_demo(directory, leads_file=leads, speed=speed, out=out, tty=tty, web=web))
        out.write("\n")
        reports.render_table(result.report, out)
        if args.dir:
            url = f"sqlite:///{directory.resolve() / 'dialer.db'}"
            out.write(f"\nThe database is kept: dialer report demo --db {url}\n")
    return 0
