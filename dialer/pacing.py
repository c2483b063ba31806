"""How many calls to place now: the pacing policy.

:func:`decide` (and its shorthand :func:`calls_to_place`) is a pure function
from the live figures of one campaign (:class:`PacingStats`) and its settings
(:class:`PacingSettings`) to a :class:`PacingDecision`. It reads no clock and
keeps no state; the engine calls it every second and whenever an agent or a
call changes state, and places ``decision.calls`` new calls, which the rate
caps may delay but never increase. :class:`CallStatsEstimator` is the small
stateful part: the engine feeds it each call's outcome and it produces the
recent answer rate, time-to-answer and talk-time distributions
(:class:`CallEstimates`) that go into the figures.

Modes
-----
progressive
    ``free agents x dial_ratio`` minus the calls already placed for them (still
    ringing, or answered and waiting for an agent).
unattended
    No agents: as many calls as ``max_concurrent`` allows.
predictive
    The model below, never slower than progressive 1:1, never faster than
    ``max_dial_level`` lines per logged-in agent.

The predictive model, in plain words
------------------------------------
A call placed now is answered, if at all, somewhere in the next 5-25 seconds
(the measured time-to-answer), and must then find a free agent within 2
seconds or it counts as abandoned. So the question is not "how many agents
are free now" but "how many agents will be free at the moments the calls
placed now are answered, after the calls already ringing have taken theirs".

For a few moments t spread over the time-to-answer distribution (its
quartile midpoints) the model estimates:

* agents free by t + 2 s: the free agents, plus each agent in wrap-up whose
  wrap-up will be over, plus each talking agent with the probability that
  their call ends and their wrap-up is over by then. That probability comes
  from the campaign's talk-time distribution *conditioned on how long the call
  has lasted so far* (a call at 3 minutes is not "half done" the way one at
  45 seconds is);
* calls that will want an agent by t: the calls waiting for an agent, plus
  each ringing call with the probability that it is answered by t given that
  it has rung for so long without an answer (a call that has rung 20 s is
  less likely to be answered than a fresh one).

Each of these counts is a sum of independent yes/no events, so the spare
agents at t (supply minus demand) have a known mean and variance; we treat
them as normally distributed. Calls are then added one at a time: a new call
is placed only while the chance that it causes a drop stays below an allowed
marginal drop probability. That chance, for a call answered at t, is the
worst chance of having no spare agent at t or any later moment (if it takes
an agent it leaves one fewer for the calls answered after it), averaged over
when it might be answered. Each added call uses up part of the spare agents
at every later t, so the count stops by itself. This is the Erlang-A idea (a
queue whose callers hang up after a patience of 2 s) worked out for the next
half minute from the actual state of every agent and call, rather than from
steady-state averages, which is what lets it run agents busier than a dial
level that reacts to what happened over the last 15 seconds.

The allowed marginal drop probability is the feedback on the abandon rule.
It is ``max_marginal_drop`` times the least of these shares of the budget
left, each counted in calls so that a small campaign keeps some in reserve:

* the day: full while the drops of the rolling 30 days and of the last 24
  hours (each taken over at least ``abandon_min_sample`` answered calls) are
  below half the target, less DAY_RESERVE drops; falling linearly to zero
  DAY_RESERVE drops short of the target, where the dialer is back to one
  call per free agent. So the rate settles a little under the target (about
  2.5-2.7 % for a 3 % target in the simulations);
* the hour: the same against HOUR_LIMIT (4.5 %) for the drops of the last
  60 minutes, so that a burst (agents leaving at once, a list turning good
  again) is met at once rather than when it has moved the 24-hour rate, and
  no rolling hour goes above 5 %;
* a new campaign: a tenth at first, growing to all over its first 180
  answered calls, while its abandon rate rests on too few calls to say how
  much of the budget is left.

A rate at or above the target ("budget spent") makes the campaign dial
progressive 1:1, which cannot abandon a call while agents stay logged in,
until the rate is below the target again.

The estimator adapts to change: a new campaign starts from
``COLD_START_ESTIMATES`` (answers likelier and sooner than usual, so it
places fewer calls), moves toward its own figures with every answer, and can
start instead from the estimates a previous engine saved
(:meth:`CallStatsEstimator.snapshot`); when the last 50 attempts answer at a
rate the rest of its 30-minute window makes all but impossible, it forgets
the rest, so a block of bad numbers that ends does not leave the answer rate
underestimated (and calls overdialed) for half an hour.

Several engines on one campaign
-------------------------------
Each engine knows only its own calls, but all see the same agents. Given
the other engines' ringing and waiting calls (``shared_*`` fields, from their
live state), :func:`decide` works out the count for the campaign as a whole
and returns this engine's share, ``floor((n + rank) / engines)``, which adds
up over the engines to exactly n.

Why this model: it uses everything the engine knows (per-agent talk time so
far, per-call ring time so far, the measured distributions), so it needs no
hand-tuned dial level and adapts within a second to agents logging in or out;
its single control, the marginal drop probability, maps directly onto the
regulatory figure it must respect; and it costs well under a millisecond per
decision for 50 agents and 150 calls ringing.

What limits it is not the forecast of agents but the randomness of answers:
which of the calls ringing are answered, and when within 5-25 s, cannot be
known, so some agents must be kept free as a buffer. Told exactly when every
talking agent will be free, the same model gains only about one point of
occupancy in the benchmark (``tests/bench/bench_pacing.py --policies oracle``).

Hang-ups
--------
With ``hangup_after`` set, the engine also offers the calls whose line has
rung at least that long (15 s or more, the legal minimum, counted from
Asterisk's DialState RINGING) as ``hangup_candidates``. Keeping such a call
is judged by the rule for placing one: with it taken out of the demand,
would it, answered at the moments it still may be, find no agent with a
probability above the allowed limit? If so, it is hung up (the likeliest to find none first, then the balance is
worked out again). Calls that turn out unneeded are then cut before they are
answered instead of being dropped after, which lets the policy dial harder:
the allowed limit starts at ``MARGINAL_DROP_HANGUP`` instead of
``MARGINAL_DROP``; candidates are still cut (above ``HANGUP_FLOOR``) when the
abandon budget is spent and placing calls is down to 1:1. The estimator
counts a hung-up call as placed only for as long as it rang
(:meth:`CallStatsEstimator.answer_rate`).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import Counter, deque
from functools import cached_property
from dataclasses import dataclass
from typing import Literal

from dialer.compliance import rules

__all__ = [
    "Distribution",
    "CallEstimates",
    "DEFAULT_ESTIMATES",
    "PacingStats",
    "PacingSettings",
    "PacingDecision",
    "decide",
    "calls_to_place",
    "abandon_rate",
    "CallStatsEstimator",
]

Mode = Literal["progressive", "predictive", "unattended"]

#: seconds a call must ring before the dialer may give up on it (dialer.rules)
MIN_RING = float(rules.MIN_RING)
MODES: tuple[str, ...] = ("progressive", "predictive", "unattended")

_SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------
# Distributions of durations


@dataclass(frozen=True)
class Distribution:
    """A duration distribution, as its CDF at whole seconds.

    ``cdf[k]`` is P(X <= k seconds); past the end of the table the CDF is
    taken as its last value. Build one with :meth:`lognormal`,
    :meth:`uniform` or :meth:`from_samples`.
    """

    cdf: tuple[float, ...]
    mean: float

    def __post_init__(self) -> None:
        if not self.cdf:
            raise ValueError("a distribution needs at least one CDF point")

    def at(self, seconds: float) -> float:
        """P(X <= seconds), to the nearest whole second."""
        k = int(seconds + 0.5)
        if k < 0:
            return 0.0
        cdf = self.cdf
        return cdf[k] if k < len(cdf) else cdf[-1]

    @cached_property
    def grid_times(self) -> tuple[int, ...]:
        """Whole seconds at the quantile midpoints the predictive model checks."""
        return tuple(int(self.quantile(q)) for q in _GRID)

    def quantile(self, q: float) -> float:
        """The smallest whole second s with P(X <= s) >= q."""
        k = bisect.bisect_left(self.cdf, q)
        return float(min(k, len(self.cdf) - 1))

    @classmethod
    def lognormal(cls, mean: float, sd: float, *, horizon: float | None = None) -> Distribution:
        """A log-normal distribution with the given mean and standard deviation (seconds)."""
        if mean <= 0 or sd <= 0:
            raise ValueError(f"log-normal needs a positive mean and sd, got {mean}, {sd}")
        sigma2 = math.log(1.0 + (sd / mean) ** 2)
        mu = math.log(mean) - sigma2 / 2.0
        sigma = math.sqrt(sigma2)
        if horizon is None:
            horizon = max(60.0, math.exp(mu + 4.5 * sigma))  # beyond 99.999 %
        n = int(horizon) + 1
        cdf = [0.0]
        for k in range(1, n + 1):
            cdf.append(0.5 * math.erfc(-(math.log(k) - mu) / (sigma * _SQRT2)))
        return cls(cdf=tuple(cdf), mean=mean)

    @classmethod
    def uniform(cls, low: float, high: float) -> Distribution:
        """Uniform between ``low`` and ``high`` seconds."""
        if not 0 <= low < high:
            raise ValueError(f"uniform needs 0 <= low < high, got {low}, {high}")
        n = int(math.ceil(high))
        cdf = tuple(min(1.0, max(0.0, (k - low) / (high - low))) for k in range(n + 1))
        return cls(cdf=cdf, mean=(low + high) / 2.0)

    @classmethod
    def from_samples(cls, samples: list[float] | tuple[float, ...]) -> Distribution:
        """The empirical distribution of observed durations (at least one)."""
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(max(0.0, s) for s in samples)
        n = len(ordered)
        top = int(math.ceil(ordered[-1]))
        cdf = []
        i = 0
        for k in range(top + 1):
            # P(X <= k) with each sample rounded to the nearest second, as at() reads it.
            while i < n and ordered[i] < k + 0.5:
                i += 1
            cdf.append(i / n)
        cdf[-1] = 1.0
        return cls(cdf=tuple(cdf), mean=sum(ordered) / n)


# --------------------------------------------------------------------------
# Inputs and output


_DEFAULT_ANSWER_DELAY = Distribution.uniform(5, 25)
_DEFAULT_TALK_TIME = Distribution.lognormal(90.0, 60.0)


@dataclass(frozen=True, kw_only=True)
class CallEstimates:
    """Recent behaviour of the campaign's calls, from :class:`CallStatsEstimator`."""

    answer_rate: float = 0.25
    #: time from placing a call to its answer, for answered calls
    answer_delay: Distribution = _DEFAULT_ANSWER_DELAY
    #: how long a call that is not answered rings before the dialer gives up
    no_answer_timeout: float = 25.0
    talk_time: Distribution = _DEFAULT_TALK_TIME
    wrapup_time: float = 10.0


#: what is assumed of a campaign before its own calls have been measured
DEFAULT_ESTIMATES = CallEstimates()
#: what the estimator assumes of a new campaign before it has measured
#: anything: answers likelier and sooner than usual, which places fewer calls
#: than the usual figures would (a wrong guess then costs agents' time, not
#: dropped calls); replaced as the campaign's own calls come in, or by the
#: estimates it saved (see CallStatsEstimator.snapshot)
COLD_START_ESTIMATES = CallEstimates(answer_rate=0.5, answer_delay=Distribution.uniform(1, 20))


@dataclass(frozen=True, kw_only=True)
class PacingStats:
    """The live figures of one campaign at instant ``now`` (seconds, any origin).

    Per-agent and per-call ages are in seconds. Abandon figures count answered
    calls (connected or dropped) and drops (answered, not connected to an agent
    within the deadline) over the rolling 30 days and the last 24 hours.
    """

    now: float
    agents_logged_in: int
    agents_free: int
    #: for each agent on a call: how long the call has been connected
    talk_elapsed: tuple[float, ...] = ()
    #: for each agent in wrap-up: how long the wrap-up has lasted
    wrapup_elapsed: tuple[float, ...] = ()
    #: calls placed and not yet answered (originate sent, ringing)
    calls_ringing: int = 0
    #: how long each of those has been ringing; calls missing here count as just placed
    ringing_elapsed: tuple[float, ...] = ()
    #: indices into ``ringing_elapsed`` of the calls that may be hung up now
    #: (rung at least ``PacingSettings.hangup_after``, no hang-up asked yet)
    hangup_candidates: tuple[int, ...] = ()
    #: answered calls not yet connected to an agent
    calls_waiting: int = 0
    #: every call of the campaign placed and not yet ended, including connected ones
    in_flight: int = 0
    #: how many more calls the rate caps and connections allow right now (None: no limit)
    capacity: int | None = None
    estimates: CallEstimates = DEFAULT_ESTIMATES
    drops_30d: int = 0
    answered_30d: int = 0
    drops_24h: int = 0
    answered_24h: int = 0
    #: drops and answered calls over the last 60 minutes (the hourly guard)
    drops_1h: int = 0
    answered_1h: int = 0
    #: other engines dialing this campaign for the same agents: how long each
    #: of their ringing calls has rung (as last published, aged since, plus
    #: the calls they are expected to have placed since), their answered
    #: calls waiting for an agent and their calls in flight
    shared_ringing_elapsed: tuple[float, ...] = ()
    shared_waiting: int = 0
    shared_in_flight: int = 0
    #: engines dialing this campaign (this one included) and this engine's
    #: place among them (0-based, in a fixed order all of them agree on)
    engines: int = 1
    engine_rank: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.engine_rank < self.engines:
            raise ValueError(f"PacingStats.engine_rank {self.engine_rank} is not one of {self.engines} engines")
        for name in ("agents_logged_in", "agents_free", "calls_ringing", "calls_waiting", "in_flight",
                     "shared_waiting", "shared_in_flight"):
            if getattr(self, name) < 0:
                raise ValueError(f"PacingStats.{name} is negative: {getattr(self, name)}")
        if self.in_flight < self.calls_ringing + self.calls_waiting:
            raise ValueError(
                f"PacingStats.in_flight ({self.in_flight}) is less than the calls ringing "
                f"and waiting ({self.calls_ringing} + {self.calls_waiting})"
            )
        if len(self.ringing_elapsed) > self.calls_ringing:
            raise ValueError(
                f"PacingStats has {len(self.ringing_elapsed)} ringing ages "
                f"for {self.calls_ringing} ringing calls"
            )
        n = len(self.ringing_elapsed)
        if len(set(self.hangup_candidates)) != len(self.hangup_candidates) or any(
            not 0 <= i < n for i in self.hangup_candidates
        ):
            raise ValueError(
                f"PacingStats.hangup_candidates {self.hangup_candidates} are not distinct "
                f"indices into the {n} ringing ages"
            )


@dataclass(frozen=True, kw_only=True)
class PacingSettings:
    """A campaign's pacing settings."""

    mode: Mode = "progressive"
    #: progressive: calls per free agent
    dial_ratio: float = 1.0
    #: predictive: at most this many lines (calls in flight) per logged-in agent
    max_dial_level: float = 3.0
    #: the abandon rate (drops / answered) never to exceed
    abandon_target: float = rules.MAX_ABANDON_RATE
    #: calls in flight for this campaign, at most
    max_concurrent: int = 100
    #: seconds an answered call may wait for an agent before it counts as dropped
    connect_deadline: float = rules.CONNECT_DEADLINE
    #: the abandon rate is taken over at least this many answered calls
    abandon_min_sample: int = 100
    #: predictive: the allowed marginal drop probability with the whole budget
    #: left; None: MARGINAL_DROP, or MARGINAL_DROP_HANGUP with hang-ups
    max_marginal_drop: float | None = None
    #: predictive: seconds a call must have rung (since the called line
    #: started ringing) before it may be hung up when it would likely find no
    #: agent; the engine offers such calls as ``PacingStats.hangup_candidates``.
    #: None: calls ring until answered or the ring timeout
    hangup_after: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"pacing mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not self.dial_ratio > 0:
            raise ValueError(f"dial_ratio must be positive, not {self.dial_ratio}")
        if not self.max_dial_level >= 1:
            raise ValueError(f"max_dial_level must be at least 1, not {self.max_dial_level}")
        if not 0 < self.abandon_target < 1:
            raise ValueError(f"abandon_target must be between 0 and 1, not {self.abandon_target}")
        if self.max_concurrent < 0:
            raise ValueError(f"max_concurrent must not be negative, not {self.max_concurrent}")
        if self.hangup_after is not None and not self.hangup_after >= MIN_RING:
            raise ValueError(
                f"hangup_after must be at least {MIN_RING:g} s (the minimum ring before"
                f" giving up on a call), not {self.hangup_after}"
            )
        if self.max_marginal_drop is not None and not 0 <= self.max_marginal_drop < 1:
            raise ValueError(f"max_marginal_drop must be in [0, 1), not {self.max_marginal_drop}")


@dataclass(frozen=True, kw_only=True)
class PacingDecision:
    """What :func:`decide` concluded, for the engine and the status display."""

    calls: int
    mode: str
    #: short plain-words reason, e.g. "predictive" or "over abandon budget: 1:1"
    reason: str
    #: lines (calls in flight after placing these) per logged-in agent
    dial_level: float
    #: drops / answered the decision used (the worse window, over the minimum sample)
    abandon_rate: float
    #: predictive: the marginal drop probability allowed, else 0
    allowed_drop: float = 0.0
    #: predictive with ``hangup_after``: ringing calls to hang up now, as
    #: indices into ``PacingStats.ringing_elapsed``
    hangup: tuple[int, ...] = ()
    #: with several engines on the campaign: the calls all of them together
    #: should place now (``calls`` is this engine's share); else ``calls``
    total_calls: int = 0
    #: predictive: the abandon rate of the last hour the decision used
    hour_rate: float = 0.0
    #: predictive: agents the model expects to be free (or freed) by the
    #: latest moment it checks (about the slowest answer + 2 s), before the
    #: ringing calls take theirs; else the agents free now
    agents_expected: float = 0.0


# --------------------------------------------------------------------------
# The policy


def calls_to_place(stats: PacingStats, settings: PacingSettings) -> int:
    """How many new calls to place now."""
    return decide(stats, settings).calls


def abandon_rate(stats: PacingStats, settings: PacingSettings) -> float:
    """The worse of the 30-day and 24-hour abandon rates, over at least the minimum sample."""
    floor = max(1, settings.abandon_min_sample)
    return max(
        stats.drops_30d / max(stats.answered_30d, floor),
        stats.drops_24h / max(stats.answered_24h, floor),
    )


def hour_rate(stats: PacingStats) -> float:
    """Drops / answered over the last hour, over at least ``HOUR_MIN_SAMPLE`` answered calls."""
    return stats.drops_1h / max(stats.answered_1h, HOUR_MIN_SAMPLE)


def decide(stats: PacingStats, settings: PacingSettings) -> PacingDecision:
    """Decide how many calls to place now; see the module docstring.

    With other engines on the campaign (``stats.engines`` > 1), the count is
    worked out for all of them together (their calls added to this engine's)
    and this engine places its share: ``floor((n + rank) / engines)``, which
    over the engines adds up to exactly n.
    """
    if stats.engines == 1 and not stats.shared_ringing_elapsed and not stats.shared_in_flight:
        return _decide(stats, settings)
    own_ages = stats.ringing_elapsed + (0.0,) * (stats.calls_ringing - len(stats.ringing_elapsed))
    ages = own_ages + stats.shared_ringing_elapsed
    merged = dataclasses.replace(
        stats,
        calls_ringing=len(ages), ringing_elapsed=ages,
        calls_waiting=stats.calls_waiting + stats.shared_waiting,
        in_flight=max(stats.in_flight + stats.shared_in_flight, len(ages) + stats.calls_waiting + stats.shared_waiting),
        capacity=None, shared_ringing_elapsed=(), shared_waiting=0, shared_in_flight=0,
        engines=1, engine_rank=0,
    )
    together = _decide(merged, settings)
    k = stats.engines
    share = (together.calls + stats.engine_rank) // k
    reason = together.reason
    if k > 1:
        reason += f"; share {stats.engine_rank + 1} of {k}"
    if stats.capacity is not None and share > stats.capacity:
        share = max(0, stats.capacity)
        reason += "; capped by concurrency"
    return dataclasses.replace(together, calls=share, reason=reason, total_calls=together.calls)


def _decide(stats: PacingStats, settings: PacingSettings) -> PacingDecision:
    rate = abandon_rate(stats, settings)
    room = settings.max_concurrent - stats.in_flight
    if stats.capacity is not None:
        room = min(room, stats.capacity)
    room = max(0, room)
    agents = stats.agents_logged_in

    def done(calls: int, reason: str, allowed: float = 0.0, hangups: tuple[int, ...] = (),
             supply: float | None = None) -> PacingDecision:
        capped = min(max(0, calls), room)
        if capped < calls:
            reason += "; capped by concurrency"
        level = (stats.in_flight + capped) / agents if agents else 0.0
        return PacingDecision(
            calls=capped,
            total_calls=capped,
            mode=settings.mode,
            reason=reason,
            dial_level=level,
            abandon_rate=rate,
            allowed_drop=allowed,
            hangup=hangups,
            hour_rate=hour_rate(stats),
            agents_expected=float(stats.agents_free) if supply is None else supply,
        )

    if settings.mode == "unattended":
        return done(room, "unattended")

    pending = stats.calls_ringing + stats.calls_waiting
    if settings.mode == "progressive":
        return done(_progressive(stats.agents_free, settings.dial_ratio, pending), "progressive")

    # predictive
    one_to_one = _progressive(stats.agents_free, 1.0, pending)
    if agents == 0:
        # Any of the ringing calls answered now would be dropped.
        hangups = stats.hangup_candidates if settings.hangup_after is not None else ()
        return done(0, "no agents", hangups=hangups)
    target = settings.abandon_target
    if rate >= target:
        hangups: tuple[int, ...] = ()
        if settings.hangup_after is not None and stats.hangup_candidates:
            # Placing calls is down to 1:1; cutting the ringing calls that
            # would be dropped matters all the more.
            hangups = _predictive(stats, settings.connect_deadline, 0.0, 0, True)[1]
        return done(one_to_one, "over abandon budget: 1:1", hangups=hangups)
    top = settings.max_marginal_drop
    if top is None:
        top = MARGINAL_DROP_HANGUP if settings.hangup_after is not None else MARGINAL_DROP
    hourly = hour_rate(stats)
    allowed = top * _budget_left(stats, settings)
    line_cap = int(math.floor(settings.max_dial_level * agents + 1e-9)) - stats.in_flight
    limit = max(0, min(room, line_cap))
    n, hangups, supply = _predictive(stats, settings.connect_deadline, allowed, limit,
                                     settings.hangup_after is not None)
    if n <= one_to_one:
        return done(one_to_one, "predictive: 1:1 floor", allowed, hangups, supply)
    reason = "predictive"
    if hourly > HOUR_LIMIT - HOUR_BAND:
        reason += "; slowed by the last hour's drops"
    if n >= limit and limit == line_cap and line_cap < room:
        reason += "; capped by max dial level"
    return done(n, reason, allowed, hangups, supply)


#: the allowed marginal drop probability falls from its maximum to zero over
#: this top fraction of the abandon target
FEEDBACK_BAND = 0.5
#: the hourly guard: the allowed marginal drop probability also falls to zero
#: as the last hour's abandon rate goes from HOUR_LIMIT - HOUR_BAND to
#: HOUR_LIMIT, so that a burst of drops (a shift change, a list turning
#: good again) is met at once, not when it has moved the 24-hour rate; the
#: hour's rate is taken over at least HOUR_MIN_SAMPLE answered calls
HOUR_LIMIT = 0.045
HOUR_BAND = 0.015
HOUR_MIN_SAMPLE = 60
#: a new campaign: the allowed marginal drop probability grows from
#: COLD_START_FROM / COLD_START_RAMP of its value to all of it over its
#: first COLD_START_RAMP - COLD_START_FROM answered calls, while the abandon
#: rate rests on too few calls to say how much of the budget is left
COLD_START_RAMP = 200
COLD_START_FROM = 20
#: drops (calls) kept in reserve against the day's and the hour's budgets:
#: for calls already ringing when the budget runs out
DAY_RESERVE = 1.5
HOUR_RESERVE = 1.5
#: the maximum allowed marginal drop probability, by default; with hang-ups,
#: calls that turn out unneeded while still ringing are cut, so the same
#: abandon rate is reached with a higher one (see tests/bench/bench_pacing.py)
MARGINAL_DROP = 0.10
MARGINAL_DROP_HANGUP = 0.20
#: a ringing call is kept when it would find no agent with at most this
#: probability, however little of the abandon budget is left: cutting calls
#: that are all but sure to find one only wastes leads
HANGUP_FLOOR = 0.01


def _budget_left(stats: PacingStats, settings: PacingSettings) -> float:
    """The share (0..1) of the largest marginal drop probability the abandon budget allows.

    The least of three, each counted in calls so that a small campaign keeps
    a drop in reserve: the rolling 30 days and 24 hours against the target
    (full up to ``1 - FEEDBACK_BAND`` of it), the last hour against
    HOUR_LIMIT, and the ramp of a new campaign (COLD_START_RAMP).
    """
    target = settings.abandon_target
    floor = max(1, settings.abandon_min_sample)
    shares = [1.0]
    for drops, answered in ((stats.drops_30d, stats.answered_30d), (stats.drops_24h, stats.answered_24h)):
        n = max(answered, floor)
        shares.append((target * n - drops - DAY_RESERVE) / (FEEDBACK_BAND * target * n))
    n = max(stats.answered_1h, HOUR_MIN_SAMPLE)
    shares.append((HOUR_LIMIT * n - stats.drops_1h - HOUR_RESERVE) / (HOUR_BAND * n))
    history = max(stats.answered_30d, stats.answered_24h)
    shares.append((history + COLD_START_FROM) / COLD_START_RAMP)
    return max(0.0, min(shares))


def _progressive(free: int, ratio: float, pending: int) -> int:
    return max(0, int(math.floor(free * ratio + 1e-9)) - pending)


#: quantile midpoints of the time-to-answer distribution where the balance is checked
_GRID = (0.125, 0.375, 0.625, 0.875)
#: variance floor, so that a certain-looking forecast still leaves some doubt
_VAR_FLOOR = 0.01


def _predictive(
    stats: PacingStats, deadline: float, allowed: float, limit: int, hang_up: bool = False
) -> tuple[int, tuple[int, ...]]:
    """How many calls to place, which ringing calls to hang up, and the agents
    expected free by the last moment checked.

    Places the most calls such that the last one, if answered, finds no agent
    with probability <= allowed. First, if ``hang_up``, hangs up one by one
    the candidates (``stats.hangup_candidates``) that, if answered, would find
    no agent with probability > max(allowed, HANGUP_FLOOR), the likeliest
    first. Hang-ups are indices into ``stats.ringing_elapsed``.
    """
    est = stats.estimates
    p = min(1.0, max(0.005, est.answer_rate))
    delay = est.answer_delay
    dcdf = delay.cdf
    dlen = len(dcdf)
    dlast = dcdf[-1]
    times = delay.grid_times
    ripe = list(stats.hangup_candidates) if hang_up else []
    if ripe:
        # Candidates have rung a while: they are answered, if at all, within
        # the next few seconds, so the balance is checked from now on, every
        # two seconds, as well.
        grid = tuple(sorted(set(times).union(range(0, dlen, 2))))
    else:
        if limit <= 0:
            return 0, (), float(stats.agents_free)
        grid = times
    m = len(grid)
    horizons = [t + deadline for t in grid]

    # Supply: agents free by t + deadline.
    mean = [float(stats.agents_free)] * m
    var = [0.0] * m
    wrap = est.wrapup_time
    for u in stats.wrapup_elapsed:
        left = wrap - u
        for j in range(m):
            if left <= horizons[j]:
                mean[j] += 1.0
    # A talking agent counts if the call ends by t + deadline - wrap-up.
    shifts = tuple(round(h - wrap) for h in horizons)
    tcdf = est.talk_time.cdf
    memo = _completion_rows(est.talk_time, shifts)
    rows = []
    for k in map(round, stats.talk_elapsed):
        row = memo.get(k)
        if row is None:
            row = memo[k] = _completion_row(tcdf, k, shifts)
        rows.append(row)
    if rows:
        columns = list(zip(*rows))
        for j in range(m):
            mean[j] += sum(columns[j])
            var[j] += sum(columns[m + j])

    supply = mean[-1]

    # Demand: calls that will want an agent by t.
    for j in range(m):
        mean[j] -= stats.calls_waiting
    timeout = est.no_answer_timeout

    def answered_by(k: int) -> list[float] | None:
        """For a call that has rung k s: P(answered by each t), or None if it cannot be."""
        g0 = dcdf[k] if k < dlen else dlast
        still = p * (1.0 - g0) + ((1.0 - p) if k < timeout else 0.0)
        if still <= 1e-12:
            return None
        return [p * ((dcdf[k + t] if k + t < dlen else dlast) - g0) / still for t in grid]

    ages = Counter(map(round, stats.ringing_elapsed))
    fresh = stats.calls_ringing - len(stats.ringing_elapsed)
    if fresh:
        ages[0] += fresh
    for k, count in ages.items():
        row_a = answered_by(k)
        if row_a is None:
            continue
        for j in range(m):
            a = row_a[j]
            mean[j] -= count * a
            var[j] += count * (a - a * a)

    def worst_from() -> list[float]:
        # P(no spare agent at t_j), continuity-corrected; a call answered at
        # t_j that takes an agent leaves one fewer for every later t, so its
        # cost is the worst shortage from t_j on.
        out = [0.5 * math.erfc((mean[j] - 0.5) / (math.sqrt(var[j] + _VAR_FLOOR) * _SQRT2)) for j in range(m)]
        for j in range(m - 2, -1, -1):
            if out[j + 1] > out[j]:
                out[j] = out[j + 1]
        return out

    hangups: list[int] = []
    if ripe:
        # Hang up the candidate that would most likely find no agent while
        # that likelihood is above what a new call is allowed: the rule for
        # placing a call, applied to keeping one (the balance without it, at
        # the moments it may be answered). Its own chance counts here, not
        # the worst later shortage: the calls placed after it counted on it.
        by_age: dict[int, list[int]] = {}
        for i in ripe:
            by_age.setdefault(round(stats.ringing_elapsed[i]), []).append(i)
        rows_a = {k: answered_by(k) for k in by_age}
        while by_age:
            best_k, best_cost = -1, max(allowed, HANGUP_FLOOR)
            for k in by_age:
                row_a = rows_a[k]
                if row_a is None or row_a[-1] <= 1e-12:
                    continue
                total = row_a[-1]
                cost = 0.0
                prev = 0.0
                for j in range(m):
                    a = row_a[j]
                    sd = math.sqrt(max(0.0, var[j] - (a - a * a)) + _VAR_FLOOR)
                    cost += (a - prev) * 0.5 * math.erfc((mean[j] + a - 0.5) / (sd * _SQRT2))
                    if a >= total:
                        break  # answered by now if at all
                    prev = a
                cost /= total
                if cost > best_cost:
                    best_k, best_cost = k, cost
            if best_k < 0:
                break
            hangups.append(by_age[best_k].pop())
            if not by_age[best_k]:
                del by_age[best_k]
            row_a = rows_a[best_k]
            for j in range(m):
                a = row_a[j]
                mean[j] += a
                var[j] -= a - a * a
        main = [grid.index(t) for t in times]
        mean = [mean[j] for j in main]
        var = [var[j] for j in main]
        m = len(times)

    # New calls, one at a time.
    new = [p * (dcdf[t] if t < dlen else dlast) for t in times]
    n = 0
    while n < limit:
        if sum(worst_from()) / m > allowed:
            break
        n += 1
        for j in range(m):
            a = new[j]
            mean[j] -= a
            var[j] += a * (1.0 - a)
    return n, tuple(hangups), supply


def _completion_rows(talk: Distribution, shifts: tuple[int, ...]) -> dict[int, tuple[float, ...]]:
    """Memo of :func:`_completion_row` for one distribution and set of shifts.

    Kept on the distribution object, which is immutable; the estimator hands
    out a new one when its figures change.
    """
    memo = talk.__dict__.setdefault("_completion", {})
    rows = memo.get(shifts)
    if rows is None:
        if len(memo) > 8:
            memo.clear()
        rows = memo[shifts] = {}
    return rows


def _completion_row(cdf: tuple[float, ...], k: int, shifts: tuple[int, ...]) -> tuple[float, ...]:
    """For a call that has lasted k seconds: P(it ends within each shift), then their variances."""
    n = len(cdf)
    c0 = cdf[k] if k < n else cdf[-1]
    alive = 1.0 - c0
    if alive <= 1e-9:
        # far beyond anything seen: do not count on it ending
        return (0.0,) * (2 * len(shifts))
    last = cdf[-1]
    qs = [((cdf[k + d] if k + d < n else last) - c0) / alive if d > 0 else 0.0 for d in shifts]
    return tuple(qs) + tuple(q - q * q for q in qs)


# --------------------------------------------------------------------------
# Estimates from recent calls


class CallStatsEstimator:
    """Recent answer rate, time-to-answer, talk and wrap-up times of one campaign.

    The engine reports each event with the instant it happened (seconds on
    any monotonic clock; the estimator reads no clock). Figures are taken over
    the last ``window`` seconds and at most ``max_samples`` events of each
    kind, blended with ``prior`` while there are few samples. Distributions
    are rebuilt at most every ``refresh`` seconds.
    """

    def __init__(
        self,
        *,
        window: float = 1800.0,
        max_samples: int = 2000,
        prior: CallEstimates | None = None,
        prior_weight: int = 20,
        min_samples: int = 30,
        refresh: float = 30.0,
    ) -> None:
        self.window = window
        self.prior = prior if prior is not None else COLD_START_ESTIMATES
        self.prior_weight = prior_weight
        self.min_samples = min_samples
        self.refresh = refresh
        # (when it ended, answered: True / not answered: False / hung up by the
        # dialer while ringing: None, seconds it rang)
        self._attempts: deque[tuple[float, bool | None, float]] = deque(maxlen=max_samples)
        self._hung_up = 0  # attempts with None in _attempts
        self._delays: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._timeouts: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._talks: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._wraps: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._answered: deque[float] = deque()
        self._drops: deque[float] = deque()
        self._cache: CallEstimates | None = None
        self._talk_fit: tuple[float, float, Distribution] | None = None
        self._cache_at = -math.inf
        self._dirty = True
        self._since_check = 0
        #: times the answer rate was found to have shifted (older attempts forgotten)
        self.shifts = 0

    # events

    def call_answered(self, now: float, ring_time: float) -> None:
        """A placed call was answered after ``ring_time`` seconds."""
        self._add_attempt((now, True, ring_time))
        self._delays.append((now, ring_time))
        self._answered.append(now)
        self._dirty = True

    def call_not_answered(self, now: float, ring_time: float) -> None:
        """A placed call ended unanswered (no answer, busy, failed) after ``ring_time`` seconds."""
        self._add_attempt((now, False, ring_time))
        self._timeouts.append((now, ring_time))
        self._dirty = True

    def call_hung_up(self, now: float, ring_time: float) -> None:
        """The dialer hung up a still ringing call after ``ring_time`` seconds.

        Whether it would have been answered is unknown: it counts as placed
        only for as long as it rang (see :meth:`answer_rate`).
        """
        self._add_attempt((now, None, ring_time))
        self._dirty = True

    def _add_attempt(self, attempt: tuple[float, bool | None, float]) -> None:
        attempts = self._attempts
        if len(attempts) == attempts.maxlen and attempts[0][1] is None:
            self._hung_up -= 1
        attempts.append(attempt)
        if attempt[1] is None:
            self._hung_up += 1
        self._since_check += 1
        if self._since_check >= SHIFT_CHECK_EVERY:
            self._since_check = 0
            self._check_shift()

    def _check_shift(self) -> None:
        """Forget the older attempts when the last SHIFT_RECENT answer at a rate the
        rest of the window makes all but impossible (a list turning bad or good again)."""
        attempts = self._attempts
        k = SHIFT_RECENT
        if len(attempts) < 2 * k:
            return
        older = len(attempts) - k
        answered_all = sum(1 for _, a, _ in attempts if a)
        recent = sum(1 for i in range(older, len(attempts)) if attempts[i][1])
        p = (answered_all - recent) / older
        z = (recent - k * p) / math.sqrt(k * p * (1.0 - p) + 1.0)
        if abs(z) > SHIFT_Z:
            for _ in range(older):
                if attempts.popleft()[1] is None:
                    self._hung_up -= 1
            self.shifts += 1
            self._dirty = True
            self._cache_at = -math.inf

    def call_dropped(self, now: float) -> None:
        """An answered call was not connected to an agent in time."""
        self._drops.append(now)

    def talk_ended(self, now: float, talk_time: float) -> None:
        """A call connected to an agent ended after ``talk_time`` seconds."""
        self._talks.append((now, talk_time))
        self._dirty = True

    def wrapup_ended(self, now: float, wrapup_time: float) -> None:
        """An agent finished wrap-up after ``wrapup_time`` seconds."""
        self._wraps.append((now, wrapup_time))
        self._dirty = True

    @property
    def attempts(self) -> int:
        """Attempts the estimator holds (answered or not), as of its last update."""
        return len(self._attempts)

    # saving what was learnt

    def snapshot(self, now: float, *, limit: int = 500) -> dict:
        """What the estimator has learnt, as plain data (JSON): the last ``limit``
        samples of each kind, each with its age in seconds at ``now``."""
        self._prune(now)

        def ages(queue) -> list[list[float]]:
            return [[round(now - t, 1), round(v, 2)] for t, v in list(queue)[-limit:]]

        return {
            "version": 1,
            "attempts": [[round(now - t, 1), a, round(r, 2)] for t, a, r in list(self._attempts)[-limit:]],
            "delays": ages(self._delays), "timeouts": ages(self._timeouts),
            "talks": ages(self._talks), "wraps": ages(self._wraps),
        }

    def restore(self, data: dict, now: float) -> int:
        """Take back a :meth:`snapshot` (the samples keep their ages, counted from
        ``now``); returns the attempts restored. Data of another version, or
        malformed, is ignored (0)."""
        try:
            if data.get("version") != 1:
                return 0
            attempts = [(now - float(age), None if a is None else bool(a), float(r))
                        for age, a, r in data.get("attempts", [])]
            kinds = {name: [(now - float(age), float(v)) for age, v in data.get(name, [])]
                     for name in ("delays", "timeouts", "talks", "wraps")}
        except (AttributeError, TypeError, ValueError):
            return 0
        for attempt in sorted(attempts):
            self._add_attempt(attempt)
        for name, rows in kinds.items():
            getattr(self, "_" + name).extend(sorted(rows))
        self._dirty = True
        self._cache_at = -math.inf
        return len(attempts)

    # figures

    def _prune(self, now: float) -> None:
        cutoff = now - self.window
        attempts = self._attempts
        while attempts and attempts[0][0] < cutoff:
            if attempts.popleft()[1] is None:
                self._hung_up -= 1
            self._dirty = True
        for queue in (self._delays, self._timeouts, self._talks, self._wraps):
            while queue and queue[0][0] < cutoff:
                queue.popleft()
                self._dirty = True
        for stamps in (self._answered, self._drops):
            while stamps and stamps[0] < cutoff:
                stamps.popleft()

    def answer_rate(self, now: float) -> float:
        """Answered / placed over the window, blended with the prior rate.

        With calls hung up while ringing in the window, the share that would
        have been answered is estimated from the calls that rang longer
        (see :meth:`_answer_curve`).
        """
        self._prune(now)
        if self._hung_up:
            share = self._answer_curve()[-1]
        else:
            answered = sum(1 for _, a, _ in self._attempts if a)
            share = answered / len(self._attempts) if self._attempts else 0.0
        w = self.prior_weight
        n = len(self._attempts)
        return (share * n + w * self.prior.answer_rate) / (n + w)

    def _answer_curve(self) -> list[float]:
        """P(answered within k seconds) for each whole second k, from the attempts.

        The cumulative incidence of an answer with ending unanswered as the
        competing outcome and a hang-up by the dialer as censoring (the
        Aalen-Johansen estimator): each second's answers and unanswered ends
        are taken as a share of the calls still ringing then, so a call hung
        up at 15 s counts for the first 15 s and no further. The last value
        is the answer rate. Valid because which calls are hung up depends on
        the agents' state, not on the call.
        """
        attempts = self._attempts
        top = int(max(ring for _, _, ring in attempts) + 0.5) + 1
        answers = [0] * top
        ends = [0] * top
        leaving = [0] * top
        for _, answered, ring in attempts:
            k = int(ring + 0.5)
            leaving[k] += 1
            if answered:
                answers[k] += 1
            elif answered is not None:
                ends[k] += 1
        at_risk = len(attempts)
        ringing = 1.0  # P(still ringing at second k)
        incidence = 0.0
        curve = []
        for k in range(top):
            if at_risk:
                incidence += ringing * answers[k] / at_risk
                ringing *= 1.0 - (answers[k] + ends[k]) / at_risk
            curve.append(incidence)
            at_risk -= leaving[k]
        return curve

    def recent_abandon(self, now: float) -> tuple[int, int]:
        """(drops, answered calls) over the window."""
        self._prune(now)
        return len(self._drops), len(self._answered)

    def estimates(self, now: float) -> CallEstimates:
        """The current estimates, rebuilt when events arrived and ``refresh`` has passed."""
        self._prune(now)
        if self._cache is not None and (not self._dirty or now - self._cache_at < self.refresh):
            return self._cache
        prior = self.prior
        delays = [d for _, d in self._delays]
        answer_delay = prior.answer_delay
        if 0 < len(delays) < self.min_samples:
            # Few answers yet: the prior, moved toward what they show.
            answer_delay = _mixture(Distribution.from_samples(delays), prior.answer_delay,
                                    len(delays) / self.min_samples)
        elif len(delays) >= self.min_samples:
            answer_delay = Distribution.from_samples(delays)
            if self._hung_up:
                # Late answers are missing among the calls hung up: the curve
                # accounts for them, the answered calls' own delays would not.
                curve = self._answer_curve()
                rate = curve[-1]
                if rate > 0:
                    cdf = tuple(c / rate for c in curve)
                    answer_delay = Distribution(cdf=cdf, mean=sum(1.0 - c for c in cdf[:-1]))
        timeouts = [d for _, d in self._timeouts]
        talks = [d for _, d in self._talks if d > 0]
        wraps = [d for _, d in self._wraps]
        self._cache = CallEstimates(
            answer_rate=self.answer_rate(now),
            answer_delay=answer_delay,
            no_answer_timeout=(
                _median(timeouts) if len(timeouts) >= self.min_samples else prior.no_answer_timeout
            ),
            talk_time=self._talk_time(talks) if len(talks) >= self.min_samples else prior.talk_time,
            wrapup_time=sum(wraps) / len(wraps) if len(wraps) >= self.min_samples else prior.wrapup_time,
        )
        self._cache_at = now
        self._dirty = False
        return self._cache


    def _talk_time(self, talks: list[float]) -> Distribution:
        # Keep the previous distribution (and what the policy worked out from
        # it) while the fit moves by less than TALK_FIT_TOLERANCE.
        mu, sigma = _lognormal_fit(talks)
        if self._talk_fit is not None:
            old_mu, old_sigma, old = self._talk_fit
            if abs(mu - old_mu) <= TALK_FIT_TOLERANCE and abs(sigma - old_sigma) <= TALK_FIT_TOLERANCE:
                return old
        dist = _lognormal(mu, sigma)
        self._talk_fit = (mu, sigma, dist)
        return dist


#: the answer rate's shift test: every SHIFT_CHECK_EVERY attempts, the last
#: SHIFT_RECENT are compared with the rest of the window, and a difference of
#: more than SHIFT_Z standard deviations makes the estimator forget the rest
SHIFT_RECENT = 50
SHIFT_CHECK_EVERY = 10
SHIFT_Z = 4.0

#: changes of the log-normal talk-time fit (mu, sigma) smaller than this are ignored
TALK_FIT_TOLERANCE = 0.02


def _mixture(a: Distribution, b: Distribution, weight: float) -> Distribution:
    """``weight`` of ``a`` and the rest of ``b``."""
    n = max(len(a.cdf), len(b.cdf))
    cdf = tuple(weight * a.at(k) + (1.0 - weight) * b.at(k) for k in range(n))
    return Distribution(cdf=cdf, mean=weight * a.mean + (1.0 - weight) * b.mean)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def _lognormal_fit(samples: list[float]) -> tuple[float, float]:
    """(mu, sigma): the mean and spread of the logarithms of the samples."""
    logs = [math.log(s) for s in samples]
    n = len(logs)
    mu = sum(logs) / n
    var = sum((x - mu) ** 2 for x in logs) / max(1, n - 1)
    return mu, max(math.sqrt(var), 0.05)


def _lognormal(mu: float, sigma: float) -> Distribution:
    mean = math.exp(mu + sigma * sigma / 2.0)
    sd = mean * math.sqrt(math.exp(sigma * sigma) - 1.0)
    return Distribution.lognormal(mean, sd)
