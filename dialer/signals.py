"""Signals held back while a unit of work must end as all or nothing.

Inside ``with DeferredSignals() as signals:`` a SIGINT or SIGTERM (any number
of them) only records itself: nothing is raised in the middle of a write or
a commit. The work asks :meth:`DeferredSignals.received` at the points where it
can stop cleanly, rolls back, and says so. Outside the main thread (where
Python cannot install handlers) the block defers nothing and nothing is ever
received.

A command that ends with such a block (``dialer leads load``) passes
``to_exit=True``: when the process is the console command
(:func:`hold_to_exit` was called, as ``dialer.cli.run`` does), the block
keeps holding signals back until the process exits, since the command has
already said how it ended; called from Python, the handlers are put back as
usual.
"""

from __future__ import annotations

import signal
import threading

HELD = (signal.SIGINT, signal.SIGTERM)

_hold_to_exit = False


def hold_to_exit() -> None:
    """Mark this process as the console command: blocks made with ``to_exit=True``
    keep their handlers to the end."""
    global _hold_to_exit
    _hold_to_exit = True


class DeferredSignals:
    def __init__(self, signals: tuple[int, ...] = HELD, *, to_exit: bool = False) -> None:
        self._signals = signals
        self._to_exit = to_exit
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
        if self._to_exit and _hold_to_exit:
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()
