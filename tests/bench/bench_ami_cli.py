"""Whole processes: ``dialer ami events`` against the naive loop it replaces, and start-up.

Usage: .venv/bin/python tests/bench/bench_ami_cli.py [--runs N] [--events N]

A server in its own process logs each client in and then floods it with a
realistic event mix (the one of bench_ami_parse.py, repeated) until the client
hangs up. Each run times, from spawn to exit, start-up included:

* ``naive``: the hand-written loop (a socket, a ``str`` buffer,
  ``split("\\r\\n\\r\\n")``, a dict per event), counting events by name and
  printing the counts (the baseline);
* ``dialer_stats``: ``dialer ami events --count N --stats``;
* ``dialer_print``: ``dialer ami events --count N`` to /dev/null (every event
  printed as Key: Value lines), and ``dialer_jsonl`` the same with
  ``--format jsonl``;

and the start-up of ``python -c "import trio"`` (the baseline), ``dialer --help``,
``dialer ami events --help`` and a whole ``dialer ami events --count 1 --stats``
(configuration read, trio and the AMI client loaded, connected, logged in, one
event counted, logged off).

Prints one JSON object per run and figure, then the medians and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from flood_server import flood_server, serve  # noqa: E402

NAIVE = r'''
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"Action: Login\r\nActionID: 1\r\nUsername: bench\r\nSecret: bench\r\n\r\n")
buf = ""
counts = {}
total = 0
while total < count:
    data = s.recv(65536)
    if not data:
        break
    buf += data.decode("utf-8", "replace")
    blocks = buf.split("\r\n\r\n")
    buf = blocks.pop()
    for block in blocks:
        event = {}
        for line in block.split("\r\n"):
            key, _, value = line.partition(": ")
            event[key] = value
        name = event.get("Event")
        if name is None:
            continue
        counts[name] = counts.get(name, 0) + 1
        total += 1
        if total >= count:
            break
s.close()
for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
    print(n, name)
print(total, "total")
'''


def timed(argv: list[str], env: dict[str, str], stdout=subprocess.PIPE) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, env=env, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]}... exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return wall, proc.stdout or ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--stream", type=int, default=100_000, help="distinct events the server repeats")
    ap.add_argument("--port-file", help=argparse.SUPPRESS)  # set: be the flood server (flood_server.py)
    opts = ap.parse_args()
    if opts.port_file:
        serve(opts.port_file, opts.stream, repeat=True)
        return
    python = sys.executable
    dialer = [python, "-m", "dialer"]
    tmp = Path(tempfile.mkdtemp(prefix="bench_ami_cli."))
    try:
        with flood_server(__file__, ["--stream", str(opts.stream)]) as port:
            config = tmp / "dialer.toml"
            config.write_text(f'[[ami]]\nname = "flood"\nhost = "127.0.0.1"\nport = {port}\n'
                              'username = "bench"\nsecret_env = "BENCH_AMI_SECRET"\n')
            env = dict(os.environ, BENCH_AMI_SECRET="bench", PYTHONPATH=str(ROOT))
            n = str(opts.events)
            events = [*dialer, "--config", str(config), "ami", "events", "--count", n]
            modes = {
                "naive": [python, "-c", NAIVE, str(port), n],
                "dialer_stats": [*events, "--stats"],
                "dialer_print": events,
                "dialer_jsonl": [*events, "--format", "jsonl"],
                "startup_trio": [python, "-c", "import trio"],
                "startup_help": [*dialer, "--help"],
                "startup_ami_events_help": [*dialer, "ami", "events", "--help"],
                "startup_ami_events_1": [*dialer, "--config", str(config), "ami", "events", "--count", "1",
                                         "--stats"],
            }
            results: dict[str, list[float]] = {m: [] for m in modes}
            devnull = open(os.devnull, "w")
            for run in range(opts.runs):
                order = list(modes) if run % 2 == 0 else list(reversed(modes))
                for mode in order:
                    printing = mode in ("dialer_print", "dialer_jsonl")
                    wall, out = timed(modes[mode], env, stdout=devnull if printing else subprocess.PIPE)
                    if mode in ("naive", "dialer_stats"):
                        last = out.strip().splitlines()[-1].split()
                        if int(last[0]) != opts.events:
                            raise SystemExit(f"{mode}: counted {last[0]} events, not {opts.events}")
                    results[mode].append(wall)
                    row = {"run": run, "mode": mode, "seconds": round(wall, 3)}
                    if not mode.startswith("startup"):
                        row["events_per_s"] = round(opts.events / wall)
                    print(json.dumps(row), flush=True)
            med = {m: statistics.median(v) for m, v in results.items()}
            summary = {"summary": "median", "runs": opts.runs, "events": opts.events}
            for mode, seconds in med.items():
                summary[f"{mode}_s"] = round(seconds, 3)
            for mode in ("dialer_stats", "dialer_print", "dialer_jsonl"):
                summary[f"{mode}_vs_naive"] = round(med["naive"] / med[mode], 2)
            for mode in ("startup_help", "startup_ami_events_help", "startup_ami_events_1"):
                summary[f"{mode}_vs_trio"] = round(med[mode] / med["startup_trio"], 2)
            print(json.dumps(summary), flush=True)
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
