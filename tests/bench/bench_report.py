"""Benchmark: ``dialer report`` on a campaign of 1,000,000 call attempts, SQLite and PostgreSQL.

    .venv/bin/python tests/bench/bench_report.py [--attempts 1000000] [--runs 3]
        [--db sqlite,postgresql] [--pg-url URL]

Fills a database with one campaign of --attempts call attempts (bulk insert:
executemany on SQLite, COPY on PostgreSQL) over half as many leads, spread
over 30 days of calling hours, with realistic outcomes (about 35 % answered,
1.5 % dropped; ring 2-25 s, time to agent mostly under a second, talk time
log-normal around 90 s) on four AMI connections, plus 100,000 attempts of
another campaign that the report must skip.
Then times, in this process through the command line's ``main``:
``report NAME`` (table), ``report NAME --format json`` and
``report NAME --attempts`` (CSV export of every attempt, to a file), each
--runs times, and prints one JSON object per line: the generation, a baseline
measured on the same database (``count(*), count(answered_at)`` over the
campaign's attempts, read the way the report reads them: one scan), every
run, and the medians. Without --pg-url a throwaway
PostgreSQL cluster is started as in bench_import.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_import import ThrowawayPostgres, fresh_pg_database  # noqa: E402

START = dt.datetime(2026, 10, 27, 0, 0)
DISPOSITIONS = [  # (disposition, weight, answered)
    ("connected", 33.0, True), ("dropped", 1.5, True), ("no_answer", 35.0, False), ("busy", 12.0, False),
    ("congestion", 4.0, False), ("invalid_number", 9.0, False), ("failed", 4.5, False), ("unknown", 1.0, False),
]
CONNECTIONS = ["pbx1#1", "pbx1#2", "pbx2#1", "pbx2#2"]
TS = "%Y-%m-%d %H:%M:%S.%f"


def emit(obj) -> None:
    print(json.dumps(obj), flush=True)


def rows(campaign_id: int, first_lead: int, leads: int, attempts: int, first_attempt: int, seed: int):
    """(lead rows, attempt rows) as tuples of plain values, times as datetimes."""
    rng = random.Random(seed)
    names = [d for d, _, _ in DISPOSITIONS]
    weights = [w for _, w, _ in DISPOSITIONS]
    answered_set = {d for d, _, a in DISPOSITIONS if a}
    lead_rows = []
    for i in range(leads):
        lead_id = first_lead + i
        lead_rows.append((lead_id, campaign_id, f"+1{2012000000 + lead_id}", "First", "Last",
                          "America/New_York", "exhausted", 0, 2, None, START))
    attempt_rows = []
    span_days = 30
    for i in range(attempts):
        aid = first_attempt + i
        lead_id = first_lead + (i % leads)
        day = rng.randrange(span_days)
        second = rng.uniform(13 * 3600, 26 * 3600)  # 08:00-21:00 New York, in UTC
        created = START + dt.timedelta(days=day, seconds=second)
        disp = rng.choices(names, weights)[0]
        originated = created + dt.timedelta(seconds=rng.uniform(0.005, 0.05))
        ringing = answered = joined = connected = None
        tta = None
        cause, cause_txt = 16, "Normal Clearing"
        if disp in answered_set:
            ringing = originated + dt.timedelta(seconds=rng.uniform(0.05, 0.5))
            answered = ringing + dt.timedelta(seconds=rng.uniform(2, 25))
            joined = answered + dt.timedelta(seconds=0.05)
            if disp == "connected":
                tta = min(2.0, rng.expovariate(1 / 0.4))
                connected = answered + dt.timedelta(seconds=tta)
                ended = connected + dt.timedelta(seconds=rng.lognormvariate(math.log(75), 0.6))
            else:
                ended = answered + dt.timedelta(seconds=2.5)
        elif disp == "no_answer":
            ringing = originated + dt.timedelta(seconds=rng.uniform(0.05, 0.5))
            ended = ringing + dt.timedelta(seconds=25)
            cause, cause_txt = 19, "User alerting, no answer"
        else:
            ended = originated + dt.timedelta(seconds=rng.uniform(0.5, 5))
            cause, cause_txt = {"busy": (17, "User busy"), "congestion": (34, "Circuit/channel congestion"),
                                "invalid_number": (1, "Unallocated (unassigned) number")}.get(disp, (0, "Unknown"))
        attempt_rows.append((
            aid, lead_id, campaign_id, f"+1{2012000000 + lead_id}", 1 + i // leads, f"act-{aid}", f"chan-{aid}",
            "bench-engine", CONNECTIONS[aid % 4].split("#")[0], CONNECTIONS[aid % 4], "ended",
            created, originated, ringing, answered, joined, connected, ended, disp, cause, cause_txt, tta,
        ))
    return lead_rows, attempt_rows


LEAD_COLS = ("id", "campaign_id", "phone_e164", "first_name", "last_name", "timezone", "state", "priority",
             "attempts", "next_attempt_at", "created_at")
ATTEMPT_COLS = ("id", "lead_id", "campaign_id", "phone_e164", "attempt_no", "action_id", "channel_id",
                "engine_id", "server", "connection", "state", "created_at", "originated_at", "ringing_at",
                "answered_at", "queue_joined_at", "connected_at", "ended_at", "disposition", "cause",
                "cause_txt", "time_to_agent")


def fill(url: str, attempts: int) -> None:
    import sqlalchemy as sa

    from dialer import db
    from dialer.campaigns import create_campaign
    from dialer.models import AmiConnectionStats

    engine = db.create_engine(url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    with sessions.begin() as s:
        big = create_campaign(s, "big", channel="Local/{digits}@carrier", queue="agents", max_attempts=3)
        other = create_campaign(s, "other", channel="Local/{digits}@carrier", queue="agents")
        for c in CONNECTIONS:
            s.add(AmiConnectionStats(engine_id="bench-engine", server=c.split("#")[0], connection=c,
                                     originates_sent=attempts // 4, failures=attempts // 400, reconnects=2,
                                     rate_cap=50.0))
        big_id, other_id = big.id, other.id
    plan = [(big_id, 1, attempts // 2, attempts, 1, 1), (other_id, attempts // 2 + 1, 50_000, 100_000,
                                                         attempts + 1, 2)]
    chunk = 200_000
    for campaign_id, first_lead, leads, total, first_attempt, seed in plan:
        lead_rows, _ = rows(campaign_id, first_lead, leads, 0, first_attempt, seed)
        _insert(engine, "leads", LEAD_COLS, lead_rows)
        del lead_rows
        done = 0
        while done < total:
            n = min(chunk, total - done)
            _, attempt_rows = rows(campaign_id, first_lead, leads, n, first_attempt + done, seed + done)
            # attempt_no / lead spread: continue the round-robin over leads
            attempt_rows = [(r[0], first_lead + ((r[0] - first_attempt) % leads), *r[2:4],
                             1 + (r[0] - first_attempt) // leads, *r[5:]) for r in attempt_rows]
            _insert(engine, "call_attempts", ATTEMPT_COLS, attempt_rows)
            done += n
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")
            for table in ("leads", "call_attempts"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        else:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    del sa


def _insert(engine, table: str, cols: tuple[str, ...], data: list[tuple]) -> None:
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
        return
    conv = [tuple(v.strftime(TS) if isinstance(v, dt.datetime) else v for v in row) for row in data]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")
        cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", conv)
        cur.execute("COMMIT")
    finally:
        raw.close()


def timed_cli(argv: list[str], out_path: Path | None) -> tuple[float, int]:
    from dialer.cli import main

    err = io.StringIO()
    started = time.perf_counter()
    if out_path is None:
        out = io.StringIO()
        status = main(argv, out, err)
        size = len(out.getvalue())
    else:
        with open(out_path, "w", encoding="utf-8", newline="") as out:
            status = main(argv, out, err)
        size = out_path.stat().st_size
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{argv}: exit {status}: {err.getvalue()}")
    return seconds, size


def baseline_scan(url: str) -> float:
    import sqlalchemy as sa

    from dialer import db

    engine = db.create_engine(url)
    # Read the way the report reads a campaign this size: straight through the
    # table on SQLite (campaign_id + 0 keeps the index out), by the planner's
    # choice on PostgreSQL.
    where = "campaign_id + 0 = 1" if engine.dialect.name == "sqlite" else "campaign_id = 1"
    started = time.perf_counter()
    with engine.connect() as conn:
        n = conn.execute(sa.text(
            f"SELECT count(*), count(answered_at) FROM call_attempts WHERE {where}")).one()
    seconds = time.perf_counter() - started
    engine.dispose()
    assert n[0] > 0
    return seconds


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("DIALER_BENCH_PG_URL"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dialer-bench-report."))
    pg = None
    try:
        for kind in args.db.split(","):
            if kind == "sqlite":
                url = f"sqlite:///{tmp / 'report.db'}"
            else:
                if pg is None and not args.pg_url:
                    pg = ThrowawayPostgres()
                url = fresh_pg_database(args.pg_url or pg.url, "dialer_bench_report")
            started = time.perf_counter()
            fill(url, args.attempts)
            emit({"bench": "generate", "db": kind, "attempts": args.attempts,
                  "seconds": round(time.perf_counter() - started, 1)})
            cases = {
                "table": (["report", "big", "--db", url], None),
                "json": (["report", "big", "--db", url, "--format", "json"], None),
                "attempts-csv": (["report", "big", "--db", url, "--attempts"], tmp / "attempts.csv"),
            }
            results: dict[str, list[float]] = {name: [] for name in cases}
            baselines = []
            for run in range(args.runs):
                baselines.append(baseline_scan(url))
                emit({"bench": "baseline-scan", "db": kind, "run": run + 1, "seconds": round(baselines[-1], 3)})
                for name, (argv, out_path) in cases.items():
                    seconds, size = timed_cli(argv, out_path)
                    results[name].append(seconds)
                    emit({"bench": "report", "db": kind, "case": name, "run": run + 1,
                          "seconds": round(seconds, 3), "output_bytes": size})
            emit({"bench": "baseline-scan-median", "db": kind, "seconds": round(statistics.median(baselines), 3)})
            for name, values in results.items():
                median = statistics.median(values)
                line = {"bench": "report-median", "db": kind, "case": name, "attempts": args.attempts,
                        "runs": len(values), "seconds": round(median, 2)}
                if name == "attempts-csv":
                    line["rows_per_s"] = round(args.attempts / median)
                emit(line)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
