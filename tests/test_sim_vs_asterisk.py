"""The simulator side by side with the real Asterisk (see tests/fidelity.py): the
same campaign, and the same queue situations, give the same outcome per lead and
the same events per call on both."""

from __future__ import annotations

import shutil

import pytest

from dialer import db
from dialer.sim.scenario import Distribution
from tests import fidelity
from tests.engine_harness import business_zone, make_campaign

pytestmark = pytest.mark.asterisk

DIGITS = "0123456789" * 2


def _sessions(url):
    engine = db.create_engine(url)
    return engine, db.session_factory(engine)


def test_campaign_on_asterisk_and_on_the_simulator(asterisk, sqlite_url, tmp_path):
    sim_db = tmp_path / "sim.db"
    shutil.copy(sqlite_url.removeprefix("sqlite:///"), sim_db)
    sim_secret = tmp_path / "sim-secret"
    sim_secret.write_text(fidelity.sim_secret("dialer") + "\n")
    phones = fidelity.campaign_phones(DIGITS)
    runs = {}
    for side, url in (("real", sqlite_url), ("sim", f"sqlite:///{sim_db}")):
        engine, sessions = _sessions(url)
        try:
            make_campaign(sessions, "side", phones, mode="progressive", ring_timeout=15,
                          tz=business_zone())
            if side == "real":
                runs[side] = fidelity.on_asterisk(
                    asterisk, fidelity.run_campaign, sessions, asterisk.secret_file("dialer"),
                    asterisk.secrets["dialer"])
            else:
                runs[side] = fidelity.on_sim(
                    fidelity.run_campaign, sessions, sim_secret, fidelity.sim_secret("dialer"))
        finally:
            engine.dispose()
    real, sim = runs["real"], runs["sim"]
    assert len(real.outcomes) == len(phones) and real.events > 100
    differences = fidelity.compare_runs(real, sim)
    assert differences == [], "\n".join(map(str, differences))


# Three long calls (digit 9: answered after 2 s) take the three agents, who hang
# up about 6.5 s later (Answer, then Wait(6)); a call answered while they talk
# waits in the queue and gives up after Queue()'s 2 s (dropped); one answered
# 0.6 s before they are free keeps waiting (the queue tries its members once a
# second; ringinuse = no: no busy agent is rung) and reaches one (connected).
QUEUE_BUSY = [
    fidelity.Dial(0.0, "15551230019", "long-1"),
    fidelity.Dial(0.0, "15551230029", "long-2"),
    fidelity.Dial(0.0, "15551230039", "long-3"),
    fidelity.Dial(2.5, "15551230040", "drop"),
    fidelity.Dial(6.9, "15551230051", "waits"),
]


def test_queue_with_every_agent_busy(asterisk):
    asterisk.set_agent_talk(6)
    real = fidelity.on_asterisk(asterisk, fidelity.run_script, asterisk.secrets["dialer"],
                                asterisk.secrets["dialer"], QUEUE_BUSY)
    scenario = fidelity.sim_scenario(agent_talk_time=Distribution.fixed(6.0))
    sim = fidelity.on_sim(fidelity.run_script, fidelity.sim_secret("dialer"),
                          fidelity.sim_secret("dialer"), QUEUE_BUSY, scenario=scenario)
    assert real.outcomes == {"long-1": "connected", "long-2": "connected", "long-3": "connected",
                             "drop": "dropped", "waits": "connected"}
    differences = fidelity.compare_runs(real, sim)
    assert differences == [], "\n".join(map(str, differences))
