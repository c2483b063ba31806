"""Per-connection Originate rate caps.

A :class:`RateLimiter` combines a token bucket (``rate`` per second, up to
``burst`` saved up) with a sliding one-second window of ``cap`` sends, so a
connection never puts more than its cap on the wire in any one-second window
however the sends bunch up, and its long-run rate is its cap. Pure: every
method takes ``now`` (seconds on any monotonic clock).
"""

from __future__ import annotations

import math
from collections import deque


class RateLimiter:
    def __init__(self, rate: float, burst: int = 1, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = float(rate)
        self.burst = int(burst)
        self.cap = max(1, math.floor(rate))
        self._tokens = float(self.burst)
        self._stamp = now
        self._recent: deque[float] = deque()

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
        recent = self._recent
        while recent and recent[0] + 1.0 <= now:
            recent.popleft()

    def available(self, now: float) -> int:
        """How many sends are allowed right now."""
        self._refill(now)
        return max(0, min(math.floor(self._tokens + 1e-9), self.cap - len(self._recent)))

    def try_take(self, now: float) -> bool:
        if self.available(now) < 1:
            return False
        self._tokens -= 1.0
        self._recent.append(now)
        return True

    def sent_last_second(self, now: float) -> int:
        """Sends in the one-second window ending at ``now``."""
        self._refill(now)
        return len(self._recent)

    def restamp(self, taken_at: float, sent_at: float) -> None:
        """The send let go at ``taken_at`` reached the wire at ``sent_at``:
        count it from then. Between the two, other tasks may have run and
        sends bunched; windows counted from the times the bytes left keep the
        cap as the peer sees it."""
        recent = self._recent
        for i in range(len(recent) - 1, -1, -1):
            if recent[i] == taken_at:
                break
        else:
            return  # out of the window already
        del recent[i]
        j = len(recent)
        while j > 0 and recent[j - 1] > sent_at:
            j -= 1
        recent.insert(j, sent_at)

    def refund(self, now: float) -> None:
        """Give back the last send's allowance: it did not happen after all."""
        self._refill(now)
        self._tokens = min(self.burst, self._tokens + 1.0)
        if self._recent:
            self._recent.pop()

    def next_time(self, now: float) -> float:
        """The earliest time at which one send will be allowed."""
        self._refill(now)
        when = now
        if self._tokens < 1.0 - 1e-9:
            when = now + (1.0 - self._tokens) / self.rate
        if len(self._recent) >= self.cap:
            when = max(when, self._recent[len(self._recent) - self.cap] + 1.0)
        return when

