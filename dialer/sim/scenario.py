"""What the simulated PBX does with a call: users, outcomes, timings, the agents queue.

By default the dialed number's last digit picks the outcome (ring 1 s and talk
8 s for 0-3, busy, congestion, no answer, ...; ``[carrier]`` changes the
times), and three agents answer a queue named ``agents`` and talk 20 s each.
The test suite's scenario, which plays its real Asterisk's dialplan, is
``tests/asterisk/sim.toml``.

A scenario file (TOML) replaces any part of it::

    seed = 42                     # same seed, same calls
    channel_capacity = 200        # Originates beyond this many live calls get congestion
    connect_context = "dialer-connect"
    post_dial_delay = 0           # seconds from the dial until the line rings (or a table as below)
    drop_after = 2                # 0 (default): no drop message; else a caller queued this long
                                  # leaves the queue for the drop message (the dialplan's 2-s Queue())
    opt_out = 0.3                 # share of those callers who press the opt-out key (UserEvent DialerOptOut)
    drop_context = "dialer-drop"  # a Redirect to this context plays the drop message (with opt_out)
    drop_message = 0              # seconds the drop message lasts before the dialplan hangs up

    [outcomes]                    # probabilities (normalised); omit for the last-digit table
    answered = 0.55
    busy = 0.10
    congestion = 0.05
    noanswer = 0.20
    invalid = 0.10

    [ring_time]                   # seconds before answer (answered calls)
    dist = "uniform"              # fixed | uniform | exponential | normal
    min = 1
    max = 6

    [talk_time]                   # seconds the called party stays on after answer
    dist = "exponential"
    mean = 40
    min = 2
    max = 600

    [carrier]                     # ring and talk seconds of the last-digit table's answers
    answered = {ring = 1, talk = 2}   # digits 0-3
    short = {talk = 1}                # digit 7: answers at once
    long = {ring = 2, talk = 60}      # digit 9

    [queue]
    name = "agents"
    agents = 5
    strategy = "rrmemory"
    timeout = 15                  # how long each member's line rings (queues.conf timeout);
                                  # a caller waits until an agent frees, drop_after runs out
                                  # or the called party hangs up
    wrapup = 2                    # seconds an agent stays unavailable after a call
    joinempty = false             # true: callers join even when every agent is paused (QueuePause);
                                  # false: Queue() returns at once (JOINEMPTY), as joinempty = no
    agent_talk_time = 20          # number or a distribution table: the agent hangs up after it

    [[users]]                     # replaces the default users when present
    name = "dialer"
    secret = "dialerpass"
    read = ["system", "call", "agent", "user", "dialplan", "originate", "reporting", "cdr"]
    write = ["system", "call", "agent", "user", "originate", "reporting", "command"]

A distribution is either a number (fixed) or a table with ``dist`` and its
parameters (``value``; ``min``/``max``; ``mean`` with optional ``min``/``max``;
``mean``/``sd`` with optional ``min``/``max``).
"""

from __future__ import annotations

import math
import random
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.errors import UserError

__all__ = [
    "Distribution",
    "Outcome",
    "QueueConfig",
    "Scenario",
    "ScenarioError",
    "User",
    "default_scenario",
    "load_scenario",
    "parse_scenario",
    "CLASS_NAMES",
    "CLASS_BIT",
    "ALL_CLASSES",
    "PRIVILEGE",
    "class_mask",
]

# AMI permission classes (manager.c), in the order Asterisk prints them.
CLASS_NAMES = (
    "system", "call", "log", "verbose", "command", "agent", "user", "config",
    "dtmf", "reporting", "cdr", "dialplan", "originate", "agi", "cc", "aoc",
    "test", "security", "message",
)
CLASS_BIT = {name: 1 << i for i, name in enumerate(CLASS_NAMES)}
ALL_CLASSES = (1 << len(CLASS_NAMES)) - 1
PRIVILEGE = {name: f"{name},all" for name in CLASS_NAMES}


def class_mask(names) -> int:
    """The bit mask of these permission class names (unknown names add nothing)."""
    mask = 0
    for n in names:
        mask |= CLASS_BIT.get(n.lower(), 0)
    return mask

OUTCOME_KINDS = ("answered", "busy", "congestion", "noanswer", "invalid")


class ScenarioError(UserError):
    """A scenario file that cannot be used; the message names file:line and key."""


@dataclass(frozen=True)
class Distribution:
    """A duration in seconds drawn from a named distribution, clamped to [min, max]."""

    kind: str = "fixed"
    value: float = 0.0
    low: float = 0.0
    high: float = math.inf
    mean: float = 0.0
    sd: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.value
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "exponential":
            x = rng.expovariate(1.0 / self.mean) if self.mean > 0 else 0.0
        else:  # normal
            x = rng.gauss(self.mean, self.sd)
        return min(max(x, self.low), self.high)

    @classmethod
    def fixed(cls, seconds: float) -> "Distribution":
        return cls("fixed", value=float(seconds))


@dataclass(frozen=True)
class Outcome:
    """What the called party does: ``kind`` plus ring and talk seconds.

    ``digit`` is the last-digit label shown in the simulated carrier dialplan
    (``Goto(outcomeN)``); ``layout`` picks the carrier dialplan priorities.
    """

    kind: str
    ring: float = 0.0
    talk: float = 0.0
    digit: str = "0"
    layout: str = "answered"  # answered | short | long | busy | congestion | noanswer | invalid


# The recording server's carrier table (INDEX.md).
LAST_DIGIT_TABLE: dict[str, Outcome] = {
    "0": Outcome("answered", 1.0, 8.0, "0", "answered"),
    "1": Outcome("answered", 1.0, 8.0, "1", "answered"),
    "2": Outcome("answered", 1.0, 8.0, "2", "answered"),
    "3": Outcome("answered", 1.0, 8.0, "3", "answered"),
    "4": Outcome("busy", 0.0, 0.0, "4", "busy"),
    "5": Outcome("congestion", 0.0, 0.0, "5", "congestion"),
    "6": Outcome("noanswer", 120.0, 0.0, "6", "noanswer"),
    "7": Outcome("answered", 0.0, 1.0, "7", "short"),
    "8": Outcome("invalid", 0.0, 0.0, "8", "invalid"),
    "9": Outcome("answered", 3.0, 30.0, "9", "long"),
}

CARRIER_LAYOUTS = {"answered": "0123", "short": "7", "long": "9"}


@dataclass(frozen=True)
class User:
    name: str
    secret: str
    read: frozenset[str]
    write: frozenset[str]


@dataclass(frozen=True)
class QueueConfig:
    name: str = "agents"
    agents: int = 3
    strategy: str = "rrmemory"
    timeout: float = 15.0
    wrapup: float = 0.0
    # joinempty = yes: callers join a queue whose members are all paused (no: Queue()
    # returns at once, JOINEMPTY). The simulator plays leavewhenempty = no and
    # ringinuse = no (the README's queues.conf).
    joinempty: bool = False
    agent_talk_time: Distribution = field(default_factory=lambda: Distribution.fixed(20.0))


DEFAULT_USERS = (
    User(
        "dialer", "dialerpass",
        frozenset("system call agent user dialplan originate reporting cdr".split()),
        frozenset("system call agent user originate reporting command".split()),
    ),
    User("monitor", "monitorpass", frozenset({"call", "agent"}), frozenset()),
    User("limited", "limitedpass", frozenset({"call"}), frozenset({"call"})),
)


@dataclass(frozen=True)
class Scenario:
    """Everything the simulator needs to decide what a call does."""

    users: tuple[User, ...] = DEFAULT_USERS
    seed: int | None = None
    channel_capacity: int = 0  # 0: unlimited
    connect_context: str = "dialer-connect"
    # None: the last-digit table; else probabilities per OUTCOME_KINDS.
    probabilities: dict[str, float] | None = None
    ring_time: Distribution = field(default_factory=lambda: Distribution.fixed(1.0))
    talk_time: Distribution = field(default_factory=lambda: Distribution.fixed(8.0))
    # Seconds from the dial (DialBegin) until the line rings (DialState RINGING).
    post_dial_delay: Distribution = field(default_factory=lambda: Distribution.fixed(0.0))
    queue: QueueConfig = field(default_factory=QueueConfig)
    # The dialplan's drop message: a caller still queued after drop_after seconds
    # (0: never) leaves the queue for it, and presses the opt-out key with
    # probability opt_out (a UserEvent DialerOptOut, as the README's dialplan sends).
    drop_after: float = 0.0
    opt_out: float = 0.0
    # The drop message's context (a Redirect there plays it) and how long it lasts
    # before the dialplan hangs up (seconds; the key press, if any, comes first).
    drop_context: str = "dialer-drop"
    drop_message: float = 0.0
    # The last-digit table (digit -> outcome), used when probabilities is None.
    digits: dict[str, Outcome] = field(default_factory=lambda: dict(LAST_DIGIT_TABLE))
    source: str = "<default>"

    def pick_outcome(self, number: str, rng: random.Random) -> Outcome:
        """The outcome for a call to ``number`` (draws from ``rng`` in probability mode)."""
        if self.probabilities is None:
            return self.digits[number[-1]]
        r = rng.random()
        acc = 0.0
        kind = OUTCOME_KINDS[-1]
        for k in OUTCOME_KINDS:
            acc += self.probabilities.get(k, 0.0)
            if r < acc:
                kind = k
                break
        if kind == "answered":
            ring = self.ring_time.sample(rng)
            talk = self.talk_time.sample(rng)
            return Outcome("answered", ring, talk, "0" if ring > 0 else "7",
                           "answered" if ring > 0 else "short")
        if kind == "noanswer":
            return self.digits["6"]
        return {"busy": self.digits["4"], "congestion": self.digits["5"],
                "invalid": self.digits["8"]}[kind]

    def user(self, name: str) -> User | None:
        for u in self.users:
            if u.name.lower() == name.lower():
                return u
        return None


def default_scenario() -> Scenario:
    return Scenario()


# --- loading -----------------------------------------------------------------

_TOP_KEYS = {"seed", "channel_capacity", "connect_context", "outcomes", "ring_time",
             "talk_time", "post_dial_delay", "queue", "users", "drop_after", "opt_out",
             "carrier", "drop_context", "drop_message"}
_QUEUE_KEYS = {"name", "agents", "strategy", "timeout", "wrapup", "agent_talk_time", "joinempty"}
_STRATEGIES = {"rrmemory", "ringall", "leastrecent", "fewestcalls", "random", "linear"}


class _Where:
    """Finds the line of a key in the scenario text, for error messages."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, section: str | None, key: str | None) -> int | None:
        start = 0
        if section:
            pat = re.compile(r"^\s*\[\[?\s*" + re.escape(section) + r"\s*\]\]?\s*(#.*)?$")
            for i, line in enumerate(self.lines):
                if pat.match(line):
                    start = i + 1
                    break
            else:
                start = 0
        if key is None:
            return start if start else None
        kpat = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*=")
        for i in range(start, len(self.lines)):
            if section and i > start and re.match(r"^\s*\[", self.lines[i]):
                break
            if kpat.match(self.lines[i]):
                return i + 1
        return start if start else None

    def error(self, section: str | None, key: str | None, message: str) -> ScenarioError:
        line = self.line_of(section, key)
        name = f"{section}.{key}" if section and key else (key or section or "")
        loc = f"{self.path}:{line}" if line else self.path
        return ScenarioError(f"{loc}: {name}: {message}" if name else f"{loc}: {message}")


def _number(w: _Where, section: str | None, key: str, v: Any, *, minimum: float = 0.0,
            integer: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        kind = "an integer" if integer else "a number"
        raise w.error(section, key, f"must be {kind}, not {v!r}")
    if not math.isfinite(v) or v < minimum:
        raise w.error(section, key, f"must be >= {minimum:g}, not {v!r}")
    return v


def _distribution(w: _Where, section: str | None, key: str, v: Any) -> Distribution:
    sect_name = key if section is None else f"{section}.{key}"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return Distribution.fixed(_number(w, section, key, v))
    if not isinstance(v, dict):
        raise w.error(section, key, f"must be a number of seconds or a table with 'dist', not {v!r}")
    kind = v.get("dist", "fixed")
    allowed = {"fixed": {"value"}, "uniform": {"min", "max"},
               "exponential": {"mean", "min", "max"}, "normal": {"mean", "sd", "min", "max"}}
    if kind not in allowed:
        raise w.error(sect_name, "dist", f"unknown distribution {kind!r} (expected one of {', '.join(allowed)})")
    for k in v:
        if k != "dist" and k not in allowed[kind]:
            raise w.error(sect_name, k, f"not a parameter of the {kind} distribution")
    nums = {k: _number(w, sect_name, k, v[k]) for k in v if k != "dist"}
    if kind == "fixed":
        if "value" not in nums:
            raise w.error(sect_name, "dist", "the fixed distribution needs 'value'")
        return Distribution.fixed(nums["value"])
    if kind == "uniform":
        if "min" not in nums or "max" not in nums:
            raise w.error(sect_name, "dist", "the uniform distribution needs 'min' and 'max'")
        if nums["min"] > nums["max"]:
            raise w.error(sect_name, "min", "must not exceed max")
        return Distribution("uniform", low=nums["min"], high=nums["max"])
    if "mean" not in nums:
        raise w.error(sect_name, "dist", f"the {kind} distribution needs 'mean'")
    if kind == "normal" and "sd" not in nums:
        raise w.error(sect_name, "dist", "the normal distribution needs 'sd'")
    low, high = nums.get("min", 0.0), nums.get("max", math.inf)
    if low > high:
        raise w.error(sect_name, "min", "must not exceed max")
    return Distribution(kind, low=low, high=high, mean=nums["mean"], sd=nums.get("sd", 0.0))


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    """Build a :class:`Scenario` from TOML text; errors name ``path:line`` and the key."""
    w = _Where(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        loc = f"{path}:{m.group(1)}" if m else path
        raise ScenarioError(f"{loc}: invalid TOML: {msg}") from None
    for k in data:
        if k not in _TOP_KEYS:
            raise w.error(None, k, f"unknown setting (expected one of {', '.join(sorted(_TOP_KEYS))})")
    kw: dict[str, Any] = {"source": path}
    if "seed" in data:
        kw["seed"] = int(_number(w, None, "seed", data["seed"], integer=True))
    if "channel_capacity" in data:
        kw["channel_capacity"] = int(_number(w, None, "channel_capacity", data["channel_capacity"], integer=True))
    for key in ("connect_context", "drop_context"):
        if key in data:
            v = data[key]
            if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", v):
                raise w.error(None, key, f"must be a context name, not {v!r}")
            kw[key] = v
    if "drop_message" in data:
        kw["drop_message"] = float(_number(w, None, "drop_message", data["drop_message"]))
    if "outcomes" in data:
        o = data["outcomes"]
        if not isinstance(o, dict):
            raise w.error(None, "outcomes", "must be a table of probabilities")
        probs = {}
        for k, v in o.items():
            if k not in OUTCOME_KINDS:
                raise w.error("outcomes", k, f"unknown outcome (expected one of {', '.join(OUTCOME_KINDS)})")
            probs[k] = float(_number(w, "outcomes", k, v))
        total = sum(probs.values())
        if total <= 0:
            raise w.error("outcomes", None, "the probabilities must not all be zero")
        kw["probabilities"] = {k: p / total for k, p in probs.items()}
    if "drop_after" in data:
        kw["drop_after"] = float(_number(w, None, "drop_after", data["drop_after"]))
    if "opt_out" in data:
        kw["opt_out"] = float(_number(w, None, "opt_out", data["opt_out"]))
        if not 0.0 <= kw["opt_out"] <= 1.0:
            raise w.error(None, "opt_out", f"must be a probability from 0 to 1, not {data['opt_out']!r}")
    for key in ("ring_time", "talk_time", "post_dial_delay"):
        if key in data:
            kw[key] = _distribution(w, None, key, data[key])
    if "carrier" in data:
        c = data["carrier"]
        if not isinstance(c, dict):
            raise w.error(None, "carrier", "must be a table of answered, short, long")
        digits = dict(LAST_DIGIT_TABLE)
        for layout, value in c.items():
            if layout not in CARRIER_LAYOUTS:
                raise w.error("carrier", layout, "unknown outcome (expected answered, short, long)")
            if not isinstance(value, dict) or set(value) - {"ring", "talk"}:
                raise w.error("carrier", layout, "must be a table with ring and talk seconds")
            if layout == "short" and value.get("ring"):
                raise w.error("carrier", layout, "answers at once: no ring")
            for digit in CARRIER_LAYOUTS[layout]:
                old = digits[digit]
                digits[digit] = Outcome(
                    old.kind, float(_number(w, "carrier", layout, value.get("ring", old.ring))),
                    float(_number(w, "carrier", layout, value.get("talk", old.talk))),
                    old.digit, old.layout)
        kw["digits"] = digits
    if "queue" in data:
        q = data["queue"]
        if not isinstance(q, dict):
            raise w.error(None, "queue", "must be a table")
        for k in q:
            if k not in _QUEUE_KEYS:
                raise w.error("queue", k, f"unknown setting (expected one of {', '.join(sorted(_QUEUE_KEYS))})")
        qkw: dict[str, Any] = {}
        if "name" in q:
            if not isinstance(q["name"], str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", q["name"]):
                raise w.error("queue", "name", f"must be a queue name, not {q['name']!r}")
            qkw["name"] = q["name"]
        if "agents" in q:
            qkw["agents"] = int(_number(w, "queue", "agents", q["agents"], integer=True))
        if "strategy" in q:
            if q["strategy"] not in _STRATEGIES:
                raise w.error("queue", "strategy", f"unknown strategy {q['strategy']!r}")
            qkw["strategy"] = q["strategy"]
        for k in ("timeout", "wrapup"):
            if k in q:
                qkw[k] = float(_number(w, "queue", k, q[k]))
        if "agent_talk_time" in q:
            qkw["agent_talk_time"] = _distribution(w, "queue", "agent_talk_time", q["agent_talk_time"])
        if "joinempty" in q:
            if not isinstance(q["joinempty"], bool):
                raise w.error("queue", "joinempty", f"must be true or false, not {q['joinempty']!r}")
            qkw["joinempty"] = q["joinempty"]
        kw["queue"] = QueueConfig(**qkw)
    if "users" in data:
        users = data["users"]
        if not isinstance(users, list) or not users:
            raise w.error(None, "users", "must be a non-empty array of tables ([[users]])")
        out = []
        for u in users:
            if not isinstance(u, dict):
                raise w.error(None, "users", "each entry must be a table")
            for k in u:
                if k not in ("name", "secret", "read", "write"):
                    raise w.error("users", k, "unknown setting (expected name, secret, read, write)")
            for k in ("name", "secret"):
                if not isinstance(u.get(k), str) or not u.get(k):
                    raise w.error("users", k, "is required and must be a non-empty string")
            classes = {}
            for k in ("read", "write"):
                v = u.get(k, [])
                if isinstance(v, str):
                    v = [c.strip() for c in v.split(",") if c.strip()]
                if not isinstance(v, list) or not all(isinstance(c, str) for c in v):
                    raise w.error("users", k, "must be a list of permission classes")
                for c in v:
                    if c.lower() not in CLASS_NAMES and c.lower() != "all":
                        raise w.error("users", k, f"unknown permission class {c!r}")
                names = {c.lower() for c in v}
                if "all" in names:
                    names = set(CLASS_NAMES)
                classes[k] = frozenset(names)
            out.append(User(u["name"], u["secret"], classes["read"], classes["write"]))
        kw["users"] = tuple(out)
    return Scenario(**kw)


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario TOML file; any problem is a :class:`ScenarioError` naming file:line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{p}: scenario file not found") from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read scenario file: {exc.strerror}") from None
    return parse_scenario(text, str(p))
