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
from dialer.calls.outcomes import to_datetime
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


def start_engine(asterisk, tmp_path: Path, url: str, engine_id: str, extra_engine: str = "") -> subprocess.Popen:
    config = tmp_path / f"{engine_id}.toml"
    config.write_text(asterisk.dialer_toml(extra=f"[engine]\nlease = {LEASE}\n{extra_engine}"))
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


def epoch(value):
    return None if value is None else value.replace(tzinfo=__import__("datetime").UTC).timestamp()


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
        time.sleep(6.0)  # agents 1-3 hang up meanwhile
        assert asterisk.channel_count() > 0  # the other calls are still up

        restarted_at = time.time()
        second = start_engine(asterisk, tmp_path, sqlite_url, "e1")
        procs.append(second)
        wait_until(lambda: all(r[1] != old_owner for r in rows(sessions)), 30, "the restarted engine's takeover")
        takeover = time.time() - restarted_at
        out, _ = second.communicate(timeout=120)
        log = (tmp_path / "e1.log").read_text()
        assert second.returncode == 0, log
        assert "adopted 6 calls" in log
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
    print(f"\n{kill_when}: takeover {takeover:.2f} s after the restart (lease {LEASE} s);"
          f" down {restarted_at - killed_at:.1f} s; {ended_down} of 6 calls ended while down;"
          f" ended_at error vs Asterisk's record: max {max(errors.values()) * 1000:.0f} ms,"
          f" per call {sorted(round(e * 1000) for e in errors.values())} ms")
    assert takeover < 5.0
    engine.dispose()
