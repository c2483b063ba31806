"""A simulated Asterisk that speaks real AMI over TCP, for the demo, the tests and the benchmarks.

    sim = SimAsterisk(scenario=None, speed=1.0, seed=None)
    port = await nursery.start(sim.serve, "127.0.0.1", 0)

or ``port = await nursery.start(functools.partial(serve_sim, port=0))``.

It speaks AMI with the client's own codec. May import: dialer.ami.codec,
dialer.errors. Never the database layer (dialer.db, dialer.models), the
engine, or the AMI client: it is a stand-in for Asterisk, not a part of the
dialer.
"""

from dialer.sim.calls import Channel, OriginateRequest
from dialer.sim.scenario import (
    Distribution,
    QueueConfig,
    Scenario,
    ScenarioError,
    User,
    default_scenario,
    load_scenario,
    parse_scenario,
)
from dialer.sim.server import Session, SimAsterisk, serve_sim

__all__ = [
    "Channel",
    "Distribution",
    "OriginateRequest",
    "QueueConfig",
    "Scenario",
    "ScenarioError",
    "Session",
    "SimAsterisk",
    "User",
    "default_scenario",
    "load_scenario",
    "parse_scenario",
    "serve_sim",
]
