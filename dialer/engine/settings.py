"""The engine's tunables, its clock and the fixed figures its parts share."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import socket
import time
import uuid
from typing import Any

import trio

from dialer.compliance import rules
from dialer.calls.drops import DEFAULT_TARGET, DropTarget
from dialer.calls.outcomes import to_datetime
from dialer.errors import UserError

#: times the engine tries to write its last outcomes when it stops (0.5 s apart),
#: for at most FINAL_FLUSH_SECONDS (plus the db_timeout of the try under way)
FINAL_FLUSH_TRIES = 20
FINAL_FLUSH_SECONDS = 10.0
#: real seconds within which another engine's live state counts it as dialing a campaign
SHARE_FRESH = 3.0
#: engine-clock seconds between two saves of a campaign's learnt pacing estimates
ESTIMATES_EVERY = 60.0
#: The UserEvent the drop-message dialplan sends when the called party presses the
#: opt-out key (47 CFR 64.1200(a)(7)); it carries the Attempt (DIALER_ATTEMPT).
OPT_OUT_EVENT = "DialerOptOut"
#: AstDB family of the hangup records the dialplan writes (README: the dialplan it expects)
HANGUP_RECORD_FAMILY = "dialer-end"


@dataclasses.dataclass
class EngineSettings:
    """Tunables, from the ``[engine]`` table of ``dialer.toml``."""

    poll_interval: float = 0.5       # real seconds between campaign-state polls
    flush_interval: float = 0.1      # real seconds between outcome writes
    lease: float = 60.0              # engine-clock seconds a claim lasts without renewal
    drop_after: float = rules.CONNECT_DEADLINE  # answered calls not with an agent by then are dropped
    stale_after: float = 60.0        # past ring timeout, a call with no result is looked up
    housekeeping_interval: float = 5.0
    stats_interval: float = 5.0
    batch_interval: float = 0.05     # real seconds between two claims, at least
    db_timeout: float = 10.0         # real seconds one unit of database work may take
    # Every AMI connection sends Ping this often (real seconds) and counts the
    # server as stalled when no answer, and no other byte, arrives in time:
    # the connection is then made again and the calls in flight reconciled.
    ping_interval: float = 5.0
    ping_timeout: float = 3.0
    speed: float = 1.0               # engine-clock seconds per real second
    breaker_failures: float = 20     # calls in a row failing at once pause their campaign
    breaker_within: float = 5.0      # a failure this soon after the Originate is "at once"
    # Where an answered call no agent took in time is moved (AMI Redirect), when the
    # dialplan did not move it itself: "context,exten,priority", or "off".
    drop_target: str = DEFAULT_TARGET

    @classmethod
    def from_config(cls, table: dict[str, Any], where: str = "[engine]") -> "EngineSettings":
        settings = cls()
        for key, value in table.items():
            if key not in {f.name for f in dataclasses.fields(cls)}:
                raise UserError(f"{where}: unknown setting {key!r}")
            if key == "drop_target":
                try:
                    if value != "off":
                        DropTarget.parse(value if isinstance(value, str) else "")
                except ValueError as exc:
                    raise UserError(f"{where}.{key}: {exc}") from None
                settings.drop_target = value
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UserError(f"{where}.{key}: must be a positive number")
            if key == "drop_after" and value > rules.CONNECT_DEADLINE:
                raise UserError(f"{where}.{key}: must be at most {rules.CONNECT_DEADLINE:g} seconds"
                                " (an answered call not with an agent by then is abandoned)")
            setattr(settings, key, float(value))
        return settings


class EngineClock:
    """Epoch seconds that follow trio's clock, ``speed`` times as fast."""

    def __init__(self, speed: float = 1.0, *, epoch: float | None = None) -> None:
        self.speed = speed
        self._epoch = time.time() if epoch is None else epoch
        self._origin = trio.current_time()

    def now(self) -> float:
        return self._epoch + (trio.current_time() - self._origin) * self.speed

    def utcnow(self) -> dt.datetime:
        return to_datetime(self.now())

    def real(self, seconds: float) -> float:
        """Real (trio) seconds for an engine-clock duration."""
        return seconds / self.speed


def new_engine_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def one_line(exc: BaseException) -> str:
    """An exception as one short line, for the log."""
    return (str(exc).splitlines() or [type(exc).__name__])[0][:100]
