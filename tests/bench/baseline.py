"""Compare two source trees in one benchmark run: ``--baseline PATH``.

A benchmark that takes ``--baseline PATH`` (a checkout or ``git archive`` of
an older commit: a folder holding the ``dialer`` package) runs itself once per
run and tree, in a fresh process each, alternating the order from run to run
(current first on even runs, baseline first on odd ones), so that both trees
see the same machine load. The child process finds its tree in
``DIALER_BENCH_TREE``; :func:`tree_root` puts it first on ``sys.path``.

The parent prints every child's per-run rows with a ``tree`` field, then the
medians per tree and mode and the ratio current / baseline.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ENV = "DIALER_BENCH_TREE"


def tree_root() -> Path:
    """The source tree to benchmark: ``DIALER_BENCH_TREE``, else this checkout."""
    root = Path(os.environ.get(ENV) or Path(__file__).resolve().parents[2])
    if not (root / "dialer" / "__init__.py").is_file():
        raise SystemExit(f"{root}: no dialer package there (--baseline wants a source tree)")
    return root


def compare(script: str, child_args: list[str], baseline: str, runs: int,
            keys: list[str]) -> None:
    """Run ``script`` once per run and tree; print rows, medians and ratios of ``keys``."""
    trees = {"current": str(Path(__file__).resolve().parents[2]), "baseline": str(Path(baseline).resolve())}
    for root in trees.values():
        os.environ[ENV] = root
        tree_root()
    rows: dict[str, list[dict]] = {"current": [], "baseline": []}
    for run in range(runs):
        order = ["current", "baseline"] if run % 2 == 0 else ["baseline", "current"]
        for tree in order:
            env = dict(os.environ, **{ENV: trees[tree]})
            child = subprocess.run(
                [sys.executable, script, *child_args, "--first-run", str(run)],
                env=env, capture_output=True, text=True,
            )
            if child.returncode:
                sys.stderr.write(child.stderr)
                raise SystemExit(f"the {tree} run {run} failed (exit status {child.returncode})")
            out = child.stdout
            for line in out.splitlines():
                row = json.loads(line)
                if "run" in row:
                    row["tree"] = tree
                    rows[tree].append(row)
                    print(json.dumps(row), flush=True)
    summary: dict[str, object] = {"summary": "median", "runs": runs, "baseline": trees["baseline"]}
    modes = sorted({r["mode"] for r in rows["current"]} & {r["mode"] for r in rows["baseline"]})
    for mode in modes:
        for key in keys:
            med = {}
            for tree in ("current", "baseline"):
                values = [r[key] for r in rows[tree] if r["mode"] == mode and key in r]
                if values:
                    med[tree] = statistics.median(values)
                    summary[f"{tree}_{mode}_{key}"] = med[tree]
            if len(med) == 2 and med["baseline"]:
                summary[f"{mode}_{key}_current_vs_baseline"] = round(med["current"] / med["baseline"], 3)
    print(json.dumps(summary), flush=True)
