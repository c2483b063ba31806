"""Benchmark: claiming leads from a 1,000,000-lead campaign, fresh and half done.

    .venv/bin/python tests/bench/bench_hopper.py [--leads 1000000] [--claims 200] [--db sqlite,postgresql] [--regions]

A claim is what the engine does for each batch: one transaction that picks up
to 20 due leads (oldest first, inside the calling window, not on the DNC
list, no abandoned call in 72 h) and leases them. Measured on a fresh
campaign, then with half the leads dialed and done (the ones loaded first,
so a claim that walked the index from the start would step over all of
them), and with a further 40 % waiting for a retry later today (on
PostgreSQL after a VACUUM, as autovacuum would have run). One JSON object
per line: each state's median, p90 and max claim time in milliseconds.

With ``--regions`` each lead has the time zone and rules region (state) of
its number's area code, as a load gives them: about 70 (zone, region) pairs
instead of four zones, Florida, Oklahoma and Maryland leads under their caps.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import sqlalchemy as sa  # noqa: E402

from dialer import db  # noqa: E402
from dialer.leads import hopper  # noqa: E402
from dialer.campaigns import create_campaign  # noqa: E402
from dialer.models import Campaign, Lead  # noqa: E402

ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"]
NOW = dt.datetime(2026, 11, 25, 19, 0)  # a Wednesday: 14:00 in New York, 11:00 in Los Angeles


def _area_codes() -> list[tuple[str, str, str]]:
    """(area code, zone, region) of every geographic NANP area code in the US."""
    from dialer.leads.phones import PhoneNormalizer

    normalizer = PhoneNormalizer()
    found = []
    for npa in range(200, 1000):
        try:
            phone = normalizer.normalize(f"+1{npa}2345678")
        except ValueError:
            continue
        if phone.timezone and "|" not in phone.timezone and phone.region and phone.region.startswith("US-"):
            found.append((str(npa), phone.timezone, phone.region))
    return found


def fill(engine, leads: int, with_regions: bool = False) -> int:
    sessions = db.session_factory(engine)
    with sessions.begin() as s:
        c = create_campaign(s, "big", max_attempts=3)
        c.state = "running"
        s.flush()
        cid = c.id
    table = Lead.__table__
    loaded = NOW - dt.timedelta(days=1)
    codes = _area_codes() if with_regions else []
    batch = []
    with engine.begin() as conn:
        for i in range(leads):
            if codes:
                npa, zone, region = codes[i % len(codes)]
                phone = f"+1{npa}{i:07d}"[:12]
            else:
                phone, zone, region = f"+1{200 + i % 700}{i:07d}"[:12], ZONES[i % len(ZONES)], None
            batch.append({
                "campaign_id": cid, "phone_e164": phone, "rules_region": region,
                "timezone": zone, "state": "new", "priority": 0, "attempts": 0,
                "next_attempt_at": loaded + dt.timedelta(microseconds=i), "created_at": loaded,
            })
            if len(batch) == 20_000:
                conn.execute(table.insert(), batch)
                batch.clear()
        if batch:
            conn.execute(table.insert(), batch)
    return cid


def age(engine, cid: int, leads: int) -> None:
    """The first half dialed and done; 40 % more waiting for a retry tonight."""
    table = Lead.__table__
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(sa.select(table.c.id).where(table.c.campaign_id == cid).order_by(table.c.next_attempt_at))]
        done, retry = ids[: leads // 2], ids[leads // 2: leads // 2 + leads * 4 // 10]
        for chunk in range(0, len(done), 50_000):
            conn.execute(table.update().where(table.c.id.in_(done[chunk:chunk + 50_000]))
                         .values(state="done", next_attempt_at=None, attempts=1))
        for chunk in range(0, len(retry), 50_000):
            conn.execute(table.update().where(table.c.id.in_(retry[chunk:chunk + 50_000]))
                         .values(state="retry", next_attempt_at=NOW + dt.timedelta(hours=3), attempts=1))


def measure(engine, cid: int, claims: int) -> dict:
    sessions = db.session_factory(engine)
    with sessions.begin() as s:
        campaign = s.get(Campaign, cid)
        s.expunge(campaign)
        zones = hopper.campaign_timezones(s, cid)
    times = []
    for _ in range(claims):
        t0 = time.perf_counter()
        with sessions.begin() as s:
            got = hopper.claim_leads(s, campaign, engine_id="bench", now=NOW, limit=20, timezones=zones)
        times.append((time.perf_counter() - t0) * 1000)
        assert len(got) == 20
    times.sort()
    return {"claims": claims, "median_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[int(len(times) * 0.9)], 2), "max_ms": round(times[-1], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--regions", action="store_true",
                        help="leads with the zone and state of their area code (about 70 pairs)")
    args = parser.parse_args()
    pg = None
    try:
        for backend in args.db.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                if backend == "sqlite":
                    url = f"sqlite:///{tmp}/hopper.db"
                else:
                    from bench_import import ThrowawayPostgres, fresh_pg_database

                    pg = pg or ThrowawayPostgres()
                    url = fresh_pg_database(pg.url, "bench_hopper")
                engine = db.create_engine(url)
                db.upgrade(engine)
                t0 = time.perf_counter()
                cid = fill(engine, args.leads, args.regions)
                if backend == "postgresql":
                    with engine.begin() as conn:
                        conn.exec_driver_sql("ANALYZE leads")
                fill_s = time.perf_counter() - t0
                out = measure(engine, cid, args.claims)
                print(json.dumps({"db": backend, "leads": args.leads, "regions": args.regions, "campaign": "fresh", "fill_s": round(fill_s, 1), **out}), flush=True)
                age(engine, cid, args.leads)
                if backend == "postgresql":
                    # What autovacuum does on a campaign aging over days; without
                    # it the first claims step over the dead index entries of the
                    # 900,000 rows just rewritten.
                    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                        conn.exec_driver_sql("VACUUM ANALYZE leads")
                out = measure(engine, cid, args.claims)
                print(json.dumps({"db": backend, "leads": args.leads, "regions": args.regions, "campaign": "half done, 40% waiting", **out}), flush=True)
                engine.dispose()
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
