"""The one-command demo: a whole campaign against the simulated Asterisk, in one process.

:func:`run_demo` migrates a SQLite database, creates a campaign, loads
``sample_leads.csv``, starts it, runs the simulated Asterisk on a free loopback
port and the engine against it until every lead is dialed (pausing and
resuming once on the way, as a supervisor would), and returns the report.
Both the simulator and the engine clock run ``speed`` times faster than real
time, so a shift of calls takes about a minute.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
import trio

from dialer import db, reports
from dialer.campaigns import control
from dialer.leads.calling_hours import is_callable
from dialer.campaigns import calling_window, create_campaign
from dialer.config import AMIServerConfig
from dialer.engine import Engine, EngineSettings
from dialer.leads.importer import import_leads
from dialer.models import Lead
from dialer.resources import shipped
from dialer.sim import SimAsterisk

CAMPAIGN = "demo"
SAMPLE_LEADS = shipped("sample_leads.csv")
# When the calling window is shut somewhere, the engine clock starts at this UTC
# hour of the day: 14:00 in New York (EST), 09:00 in Honolulu.
SHIFTED_START_HOUR = 19
# The window must stay open this long from the start (engine-clock time).
WINDOW_MARGIN = dt.timedelta(hours=1)
SECRET = "dialerpass"


@dataclasses.dataclass
class DemoResult:
    report: dict[str, Any]
    leads: int
    shifted_epoch: float | None
    counters: dict[str, int]


def demo_epoch(now: dt.datetime, timezones: list[str], campaign) -> float | None:
    """None when every lead's zone may be called from ``now`` (aware UTC) for an
    hour; else the epoch seconds of 19:00 UTC on ``now``'s date."""
    window = calling_window(campaign)
    later = now + WINDOW_MARGIN
    if all(is_callable(tz, window, now) and is_callable(tz, window, later) for tz in timezones):
        return None
    start = dt.datetime.combine(now.date(), dt.time(SHIFTED_START_HOUR), tzinfo=dt.UTC)
    return start.timestamp()


class _Progress:
    """Calls ended out of leads: a rich bar on a terminal, else a line per quarter."""

    def __init__(self, out: TextIO, total: int, tty: bool) -> None:
        self.out, self.total, self.tty = out, total, tty
        self.bar = None
        self.task = None
        self.printed = -1
        self.last_line = ""

    def __enter__(self) -> "_Progress":
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("dialing"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                TimeElapsedColumn(), console=Console(file=self.out), transient=False,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, engine: Engine, *, final: bool = False) -> None:
        """Show the calls ended so far: a line per quarter of the leads, and with
        ``final`` the engine's last word (the campaign's end state) unless that
        line was just printed."""
        done = engine.counters["ended"]
        status = next(iter(engine.runs.values()), None)
        state = status.state if status is not None else "?"
        text = f"{state}, {engine.in_flight()} in flight"
        if self.bar is not None:
            self.bar.update(self.task, completed=done, description=text)
            return
        quarter = math.floor(4 * done / self.total) if self.total else 4
        line = f"  {done}/{self.total} calls ended ({text})\n"
        if quarter > self.printed or (final and line != self.last_line):
            self.printed = quarter
            self.last_line = line
            self.out.write(line)
            self.out.flush()

    def note(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            self.out.write(text + "\n")
            self.out.flush()


async def run_demo(
    directory: Path,
    *,
    leads_file: Path = SAMPLE_LEADS,
    speed: float = 20.0,
    out: TextIO,
    tty: bool = False,
    db_thread: bool = True,
    now: Callable[[], float] = time.time,
    pause_for: float = 2.0,
    web: Any = None,
) -> DemoResult:
    """The whole demo in ``directory`` (which holds the database afterwards).

    ``pause_for`` is how long the campaign stays paused, in real seconds.
    ``db_thread=False`` keeps database work in the trio thread (for trio's
    mock clock). With ``web`` (a :class:`dialer.web.server.Bind`) the web
    console is served there with a user ``demo`` (admin, a new password
    printed), the pause and resume are left to whoever watches, and once every
    lead is dialed the console stays open until SIGINT/SIGTERM.
    """
    url = f"sqlite:///{directory / 'dialer.db'}"
    secret_file = directory / "ami-secret"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    engine = db.create_engine(url)
    try:
        db.upgrade(engine)
        sessions = db.session_factory(engine)
        real_now = dt.datetime.fromtimestamp(now(), dt.UTC)
        with sessions.begin() as s:
            campaign = create_campaign(
                s, CAMPAIGN, mode="progressive", channel="Local/{digits}@carrier",
                context="dialer-connect", queue="agents", max_attempts=1, max_concurrent=30,
            )
            result = import_leads(s, campaign, leads_file, rejects=directory / "rejects.csv",
                                  now=real_now.replace(tzinfo=None))
            zones = list(s.scalars(sa.select(Lead.timezone).distinct()))
            epoch = demo_epoch(real_now, zones, campaign)
            start = real_now
            if epoch is not None and epoch < real_now.timestamp():
                # Leads are due from their load time: not after the engine's clock.
                start = dt.datetime.fromtimestamp(epoch, dt.UTC)
                s.execute(sa.update(Lead).values(next_attempt_at=start.replace(tzinfo=None),
                                                 created_at=start.replace(tzinfo=None)))
            control.issue(s, CAMPAIGN, "start", reason="demo", issued_by="demo",
                          now=start.replace(tzinfo=None))
            total = s.scalar(sa.select(sa.func.count()).select_from(Lead)) or 0
        out.write(f"{leads_file.name}: {result.summary().split(': ', 1)[-1]}\n")
        if epoch is not None:
            at = dt.datetime.fromtimestamp(epoch, dt.UTC)
            out.write(f"calling hours are shut in some lead time zones now: the engine clock starts at"
                      f" {at:%Y-%m-%d %H:%M} UTC (14:00 in New York, 09:00 in Honolulu)\n")
        out.write(f"campaign {CAMPAIGN}: running ({total} leads; simulator and engine at {speed:g}x)\n")
        out.flush()

        async with trio.open_nursery() as nursery:
            sim = SimAsterisk(speed=speed)
            port = await nursery.start(sim.serve, "127.0.0.1", 0)
            server = AMIServerConfig(
                name="sim", host="127.0.0.1", port=port, username="dialer", secret_file=secret_file,
                connections=2, originate_rate=20.0, burst=5, max_in_flight=200,
            )
            if web is not None:
                await _open_console(nursery, sessions, web, out)
            with _Progress(out, total, tty) as progress:
                dialer_engine = Engine(
                    sessions, [server], settings=EngineSettings(speed=speed), campaigns=[CAMPAIGN],
                    until_done=True, on_progress=progress.update, db_thread=db_thread, epoch=epoch,
                )
                if web is None:
                    nursery.start_soon(_pause_and_resume, dialer_engine, total, progress, pause_for, db_thread)
                with trio.fail_after(math.inf if web is not None else 3600):
                    await dialer_engine.run()
                progress.update(dialer_engine, final=True)
            if web is not None:
                await _wait_for_signal(out)
            nursery.cancel_scope.cancel()

        report_now = dialer_engine.clock.utcnow() if dialer_engine.clock else real_now.replace(tzinfo=None)
        with sessions.begin() as s:
            report = reports.build_report(s, CAMPAIGN, now=report_now)
        return DemoResult(report=report, leads=total, shifted_epoch=epoch, counters=dict(dialer_engine.counters))
    finally:
        engine.dispose()


async def _pause_and_resume(engine: Engine, total: int, progress: _Progress, pause_for: float,
                            db_thread: bool) -> None:
    """Once a third of the calls have ended: pause, wait, resume, as from a shell."""
    while engine.counters["ended"] < max(1, total // 3):
        await trio.sleep(0.1)

    def issue(command: str, now: dt.datetime) -> str:
        with db.deadline(engine.sessions.kw["bind"]), engine.sessions.begin() as s:
            c = control.issue(s, CAMPAIGN, command, reason="demo", issued_by="demo", now=now)
            return c.state

    async def run(command: str) -> str:
        assert engine.clock is not None
        now = engine.clock.utcnow()
        if db_thread:
            return await trio.to_thread.run_sync(issue, command, now)
        return issue(command, now)

    state = await run("pause")
    progress.note(f"dialer pause {CAMPAIGN}  -> {state}: no new calls; calls in progress go on")
    await trio.sleep(pause_for)
    state = await run("resume")
    progress.note(f"dialer resume {CAMPAIGN} -> {state}")


async def _open_console(nursery: trio.Nursery, sessions, bind: Any, out: TextIO) -> None:
    """Serve the web console at ``bind`` (or, when that port is taken, at a free one)."""
    import functools
    import secrets

    from dialer.audit import Actor
    from dialer.web import auth
    from dialer.web.server import Bind, serve

    password = secrets.token_urlsafe(12)
    with sessions.begin() as s:
        auth.add_user(s, "demo", "admin", password, actor=Actor("demo", "cli", bind.host))
    try:
        url = await nursery.start(functools.partial(serve, sessions, bind))
    except* OSError:
        url = None
    if url is None:
        url = await nursery.start(functools.partial(serve, sessions, Bind(bind.host, 0)))
    out.write(f"web console: {url}  (user demo, password {password})\n")
    out.flush()


async def _wait_for_signal(out: TextIO) -> None:
    import signal

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        out.write("every lead is dialed; the console stays open (Ctrl-C prints the report and exits)\n")
        out.flush()
        async for _ in signals:
            return
