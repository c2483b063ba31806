"""Lead import: ``dialer leads load`` and :func:`dialer.leads.importer.import_leads`."""

from __future__ import annotations

import csv
import re
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer import campaigns
from dialer.leads import dnc
from dialer.cli import main
from dialer.errors import UserError
from dialer.leads.importer import LeadFileError, import_leads
from dialer.models import Lead

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_leads.csv"
HEADER = "phone,first_name,last_name,timezone,state,postal_code,priority,account_id\n"


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def read_rejects(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


def leads(sessions, campaign="spring") -> list[Lead]:
    with sessions.begin() as s:
        c = campaigns.get_campaign(s, campaign)
        return list(s.scalars(sa.select(Lead).where(Lead.campaign_id == c.id).order_by(Lead.source_line)))


@pytest.fixture
def spring(sessions):
    with sessions.begin() as s:
        campaigns.create_campaign(s, "spring")
    return "spring"


def load(sessions, path, rejects=None, campaign="spring", **kw):
    with sessions.begin() as s:
        return import_leads(s, campaign, path, rejects=rejects, **kw)


# --- The sample file ------------------------------------------------------------------


def test_sample_leads_load_completely(sessions, spring, tmp_path):
    result = load(sessions, SAMPLE, rejects=tmp_path / "rejects.csv")
    assert (result.rows, result.loaded, result.rejected) == (200, 200, 0)
    assert not (tmp_path / "rejects.csv").exists()
    rows = leads(sessions)
    assert len(rows) == 200
    # Every last digit 0-9 equally often, so the simulated PBX gives every outcome.
    last_digits = [r.phone_e164[-1] for r in rows]
    assert all(last_digits.count(str(d)) == 20 for d in range(10))
    zones = {r.timezone for r in rows}
    assert {"America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
            "America/Anchorage", "Pacific/Honolulu"} <= zones
    for r in rows:
        assert r.phone_e164.startswith("+1") and len(r.phone_e164) == 12
        assert r.state == "new" and r.attempts == 0 and r.next_attempt_at == r.created_at
        assert set(r.custom) == {"account_id", "plan"}
        assert r.source_file == str(SAMPLE)


def test_sample_rows_without_timezone_get_it_from_the_number(sessions, spring):
    load(sessions, SAMPLE)
    with open(SAMPLE, newline="") as f:
        blank = {i + 2: row for i, row in enumerate(csv.DictReader(f)) if not row["timezone"]}
    assert len(blank) > 20
    by_line = {r.source_line: r for r in leads(sessions)}
    for line, row in blank.items():
        expected = {"IL": "America/Chicago", "NY": "America/New_York", "CA": "America/Los_Angeles"}.get(row["state"])
        if expected:
            assert by_line[line].timezone == expected


def test_loading_again_adds_nothing(sessions, spring, tmp_path):
    load(sessions, SAMPLE)
    before = [(r.id, r.phone_e164) for r in leads(sessions)]
    result = load(sessions, SAMPLE, rejects=tmp_path / "again.csv")
    assert (result.loaded, result.duplicate, result.invalid, result.dnc) == (0, 200, 0, 0)
    assert [(r.id, r.phone_e164) for r in leads(sessions)] == before
    rejects = read_rejects(tmp_path / "again.csv")
    assert len(rejects) == 200
    assert rejects[0]["line"] == "2"
    assert "is already in campaign 'spring' (line 2 of" in rejects[0]["reason"]


def test_same_numbers_may_be_in_two_campaigns(sessions, spring):
    with sessions.begin() as s:
        campaigns.create_campaign(s, "autumn")
    load(sessions, SAMPLE)
    assert load(sessions, SAMPLE, campaign="autumn").loaded == 200


# --- Every rejection reason ---------------------------------------------------------


BAD_FILE = (
    HEADER
    + "(415) 555-0100,Ann,Lee,,CA,94110,1,A1\n"                   # 2 good
    + ",Bob,Ray,,CA,94110,0,A2\n"                                 # 3 missing phone
    + "12345,Cy,Ng,,CA,94110,0,A3\n"                              # 4 invalid phone
    + "call me maybe,Di,Ox,,CA,94110,0,A4\n"                      # 5 not a number
    + "(415) 555-0101,Ed,Po,Mars/Olympus_Mons,CA,94110,0,A5\n"    # 6 unknown zone
    + "(415) 555-0102,F\x07y,Qi,,CA,94110,0,A6\n"                 # 7 control character
    + "415-555-0100,Gus,Ro,,CA,94110,0,A7\n"                      # 8 duplicate of line 2
    + "(415) 555-0104,Hal,Su,,CA,94110,high,A8\n"                 # 9 bad priority
    + "(415) 555-0105,Ida,Tu,,CA\n"                               # 10 too few fields
    + "(415) 555-0106,Jo,Vu,,CA,94110,0,A10,extra\n"              # 11 too many fields
    + "(212) 555-0107,Kim,Wu,America/New_York,NY,10001,0,A11\n"   # 12 on the DNC list
    + "(212) 555-0108,Lu,Xi,,NY,10001,0,A12\n"                    # 13 already in the campaign
    + "(212) 555-0109,Mo,\"Multi\nLine\",,NY,10001,0,A13\n"       # 14-15 newline in a field
    + "+44 20 7946 0018,Ned,Yo,,LDN,SW1,0,A14\n"                  # 16 good, UK number
    + "+1 415 555 0110 ext. 12,Ola,Za,,CA,94110,0,A15\n"         # 17 extension
    + "(415) 555-0111,Pia,Ab,,CA,94110,99999999,A16\n"            # 18 priority out of range
)


def test_every_bad_row_is_rejected_with_line_and_reason(sessions, spring, tmp_path):
    with sessions.begin() as s:
        dnc.add_dnc(s, ["212-555-0107"])
    write(tmp_path / "earlier.csv", HEADER + "2125550108,Lu,Xi,,NY,10001,0,A12\n")
    load(sessions, tmp_path / "earlier.csv")
    path = write(tmp_path / "bad.csv", BAD_FILE.replace("F\x07y", "F\x07y"))
    # A byte that is not UTF-8, on its own row.
    path.write_bytes(path.read_bytes() + b"(415) 555-0112,R\xe9my,Cd,,CA,94110,0,A17\n")

    result = load(sessions, path, rejects=tmp_path / "rejects.csv")
    rejects = {int(r["line"]): r["reason"] for r in read_rejects(tmp_path / "rejects.csv")}
    assert rejects == {
        3: "phone: no phone number",
        4: "phone: '12345': not a valid phone number",
        5: "phone: 'call me maybe': not a phone number (The string supplied did not seem to be a phone number)",
        6: "timezone: unknown time zone 'Mars/Olympus_Mons'",
        7: "first_name: contains control character '\\x07'",
        8: "duplicate: same number +14155550100 as line 2",
        9: "priority: 'high' is not a whole number between -1000000 and 1000000",
        10: "fields: 5 fields, the header has 8",
        11: "fields: 9 fields, the header has 8",
        12: "dnc: +12125550107 is on the do-not-call list",
        13: f"duplicate: +12125550108 is already in campaign 'spring' (line 2 of {tmp_path / 'earlier.csv'})",
        14: "last_name: contains control character '\\n'",
        17: "phone: '+1 415 555 0110 ext. 12': has an extension; give the number only",
        18: "priority: '99999999' is not a whole number between -1000000 and 1000000",
        19: "first_name: not valid UTF-8 text",
    }
    assert (result.rows, result.loaded, result.invalid, result.duplicate, result.dnc) == (17, 2, 12, 2, 1)
    assert result.rejected == 15
    loaded = {r.phone_e164: r for r in leads(sessions)}
    assert set(loaded) == {"+14155550100", "+442079460018", "+12125550108"}
    assert loaded["+442079460018"].timezone == "Europe/London"
    assert loaded["+14155550100"].priority == 1
    assert loaded["+14155550100"].custom == {"account_id": "A1"}
    # The rejects file keeps the row as read, for fixing and loading again.
    with open(tmp_path / "rejects.csv", newline="", encoding="utf-8", errors="surrogateescape") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["line", "reason", "phone", "first_name", "last_name", "timezone", "state",
                       "postal_code", "priority", "account_id"]
    assert rows[1][2:] == ["", "Bob", "Ray", "", "CA", "94110", "0", "A2"]
    # The undecodable byte is written back as it was read.
    assert rows[-1][3] == "R\udce9my"
    assert b",R\xe9my," in (tmp_path / "rejects.csv").read_bytes()


def test_summary_counts_in_cli_output(sqlite_url, tmp_path, monkeypatch):
    # The rejects file goes to the current directory (as the README says), and
    # the summary names it in full.
    (tmp_path / "data").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    run_cli("campaign", "create", "spring", "--db", sqlite_url)
    path = write(tmp_path / "data" / "few.csv",
                 HEADER + "4155550100,A,B,,CA,1,0,x\n4155550100,A,B,,CA,1,0,x\nnope,A,B,,CA,1,0,x\n")
    status, out, err = run_cli("leads", "load", str(path), "--campaign", "spring", "--db", sqlite_url)
    assert (status, err) == (0, "")
    assert out.startswith(
        f"{path}: 1 loaded, 2 rejected (1 invalid, 1 duplicate, 0 do-not-call) of 3 rows into campaign 'spring' in "
    )
    rejects = tmp_path / "work" / "few.csv.rejects.csv"
    assert out.rstrip().endswith(f"; rejected rows in {rejects}")
    assert len(read_rejects(rejects)) == 2
    # --rejects names it, relative to the current directory
    run_cli("campaign", "create", "autumn", "--db", sqlite_url)
    status, out, err = run_cli("leads", "load", str(path), "--campaign", "autumn", "--db", sqlite_url,
                               "--rejects", "bad.csv")
    assert status == 0 and out.rstrip().endswith(f"; rejected rows in {tmp_path / 'work' / 'bad.csv'}")
    # nothing rejected: no file, and the summary says so
    clean = write(tmp_path / "data" / "clean.csv", HEADER + "4155550111,A,B,,CA,1,0,x\n")
    status, out, err = run_cli("leads", "load", str(clean), "--campaign", "autumn", "--db", sqlite_url)
    assert status == 0 and "1 loaded, 0 rejected" in out and "rejected rows in" not in out
    assert not (tmp_path / "work" / "clean.csv.rejects.csv").exists()


@pytest.mark.parametrize("campaign_empty", [True, False])
def test_duplicates_are_found_across_batches(sessions, spring, tmp_path, campaign_empty):
    if not campaign_empty:
        load(sessions, write(tmp_path / "first.csv", HEADER + "2125550199,A,B,,NY,1,0,x\n"))
        with sessions.begin() as s:
            dnc.add_dnc(s, ["3125550199"])
    lines = [f"41555501{i:02d},N{i},L,,CA,1,0,x" for i in range(10)]
    lines.append("(415) 555-0103,again,L,,CA,1,0,x")   # line 12, batch 4 with size 3
    path = write(tmp_path / "batches.csv", HEADER + "\n".join(lines) + "\n")
    result = load(sessions, path, rejects=tmp_path / "r.csv", batch_size=3)
    assert (result.loaded, result.duplicate) == (10, 1)
    assert read_rejects(tmp_path / "r.csv") == [
        {"line": "12", "reason": "duplicate: same number +14155550103 as line 5", "phone": "(415) 555-0103",
         "first_name": "again", "last_name": "L", "timezone": "", "state": "CA", "postal_code": "1",
         "priority": "0", "account_id": "x"}
    ]


# --- Encodings, line endings, delimiters ----------------------------------------------


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_bom_and_any_line_ending(sessions, spring, tmp_path, bom, newline):
    rows = [b"phone,first_name,plan", b"4155550100,Zo\xc3\xab,gold", b"", b"2125550101,Al,\"a,b\""]
    path = write(tmp_path / "f.csv", bom + newline.join(rows) + newline)
    result = load(sessions, path, rejects=tmp_path / "r.csv")
    assert (result.rows, result.loaded, result.rejected) == (2, 2, 0)
    got = {(r.phone_e164, r.first_name, r.custom["plan"], r.source_line) for r in leads(sessions)}
    assert got == {("+14155550100", "Zoë", "gold", 2), ("+12125550101", "Al", "a,b", 4)}


def test_semicolon_separated_file(sessions, spring, tmp_path):
    path = write(tmp_path / "semi.csv", "Phone;First Name;Zip\n+1 415 555 0100;Ann;94110\n")
    load(sessions, path)
    [lead] = leads(sessions)
    assert (lead.phone_e164, lead.first_name, lead.postal_code, lead.custom) == ("+14155550100", "Ann", "94110", None)


def test_region_option_reads_national_numbers(sessions, spring, tmp_path):
    path = write(tmp_path / "uk.csv", "phone\n020 7946 0018\n07911 123456\n")
    result = load(sessions, path, region="GB")
    assert result.loaded == 2
    assert {r.phone_e164 for r in leads(sessions)} == {"+442079460018", "+447911123456"}


def test_unknown_region_is_refused(sessions, spring):
    with pytest.raises(UserError, match="--region: unknown region 'XX'"):
        load(sessions, SAMPLE, region="XX")


# --- Files refused before anything is written ---------------------------------------


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file, expected a CSV header row with a 'phone' column"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a CSV file (binary data)"),
        (b"\xff\xfeb\x00a\x00d\x00", "line 1: no 'phone' column (header: 'bad')"),  # UTF-16, read as such
        ("phone,name\n4155550100,A\n".encode("utf-16-le"), "UTF-16 text without a byte-order mark; save it as CSV UTF-8"),
        (b"t\xe9l\xe9phone,nom\n", "line 1: not a CSV file (not UTF-8 text)"),
        (b"name,number\nAnn,4155550100\n", "line 1: no 'phone' column (header: 'name', 'number')"),
        (b'{"phone": "4155550100"}\n', "line 1: no 'phone' column"),
        (b"phone,name,Name\n", "line 1: column 'Name' appears twice"),
        (b"phone,zip,postal_code\n", "line 1: columns 'zip' and 'postal_code' both give postal_code"),
        (b"phone,,x\n", "line 1: column 2 has no name"),
    ],
)
def test_file_that_is_not_a_lead_csv_is_refused_before_writing(sessions, spring, tmp_path, content, message):
    load(sessions, SAMPLE)
    path = write(tmp_path / "in.csv", content)
    with pytest.raises(LeadFileError) as info:
        load(sessions, path, rejects=tmp_path / "r.csv")
    assert str(info.value).startswith(f"{path}: {message}")
    assert len(leads(sessions)) == 200
    assert not (tmp_path / "r.csv").exists()


def test_missing_file_and_directory_are_refused(sessions, spring, tmp_path):
    with pytest.raises(LeadFileError, match="no such file"):
        load(sessions, tmp_path / "absent.csv")
    with pytest.raises(LeadFileError, match="is a directory"):
        load(sessions, tmp_path)


def test_failed_load_keeps_nothing_of_itself_and_loses_nothing(sessions, spring, tmp_path):
    load(sessions, SAMPLE)
    before = {(r.id, r.phone_e164, r.state) for r in leads(sessions)}
    good = "".join(f"41555502{i:02d},N,L,,CA,1,0,x\n" for i in range(20))
    # A field far beyond the field limit stops the load as not valid CSV.
    path = write(tmp_path / "broken.csv", HEADER + good + '4155550300,"' + "x" * 200_000 + '",L,,CA,1,0,x\n')
    with pytest.raises(LeadFileError, match=r"broken.csv: line 22: not valid CSV \(field larger than field limit"):
        load(sessions, path, rejects=tmp_path / "r.csv", batch_size=5)
    assert {(r.id, r.phone_e164, r.state) for r in leads(sessions)} == before
    assert not (tmp_path / "r.csv").exists()


def test_rejects_file_may_not_be_the_input(sessions, spring):
    with pytest.raises(UserError, match="is the file being loaded"):
        load(sessions, SAMPLE, rejects=SAMPLE)


# --- Do-not-call numbers and the hopper --------------------------------------------


def test_number_listed_after_loading_leaves_the_hopper(sessions, spring):
    load(sessions, SAMPLE)
    target = leads(sessions)[0]
    with sessions.begin() as s:
        assert dnc.add_dnc(s, [target.phone_e164]) == 1
    after = {r.id: r for r in leads(sessions)}
    assert (after[target.id].state, after[target.id].next_attempt_at) == ("dnc", None)
    assert sum(1 for r in after.values() if r.state == "new") == 199


# --- Command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["leads", "load", "SAMPLE", "--campaign", "nope"],
         "dialer: campaign 'nope': no such campaign (see 'dialer campaign list')\n"),
        (["leads", "load", "missing.csv", "--campaign", "spring"], "dialer: missing.csv: no such file\n"),
        (["leads", "load", "SAMPLE"], "dialer: leads load: the following arguments are required: --campaign\n"),
        (["leads", "load", "SAMPLE", "--campaign", "spring", "--region", "Narnia"],
         "dialer: --region: unknown region 'NARNIA' (use a two-letter code such as US)\n"),
    ],
)
def test_cli_load_errors_are_one_line_and_write_nothing(sqlite_url, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    run_cli("campaign", "create", "spring", "--db", sqlite_url)
    argv = [str(SAMPLE) if a == "SAMPLE" else a for a in argv]
    status, out, err = run_cli(*argv, "--db", sqlite_url)
    assert status != 0 and out == ""
    assert err == message
    info = json.loads(run_cli("campaign", "show", "spring", "--format", "json", "--db", sqlite_url)[1])
    assert info["leads"] == {"total": 0}


def test_cli_load_no_progress_bar_when_not_a_terminal(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_cli("campaign", "create", "spring", "--db", sqlite_url)
    status, out, err = run_cli("leads", "load", str(SAMPLE), "--campaign", "spring", "--db", sqlite_url)
    assert (status, err) == (0, "")
    assert "200 loaded, 0 rejected" in out


def test_progress_callback_sees_the_whole_file(sessions, spring):
    calls = []
    load(sessions, SAMPLE, progress=lambda done, total: calls.append((done, total)), batch_size=50)
    size = SAMPLE.stat().st_size
    assert len(calls) >= 4
    assert all(total == size for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert calls[-1][0] == size


def test_leads_load_as_subprocess(tmp_path):
    dialer = str(Path(sys.executable).parent / "dialer")
    db = f"sqlite:///{tmp_path / 'd.db'}"
    for argv in (["db", "upgrade"], ["campaign", "create", "spring"]):
        assert subprocess.run([dialer, *argv, "--db", db], capture_output=True).returncode == 0
    proc = subprocess.run(
        [dialer, "leads", "load", str(SAMPLE), "--campaign", "spring", "--db", db],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "200 loaded, 0 rejected" in proc.stdout
    proc = subprocess.run(
        [dialer, "leads", "load", str(REPO / "pyproject.toml"), "--campaign", "spring", "--db", db],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"dialer: {REPO / 'pyproject.toml'}: line 1: no 'phone' column")


def test_custom_fields_keep_any_text(sessions, spring, tmp_path):
    path = write(
        tmp_path / "custom.csv",
        'phone,"50% off",note\n4155550100,yes,"he said ""hi"" \\ ü ☎"\n4155550101,,\n',
    )
    load(sessions, path)
    got = {r.phone_e164: r.custom for r in leads(sessions)}
    assert got == {
        "+14155550100": {"50% off": "yes", "note": 'he said "hi" \\ ü ☎'},
        "+14155550101": {"50% off": "", "note": ""},
    }


def test_single_custom_column(sessions, spring, tmp_path):
    load(sessions, write(tmp_path / "one.csv", "account,phone\nA-1,4155550100\n"))
    [lead] = leads(sessions)
    assert lead.custom == {"account": "A-1"}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_load_shows_a_progress_bar_on_a_terminal(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_cli("campaign", "create", "spring", "--db", sqlite_url)
    out, err = io.StringIO(), _Terminal()
    status = main(["leads", "load", str(SAMPLE), "--campaign", "spring", "--db", sqlite_url], out, err)
    assert status == 0
    assert "200 loaded" in out.getvalue()
    assert "loading" in err.getvalue()


def test_a_database_error_while_storing_fails_the_load_and_keeps_nothing(sqlite_url, tmp_path):
    from dialer import db

    engine = db.create_engine(sqlite_url)
    sessions = db.session_factory(engine)
    with sessions.begin() as s:
        campaigns.create_campaign(s, "spring")
        import_leads(s, "spring", SAMPLE)
        s.execute(sa.text(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON leads WHEN NEW.phone_e164 = '+14155550230'"
            " BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        ))
    before = {(r.id, r.state) for r in leads(sessions)}
    rows = "".join(f"41555502{i:02d},N,L,,CA,1,0,x\n" for i in range(60))
    path = write(tmp_path / "many.csv", HEADER + rows)
    with pytest.raises(sa.exc.DBAPIError, match="refused by trigger"):
        load(sessions, path, rejects=tmp_path / "r.csv", batch_size=7)
    assert {(r.id, r.state) for r in leads(sessions)} == before
    assert not (tmp_path / "r.csv").exists()
    engine.dispose()


def test_file_name_with_quotes_is_stored_as_given(sessions, spring, tmp_path):
    path = write(tmp_path / "o'brien \"list\".csv", HEADER + "4155550100,A,B,,CA,1,0,x\n")
    load(sessions, path)
    [lead] = leads(sessions)
    assert lead.source_file == str(path)
    assert lead.source_line == 2
    result = load(sessions, path)
    assert (result.loaded, result.duplicate) == (0, 1)


# --- UTF-16 ("Unicode text" from a spreadsheet) ------------------------------------------


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_a_byte_order_mark_is_read(sessions, spring, tmp_path, codec):
    # What a spreadsheet saves as "Unicode text": UTF-16 with its BOM, tab-separated, CRLF.
    text = "phone\tfirst_name\tlast_name\tcity\r\n4155550100\tRémy\tÖzil\tSão Paulo\r\n2125550199\t李\t\t東京\r\n"
    bom = b"\xff\xfe" if codec == "utf-16-le" else b"\xfe\xff"
    path = write(tmp_path / "unicode.txt", bom + text.encode(codec))
    result = load(sessions, path, rejects=tmp_path / "r.csv")
    assert (result.rows, result.loaded, result.rejected) == (2, 2, 0)
    rows = leads(sessions)
    assert [(r.phone_e164, r.first_name, r.last_name, r.custom) for r in rows] == [
        ("+14155550100", "Rémy", "Özil", {"city": "São Paulo"}),
        ("+12125550199", "李", None, {"city": "東京"}),
    ]


def test_utf16_file_broken_mid_way_is_refused_and_nothing_loads(sessions, spring, tmp_path):
    rows = "".join(f"415555{i:04d},A\n" for i in range(3000))
    good = f"phone,first_name\n{rows}".encode("utf-16-le")
    broken = b"\x00\xd8" + "2125550101,B\n".encode("utf-16-le")  # a lone high surrogate
    path = write(tmp_path / "broken.csv", b"\xff\xfe" + good + broken)
    with pytest.raises(LeadFileError) as info:
        load(sessions, path, rejects=tmp_path / "r.csv", batch_size=500)
    message = str(info.value)
    assert re.fullmatch(rf"{re.escape(str(path))}: not valid UTF-16 text after line (\d+);"
                        " save the file as CSV UTF-8", message), message
    assert int(re.search(r"after line (\d+)", message).group(1)) <= 3001
    assert leads(sessions) == []
