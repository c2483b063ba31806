"""Pacing benchmark: one simulated shift per scenario, seed and policy.

    nice .venv/bin/python tests/bench/bench_pacing.py --table
    nice .venv/bin/python tests/bench/bench_pacing.py --suite day --table --check

Scenarios are the grid agents x answer rate (default {5, 20, 50} x {10, 25,
50 %}); policies are progressive 1:1 and predictive from ``dialer.pacing``
(called as the engine calls them), predictive with ``hangup_after = 15``
(ringing calls no agent is likely to be free for are hung up once they have
rung 15 s), and VICIdial's adaptive dial level (``vicidial_adaptive.py``). Every policy faces the same calls for a given seed.
Prints one JSON object per run, then one per scenario and policy with the
medians over the seeds ("kind": "median"), and with ``--table`` a markdown
table of the medians.

``--suite day`` runs the day scenarios of ``pacing_day.py`` instead (a
drifting answer rate, agents in waves, a block of bad numbers, a talk-time
change, 3 agents, 2 and 3 engines on one campaign, cold starts), with the
figures the targets are about: the day's abandon rate, the worst rolling hour
(60-minute windows starting on whole minutes, with at least 30 answered
calls), the share of calls cut while ringing, and after each step change the
next hour's abandon rate and how long occupancy took to come back within 5
points of its level before (``recovery_s``). ``--check`` then holds the
predictive policy to the targets in every seed (a "targets" line; exit status
1 when one is missed).
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

from pacing_day import day_scenarios, simulate_day  # noqa: E402
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
    "independent": "ours, engines unaware of each other",
}
DAY_POLICIES = ("progressive", "vicidial", "predictive", "independent")
DAY_KNOWN = DAY_POLICIES + ("hangup",)
DAY_METRICS = ("occupancy", "abandon_rate", "worst_hour_abandon_rate", "first_15min_abandon_rate",
               "calls_cut_share", "agent_wait_s", "worst_next_hour_abandon_rate", "slowest_recovery_s")
#: the targets the predictive policy is held to in every seed
ABANDON_TARGET = 0.03
HOUR_LIMIT = 0.05
RECOVERY_S = 600.0
METRICS = ("occupancy", "abandon_rate", "calls_per_agent_hour", "agent_wait_s")


def run_one(job: tuple[Scenario, str]) -> dict:
    scenario, policy = job
    started = time.perf_counter()
    m = simulate(scenario, policy)
    m["kind"] = "run"
    m["hours"] = scenario.hours
    m["cpu_s"] = round(time.perf_counter() - started, 3)
    return m


def run_day(job) -> dict:
    scenario, policy = job
    started = time.perf_counter()
    m = simulate_day(scenario, policy)
    m["kind"] = "run"
    m["cpu_s"] = round(time.perf_counter() - started, 3)
    return m


def _nice() -> None:
    try:
        os.nice(10)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", choices=("grid", "day"), default="grid",
                    help="grid: agents x answer rate, steady (default); day: the day scenarios")
    ap.add_argument("--scenarios", default="",
                    help="day suite: comma-separated scenario names (or parts of them); default all")
    ap.add_argument("--check", action="store_true",
                    help="day suite: hold the predictive policy to the targets in every seed (exit 1 if not)")
    ap.add_argument("--agents", default="5,20,50", help="comma-separated agent counts")
    ap.add_argument("--answer-rates", default="0.10,0.25,0.50", help="comma-separated answer rates")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per scenario (1..N)")
    ap.add_argument("--hours", type=float, default=8.0, help="shift length")
    ap.add_argument("--policies", default=None,
                    help=f"comma-separated, of {', '.join(KNOWN)} (oracle*: bounds, not policies)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                    help="worker processes (default at most 2; they run under nice)")
    ap.add_argument("--table", action="store_true", help="print a markdown table of the medians at the end")
    args = ap.parse_args(argv)
    if args.suite == "day":
        return main_day(ap, args)
    if args.policies is None:
        args.policies = ",".join(POLICIES)

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
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), initializer=_nice) as pool:
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


def main_day(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    scenarios = day_scenarios()
    if args.scenarios:
        wanted = [w.strip() for w in args.scenarios.split(",") if w.strip()]
        for w in wanted:
            if not any(w in sc.name for sc in scenarios):
                ap.error(f"--scenarios: no day scenario matches {w!r} (known: {', '.join(sc.name for sc in scenarios)})")
        scenarios = [sc for sc in scenarios if any(w in sc.name for w in wanted)]
    policies = [p for p in (args.policies or ",".join(DAY_POLICIES)).split(",") if p]
    for p in policies:
        if p not in DAY_KNOWN:
            ap.error(f"--policies: unknown day-suite policy {p!r} (known: {', '.join(DAY_KNOWN)})")
    if args.seeds < 1:
        ap.error("--seeds: at least 1")

    def applies(sc, p):
        return p != "independent" or sc.engines > 1

    jobs = [(sc.with_seed(seed), p) for sc in scenarios for seed in range(1, args.seeds + 1)
            for p in policies if applies(sc, p)]
    jobs.sort(key=lambda j: -(j[0].hours * j[0].max_agents * (1 if j[1] in ("progressive", "vicidial") else 4)
                              * (j[0].engines if j[1] != "vicidial" else 1)))
    started = time.perf_counter()
    runs: list[dict] = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs), initializer=_nice) as pool:
        for m in pool.map(run_day, jobs):
            runs.append(m)
            print(json.dumps(m), flush=True)

    medians: dict[tuple[str, str], dict] = {}
    for sc in scenarios:
        for p in policies:
            group = [m for m in runs if m["scenario"] == sc.name and m["policy"] == p]
            if not group:
                continue
            med = {"kind": "median", "scenario": sc.name, "policy": p, "seeds": len(group)}
            for k in DAY_METRICS:
                values = [m[k] for m in group if m[k] is not None]
                med[k] = statistics.median(values) if values else None
            for k in ("abandon_rate", "worst_hour_abandon_rate", "worst_next_hour_abandon_rate", "slowest_recovery_s"):
                values = [m[k] for m in group if m[k] is not None]
                med["max_" + k] = max(values) if values else None
            med["min_occupancy"] = min(m["occupancy"] for m in group)
            medians[(sc.name, p)] = med
            print(json.dumps(med), flush=True)
    failures = check_targets(runs) if args.check else []
    if args.check:
        print(json.dumps({"kind": "targets", "policy": "predictive", "seeds": args.seeds,
                          "met": not failures, "failures": failures}), flush=True)
    print(json.dumps({"kind": "total", "runs": len(runs), "wall_s": round(time.perf_counter() - started, 1)}),
          flush=True)
    if args.table:
        print()
        print(day_table(scenarios, policies, medians, args))
    return 1 if failures else 0


def check_targets(runs: list[dict]) -> list[str]:
    """The targets, in every seed: one line per miss."""
    out = []
    vici = {(m["scenario"], m["seed"]): m for m in runs if m["policy"] == "vicidial"}
    for m in runs:
        if m["policy"] != "predictive":
            continue
        where = f"{m['scenario']} seed {m['seed']}"
        if m["abandon_rate"] > ABANDON_TARGET:
            out.append(f"{where}: day abandon rate {m['abandon_rate']:.2%} > {ABANDON_TARGET:.0%}")
        if (m["worst_hour_abandon_rate"] or 0.0) > HOUR_LIMIT:
            out.append(f"{where}: worst hour {m['worst_hour_abandon_rate']:.2%} > {HOUR_LIMIT:.0%}")
        base = vici.get((m["scenario"], m["seed"]))
        if base is not None and m["occupancy"] <= base["occupancy"]:
            out.append(f"{where}: occupancy {m['occupancy']:.1%} not above VICIdial's {base['occupancy']:.1%}")
        for c in m["changes"]:
            if c["next_hour_abandon_rate"] > HOUR_LIMIT:
                out.append(f"{where}: {c['change']}: next hour {c['next_hour_abandon_rate']:.2%} > {HOUR_LIMIT:.0%}")
            if c["recovery_s"] is None or c["recovery_s"] > RECOVERY_S:
                out.append(f"{where}: {c['change']}: occupancy not back within 5 points in {RECOVERY_S / 60:g} min")
    return out


def day_table(scenarios, policies, medians, args) -> str:
    def pct(v, digits=1):
        return "-" if v is None else f"{v:.{digits}%}"

    lines = [
        f"Medians over {args.seeds} seeds (worst seed in brackets).",
        "",
        "| scenario | policy | occupancy (lowest) | abandon rate (worst) | worst hour (worst) "
        "| first 15 min | calls cut | agent wait | next hour after a change (worst) | back within 5 points (slowest) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for sc in scenarios:
        for p in policies:
            m = medians.get((sc.name, p))
            if m is None:
                continue
            wait = "-" if m["agent_wait_s"] is None else f"{m['agent_wait_s']:.1f} s"
            rec = "-" if m["slowest_recovery_s"] is None else (
                f"{m['slowest_recovery_s'] / 60:.0f} min ({m['max_slowest_recovery_s'] / 60:.0f} min)")
            nxt = "-" if m["worst_next_hour_abandon_rate"] is None else (
                f"{pct(m['worst_next_hour_abandon_rate'], 2)} ({pct(m['max_worst_next_hour_abandon_rate'], 2)})")
            bold = "**" if p == "predictive" else ""
            lines.append(
                f"| {sc.name} | {bold}{LABELS[p]}{bold} | {bold}{pct(m['occupancy'])}{bold} ({pct(m['min_occupancy'])}) "
                f"| {pct(m['abandon_rate'], 2)} ({pct(m['max_abandon_rate'], 2)}) "
                f"| {pct(m['worst_hour_abandon_rate'], 2)} ({pct(m['max_worst_hour_abandon_rate'], 2)}) "
                f"| {pct(m['first_15min_abandon_rate'], 2)} | {pct(m['calls_cut_share'])} | {wait} | {nxt} | {rec} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
