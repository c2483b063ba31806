"""A fidelity report: the simulator side by side with the real Asterisk.

Usage: DIALER_TEST_ASTERISK=/path/to/asterisk-22 .venv/bin/python tests/bench/bench_fidelity.py [--runs N]

Starts the test suite's Asterisk (tests/asterisk/) and runs each scenario of
tests/fidelity.py on it and on ``dialer sim`` (tests/asterisk/sim.toml):

* ``campaign``: a progressive campaign of 20 leads (every last digit twice)
  dialed by the engine;
* ``queue-busy``: every agent busy, one caller dropped after Queue()'s 2 s,
  one who keeps waiting and reaches an agent.

Prints one JSON object per scenario and run: the leads compared, the events
each side sent, and every difference found (outcome per lead; event names per
channel of a call), then one summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from tests import fidelity  # noqa: E402
from tests.asterisk_harness import AsteriskInstance, AsteriskNotFound, find_asterisk  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of each scenario (default 1)")
    args = parser.parse_args(argv)
    try:
        install = find_asterisk()
    except AsteriskNotFound as exc:
        print(f"bench_fidelity: {exc}", file=sys.stderr)
        return 2
    instance = AsteriskInstance(install)
    total = 0
    try:
        instance.start()
        for run in range(1, args.runs + 1):
            with tempfile.TemporaryDirectory(prefix="fidelity-") as folder:
                scenarios = {
                    "campaign": lambda: fidelity.campaign_side_by_side(instance, Path(folder)),
                    "queue-busy": lambda: fidelity.queue_busy_side_by_side(instance),
                }
                for name, side_by_side in scenarios.items():
                    real, sim = side_by_side()
                    differences = fidelity.compare_runs(real, sim)
                    total += len(differences)
                    print(json.dumps({
                        "scenario": name, "run": run, "leads": len(real.outcomes),
                        "real_events": real.events, "sim_events": sim.events,
                        "outcomes_equal": real.outcomes == sim.outcomes,
                        "differences": differences,
                    }), flush=True)
    finally:
        instance.cleanup()
    print(json.dumps({"summary": "fidelity", "runs": args.runs, "differences": total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
