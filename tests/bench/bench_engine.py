"""Benchmark: the engine end to end against the simulated Asterisk.

    .venv/bin/python tests/bench/bench_engine.py [--leads 20000] [--runs 3]
        [--what fidelity,raw,ceiling,asterisk] [--db sqlite,postgresql]

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

asterisk: the same comparison against a real Asterisk 22 from the test
harness (``$DIALER_TEST_ASTERISK``): an unattended campaign whose numbers all
end in 8 (the test dialplan hangs them up with cause 1 before answer), two
connections, caps lifted, on SQLite; and, in the same run against the same
Asterisk, a bare client that pipelines the same Originates on one connection
and reads every event Asterisk sends it, with no database, until every
OriginateResponse is in. Reported: completed calls (engine) and
OriginateResponses (bare client) per second, CPU per call of each
(``cpu_ms_per_call``: the process's CPU time over the completed calls; for the
engine also split into its event loop's thread and its database thread), and
``engine_vs_bare`` (the ratio of the medians).

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


def unanswered_phones(count: int) -> list[str]:
    """Valid US numbers that all end in 8: hung up before answer by the test dialplan."""
    codes = ["212", "312", "415", "617", "713", "206", "305", "404", "602", "503"]
    return [f"+1{codes[i // 1000 % len(codes)]}555{i % 1000:03d}8" for i in range(count)]


def _settle(ast) -> None:
    ast.hangup_all()
    deadline = time.monotonic() + 60
    while ast.channel_count() and time.monotonic() < deadline:
        time.sleep(0.2)


def run_asterisk_engine(ast, leads: int, tmp: Path) -> dict:
    url = f"sqlite:///{tmp}/bench.db"
    engine = db.create_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    make_campaign(sessions, phones=unanswered_phones(leads), mode="unattended", queue=None,
                  max_concurrent=100_000, tz=business_zone(), ring_timeout=15)
    servers = [ast.config_for_dialer(connections=2, originate_rate=100_000, burst=1000,
                                     max_in_flight=50_000)]
    dialer = Engine(sessions, servers, settings=EngineSettings(), until_done=True)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    main0 = time.thread_time()
    t0 = time.perf_counter()

    async def bounded() -> bool:
        # A campaign paused by its circuit breaker never finishes: report the
        # run as cut short rather than wait for ever.
        with trio.move_on_after(RUN_DEADLINE) as scope:
            await dialer.run()
        return not scope.cancelled_caught

    finished = trio.run(bounded)
    wall = time.perf_counter() - t0
    main_cpu = time.thread_time() - main0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    with sessions.begin() as s:
        ended = s.scalar(sa.select(sa.func.count()).where(CallAttempt.ended_at.is_not(None)))
    engine.dispose()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    calls = max(ended, 1)
    return {"leads": leads, "ended": ended, "wall_s": round(wall, 2),
            "per_s": round(ended / wall, 1), "cpu_ms_per_call": round(1000 * cpu / calls, 3),
            # The event loop's thread, and the rest: the database worker thread.
            "loop_cpu_ms_per_call": round(1000 * main_cpu / calls, 3),
            "db_cpu_ms_per_call": round(1000 * (cpu - main_cpu) / calls, 3),
            "events": dialer.counters["events"], "originates": dialer.counters["originates"],
            "not_sent": dialer.counters["not_sent"], "breaker_trips": dialer.counters["breaker_trips"],
            "finished": finished}


#: real seconds an engine run against Asterisk may take before it is cut short
RUN_DEADLINE = 300.0


def run_asterisk_bare(ast, leads: int) -> dict:
    """One connection, every Originate pipelined, every event read, no database."""
    from dialer.ami.connection import open_ami

    numbers = unanswered_phones(leads)
    responses = 0
    events = 0
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()

    async def main() -> None:
        nonlocal responses, events
        async with open_ami(ast.host, ast.port, username="dialer", secret=ast.secrets["dialer"],
                            ping_interval=None, action_timeout=120) as ami:
            done = trio.Event()
            async with ami.subscribe(max_buffer=1 << 16) as stream, trio.open_nursery() as nursery:
                async def count() -> None:
                    nonlocal responses, events
                    async for ev in stream:
                        events += 1
                        if getattr(ev, "name", None) == "OriginateResponse":
                            responses += 1
                            if responses == leads:
                                done.set()
                                return

                nursery.start_soon(count)
                for start in range(0, leads, 500):
                    async with trio.open_nursery() as batch:
                        for i in range(start, min(leads, start + 500)):
                            batch.start_soon(ami.action, "Originate", [
                                ("Channel", f"Local/{numbers[i][1:]}@carrier"), ("Context", "dialer-connect"),
                                ("Exten", "s"), ("Priority", "1"), ("Async", "true"), ("Timeout", "15000"),
                                ("ChannelId", f"bare{i}-a"), ("OtherChannelId", f"bare{i}-b"),
                                ("Variable", f"DIALER_ATTEMPT={i}"),
                            ])
                with trio.fail_after(600):
                    await done.wait()

    trio.run(main)
    wall = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {"leads": leads, "ended": responses, "wall_s": round(wall, 2),
            "per_s": round(responses / wall, 1), "cpu_ms_per_call": round(1000 * cpu / max(responses, 1), 3),
            "events": events}


def asterisk_comparison(leads: int, runs: int) -> None:
    from tests.asterisk_harness import AsteriskInstance, find_asterisk

    ast = AsteriskInstance(find_asterisk())
    ast.start()
    results = collections.defaultdict(list)
    try:
        for i in range(runs):
            for what in ("bare", "engine"):  # alternated, so drift hits both alike
                _settle(ast)
                with tempfile.TemporaryDirectory() as tmp:
                    if what == "engine":
                        out = run_asterisk_engine(ast, leads, Path(tmp))
                    else:
                        out = run_asterisk_bare(ast, leads)
                out.update(what=f"asterisk_{what}", run=i + 1)
                print(json.dumps(out), flush=True)
                results[what].append(out)
    finally:
        ast.cleanup()
    medians = {}
    for what, group in results.items():
        keys = [k for k, v in group[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "run"]
        medians[what] = {k: statistics.median(r[k] for r in group) for k in keys}
        print(json.dumps({"what": f"asterisk_{what}", "median_of": len(group), **medians[what]}), flush=True)
    print(json.dumps({"what": "asterisk_engine_vs_bare",
                      "engine_vs_bare": round(medians["engine"]["per_s"] / medians["bare"]["per_s"], 3)}),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--what", default="fidelity,raw,ceiling")
    parser.add_argument("--db", default="sqlite,postgresql")
    args = parser.parse_args()
    whats = args.what.split(",")
    if "asterisk" in whats:
        asterisk_comparison(args.leads, args.runs)
        whats = [w for w in whats if w != "asterisk"]
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
