"""What pacing learns of a campaign's calls: :class:`CallStatsEstimator`.

The stateful part of pacing: the engine feeds it each call's outcome and it
produces the recent answer rate, time-to-answer and talk-time distributions
(:class:`CallEstimates`) that go into :class:`dialer.pacing.PacingStats`.

The estimator adapts to change: a new campaign starts from
``COLD_START_ESTIMATES`` (answers likelier and sooner than usual, so it
places fewer calls), moves toward its own figures with every answer, and can
start instead from the estimates a previous engine saved
(:meth:`CallStatsEstimator.snapshot`); when the last 50 attempts answer at a
rate the rest of its 30-minute window makes all but impossible, it forgets
the rest, so a block of bad numbers that ends does not leave the answer rate
underestimated (and calls overdialed) for half an hour.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from dialer.pacing.distributions import Distribution, _lognormal, _lognormal_fit, _median, _mixture


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
