"""Rules per region: resolution (the stricter wins), each lead's region, the
hopper's claim under region windows and the per-number cap, the CLI."""

import datetime as dt
import io
import json

import pytest
import sqlalchemy as sa

from dialer.compliance import rules
from dialer.leads import hopper, regions
from dialer.leads.calling_hours import CallingWindow
from dialer.campaigns import create_campaign
from dialer.cli import main
from dialer.leads.importer import import_leads
from dialer.leads.phones import PhoneNormalizer, lead_region, region_of_text
from dialer.models import CallAttempt, Lead, RegionRuleRow
from dialer.compliance.rules import RegionRule

T = dt.time
NY, CHICAGO = "America/New_York", "America/Chicago"
# A Wednesday, 01:30 UTC on Thursday: 20:30 in New York and Miami, 19:30 in Dallas.
EVENING = dt.datetime(2026, 11, 26, 1, 30)
# 02:30 UTC: 21:30 in New York, 20:30 in Dallas.
LATER = dt.datetime(2026, 11, 26, 2, 30)


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


# --- Resolution -------------------------------------------------------------------


def test_the_stricter_bound_wins_on_each_side():
    table = {
        "US": RegionRule("US", T(8), T(21)),
        "US-FL": RegionRule("US-FL", T(8), T(20), 3, "Fla."),
    }
    campaign = CallingWindow(T(9), T(21), frozenset({0, 1, 2, 3, 4}))
    got = regions.applied_rules(campaign, "US-FL", table)
    assert (got.window.start, got.window.end) == (T(9), T(20))
    assert (got.start_from, got.end_from) == ("campaign", "US-FL")
    assert got.window.days == campaign.days  # weekdays and holidays stay the campaign's
    assert (got.max_calls_24h, got.cap_from) == (3, "US-FL")
    # A campaign stricter than the region keeps its own bounds.
    narrow = CallingWindow(T(10), T(17))
    got = regions.applied_rules(narrow, "US-FL", table)
    assert (got.window.start, got.window.end, got.start_from, got.end_from) == (T(10), T(17), "campaign", "campaign")


def test_the_smallest_cap_of_every_region_named_applies_and_the_country_rule_too():
    table = {
        "US": RegionRule("US", T(8), T(21), 10),
        "US-FL": RegionRule("US-FL", T(8), T(20), 3),
        "US-GA": RegionRule("US-GA", T(9), T(21), 2),
    }
    wide = CallingWindow(T(8), T(21))
    got = regions.applied_rules(wide, "US-FL|US-GA", table)
    assert (got.window.start, got.window.end) == (T(9), T(20))
    assert (got.max_calls_24h, got.cap_from) == (2, "US-GA")
    got = regions.applied_rules(wide, "US-TX", table)  # no rule of its own: the country's
    assert (got.window.start, got.window.end, got.max_calls_24h, got.cap_from) == (T(8), T(21), 10, "US")
    got = regions.applied_rules(wide, None, table)
    assert got.window is wide and got.max_calls_24h is None


def test_bounds_that_leave_no_time_mean_never():
    table = {"US-XX": RegionRule("US-XX", T(20), T(21))}
    got = regions.applied_rules(CallingWindow(T(9), T(17)), "US-XX", table)
    assert got.window is None


def test_shipped_rules_cite_their_source_and_stay_within_the_federal_window():
    assert rules.REGION_RULES["US-FL"].start == T(8) and rules.REGION_RULES["US-FL"].end == T(20)
    assert rules.REGION_RULES["US-FL"].max_calls_24h == 3
    for rule in rules.REGION_RULES.values():
        assert rule.source
        if rule.region.startswith("US"):
            assert rules.EARLIEST_CALL <= rule.start < rule.end <= rules.LATEST_CALL


# --- A lead's region --------------------------------------------------------------


@pytest.mark.parametrize("text, region", [
    ("(305) 555-0100", "US-FL"), ("+1 512 555 0100", "US-TX"), ("212-555-0100", "US-NY"),
    ("+1 416 555 0100", "CA-ON"), ("+1 800 555 0100", "US"), ("+44 20 7123 4567", "GB"),
    ("+1 787 555 0100", "PR"),
])
def test_region_from_the_number(text, region):
    assert PhoneNormalizer().normalize(text).region == region


def test_the_shipped_area_code_table_is_what_phonenumbers_says():
    from dialer.leads import phones
    from dialer.leads.area_codes import AREA_CODE_REGIONS

    assert AREA_CODE_REGIONS == phones.derive_area_code_regions()
    # Every valid geographic US area code has its state.
    import phonenumbers

    for npa, region in AREA_CODE_REGIONS.items():
        number = phonenumbers.PhoneNumber(country_code=1, national_number=int(npa + "2345678"))
        if (phonenumbers.region_code_for_number(number) == "US" and phonenumbers.is_valid_number(number)
                and phonenumbers.number_type(number) in (0, 1, 2)):
            assert region.startswith("US-"), npa


def test_region_from_the_data_and_the_number():
    miami = PhoneNormalizer().normalize("305 555 0100")
    assert region_of_text("Florida", "US") == region_of_text("fl", "US") == region_of_text("US-FL", "US") == "US-FL"
    assert lead_region("FL", miami) == "US-FL"
    assert lead_region("GA", miami) == "US-FL|US-GA"   # both apply
    assert lead_region("Dade County", miami) == "US-FL"  # not a state: the number's
    assert lead_region(None, miami) == "US-FL"
    london = PhoneNormalizer().normalize("+44 20 7123 4567")
    assert lead_region("Greater London", london) == "GB"


def test_a_loaded_lead_gets_its_region(sessions, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("phone,state\n305 555 0100,FL\n512 555 0100,\n212 555 0100,Georgia\n")
    with sessions.begin() as s:
        create_campaign(s, "load")
        import_leads(s, "load", path)
    with sessions.begin() as s:
        got = dict(s.execute(sa.select(Lead.phone_e164, Lead.rules_region)).all())
    assert got == {"+13055550100": "US-FL", "+15125550100": "US-TX", "+12125550100": "US-GA|US-NY"}


# --- The claim --------------------------------------------------------------------


@pytest.fixture
def campaign(sessions):
    with sessions.begin() as s:
        c = create_campaign(s, "evening", max_attempts=10)
        c.state = "running"
    return c


def add(s, campaign, phone, zone, region, due):
    lead = Lead(campaign_id=campaign.id, phone_e164=phone, timezone=zone, rules_region=region,
                state="new", next_attempt_at=due, attempts=0, priority=0)
    s.add(lead)
    s.flush()
    return lead


def claim(sessions, campaign, now, limit=10):
    with sessions.begin() as s:
        c = s.merge(campaign)
        groups = hopper.campaign_timezones(s, c.id)
        return sorted(l.phone_e164 for l in hopper.claim_leads(
            s, c, engine_id="e1", now=now, limit=limit, timezones=groups))


def calls(s, campaign, phone, *ages_h, now=EVENING, refused=False):
    """Past attempts to ``phone``, started ``ages_h`` hours before ``now``."""
    other = s.scalar(sa.select(Lead.id).where(Lead.phone_e164 == phone))
    for age in ages_h:
        at = now - dt.timedelta(hours=age)
        i = f"{age}{'r' if refused else ''}"
        s.add(CallAttempt(lead_id=other, campaign_id=campaign.id, phone_e164=phone, attempt_no=1,
                          action_id=f"a-{phone}-{i}", channel_id=f"c-{phone}-{i}", engine_id="e0",
                          server="pbx", connection="pbx#1", state="ended", created_at=at,
                          ended_at=at + dt.timedelta(seconds=30), disposition="no_answer",
                          response_message="Originate failed" if refused else None))


def test_a_florida_lead_is_not_claimed_at_2030_local_a_new_york_or_texas_one_is(sessions, campaign):
    due = EVENING - dt.timedelta(hours=1)
    with sessions.begin() as s:
        add(s, campaign, "+13055550100", NY, "US-FL", due)
        add(s, campaign, "+12125550100", NY, "US-NY", due)
        add(s, campaign, "+15125550100", CHICAGO, "US-TX", due)
    assert claim(sessions, campaign, EVENING) == ["+12125550100", "+15125550100"]
    # An hour later: 21:30 in New York (closed for everyone), 20:30 in Texas.
    with sessions.begin() as s:
        add(s, campaign, "+15125550101", CHICAGO, "US-TX", due)
    assert claim(sessions, campaign, LATER) == ["+15125550101"]
    with sessions.begin() as s:
        florida = s.scalar(sa.select(Lead).where(Lead.phone_e164 == "+13055550100"))
        assert florida.state == "new" and florida.next_attempt_at == due
    # The next morning at 08:00 in Miami it is claimed.
    assert claim(sessions, campaign, dt.datetime(2026, 11, 26, 13, 0)) == ["+13055550100"]


def test_a_florida_number_is_not_called_a_fourth_time_in_24_hours(sessions, campaign):
    morning = dt.datetime(2026, 11, 25, 16, 0)  # 11:00 in Miami
    with sessions.begin() as s:
        other = create_campaign(s, "other")
        fl = add(s, campaign, "+13055550100", NY, "US-FL", morning)
        fl2 = add(s, campaign, "+13055550101", NY, "US-FL", morning)
        tx = add(s, campaign, "+15125550100", CHICAGO, "US-TX", morning)
        # Three calls in the last 24 h, one from another campaign; one 25 h ago.
        calls(s, other, fl.phone_e164, 2, 20, 23, 25, now=morning)
        # Two calls, and one Originate that Asterisk refused (no call placed).
        calls(s, campaign, fl2.phone_e164, 3, 4, now=morning)
        calls(s, campaign, fl2.phone_e164, 1, now=morning, refused=True)
        # Texas has no cap.
        calls(s, campaign, tx.phone_e164, 1, 2, 3, 4, 5, now=morning)
    assert claim(sessions, campaign, morning) == ["+13055550101", "+15125550100"]
    with sessions.begin() as s:
        capped = s.scalar(sa.select(Lead).where(Lead.phone_e164 == "+13055550100"))
        # Due again when the oldest of the three is 24 h old (23 h ago + 24 h).
        assert capped.state == "new"
        assert capped.next_attempt_at == morning + dt.timedelta(hours=1)
    assert claim(sessions, campaign, morning + dt.timedelta(minutes=59)) == []
    assert claim(sessions, campaign, morning + dt.timedelta(hours=1)) == ["+13055550100"]


def test_an_operators_rule_applies_at_the_next_claim(sessions, campaign):
    morning = dt.datetime(2026, 11, 25, 14, 30)  # 08:30 in Dallas
    with sessions.begin() as s:
        add(s, campaign, "+15125550100", CHICAGO, "US-TX", morning)
        regions.set_rule(s, "US-TX", ["window=09:00-21:00", "source=Tex. Bus. & Com. Code 301.051"])
    assert claim(sessions, campaign, morning) == []
    assert claim(sessions, campaign, morning + dt.timedelta(minutes=30)) == ["+15125550100"]


def test_leads_without_a_region_and_bare_zones_keep_the_campaign_rules(sessions, campaign):
    with sessions.begin() as s:
        add(s, campaign, "+13055550100", NY, None, EVENING)
    with sessions.begin() as s:
        c = s.merge(campaign)
        got = hopper.claim_leads(s, c, engine_id="e1", now=EVENING, limit=5, timezones=[NY])
    assert [l.phone_e164 for l in got] == ["+13055550100"]


# --- The CLI ----------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (("US-FL", "window=25:00-20:00"), "dialer: rules US-FL: window: '25:00' is not a time of day (HH:MM)\n"),
    (("US-FL", "window=20:00-08:00"), "dialer: rules US-FL: window: start 20:00 must be before end 08:00\n"),
    (("us-fl", "max_calls_24h=0"), "dialer: rules US-FL: max_calls_24h: '0' is not a whole number from 1 to 1000 (or none)\n"),
    (("US-FL", "calls=3"), "dialer: rules US-FL: 'calls=3': expected one of window=..., max_calls_24h=..., source=...\n"),
    (("Florida", "window=08:00-20:00"), "dialer: region 'Florida': not an ISO 3166 code (a country such as US, or a subdivision such as US-FL)\n"),
])
def test_bad_rules_are_refused_in_one_line_naming_the_field(sqlite_url, args, message):
    status, out, err = run_cli("rules", "set", *args, "--db", sqlite_url)
    assert (status, out, err) == (1, "", message)
    status, out, err = run_cli("rules", "show", "--format", "json", "--db", sqlite_url)
    assert status == 0
    assert [r["origin"] for r in json.loads(out)] == ["shipped"] * len(rules.REGION_RULES)


def test_rules_show_set_unset_and_what_applies_to_a_campaign(sqlite_url, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("phone,state\n305 555 0100,FL\n305 555 0101,FL\n512 555 0100,\n")
    assert run_cli("campaign", "create", "c1", "--calling-window", "09:00-21:00", "--db", sqlite_url)[0] == 0
    assert run_cli("leads", "load", str(path), "--campaign", "c1", "--db", sqlite_url)[0] == 0
    status, out, _ = run_cli("rules", "show", "--campaign", "c1", "--db", sqlite_url)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["REGION", "LEADS", "WINDOW", "WINDOW", "FROM", "MAX", "CALLS/24H", "CAP", "FROM"]
    assert lines[1].split() == ["US-FL", "2", "09:00-20:00", "start", "campaign,", "end", "US-FL", "3", "US-FL"]
    assert lines[2].split() == ["US-TX", "1", "09:00-21:00", "campaign", "none", "-"]
    status, out, _ = run_cli("rules", "set", "US-FL", "max_calls_24h=2", "--db", sqlite_url)
    assert (status, out) == (0, "US-FL: window = 08:00-20:00, max_calls_24h = 2\n")
    status, out, _ = run_cli("rules", "show", "--format", "json", "--db", sqlite_url)
    fl = next(r for r in json.loads(out) if r["region"] == "US-FL")
    assert fl == {"region": "US-FL", "window": "08:00-20:00", "max_calls_24h": 2,
                  "source": rules.REGION_RULES["US-FL"].source, "origin": "operator (replaces shipped)"}
    assert run_cli("rules", "unset", "US-FL", "--db", sqlite_url)[:2] == (0, "US-FL: operator rules removed\n")
    assert run_cli("rules", "unset", "US-FL", "--db", sqlite_url)[:2] == (1, "US-FL: no operator rules to remove\n")
    from dialer import db
    from dialer.models import AuditEntry

    engine = db.create_engine(sqlite_url)
    try:
        with db.session_factory(engine).begin() as s:
            audit = [(a.action, a.target, a.before["max_calls_24h"], a.after["max_calls_24h"])
                     for a in s.scalars(sa.select(AuditEntry).where(AuditEntry.action.like("rules.%"))
                                        .order_by(AuditEntry.id))]
    finally:
        engine.dispose()
    assert audit == [("rules.set", "US-FL", 3, 2), ("rules.unset", "US-FL", 2, 3)]


def test_the_migration_gives_existing_leads_their_region_from_the_number(tmp_path):
    from dialer import db

    engine = db.create_engine(f"sqlite:///{tmp_path}/old.db")
    try:
        db.upgrade(engine, "0008")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO campaigns (name, state, mode, dial_ratio, max_dial_level, abandon_target,"
                " channel, context, exten, priority, ring_timeout, hangup_after, calling_window_start,"
                " calling_window_end, calling_days, holidays, max_attempts, retry_delays, max_concurrent,"
                " created_at, updated_at) VALUES ('old', 'stopped', 'progressive', 1, 3, 0.03, 'PJSIP/{digits}',"
                " 'dialer', 's', 1, 25, 0, '08:00:00', '21:00:00', '[0]', '[]', 3, '{}', 10,"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
            for phone in ("+13055550100", "+18005550100", "+442071234567"):
                conn.exec_driver_sql(
                    "INSERT INTO leads (campaign_id, phone_e164, timezone, state, priority, attempts,"
                    f" next_attempt_at, created_at) VALUES (1, '{phone}', 'America/New_York', 'new', 0, 0,"
                    " '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
        db.upgrade(engine)
        with engine.begin() as conn:
            got = dict(conn.exec_driver_sql("SELECT phone_e164, rules_region FROM leads").all())
        assert got == {"+13055550100": "US-FL", "+18005550100": "US", "+442071234567": None}
        with db.session_factory(engine).begin() as s:
            assert s.scalars(sa.select(RegionRuleRow)).all() == []
    finally:
        engine.dispose()
