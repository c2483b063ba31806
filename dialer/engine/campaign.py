"""What the engine keeps for one campaign between polls (:class:`CampaignRun`).

Who writes what: the watcher ``campaign``, ``settings``, ``rules``,
``abandon``, ``others`` and ``estimates_saved_at`` (and it forgets
``hopper_empty_until`` and the ``expected`` shares of engines gone when the
state changes or a poll shows them); the dialer the decision and its record
(``decision``, ``pacing``, ``placed``, ``timezones*``,
``hopper_empty_until``, ``expected``, the decisions log ``log_*``, which the
watcher takes to write); the follower the ``estimator`` and the ``breaker``
as calls end. ``calls`` holds the campaign's calls in flight: added when
placed (or adopted), removed when they end or were never sent. ``campaign``
is a snapshot: the watcher replaces it at each poll and nobody changes it in
place.

Bounds: ``calls`` is capped by the pool's ``max_in_flight``; ``log_rows``
gains one row a second and is written at each poll (the watcher keeps at most
``LOG_ROWS_KEPT`` per campaign while the database cannot take them);
``expected`` is pruned at each pacing decision of the entries the other
engines' live states show.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from dialer.calls.breaker import CircuitBreaker
from dialer.calls.outcomes import RetryRules
from dialer.calls.tracker import TrackedCall
from dialer.models import Campaign
from dialer.pacing import CallStatsEstimator, PacingDecision, PacingSettings


@dataclasses.dataclass(eq=False)
class CampaignRun:
    """What the engine keeps for one campaign between polls."""

    campaign: Campaign
    settings: PacingSettings
    rules: RetryRules
    estimator: CallStatsEstimator
    calls: set[TrackedCall] = dataclasses.field(default_factory=set)
    #: the (time zone, rules region) pairs of its waiting leads (hopper.campaign_timezones)
    timezones: list[tuple[str, str | None]] = dataclasses.field(default_factory=list)
    timezones_at: float = -math.inf
    hopper_empty_until: float = -math.inf
    abandon: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
    decision: PacingDecision | None = None
    placed: int = 0
    #: the inputs and result of the last pacing decision (``status()["pacing"]``)
    pacing: dict[str, Any] | None = None
    #: other engines dialing this campaign: engine id -> what their live state
    #: showed (wall time, speed, ringing ages, waiting, in flight)
    others: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: per other engine: (real time of a decision, calls it was to place) not
    #: yet seen in its live state
    expected: dict[str, list[tuple[float, int]]] = dataclasses.field(default_factory=dict)
    #: the decisions log: the second being gathered, and rows to write (one per
    #: second, written at each poll)
    log_second: int | None = None
    log_row: dict[str, Any] | None = None
    log_rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    estimates_saved_at: float = -math.inf
    breaker: CircuitBreaker = dataclasses.field(default_factory=CircuitBreaker)

    @property
    def id(self) -> int:
        return self.campaign.id

    @property
    def state(self) -> str:
        return self.campaign.state

    @property
    def ring_timeout(self) -> float:
        return self.campaign.ring_timeout


def pacing_settings(c: Campaign) -> PacingSettings:
    return PacingSettings(
        mode=c.mode, dial_ratio=c.dial_ratio, max_dial_level=max(1.0, c.max_dial_level),
        abandon_target=c.abandon_target, max_concurrent=c.max_concurrent,
        hangup_after=float(c.hangup_after) if c.hangup_after else None,
    )
