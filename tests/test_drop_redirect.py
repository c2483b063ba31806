"""The drop message's safety net (dialer.calls.drops): when the dialplan's Queue() has
no 2-second give-up, the engine moves an answered call that no agent took to the
drop context with AMI Redirect; against the simulator, under trio's MockClock."""

import pytest
import sqlalchemy as sa

from dialer.compliance import rules
from dialer.calls.drops import GRACE, DropNet, DropTarget
from dialer.calls.tracker import TrackedCall
from dialer.engine import EngineSettings
from dialer.errors import UserError
from dialer.models import CallAttempt, DncNumber, Lead
from dialer.sim.scenario import ScenarioError, parse_scenario
from tests.engine_harness import make_campaign, numbers, run_scenario

pytestmark = pytest.mark.usefixtures("ami_secret")


# Every call is answered after 3 s; one agent on a 30-second call, so every other
# call waits in the queue. drop_after = 0: the dialplan's Queue() never gives up
# (an operator's own dialplan); a call moved to dialer-drop hears a 6-second
# message and presses the opt-out key with probability opt_out.
def scenario(opt_out: float, drop_after: float = 0) -> str:
    return f"""
seed = 3
drop_after = {drop_after}
opt_out = {opt_out}
drop_message = 6
[outcomes]
answered = 1
[ring_time]
dist = "fixed"
value = 3
[talk_time]
dist = "fixed"
value = 30
[queue]
name = "agents"
agents = 1
timeout = 30
agent_talk_time = 30
"""


def redirects(sim):
    return [(t, m) for items in sim.received.values() for t, m in items if m.name == "Redirect"]


def results(sqlite_sessions):
    with sqlite_sessions.begin() as s:
        by_phone = {p: d for p, d in s.execute(
            sa.select(Lead.phone_e164, CallAttempt.disposition)
            .join(CallAttempt, CallAttempt.lead_id == Lead.id).where(Lead.campaign_id == 1))}
        listed = dict(s.execute(sa.select(DncNumber.phone_e164, DncNumber.source)).all())
        autumn = dict(s.execute(sa.select(Lead.phone_e164, Lead.state).where(Lead.campaign_id == 2)).all())
    return by_phone, listed, autumn


@pytest.mark.parametrize("opt_out", [1.0, 0.0])
async def test_calls_no_agent_takes_are_redirected_to_the_drop_message(clock, sqlite_sessions, opt_out):
    phones = numbers(4)
    make_campaign(sqlite_sessions, phones=phones, mode="progressive", dial_ratio=4.0,
                  max_dial_level=4.0, max_concurrent=4)
    make_campaign(sqlite_sessions, "autumn", phones=phones, state="stopped")
    sim, engine = await run_scenario(sqlite_sessions, scenario(opt_out))
    by_phone, listed, autumn = results(sqlite_sessions)
    dropped = {p for p, d in by_phone.items() if d == "dropped"}
    # Four calls at once to one agent: one reaches it, three are moved, once each.
    assert sorted(by_phone.values()) == ["connected", "dropped", "dropped", "dropped"]
    moved = redirects(sim)
    assert len(moved) == 3 and engine.counters["drop_redirects"] == 3
    assert {m.get("Context") for _, m in moved} == {"dialer-drop"}
    assert {(m.get("Exten"), m.get("Priority")) for _, m in moved} == {("s", "1")}
    assert all(m.get("Channel", "").endswith(";1") for _, m in moved)
    # Sent the grace after the 2 s: every call was dialed at once and answered 3 s later.
    first = min(t for items in sim.received.values() for t, m in items if m.name == "Originate")
    for t, _ in moved:
        assert 3 + rules.CONNECT_DEADLINE + GRACE <= t - first < 3 + rules.CONNECT_DEADLINE + GRACE + 0.02, t - first
    if opt_out:
        assert set(listed) == dropped
        assert all(src.startswith("opt-out attempt ") for src in listed.values())
        assert autumn == {p: ("dnc" if p in dropped else "new") for p in phones}
    else:
        assert listed == {} and set(autumn.values()) == {"new"}


async def test_a_dialplan_that_gives_up_by_itself_is_left_alone(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, phones=numbers(4), mode="progressive", dial_ratio=4.0,
                  max_dial_level=4.0, max_concurrent=4)
    make_campaign(sqlite_sessions, "autumn", phones=(), state="stopped")
    sim, engine = await run_scenario(sqlite_sessions, scenario(1.0, drop_after=2))
    by_phone, listed, _ = results(sqlite_sessions)
    assert sorted(by_phone.values()) == ["connected", "dropped", "dropped", "dropped"]
    assert redirects(sim) == [] and engine.counters["drop_redirects"] == 0
    assert len(listed) == 3


async def test_drop_target_setting_and_off(clock, sqlite_sessions):
    make_campaign(sqlite_sessions, phones=numbers(2), mode="progressive", dial_ratio=2.0,
                  max_dial_level=2.0, max_concurrent=2)
    make_campaign(sqlite_sessions, "autumn", phones=(), state="stopped")
    settings = EngineSettings(lease=30.0, drop_target="off")
    # Off: the waiting caller stays in the queue until the called party hangs up (30 s).
    sim, engine = await run_scenario(sqlite_sessions, scenario(1.0), settings=settings)
    assert redirects(sim) == [] and engine.counters["drop_redirects"] == 0
    by_phone, listed, _ = results(sqlite_sessions)
    assert sorted(by_phone.values()) == ["connected", "dropped"] and listed == {}


def test_drop_target_is_checked_where_it_is_read():
    assert EngineSettings.from_config({"drop_target": "my-drop,100,2"}).drop_target == "my-drop,100,2"
    assert EngineSettings.from_config({"drop_target": "off"}).drop_target == "off"
    for bad in ("", ",s,1", "ctx,s,zero", "ctx,s,0", "a,b,c,d", 5):
        with pytest.raises(UserError) as e:
            EngineSettings.from_config({"drop_target": bad})
        assert "[engine].drop_target" in str(e.value) and "\n" not in str(e.value)
    assert DropTarget.parse("dialer-drop") == DropTarget("dialer-drop", "s", 1)


def _call(n: int, **kw) -> TrackedCall:
    call = TrackedCall(n, 1, n, f"a{n}", f"c{n}", f"c{n}-2", channel_name=f"Local/x{n}@carrier-1;1")
    for k, v in kw.items():
        setattr(call, k, v)
    return call


def test_which_calls_are_overdue():
    net = DropNet(DropTarget("dialer-drop"))
    limit = rules.CONNECT_DEADLINE + GRACE
    calls = [
        _call(1, answered_at=100.0),                                 # overdue
        _call(2, answered_at=100.0 + 0.01),                          # not yet
        _call(3, answered_at=100.0, connected_at=101.0),             # an agent has it
        _call(4, answered_at=100.0, queue_left_at=102.0),            # the dialplan moved it
        _call(5, answered_at=100.0, redirected_at=102.3),            # moved already
        _call(6, answered_at=100.0, ended_at=101.5),                 # over
        _call(7),                                                    # still ringing
        _call(8, answered_at=100.0, channel_name=None),              # no channel name yet
        _call(9, answered_at=100.0, unattended=True),                # no agents meant
    ]
    assert [c.attempt_id for c in net.overdue(calls, 100.0 + limit)] == [1]
    assert net.headers(calls[0]) == [("Channel", "Local/x1@carrier-1;1"), ("Context", "dialer-drop"),
                                     ("Exten", "s"), ("Priority", "1")]


def test_bad_sim_drop_settings_name_the_field():
    for line, field in (("drop_message = -1", "drop_message"), ('drop_context = "a b"', "drop_context"),
                        ("[queue]\njoinempty = 1", "joinempty")):
        with pytest.raises(ScenarioError) as e:
            parse_scenario(line + "\n")
        assert field in str(e.value) and "\n" not in str(e.value)


def test_drop_target_in_dialer_toml(tmp_path):
    from dialer.config import ConfigError, load_config

    base = ('[[ami]]\nname = "pbx1"\nhost = "127.0.0.1"\nusername = "dialer"\n'
            'secret_env = "X"\n\n[engine]\n')
    good = tmp_path / "good.toml"
    good.write_text(base + 'drop_target = "my-drop,s,2"\n')
    load_config(good)
    bad = tmp_path / "bad.toml"
    bad.write_text(base + 'drop_target = "my-drop,s,zero"\n')
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert str(e.value).startswith(f"{bad}:8: engine.drop_target:") and "\n" not in str(e.value)


@pytest.mark.parametrize(("text", "valid"), [
    ("my-drop", True), ("my-drop,s,2", True), ("my-drop, s, 2", True), ("my-drop,,3", True),
    ("my-drop,s,0", False), ("my-drop,s,x", False), ("a,b,c,d", False), (",s,1", False),
])
def test_dialer_toml_and_the_engine_take_the_same_drop_targets(tmp_path, text, valid):
    from dialer.config import ConfigError, load_config

    path = tmp_path / "dialer.toml"
    path.write_text('[[ami]]\nname = "pbx1"\nhost = "127.0.0.1"\nusername = "dialer"\n'
                    f'secret_env = "X"\n\n[engine]\ndrop_target = "{text}"\n')
    try:
        DropTarget.parse(text)
        parses = True
    except ValueError:
        parses = False
    try:
        load_config(path)
        loads = True
    except ConfigError:
        loads = False
    assert loads == parses == valid
