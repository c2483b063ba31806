"""A fidelity report: the simulator side by side with the real Asterisk.

Usage: DIALER_TEST_ASTERISK=/path/to/asterisk-22 .venv/bin/python tests/bench/bench_fidelity.py [--runs N]

Starts the test suite's Asterisk (tests/asterisk/) and runs each scenario of
tests/fidelity.py on it and on ``dialer sim`` (tests/asterisk/sim.toml):

* ``campaign``: a progressive campaign of 20 leads (every last digit twice)
  dialed by the engine;
* ``queue-busy``: every agent busy, one caller dropped after Queue()'s 2 s,
  one who keeps waiting and reaches an agent.
* ``queue-paused``: paused members are not offered calls; a caller joins while
  the only unpaused agent talks; leavewhenempty = no keeps a waiting caller when
  the last agent pauses; joinempty = no turns a caller away from a queue whose
  members are all paused;
* ``queue-wrapuptime``: a caller waiting while the only agent wraps up (4 s) is
  dropped, the next one reaches it;
* ``queue-ringinuse``: an agent whose line is in use outside the queue is not
  rung (ringinuse = no).

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
                for queue_case in fidelity.QUEUE_SCENARIOS:
                    scenarios[f"queue-{queue_case}"] = (
                        lambda q=queue_case: fidelity.queue_behaviour_side_by_side(instance, q))
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
