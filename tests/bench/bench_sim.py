"""Benchmark of the simulated Asterisk: events/s to one reader, concurrent calls, memory per call.

    .venv/bin/python tests/bench/bench_sim.py [--runs 3] [--quick]

Prints one JSON object per line: one per measurement and run, then one
``"summary"`` line per measurement with the medians.

Measurements (the simulator runs in this process on the real clock, speed 1;
the reader is a separate process that logs in, reads everything and counts
messages, so that it does not share the simulator's core):

* ``baseline_fanout``: pre-built events pushed through ``SimAsterisk.emit`` as
  fast as the reader takes them - the ceiling of encoding + fan-out + TCP +
  reader, without the call model.
* ``calls_rate_R``: Originates at R per second for ``--seconds`` (all calls
  answered after 1 s, reach an agent, talk 10 s): events/s emitted and
  received, the reader's backlog at the end, and how late the scheduler ran
  timers (p50/max of a 10 ms probe).
* ``concurrent``: ramp to ``--calls`` concurrent calls (250 Originates/s, talk
  600 s), and measure timer lateness while they are all up.
* ``memory``: Python heap (tracemalloc) per bridged call, 4 channels each.

``sim_cpu_share`` is this process's CPU time over wall time; it includes the
client that sends the Originates.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dialer.ami.codec.serialize import encode_message  # noqa: E402
from dialer.sim import SimAsterisk, parse_scenario  # noqa: E402

READER = r"""
import socket, sys, time, json
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"Action: Login\r\nUsername: dialer\r\nSecret: dialerpass\r\n\r\n")
n = 0
tail = b""
t0 = time.monotonic()
samples = []
last = t0
while True:
    data = s.recv(1 << 20)
    if not data:
        break
    buf = tail + data
    n += buf.count(b"\r\n\r\n")
    tail = buf[-3:]
    now = time.monotonic()
    if now - last >= 0.5:
        samples.append((round(now - t0, 3), n))
        last = now
print(json.dumps({"messages": n, "seconds": time.monotonic() - t0, "samples": samples}))
"""


class Probe:
    """Schedules itself every ``period`` s on the simulator's heap; records lateness."""

    def __init__(self, sim: SimAsterisk, period: float = 0.01):
        self.sim = sim
        self.period = period
        self.late: list[float] = []
        self.due = 0.0
        self.running = False

    def start(self) -> None:
        self.running = True
        self.due = trio.current_time() + self.period
        self.sim.call_at(self.due, self._tick)

    def _tick(self) -> None:
        now = trio.current_time()
        self.late.append(now - self.due)
        if self.running:
            self.due = now + self.period
            self.sim.call_at(self.due, self._tick)

    def stats(self) -> dict:
        if not self.late:
            return {"timer_late_p50_ms": None, "timer_late_max_ms": None}
        s = sorted(self.late)
        return {"timer_late_p50_ms": round(s[len(s) // 2] * 1000, 2),
                "timer_late_p99_ms": round(s[int(len(s) * 0.99)] * 1000, 2),
                "timer_late_max_ms": round(s[-1] * 1000, 2)}


async def start_reader(port: int):
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", READER, str(port)], stdout=subprocess.PIPE)
    return proc


async def finish_reader(proc) -> dict:
    chunks = []
    while True:
        data = await proc.stdout.receive_some(1 << 16)
        if not data:
            break
        chunks.append(data)
    await proc.wait()
    return json.loads(b"".join(chunks))


async def wait_logged_in(sim: SimAsterisk, n: int) -> None:
    with trio.fail_after(20):
        while sum(1 for s in sim.sessions.values() if s.logged_in) < n:
            await trio.sleep(0.01)


def scenario(talk: float, agents: int) -> str:
    return (f"[outcomes]\nanswered = 1\n[ring_time]\ndist = \"fixed\"\nvalue = 1\n"
            f"[talk_time]\ndist = \"fixed\"\nvalue = {talk}\n"
            f"[queue]\nagents = {agents}\ntimeout = 600\nagent_talk_time = {talk + 60}\n")


async def originator(port: int, rate: float, seconds: float, counter: list) -> None:
    """A second AMI client (events off) sending Originates at ``rate`` per second."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"Action: Login\r\nUsername: dialer\r\nSecret: dialerpass\r\nEvents: off\r\n\r\n")

    async def drain():
        while await stream.receive_some(1 << 16):
            pass

    async with trio.open_nursery() as n:
        n.start_soon(drain)
        t0 = trio.current_time()
        i = 0
        batch_period = 0.01
        while True:
            now = trio.current_time()
            if now - t0 >= seconds:
                break
            want = int((now - t0) * rate)
            if want > i:
                blob = b"".join(encode_message([
                    ("Action", "Originate"), ("Channel", f"Local/1555{k:07d}@carrier"),
                    ("Context", "dialer-connect"), ("Exten", "s"), ("Priority", "1"),
                    ("Async", "true"), ("Timeout", "30000"),
                    ("CallerID", '"Campaign" <15550001000>'), ("ActionID", f"b-{k}"),
                    ("Variable", f"LEADID={k}")]) for k in range(i, want))
                await stream.send_all(blob)
                i = want
            await trio.sleep(batch_period)
        counter.append(i)
        n.cancel_scope.cancel()
    await stream.aclose()


async def bench_baseline(seconds: float) -> dict:
    sim = SimAsterisk()
    headers = [("Channel", "Local/15551230000@carrier-00000003;1"), ("ChannelState", "6"),
               ("ChannelStateDesc", "Up"), ("CallerIDNum", "15550001000"),
               ("CallerIDName", "Campaign"), ("ConnectedLineNum", "15550001000"),
               ("ConnectedLineName", "Campaign"), ("Language", "en"), ("AccountCode", ""),
               ("Context", "dialer-connect"), ("Exten", "s"), ("Priority", "2"),
               ("Uniqueid", "1795720670.6"), ("Linkedid", "1795720670.6"),
               ("Variable", "QUEUEWAIT"), ("Value", "0")]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        proc = await start_reader(port)
        await wait_logged_in(sim, 1)
        (session,) = sim.sessions.values()
        t0 = time.monotonic()
        sent = 0
        while time.monotonic() - t0 < seconds:
            for _ in range(500):
                sim.emit("VarSet", "dialplan", headers)
            sent += 500
            # Let the writer run; keep at most ~4 MB queued so we measure the pipe.
            while session.outbytes > 4 << 20:
                await trio.sleep(0)
            await trio.sleep(0)
        elapsed = time.monotonic() - t0
        session.close(flush=True)
        got = await finish_reader(proc)
        nursery.cancel_scope.cancel()
    return {"bench": "baseline_fanout", "events": sent, "seconds": round(elapsed, 2),
            "events_per_s": round(sent / elapsed), "received": got["messages"] - 2}


async def bench_rate(rate: float, seconds: float) -> dict:
    sim = SimAsterisk(parse_scenario(scenario(10, 100000)))
    probe = Probe(sim)
    emitted_samples: list[tuple[float, int]] = []

    async def sampler(t0: float) -> None:
        while True:
            emitted_samples.append((time.monotonic() - t0, sim.stats["events_emitted"]))
            await trio.sleep(0.5)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        proc = await start_reader(port)
        await wait_logged_in(sim, 1)
        probe.start()
        before = sim.statistics()["events_emitted"]
        count: list = []
        t0 = time.monotonic()
        cpu0 = time.process_time()
        nursery.start_soon(sampler, t0)
        await originator(port, rate, seconds, count)
        elapsed = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        st = sim.statistics()
        emitted = st["events_emitted"] - before
        backlog = sum(s.outbytes for s in sim.sessions.values())
        peak = st["calls_peak"]
        probe.running = False
        for s in list(sim.sessions.values()):
            s.close(flush=False)
        got = await finish_reader(proc)
        nursery.cancel_scope.cancel()
    def steady(samples: list) -> int | None:
        # The rate over the second half of the window, when calls also end.
        pts = [(t, n) for t, n in samples if elapsed / 2 <= t <= elapsed]
        if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
            return None
        return round((pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0]))

    return {"bench": f"calls_rate_{int(rate)}", "originates": count[0] if count else 0,
            "seconds": round(elapsed, 2), "events_emitted": emitted,
            "events_per_s": steady(emitted_samples), "reader_events_per_s": steady(got["samples"]),
            "backlog_bytes_at_end": backlog, "slow_disconnects": st["slow_disconnects"],
            "calls_peak": peak, "sim_cpu_share": round(cpu / elapsed, 2), **probe.stats()}


async def bench_concurrent(calls: int, ramp_rate: float) -> dict:
    sim = SimAsterisk(parse_scenario(scenario(600, calls + 100)))
    probe = Probe(sim, 0.01)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve, "127.0.0.1", 0)
        proc = await start_reader(port)
        await wait_logged_in(sim, 1)
        count: list = []
        t0 = time.monotonic()
        await originator(port, ramp_rate, calls / ramp_rate, count)
        ramp = time.monotonic() - t0
        with trio.fail_after(30):
            while sim.statistics()["calls_active"] < count[0] or sim.queue.waiting:
                await trio.sleep(0.05)
            while any(c.state != "bridged" for c in sim.pbx.calls.values()):
                await trio.sleep(0.05)
        # Hold: every call up; let the reader catch up and measure the timer lateness.
        await trio.sleep(1.0)
        probe.start()
        await trio.sleep(3.0)
        probe.running = False
        st = sim.statistics()
        for s in list(sim.sessions.values()):
            s.close(flush=False)
        await finish_reader(proc)
        nursery.cancel_scope.cancel()
    n = st["calls_active"]
    return {"bench": "concurrent", "calls_active": n, "channels_active": st["channels_active"],
            "ramp_seconds": round(ramp, 2), "slow_disconnects": st["slow_disconnects"], **probe.stats()}


async def bench_memory(calls: int) -> dict:
    """Python heap per bridged call (4 channels, timers, queue entry), under MockClock."""
    import tracemalloc

    from dialer.sim.calls import OriginateRequest

    sim = SimAsterisk(parse_scenario(scenario(600, calls + 10)))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sim._run_scheduler)
        await trio.sleep(0)
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.take_snapshot()
        for i in range(calls):
            sim.pbx.originate(OriginateRequest(
                channel=f"Local/1555{i:07d}@carrier", context="dialer-connect", exten="s",
                callerid=("Campaign", "15550001000"), variables=[("LEADID", str(i))],
                action_id=f"m-{i}", channel_id=f"lead-{i}-a", other_channel_id=f"lead-{i}-b"))
        await trio.sleep(5)
        gc.collect()
        snap = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(st.size_diff for st in snap.compare_to(base, "filename"))
        n = sim.statistics()["calls_active"]
        nursery.cancel_scope.cancel()
    return {"bench": "memory", "calls_active": n, "heap_growth_mb": round(grown / 2**20, 2),
            "bytes_per_call": round(grown / max(n, 1))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rates", default="100,250,400")
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--quick", action="store_true", help="one short run of each")
    args = ap.parse_args()
    if args.quick:
        args.runs, args.seconds, args.rates, args.calls = 1, 14.0, "100", 1000
    results: dict[str, list[dict]] = {}

    def record(r: dict) -> None:
        print(json.dumps(r), flush=True)
        results.setdefault(r["bench"], []).append(r)

    for _ in range(args.runs):
        record(trio.run(bench_baseline, args.seconds))
        for rate in [float(x) for x in args.rates.split(",")]:
            record(trio.run(bench_rate, rate, args.seconds))
        record(trio.run(bench_concurrent, args.calls, 250.0))
        record(trio.run(bench_memory, args.calls, clock=trio.testing.MockClock(autojump_threshold=0)))
    for name, runs in results.items():
        summary = {"summary": name, "runs": len(runs)}
        for k, v in runs[0].items():
            vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
            if k != "bench" and vals and len(vals) == len(runs):
                summary[k] = statistics.median(vals)
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
