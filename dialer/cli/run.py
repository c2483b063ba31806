"""``dialer run``: the engine, until its campaigns are done or it is interrupted."""

from __future__ import annotations

import logging
import signal

from dialer.errors import UserError

# Exit status of a run cut short by a second SIGINT/SIGTERM (as for any
# command interrupted with Ctrl-C).
FORCED_EXIT = 130


def register(subparsers, common) -> None:
    p = subparsers.add_parser(
        "run", parents=[common], help="run the dialing engine",
        description="Dial every running campaign (or those named) through the AMI servers of the"
        " configuration file. SIGINT/SIGTERM drain: no new calls, calls in flight are followed"
        " to their end; a second signal exits at once (status 130).",
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


def configure_logging(err, *, debug: bool) -> None:
    """The engine's log on stderr; libraries' start-up chatter (Alembic's INFO lines) kept out."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=err,
    )
    if not debug:
        logging.getLogger("alembic").setLevel(logging.WARNING)


def run(args, out, err) -> int:
    import trio

    from dialer import db
    from dialer.config import load_config
    from dialer.engine import Engine, EngineSettings

    config = load_config(args.config)
    config.server()  # at least one [[ami]] server, the same check as for dialer ami
    settings = EngineSettings.from_config(config.engine, f"{args.config}: [engine]")
    for server in config.ami:
        server.read_secret()  # a missing secret is reported before anything starts
    configure_logging(err, debug=args.debug)
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
    return FORCED_EXIT if forced else 0


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


async def _run_with_signals(dialer, err) -> bool:
    """Run the engine; True when a second signal cut it short."""
    import trio

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
