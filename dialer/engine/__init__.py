"""The dialing engine: leads -> pacing -> AMI pool -> call tracker -> outcomes.

One :class:`Engine` dials every running campaign (or the ones it is given)
through one :class:`~dialer.ami.pool.AMIPool`. It is made of parts with one
job each, started in one nursery (:meth:`Engine.run`, in :mod:`.core`):

* :mod:`.watcher` reads campaign states and settings every ``poll_interval``
  (supervisors change them from any shell), renews leases, takes over dead
  engines' calls, and writes the pauses the engine decides itself;
* :mod:`.dialing` asks pacing how many calls to place, claims the leads and
  sends the Originates within each connection's cap;
* :mod:`.follower` turns AMI events into call steps and learns from calls
  as they end (pacing estimates, circuit breaker); opt-outs go on the
  do-not-call list;
* :mod:`.writer` writes the call steps in batches, and the status figures;
* :mod:`.reconciler` asks Asterisk about calls whose end was not seen;
* :mod:`.campaign` is the record kept per campaign (:class:`CampaignRun`),
  each field with one writer;
* :mod:`.database` runs each unit of database work within a deadline;
* :mod:`.shared` turns other engines' live states into pacing figures;
* :mod:`.settings` holds the tunables and the engine's clock.

The parts talk through the small interfaces they are given when the engine
wires them (methods of one another, passed as callables) and two bounded
memory channels (pauses to the watcher, opt-outs tried again); none reads
another's private attributes. Each module's docstring says what it holds,
how its lists are bounded, and what it may import: dialer's data and call
modules, the AMI pool, pacing, and the parts below it in this list; no part
imports :mod:`.core`, which imports them all.

An Originate is never resent: one whose fate is unknown is found out by
asking Asterisk, or recorded as ``unknown``. Times: the engine's clock is
wall-clock seconds derived from trio's clock, optionally running ``speed``
times faster (the demo runs against a simulated Asterisk sped up the same
way), so everything time-dependent also runs under trio's ``MockClock``.

May import: dialer.db, dialer.liveness, dialer.errors, dialer.models,
dialer.compliance, dialer.campaigns, dialer.leads, dialer.calls, dialer.ami,
dialer.pacing. Never the command line, the web console, reports or the
simulator.
"""

from dialer.db import DatabaseBusy
from dialer.engine.core import Engine
from dialer.engine.dialing import lead_channel
from dialer.engine.settings import (
    FINAL_FLUSH_SECONDS, FINAL_FLUSH_TRIES, HANGUP_RECORD_FAMILY, OPT_OUT_EVENT, EngineClock, EngineSettings,
    new_engine_id,
)
from dialer.engine.shared import shared_figures

__all__ = [
    "DatabaseBusy", "Engine", "EngineClock", "EngineSettings", "FINAL_FLUSH_SECONDS", "FINAL_FLUSH_TRIES",
    "HANGUP_RECORD_FAMILY", "OPT_OUT_EVENT", "lead_channel", "new_engine_id", "shared_figures",
]
