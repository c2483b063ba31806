"""Benchmark: the web console under a call centre's load.

    nice .venv/bin/python tests/bench/bench_web.py [--campaigns 20] [--agents 200]
        [--calls-per-second 200] [--wallboards 50] [--seconds 20] [--runs 3]

A SQLite database with --campaigns campaigns; a ``dialer web`` process (the
real command, on a free loopback port) reading it; in this process a writer
that plays the engines: 20 times a second it rewrites every campaign's
``live_state`` row (agents by state for --agents agents in all, calls
ringing / waiting / talking, connections), and it inserts finished call
attempts at --calls-per-second, so that the console's lead, abandon and
hourly figures have real rows to count. --wallboards clients hold the
wallboard's server-sent-event stream open.

The writer stamps each write with a sequence number (the first campaign's
``placed`` figure) and notes the wall time of its commit; each client notes
when a document carrying that number arrives. Push latency = arrival - commit
(a wallboard that gets a newer document than one it missed counts from the
newer one's commit). The web process's CPU is read from /proc over the run.

Printed, one JSON object per line: each run with 1 wallboard (the baseline,
measured in the same run) and with --wallboards (in a process of their own),
then the medians over the runs; and the API's requests per second (GET /api/v1/live with a token, 8 at
a time) against /healthz (no database, no authentication) as its baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import trio  # noqa: E402

from dialer import db  # noqa: E402
from dialer.audit import Actor  # noqa: E402
from dialer.campaigns import create_campaign  # noqa: E402
from dialer.models import CallAttempt, Lead, LiveState  # noqa: E402
from dialer.web import auth  # noqa: E402

TICK = 0.05
PLACED = re.compile(r'"name":"c00".*?"placed":(\d+)')
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def setup(folder: Path, campaigns: int) -> tuple[str, str]:
    url = f"sqlite:///{folder / 'dialer.db'}"
    engine = db.create_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    actor = Actor("bench", "cli", "localhost")
    with sessions.begin() as s:
        for i in range(campaigns):
            c = create_campaign(s, f"c{i:02d}", queue="agents", max_concurrent=100)
            c.state = "running"
            s.flush()
            s.add_all(Lead(campaign_id=c.id, phone_e164=f"+1212{i:02d}{n:05d}", timezone="America/New_York",
                           state="new", next_attempt_at=dt.datetime(2026, 1, 1)) for n in range(2000))
        token = auth.add_token(s, "bench", "viewer", actor=actor)
    engine.dispose()
    return url, token


class Writer:
    """Plays the engines: live rows 20 times a second, finished attempts at a rate."""

    def __init__(self, url: str, campaigns: int, agents: int, calls_per_second: float) -> None:
        self.engine = db.create_engine(url)
        self.sessions = db.session_factory(self.engine)
        self.campaigns, self.agents, self.cps = campaigns, agents, calls_per_second
        self.commits: dict[int, float] = {}
        self.seq = 0
        self.stop = threading.Event()
        self.rng = random.Random(1)
        with self.sessions.begin() as s:
            self.ids = list(s.scalars(sa.text("SELECT id FROM campaigns ORDER BY name")))
            self.leads = {cid: list(s.scalars(sa.text("SELECT id FROM leads WHERE campaign_id = :c"), {"c": cid}))
                          for cid in self.ids}
        self.attempt = 0

    def doc(self, index: int, wall: float) -> dict:
        per = self.agents // self.campaigns
        states = [self.rng.choice(["free", "talking", "talking", "wrapup", "paused"]) for _ in range(per)]
        ringing = self.rng.randint(0, 30)
        return {
            "campaign": f"c{index:02d}", "engine_id": "bench-engine", "wall_time": wall, "clock": wall, "speed": 1,
            "state": "running", "mode": "predictive", "in_flight": ringing + 10, "ringing": ringing, "waiting": 2,
            "connected": 8, "agents_logged_in": per, "agents_free": states.count("free"),
            "agents": {**{k: states.count(k) for k in ("free", "talking", "wrapup", "paused")},
                       "agents": [{"name": f"agent{index}-{n}", "state": st, "since": wall - self.rng.random() * 60}
                                  for n, st in enumerate(states)]},
            "dial_level": 1.8, "decision": self.rng.randint(0, 5), "reason": "predictive",
            "placed": self.seq if index == 0 else self.attempt,
            "connections": [{"server": "pbx1", "connection": f"pbx1#{k}", "up": True, "reader": k == 1,
                             "in_flight": 50, "originates_sent": self.attempt, "failures": 0, "reconnects": 0,
                             "rate_cap": 100.0, "rate_1s": 50} for k in (1, 2, 3, 4)],
        }

    def run(self) -> None:
        next_at = time.monotonic()
        owed = 0.0
        while not self.stop.is_set():
            self.seq += 1
            wall = time.time()
            now = dt.datetime.fromtimestamp(wall, dt.UTC).replace(tzinfo=None)
            owed += self.cps * TICK
            with self.sessions.begin() as s:
                for i, cid in enumerate(self.ids):
                    doc = self.doc(i, wall)
                    row = s.get(LiveState, ("bench-engine", cid))
                    if row is None:
                        s.add(LiveState(engine_id="bench-engine", campaign_id=cid, heartbeat_at=now, data=doc))
                    else:
                        row.heartbeat_at, row.data = now, doc
                rows = []
                while owed >= 1:
                    owed -= 1
                    self.attempt += 1
                    cid = self.ids[self.attempt % len(self.ids)]
                    answered = self.rng.random() < 0.4
                    rows.append(dict(
                        lead_id=self.rng.choice(self.leads[cid]), campaign_id=cid, phone_e164="+12125550100",
                        attempt_no=1, action_id=f"b{self.attempt}", channel_id=f"bc{self.attempt}",
                        engine_id="bench-engine", server="pbx1", connection="pbx1#1", state="ended",
                        created_at=now, originated_at=now, answered_at=now if answered else None, ended_at=now,
                        disposition=("dropped" if self.rng.random() < 0.02 else "connected") if answered
                        else "no_answer"))
                if rows:
                    s.execute(sa.insert(CallAttempt), rows)
            self.commits[self.seq] = time.time()
            next_at += TICK
            time.sleep(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self.engine.dispose()


async def wallboards(base: str, token: str, count: int, seconds: float, arrivals: list) -> int:
    """``count`` SSE clients for ``seconds``; appends (seq, arrival wall time)."""
    headers = {"Authorization": f"Bearer {token}"}
    connected = 0

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal connected
        if True:
            async with http.stream("GET", "/events", headers=headers) as stream:
                connected += 1
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        at = time.time()
                        # The first campaign's "placed" (the writer's sequence number), without
                        # decoding the whole document: the measuring side must stay light.
                        found = PLACED.search(line)
                        if found:
                            arrivals.append((int(found.group(1)), at))

    # One client, one connection per stream (a client per stream would spend
    # most of the run building SSL contexts).
    limits = httpx.Limits(max_connections=count + 1, max_keepalive_connections=count + 1)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
        with trio.move_on_after(seconds):
            async with trio.open_nursery() as nursery:
                for _ in range(count):
                    nursery.start_soon(client, http)
    return connected


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def clients_main(base: str, token: str, count: int, seconds: float) -> None:
    """The wallboards, run in a process of their own (``--clients``): prints
    how many connected and every (sequence number, arrival time); with a
    negative count, the request rates instead (``--hammer``)."""
    if count < 0:
        headers = {"Authorization": f"Bearer {token}"}
        print(json.dumps({p: trio.run(hammer, base, p, headers if p != "/healthz" else {}, seconds, -count)
                          for p in ("/healthz", "/api/v1/live")}))
        return
    arrivals: list[tuple[int, float]] = []
    connected = trio.run(wallboards, base, token, count, seconds, arrivals)
    print(json.dumps({"connected": connected, "arrivals": arrivals}))


def measure(base: str, token: str, web_pid: int, writer: Writer, count: int, seconds: float) -> dict:
    cpu0, t0 = cpu_seconds(web_pid), time.monotonic()
    out = subprocess.run([sys.executable, __file__, "--clients", base, token, str(count), str(seconds)],
                         capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    cpu = (cpu_seconds(web_pid) - cpu0) / (time.monotonic() - t0)
    result = json.loads(out)
    connected, arrivals = result["connected"], [tuple(a) for a in result["arrivals"]]
    settle = 2.0  # the first documents carry whatever was current at connect time
    start = min(at for _, at in arrivals) + settle if arrivals else 0
    latencies = [at - writer.commits[seq] for seq, at in arrivals if at >= start and seq in writer.commits]
    return {"wallboards": count, "connected": connected, "updates": len(latencies),
            "push_median_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "push_p99_ms": round(1000 * percentile(latencies, 0.99), 1) if latencies else None,
            "push_max_ms": round(1000 * max(latencies), 1) if latencies else None,
            "web_cpu_percent": round(100 * cpu, 1)}


async def hammer(base: str, path: str, headers: dict, seconds: float, concurrency: int) -> float:
    done = 0

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal done
        while True:
            r = await http.get(path, headers=headers)
            r.raise_for_status()
            done += 1

    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        t0 = trio.current_time()
        with trio.move_on_after(seconds):
            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(worker, http)
        return done / (trio.current_time() - t0)


def main() -> None:
    if sys.argv[1:2] == ["--clients"]:
        base, token, count, seconds = sys.argv[2:6]
        return clients_main(base, token, int(count), float(seconds))
    parser = argparse.ArgumentParser()
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--calls-per-second", type=float, default=200)
    parser.add_argument("--wallboards", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dialer-bench-web."))
    web = None
    writer = None
    try:
        url, token = setup(folder, args.campaigns)
        log = (folder / "web.log").open("w")
        web = subprocess.Popen([sys.executable, "-m", "dialer", "--db", url, "web", "--bind", "127.0.0.1:0"],
                               stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not (found := re.search(r"serving on (\S+)", (folder / "web.log").read_text())):
            if time.monotonic() > deadline or web.poll() is not None:
                raise SystemExit("dialer web did not start: " + (folder / "web.log").read_text())
            time.sleep(0.1)
        base = found.group(1)
        writer = Writer(url, args.campaigns, args.agents, args.calls_per_second)
        thread = threading.Thread(target=writer.run, daemon=True)
        thread.start()
        time.sleep(2)
        results: dict[int, list[dict]] = {1: [], args.wallboards: []}
        for run in range(args.runs):
            for count in (1, args.wallboards):
                row = measure(base, token, web.pid, writer, count, args.seconds)
                results[count].append(row)
                print(json.dumps({"bench": "web_push", "run": run + 1, **row,
                                  "load": {"campaigns": args.campaigns, "agents": args.agents,
                                           "calls_per_second": args.calls_per_second}}), flush=True)
        for count, rows in results.items():
            print(json.dumps({"bench": "web_push", "median_of_runs": len(rows), "wallboards": count,
                              **{k: statistics.median([r[k] for r in rows if r[k] is not None] or [float("nan")])
                                 for k in ("push_median_ms", "push_p99_ms", "web_cpu_percent")}}), flush=True)
        rates: dict[str, list[float]] = {"/healthz": [], "/api/v1/live": []}
        for _ in range(args.runs):
            out = subprocess.run([sys.executable, __file__, "--clients", base, token, "-8", "5"],
                                 capture_output=True, text=True, check=True, timeout=120).stdout
            for path, rate in json.loads(out).items():
                rates[path].append(rate)
        print(json.dumps({"bench": "web_requests", "concurrency": 8, "runs": args.runs,
                          **{f"{p}_per_second_median": round(statistics.median(v), 1) for p, v in rates.items()},
                          "while_writing": True}), flush=True)
        writer.stop.set()
        thread.join(10)
    finally:
        if writer is not None:
            writer.stop.set()
            writer.close()
        if web is not None:
            web.terminate()
            web.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
