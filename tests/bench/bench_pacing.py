"""Pacing benchmark: one simulated shift per scenario, seed and policy.

    .venv/bin/python tests/bench/bench_pacing.py --table

Scenarios are the grid agents x answer rate (default {5, 20, 50} x {10, 25,
50 %}); policies are progressive 1:1 and predictive from ``dialer.pacing``
(called as the engine calls them), predictive with ``hangup_after = 15``
(ringing calls no agent is likely to be free for are hung up once they have
rung 15 s), and VICIdial's adaptive dial level (``vicidial_adaptive.py``). Every policy faces the same calls for a given seed.
Prints one JSON object per run, then one per scenario and policy with the
medians over the seeds ("kind": "median"), and with ``--table`` a markdown
table of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pacing_sim import Scenario, simulate  # noqa: E402

POLICIES = ("progressive", "vicidial", "predictive", "hangup")
KNOWN = POLICIES + ("oracle", "oracle_hangup")
LABELS = {
    "progressive": "progressive 1:1",
    "vicidial": "VICIdial adaptive",
    "predictive": "ours (predictive)",
    "oracle": "ours, knowing talk ends",
    "hangup": "ours + hang-ups after 15 s",
    "oracle_hangup": "ours + hang-ups, knowing talk ends",
}
METRICS = ("occupancy", "abandon_rate", "calls_per_agent_hour", "agent_wait_s")


def run_one(job: tuple[Scenario, str]) -> dict:
    scenario, policy = job
    started = time.perf_counter()
    m = simulate(scenario, policy)
    m["kind"] = "run"
    m["hours"] = scenario.hours
    m["cpu_s"] = round(time.perf_counter() - started, 3)
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", default="5,20,50", help="comma-separated agent counts")
    ap.add_argument("--answer-rates", default="0.10,0.25,0.50", help="comma-separated answer rates")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per scenario (1..N)")
    ap.add_argument("--hours", type=float, default=8.0, help="shift length")
    ap.add_argument("--policies", default=",".join(POLICIES),
                    help=f"comma-separated, of {', '.join(KNOWN)} (oracle*: bounds, not policies)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--table", action="store_true", help="print a markdown table of the medians at the end")
    args = ap.parse_args(argv)

    agents = [int(a) for a in args.agents.split(",")]
    rates = [float(r) for r in args.answer_rates.split(",")]
    policies = [p for p in args.policies.split(",") if p]
    for p in policies:
        if p not in KNOWN:
            ap.error(f"--policies: unknown policy {p!r} (known: {', '.join(KNOWN)})")
    jobs = [
        (Scenario(agents=a, answer_rate=r, hours=args.hours, seed=seed), p)
        for a in agents
        for r in rates
        for seed in range(1, args.seeds + 1)
        for p in policies
    ]
    # Longest first, so the pool finishes together.
    jobs.sort(key=lambda j: -(j[0].agents / j[0].answer_rate) * (1 if j[1] in ("progressive", "vicidial") else 3))

    started = time.perf_counter()
    runs: list[dict] = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for m in pool.map(run_one, jobs):
            runs.append(m)
            print(json.dumps(m), flush=True)

    medians: dict[tuple, dict] = {}
    for a in agents:
        for r in rates:
            for p in policies:
                group = [m for m in runs if m["agents"] == a and m["answer_rate"] == r and m["policy"] == p]
                med = {"kind": "median", "policy": p, "agents": a, "answer_rate": r, "seeds": len(group),
                       "hours": args.hours}
                for k in METRICS:
                    values = [m[k] for m in group if m[k] is not None]
                    med[k] = statistics.median(values) if values else None
                med["max_abandon_rate"] = max(m["abandon_rate"] for m in group)
                medians[(a, r, p)] = med
                print(json.dumps(med), flush=True)
    elapsed = time.perf_counter() - started
    print(json.dumps({"kind": "total", "runs": len(runs), "wall_s": round(elapsed, 1)}), flush=True)

    if args.table:
        print()
        print(table(agents, rates, policies, medians, args))
    return 0


def table(agents, rates, policies, medians, args) -> str:
    lines = [
        f"Medians over {args.seeds} seeds of one {args.hours:g}-hour shift each.",
        "",
        "| agents | answer rate | policy | occupancy | abandon rate (max) | calls / agent-hour | agent wait between calls |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    for a in agents:
        for r in rates:
            for p in policies:
                m = medians[(a, r, p)]
                wait = "-" if m["agent_wait_s"] is None else f"{m['agent_wait_s']:.1f} s"
                lines.append(
                    f"| {a} | {r:.0%} | {LABELS[p]} | {m['occupancy']:.1%} | "
                    f"{m['abandon_rate']:.2%} ({m['max_abandon_rate']:.2%}) | "
                    f"{m['calls_per_agent_hour']:.1f} | {wait} |"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
