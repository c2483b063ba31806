"""Campaign settings (parsing, validation, defaults) and ``dialer campaign``."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer import campaigns
from dialer.leads.calling_hours import CallingWindow
from dialer.campaigns import SETTINGS, SettingError
from dialer.cli import main
from dialer.errors import UserError
from dialer.models import Campaign


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def show_json(db_url, name):
    status, out, err = run_cli("campaign", "show", name, "--format", "json", "--db", db_url)
    assert status == 0, err
    return json.loads(out)


# --- Parsing and validation (no database) --------------------------------------


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_default_round_trips_through_its_text_form(name):
    setting = SETTINGS[name]
    text = setting.format(setting.default)
    assert campaigns.parse_setting(name, text) == setting.check(setting.default)


@pytest.mark.parametrize(
    "name, text, value",
    [
        ("mode", "Predictive", "predictive"),
        ("dial_ratio", "1.5", 1.5),
        ("abandon_target", "2.5%", 0.025),
        ("abandon_target", "0.01", 0.01),
        ("ring_timeout", "30", 30),
        ("ring_timeout", "1m", 60),
        ("calling_window", "09:30-17:00", (dt.time(9, 30), dt.time(17, 0))),
        ("calling_days", "mon-fri", [0, 1, 2, 3, 4]),
        ("calling_days", "mon,wed,sat", [0, 2, 5]),
        ("calling_days", "fri-mon", [0, 4, 5, 6]),
        ("calling_days", "Monday, sun", [0, 6]),
        ("holidays", "2026-12-25, 2026-01-01", ["2026-01-01", "2026-12-25"]),
        ("holidays", "none", []),
        ("retry_delays", "busy=10m,no_answer=3600", {"no_answer": 3600, "busy": 600}),
        ("retry_delays", "dropped=3d", {"dropped": 259200}),
        ("retry_delays", "none", {}),
        ("queue", "none", None),
        ("caller_id", '"Acme" <15550001000>', '"Acme" <15550001000>'),
        ("channel", "Local/{national}@outbound-{region}", "Local/{national}@outbound-{region}"),
        ("max_concurrent", "250", 250),
        ("hangup_after", "15", 15),
        ("hangup_after", "20s", 20),
        ("hangup_after", "off", 0),
        ("hangup_after", "0", 0),
    ],
)
def test_setting_text_is_parsed_to_typed_values(name, text, value):
    assert campaigns.parse_setting(name, text) == value


@pytest.mark.parametrize(
    "name, text, fragment",
    [
        ("mode", "turbo", "not a dial mode"),
        ("dial_ratio", "lots", "not a number"),
        ("dial_ratio", "0", "between 0.1 and 10"),
        ("max_dial_level", "0.5", "between 1 and 20"),
        ("abandon_target", "5%", "at most 3%"),
        ("abandon_target", "3", "fraction (0.03) or a percentage"),
        ("abandon_target", "0%", "above 0"),
        ("channel", "PJSIP/carrier", "no phone placeholder"),
        ("channel", "PJSIP/{digits!r}@x", "plain field name"),
        ("channel", "PJSIP/{digits@x", "PJSIP/{digits@x"),
        ("channel", "PJSIP/{digits}\r\nAction: Hangup", "control character"),
        ("context", "from dialer", "not a dialplan name"),
        ("exten", "", "not a dialplan name"),
        ("priority", "0", "between 1 and"),
        ("queue", "sales team", "not a dialplan name"),
        ("caller_id", "Acme\n", "control character"),
        ("ring_timeout", "10", "at least 15 seconds"),
        ("ring_timeout", "14s", "at least 15 seconds"),
        ("ring_timeout", "600", "at most 300"),
        ("ring_timeout", "soon", "not a duration"),
        ("hangup_after", "10", "at least 15 seconds of ringing"),
        ("hangup_after", "600", "at most 300"),
        ("hangup_after", "later", "not a duration"),
        ("calling_window", "07:00-21:00", "outside the legal calling hours"),
        ("calling_window", "08:00-22:00", "outside the legal calling hours"),
        ("calling_window", "17:00-09:00", "must be before end"),
        ("calling_window", "08:00", "not a window"),
        ("calling_window", "0800-2100", "not a time of day"),
        ("calling_window", "08:00-25:00", "not a time of day"),
        ("calling_days", "funday", "not a day"),
        ("calling_days", "", "no day given"),
        ("holidays", "2026-13-01", "not a date"),
        ("max_attempts", "0", "between 1 and 100"),
        ("max_attempts", "2.5", "not a whole number"),
        ("retry_delays", "busy", "disposition=seconds"),
        ("retry_delays", "answered=5", "not a disposition"),
        ("retry_delays", "connected=5", "not a disposition that may be retried"),
        ("retry_delays", "dropped=3600", "within 72 h"),
        ("retry_delays", "busy=1,busy=2", "given twice"),
        ("max_concurrent", "0", "between 1 and 100000"),
    ],
)
def test_bad_setting_value_is_refused_naming_the_setting(name, text, fragment):
    with pytest.raises(SettingError) as info:
        campaigns.parse_setting(name, text)
    message = str(info.value)
    assert message.startswith(f"setting {name}: ")
    assert fragment in message
    assert "\n" not in message


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown setting 'ring_time'.*ring_timeout"):
        campaigns.parse_assignments(["ring_time=30"])


def test_assignment_without_equals_sign_is_refused():
    with pytest.raises(UserError, match="expected setting=value"):
        campaigns.parse_assignments(["ring_timeout"])


def test_render_channel_fills_phone_and_lead_placeholders():
    rendered = campaigns.render_channel(
        "PJSIP/{digits}@carrier-{region}/{e164}/{national}", "+14155550100", {"region": "CA"}
    )
    assert rendered == "PJSIP/14155550100@carrier-CA/+14155550100/4155550100"


def test_render_channel_refuses_missing_field_and_injection():
    with pytest.raises(ValueError, match="no value for {plan}"):
        campaigns.render_channel("PJSIP/{digits}@{plan}", "+14155550100", {})
    with pytest.raises(ValueError, match="control character"):
        campaigns.render_channel("PJSIP/{digits}@{plan}", "+14155550100", {"plan": "x\r\nAction: Logoff"})


# --- Stored campaigns -----------------------------------------------------------


def test_create_campaign_stores_defaults_as_typed_columns(sessions):
    with sessions.begin() as s:
        campaigns.create_campaign(s, "spring")
    with sessions.begin() as s:
        c = campaigns.get_campaign(s, "spring")
        assert c.state == "stopped"
        assert c.mode == "progressive"
        assert c.ring_timeout == 25
        assert c.abandon_target == pytest.approx(0.03)
        assert (c.calling_window_start, c.calling_window_end) == (dt.time(8), dt.time(21))
        assert c.calling_days == [0, 1, 2, 3, 4, 5, 6]
        assert c.holidays == []
        assert c.retry_delays["dropped"] == 72 * 3600
        assert "connected" not in c.retry_delays
        assert c.created_at <= dt.datetime.now(dt.UTC).replace(tzinfo=None)
        window = campaigns.calling_window(c)
        assert window == CallingWindow(dt.time(8), dt.time(21))


def test_create_campaign_accepts_typed_and_text_values(sessions):
    with sessions.begin() as s:
        campaigns.create_campaign(
            s, "summer", ring_timeout="45s", calling_days={0, 2, 4}, holidays=[dt.date(2026, 7, 4)],
            mode="unattended", calling_window=(dt.time(9), dt.time(20)),
        )
    with sessions.begin() as s:
        c = campaigns.get_campaign(s, "summer")
        assert (c.ring_timeout, c.calling_days, c.holidays, c.mode) == (45, [0, 2, 4], ["2026-07-04"], "unattended")
        window = campaigns.calling_window(c)
        assert window.holidays == frozenset({dt.date(2026, 7, 4)})
        assert window.days == frozenset({0, 2, 4})


def test_duplicate_and_badly_named_campaigns_are_refused(sessions):
    with sessions.begin() as s:
        campaigns.create_campaign(s, "spring")
    with pytest.raises(UserError, match="campaign 'spring' already exists"):
        with sessions.begin() as s:
            campaigns.create_campaign(s, "spring")
    with pytest.raises(UserError, match="campaign name 'has space'"):
        with sessions.begin() as s:
            campaigns.create_campaign(s, "has space")


def test_set_is_all_or_nothing(sessions):
    with sessions.begin() as s:
        campaigns.create_campaign(s, "spring")
    with pytest.raises(SettingError, match="setting ring_timeout"):
        with sessions.begin() as s:
            campaigns.set_campaign_settings(s, "spring", max_attempts=5, ring_timeout=5)
    with sessions.begin() as s:
        c = campaigns.get_campaign(s, "spring")
        assert (c.max_attempts, c.ring_timeout) == (3, 25)


@pytest.mark.parametrize(
    "created, change, message",
    [
        (dict(dial_ratio=2.0, max_dial_level=2.0), dict(dial_ratio=2.5),
         "setting dial_ratio: 2.5 is above max_dial_level 2"),
        (dict(ring_timeout=30, hangup_after=20), dict(ring_timeout=20),
         "setting hangup_after: 20 s is not below ring_timeout 20 s"),
    ],
)
def test_settings_that_contradict_each_other_are_refused(sessions, created, change, message):
    with sessions.begin() as s:
        campaigns.create_campaign(s, "spring", **created)
    with pytest.raises(SettingError, match=message):
        with sessions.begin() as s:
            campaigns.set_campaign_settings(s, "spring", **change)
    with sessions.begin() as s:
        c = campaigns.get_campaign(s, "spring")
        assert {k: getattr(c, k) for k in created} == created


@pytest.mark.parametrize("column, value", [("ring_timeout", 10), ("hangup_after", 5)])
def test_database_refuses_an_unchecked_ring_setting(sessions, column, value):
    # The CHECK constraint backs the validation for writers that bypass it.
    with sessions.begin() as s:
        campaigns.create_campaign(s, "spring")
    with pytest.raises(sa.exc.IntegrityError):
        with sessions.begin() as s:
            s.execute(sa.update(Campaign).values({column: value}))


def test_get_unknown_campaign_is_a_user_error(sessions):
    with sessions.begin() as s:
        with pytest.raises(UserError, match="campaign 'nope': no such campaign"):
            campaigns.get_campaign(s, "nope")


# --- Command line -----------------------------------------------------------------


def test_cli_create_set_show_list(db_url):
    status, out, err = run_cli(
        "campaign", "create", "spring", "--db", db_url, "--mode", "predictive", "--ring-timeout", "30",
        "--calling-days", "mon-fri", "--queue", "sales", "--caller-id", '"Acme" <15550001000>',
        "--abandon-target", "2%", "--channel", "PJSIP/{e164}@trunk",
    )
    assert (status, err) == (0, "")
    assert out == "created campaign 'spring' (stopped)\n"

    status, out, err = run_cli(
        "campaign", "set", "spring", "max_attempts=5", "retry_delays=busy=300,no_answer=2h", "--db", db_url
    )
    assert status == 0, err
    assert "spring: max_attempts = 5\n" in out
    assert "spring: retry_delays = no_answer=7200,busy=300\n" in out

    info = show_json(db_url, "spring")
    assert info["state"] == "stopped"
    assert info["settings"] == {
        "mode": "predictive", "dial_ratio": "1", "max_dial_level": "3", "abandon_target": "2%",
        "channel": "PJSIP/{e164}@trunk", "context": "dialer", "exten": "s", "priority": "1",
        "queue": "sales", "caller_id": '"Acme" <15550001000>', "ring_timeout": "30",
        "hangup_after": "off", "calling_window": "08:00-21:00", "calling_days": "mon-fri", "holidays": "none",
        "max_attempts": "5", "retry_delays": "no_answer=7200,busy=300", "max_concurrent": "10",
    }
    assert info["leads"] == {"total": 0}

    status, out, err = run_cli("campaign", "show", "spring", "--db", db_url)
    assert status == 0 and out.startswith("campaign spring: stopped\n")
    assert "  ring_timeout    30\n" in out

    run_cli("campaign", "create", "autumn", "--db", db_url)
    status, out, err = run_cli("campaign", "list", "--db", db_url)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "MODE", "LEADS", "WAITING"]
    assert [line.split()[0] for line in lines[1:]] == ["autumn", "spring"]
    status, out, err = run_cli("campaign", "list", "--format", "json", "--db", db_url)
    assert [c["name"] for c in json.loads(out)] == ["autumn", "spring"]
    status, out, err = run_cli("campaign", "list", "--format", "csv", "--db", db_url)
    assert out.splitlines() == ["name,state,mode,leads,waiting", "autumn,stopped,progressive,0,0",
                                "spring,stopped,predictive,0,0"]


def test_campaign_show_formats(sqlite_url):
    run_cli("campaign", "create", "spring", "--ring-timeout", "30", "--db", sqlite_url)
    status, table, err = run_cli("campaign", "show", "spring", "--format", "table", "--db", sqlite_url)
    assert status == 0 and table == run_cli("campaign", "show", "spring", "--db", sqlite_url)[1]
    status, out, err = run_cli("campaign", "show", "spring", "--format", "csv", "--db", sqlite_url)
    rows = dict(list(csv.reader(io.StringIO(out)))[1:])
    assert rows["name"] == "spring" and rows["ring_timeout"] == "30" and rows["leads_total"] == "0"
    info = json.loads(run_cli("campaign", "show", "spring", "--format", "json", "--db", sqlite_url)[1])
    assert set(rows) == {"name", "state", "created_at", "updated_at", *info["settings"],
                         *(f"leads_{k}" for k in info["leads"])}
    # one name for the default everywhere: 'text' is no format
    status, out, err = run_cli("campaign", "show", "spring", "--format", "text", "--db", sqlite_url)
    assert status == 2 and "invalid choice: 'text'" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["campaign", "create", "c", "--ring-timeout", "10"],
         "dialer: setting ring_timeout: must be at least 15 seconds, not 10\n"),
        (["campaign", "create", "c", "--mode", "turbo"],
         "dialer: setting mode: 'turbo' is not a dial mode (progressive, predictive, unattended)\n"),
        (["campaign", "set", "nope", "max_attempts=2"],
         "dialer: campaign 'nope': no such campaign (see 'dialer campaign list')\n"),
        (["campaign", "show", "nope"],
         "dialer: campaign 'nope': no such campaign (see 'dialer campaign list')\n"),
        (["campaign", "set", "spring", "calling_window=6-9"],
         "dialer: setting calling_window: '6' is not a time of day (HH:MM)\n"),
        (["campaign", "set", "spring", "bogus=1"], None),
        (["campaign", "create", "c", "--no-such-flag", "1"], None),
    ],
)
def test_cli_errors_are_one_line(sqlite_url, argv, message):
    run_cli("campaign", "create", "spring", "--db", sqlite_url)
    status, out, err = run_cli(*argv, "--db", sqlite_url)
    assert status != 0 and out == ""
    assert err.startswith("dialer: ") and err.count("\n") == 1
    if message is not None:
        assert err == message
    # Nothing was created or changed by the refused command.
    names = [c["name"] for c in json.loads(run_cli("campaign", "list", "--format", "json", "--db", sqlite_url)[1])]
    assert names == ["spring"]


def test_cli_refuses_a_database_that_was_never_migrated(tmp_path):
    status, out, err = run_cli("campaign", "list", "--db", f"sqlite:///{tmp_path / 'fresh.db'}")
    assert status == 1
    assert "no dialer schema; run 'dialer db upgrade' first" in err


def test_campaign_commands_as_subprocess(tmp_path):
    dialer = str(Path(sys.executable).parent / "dialer")
    db = f"sqlite:///{tmp_path / 'd.db'}"
    for argv in (["db", "upgrade"], ["campaign", "create", "spring", "--ring-timeout", "20"]):
        proc = subprocess.run([dialer, *argv, "--db", db], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([dialer, "campaign", "set", "spring", "ring_timeout=3", "--db", db],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == "dialer: setting ring_timeout: must be at least 15 seconds, not 3\n"
    assert "Traceback" not in proc.stderr
