"""Faults on demand, for tests: closes, stalls, bad bytes, refused logins, restarts.

Times given to these methods are trio times or trio-clock seconds (not divided
by ``speed``): they describe the network, not the calls. ``connection`` is a
connection id (``sim.sessions`` keys, ``sim.received`` keys); ``None`` means
every current connection, and for :meth:`close_after_messages` /
:meth:`stall_new_connections` also every later one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

import trio

if TYPE_CHECKING:  # pragma: no cover
    from dialer.sim.server import Session

MALFORMED = b"This line has no colon\r\nResponse Success\r\n\r\n"


class FaultsMixin:
    """Fault injection for :class:`~dialer.sim.server.SimAsterisk`."""

    def _init_faults(self) -> None:
        self.logins_refused = False
        self.stopping = False
        self._close_after_new: int | None = None
        self._stall_new: float = 0.0

    def _targets(self, connection: int | None) -> "Iterable[Session]":
        sessions = self.sessions  # type: ignore[attr-defined]
        if connection is None:
            return list(sessions.values())
        s = sessions.get(connection)
        if s is None:
            raise KeyError(f"no open connection {connection}")
        return [s]

    def _apply_connect_faults(self, s: "Session") -> None:
        if self._close_after_new is not None:
            s.close_after = self._close_after_new
        if self._stall_new > 0:
            s.stall_until = trio.current_time() + self._stall_new

    def close_after_messages(self, n: int, connection: int | None = None) -> None:
        """Close connections once they have been sent ``n`` more messages (banner not counted).

        With ``connection=None`` this also applies to every later connection (until
        ``close_after_messages(None)``); ``n`` counts from each connection's start.
        """
        if n is None:
            self._close_after_new = None
            return
        if connection is None:
            self._close_after_new = n
        for s in self._targets(connection):
            s.close_after = s.messages_sent + n if connection is not None else n

    def close_connection(self, connection: int | None = None) -> None:
        """Drop connections now, without sending what is still queued."""
        for s in self._targets(connection):
            self.stats["fault_closes"] += 1  # type: ignore[attr-defined]
            s.close(flush=False)

    def close_at(self, when: float, connection: int | None = None) -> None:
        """Drop connections at trio time ``when``."""
        self.call_at(when, self._close_quietly, connection)  # type: ignore[attr-defined]

    def _close_quietly(self, connection: int | None) -> None:
        try:
            self.close_connection(connection)
        except KeyError:
            pass

    def stall(self, seconds: float, connection: int | None = None) -> None:
        """Stop reading from and writing to connections for ``seconds`` (trio clock)."""
        until = trio.current_time() + seconds
        for s in self._targets(connection):
            s.stall_until = max(s.stall_until, until)

    def stall_new_connections(self, seconds: float) -> None:
        """Every later connection starts stalled for ``seconds`` (0 turns this off)."""
        self._stall_new = seconds

    def send_raw(self, data: bytes, connection: int | None = None) -> None:
        """Queue ``data`` verbatim on connections, in order with their other output."""
        for s in self._targets(connection):
            s.queue_bytes(bytes(data), count=False)

    def send_malformed(self, connection: int | None = None) -> None:
        """Send a block whose lines are not ``Key: Value``."""
        self.send_raw(MALFORMED, connection)

    def send_oversized(self, size: int = 2 << 20, connection: int | None = None) -> None:
        """Send one event of about ``size`` bytes (one huge header value)."""
        data = b"Event: Oversized\r\nPrivilege: call,all\r\nData: " + b"x" * size + b"\r\n\r\n"
        self.send_raw(data, connection)

    def refuse_logins(self, refuse: bool = True) -> None:
        """Answer every Login with ``Authentication failed`` (after the usual delay)."""
        self.logins_refused = refuse

    def stop_gracefully(self, stopping: bool = True) -> None:
        """As ``core stop gracefully`` (until :meth:`restart` or ``stopping=False``):
        every action, logins included, is answered ``Asterisk is shutting down``;
        calls in progress go on."""
        self.stopping = stopping

    def restart(self, *, keep_calls: bool = True) -> None:
        """Drop every connection, as an Asterisk restart (or a network cut) would.

        ``keep_calls=True``: calls in progress go on and their events reach whoever
        logs in next. ``keep_calls=False``: every call is lost without an event and
        uptime starts again from zero.
        """
        import time as _time

        self.stats["restarts"] += 1  # type: ignore[attr-defined]
        self.stopping = False
        for s in list(self.sessions.values()):  # type: ignore[attr-defined]
            s.close(flush=False)
        if not keep_calls:
            self.pbx.drop_all()  # type: ignore[attr-defined]
            self._boot_wall = self._reload_wall = _time.time()


__all__ = ["FaultsMixin", "MALFORMED"]
