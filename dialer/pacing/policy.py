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
  no rolling hour goes above 5 %. A small team (SMALL_TEAM agents or
  fewer) keeps SMALL_TEAM_HOUR_RESERVE drops in reserve instead of
  HOUR_RESERVE: with 3 agents an hour has some 60 answered calls, so two
  calls answered at once with no agent free are enough to go from within
  the limit to over it;
* a new campaign: a tenth at first, growing to all over its first 180
  answered calls, while its abandon rate rests on too few calls to say how
  much of the budget is left.

With every share down to nothing (but the rate still under the target),
a small team (SMALL_TEAM agents or fewer) still places a call while its
chance of finding no agent stays under SURE_FLOOR (0.5 %), the ringing
calls counted as SURE_MARGIN seconds younger than they are: a free agent
whose only call has rung longer than any answer comes is given another
instead of waiting out the ring timeout, which the 1:1 floor (counting
that call as still to come) would make them do. With 3 agents that wait
is a third of the team's time; a larger team loses little to it, and
there the extra calls, placed with the budget spent, only slowed the
return to full occupancy after a break.

A rate at or above the target ("budget spent") makes the campaign dial
progressive 1:1, which cannot abandon a call while agents stay logged in,
until the rate is below the target again.

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

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from dialer.compliance import rules
from dialer.pacing.distributions import _SQRT2, Distribution
from dialer.pacing.estimator import DEFAULT_ESTIMATES, CallEstimates

Mode = Literal["progressive", "predictive", "unattended"]

#: seconds a call must ring before the dialer may give up on it (dialer.compliance.rules)
MIN_RING = float(rules.MIN_RING)
MODES: tuple[str, ...] = ("progressive", "predictive", "unattended")


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
    sure = min(top, SURE_FLOOR)
    if allowed < sure and stats.ringing_elapsed and agents <= SMALL_TEAM:
        # The budget all but spent, a small team: still give a free agent
        # another call when the one ringing for them will all but surely not
        # be answered (rung longer than any answer comes, by SURE_MARGIN).
        younger = dataclasses.replace(
            stats, ringing_elapsed=tuple(max(0.0, a - SURE_MARGIN) for a in stats.ringing_elapsed),
            hangup_candidates=())
        allowed = sure
        n = max(n, _predictive(younger, settings.connect_deadline, sure, limit)[0])
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
#: a team of at most SMALL_TEAM agents keeps this many against the hour's
#: budget instead: two calls dropped at once, which with some 60 answered
#: calls an hour is the step from within the hour's limit to over it
SMALL_TEAM = 5
SMALL_TEAM_HOUR_RESERVE = 2.0
#: the maximum allowed marginal drop probability, by default; with hang-ups,
#: calls that turn out unneeded while still ringing are cut, so the same
#: abandon rate is reached with a higher one (see tests/bench/bench_pacing.py)
MARGINAL_DROP = 0.10
MARGINAL_DROP_HANGUP = 0.20
#: a ringing call is kept when it would find no agent with at most this
#: probability, however little of the abandon budget is left: cutting calls
#: that are all but sure to find one only wastes leads
HANGUP_FLOOR = 0.01
#: however little of the abandon budget is left (short of spent), a small
#: team (SMALL_TEAM agents or fewer) still places a call that would find no
#: agent with at most SURE_FLOOR, judged
#: with every ringing call taken as SURE_MARGIN seconds younger than it is:
#: above all, another call for a free agent whose call has rung past any
#: answer (by that margin), instead of waiting out its ring timeout. Never
#: more than ``PacingSettings.max_marginal_drop``
SURE_FLOOR = 0.005
SURE_MARGIN = 0.5


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
    reserve = SMALL_TEAM_HOUR_RESERVE if stats.agents_logged_in <= SMALL_TEAM else HOUR_RESERVE
    shares.append((HOUR_LIMIT * n - stats.drops_1h - reserve) / (HOUR_BAND * n))
    history = max(stats.answered_30d, stats.answered_24h)
    shares.append((history + COLD_START_FROM) / COLD_START_RAMP)
    return max(0.0, min(shares))


def _progressive(free: int, ratio: float, pending: int) -> int:
    return max(0, int(math.floor(free * ratio + 1e-9)) - pending)


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
