"""Duration distributions for pacing: :class:`Distribution` and its fits.

A distribution is its CDF at whole seconds; the estimator builds them from
observed durations (time to answer, talk time) and the policy reads them.
Imports nothing of the dialer.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import cached_property

_SQRT2 = math.sqrt(2.0)

#: quantile midpoints of the time-to-answer distribution where the balance is checked
_GRID = (0.125, 0.375, 0.625, 0.875)

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
