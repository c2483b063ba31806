"""The do-not-call list: ``dialer dnc add|load|check`` and :mod:`dialer.leads.dnc`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer import campaigns
from dialer.leads import dnc
from dialer.cli import main
from dialer.errors import UserError
from dialer.leads.importer import LeadFileError, import_leads
from dialer.models import DncNumber, Lead

SAMPLE = Path(__file__).resolve().parents[1] / "sample_leads.csv"


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def listed(sessions) -> set[str]:
    with sessions.begin() as s:
        return set(s.scalars(sa.select(DncNumber.phone_e164)))


def test_add_normalises_and_counts_new_numbers(sessions):
    with sessions.begin() as s:
        assert dnc.add_dnc(s, ["(415) 555-0100", "+1 212 555 0101"], source="request 17") == 2
    with sessions.begin() as s:
        assert dnc.add_dnc(s, ["415.555.0100", "14155550100", "2025550102"]) == 1
    assert listed(sessions) == {"+14155550100", "+12125550101", "+12025550102"}
    with sessions.begin() as s:
        assert dnc.is_dnc(s, "415-555-0100")
        assert dnc.is_dnc(s, "+12125550101")
        assert not dnc.is_dnc(s, "(415) 555-0199")
        row = s.get(DncNumber, "+12125550101")
        assert row.source == "request 17" and row.added_at is not None


def test_add_refuses_an_invalid_number_before_adding_any(sessions):
    with pytest.raises(UserError, match="'12345': not a valid phone number"):
        with sessions.begin() as s:
            dnc.add_dnc(s, ["4155550100", "12345"])
    assert listed(sessions) == set()


def test_listing_scrubs_waiting_and_leased_leads_in_every_campaign(sessions):
    with sessions.begin() as s:
        for name in ("spring", "autumn"):
            campaigns.create_campaign(s, name)
            import_leads(s, name, SAMPLE)
    with sessions.begin() as s:
        target = s.scalars(sa.select(Lead.phone_e164).order_by(Lead.id).limit(3)).all()
        # One lead leased, one being dialed: only the leased one is scrubbed.
        s.execute(sa.update(Lead).where(Lead.phone_e164 == target[1])
                  .values(state="claimed", next_attempt_at=None, lease_owner="e1"))
        s.execute(sa.update(Lead).where(Lead.phone_e164 == target[2])
                  .values(state="dialing", next_attempt_at=None, lease_owner="e1"))
    with sessions.begin() as s:
        dnc.add_dnc(s, target)
    with sessions.begin() as s:
        states = {(p, st) for p, st in s.execute(
            sa.select(Lead.phone_e164, Lead.state).where(Lead.phone_e164.in_(target)))}
        assert states == {(target[0], "dnc"), (target[1], "dnc"), (target[2], "dialing")}
        assert s.scalar(sa.select(sa.func.count()).where(Lead.state == "dnc", Lead.lease_owner.is_not(None))) == 0
        assert s.scalar(sa.select(sa.func.count()).select_from(Lead).where(Lead.state == "new")) == 2 * 197
        # The hopper's clause keeps even the lead being dialed out of a new claim.
        dialable = s.scalars(sa.select(Lead.phone_e164).where(dnc.not_on_dnc_list())).all()
        assert set(target).isdisjoint(dialable) and len(dialable) == 2 * 197


def test_load_plain_list_with_comments_and_rejects(sessions, tmp_path):
    path = tmp_path / "dnc.txt"
    path.write_bytes(b"# requests of May\r\n(415) 555-0100\r\n\r\nnot a number\r\n212-555-0101\r\n4155550100\r\n")
    with sessions.begin() as s:
        result = dnc.load_dnc(s, path, rejects=tmp_path / "r.csv")
    assert (result.rows, result.added, result.already, result.invalid) == (4, 2, 1, 1)
    assert listed(sessions) == {"+14155550100", "+12125550101"}
    with open(tmp_path / "r.csv", newline="") as f:
        assert list(csv.reader(f)) == [
            ["line", "reason", "phone"],
            ["4", "phone: 'not a number': not a phone number (The string supplied did not seem to be a phone number)",
             "not a number"],
        ]
    with sessions.begin() as s:
        assert s.get(DncNumber, "+14155550100").source == str(path)


def test_load_csv_with_phone_column(sessions, tmp_path):
    path = tmp_path / "dnc.csv"
    path.write_text("name,Phone\nAnn,+1 415 555 0100\nBob,\n")
    with sessions.begin() as s:
        result = dnc.load_dnc(s, path, source="state list")
    assert (result.added, result.invalid) == (1, 1)
    assert listed(sessions) == {"+14155550100"}


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"\x00\x01binary", "binary data"),
        (b"name,email\nAnn,a@example.com\n", "line 1: no 'phone' column"),
    ],
)
def test_load_refuses_files_that_are_not_number_lists(sessions, tmp_path, content, message):
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    with pytest.raises(LeadFileError, match=message):
        with sessions.begin() as s:
            dnc.load_dnc(s, path)
    assert listed(sessions) == set()


def test_cli_add_check_load(db_url, tmp_path):
    status, out, err = run_cli("dnc", "add", "(415) 555-0100", "415-555-0100", "2125550101", "--db", db_url)
    assert (status, out, err) == (0, "2 added to the do-not-call list\n", "")
    status, out, err = run_cli("dnc", "add", "2125550101", "--db", db_url)
    assert (status, out) == (0, "0 added to the do-not-call list, 1 already listed\n")
    assert run_cli("dnc", "check", "212.555.0101", "--db", db_url) == (
        0, "+12125550101: on the do-not-call list\n", "")
    assert run_cli("dnc", "check", "2125550109", "--db", db_url)[:2] == (
        1, "+12125550109: not on the do-not-call list\n")
    path = tmp_path / "more.txt"
    path.write_text("3125550102\n3125550103\n")
    status, out, err = run_cli("dnc", "load", str(path), "--db", db_url)
    assert status == 0, err
    assert out == f"{path}: 2 numbers added to the do-not-call list, 0 already listed, 0 invalid; 0 leads taken out of the hopper\n"


def test_cli_add_invalid_number_is_one_line(sqlite_url):
    status, out, err = run_cli("dnc", "add", "555", "--db", sqlite_url)
    assert status == 1 and out == ""
    assert err == "dialer: '555': not a valid phone number\n"
