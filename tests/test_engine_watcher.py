"""The engine's campaign watcher alone: snapshots of the campaigns at each
poll, supervisor commands marked applied, stopping and finished campaigns
settled, pauses it is asked for written as a supervisor's."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
import trio

from dialer.campaigns import control
from dialer.ami.pool import AMIPool
from dialer.engine.database import Database
from dialer.engine.settings import EngineClock, EngineSettings
from dialer.engine.watcher import PAUSES, CampaignWatcher
from dialer.errors import UserError
from dialer.models import Campaign, Lead, SupervisorCommand
from tests.engine_harness import BUSINESS_HOURS, make_campaign, numbers

NOW = dt.datetime.fromtimestamp(BUSINESS_HOURS, dt.UTC).replace(tzinfo=None)


def make_watcher(sqlite_sessions, campaigns=None) -> CampaignWatcher:
    return CampaignWatcher(
        Database(sqlite_sessions, timeout=10.0, thread=False), EngineClock(epoch=BUSINESS_HOURS), EngineSettings(),
        engine_id="e1", lease_owner="e1/run", run_token="run", campaigns=campaigns,
        servers=AMIPool([], now=trio.current_time()))


def state(sqlite_sessions, name="spring") -> str:
    with sqlite_sessions.begin() as s:
        return s.scalar(sa.select(Campaign.state).where(Campaign.name == name))


async def test_each_poll_hands_out_a_fresh_snapshot(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, phones=numbers(2))
    watcher = make_watcher(sqlite_sessions)
    await watcher.load()
    (run,) = watcher.runs.values()
    first = run.campaign
    assert (first.name, first.state) == ("spring", "running")
    with sqlite_sessions.begin() as s:
        control.issue(s, "spring", "pause", now=NOW)
    assert run.state == "running"  # a snapshot: not changed under its readers
    polled = await watcher.poll()
    assert polled is not None and polled.orphans == [] and polled.stats_due
    assert run.campaign is not first and run.state == "paused" and first.state == "running"
    with sqlite_sessions.begin() as s:
        assert s.scalar(sa.select(SupervisorCommand.applied_at)) == NOW
    assert (await watcher.poll()).stats_due is False  # every stats_interval only


async def test_a_name_that_does_not_exist_is_refused(clock, sqlite_sessions):
    make_campaign(sqlite_sessions)
    with pytest.raises(UserError, match="no campaign named 'autumn'"):
        await make_watcher(sqlite_sessions, ["spring", "autumn"]).load()


async def test_stopping_and_finished_campaigns_are_settled(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, "spring", phones=numbers(1), state="stopping")
    make_campaign(sqlite_sessions, "autumn", phones=numbers(1, "+1212666"))
    watcher = make_watcher(sqlite_sessions)
    await watcher.load()
    autumn = next(r for r in watcher.runs.values() if r.campaign.name == "autumn")
    await watcher.poll()
    assert (state(sqlite_sessions, "spring"), state(sqlite_sessions, "autumn")) == ("stopped", "running")
    # autumn's hopper came back empty and it has no lead left to dial: done.
    with sqlite_sessions.begin() as s:
        s.execute(sa.update(Lead).values(state="done", next_attempt_at=None))
    autumn.hopper_empty_until = trio.current_time() + 1.0
    await watcher.poll()
    assert state(sqlite_sessions, "autumn") == "done" and watcher.all_finished()


async def test_pauses_asked_for_are_written_as_the_engine_s(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, phones=numbers(1))
    watcher = make_watcher(sqlite_sessions)
    await watcher.load()
    (run,) = watcher.runs.values()
    paused = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watcher.run_pauses, lambda: paused.append(trio.current_time()))
        watcher.request_pause(run, "circuit breaker: 20 calls in a row failed at once")
        watcher.request_pause(run, "again")  # paused already: said, not written
        await trio.sleep(0)
        while len(paused) < 2:
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert paused == [0.0, 0.0]
    assert state(sqlite_sessions) == "paused"
    with sqlite_sessions.begin() as s:
        rows = s.execute(sa.select(SupervisorCommand.command, SupervisorCommand.reason,
                                   SupervisorCommand.issued_by)).all()
    assert rows == [("pause", "circuit breaker: 20 calls in a row failed at once", "engine e1")]


async def test_the_pause_channel_is_bounded(clock, sqlite_sessions, caplog):
    make_campaign(sqlite_sessions)
    watcher = make_watcher(sqlite_sessions)
    await watcher.load()
    (run,) = watcher.runs.values()
    for _ in range(PAUSES + 1):
        watcher.request_pause(run, "breaker")
    assert watcher.pauses.statistics().current_buffer_used == PAUSES
    assert f"pause not queued ({PAUSES} waiting)" in caplog.text
