"""``dialer report`` on a small database whose every figure is known, on SQLite and PostgreSQL."""

import csv
import datetime as dt
import io
import json

import pytest
import sqlalchemy as sa

from dialer import reports
from dialer.campaigns import create_campaign
from dialer.cli import main
from dialer.models import AmiConnectionStats, CallAttempt, Lead

NOW = dt.datetime(2026, 11, 26, 12, 0, 0)
T = dt.datetime(2026, 11, 26, 10, 0, 0)
S = dt.timedelta(seconds=1)


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def _lead(cid, n, state, next_at=None):
    return Lead(campaign_id=cid, phone_e164=f"+1212555{1000 + n:04d}", first_name=f"F{n}",
                last_name=f"L{n}", timezone="America/New_York", state=state, next_attempt_at=next_at)


def _attempt(n, lead, conn, created, *, ring=None, answer=None, agent=None, end=None, disp=None, tta=None):
    def at(offset):
        return None if offset is None else created + offset * S

    return CallAttempt(
        lead_id=lead.id, campaign_id=lead.campaign_id, phone_e164=lead.phone_e164, attempt_no=1,
        action_id=f"a{n}", channel_id=f"c{n}", engine_id="e1", server="pbx1", connection=conn,
        state="ended" if disp else "ringing", created_at=created, originated_at=at(0.5),
        ringing_at=at(ring), answered_at=at(answer), connected_at=at(agent), ended_at=at(end),
        disposition=disp, time_to_agent=tta, cause=16 if disp else None,
        cause_txt="Normal Clearing" if disp else None,
    )


@pytest.fixture
def known(sessions):
    """Ten leads in every state and seven attempts (one 42 days old, one in progress)."""
    with sessions.begin() as s:
        c = create_campaign(s, "spring", channel="Local/{digits}@carrier", queue="agents")
        other = create_campaign(s, "other", channel="Local/{digits}@carrier", queue="agents")
        leads = [
            _lead(c.id, 1, "new", NOW - dt.timedelta(hours=1)),
            _lead(c.id, 2, "new", NOW + dt.timedelta(hours=1)),
            _lead(c.id, 3, "retry", NOW - dt.timedelta(minutes=10)),
            _lead(c.id, 4, "retry", NOW + dt.timedelta(hours=2)),
            _lead(c.id, 5, "done"), _lead(c.id, 6, "done"), _lead(c.id, 7, "exhausted"),
            _lead(c.id, 8, "dnc"), _lead(c.id, 9, "dialing"), _lead(c.id, 10, "claimed"),
        ]
        stray = _lead(other.id, 11, "done")
        s.add_all(leads + [stray])
        s.flush()
        L = leads
        s.add_all([
            # ring 4 s, agent after 0.5 s, talk 59.5 s
            _attempt(1, L[4], "pbx1#1", T, ring=1, answer=5, agent=5.5, end=65, disp="connected", tta=0.5),
            # ring 10 s, agent after 1 s, talk 30 s
            _attempt(2, L[5], "pbx1#1", T + 600 * S, ring=0, answer=10, agent=11, end=41,
                     disp="connected", tta=1.0),
            # ring 2 s, dropped
            _attempt(3, L[6], "pbx1#1", T + 1200 * S, ring=0, answer=2, end=4, disp="dropped"),
            _attempt(4, L[1], "pbx1#1", T + 1800 * S, ring=1, end=26, disp="no_answer"),
            _attempt(5, L[2], "pbx1#2", T + 3700 * S, end=1, disp="busy"),
            _attempt(6, L[8], "pbx1#2", T + 3800 * S, ring=1),
            # 42 days old: ring 3 s, dropped
            _attempt(7, L[3], "pbx1#2", T - dt.timedelta(days=42), ring=0, answer=3, end=5, disp="dropped"),
            _attempt(8, stray, "pbx1#1", T, ring=0, answer=1, agent=1.5, end=9, disp="connected", tta=0.5),
            AmiConnectionStats(engine_id="e1", server="pbx1", connection="pbx1#1", originates_sent=50,
                               failures=1, reconnects=2, rate_cap=20.0),
            AmiConnectionStats(engine_id="e2", server="pbx1", connection="pbx1#1", originates_sent=7,
                               failures=0, reconnects=1, rate_cap=20.0),
        ])
    return sessions


def test_every_figure_of_a_known_campaign(known):
    with known.begin() as s:
        r = reports.build_report(s, "spring", now=NOW)
    assert r["format"] == "dialer-report/1"
    assert r["campaign"] == {"name": "spring", "state": "stopped", "mode": "progressive",
                             "abandon_target": 0.03}
    assert r["leads"] == {"total": 10, "new": 2, "due_now": 2, "waiting_retry": 1, "in_progress": 2,
                          "done": 2, "exhausted": 1, "dnc": 1, "rejected_at_load": None}
    at = r["attempts"]
    assert (at["total"], at["ended"], at["in_progress"]) == (7, 6, 1)
    counts = {d: v["count"] for d, v in at["by_disposition"].items()}
    assert counts == {"connected": 2, "dropped": 2, "no_answer": 1, "busy": 1, "congestion": 0,
                      "invalid_number": 0, "failed": 0, "unknown": 0}
    assert at["by_disposition"]["connected"]["share"] == 0.3333
    assert at["by_disposition"]["busy"]["share"] == 0.1667
    assert at["by_disposition"]["failed"]["share"] == 0.0
    assert r["rates"] == {"answer_rate": 0.6667, "contact_rate": 0.3333, "abandon_rate": 0.5}
    # The 42-day-old drop is outside both windows.
    assert r["abandon"] == {
        "target": 0.03, "within_target": False,
        "rolling_30d": {"dropped": 1, "answered": 3, "rate": 0.3333},
        "last_24h": {"dropped": 1, "answered": 3, "rate": 0.3333},
    }
    t = r["timings"]
    # ring times 2, 3, 4, 10: p90 at 2.7 -> 4 + 0.7 * 6
    assert t["ring_time"] == {"count": 4, "avg": 4.75, "p90": 8.2}
    assert t["time_to_agent"] == {"count": 2, "avg": 0.75, "p90": 0.95}
    assert t["talk_time"] == {"count": 2, "avg": 44.75, "p90": 56.55}
    assert [(h["hour"], h["attempts"], h["answered"], h["connected"], h["dropped"]) for h in r["hours"]] == [
        ("2026-10-15T10:00Z", 1, 1, 0, 1),
        ("2026-11-26T10:00Z", 4, 3, 2, 1),
        ("2026-11-26T11:00Z", 2, 0, 0, 0),
    ]
    assert r["hours"][1]["answer_rate"] == 0.75 and r["hours"][1]["abandon_rate"] == 0.3333
    c1, c2 = r["connections"]
    assert c1 == {"server": "pbx1", "connection": "pbx1#1", "attempts": 4, "failed": 0,
                  "active_seconds": 4, "mean_rate": 1.0, "peak_rate": 1, "rate_cap": 20.0,
                  "peak_vs_cap": 0.05, "originates_sent": 57, "failures": 1, "reconnects": 3}
    assert (c2["connection"], c2["attempts"], c2["rate_cap"], c2["originates_sent"]) == ("pbx1#2", 3, None, None)


def test_since_keeps_only_recent_calls(known):
    with known.begin() as s:
        r = reports.build_report(s, "spring", now=NOW, since=dt.datetime(2026, 11, 26))
    assert r["since"] == "2026-11-26T00:00:00.000Z"
    assert r["attempts"]["ended"] == 5
    assert r["attempts"]["by_disposition"]["dropped"] == {"count": 1, "share": 0.2}
    assert r["rates"]["abandon_rate"] == 0.3333
    assert r["timings"]["ring_time"] == {"count": 3, "avg": 5.33, "p90": 8.8}
    assert len(r["hours"]) == 2
    # Leads are counted as they are now, whatever --since.
    assert r["leads"]["total"] == 10


def test_peak_rate_counts_calls_in_one_second(sessions):
    with sessions.begin() as s:
        c = create_campaign(s, "burst", channel="Local/{digits}@carrier", queue="agents")
        leads = [_lead(c.id, n, "done") for n in range(5)]
        s.add_all(leads)
        s.flush()
        s.add_all(_attempt(n, leads[n], "pbx1#1", T + (0.1 * n if n < 3 else 5) * S, end=1, disp="busy")
                  for n in range(5))
    with sessions.begin() as s:
        (conn,) = reports.build_report(s, "burst", now=NOW)["connections"]
    assert (conn["attempts"], conn["peak_rate"], conn["active_seconds"], conn["mean_rate"]) == (5, 3, 2, 2.5)


def test_empty_campaign_reports_zeros_and_nulls(sessions):
    with sessions.begin() as s:
        create_campaign(s, "empty", channel="Local/{digits}@carrier", queue="agents")
    with sessions.begin() as s:
        r = reports.build_report(s, "empty", now=NOW)
    assert r["attempts"]["total"] == 0
    assert r["rates"] == {"answer_rate": None, "contact_rate": None, "abandon_rate": None}
    assert r["timings"]["talk_time"] == {"count": 0, "avg": None, "p90": None}
    assert r["hours"] == [] and r["connections"] == []
    assert r["abandon"]["within_target"] is True
    out = io.StringIO()
    reports.render_table(r, out)
    assert "no calls" in out.getvalue()


def test_cli_json_table_and_csv(known, db_url):
    status, out, err = run_cli("report", "spring", "--db", db_url, "--format", "json")
    assert (status, err) == (0, "")
    data = json.loads(out)
    assert set(data) == {"format", "generated_at", "since", "campaign", "leads", "attempts", "rates",
                         "abandon", "timings", "hours", "connections"}
    assert data["attempts"]["by_disposition"]["connected"]["count"] == 2

    status, out, err = run_cli("report", "spring", "--db", db_url)
    assert status == 0
    assert "connected           2   33.3%" in out
    assert "answer rate 66.7%   contact rate 33.3%   abandon rate 50.0%" in out
    assert "pbx1/pbx1#1" in out

    status, out, err = run_cli("report", "spring", "--db", db_url, "--format", "csv")
    assert status == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["section", "key", "metric", "value"]
    assert all(len(r) == 4 for r in rows)
    assert ["disposition", "dropped", "count", "2"] in rows
    assert ["leads", "", "rejected_at_load", ""] in rows
    assert ["timings", "ring_time", "p90", "8.2"] in rows
    assert ["hour", "2026-11-26T10:00Z", "attempts", "4"] in rows
    assert ["connection", "pbx1/pbx1#1", "reconnects", "3"] in rows


def test_attempts_export_csv_and_json(known, db_url):
    status, out, err = run_cli("report", "spring", "--db", db_url, "--attempts")
    assert (status, err) == (0, "")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == list(reports.ATTEMPT_COLUMNS)
    assert len(rows) == 7
    first = rows[0]
    assert (first["phone"], first["first_name"], first["disposition"], first["cause"]) == (
        "+12125551005", "F5", "connected", "16")
    assert first["queued_at"] == "2026-11-26T10:00:00.000Z"
    assert first["answered_at"] == "2026-11-26T10:00:05.000Z"
    assert first["connected_at"] == "2026-11-26T10:00:05.500Z"
    assert float(first["time_to_agent"]) == 0.5
    in_progress = [r for r in rows if r["disposition"] == ""]
    assert len(in_progress) == 1 and in_progress[0]["ended_at"] == ""

    status, out, err = run_cli("report", "spring", "--db", db_url, "--attempts", "--format", "json",
                               "--since", "2026-11-26T10:31:00Z")
    assert status == 0
    data = json.loads(out)
    assert [d["disposition"] for d in data] == ["busy", None]
    assert set(data[0]) == set(reports.ATTEMPT_COLUMNS)
    assert data[0]["lead_id"] and data[0]["queued_at"] == "2026-11-26T11:01:40.000Z"


def test_attempts_export_as_json_lines(known, db_url):
    status, out, err = run_cli("report", "spring", "--db", db_url, "--attempts", "--format", "jsonl")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 7
    rows = [json.loads(line) for line in lines]
    assert all(list(r) == list(reports.ATTEMPT_COLUMNS) for r in rows)
    full = json.loads(run_cli("report", "spring", "--db", db_url, "--attempts", "--format", "json")[1])
    assert rows == full


def test_time_to_agent_is_exported_to_the_millisecond(sessions, db_url):
    with sessions.begin() as s:
        c = create_campaign(s, "spring", channel="Local/{digits}@carrier", queue="agents")
        lead = _lead(c.id, 1, "done")
        s.add(lead)
        s.flush()
        # as the tracker computes it: a difference of two clock readings
        s.add(_attempt(1, lead, "pbx1#1", NOW, ring=1, answer=5, agent=5.123456, end=9,
                       disp="connected", tta=5.123456789 - 5.0))
        s.add(_attempt(2, lead, "pbx1#1", NOW, ring=1, answer=5, agent=7, end=9,
                       disp="connected", tta=2.0005))
    status, out, err = run_cli("report", "spring", "--db", db_url, "--attempts")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["time_to_agent"] for r in rows] == ["0.123", "2.001"]
    assert rows[0]["connected_at"] == "2026-11-26T12:00:05.123Z"  # the times: milliseconds too
    data = json.loads(run_cli("report", "spring", "--db", db_url, "--attempts", "--format", "json")[1])
    assert [d["time_to_agent"] for d in data] == [0.123, 2.001]


def test_attempts_export_streams_in_batches(known):
    out = io.StringIO()
    with known.begin() as s:
        n = reports.export_attempts(s, "spring", out, fmt="json", batch=2)
    assert n == 7 and len(json.loads(out.getvalue())) == 7


@pytest.mark.parametrize("text", ["yesterday", "24x", "-3x", "2026-13-01", ""])
def test_bad_since_is_one_line_naming_the_option(sqlite_url, text):
    status, out, err = run_cli("report", "spring", "--db", sqlite_url, "--since", text)
    # "-3x" looks like an option to argparse: a usage error (status 2), still naming --since.
    assert status == (2 if text.startswith("-") else 1) and out == ""
    assert err.startswith("dialer: ") and "--since" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv", [("--since", "-5h"), ("--since=-5h",), ("--since", "5h")])
def test_since_span_may_be_written_with_a_minus(known, db_url, argv):
    status, out, err = run_cli("report", "spring", "--db", db_url, *argv, "--format", "json")
    assert status == 0, err
    since = dt.datetime.fromisoformat(json.loads(out)["since"].rstrip("Z"))
    five_hours_ago = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=5)
    assert abs((since - five_hours_ago).total_seconds()) < 60


def test_since_forms():
    assert reports.parse_since("24h", NOW) == NOW - dt.timedelta(hours=24)
    assert reports.parse_since("7d", NOW) == NOW - dt.timedelta(days=7)
    assert reports.parse_since("90m", NOW) == NOW - dt.timedelta(minutes=90)
    assert reports.parse_since("2026-11-01", NOW) == dt.datetime(2026, 11, 1)
    assert reports.parse_since("2026-11-01T08:00+02:00", NOW) == dt.datetime(2026, 11, 1, 6)


def test_unknown_campaign_and_bad_combination(sqlite_url):
    status, out, err = run_cli("report", "nope", "--db", sqlite_url)
    assert status == 1 and "campaign 'nope'" in err and err.count("\n") == 1
    status, out, err = run_cli("report", "nope", "--db", sqlite_url, "--attempts", "--format", "table")
    assert status == 1 and err.startswith("dialer: --format table")


def test_report_as_a_real_subprocess(known, db_url):
    import subprocess
    import sys
    from pathlib import Path

    dialer = Path(sys.executable).parent / "dialer"
    proc = subprocess.run([str(dialer), "report", "spring", "--db", db_url, "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["leads"]["total"] == 10


def _keys(value, out):
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(k)
            _keys(v, out)
    elif isinstance(value, list):
        for v in value:
            _keys(v, out)
    return out


def test_readme_documents_every_field_of_the_json_report(known):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Report format"):readme.index("## Performance")]
    with known.begin() as s:
        r = reports.build_report(s, "spring", now=NOW)
    missing = sorted(k for k in _keys(r, set()) if f'"{k}"' not in section)
    assert missing == []
    for column in reports.ATTEMPT_COLUMNS:
        assert column in readme


def test_estimated_attempts_count_everywhere_but_the_timings(known):
    with known.begin() as s:
        # attempt 2 (connected, ring 10 s, agent after 1 s) ended while no engine followed it
        s.execute(sa.update(CallAttempt).where(CallAttempt.action_id == "a2")
                  .values(estimated="answered_at,connected_at"))
        r = reports.build_report(s, "spring", now=NOW)
        out = io.StringIO()
        reports.export_attempts(s, "spring", out)
    assert r["attempts"]["estimated"] == 1
    assert r["attempts"]["by_disposition"]["connected"]["count"] == 2
    assert r["abandon"]["rolling_30d"] == {"dropped": 1, "answered": 3, "rate": 0.3333}
    assert r["timings"]["ring_time"]["count"] == 3
    assert r["timings"]["time_to_agent"] == {"count": 1, "avg": 0.5, "p90": 0.5}
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["estimated"] for r in rows].count("answered_at,connected_at") == 1
    text = io.StringIO()
    reports.render_table(r, text)
    assert "1 with values no engine observed" in text.getvalue()
