"""When an event happened, by Asterisk's own clock.

With ``timestampevents = yes`` in ``manager.conf`` every event carries
``Timestamp:`` (epoch seconds, microseconds), the moment Asterisk raised it.
The time an event is *read* is later by the network, Asterisk's own output
queue and however long the reader was busy: under a burst of thousands of
events a second that lag grows and shrinks from one event to the next, and
two events a second apart at Asterisk (an answer, then an agent taking the
call) may be read ten milliseconds apart or three seconds apart. Intervals
such as the two-second rule are therefore measured between Timestamps.

The two hosts' clocks need not agree, so a Timestamp is not used as it is:
:class:`ServerClock` maps it onto the reader's clock by the smallest lag
(read time minus Timestamp) seen recently, which is the clocks' offset plus
the quickest delivery. An event then counts as happening that long after its
Timestamp, never later than it was read. The smallest lag is kept over two
windows of ``window`` seconds, so that a clock step on either host is
followed within two windows (at once when it makes lags smaller).

Pure: every method takes the read time as a value.
"""

from __future__ import annotations

import math

__all__ = ["ServerClock"]


class ServerClock:
    """Maps one server's event Timestamps onto the reader's clock."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._window_start = -math.inf
        self._current = math.inf    # smallest lag in the current window
        self._previous = math.inf   # ... and in the one before it
        self.stamped = 0            # events with a usable Timestamp
        self.unstamped = 0          # events without one (read time used)

    @property
    def offset(self) -> float | None:
        """Read time minus Timestamp for the quickest recent event, or None."""
        best = min(self._current, self._previous)
        return None if best == math.inf else best

    def event_time(self, timestamp: str | None, read_at: float) -> float:
        """When an event read at ``read_at`` happened, on the reader's clock.

        ``timestamp`` is the event's ``Timestamp:`` header (None or
        unparsable: the read time is the best there is)."""
        if timestamp is None:
            self.unstamped += 1
            return read_at
        try:
            stamp = float(timestamp)
        except ValueError:
            self.unstamped += 1
            return read_at
        if not math.isfinite(stamp):
            self.unstamped += 1
            return read_at
        self.stamped += 1
        lag = read_at - stamp
        if read_at - self._window_start >= self.window:
            self._previous = self._current if read_at - self._window_start < 2 * self.window else math.inf
            self._current = lag
            self._window_start = read_at
        elif lag < self._current:
            self._current = lag
        return min(read_at, stamp + min(self._current, self._previous))
