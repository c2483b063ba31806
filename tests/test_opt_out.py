"""Drop message opt-out: the simulator's UserEvent DialerOptOut puts the number on the DNC list."""

import pytest
import sqlalchemy as sa

from dialer.models import CallAttempt, DncNumber, Lead
from dialer.sim.scenario import ScenarioError, parse_scenario
from tests.engine_harness import make_campaign, numbers, run_scenario


pytestmark = pytest.mark.usefixtures("ami_secret")  # the simulator's AMI password (conftest.py)


# Every call is answered; one agent on a 10-minute call, so every call placed
# while it talks waits in the queue, gets the drop message after 2 s, and (opt_out)
# presses the key or not.
def scenario(opt_out: float) -> str:
    return f"""
seed = 3
drop_after = 2
opt_out = {opt_out}
[outcomes]
answered = 1
[ring_time]
dist = "fixed"
value = 3
[talk_time]
dist = "fixed"
value = 600
[queue]
name = "agents"
agents = 1
timeout = 30
agent_talk_time = 600
"""


@pytest.mark.parametrize("opt_out", [1.0, 0.0])
async def test_opt_out_key_puts_dropped_numbers_on_the_dnc_list(clock, sqlite_sessions, opt_out):
    phones = numbers(6)
    make_campaign(sqlite_sessions, phones=phones, mode="progressive", dial_ratio=6.0,
                  max_dial_level=6.0, max_concurrent=6)
    # The same numbers waiting in another campaign: they become dnc as `dnc add` makes them.
    make_campaign(sqlite_sessions, "autumn", phones=phones, state="stopped")
    _, engine = await run_scenario(sqlite_sessions, scenario(opt_out))
    with sqlite_sessions.begin() as s:
        dropped = set(s.scalars(
            sa.select(Lead.phone_e164).join(CallAttempt, CallAttempt.lead_id == Lead.id)
            .where(CallAttempt.disposition == "dropped")))
        connected = set(s.scalars(
            sa.select(Lead.phone_e164).join(CallAttempt, CallAttempt.lead_id == Lead.id)
            .where(CallAttempt.disposition == "connected")))
        listed = {(n.phone_e164, n.source) for n in s.scalars(sa.select(DncNumber))}
        sources = {p: src for p, src in listed}
        autumn = dict(s.execute(sa.select(Lead.phone_e164, Lead.state)
                                .where(Lead.campaign_id == 2)).all())
    # Six calls at once to one agent: one reaches it, five get the drop message.
    assert len(connected) == 1 and len(dropped) == 5
    if opt_out:
        assert set(sources) == dropped
        assert all(src.startswith("opt-out attempt ") for src in sources.values())
        assert engine.counters["opt_outs"] == 5
        assert autumn == {p: ("dnc" if p in dropped else "new") for p in phones}
    else:
        assert listed == set() and engine.counters["opt_outs"] == 0
        assert set(autumn.values()) == {"new"}


@pytest.mark.parametrize("line, field", [("opt_out = 1.5", "opt_out"), ('opt_out = "yes"', "opt_out"),
                                         ("drop_after = -1", "drop_after")])
def test_bad_drop_settings_name_the_field(line, field):
    with pytest.raises(ScenarioError) as e:
        parse_scenario(line + "\n")
    assert field in str(e.value) and "\n" not in str(e.value)
