"""``dialer ami record`` and dialer.ami.recorder against the simulated Asterisk."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from dialer.ami.codec.message import Banner
from dialer.ami.codec.parser import NEED_DATA, AMIParser
from dialer.ami.recorder import RecordError, load_script, parse_script
from dialer.cli import main
from tests.sim_thread import SimThread

README = Path(__file__).resolve().parents[1] / "README.md"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def readme_script() -> str:
    section = README.read_text().split("\n## Tests\n", 1)[1]
    return re.search(r"```toml\n(.*?)```", section, re.S).group(1)


def config(tmp_path: Path, port: int, secret: str = "dialerpass") -> Path:
    (tmp_path / "secret").write_text(secret + "\n")
    path = tmp_path / "dialer.toml"
    path.write_text(f'[[ami]]\nname = "pbx1"\nhost = "127.0.0.1"\nport = {port}\n'
                    f'username = "dialer"\nsecret_file = "{tmp_path / "secret"}"\n')
    return path


def test_the_readme_script_records_one_call_byte_for_byte(tmp_path):
    script = tmp_path / "call.toml"
    script.write_text(readme_script())
    with SimThread() as sim:
        status, out, err = run_cli("ami", "record", str(script), "--out", str(tmp_path / "call"),
                                   "--config", str(config(tmp_path, sim.port)))
    assert status == 0, err
    assert "call.txt" in out and "server closed" in out
    data = (tmp_path / "call.txt").read_bytes()
    meta = json.loads((tmp_path / "call.json").read_text())
    assert data.startswith(b"Asterisk Call Manager/") and meta["received_bytes"] == len(data)
    # Every message received is where the timeline says, with its kind, name and ActionID.
    parser = AMIParser(role="client")
    parser.receive_data(data)
    items = []
    while (item := parser.next_event()) is not NEED_DATA:
        items.append(item)
    assert len(items) == len(meta["received"])
    for item, entry in zip(items, meta["received"]):
        assert (item.offset, item.length) == (entry["offset"], entry["length"])
        if not isinstance(item, Banner):
            assert (item.kind, item.name, item.action_id) == (entry["kind"], entry["name"], entry["ActionID"])
    names = [e["name"] for e in meta["received"]]
    assert names.count("Hangup") >= 4 and "OriginateResponse" in names and names[-1] == "Goodbye"
    # What was sent: the login (secret hidden), the Originate as written (CRLF), the Logoff.
    sent = [s["text"] for s in meta["sent"]]
    assert sent[0].startswith("Action: Login\r\nUsername: dialer\r\nSecret: ********\r\n")
    assert "dialerpass" not in (tmp_path / "call.json").read_text()
    assert sent[1] == ("Action: Originate\r\nChannel: Local/15551230000@carrier\r\nContext: "
                       "dialer-connect\r\nExten: s\r\nAsync: true\r\nActionID: orig-1\r\n\r\n")
    assert sent[-1] == "Action: Logoff\r\n\r\n"
    times = [s["t"] for s in meta["sent"]] + [r["t"] for r in meta["received"]]
    assert all(t >= 0 for t in times) and meta["server_closed_at"] >= meta["sent"][-1]["t"]


def test_keep_secrets_and_a_failed_login_step(tmp_path):
    script = tmp_path / "bad.toml"
    script.write_text('[[step]]\nlogin = true\nsecret = "wrong"\nexpect = "Error"\n'
                      "[[step]]\nclosed = true\n")
    with SimThread() as sim:
        status, out, err = run_cli("ami", "record", str(script), "--out", str(tmp_path / "bad"),
                                   "--keep-secrets", "--config", str(config(tmp_path, sim.port)))
        assert status == 0, err
        meta = json.loads((tmp_path / "bad.json").read_text())
        assert "Secret: wrong\r\n" in meta["sent"][0]["text"]
        assert [e["name"] for e in meta["received"]][1:] == ["Error"]
        # A step whose wait runs out: one line naming the step, non-zero exit.
        script.write_text('[[step]]\nlogin = true\n[[step]]\nuntil = "NoSuchEvent"\ntimeout = 0.3\n')
        status, out, err = run_cli("ami", "record", str(script), "--out", str(tmp_path / "never"),
                                   "--config", str(config(tmp_path, sim.port)))
    assert status == 1 and err.count("\n") == 1
    assert "step 2 (until NoSuchEvent): nothing within 0.3 s" in err


@pytest.mark.parametrize("text, message", [
    ("", "no [[step]] tables"),
    ("linger = 1\nbogus = 2\n[[step]]\nwait = 1\n", "bogus: unknown setting"),
    ("[[step]]\nwait = 1\nsend = 'Action: Ping'\n", "step 1: needs exactly one of"),
    ("[[step]]\nwait = -1\n", "step 1: wait: must be a number of seconds"),
    ("[[step]]\nsend = 3\n", "step 1: send: must be the action's text"),
    ("[[step]]\nuntil = 'Hangup'\nreply = true\n", "step 1: reply: not an option of until"),
    ("[[step]]\nquiet = 1\ntimeout = 0\n", "step 1: timeout: must be more than 0 seconds"),
])
def test_bad_scripts_are_refused_naming_the_step(text, message):
    with pytest.raises(RecordError) as info:
        parse_script(__import__("tomllib").loads(text), "s.toml")
    assert str(info.value).startswith("s.toml: ") and message in str(info.value)


def test_script_file_errors(tmp_path):
    with pytest.raises(RecordError, match="script file not found"):
        load_script(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[[step]\n")
    with pytest.raises(RecordError, match="invalid TOML"):
        load_script(tmp_path / "bad.toml")
    status, out, err = run_cli("ami", "record", str(tmp_path / "missing.toml"), "--out", "x",
                               "--config", str(tmp_path / "dialer.toml"))
    assert status != 0 and "script file not found" in err and err.count("\n") == 1


def test_an_action_with_a_line_break_in_a_value_is_refused(tmp_path):
    from dialer.ami.recorder import action_bytes

    with pytest.raises(RecordError, match="not 'Key: Value'"):
        action_bytes("Action: Ping\nno colon here")
    assert action_bytes("Action: Ping\nActionID: {x}", x="a-1") == b"Action: Ping\r\nActionID: a-1\r\n\r\n"
