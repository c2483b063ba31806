"""A simulated Asterisk served from a background thread, for tests whose
engines run as separate processes."""

from __future__ import annotations

import threading

import trio

from dialer.sim import SimAsterisk


class SimThread:
    def __init__(self, **kwargs) -> None:
        self.sim = SimAsterisk(**kwargs)
        self.port: int | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)
        self._error: BaseException | None = None

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                self.port = await nursery.start(self.sim.serve)
                self._ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()
        except BaseException as exc:  # reported by __exit__
            self._error = exc
            self._ready.set()

    def __enter__(self) -> "SimThread":
        self._thread.start()
        if not self._ready.wait(30) or self.port is None:
            raise RuntimeError(f"simulated Asterisk did not start: {self._error!r}")
        return self

    def __exit__(self, *exc) -> None:
        if self._token is not None and self._stop is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass  # it stopped on its own: reported below
        self._thread.join(30)
        if self._error is not None:
            raise RuntimeError(f"simulated Asterisk failed: {self._error!r}") from self._error

    def originated_channels(self) -> list[str]:
        """The Channel of every Originate received, in no particular order.

        Read after the engines are done; the sim appends from its own thread."""
        out = []
        for items in list(self.sim.received.values()):
            out += [m.get("Channel") for _, m in list(items) if m.name == "Originate"]
        return out
