"""The engine's call follower alone: events to call steps for the writer,
ended calls teaching pacing and the circuit breaker, opt-outs listed (and
tried again a second later while the database is busy)."""

from __future__ import annotations

import sqlalchemy as sa
import trio

from dialer.ami.codec.message import Message
from dialer.calls.agents import AgentBoard
from dialer.calls.tracker import CallTracker, Step
from dialer.engine.campaign import CampaignRun
from dialer.engine.database import Database
from dialer.engine.follower import CallFollower
from dialer.engine.settings import EngineClock, EngineSettings
from dialer.engine.watcher import CampaignWatcher
from dialer.models import DncNumber
from tests.engine_harness import BUSINESS_HOURS, lock, start_calls


class Follower:
    """A follower and what it hands the other parts."""

    def __init__(self, sessions, runs: dict[int, CampaignRun], tracker: CallTracker) -> None:
        self.added: list = []        # (transitions, event) to the writer
        self.uncharged: list = []
        self.pauses: list = []
        self.ended: list = []
        self.wakes = 0
        self.follower = CallFollower(
            database=Database(sessions, timeout=10.0, thread=False), clock=EngineClock(epoch=BUSINESS_HOURS),
            speed=1.0, tracker=tracker, agents=AgentBoard(), runs=runs,
            add=lambda transitions, event: self.added.append((list(transitions), event)),
            uncharge=lambda attempt, lead: self.uncharged.append((attempt, lead)),
            request_pause=lambda run, reason: self.pauses.append((run.id, reason)),
            on_ended=self.ended.append, wake=self.wake)

    def wake(self) -> None:
        self.wakes += 1


async def runs_of(sessions, breaker_failures=20) -> dict[int, CampaignRun]:
    from dialer.ami.pool import AMIPool

    watcher = CampaignWatcher(Database(sessions, timeout=10.0, thread=False), EngineClock(epoch=BUSINESS_HOURS),
                              EngineSettings(breaker_failures=breaker_failures), engine_id="e1",
                              lease_owner="e1/run", run_token="run", campaigns=None,
                              servers=AMIPool([], now=trio.current_time()))
    await watcher.load()
    return watcher.runs


async def test_an_event_s_steps_go_to_the_writer_with_the_event(clock, sqlite_sessions):
    tracker, (call,) = start_calls(sqlite_sessions, 1)
    f = Follower(sqlite_sessions, await runs_of(sqlite_sessions), tracker)
    event = Message([("Event", "OriginateResponse"), ("ActionID", call.action_id), ("Response", "Success"),
                     ("Uniqueid", call.channel_id), ("Reason", "4")])
    await f.follower.on_event("pbx1", event)
    ((transitions, logged),) = f.added
    # Answered (reason 4) in an unattended campaign with no channel to follow: over.
    assert logged is event
    assert [t.step for t in transitions] == [Step.ORIGINATED, Step.RINGING, Step.ANSWERED, Step.ENDED]
    assert {t.at for t in transitions} == {BUSINESS_HOURS}  # the engine clock's now
    assert f.follower.counters["events"] == 1 and f.ended == [call]
    assert f.wakes == 2  # answered, then ended: the dialer looks again each time


async def test_queue_member_events_wake_the_dialer_and_make_no_step(clock, sqlite_sessions):
    f = Follower(sqlite_sessions, {}, CallTracker())
    await f.follower.on_event("pbx1", Message([
        ("Event", "QueueMemberAdded"), ("Queue", "agents"), ("Interface", "Local/agent1@agents"),
        ("MemberName", "Agent1"), ("Status", "1"), ("Paused", "0")]))
    assert f.wakes == 1 and f.added == []
    assert f.follower.agents.counts("agents", BUSINESS_HOURS)[:2] == (1, 1)


async def test_calls_failing_at_once_trip_the_breaker(clock, sqlite_sessions):
    tracker, calls = start_calls(sqlite_sessions, 3)
    runs = await runs_of(sqlite_sessions, breaker_failures=2)
    (run,) = runs.values()
    f = Follower(sqlite_sessions, runs, tracker)
    for call in calls:
        run.calls.add(call)
    for i, call in enumerate(calls[:2]):
        f.follower.apply(tracker.refused(call.action_id, BUSINESS_HOURS + 1, "Local/x: no such channel type"))
    assert f.ended == calls[:2] and run.calls == {calls[2]}
    assert f.follower.counters["breaker_trips"] == 1 and run.breaker.tripped
    assert f.uncharged == [(c.attempt_id, c.lead_id) for c in calls[:2]]
    ((campaign_id, reason),) = f.pauses
    assert campaign_id == run.id and reason.startswith("circuit breaker: 2 calls in a row failed at once")
    # Tripped: the next one fails uncharged, and asks for no second pause.
    f.follower.apply(tracker.refused(calls[2].action_id, BUSINESS_HOURS + 1, "again"))
    assert calls[2].charged is False and len(f.pauses) == 1 and len(f.uncharged) == 2


def opt_out(attempt_id: int) -> Message:
    return Message([("Event", "UserEvent"), ("UserEvent", "DialerOptOut"), ("Attempt", str(attempt_id))])


def listed(sessions) -> set[str]:
    with sessions.begin() as s:
        return set(s.scalars(sa.select(DncNumber.phone_e164)))


async def test_an_opt_out_is_listed_at_once(clock, sqlite_sessions):
    tracker, (call,) = start_calls(sqlite_sessions, 1)
    f = Follower(sqlite_sessions, {}, tracker)
    await f.follower.on_event("pbx1", opt_out(call.attempt_id))
    assert listed(sqlite_sessions) == {"+12125551000"} and f.follower.counters["opt_outs"] == 1


async def test_an_opt_out_the_database_did_not_take_is_tried_again_a_second_later(clock, sqlite_sessions, impatient, sqlite_url):
    tracker, (call,) = start_calls(sqlite_sessions, 1)
    f = Follower(impatient, {}, tracker)
    blocker = lock(sqlite_url)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(f.follower.run)
        await f.follower.on_event("pbx1", opt_out(call.attempt_id))
        assert f.follower.counters["opt_outs"] == 0
        await trio.sleep(0.5)
        blocker.rollback()
        blocker.close()
        await trio.sleep(0.499)
        assert listed(sqlite_sessions) == set()
        await trio.sleep(0.002)
        assert listed(sqlite_sessions) == {"+12125551000"} and f.follower.counters["opt_outs"] == 1
        nursery.cancel_scope.cancel()
