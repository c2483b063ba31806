"""A simulated Asterisk in its own process, for benchmarks that must not share
a core (or the GIL) with the engine they measure.

    python tests/bench/sim_process.py --speed 50 --record FILE

Prints the bound port on the first line of stdout. On SIGTERM or SIGINT it
writes to FILE, as JSON, each connection's Originate arrival times (seconds on
the simulator's clock) and its statistics, then exits.

The process runs without Python's cyclic garbage collector: a real Asterisk
has no collector pauses, and a pause here would show up in the record as
Originates arriving bunched together, however evenly they were sent.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dialer.sim import SimAsterisk  # noqa: E402


async def main(args) -> None:
    sim = SimAsterisk(speed=args.speed)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve)
            print(port, flush=True)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    record = {
        str(conn): [t for t, m in items if m.name == "Originate"]
        for conn, items in sim.received.items()
    }
    stats = sim.statistics()
    Path(args.record).write_text(json.dumps({"originates": record, "statistics": stats}, default=str))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--speed", type=float, default=50.0)
    parser.add_argument("--record", required=True)
    args = parser.parse_args()
    gc.disable()
    trio.run(main, args)
