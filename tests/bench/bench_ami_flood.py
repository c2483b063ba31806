"""End to end over loopback TCP: a trio client receiving a flood of AMI events.

Usage: .venv/bin/python tests/bench/bench_ami_flood.py [--runs N] [--events N] [--baseline PATH]

A server in a separate process logs the client in and then writes a
realistic event mix (the one of bench_ami_parse.py) as fast as the socket
takes it. Modes, each run in the same process one after the other:

* ``open_ami``: dialer.ami.connection.open_ami, one subscriber (bounded
  channel, backpressure) reading every event and its name with ``async for``;
* ``open_ami_drain``: the same, the subscriber draining its channel with
  ``receive_nowait()`` after each ``await receive()``;
* ``naive_trio``: a bare trio loop, ``receive_some`` + ``split(b"\\r\\n\\r\\n", 1)``
  + a dict of every header (the baseline).

Prints one JSON object per run and mode (events/s, MB/s, client CPU seconds
and CPU microseconds per event, from ``time.process_time`` of the client
process only), then the medians.

With ``--baseline PATH`` (a source tree of an older commit) each run is made
once with this tree's client and codec and once with the baseline's,
alternately, each in a fresh process; the summary gives both medians and their
ratio (see ``baseline.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from baseline import compare, tree_root  # noqa: E402

sys.path.insert(0, str(tree_root()))

import trio  # noqa: E402

from dialer.ami.connection import open_ami  # noqa: E402
from flood_server import flood_server, serve  # noqa: E402


async def run_open_ami(port: int, events: int) -> tuple[float, float, int]:
    """One ``await receive()`` per event (a scheduler pass each)."""
    async with open_ami(
        "127.0.0.1", port, username="bench", secret="bench", ping_interval=None
    ) as ami:
        async with ami.subscribe(max_buffer=10_000) as channel:
            count = 0
            names: dict[str | None, int] = {}
            cpu0, t0 = time.process_time(), time.perf_counter()
            async for item in channel:
                name = getattr(item, "name", None)
                if name is None:
                    continue
                names[name] = names.get(name, 0) + 1
                count += 1
                if count == events:
                    break
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        received = ami.statistics().bytes_in
    return wall, cpu, received


async def run_open_ami_drain(port: int, events: int) -> tuple[float, float, int]:
    """``await receive()``, then ``receive_nowait()`` until the channel is empty."""
    async with open_ami(
        "127.0.0.1", port, username="bench", secret="bench", ping_interval=None
    ) as ami:
        async with ami.subscribe(max_buffer=10_000) as channel:
            count = 0
            names: dict[str | None, int] = {}
            cpu0, t0 = time.process_time(), time.perf_counter()
            while count < events:
                item = await channel.receive()
                while True:
                    name = getattr(item, "name", None)
                    if name is not None:
                        names[name] = names.get(name, 0) + 1
                        count += 1
                        if count == events:
                            break
                    try:
                        item = channel.receive_nowait()
                    except trio.WouldBlock:
                        break
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        received = ami.statistics().bytes_in
    return wall, cpu, received


async def run_naive(port: int, events: int) -> tuple[float, float, int]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        buf = b""
        while b"\r\n" not in buf:
            buf += await stream.receive_some(65536)
        buf = buf.split(b"\r\n", 1)[1]
        await stream.send_all(b"Action: Login\r\nActionID: l1\r\nUsername: b\r\nSecret: b\r\n\r\n")
        count = -1  # the login response
        received = 0
        names: dict[str | None, int] = {}
        cpu0, t0 = time.process_time(), time.perf_counter()
        while count < events:
            data = await stream.receive_some(65536)
            received += len(data)
            buf += data
            while b"\r\n\r\n" in buf:
                msg, buf = buf.split(b"\r\n\r\n", 1)
                headers = {}
                for line in msg.decode("utf-8", "replace").split("\r\n"):
                    key, _, value = line.partition(": ")
                    headers.setdefault(key, value)
                name = headers.get("Event")
                names[name] = names.get(name, 0) + 1
                count += 1
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        await stream.send_all(b"Action: Logoff\r\nActionID: l2\r\n\r\n")
    return wall, cpu, received


MODES = {"open_ami": run_open_ami, "open_ami_drain": run_open_ami_drain, "naive_trio": run_naive}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--baseline", metavar="PATH",
                    help="source tree of an older commit to compare with, in the same run")
    ap.add_argument("--first-run", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--port-file", help=argparse.SUPPRESS)  # set: be the flood server (flood_server.py)
    opts = ap.parse_args()
    if opts.port_file:
        serve(opts.port_file, opts.events, repeat=False)
        return
    if opts.baseline:
        compare(__file__, ["--runs", "1", "--events", str(opts.events)], opts.baseline,
                opts.runs, ["events_per_s", "cpu_us_per_event"])
        return
    with flood_server(__file__, ["--events", str(opts.events)]) as port:
        results: dict[str, list[dict]] = {m: [] for m in MODES}
        for run in range(opts.first_run, opts.first_run + opts.runs):
            for mode, fn in MODES.items():
                wall, cpu, received = trio.run(fn, port, opts.events)
                row = {
                    "run": run, "mode": mode, "events": opts.events,
                    "events_per_s": round(opts.events / wall),
                    "mb_per_s": round(received / wall / 1e6, 1),
                    "client_cpu_s": round(cpu, 3),
                    "cpu_us_per_event": round(cpu / opts.events * 1e6, 2),
                    "cpu_share": round(cpu / wall, 2),
                }
                results[mode].append(row)
                print(json.dumps(row), flush=True)
        summary = {"summary": "median", "runs": opts.runs, "events": opts.events}
        for mode, rows in results.items():
            for key in ("events_per_s", "mb_per_s", "cpu_us_per_event", "cpu_share"):
                summary[f"{mode}_{key}"] = statistics.median(r[key] for r in rows)
        for mode in ("open_ami", "open_ami_drain"):
            summary[f"{mode}_vs_naive_events_per_s"] = round(
                summary[f"{mode}_events_per_s"] / summary["naive_trio_events_per_s"], 2
            )
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
