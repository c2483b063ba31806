"""Running the engine against the real Asterisk of tests/asterisk_harness.py.

An :class:`EventLog` watches the Asterisk on a connection of its own (the
``admin`` user, every event class), so tests compare what the dialer stored
with what Asterisk itself said and when (its ``Timestamp:`` headers,
``timestampevents = yes``). :func:`run_until_done` runs one engine, on the
real clock, until its campaigns are finished.
"""

from __future__ import annotations

import datetime as dt
import threading

import sqlalchemy as sa
import trio

from dialer import db
from dialer.engine import Engine, EngineSettings
from dialer.models import CallAttempt, Campaign
from tests.engine_harness import business_zone, make_campaign


def fast_settings(**overrides) -> EngineSettings:
    """Engine settings that keep a real-time test short: quick polls and flushes."""
    values = dict(poll_interval=0.1, flush_interval=0.05, housekeeping_interval=1.0,
                  stats_interval=1.0, lease=60.0)
    values.update(overrides)
    return EngineSettings(**values)


def sessions_for(url: str):
    engine = db.create_engine(url)
    return engine, db.session_factory(engine)


def phones(digits: str, *, start: int = 0, prefix: str = "+1212555") -> list[str]:
    """New York numbers ending in the given digits, in order (routable by the
    test dialplan: 1 and ten digits)."""
    return [f"{prefix}{(start + i) % 1000:03d}{d}" for i, d in enumerate(digits)]


def campaign(sessions, name: str, numbers, **settings):
    """A running campaign on the real Asterisk's dialplan, leads inside their calling window."""
    settings.setdefault("tz", business_zone())
    return make_campaign(sessions, name, list(numbers), **settings)


async def run_until_done(sessions, servers, *, timeout: float = 60.0, settings=None, **kwargs) -> Engine:
    engine = Engine(sessions, servers, settings=settings or fast_settings(), until_done=True, **kwargs)
    with trio.fail_after(timeout):
        await engine.run()
    return engine


def attempts(sessions, campaign_name: str | None = None) -> list[CallAttempt]:
    with sessions.begin() as s:
        stmt = sa.select(CallAttempt).order_by(CallAttempt.id)
        if campaign_name is not None:
            stmt = stmt.join(Campaign, Campaign.id == CallAttempt.campaign_id).where(
                Campaign.name == campaign_name)
        rows = list(s.scalars(stmt))
        for row in rows:
            s.expunge(row)
    return rows


def epoch(value: dt.datetime | None) -> float | None:
    return None if value is None else value.replace(tzinfo=dt.UTC).timestamp()


class EventLog:
    """Every event of one Asterisk, read in a thread on the admin user's connection.

    ``with EventLog(asterisk) as log: ...``; afterwards ``log.events`` holds
    them in arrival order (codec ``Message`` objects)."""

    def __init__(self, asterisk) -> None:
        self._ami = asterisk.ami("admin", events="on")
        self.events: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="asterisk-events", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        from dialer.ami.codec.message import Banner

        try:
            while not self._stop.is_set():
                try:
                    message = self._ami._next(0.2)
                except TimeoutError:
                    continue
                if not isinstance(message, Banner) and message.kind == "event":
                    self.events.append(message)
        except BaseException as exc:  # reported by the test that reads the log
            if not self._stop.is_set():
                self.error = exc

    def __enter__(self) -> "EventLog":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ami.close()

    def named(self, name: str, **match: str) -> list:
        return [e for e in self.events if e.name == name and all(e.get(k) == v for k, v in match.items())]

    def first(self, name: str, **match: str):
        found = self.named(name, **match)
        return found[0] if found else None

    @staticmethod
    def at(event) -> float:
        """Asterisk's own time of an event (its Timestamp: header)."""
        return float(event.get("Timestamp"))

    def call_events(self, channel_id: str) -> list:
        """The events of one call: its channels share the Linkedid the dialer chose."""
        return [e for e in self.events
                if channel_id in (e.get("Linkedid"), e.get("DestLinkedid"), e.get("Uniqueid"))]
