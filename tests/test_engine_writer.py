"""The engine's outcome writer alone: batches every flush interval, nothing
dropped while the database is busy, a final flush bounded in time."""

from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
import trio

from dialer.engine.database import Database
from dialer.engine.settings import FINAL_FLUSH_SECONDS, EngineClock
from dialer.engine.writer import OutcomeWriter
from dialer.models import CallAttempt, Lead
from tests.engine_harness import BUSINESS_HOURS, lock, start_calls

NOW = dt.datetime.fromtimestamp(BUSINESS_HOURS, dt.UTC).replace(tzinfo=None)


def make_writer(sessions, flush_interval=0.1) -> OutcomeWriter:
    database = Database(sessions, timeout=10.0, thread=False)
    return OutcomeWriter(database, EngineClock(epoch=BUSINESS_HOURS), engine_id="e1",
                         flush_interval=flush_interval, rules=lambda: {})


def originated(sqlite_sessions) -> int:
    with sqlite_sessions.begin() as s:
        return s.scalar(sa.select(sa.func.count()).where(CallAttempt.originated_at.is_not(None)))


async def test_steps_are_written_together_every_flush_interval(clock, sqlite_sessions):
    tracker, calls = start_calls(sqlite_sessions, 3)
    writer = make_writer(sqlite_sessions)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        for call in calls:
            writer.add(tracker.originated(call.action_id, BUSINESS_HOURS + 1))
        assert writer.pending_steps() == 3 and not writer.idle()
        await trio.sleep(0.099)
        assert originated(sqlite_sessions) == 0
        await trio.sleep(0.002)
        assert originated(sqlite_sessions) == 3
        assert writer.pending_steps() == 0 and writer.idle()
        nursery.cancel_scope.cancel()


async def test_attempts_never_sent_are_handed_back(clock, sqlite_sessions):
    _, calls = start_calls(sqlite_sessions, 2)
    writer = make_writer(sqlite_sessions)
    writer.cancel(calls[0].attempt_id, calls[0].lead_id)
    await writer.flush()
    with sqlite_sessions.begin() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(CallAttempt)) == 1
        lead = s.get(Lead, calls[0].lead_id)
        assert (lead.state, lead.attempts) == ("new", 0)
    assert writer.idle()


async def test_a_busy_database_keeps_every_step_in_order(clock, sqlite_sessions, impatient, sqlite_url, caplog):
    tracker, calls = start_calls(sqlite_sessions, 2)
    writer = make_writer(impatient)
    writer.add(tracker.originated(calls[0].action_id, BUSINESS_HOURS + 1))
    blocker = lock(sqlite_url)
    await writer.flush()
    assert writer.pending_steps() == 1
    assert "outcomes not written yet" in caplog.text
    writer.add(tracker.originated(calls[1].action_id, BUSINESS_HOURS + 2))
    blocker.rollback()
    blocker.close()
    await writer.flush()
    assert writer.pending_steps() == 0
    with sqlite_sessions.begin() as s:
        got = dict(s.execute(sa.select(CallAttempt.id, CallAttempt.originated_at)).all())
    assert got == {calls[0].attempt_id: NOW + dt.timedelta(seconds=1),
                   calls[1].attempt_id: NOW + dt.timedelta(seconds=2)}


async def test_the_final_flush_stops_trying_after_its_bound(clock, sqlite_sessions, impatient, sqlite_url, caplog):
    caplog.set_level(logging.ERROR, logger="dialer.engine")
    tracker, calls = start_calls(sqlite_sessions, 1)
    writer = make_writer(impatient)
    writer.add(tracker.originated(calls[0].action_id, BUSINESS_HOURS + 1))
    blocker = lock(sqlite_url)
    started = trio.current_time()
    await writer.final_flush()
    assert trio.current_time() - started == FINAL_FLUSH_SECONDS
    assert writer.pending_steps() == 1
    assert "1 call steps and 0 unsent attempts not written" in caplog.text
    blocker.rollback()
    blocker.close()
    await writer.final_flush()
    assert writer.pending_steps() == 0 and originated(sqlite_sessions) == 1
