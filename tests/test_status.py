"""``dialer status``: database figures, live figures from recent engine_status rows, --watch."""

import csv
import datetime as dt
import io
import json
import time

import pytest
import trio
import trio.testing

from dialer.cli import main
from dialer.cli.status import watch
from dialer.reports.status import collect, render
from dialer.models import CallAttempt, EngineStatus, Lead, utcnow
from dialer.sim import SimAsterisk
from tests.engine_harness import BUSINESS_HOURS, make_campaign, new_engine, numbers, server


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def _engine_data(wall_time):
    return {
        "engine_id": "host:1:abc", "wall_time": wall_time, "speed": 1.0,
        "campaigns": {"spring": {
            "state": "running", "mode": "progressive", "in_flight": 6, "ringing": 3, "waiting": 1,
            "connected": 2, "agents_logged_in": 5, "agents_free": 2, "dial_level": 1.5,
            "decision": 2, "reason": "progressive", "placed": 40,
        }},
        "connections": [{"server": "pbx1", "connection": "pbx1#1", "up": True, "reader": True,
                         "in_flight": 6, "originates_sent": 40, "failures": 1, "reconnects": 0,
                         "rate_cap": 20.0, "rate_1s": 7}],
        "counters": {},
    }


@pytest.fixture
def campaign(sessions):
    make_campaign(sessions, phones=numbers(5))
    with sessions.begin() as s:
        lead = s.query(Lead).first()
        lead.state, lead.next_attempt_at = "dialing", None
        s.add(CallAttempt(lead_id=lead.id, campaign_id=lead.campaign_id, phone_e164=lead.phone_e164,
                          attempt_no=1, action_id="a1", channel_id="c1", engine_id="host:1:abc",
                          server="pbx1", connection="pbx1#1", state="ringing", created_at=utcnow()))
    return sessions


def test_without_an_engine_shows_database_figures(campaign, db_url):
    status, out, err = run_cli("status", "--db", db_url)
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].endswith("UTC, no engine running")
    assert lines[1] == ("campaign spring: running (progressive), 5 leads left (4 due), 1 calls in flight;"
                        " abandon - 30 d, - 24 h (target 3.0%)")
    assert len(lines) == 2


def test_live_engine_row_adds_calls_agents_and_connections(campaign, db_url):
    with campaign.begin() as s:
        s.add(EngineStatus(engine_id="host:1:abc", data=_engine_data(time.time()),
                           heartbeat_at=dt.datetime(2030, 1, 1)))  # a fast engine clock runs ahead
    status, out, err = run_cli("status", "spring", "--db", db_url)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].endswith("UTC, 1 engine running: host:1:abc")
    assert lines[2] == "  ringing 3, waiting for an agent 1, connected 2; agents free 2 of 5; dial level 1.5"
    assert lines[3] == ("  connection pbx1/pbx1#1: up, events, 7/s of 20.0/s, 6 in flight, 40 sent,"
                        " 1 failures, 0 reconnects")


def test_status_as_json_csv_and_jsonl(campaign, db_url):
    with campaign.begin() as s:
        s.add(EngineStatus(engine_id="host:1:abc", data=_engine_data(time.time()), heartbeat_at=utcnow()))
    status, out, err = run_cli("status", "--db", db_url, "--format", "json")
    assert status == 0, err
    doc = json.loads(out)
    assert doc["engines"] == ["host:1:abc"] and doc["at"].endswith("Z")
    spring = doc["campaigns"][0]
    assert (spring["name"], spring["leads_left"], spring["calls_in_flight"]) == ("spring", 5, 1)
    assert spring["live"]["ringing"] == 3 and doc["connections"][0]["rate_1s"] == 7
    status, out, err = run_cli("status", "--db", db_url, "--format", "jsonl")
    assert status == 0 and out.count("\n") == 1 and json.loads(out)["campaigns"] == doc["campaigns"]
    status, out, err = run_cli("status", "--db", db_url, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 1 and rows[0]["name"] == "spring" and rows[0]["leads_left"] == "5"
    assert rows[0]["ringing"] == "3" and rows[0]["dial_level"] == "1.5" and rows[0]["abandon_30d"] == ""


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_watch_streams_table_or_jsonl_only(sqlite_url, fmt):
    status, out, err = run_cli("status", "--watch", "--format", fmt, "--db", sqlite_url)
    assert status == 1 and out == "" and f"--format {fmt}: --watch streams; use --format jsonl" in err


def test_stale_engine_row_means_no_engine(campaign):
    with campaign.begin() as s:
        s.add(EngineStatus(engine_id="old", data=_engine_data(time.time() - 60), heartbeat_at=utcnow()))
        s.add(EngineStatus(engine_id="older", data={"campaigns": {}, "connections": []},
                           heartbeat_at=utcnow() - dt.timedelta(seconds=30)))
    with campaign.begin() as s:
        data = collect(s, None, now=utcnow(), wall_now=time.time())
    assert data["engines"] == [] and data["campaigns"][0]["live"] is None
    # Without wall_time, the heartbeat decides.
    with campaign.begin() as s:
        data = collect(s, None, now=utcnow() - dt.timedelta(seconds=28), wall_now=0.0)
    assert data["engines"] == ["older"]


def test_unknown_campaign_and_bad_interval(sqlite_url):
    status, out, err = run_cli("status", "nope", "--db", sqlite_url)
    assert status == 1 and "campaign 'nope'" in err
    status, out, err = run_cli("status", "--watch", "--interval", "0", "--db", sqlite_url)
    assert status == 1 and err.startswith("dialer: --interval ")


def _stopping_sleep(after):
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if len(calls) >= after:
            raise KeyboardInterrupt

    return sleep, calls


def test_watch_plain_prints_a_block_per_refresh_and_ctrl_c_exits_0():
    blocks = iter(f"block {i}\n" for i in range(10))
    sleep, calls = _stopping_sleep(3)
    out = io.StringIO()
    assert watch(lambda: next(blocks), out, interval=2.0, tty=False, sleep=sleep) == 0
    assert out.getvalue() == "block 0\n\nblock 1\n\nblock 2\n\n"
    assert calls == [2.0, 2.0, 2.0]


def test_watch_on_a_terminal_redraws_in_place():
    blocks = iter(f"block {i}\n" for i in range(10))
    sleep, _ = _stopping_sleep(2)
    out = io.StringIO()
    assert watch(lambda: next(blocks), out, interval=1.0, tty=True, sleep=sleep) == 0
    text = out.getvalue()
    assert "block 0" in text and "block 1" in text and "block 2" not in text
    assert "\x1b[" in text  # cursor movement: redrawn in place


async def test_status_of_a_running_engine(clock, sqlite_url, ami_secret):
    """The engine's own engine_status row, read while it dials."""
    from dialer import db

    eng = db.create_engine(sqlite_url)
    sessions = db.session_factory(eng)
    make_campaign(sessions, phones=numbers(20), mode="progressive", max_concurrent=10)
    seen = []

    def on_progress(engine):
        if engine.in_flight() and not seen:
            with sessions.begin() as s:
                data = collect(s, "spring", now=engine.clock.utcnow(), wall_now=time.time())
            buf = io.StringIO()
            render(data, buf)
            seen.append((data, buf.getvalue()))

    async with trio.open_nursery() as nursery:
        sim = SimAsterisk()
        port = await nursery.start(sim.serve)
        engine = new_engine(sessions, [server(port)], until_done=True, epoch=BUSINESS_HOURS,
                            on_progress=on_progress)
        with trio.fail_after(3600):
            await engine.run()
        nursery.cancel_scope.cancel()
    eng.dispose()
    data, text = seen[0]
    (c,) = data["campaigns"]
    assert data["engines"] == [engine.engine_id]
    assert c["state"] == "running" and c["live"]["agents_logged_in"] == 3
    assert c["calls_in_flight"] >= 1 and c["leads_left"] >= 1
    assert {x["connection"] for x in data["connections"]} == {"pbx1#1", "pbx1#2"}
    assert "1 engine running" in text and "agents free" in text and "/s of 50.0/s" in text


def test_watch_as_json_lines_in_a_real_process(campaign, db_url):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen(
        [sys.executable, "-m", "dialer", "status", "--watch", "--format", "jsonl", "--interval", "0.2",
         "--db", db_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    first = proc.stdout.readline()
    second = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    docs = [json.loads(line) for line in [first, second, *rest.splitlines()]]
    assert len(docs) >= 2 and all(d["campaigns"][0]["name"] == "spring" for d in docs)
