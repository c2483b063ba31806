"""Whole engines as processes: killed with SIGKILL and restarted, and two
engines sharing one PostgreSQL database."""

from __future__ import annotations

import collections
import signal
import threading

import pytest
import sqlalchemy as sa

from dialer import db
from dialer.models import CallAttempt, Lead
from tests.engine_harness import business_zone, make_campaign, numbers
from tests.engine_processes import start_engine, write_config
from tests.sim_thread import SimThread

pytestmark = pytest.mark.usefixtures("no_engine_left_behind")  # conftest.py


def pause(seconds: float) -> None:
    threading.Event().wait(seconds)


def wait_until(predicate, timeout: float, what: str) -> None:
    waited = 0.0
    while not predicate():
        if waited > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        pause(0.1)
        waited += 0.1


def count_attempts(sessions) -> int:
    with sessions.begin() as s:
        return s.scalar(sa.select(sa.func.count()).select_from(CallAttempt))


def check_each_lead_dialed_once(sessions, sims, total):
    """Every lead has exactly one attempt, settled; no number reached Asterisk
    twice; a number that never reached it has an unknown outcome (its
    Originate may have been cut off by the kill, and is never resent)."""
    with sessions.begin() as s:
        per_lead = collections.Counter(s.scalars(sa.select(CallAttempt.lead_id)))
        states = collections.Counter(s.scalars(sa.select(Lead.state)))
        open_attempts = s.scalar(sa.select(sa.func.count()).where(CallAttempt.ended_at.is_(None)))
        outcome = dict(s.execute(sa.select(CallAttempt.phone_e164, CallAttempt.disposition)).all())
    assert len(per_lead) == total and set(per_lead.values()) == {1}
    assert set(states) <= {"done", "exhausted"}, states
    assert open_attempts == 0
    channels = [c for sim in sims for c in sim.originated_channels()]
    assert len(channels) == len(set(channels))
    reached = {"+" + c.split("/")[1].split("@")[0] for c in channels}
    assert reached <= set(outcome)
    never = set(outcome) - reached
    assert all(outcome[p] == "unknown" for p in never), never
    return never


def test_sigkill_mid_campaign_loses_nothing_and_dials_nothing_twice(sqlite_url, tmp_path):
    engine = db.create_engine(sqlite_url)
    sessions = db.session_factory(engine)
    make_campaign(sessions, phones=numbers(300), mode="unattended", queue=None,
                  max_concurrent=1000, tz=business_zone())
    log = tmp_path / "engine.log"
    with SimThread(speed=10) as sim:
        config = write_config(tmp_path / "dialer.toml", sim.port)
        first = start_engine(config, sqlite_url, log)
        wait_until(lambda: count_attempts(sessions) >= 120, 60, "the first engine to dial")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = count_attempts(sessions)
        with sessions.begin() as s:
            in_flight = s.scalar(sa.select(sa.func.count()).where(CallAttempt.ended_at.is_(None)))
        assert in_flight > 0  # the kill left calls in flight
        second = start_engine(config, sqlite_url, log)
        out, _ = second.communicate(timeout=180)
        assert second.returncode == 0, log.read_text()
        assert b"adopted" in out
        never = check_each_lead_dialed_once(sessions, [sim], 300)
    with sessions.begin() as s:
        unknown = s.scalar(sa.select(sa.func.count()).where(CallAttempt.disposition == "unknown"))
    # Only calls in flight at the kill can be unknown, and only if they ended unseen.
    assert len(never) <= unknown <= in_flight
    assert killed_at < 300
    engine.dispose()


@pytest.mark.postgres
def test_two_engines_share_one_postgresql_and_never_claim_the_same_lead(pg_url, tmp_path):
    engine = db.create_engine(pg_url)
    sessions = db.session_factory(engine)
    make_campaign(sessions, phones=numbers(400), mode="unattended", queue=None,
                  max_concurrent=1000, tz=business_zone())
    with SimThread(speed=10) as sim_a, SimThread(speed=10) as sim_b:
        engines = [
            start_engine(write_config(tmp_path / f"{name}.toml", sim.port, name=f"pbx-{name}"), pg_url,
                         tmp_path / f"{name}.log", "--engine-id", name)
            for name, sim in (("a", sim_a), ("b", sim_b))
        ]
        for proc in engines:
            proc.communicate(timeout=180)
            assert proc.returncode == 0
        assert check_each_lead_dialed_once(sessions, [sim_a, sim_b], 400) == set()
        a, b = len(sim_a.originated_channels()), len(sim_b.originated_channels())
    assert a > 50 and b > 50, (a, b)
    with sessions.begin() as s:
        engines_used = set(s.scalars(sa.select(CallAttempt.engine_id)))
    assert engines_used == {"a", "b"}
    engine.dispose()


def test_sigterm_drains_and_a_second_signal_exits_at_once(sqlite_url, tmp_path):
    engine = db.create_engine(sqlite_url)
    sessions = db.session_factory(engine)
    make_campaign(sessions, phones=numbers(400), mode="unattended", queue=None,
                  max_concurrent=1000, tz=business_zone())
    log = tmp_path / "engine.log"
    with SimThread(speed=2) as sim:
        config = write_config(tmp_path / "dialer.toml", sim.port, rate=20, speed=2)
        proc = start_engine(config, sqlite_url, log)
        wait_until(lambda: count_attempts(sessions) >= 40, 60, "the engine to dial")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
        assert proc.returncode == 0, log.read_text()
        assert "draining" in log.read_text()
        assert "alembic" not in log.read_text().lower()  # no migration chatter at start-up
        with sessions.begin() as s:
            placed = count_attempts(sessions)
            open_attempts = s.scalar(sa.select(sa.func.count()).where(CallAttempt.ended_at.is_(None)))
            waiting = s.scalar(sa.select(sa.func.count()).where(Lead.state == "new"))
            leased = s.scalar(sa.select(sa.func.count()).where(Lead.lease_owner.is_not(None)))
        # every call placed was followed to its end; the rest wait for the next run
        assert open_attempts == 0 and leased == 0
        assert waiting == 400 - placed and placed < 400

        # A second signal does not wait for the calls in flight.
        proc = start_engine(config, sqlite_url, log)
        wait_until(lambda: count_attempts(sessions) >= placed + 40, 60, "the engine to dial again")
        proc.send_signal(signal.SIGTERM)
        pause(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
        assert proc.returncode == 130  # as for any command interrupted twice
        assert "exiting now" in log.read_text()
        with sessions.begin() as s:
            left_open = s.scalar(sa.select(sa.func.count()).where(CallAttempt.ended_at.is_(None)))
        assert left_open > 0  # what a restart reconciles
    engine.dispose()
