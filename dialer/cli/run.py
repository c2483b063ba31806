"""``dialer run`` (the engine) and the supervisor commands start/pause/resume/stop."""

from __future__ import annotations

import logging
import signal

import trio

from dialer import control, db
from dialer.cli.db import unit_of_work
from dialer.config import load_config
from dialer.engine import Engine, EngineSettings
from dialer.errors import UserError
from dialer.models import utcnow


def register(subparsers, common) -> None:
    p = subparsers.add_parser(
        "run", parents=[common], help="run the dialing engine",
        description="Dial every running campaign (or those named) through the AMI servers of the"
        " configuration file. SIGINT/SIGTERM drain: no new calls, calls in flight are followed"
        " to their end; a second signal exits at once.",
    )
    p.add_argument("--until-done", action="store_true",
                   help="exit once the campaigns have nothing left to dial and nothing in flight")
    p.add_argument("--campaign", action="append", metavar="NAME",
                   help="dial only this campaign (repeatable)")
    p.add_argument("--engine-id", metavar="ID",
                   help="name of this engine, kept across restarts: a restarted engine takes over"
                   " its predecessor's calls at once; one running engine per name"
                   " (default host:pid:random, new each run)")
    p.set_defaults(handler=run)

    for command, text in (
        ("start", "start dialing a campaign"),
        ("pause", "pause a campaign: no new calls, calls in progress go on"),
        ("resume", "resume a paused campaign"),
        ("stop", "stop a campaign: no new calls, calls in flight finish, then stopped"),
    ):
        p = subparsers.add_parser(command, parents=[common], help=text, description=text + ".")
        p.add_argument("name", metavar="NAME")
        p.add_argument("--reason", help="why (recorded with who and when)")
        p.set_defaults(handler=supervise, supervisor_command=command)


def supervise(args, out, err) -> int:
    with unit_of_work(args) as session:
        campaign = control.issue(session, args.name, args.supervisor_command,
                                 reason=args.reason, now=utcnow())
        state = campaign.state
    out.write(f"campaign {args.name}: {state}\n")
    return 0


def run(args, out, err) -> int:
    config = load_config(args.config)
    if not config.ami:
        raise UserError(f"{args.config}: no [[ami]] server configured")
    settings = EngineSettings.from_config(config.engine, f"{args.config}: [engine]")
    for server in config.ami:
        server.read_secret()  # a missing secret is reported before anything starts
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=err,
    )
    engine = db.open_database(args.db)
    try:
        dialer = Engine(
            db.session_factory(engine), config.ami, settings=settings,
            campaigns=args.campaign, until_done=args.until_done, engine_id=args.engine_id,
        )
        try:
            forced = trio.run(_run_with_signals, dialer, err)
        except* UserError as group:
            raise UserError("; ".join(dict.fromkeys(str(e) for e in _leaves(group)))) from None
    finally:
        engine.dispose()
    c = dialer.counters
    out.write(
        f"engine {dialer.engine_id}: {c['originates']} calls placed, {c['ended']} ended,"
        f" {c['refused']} refused, {c['adopted']} adopted\n"
    )
    return 1 if forced else 0


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


async def _run_with_signals(dialer: Engine, err) -> bool:
    """Run the engine; True when a second signal cut it short."""
    forced = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async def engine_then_stop() -> None:
                await dialer.run()
                nursery.cancel_scope.cancel()

            nursery.start_soon(engine_then_stop)
            count = 0
            async for signum in signals:
                count += 1
                if count == 1:
                    err.write(f"dialer: {signal.Signals(signum).name}: draining calls in flight"
                              " (again to exit at once)\n")
                    dialer.drain()
                else:
                    err.write("dialer: exiting now; a restart reconciles the calls in flight\n")
                    forced = True
                    nursery.cancel_scope.cancel()
                    break
    return forced
