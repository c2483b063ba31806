"""Several AMI connections to one real Asterisk, watched on the wire by a
counting TCP relay (tests/ami_relay.py, a process of its own): each call
event is read and processed once, ActionIDs are unique across the
connections, and no connection sends more Originates in any one second than
its cap."""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer.models import CallEvent
from tests.engine_harness import max_in_window
from tests.real_tier import EventLog, attempts, campaign, phones, run_until_done, sessions_for

pytestmark = pytest.mark.asterisk

RELAY = Path(__file__).resolve().parent / "ami_relay.py"


class Relay:
    def __init__(self, upstream: int, record: Path) -> None:
        self.record = record
        self.proc = subprocess.Popen([sys.executable, str(RELAY), str(upstream), str(record)],
                                     stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def lines(self) -> list[list[str]]:
        return [line.split() for line in self.record.read_text().splitlines()]


async def test_three_connections_one_reader_unique_action_ids_caps_at_the_wire(asterisk, sqlite_url,
                                                                              tmp_path):
    engine_db, sessions = sessions_for(sqlite_url)
    count, cap = 150, 10
    # Unattended: no agents to wait for; busy, congestion, unallocated and answered numbers.
    campaign(sessions, "wire", phones("4580" * (count // 4) + "45"), mode="unattended", queue=None,
             max_concurrent=200, ring_timeout=15)
    relay = Relay(asterisk.port, tmp_path / "wire.txt")
    try:
        with EventLog(asterisk) as log:
            engine = await run_until_done(
                sessions, [asterisk.config_for_dialer(port=relay.port, connections=3,
                                                      originate_rate=cap, burst=2)],
                timeout=45)
    finally:
        relay.close()
        engine_db.dispose()
    rows = attempts(sessions)
    assert len(rows) == count and all(a.disposition for a in rows)
    wire = relay.lines()

    # Every connection sent Originates, each within its cap in every one-second
    # window of the times the kernel received them, and the caps were what
    # limited them.
    originates = collections.defaultdict(list)
    for kind, conn, at, *rest in wire:
        if kind == "C" and rest[0].lower() == "originate":
            originates[conn].append(float(at))
    assert len(originates) == 3 and sum(map(len, originates.values())) == count
    peaks = {conn: max_in_window(times) for conn, times in originates.items()}
    assert all(peak <= cap for peak in peaks.values()), peaks
    assert max(peaks.values()) == cap, peaks
    # 150 calls at 3 x 10 per second: about 5 seconds of dialing.
    first = min(t for times in originates.values() for t in times)
    last = max(t for times in originates.values() for t in times)
    assert last - first >= count / (3 * cap) - 1.0

    # ActionIDs: unique across the connections, and the attempts' are the wire's.
    ids = [rest[1] for kind, _, _, *rest in wire if kind == "C" and len(rest) > 1 and rest[1] != "None"]
    assert len(ids) == len(set(ids))
    originate_ids = {rest[1] for kind, _, _, *rest in wire if kind == "C" and rest[0].lower() == "originate"}
    assert originate_ids == {a.action_id for a in rows}

    # Events: one connection reads them, the others none (but the answers to
    # their own list actions, QueueStatus and CoreShowChannels, which carry
    # their ActionIDs); the engine processed each event that reader received
    # exactly once.
    own = {(conn, rest[1]) for kind, conn, _, *rest in wire
           if kind == "C" and rest[0].lower() != "originate" and len(rest) > 1}
    # Every connection logs in with Events: system, to hear FullyBooted and
    # Shutdown (readiness); the call events come on the reader alone.
    readiness = {"FullyBooted", "Shutdown"}
    events = collections.Counter(line[1] for line in wire
                                 if line[0] == "E" and (line[1], line[4]) not in own
                                 and line[3] not in readiness)
    assert len(events) == 1, events
    (reader, received), = events.items()
    assert engine.counters["events"] == received
    responses = sum(1 for line in wire if line[0] == "E" and line[3] == "OriginateResponse")
    assert responses == count
    # ... and stored each event it acted on once: no event twice in the calls' log.
    with sessions.begin() as s:
        logged = [(e.attempt_id, e.event, tuple(map(tuple, e.data))) for e in s.scalars(sa.select(CallEvent))]
    assert logged and len(logged) == len(set(logged))
    per_attempt = collections.Counter((a, name) for a, name, _ in logged)
    assert all(n == 1 for (a, name), n in per_attempt.items() if name == "OriginateResponse")
    # Asterisk's own count of the calls' OriginateResponses (seen by an observer) agrees.
    assert len(log.named("OriginateResponse")) == count
