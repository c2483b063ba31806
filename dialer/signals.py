"""Signals held back while a unit of work must end as all or nothing.

Inside ``with DeferredSignals() as signals:`` a SIGINT or SIGTERM (any number
of them) only records itself: nothing is raised in the middle of a write or
a commit. The work asks :meth:`DeferredSignals.received` at the points where it
can stop cleanly, rolls back, and says so. Outside the main thread (where
Python cannot install handlers) the block defers nothing and nothing is ever
received.
"""

from __future__ import annotations

import signal
import threading

HELD = (signal.SIGINT, signal.SIGTERM)


class DeferredSignals:
    def __init__(self, signals: tuple[int, ...] = HELD) -> None:
        self._signals = signals
        self._previous: dict[int, object] = {}
        self.first: int | None = None
        self.count = 0

    def _record(self, signum, frame) -> None:
        if self.first is None:
            self.first = signum
        self.count += 1

    def received(self) -> bool:
        return self.first is not None

    @property
    def name(self) -> str | None:
        return signal.Signals(self.first).name if self.first is not None else None

    def __enter__(self) -> "DeferredSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in self._signals:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
