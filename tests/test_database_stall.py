"""A PostgreSQL server that stops answering: deadlines on the client side.

The test starts a cluster of its own (tests/pg_cluster.py) and SIGSTOPs its
postmaster and backends. The kernel still accepts connections and
acknowledges bytes, and the server's own timeouts cannot fire, so only the
client's deadlines stand between a command and a hang. These tests run on the
real clock: the deadline is a watchdog thread, which a mock clock cannot move.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
import trio

from dialer import db
from dialer.engine import EngineSettings
from dialer.models import CallAttempt
from dialer.sim import SimAsterisk
from tests.engine_harness import BUSINESS_HOURS, SECRET_ENV, make_campaign, numbers, originates, server
from tests.pg_cluster import Cluster, NoPostgres

TIMEOUT = 2.0   # seconds, the deadline every test here sets
SLACK = 3.0     # seconds allowed past it (a loaded machine)


@pytest.fixture(scope="module")
def cluster():
    try:
        c = Cluster()
    except NoPostgres as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    c.start()
    yield c
    c.cleanup()


@pytest.fixture
def url(cluster, request):
    """A fresh migrated database in the cluster (running again after the test)."""
    name = f"stall_{request.node.name.split('[')[0][-40:]}_{os.getpid()}".lower()
    admin = sa.create_engine(db.parse_url(cluster.url), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    target = db.parse_url(cluster.url).set(database=name).render_as_string(hide_password=False)
    engine = db.create_engine(target)
    db.upgrade(engine)
    engine.dispose()
    yield target
    cluster.resume()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def test_a_blocked_statement_fails_within_the_deadline(cluster, url):
    engine = db.create_engine(url, timeout=TIMEOUT)
    try:
        with engine.connect() as conn:  # a pooled connection, open before the stall
            conn.execute(sa.text("SELECT 1"))
        cluster.pause()
        started = time.monotonic()
        with pytest.raises(db.DatabaseTimeout, match=rf"no answer within {TIMEOUT:g} s"):
            with db.deadline(engine), engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        took = time.monotonic() - started
        assert TIMEOUT - 0.1 <= took <= TIMEOUT + SLACK
        cluster.resume()
        with db.deadline(engine), engine.connect() as conn:  # the pool recovers by itself
            assert conn.execute(sa.text("SELECT 2")).scalar() == 2
    finally:
        cluster.resume()
        engine.dispose()


@pytest.mark.parametrize("argv", [["status"], ["report", "spring"], ["campaign", "list"]],
                         ids=["status", "report", "campaign-list"])
def test_commands_fail_with_one_line_instead_of_hanging(cluster, url, argv):
    engine = db.create_engine(url)
    with db.session_factory(engine).begin() as s:
        from dialer.campaigns import create_campaign
        create_campaign(s, "spring")
    engine.dispose()
    env = {**os.environ, "DIALER_DB": url, db.TIMEOUT_ENV: str(TIMEOUT)}
    cluster.pause()
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "dialer", *argv], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    took = time.monotonic() - started
    cluster.resume()
    assert proc.returncode == 1, proc
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dialer: --db: postgresql"), proc.stderr
    assert f"no answer within {TIMEOUT:g} s" in lines[0]
    # And once the server is back, the same command works; its time is the baseline
    # (start-up and the work itself) the stalled run may exceed by the deadline.
    started = time.monotonic()
    again = subprocess.run([sys.executable, "-m", "dialer", *argv], env=env, capture_output=True,
                           text=True, timeout=60, stdin=subprocess.DEVNULL)
    baseline = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert took <= baseline + TIMEOUT + SLACK, (took, baseline)


def test_a_bad_timeout_setting_is_one_line(monkeypatch):
    monkeypatch.setenv(db.TIMEOUT_ENV, "soon")
    with pytest.raises(db.DatabaseError, match=r"\$DIALER_DB_TIMEOUT: 'soon' is not a positive number"):
        db.timeout_from_env()


async def test_engine_stops_dialing_keeps_outcomes_and_writes_them_when_the_server_is_back(
        cluster, url, monkeypatch, caplog):
    """SIGSTOP mid-campaign: within the deadline the engine says so, claims no
    more leads (so places no more calls), keeps the outcomes of the calls that
    end meanwhile, and writes every one of them after SIGCONT."""
    monkeypatch.setenv(SECRET_ENV, "dialerpass")
    caplog.set_level(logging.WARNING, logger="dialer.engine")
    engine = db.create_engine(url)
    sessions = db.session_factory(engine)
    phones = numbers(60)
    make_campaign(sessions, phones=phones, mode="unattended", queue=None, max_concurrent=8)
    speed = 10.0
    settings = EngineSettings(speed=speed, db_timeout=TIMEOUT, poll_interval=0.2, lease=600.0)
    from dialer.engine import Engine

    try:
        async with trio.open_nursery() as nursery:
            sim = SimAsterisk(speed=speed)
            port = await nursery.start(sim.serve)
            dialer = Engine(sessions, [server(port, rate=20, burst=2)], settings=settings,
                            until_done=True, epoch=BUSINESS_HOURS)
            done = trio.Event()

            async def run_engine() -> None:
                await dialer.run()
                done.set()

            nursery.start_soon(run_engine)
            with trio.fail_after(60):
                while len(originates(sim)) < 12:
                    await trio.sleep(0.05)
            await trio.to_thread.run_sync(cluster.pause)
            stalled_at = trio.current_time()
            ended_before = dialer.counters["ended"]
            # A clear error within the deadline (plus the flush interval).
            with trio.fail_after(TIMEOUT + SLACK):
                while dialer.database_down is None:
                    await trio.sleep(0.05)
            assert trio.current_time() - stalled_at <= TIMEOUT + SLACK
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "dialer.engine"]
            assert len(errors) == 1 and f"no answer within {TIMEOUT:g} s" in errors[0].getMessage()
            assert "no new calls until it answers" in errors[0].getMessage()
            # No new calls: what was claimed before the stall has been sent by now.
            await trio.sleep(1.0)
            sent = len(originates(sim))
            await trio.sleep(3 * TIMEOUT)
            assert len(originates(sim)) == sent < len(phones)
            # Calls in flight went on to their end; their outcomes are kept, not dropped.
            assert dialer.counters["ended"] > ended_before
            kept = dialer.unwritten()
            assert kept > 0
            await trio.to_thread.run_sync(cluster.resume)
            with trio.fail_after(120):
                await done.wait()
            nursery.cancel_scope.cancel()
        assert dialer.database_down is None
        assert len(originates(sim)) == len(phones) == dialer.counters["originates"]
        with sessions.begin() as s:
            attempts = list(s.scalars(sa.select(CallAttempt)))
        assert len(attempts) == len(phones)
        assert all(a.ended_at is not None and a.disposition is not None for a in attempts)
        assert {a.phone_e164 for a in attempts} == set(phones)
    finally:
        cluster.resume()
        engine.dispose()


def test_a_runaway_sqlite_statement_is_interrupted_at_the_deadline(tmp_path):
    engine = db.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    endless = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"
    try:
        started = time.monotonic()
        with pytest.raises(db.DatabaseTimeout, match=r"no answer within 0.3 s"):
            with db.deadline(engine, 0.3), engine.connect() as conn:
                conn.execute(sa.text(endless))
        assert 0.25 <= time.monotonic() - started <= 0.3 + SLACK
        # A shorter deadline armed after a longer one fires first; the longer one
        # never fires on a block that finished in time.
        with db.deadline(engine, 60), engine.connect() as conn:
            with pytest.raises(db.DatabaseTimeout):
                with db.deadline(engine, 0.2):
                    conn.execute(sa.text(endless))
        with db.deadline(engine, 0.2), engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 3")).scalar() == 3
        time.sleep(0.4)
        with engine.connect() as conn:  # nothing fired on it afterwards
            assert conn.execute(sa.text("SELECT 4")).scalar() == 4
    finally:
        engine.dispose()


def test_postgres_connections_carry_the_server_side_timeouts(url):
    engine = db.create_engine(url, timeout=TIMEOUT)
    try:
        with engine.connect() as conn:
            shown = {name: conn.exec_driver_sql(f"SHOW {name}").scalar()
                     for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")}
            assert shown == {"statement_timeout": "2s", "lock_timeout": "2s",
                             "idle_in_transaction_session_timeout": "4s"}
            # A migration's transaction lifts the statement timeout for itself only.
            conn.rollback()
            with conn.begin():
                db._no_statement_timeout(conn)
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "2s"
    finally:
        engine.dispose()
