"""Scenario files: what they set, and one clear line (file:line, key) for every mistake."""

from __future__ import annotations

import random

import pytest

from dialer.sim import ScenarioError, load_scenario, parse_scenario
from dialer.sim.scenario import LAST_DIGIT_TABLE, default_scenario

FULL = """\
seed = 42
channel_capacity = 200
connect_context = "dialer-connect"

[outcomes]
answered = 6
busy = 1
congestion = 1
noanswer = 1
invalid = 1

[ring_time]
dist = "uniform"
min = 1
max = 6

[talk_time]
dist = "normal"
mean = 40
sd = 10
min = 5
max = 90

[queue]
name = "sales"
agents = 5
strategy = "leastrecent"
timeout = 30
wrapup = 2.5
agent_talk_time = { dist = "exponential", mean = 25 }

[[users]]
name = "engine"
secret = "s3cret"
read = ["call", "agent", "system"]
write = "originate,call"
"""


def test_default_scenario_is_the_recording_server():
    sc = default_scenario()
    assert sc.probabilities is None
    assert [u.name for u in sc.users] == ["dialer", "monitor", "limited"]
    assert sc.user("monitor").write == frozenset()
    assert sc.user("limited").read == sc.user("limited").write == frozenset({"call"})
    assert (sc.queue.name, sc.queue.agents, sc.queue.strategy, sc.queue.timeout) == ("agents", 3, "rrmemory", 15)
    assert sc.queue.agent_talk_time.sample(random.Random()) == 20
    rng = random.Random(0)
    kinds = {d: sc.pick_outcome("1555123000" + d, rng).kind for d in "0123456789"}
    assert kinds == {"0": "answered", "1": "answered", "2": "answered", "3": "answered",
                     "4": "busy", "5": "congestion", "6": "noanswer", "7": "answered",
                     "8": "invalid", "9": "answered"}
    assert (LAST_DIGIT_TABLE["9"].ring, LAST_DIGIT_TABLE["9"].talk) == (3, 30)


def test_full_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(FULL)
    sc = load_scenario(path)
    assert sc.seed == 42 and sc.channel_capacity == 200
    assert sc.probabilities == pytest.approx({"answered": 0.6, "busy": 0.1, "congestion": 0.1,
                                              "noanswer": 0.1, "invalid": 0.1})
    assert (sc.queue.name, sc.queue.agents, sc.queue.strategy, sc.queue.wrapup) == ("sales", 5, "leastrecent", 2.5)
    (u,) = sc.users
    assert (u.name, u.secret, u.read, u.write) == ("engine", "s3cret", frozenset({"call", "agent", "system"}),
                                                   frozenset({"originate", "call"}))
    rng = random.Random(1)
    draws = [sc.pick_outcome("15551230000", rng) for _ in range(2000)]
    answered = [o for o in draws if o.kind == "answered"]
    assert 0.55 < len(answered) / len(draws) < 0.65
    assert all(1 <= o.ring <= 6 and 5 <= o.talk <= 90 for o in answered)
    talks = sorted(o.talk for o in answered)
    assert 35 < talks[len(talks) // 2] < 45


def test_same_seed_same_draws():
    sc = parse_scenario(FULL)
    r1, r2, r3 = random.Random(sc.seed), random.Random(sc.seed), random.Random(sc.seed + 1)
    first = [sc.pick_outcome("1", r1) for _ in range(50)]
    assert first == [sc.pick_outcome("1", r2) for _ in range(50)]
    assert first != [sc.pick_outcome("1", r3) for _ in range(50)]


@pytest.mark.parametrize(
    "text, where, words",
    [
        ("seed = 1\nbogus = 2\n", ":2:", "bogus: unknown setting"),
        ("seed = 'x'\n", ":1:", "seed: must be an integer"),
        ("channel_capacity = -1\n", ":1:", "channel_capacity: must be >= 0"),
        ("[outcomes]\nanswered = 1\nmaybe = 2\n", ":3:", "outcomes.maybe: unknown outcome"),
        ("[outcomes]\nanswered = 0\n", ":1:", "probabilities must not all be zero"),
        ("[outcomes]\nbusy = -0.5\n", ":2:", "outcomes.busy: must be >= 0"),
        ("[ring_time]\ndist = \"poisson\"\n", ":2:", "ring_time.dist: unknown distribution 'poisson'"),
        ("[ring_time]\ndist = \"uniform\"\nmin = 5\nmax = 1\n", ":3:", "ring_time.min: must not exceed max"),
        ("[talk_time]\ndist = \"normal\"\nmean = 3\n", ":2:", "needs 'sd'"),
        ("[talk_time]\ndist = \"fixed\"\nvalue = 3\nmean = 4\n", ":4:", "talk_time.mean: not a parameter"),
        ("talk_time = \"long\"\n", ":1:", "talk_time: must be a number of seconds"),
        ("\n[queue]\nagents = 2.5\n", ":3:", "queue.agents: must be an integer"),
        ("[queue]\nstrategy = \"best\"\n", ":2:", "queue.strategy: unknown strategy"),
        ("[queue]\ncolour = 1\n", ":2:", "queue.colour: unknown setting"),
        ("[[users]]\nname = \"a\"\n", ":1:", "users.secret: is required"),
        ("[[users]]\nname = \"a\"\nsecret = \"b\"\nread = [\"call\", \"telepathy\"]\n", ":4:",
         "users.read: unknown permission class 'telepathy'"),
        ("seed = \n", ":1:", "invalid TOML"),
        ("[queue\nagents = 1\n", ":1:", "invalid TOML"),
    ],
)
def test_mistakes_name_the_line_and_key(text, where, words):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "scen.toml")
    msg = str(info.value)
    assert msg.startswith("scen.toml" + where), msg
    assert words in msg
    assert "\n" not in msg


def test_file_problems(tmp_path):
    with pytest.raises(ScenarioError, match=r"nope\.toml: scenario file not found"):
        load_scenario(tmp_path / "nope.toml")
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"seed = 1\n\xff\xfe\n")
    with pytest.raises(ScenarioError, match=r"bin\.toml: not UTF-8"):
        load_scenario(bad)


def test_demo_scenario_file_loads():
    from pathlib import Path

    import dialer.sim

    sc = load_scenario(Path(dialer.sim.__file__).parent / "demo.toml")
    assert sc.seed == 2026 and sc.queue.agents == 8 and sc.queue.wrapup == 5
    assert sum(sc.probabilities.values()) == pytest.approx(1.0)
