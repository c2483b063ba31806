"""VICIdial's adaptive dial level, reimplemented from its documented behaviour.

The baseline the predictive policy is measured against. Every ``period``
seconds (15) the dial level is adjusted from the averages of the last period,
sampled once a second:

    diff  = mean(ready agents) - mean(calls waiting for an agent) + target_diff
    level = level * (1 + diff / agents), clamped to [min_level, max_level]

then halved when more than half of the last minute's answered calls dropped
(only counted over more than 20 answered calls), and held at 1.0 while
today's drops exceed ``drop_limit`` of today's answered calls (VICIdial's
"hard limit"). Calls to place at any moment are
``round(level x agents) - calls in progress`` (ringing, answered and waiting,
and connected to agents), as its auto-dial loop computes ``goalcalls``.
"""

from __future__ import annotations

import math
from collections import deque


class VicidialAdaptive:
    def __init__(
        self,
        *,
        period: float = 15.0,
        target_diff: float = 0.0,
        min_level: float = 1.0,
        max_level: float = 3.0,
        drop_limit: float = 0.03,
        start_level: float = 1.0,
    ) -> None:
        self.period = period
        self.target_diff = target_diff
        self.min_level = min_level
        self.max_level = max_level
        self.drop_limit = drop_limit
        self.level = start_level
        self._next_update: float | None = None
        self._ready_sum = 0.0
        self._waiting_sum = 0.0
        self._samples = 0
        self._last_sample_second: int | None = None
        self._minute: deque[tuple[float, bool]] = deque()  # (answer time, dropped)

    # events from the simulation

    def answered(self, now: float, dropped: bool) -> None:
        """An answered call's fate is known: connected, or dropped."""
        self._minute.append((now, dropped))

    def sample(self, now: float, ready_agents: int, calls_waiting: int) -> None:
        """Once a second: the figures the period's averages are made of."""
        second = int(now)
        if second == self._last_sample_second:
            return
        self._last_sample_second = second
        self._ready_sum += ready_agents
        self._waiting_sum += calls_waiting
        self._samples += 1

    def update(self, now: float, agents: int, drops_today: int, answered_today: int) -> None:
        """Adjust the level when a period has passed."""
        if self._next_update is None:
            self._next_update = now + self.period
            return
        if now < self._next_update:
            return
        self._next_update += self.period
        if self._samples and agents > 0:
            diff = self._ready_sum / self._samples - self._waiting_sum / self._samples + self.target_diff
            self.level = self.level * (1.0 + diff / agents)
        self.level = min(self.max_level, max(self.min_level, self.level))
        self._ready_sum = self._waiting_sum = 0.0
        self._samples = 0
        while self._minute and self._minute[0][0] < now - 60.0:
            self._minute.popleft()
        answered = len(self._minute)
        dropped = sum(1 for _, d in self._minute if d)
        if answered > 20 and dropped > answered / 2:
            self.level = max(self.min_level, self.level / 2.0)
        if answered_today and drops_today / answered_today > self.drop_limit:
            self.level = 1.0

    def calls(self, agents: int, in_progress: int, drops_today: int, answered_today: int) -> int:
        level = self.level
        if answered_today and drops_today / answered_today > self.drop_limit:
            level = 1.0
        goal = math.floor(level * agents + 0.5)
        return max(0, goal - in_progress)
