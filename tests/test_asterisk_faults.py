"""Engine faults with real calls in flight, on a real Asterisk.

An engine process is SIGKILLed while agents talk (or while its calls ring)
and started again: it takes over its predecessor's calls at once (the dead
run's liveness lock is free), follows the calls still up to their end, and
takes the end of those that ended while no engine ran from the dialplan's
hangup records (AstDB ``dialer-end/<attempt>``). No lead is lost or dialed
twice: a monitoring AMI connection counts every channel Asterisk creates.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer import db
from dialer.models import CallAttempt, Lead
from tests.engine_harness import business_zone, make_campaign

pytestmark = pytest.mark.asterisk

DIALER = [sys.executable, "-m", "dialer"]
LEASE = 60


class ChannelWatch:
    """Every ``Newchannel`` of a dialed number (``Local/<digits>@carrier-…;1``),
    read on a monitoring connection of its own in a thread."""

    PATTERN = re.compile(r"^Local/(\d+)@carrier-[0-9a-f]+;1$")

    def __init__(self, asterisk) -> None:
        self.ami = asterisk.ami("monitor", events="on")
        self.dialed: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                m = self.ami._next(0.2)
            except TimeoutError:
                continue
            except (OSError, ConnectionError):
                return
            if getattr(m, "name", None) == "Newchannel":
                found = self.PATTERN.match(m.get("Channel") or "")
                if found:
                    self.dialed["+" + found.group(1)] += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.ami.close()


def start_engine(asterisk, tmp_path: Path, url: str, engine_id: str, extra_engine: str = "",
                 extra_ami: str = "") -> subprocess.Popen:
    config = tmp_path / f"{engine_id}.toml"
    config.write_text(asterisk.dialer_toml(extra=f"{extra_ami}[engine]\nlease = {LEASE}\n{extra_engine}"))
    log = (tmp_path / f"{engine_id}.log").open("ab")
    return subprocess.Popen(
        [*DIALER, "--config", str(config), "--db", url, "run", "--until-done", "--engine-id", engine_id],
        stdout=subprocess.PIPE, stderr=log, env=dict(os.environ),
    )


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def rows(sessions):
    with sessions.begin() as s:
        return s.execute(
            sa.select(CallAttempt, Lead.lease_owner).join(Lead, Lead.id == CallAttempt.lead_id)
            .order_by(CallAttempt.id)
        ).all()


def lease_ends(sessions, owners) -> float:
    """Epoch seconds when the first lease of these owners would run out."""
    with sessions.begin() as s:
        first = s.scalar(sa.select(sa.func.min(Lead.lease_expires_at)).where(Lead.lease_owner.in_(owners)))
    return epoch(first)


def log_time(line: str) -> float:
    """Epoch seconds of a log line's timestamp (the engine logs local time)."""
    stamp = line[:23]
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:23]) / 1000


def epoch(value):
    return None if value is None else value.replace(tzinfo=dt.UTC).timestamp()


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.parametrize("kill_when", ["agents-talking", "calls-ringing"])
def test_sigkilled_engine_restarted_takes_over_its_calls_at_once(
        asterisk_factory, sqlite_url, tmp_path, procs, kill_when):
    asterisk = asterisk_factory(agents=6)
    # Agents 1-3 hang up soon (their calls end while no engine runs), 4-6 talk
    # on past the restart (their calls are followed to the end).
    for i in (1, 2, 3):
        asterisk.set_agent_talk(4 if kill_when == "agents-talking" else 3, agent=f"agent{i}")
    for i in (4, 5, 6):
        asterisk.set_agent_talk(14, agent=f"agent{i}")
    asterisk.set_agent_talk(2)  # everyone else, i.e. nobody
    engine = db.create_engine(sqlite_url)
    sessions = db.session_factory(engine)
    # Digit 9: rings 2 s, is answered and talks until the agent hangs up.
    phones = [f"+1212555{1009 + 10 * i}" for i in range(9)]
    make_campaign(sessions, phones=phones, mode="progressive", max_concurrent=6, tz=business_zone())
    watch = ChannelWatch(asterisk)
    try:
        first = start_engine(asterisk, tmp_path, sqlite_url, "e1")
        procs.append(first)
        if kill_when == "agents-talking":
            wait_until(lambda: sum(r[0].connected_at is not None for r in rows(sessions)) >= 6, 60,
                       "six calls with agents")
        else:
            wait_until(lambda: sum(r[0].originated_at is not None for r in rows(sessions)) >= 6, 60,
                       "six calls placed")
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        killed_at = time.time()
        before = {r[0].id: r for r in rows(sessions)}
        assert len(before) == 6 and all(r[0].ended_at is None for r in before.values())
        old_owner = next(iter(before.values()))[1]
        leases_end = lease_ends(sessions, {old_owner})
        time.sleep(6.0)  # agents 1-3 hang up meanwhile
        assert asterisk.channel_count() > 0  # the other calls are still up

        restarted_at = time.time()
        second = start_engine(asterisk, tmp_path, sqlite_url, "e1")
        procs.append(second)
        wait_until(lambda: all(r[1] != old_owner for r in rows(sessions)), 60, "the restarted engine's takeover")
        taken_at = time.time()
        takeover = taken_at - restarted_at
        out, _ = second.communicate(timeout=120)
        log = (tmp_path / "e1.log").read_text()
        assert second.returncode == 0, log
        assert "adopted 6 calls" in log
        lines = log.splitlines()
        adopted_line = next(i for i, line in enumerate(lines) if "adopted 6 calls" in line)
        login_line = max(i for i, line in enumerate(lines[:adopted_line]) if "logged in as dialer" in line)
        after_login = log_time(lines[adopted_line]) - log_time(lines[login_line])
    finally:
        watch.close()

    final = {r[0].id: r[0] for r in rows(sessions)}
    with sessions.begin() as s:
        per_lead = collections.Counter(s.scalars(sa.select(CallAttempt.lead_id)))
        states = collections.Counter(s.scalars(sa.select(Lead.state)))
    # No lead lost, none dialed twice (by the database and by Asterisk's own channels).
    assert len(per_lead) == len(phones) and set(per_lead.values()) == {1}
    assert states == {"done": len(phones)}
    assert watch.dialed == {p: 1 for p in phones}
    errors = {}
    for attempt_id in before:
        a = final[attempt_id]
        truth = asterisk.hangup_record(attempt_id)  # the called party's leg, by the dialplan
        assert truth is not None and truth[2] == "agent", (attempt_id, truth)
        assert a.disposition == "connected" and a.ended_at is not None
        errors[attempt_id] = abs(epoch(a.ended_at) - truth[0])
        ended_while_down = truth[0] < restarted_at
        estimated = set(filter(None, (a.estimated or "").split(",")))
        assert "ended_at" not in estimated  # never a guessed end: Asterisk's record or an event
        if kill_when == "agents-talking":
            assert estimated == set()  # answer and agent were seen before the kill
        else:
            assert "answered_at" in estimated  # answered while no engine ran
        if ended_while_down:
            assert a.cause == truth[1]
            assert errors[attempt_id] < 0.01  # the record's own time
        else:
            assert errors[attempt_id] < 1.0   # followed through its Hangup events
    ended_down = sum(1 for aid in before if asterisk.hangup_record(aid)[0] < restarted_at)
    assert 1 <= ended_down <= 5, ended_down
    print(f"\n{kill_when}: takeover {takeover:.2f} s after the restart ({after_login:.2f} s after its"
          f" AMI login; the dead run's leases had {leases_end - taken_at:.0f} s left of {LEASE} s);"
          f" down {restarted_at - killed_at:.1f} s; {ended_down} of 6 calls ended while down;"
          f" ended_at error vs Asterisk's record: max {max(errors.values()) * 1000:.0f} ms,"
          f" per call {sorted(round(e * 1000) for e in errors.values())} ms")
    # Taken over while the dead run's leases were still good: the lock told.
    assert taken_at < leases_end, (taken_at, leases_end)
    engine.dispose()


# Every outcome but 6 (rings until the ring timeout): short calls, so that many
# are placed, in flight and ending around the stall.
STALL_DIGITS = "01234578"
STALL_OUTCOME = {"0": "connected", "1": "connected", "2": "connected", "3": "connected", "4": "busy",
                 "5": "congestion", "7": "connected", "8": "invalid_number"}


def test_asterisk_stalled_ten_seconds_is_noticed_and_nothing_is_dialed_twice(
        asterisk_factory, sqlite_url, tmp_path, procs):
    asterisk = asterisk_factory(agents=3)
    engine = db.create_engine(sqlite_url)
    sessions = db.session_factory(engine)
    phones = [f"+1212555{300 + i:03d}{STALL_DIGITS[i % len(STALL_DIGITS)]}" for i in range(64)]
    # Dialing on at 3 calls a second, below max_concurrent: Originates go out
    # while Asterisk is stopped, until the engine notices.
    make_campaign(sessions, phones=phones, mode="unattended", queue=None, max_concurrent=30,
                  tz=business_zone())
    watch = ChannelWatch(asterisk)
    try:
        proc = start_engine(asterisk, tmp_path, sqlite_url, "e1",
                            "ping_interval = 2\nping_timeout = 2\nstale_after = 5\n",
                            "originate_rate = 3\nburst = 1\n")
        procs.append(proc)
        wait_until(lambda: sum(r[0].ended_at is not None for r in rows(sessions)) >= 12, 60,
                   "a dozen calls ended")
        asterisk.pause()
        stalled_at = time.time()
        try:
            with sessions.begin() as s:
                at_stall = s.scalar(sa.select(sa.func.count()).select_from(CallAttempt))
            time.sleep(10.0)
        finally:
            asterisk.resume()
        resumed_at = time.time()
        with sessions.begin() as s:
            during = s.scalar(sa.select(sa.func.count()).select_from(CallAttempt)) - at_stall
        assert during > 0  # Originates were sent into the stall
        out, _ = proc.communicate(timeout=180)
        log = (tmp_path / "e1.log").read_text()
        assert proc.returncode == 0, log
    finally:
        watch.close()
    # Noticed: the Ping deadline dropped the connection, which was made again.
    assert "no answer to Ping within 2" in log, log
    noticed = [line for line in log.splitlines() if "no answer to Ping" in line]
    with sessions.begin() as s:
        per_lead = collections.Counter(s.scalars(sa.select(CallAttempt.lead_id)))
        states = collections.Counter(s.scalars(sa.select(Lead.state)))
        attempts = s.execute(sa.select(CallAttempt.phone_e164, CallAttempt.disposition,
                                       CallAttempt.estimated)).all()
    assert len(per_lead) == len(phones) and set(per_lead.values()) == {1}
    assert set(states) <= {"done", "exhausted"}, states
    # Every Originate sent reached Asterisk once, none was sent again.
    assert set(watch.dialed.values()) == {1} and set(watch.dialed) <= set(phones)
    wrong = [(p, d, e) for p, d, e in attempts if d != STALL_OUTCOME[p[-1]]]
    estimated = [(p, d, e) for p, d, e in attempts if e]
    # A call the stall hid is resolved from Asterisk (still up, or its record) or
    # flagged estimated; only those may differ from what the number does.
    assert all(e for _, _, e in wrong), wrong
    # Originates written while Asterisk was stopped and never read by it: their
    # fate was unknown to the engine, so they were not sent again (and their
    # lead is not dialed again before the unknown retry delay).
    unreached = [p for p, _, _ in attempts if p not in watch.dialed]
    assert all(STALL_OUTCOME[p[-1]] != d and d == "unknown" and "ended_at" in e
               for p, d, e in wrong if p in unreached), wrong
    # After an Originate waited a second for its answer, no more were sent
    # on that connection until it was made again (3 a second, burst 1).
    assert during <= 6, during
    noticed_after = log_time(noticed[0]) - stalled_at
    assert noticed_after < 10.0  # while Asterisk was still stopped
    back = [line for line in log.splitlines() if "logged in as dialer (generation 2)" in line]
    assert back, log
    print(f"\nstall: noticed {noticed_after:.1f} s into the 10 s stall, logged in again"
          f" {log_time(back[0]) - resumed_at:.1f} s after SIGCONT;"
          f" {len(noticed)} connection(s) noticed it; {during} attempts created during the stall,"
          f" {len(unreached)} Originates never read by Asterisk;"
          f" {len(estimated)} attempts with estimated values {estimated}; {len(wrong)} not the number's outcome")
    engine.dispose()


@pytest.mark.postgres
def test_two_engines_on_postgresql_share_one_asterisk_and_one_takes_over_the_other(
        asterisk_factory, pg_url, tmp_path, procs):
    """Two engines (names a and b) dial one campaign through one Asterisk from one
    PostgreSQL database: no lead is claimed twice. Engine a is SIGKILLed midway;
    b sees a's advisory lock gone and adopts a's calls without waiting for the lease."""
    asterisk = asterisk_factory(agents=3)
    engine = db.create_engine(pg_url)
    sessions = db.session_factory(engine)
    # Digits 0-3: answered after 1 s, the called party hangs up 2 s later; 9: talks 60 s
    # (until the end of the test, unless the dialer's adopter follows it to its end).
    phones = [f"+1212555{400 + i:03d}{'01239'[i % 5]}" for i in range(80)]
    make_campaign(sessions, phones=phones, mode="unattended", queue=None, max_concurrent=8,
                  tz=business_zone())
    watch = ChannelWatch(asterisk)
    asterisk.action("Setvar", Variable="LONG_TALK", Value="6")
    try:
        a, b = (start_engine(asterisk, tmp_path, pg_url, name, "stale_after = 10\n",
                             extra_ami="originate_rate = 4\nburst = 1\n") for name in "ab")
        procs += [a, b]

        def by_engine():
            return collections.Counter(r[0].engine_id for r in rows(sessions))

        wait_until(lambda: by_engine()["a"] >= 10 and by_engine()["b"] >= 10, 60, "both engines to dial")
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        killed_at = time.time()
        left = [r for r in rows(sessions) if r[0].engine_id == "a" and r[0].ended_at is None]
        assert left  # calls of a in flight at the kill
        owners = {r[1] for r in left}
        leases_end = lease_ends(sessions, owners)
        wait_until(lambda: not owners & {r[1] for r in rows(sessions)}, 30, "b to take over a's calls")
        taken_at = time.time()
        takeover = taken_at - killed_at
        out, _ = b.communicate(timeout=180)
        log = (tmp_path / "b.log").read_text()
        assert b.returncode == 0, log
        assert "adopted" in log
    finally:
        watch.close()
    with sessions.begin() as s:
        per_lead = collections.Counter(s.scalars(sa.select(CallAttempt.lead_id)))
        states = collections.Counter(s.scalars(sa.select(Lead.state)))
        attempts = s.execute(sa.select(CallAttempt.id, CallAttempt.phone_e164, CallAttempt.engine_id,
                                       CallAttempt.disposition, CallAttempt.estimated,
                                       CallAttempt.ended_at)).all()
    assert len(per_lead) == len(phones) and set(per_lead.values()) == {1}
    # Asterisk saw each number at most once; one it never saw had its Originate
    # cut off by the kill (or never sent): not sent again, its outcome unknown.
    assert set(watch.dialed.values()) == {1}
    adopted = {r[0].id for r in left}
    never = {aid for aid, phone, *_ in attempts if phone not in watch.dialed}
    assert never <= adopted
    assert states == {"done": len(phones) - len(never), "exhausted": len(never)} if never else {"done": len(phones)}
    errors = []
    for aid, phone, engine_id, d, est, ended in attempts:
        if aid in never:
            assert d == "unknown" and est == "ended_at", (aid, d, est)
            continue
        assert d == "connected" and "ended_at" not in (est or ""), (aid, d, est)
        if aid in adopted:
            truth = asterisk.hangup_record(aid)
            errors.append(abs(epoch(ended) - truth[0]))
    counts = collections.Counter(e for _, _, e, *_ in attempts)
    print(f"\ntwo engines: a placed {counts['a']}, b {counts['b']}; b took a's {len(left)} calls over"
          f" ({len(never)} of them never reached Asterisk)"
          f" {takeover:.2f} s after a was killed (lease {LEASE} s); ended_at error of those vs"
          f" Asterisk's record: max {max(errors) * 1000:.0f} ms")
    assert taken_at < leases_end, (taken_at, leases_end)
    engine.dispose()
