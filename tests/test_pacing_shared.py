"""Two engine processes dialing one predictive campaign for one queue of agents,
sharing its free agents and its abandon budget through PostgreSQL."""

from __future__ import annotations

import collections

import pytest
import sqlalchemy as sa

from dialer import db
from dialer.models import CallAttempt, PacingDecisionRow
from tests.engine_harness import business_zone, make_campaign, numbers
from tests.sim_thread import SimThread
from tests.engine_processes import start_engine, write_config

pytestmark = pytest.mark.usefixtures("no_engine_left_behind")  # conftest.py


@pytest.mark.postgres
def test_two_engines_on_one_campaign_share_its_agents_and_abandon_budget(pg_url, tmp_path):
    engine = db.create_engine(pg_url)
    sessions = db.session_factory(engine)
    make_campaign(sessions, phones=numbers(300), mode="predictive", max_concurrent=60, tz=business_zone())
    # One Asterisk (the simulator's 3 agents in queue "agents"), known by the
    # same name to both engines.
    with SimThread(speed=10) as sim:
        procs = [
            start_engine(write_config(tmp_path / f"{name}.toml", sim.port, name="pbx"), pg_url,
                         tmp_path / f"{name}.log", "--engine-id", name)
            for name in ("a", "b")
        ]
        for proc in procs:
            proc.communicate(timeout=600)
        for name, proc in zip("ab", procs):
            assert proc.returncode == 0, (tmp_path / f"{name}.log").read_text()
        channels = sim.originated_channels()
    assert len(channels) == len(set(channels)) == 300
    with sessions.begin() as s:
        by_engine = collections.Counter(s.scalars(sa.select(CallAttempt.engine_id)))
        answered = s.scalar(sa.select(sa.func.count()).where(CallAttempt.answered_at.is_not(None)))
        dropped = s.scalar(sa.select(sa.func.count()).where(CallAttempt.disposition == "dropped"))
        rows = s.execute(sa.select(PacingDecisionRow.engine_id, PacingDecisionRow.engines,
                                   PacingDecisionRow.other_engines_ringing, PacingDecisionRow.calls_placed)).all()
    assert set(by_engine) == {"a", "b"} and min(by_engine.values()) > 30, by_engine
    # Together they stayed inside the budget one engine keeps...
    assert answered >= 150
    assert dropped / answered <= 0.03, (dropped, answered)
    # ...because each engine saw the other and counted its ringing calls.
    for name in "ab":
        mine = [r for r in rows if r.engine_id == name]
        assert any(r.engines == 2 for r in mine), name
        assert any(r.other_engines_ringing > 0 for r in mine), name
    engine.dispose()
