"""Benchmark: the engine end to end against the simulated Asterisk.

    .venv/bin/python tests/bench/bench_engine.py [--leads 20000] [--runs 3]
        [--what fidelity,ceiling] [--db sqlite,postgresql]

fidelity: an unattended campaign through 4 connections capped at 50
Originates/s each (the simulator sped up so calls stay short): the achieved
total rate as a fraction of the 200/s the caps allow, and the most Originates
any one connection put on the wire in any one-second window, read from the
simulator's own record of arrival times (``max_per_connection_per_1s``) and
as the engine sent them (``max_sent_per_connection_per_1s``).

ceiling: the same with the caps lifted, on SQLite and on PostgreSQL:
completed calls per second end to end (claimed, originated, every event
followed, outcome written), events per second processed, and the engine's
CPU time per second of wall time. The simulator runs in its own process so
that it does not share the engine's core. The baseline, measured in the same
run: a bare AMI client with no database and no engine (it only sends the
Originates, 500 at a time, and counts each call's last Hangup), which is
what the simulator and the AMI layer alone allow.

One JSON object per line: one per run, then the medians.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import sqlalchemy as sa  # noqa: E402
import trio  # noqa: E402

from dialer import db  # noqa: E402
from dialer.config import AMIServerConfig  # noqa: E402
from dialer.engine import Engine, EngineSettings  # noqa: E402
from dialer.models import CallAttempt  # noqa: E402
from tests.engine_harness import business_zone, make_campaign, max_in_window  # noqa: E402

SPEED = 50.0


def start_sim(record: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "sim_process.py"), "--speed", str(SPEED), "--record", str(record)],
        stdout=subprocess.PIPE, text=True,
    )
    port = int(proc.stdout.readline())
    return proc, port


def stop_sim(proc: subprocess.Popen, record: Path) -> dict:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    return json.loads(record.read_text())


def phones(count: int) -> list[str]:
    # Valid US numbers over several area codes; last digits run 0..9.
    codes = ["212", "312", "415", "617", "713", "206", "305", "404", "602", "503"]
    return [f"+1{codes[(i // 10_000) % len(codes)]}55{i % 100_000:05d}" for i in range(count)]


_children_cpu = [0.0]


def run_once(url: str, leads: int, *, rate: float, burst: int, tmp: Path) -> dict:
    engine = db.create_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    make_campaign(sessions, phones=phones(leads), mode="unattended", queue=None,
                  max_concurrent=5000, tz=business_zone(), ring_timeout=15)
    record = tmp / "record.json"
    sim, port = start_sim(record)
    os.environ["DIALER_BENCH_AMI_SECRET"] = "dialerpass"
    servers = [AMIServerConfig(
        name="pbx", host="127.0.0.1", port=port, username="dialer",
        secret_env="DIALER_BENCH_AMI_SECRET", connections=4, originate_rate=rate,
        burst=burst, max_in_flight=2000,
    )]
    dialer = Engine(sessions, servers, settings=EngineSettings(speed=SPEED), until_done=True)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    trio.run(dialer.run)
    wall = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    data = stop_sim(sim, record)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    sim_cpu = children.ru_utime + children.ru_stime - _children_cpu[0]
    _children_cpu[0] = children.ru_utime + children.ru_stime
    with sessions.begin() as s:
        ended = s.scalar(sa.select(sa.func.count()).where(CallAttempt.ended_at.is_not(None)))
        first, last = s.execute(sa.select(sa.func.min(CallAttempt.created_at),
                                          sa.func.max(CallAttempt.ended_at))).one()
    engine.dispose()
    per_conn = data["originates"]
    all_times = sorted(t for ts in per_conn.values() for t in ts)
    sending = all_times[-1] - all_times[0] if len(all_times) > 1 else 0.0
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {
        "leads": leads,
        "originates": len(all_times),
        "ended": ended,
        "wall_s": round(wall, 2),
        "originate_rate_per_s": round((len(all_times) - 1) / sending, 1) if sending else None,
        "max_per_connection_per_1s": max(max_in_window(ts) for ts in per_conn.values()),
        "max_sent_per_connection_per_1s": max(m.peak_1s for m in dialer.pool.members),
        "connections_used": len([ts for ts in per_conn.values() if ts]),
        "completed_calls_per_s": round(ended / wall, 1),
        "events_per_s": round(dialer.counters["events"] / wall),
        "engine_cpu_per_wall_s": round(cpu / wall, 2),
        "sim_cpu_per_wall_s": round(sim_cpu / wall, 2),
    }


def run_raw(leads: int, tmp: Path) -> dict:
    """The baseline: Originates and events through the AMI client alone."""
    from dialer.ami.connection import open_ami

    record = tmp / "record.json"
    sim, port = start_sim(record)
    ended = 0
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()

    async def main() -> None:
        nonlocal ended
        async with open_ami("127.0.0.1", port, username="dialer", secret="dialerpass",
                            ping_interval=None) as ami:
            done = trio.Event()
            async with ami.subscribe(max_buffer=4096) as events, trio.open_nursery() as nursery:
                async def count() -> None:
                    nonlocal ended
                    async for ev in events:
                        if getattr(ev, "name", None) == "Hangup" and ev.get("Uniqueid", "").endswith("-a"):
                            ended += 1
                            if ended == leads:
                                done.set()
                                return

                nursery.start_soon(count)
                numbers = phones(leads)
                for start in range(0, leads, 500):
                    async with trio.open_nursery() as batch:
                        for i in range(start, min(leads, start + 500)):
                            batch.start_soon(ami.action, "Originate", [
                                ("Channel", f"Local/{numbers[i][1:]}@carrier"), ("Context", "dialer-connect"),
                                ("Exten", "s"), ("Priority", "1"), ("Async", "true"), ("Timeout", "15000"),
                                ("ChannelId", f"raw{i}-a"), ("OtherChannelId", f"raw{i}-b"),
                            ])
                with trio.fail_after(600):
                    await done.wait()

    trio.run(main)
    wall = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    stop_sim(sim, record)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    _children_cpu[0] = children.ru_utime + children.ru_stime
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {"leads": leads, "ended": ended, "wall_s": round(wall, 2),
            "completed_calls_per_s": round(ended / wall, 1),
            "client_cpu_per_wall_s": round(cpu / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--what", default="fidelity,raw,ceiling")
    parser.add_argument("--db", default="sqlite,postgresql")
    args = parser.parse_args()
    whats = args.what.split(",")
    dbs = args.db.split(",")
    pg = None
    results = collections.defaultdict(list)
    try:
        for what in whats:
            for backend in (["sqlite"] if what == "fidelity" else ["none"] if what == "raw" else dbs):
                for i in range(args.runs):
                    with tempfile.TemporaryDirectory() as tmp:
                        tmp = Path(tmp)
                        if what == "raw":
                            url = ""
                        elif backend == "sqlite":
                            url = f"sqlite:///{tmp}/bench.db"
                        else:
                            if pg is None:
                                from bench_import import ThrowawayPostgres, fresh_pg_database

                                pg = ThrowawayPostgres()
                            url = fresh_pg_database(pg.url, f"bench_engine_{i}")
                        if what == "raw":
                            out = run_raw(args.leads, tmp)
                        elif what == "fidelity":
                            out = run_once(url, args.leads, rate=50, burst=5, tmp=tmp)
                            out["fraction_of_cap"] = round(out["originate_rate_per_s"] / 200.0, 3)
                        else:
                            out = run_once(url, args.leads, rate=100_000, burst=1000, tmp=tmp)
                    out.update(what=what, db=backend, run=i + 1)
                    print(json.dumps(out), flush=True)
                    results[(what, backend)].append(out)
    finally:
        if pg is not None:
            pg.stop()
    for (what, backend), runs in results.items():
        keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and k != "run"]
        median = {k: statistics.median(r[k] for r in runs if r[k] is not None) for k in keys}
        print(json.dumps({"what": what, "db": backend, "median_of": len(runs), **median}), flush=True)


if __name__ == "__main__":
    main()
