"""Pacing: how many calls a campaign places now, and what it learns from its calls.

Modules, each with one job:

``distributions``
    :class:`Distribution` (a duration's CDF at whole seconds) and its fits.
``estimator``
    :class:`CallStatsEstimator`, the stateful part: the recent answer rate,
    time-to-answer, talk and wrap-up times of one campaign
    (:class:`CallEstimates`), saved and restored as plain data.
``policy``
    :func:`decide`, the pure function from a campaign's live figures
    (:class:`PacingStats`) and settings (:class:`PacingSettings`) to a
    :class:`PacingDecision`; the predictive model is explained there.

The package reads no clock, does no I/O and imports nothing of the dialer
but :mod:`dialer.compliance.rules` (the legal limits); the engine, the simulators and
the benchmarks import it, never the other way round. Within it,
``distributions`` imports nothing, ``estimator`` imports ``distributions``,
``policy`` imports both.

May import: dialer.compliance.rules. Nothing with a clock, a database or a
socket.
"""

from dialer.pacing.distributions import Distribution
from dialer.pacing.estimator import (
    COLD_START_ESTIMATES,
    DEFAULT_ESTIMATES,
    SHIFT_CHECK_EVERY,
    SHIFT_RECENT,
    SHIFT_Z,
    TALK_FIT_TOLERANCE,
    CallEstimates,
    CallStatsEstimator,
)
from dialer.pacing.policy import (
    COLD_START_FROM,
    COLD_START_RAMP,
    DAY_RESERVE,
    FEEDBACK_BAND,
    HANGUP_FLOOR,
    HOUR_BAND,
    HOUR_LIMIT,
    HOUR_MIN_SAMPLE,
    HOUR_RESERVE,
    MARGINAL_DROP,
    MARGINAL_DROP_HANGUP,
    MIN_RING,
    MODES,
    Mode,
    PacingDecision,
    PacingSettings,
    PacingStats,
    abandon_rate,
    calls_to_place,
    decide,
    hour_rate,
)

__all__ = [
    "Distribution",
    "CallEstimates",
    "DEFAULT_ESTIMATES",
    "COLD_START_ESTIMATES",
    "PacingStats",
    "PacingSettings",
    "PacingDecision",
    "decide",
    "calls_to_place",
    "abandon_rate",
    "hour_rate",
    "CallStatsEstimator",
]
