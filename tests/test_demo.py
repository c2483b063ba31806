"""``dialer demo`` end to end in-process: the simulated Asterisk, the engine and the report."""

import datetime as dt
import io
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
import trio.testing

from dialer import db
from dialer.campaigns import create_campaign
from dialer.cli import main
from dialer.demo import SAMPLE_LEADS, demo_epoch, run_demo
from dialer.models import Lead, SupervisorCommand

SAMPLE_ROWS = sum(1 for _ in SAMPLE_LEADS.open(encoding="utf-8")) - 1


def _utc(*args):
    return dt.datetime(*args, tzinfo=dt.UTC)


def _campaign():
    # An unsaved campaign with default settings (08:00-21:00, every day).
    from sqlalchemy.orm import Session

    with Session(sa.create_engine("sqlite://")) as s:
        from dialer.models import Base

        Base.metadata.create_all(s.get_bind())
        return create_campaign(s, "x", channel="Local/{digits}@carrier", queue="agents")


ZONES = ["America/New_York", "America/Los_Angeles", "Pacific/Honolulu", "America/Anchorage"]


@pytest.mark.parametrize("now, shifted", [
    (_utc(2026, 11, 26, 20, 0), False),   # 15:00 New York, 10:00 Honolulu
    (_utc(2026, 11, 26, 18, 30), False),  # 08:30 Honolulu
    (_utc(2026, 11, 26, 17, 59), True),   # 07:59 Honolulu
    (_utc(2026, 11, 26, 3, 0), True),     # 22:00 New York
    (_utc(2026, 11, 26, 1, 30), True),    # 20:30 New York: closes within the hour
    (_utc(2026, 7, 1, 12, 0), True),      # 08:00 New York (EDT) but 02:00 Honolulu
])
def test_calling_hours_decide_the_engine_epoch(now, shifted):
    epoch = demo_epoch(now, ZONES, _campaign())
    if not shifted:
        assert epoch is None
    else:
        assert epoch == _utc(now.year, now.month, now.day, 19, 0).timestamp()


async def _demo(tmp_path, when):
    out = io.StringIO()
    with trio.fail_after(36000):
        result = await run_demo(tmp_path, speed=20, out=out, db_thread=False, now=lambda: when.timestamp())
    return result, out.getvalue()


async def test_demo_at_night_shifts_the_clock_and_reports_every_lead(clock, tmp_path):
    night = _utc(2026, 11, 26, 4, 0)  # 23:00 in New York, 18:00 in Honolulu
    result, out = await _demo(tmp_path, night)
    assert result.shifted_epoch == _utc(2026, 11, 26, 19, 0).timestamp()
    assert "the engine clock starts at 2026-11-26 19:00 UTC" in out
    assert "dialer pause demo  -> paused" in out and "dialer resume demo -> running" in out
    assert out.index("-> paused") < out.index("-> running") < out.index(f"{SAMPLE_ROWS}/{SAMPLE_ROWS} calls ended")
    # The last progress line is the campaign's end, whenever the last call ended.
    ended = [line for line in out.splitlines() if " calls ended (" in line]
    assert ended[-1] == f"  {SAMPLE_ROWS}/{SAMPLE_ROWS} calls ended (done, 0 in flight)", ended
    r = result.report
    assert result.leads == SAMPLE_ROWS == 200
    assert r["leads"]["total"] == SAMPLE_ROWS
    assert r["leads"]["done"] + r["leads"]["exhausted"] == SAMPLE_ROWS
    assert r["attempts"]["total"] == r["attempts"]["ended"] == SAMPLE_ROWS
    assert sum(v["count"] for v in r["attempts"]["by_disposition"].values()) == SAMPLE_ROWS
    assert r["campaign"]["state"] == "done"
    # The sim's last-digit table: 4 busy, 5 congestion, 6 no answer, 8 invalid.
    engine = db.create_engine(f"sqlite:///{tmp_path / 'dialer.db'}")
    try:
        with db.session_factory(engine).begin() as s:
            digits = {}
            for phone, disposition in s.execute(sa.select(Lead.phone_e164, Lead.last_disposition)):
                digits.setdefault(phone[-1], set()).add(disposition)
            commands = [c for (c,) in s.execute(sa.select(SupervisorCommand.command).order_by(SupervisorCommand.id))]
    finally:
        engine.dispose()
    assert digits["4"] == {"busy"} and digits["5"] == {"congestion"}
    assert digits["6"] == {"no_answer"} and digits["8"] == {"invalid_number"}
    assert commands == ["start", "pause", "resume"]
    # Every call happened on the shifted clock, inside the window.
    assert all(h["hour"].startswith("2026-11-26T19:") for h in r["hours"])


async def test_demo_in_the_afternoon_uses_the_real_clock(clock, tmp_path):
    afternoon = _utc(2026, 11, 26, 20, 0)
    result, out = await _demo(tmp_path, afternoon)
    assert result.shifted_epoch is None and "engine clock starts" not in out
    assert result.report["attempts"]["ended"] == SAMPLE_ROWS


def test_demo_dir_refuses_a_used_directory_and_a_missing_lead_file(tmp_path):
    (tmp_path / "dialer.db").write_text("")
    out, err = io.StringIO(), io.StringIO()
    assert main(["demo", "--dir", str(tmp_path)], out, err) == 1
    assert err.getvalue().startswith("dialer: --dir ") and err.getvalue().count("\n") == 1
    err = io.StringIO()
    assert main(["demo", "--leads", str(tmp_path / "none.csv")], out, err) == 1
    assert err.getvalue().startswith("dialer: --leads ")
    err = io.StringIO()
    assert main(["demo", "--speed", "fast"], out, err) == 1
    assert err.getvalue().startswith("dialer: --speed ")


def test_demo_command_as_a_new_user_runs_it(tmp_path):
    """The real command, sped up: exit 0, the report's total, the temporary directory gone."""
    dialer = Path(sys.executable).parent / "dialer"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.run([str(dialer), "demo", "--speed", "200"], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp)})
    assert proc.returncode == 0, proc.stderr
    assert f"{SAMPLE_ROWS}/{SAMPLE_ROWS} calls ended (done" in proc.stdout
    assert f"  total ended       {SAMPLE_ROWS}  100.0%" in proc.stdout
    assert list(tmp.iterdir()) == [] and not (tmp_path / "dialer.db").exists()
