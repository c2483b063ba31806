"""The engine's outcome writer alone: batches every flush interval, nothing
dropped while the database is busy, a final flush bounded in time."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3

import pytest
import sqlalchemy as sa
import trio
import trio.testing

from dialer import db
from dialer.leads import hopper
from dialer.calls.tracker import CallTracker, TrackedCall
from dialer.engine.database import Database
from dialer.engine.settings import FINAL_FLUSH_SECONDS, EngineClock
from dialer.engine.writer import OutcomeWriter
from dialer.models import CallAttempt, Campaign, Lead
from tests.engine_harness import BUSINESS_HOURS, make_campaign, numbers

NOW = dt.datetime.fromtimestamp(BUSINESS_HOURS, dt.UTC).replace(tzinfo=None)


@pytest.fixture
def clock():
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def url(sqlite_url):
    return sqlite_url


@pytest.fixture
def sessions(url):
    engine = db.create_engine(url)
    yield db.session_factory(engine)
    engine.dispose()


def start_calls(sessions, count: int) -> tuple[CallTracker, list[TrackedCall]]:
    """``count`` attempts started by engine e1, and the tracker following them."""
    make_campaign(sessions, phones=numbers(count), mode="unattended", queue=None)
    with sessions.begin() as s:
        c = s.scalars(sa.select(Campaign)).one()
        leads = hopper.claim_leads(s, c, engine_id="e1", now=NOW, limit=count,
                                   timezones=hopper.campaign_timezones(s, c.id))
        attempts = hopper.start_attempts(s, c, [(lead, "pbx1", "pbx1#1") for lead in leads],
                                         engine_id="e1", now=NOW)
    tracker = CallTracker()
    calls = []
    for a in attempts:
        call = TrackedCall(attempt_id=a.attempt_id, campaign_id=c.id, lead_id=a.lead.id, action_id=a.action_id,
                           channel_id=a.channel_id, other_channel_id=a.other_channel_id, server="pbx1",
                           connection="pbx1#1", unattended=True, queued_at=BUSINESS_HOURS)
        tracker.add(call)
        calls.append(call)
    return tracker, calls


def make_writer(sessions, flush_interval=0.1) -> OutcomeWriter:
    database = Database(sessions, timeout=10.0, thread=False)
    return OutcomeWriter(database, EngineClock(epoch=BUSINESS_HOURS), engine_id="e1",
                         flush_interval=flush_interval, rules=lambda: {})


def originated(sessions) -> int:
    with sessions.begin() as s:
        return s.scalar(sa.select(sa.func.count()).where(CallAttempt.originated_at.is_not(None)))


async def test_steps_are_written_together_every_flush_interval(clock, sessions):
    tracker, calls = start_calls(sessions, 3)
    writer = make_writer(sessions)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        for call in calls:
            writer.add(tracker.originated(call.action_id, BUSINESS_HOURS + 1))
        assert writer.pending_steps() == 3 and not writer.idle()
        await trio.sleep(0.099)
        assert originated(sessions) == 0
        await trio.sleep(0.002)
        assert originated(sessions) == 3
        assert writer.pending_steps() == 0 and writer.idle()
        nursery.cancel_scope.cancel()


async def test_attempts_never_sent_are_handed_back(clock, sessions):
    _, calls = start_calls(sessions, 2)
    writer = make_writer(sessions)
    writer.cancel(calls[0].attempt_id, calls[0].lead_id)
    await writer.flush()
    with sessions.begin() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(CallAttempt)) == 1
        lead = s.get(Lead, calls[0].lead_id)
        assert (lead.state, lead.attempts) == ("new", 0)
    assert writer.idle()


def lock(url) -> sqlite3.Connection:
    blocker = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


@pytest.fixture
def impatient(url):
    engine = db.create_engine(url)
    sa.event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout = 10"))
    yield db.session_factory(engine)
    engine.dispose()


async def test_a_busy_database_keeps_every_step_in_order(clock, sessions, impatient, url, caplog):
    tracker, calls = start_calls(sessions, 2)
    writer = make_writer(impatient)
    writer.add(tracker.originated(calls[0].action_id, BUSINESS_HOURS + 1))
    blocker = lock(url)
    await writer.flush()
    assert writer.pending_steps() == 1
    assert "outcomes not written yet" in caplog.text
    writer.add(tracker.originated(calls[1].action_id, BUSINESS_HOURS + 2))
    blocker.rollback()
    blocker.close()
    await writer.flush()
    assert writer.pending_steps() == 0
    with sessions.begin() as s:
        got = dict(s.execute(sa.select(CallAttempt.id, CallAttempt.originated_at)).all())
    assert got == {calls[0].attempt_id: NOW + dt.timedelta(seconds=1),
                   calls[1].attempt_id: NOW + dt.timedelta(seconds=2)}


async def test_the_final_flush_stops_trying_after_its_bound(clock, sessions, impatient, url, caplog):
    caplog.set_level(logging.ERROR, logger="dialer.engine")
    tracker, calls = start_calls(sessions, 1)
    writer = make_writer(impatient)
    writer.add(tracker.originated(calls[0].action_id, BUSINESS_HOURS + 1))
    blocker = lock(url)
    started = trio.current_time()
    await writer.final_flush()
    assert trio.current_time() - started == FINAL_FLUSH_SECONDS
    assert writer.pending_steps() == 1
    assert "1 call steps and 0 unsent attempts not written" in caplog.text
    blocker.rollback()
    blocker.close()
    await writer.final_flush()
    assert writer.pending_steps() == 0 and originated(sessions) == 1
