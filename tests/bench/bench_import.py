"""Benchmark: importing generated leads into SQLite and PostgreSQL.

    .venv/bin/python tests/bench/bench_import.py [--rows 1000000] [--runs 3]
        [--sizes 100000,1000000] [--db sqlite,postgresql] [--pg-url URL]

Prints one JSON object per line: first the baselines measured in the same run
(phonenumbers parsing and validating on one core, csv reading alone, a plain
SQLAlchemy Core executemany insert), then one line per import run (a fresh
database and a fresh process each, so peak RSS is the run's own), then the
medians per database and size. Without --pg-url a throwaway PostgreSQL
cluster is started from Debian's binaries, as tests/run.sh does.

The generated file looks like a purchased lead list: numbers in several
formats across ~400 US area codes, ~1 % invalid numbers, ~0.5 % repeated
numbers, a timezone column that is mostly empty, and two custom columns.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

FORMATS = ["({a}) {b}-{c}", "{a}-{b}-{c}", "{a}{b}{c}", "+1 {a} {b} {c}", "1{a}{b}{c}", "{a}.{b}.{c}"]
FIRST = "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth Maria Wei Ana Luis".split()
LAST = "Smith Johnson Williams Brown Jones Garcia Miller Davis Nguyen Lee Lopez Clark Young King".split()


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def valid_area_codes() -> list[str]:
    """US area codes where random subscriber numbers are mostly valid."""
    from dialer.leads.phones import InvalidPhone, PhoneNormalizer, _nanp_key_lengths

    rng = random.Random(7)
    normalizer = PhoneNormalizer("US")
    codes = []
    for npa in sorted(_nanp_key_lengths()):
        ok = 0
        for _ in range(20):
            try:
                phone = normalizer.normalize(f"{npa}{rng.randint(2000000, 9999999)}")
                ok += phone.timezone is not None and "|" not in phone.timezone
            except InvalidPhone:
                pass
        if ok >= 18:
            codes.append(npa)
    return codes


def generate(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    codes = valid_area_codes()
    recent: list[str] = []
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["phone", "first_name", "last_name", "timezone", "state", "postal_code", "priority",
                    "account_id", "plan"])
        for i in range(rows):
            roll = rng.random()
            if roll < 0.01:
                phone = f"{rng.randint(100, 199)}-{rng.randint(100, 999)}-{rng.randint(0, 9999):04d}"  # invalid
            elif roll < 0.015 and recent:
                phone = rng.choice(recent)  # repeated number
            else:
                phone = rng.choice(FORMATS).format(
                    a=rng.choice(codes), b=rng.randint(200, 999), c=f"{rng.randint(0, 9999):04d}"
                )
                if len(recent) < 1000:
                    recent.append(phone)
                else:
                    recent[rng.randrange(1000)] = phone
            zone = "America/New_York" if rng.random() < 0.1 else ""
            w.writerow([phone, rng.choice(FIRST), rng.choice(LAST), zone, "NY", f"{rng.randint(10000, 99999)}",
                        rng.choice((0, 0, 0, 1, 2)), f"A{i:08d}", rng.choice(("basic", "plus", "premium"))])


# --- Baselines ------------------------------------------------------------------------


def baseline_phonenumbers(path: Path, n: int = 100_000) -> dict:
    import phonenumbers

    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        texts = [row[0] for _, row in zip(range(n), reader)]
    started = time.perf_counter()
    for text in texts:
        try:
            phonenumbers.is_valid_number(phonenumbers.parse(text, "US"))
        except phonenumbers.NumberParseException:
            pass
    seconds = time.perf_counter() - started
    return {"bench": "baseline", "what": "phonenumbers parse+is_valid_number", "numbers": n,
            "per_s": round(n / seconds)}


def baseline_csv(path: Path) -> dict:
    started = time.perf_counter()
    rows = 0
    with open(path, newline="", encoding="utf-8") as f:
        for _ in csv.reader(f):
            rows += 1
    seconds = time.perf_counter() - started
    return {"bench": "baseline", "what": "csv.reader alone", "rows": rows - 1, "per_s": round(rows / seconds)}


def baseline_core_insert(tmp: Path, n: int) -> dict:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp / 'core.db'}")
    meta = sa.MetaData()
    table = sa.Table(
        "t", meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("a", sa.String), sa.Column("b", sa.String), sa.Column("c", sa.Integer),
    )
    meta.create_all(engine)
    rows = [{"a": f"+1415{i:07d}", "b": "America/New_York", "c": i} for i in range(n)]
    started = time.perf_counter()
    with engine.begin() as conn:
        for i in range(0, n, 10_000):
            conn.execute(table.insert(), rows[i : i + 10_000])
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"bench": "baseline", "what": "SQLAlchemy Core executemany into SQLite, batches of 10000",
            "rows": n, "per_s": round(n / seconds)}


# --- One import (in its own process) --------------------------------------------------


def _proc_status_mb(field: str) -> float:
    # /proc's figures belong to this process image alone (ru_maxrss would
    # include the parent's memory from before exec).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(db_url: str, path: str, rejects: str) -> None:
    from dialer import db
    from dialer.campaigns import create_campaign
    from dialer.leads.importer import import_leads

    engine = db.create_engine(db_url)
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    with sessions.begin() as s:
        create_campaign(s, "bench")
    rss_before = _proc_status_mb("VmRSS")
    # RSS at each tenth of the file: flat memory means these stop growing.
    samples: list[float] = []

    def progress(done: int, total: int) -> None:
        if done * 10 >= total * (len(samples) + 1):
            samples.append(round(_proc_status_mb("VmRSS"), 1))

    started = time.perf_counter()
    cpu_started = time.process_time()
    with sessions.begin() as s:
        result = import_leads(s, "bench", path, rejects=rejects, progress=progress)
    seconds = time.perf_counter() - started  # includes the commit
    cpu_seconds = time.process_time() - cpu_started  # both threads of this process
    engine.dispose()
    print(json.dumps({
        "rows": result.rows, "loaded": result.loaded, "rejected": result.rejected, "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rss_before_mb": rss_before, "peak_rss_mb": _proc_status_mb("VmHWM"), "rss_by_tenth_mb": samples,
    }))


def run_import(db_kind: str, db_url: str, path: Path, tmp: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", db_url, str(path), str(tmp / "rejects.csv")],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"import run failed:\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "bench": "import", "db": db_kind, "rows": out["rows"], "loaded": out["loaded"],
        "rejected": out["rejected"], "seconds": round(out["seconds"], 2),
        "rows_per_s": round(out["rows"] / out["seconds"]),
        "cpu_seconds": round(out["cpu_seconds"], 2),
        "peak_rss_mb": round(out["peak_rss_mb"], 1),
        "rss_before_import_mb": round(out["rss_before_mb"], 1),
        "rss_by_tenth_mb": out["rss_by_tenth_mb"],
    }


# --- PostgreSQL -----------------------------------------------------------------------


class ThrowawayPostgres:
    """A private PostgreSQL cluster on a free loopback port (like tests/run.sh)."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()])
        if not bins:
            raise SystemExit("no PostgreSQL binaries in /usr/lib/postgresql; give --pg-url")
        self.bin = bins[-1]
        self.dir = Path(tempfile.mkdtemp(prefix="dialer-bench-pg."))
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        subprocess.run([*self.as_pg, str(self.bin / "initdb"), "-D", f"{self.dir}/data", "-U", "dialer",
                        "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
        # Durable settings (fsync on): the figures should hold for a real server.
        subprocess.run([*self.as_pg, str(self.bin / "pg_ctl"), "-D", f"{self.dir}/data", "-l", f"{self.dir}/log",
                        "-w", "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                        "start"], check=True, capture_output=True)
        self.url = f"postgresql+psycopg://dialer@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run([*self.as_pg, str(self.bin / "pg_ctl"), "-D", f"{self.dir}/data", "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def fresh_pg_database(admin_url: str, name: str) -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def main() -> None:
    # A terminated benchmark still stops its PostgreSQL and removes its files.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the largest file")
    parser.add_argument("--sizes", default=None, help="comma-separated file sizes (default: --rows)")
    parser.add_argument("--runs", type=int, default=3, help="runs per database and size")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=os.environ.get("DIALER_BENCH_PG_URL"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [args.rows]
    kinds = args.db.split(",")

    tmp = Path(tempfile.mkdtemp(prefix="dialer-bench."))
    pg = None
    try:
        files = {}
        for n in sizes:
            files[n] = tmp / f"leads-{n}.csv"
            started = time.perf_counter()
            generate(files[n], n)
            emit({"bench": "generate", "rows": n, "bytes": files[n].stat().st_size,
                  "seconds": round(time.perf_counter() - started, 1)})
        largest = files[max(sizes)]
        emit(baseline_phonenumbers(largest))
        emit(baseline_csv(largest))
        emit(baseline_core_insert(tmp, min(max(sizes), 1_000_000)))

        if "postgresql" in kinds and not args.pg_url:
            pg = ThrowawayPostgres()
        results: dict[tuple[str, int], list[dict]] = {}
        for run in range(args.runs):
            for n in sizes:
                for kind in kinds:
                    if kind == "sqlite":
                        db_path = tmp / "bench.db"
                        for suffix in ("", "-wal", "-shm"):
                            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
                        url = f"sqlite:///{db_path}"
                    else:
                        url = fresh_pg_database(args.pg_url or pg.url, "dialer_bench")
                    line = run_import(kind, url, files[n], tmp)
                    line["run"] = run + 1
                    emit(line)
                    results.setdefault((kind, n), []).append(line)
        for (kind, n), lines in results.items():
            emit({
                "bench": "import-median", "db": kind, "rows": n, "runs": len(lines),
                "rows_per_s": round(statistics.median(x["rows_per_s"] for x in lines)),
                "seconds": round(statistics.median(x["seconds"] for x in lines), 2),
                "peak_rss_mb": round(statistics.median(x["peak_rss_mb"] for x in lines), 1),
            })
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
