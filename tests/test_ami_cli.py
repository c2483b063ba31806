"""``dialer ami ...`` against a replaying AMI peer on 127.0.0.1 (run in its own thread)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio

from tests.ami_replay import ReplayServer, Transcript
from dialer.cli import main

from tests.transcripts import TRANSCRIPTS

NAMES = [
    "login-success", "login-failure", "permission-denied", "unknown-action", "ping",
    "command-core-show-channels", "originate-answered", "originate-busy",
]
LOADED = {name: Transcript.load(TRANSCRIPTS, name) for name in NAMES}
CALL_EVENTS = b"".join(LOADED["originate-answered"].replies_to("Originate")[1][1:])
SECRET = "dialerpass"
# The carrier (;2) leg of the recorded answered call.
CARRIER_LEG = re.search(rb"Channel: (Local/15551230000@carrier-[0-9a-f]{8};2)\r\n", CALL_EVENTS).group(1).decode()


class Peer:
    """A ReplayServer on its own trio loop in a thread, for synchronous CLI tests."""

    def __init__(self, **kw) -> None:
        kw.setdefault("users", {"dialer": SECRET, "limited": "lim"})
        kw.setdefault("deny", {"limited": {"Originate", "Command"}})
        kw.setdefault("auth_delay", 0)
        self.server = ReplayServer(LOADED, **kw)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.server.serve)
            self._ready.set()

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self.server

    def __exit__(self, *exc) -> None:
        trio.from_thread.run_sync(self._nursery.cancel_scope.cancel, trio_token=self._token)
        self._thread.join(10)


def config(tmp_path: Path, port: int, *, user: str = "dialer", name: str = "pbx1") -> Path:
    path = tmp_path / "dialer.toml"
    path.write_text(
        f'[[ami]]\nname = "{name}"\nhost = "127.0.0.1"\nport = {port}\n'
        f'username = "{user}"\nsecret_env = "DIALER_TEST_AMI_SECRET"\n'
        f'\n[[ami]]\nname = "other"\nhost = "127.0.0.1"\nport = 1\nusername = "x"\n'
        f'secret_env = "DIALER_TEST_AMI_SECRET"\n'
    )
    return path


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    assert err.startswith("dialer: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv("DIALER_TEST_AMI_SECRET", SECRET)
    return SECRET


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


SCRIPT = {
    "Ping": ("ping", 0),
    "Command": ("command-core-show-channels", 0),
    "Originate": ("originate-answered", 0),
}


def test_ping(tmp_path, secret):
    with Peer(script=SCRIPT) as server:
        status, out, err = run_cli("ami", "ping", "--config", str(config(tmp_path, server.port)))
    assert status == 0 and err == ""
    assert out.startswith(f"pbx1 (127.0.0.1:{server.port}): Pong in ")
    assert "Asterisk Call Manager/11.0.0" in out
    assert [a.name for a in server.actions] == ["Login", "Ping", "Logoff"]
    assert server.actions[0]["Events"] == "off"


def test_command_prints_cli_output(tmp_path, secret):
    with Peer(script=SCRIPT) as server:
        status, out, err = run_cli(
            "--config", str(config(tmp_path, server.port)), "ami", "command", "core show channels"
        )
    assert status == 0 and err == ""
    lines = out.splitlines()
    recorded = LOADED["command-core-show-channels"].replies_to("Command")[1][0].decode()
    assert lines == [line[len("Output: "):] for line in recorded.split("\r\n")
                     if line.startswith("Output: ")]
    assert lines[0].startswith("Channel") and lines[-1].endswith(" calls processed")
    assert len(lines) == 12
    assert server.actions[1]["Command"] == "core show channels"


def test_wrong_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("DIALER_TEST_AMI_SECRET", "not-the-secret")
    with Peer(script=SCRIPT) as server:
        status, out, err = run_cli("ami", "ping", "--config", str(config(tmp_path, server.port)))
    assert status == 1 and out == ""
    line = one_error_line(err)
    assert "pbx1" in line and "Authentication failed" in line
    assert "not-the-secret" not in line


def test_refused_connection(tmp_path, secret):
    status, out, err = run_cli("ami", "ping", "--config", str(config(tmp_path, closed_port())))
    assert status == 1 and out == ""
    assert "pbx1" in one_error_line(err) and "connection refused" in err


def test_permission_denied(tmp_path, monkeypatch):
    monkeypatch.setenv("DIALER_TEST_AMI_SECRET", "lim")
    with Peer(script=SCRIPT) as server:
        path = str(config(tmp_path, server.port, user="limited"))
        status, out, err = run_cli("ami", "command", "core show channels", "--config", path)
        assert status == 1 and out == ""
        assert "Permission denied" in one_error_line(err) and "pbx1" in err
        status, out, err = run_cli(
            "ami", "originate", "--config", path, "--channel", "Local/1@carrier",
            "--context", "c", "--exten", "s",
        )
        assert status == 1 and "Permission denied" in one_error_line(err)


def test_missing_config_and_unknown_server(tmp_path, secret):
    status, out, err = run_cli("ami", "ping", "--config", str(tmp_path / "nope.toml"))
    assert status == 1 and "nope.toml" in one_error_line(err) and "not found" in err
    path = config(tmp_path, 1)
    status, out, err = run_cli("ami", "ping", "--config", str(path), "--server", "pbx9")
    assert status == 1 and "pbx9" in one_error_line(err) and "pbx1, other" in err


def test_missing_secret_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("DIALER_TEST_AMI_SECRET", raising=False)
    status, out, err = run_cli("ami", "ping", "--config", str(config(tmp_path, 1)))
    assert status == 1 and "DIALER_TEST_AMI_SECRET" in one_error_line(err)


def test_server_option_picks_entry(tmp_path, secret):
    with Peer(script=SCRIPT) as server:
        path = str(config(tmp_path, server.port))
        status, out, err = run_cli("ami", "ping", "--config", path, "--server", "other")
    assert status == 1 and "other (127.0.0.1:1)" in one_error_line(err)


def test_events_count_and_filter(tmp_path, secret):
    with Peer(script=SCRIPT, after_login=CALL_EVENTS) as server:
        path = str(config(tmp_path, server.port))
        status, out, err = run_cli("ami", "events", "--config", path, "--count", "3")
        assert status == 0 and err == ""
        blocks = out.strip().split("\n\n")
        assert [b.splitlines()[0] for b in blocks] == [
            "Event: FullyBooted", "Event: Newchannel", "Event: Newchannel",
        ]
        status, out, err = run_cli(
            "ami", "events", "--config", path, "--filter", "Event=Hangup", "--count", "4"
        )
        assert status == 0
        blocks = out.strip().split("\n\n")
        assert len(blocks) == 4 and all(b.startswith("Event: Hangup\n") for b in blocks)
        assert {line for b in blocks for line in b.splitlines() if line.startswith("Cause:")} == {
            "Cause: 16"
        }
        status, out, err = run_cli(
            "ami", "events", "--config", path, "--filter", "Event=Hangup",
            "--filter", f"Channel={CARRIER_LEG}", "--count", "1",
        )
        assert status == 0 and f"Channel: {CARRIER_LEG}\n" in out
    assert server.actions[0].get("Events") is None  # events on for this command


def test_events_stats(tmp_path, secret):
    expected = {}
    for block in CALL_EVENTS.split(b"\r\n\r\n")[:-1]:
        name = block.split(b"\r\n", 1)[0].split(b": ", 1)[1].decode()
        expected[name] = expected.get(name, 0) + 1
    total = sum(expected.values()) + 1  # FullyBooted from the login
    with Peer(script=SCRIPT, after_login=CALL_EVENTS) as server:
        path = str(config(tmp_path, server.port))
        status, out, err = run_cli("ami", "events", "--config", path, "--stats", "--count", str(total))
    assert status == 0 and err == ""
    rows = out.splitlines()
    assert rows[0].split() == ["events", "per", "s", "name"]
    counts = {r.split()[2]: int(r.split()[0]) for r in rows[1:-1]}
    assert counts == {**expected, "FullyBooted": 1}
    assert rows[-1].split()[0] == str(total) and "total in" in rows[-1]
    assert "Event:" not in out


def test_originate_and_wait(tmp_path, secret):
    with Peer(script=SCRIPT) as server:
        path = str(config(tmp_path, server.port))
        status, out, err = run_cli(
            "ami", "originate", "--config", path, "--channel", "Local/15551230000@carrier",
            "--context", "dialer-connect", "--exten", "s", "--caller-id", '"Acme" <15550001000>',
            "--var", "LEADID=123", "--var", "CAMPAIGN=spring", "--timeout", "20",
        )
        assert status == 0 and err == ""
        assert out.startswith("Originate successfully queued (ActionID ")
        sent = server.actions[1]
        assert sent["Channel"] == "Local/15551230000@carrier" and sent["Timeout"] == "20000"
        assert sent.get_all("Variable") == ["LEADID=123", "CAMPAIGN=spring"]
        assert sent["Async"] == "true" and sent["CallerID"] == '"Acme" <15550001000>'
        assert sent.action_id in out

        status, out, err = run_cli(
            "ami", "originate", "--config", path, "--channel", "Local/15551230000@carrier",
            "--context", "dialer-connect", "--exten", "s", "--wait",
        )
        assert status == 0 and err == ""
        assert out.startswith("Event: OriginateResponse\n")
        assert "Response: Success\n" in out and "Reason: 4\n" in out
        sent = [a for a in server.actions if a.name == "Originate"][-1]
        assert f"ActionID: {sent.action_id}\n" in out


def test_originate_wait_reports_busy(tmp_path, secret):
    with Peer(script={"Originate": ("originate-busy", 0)}) as server:
        path = str(config(tmp_path, server.port))
        status, out, err = run_cli(
            "ami", "originate", "--config", path, "--channel", "Local/15551230004@carrier",
            "--context", "dialer-connect", "--exten", "s", "--wait",
        )
    assert status == 1
    assert "Reason: 5\n" in out
    assert "Reason 5 (busy)" in one_error_line(err)


def test_bad_arguments(tmp_path, secret):
    path = str(config(tmp_path, 1))
    status, out, err = run_cli(
        "ami", "originate", "--config", path, "--channel", "x", "--context", "c", "--exten", "s",
        "--var", "novalue",
    )
    assert status == 1 and "--var 'novalue'" in one_error_line(err)
    status, out, err = run_cli("ami", "events", "--config", path, "--count", "0")
    assert status == 2 and "--count" in one_error_line(err)
    status, out, err = run_cli("ami", "ping", "--config", path, "--timeout", "soon")
    assert status == 2 and "--timeout" in one_error_line(err)


def test_header_injection_is_refused_before_sending(tmp_path, secret):
    with Peer(script=SCRIPT) as server:
        path = str(config(tmp_path, server.port))
        status, out, err = run_cli(
            "ami", "originate", "--config", path, "--channel", "Local/1@c\r\nAction: Hangup",
            "--context", "c", "--exten", "s",
        )
    assert status == 1 and "'Channel'" in one_error_line(err) and "CR" in err
    assert [a.name for a in server.actions] == ["Login", "Logoff"]


def test_real_subprocess(tmp_path, secret):
    with Peer(script=SCRIPT) as server:
        path = str(config(tmp_path, server.port))
        dialer = Path(sys.executable).with_name("dialer")
        env = {**os.environ, "DIALER_TEST_AMI_SECRET": SECRET}
        done = subprocess.run(
            [str(dialer), "ami", "ping", "--config", path], capture_output=True, text=True,
            env=env, timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "Pong" in done.stdout
        env["DIALER_TEST_AMI_SECRET"] = "wrong"
        done = subprocess.run(
            [str(dialer), "ami", "ping", "--config", path], capture_output=True, text=True,
            env=env, timeout=60,
        )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("dialer: ") and done.stderr.count("\n") == 1
    assert "Authentication failed" in done.stderr and "Traceback" not in done.stderr


REPEATED = b"Event: VarSet\r\nChanVariable: A=1\r\nChanVariable: B=2\r\nUniqueid: 42\r\n\r\n"


def test_events_as_json_lines(tmp_path, secret):
    with Peer(script=SCRIPT, after_login=CALL_EVENTS + REPEATED) as server:
        path = str(config(tmp_path, server.port))
        n = CALL_EVENTS.count(b"\r\n\r\n") + 2  # FullyBooted, the call's events, the VarSet
        status, out, err = run_cli("ami", "events", "--config", path, "--format", "jsonl", "--count", str(n))
    assert status == 0 and err == ""
    lines = out.splitlines()
    events = [json.loads(line) for line in lines]
    assert len(events) == n and all(list(e)[0] == "Event" for e in events)
    assert [e["Event"] for e in events[:3]] == ["FullyBooted", "Newchannel", "Newchannel"]
    assert events[-1] == {"Event": "VarSet", "ChanVariable": ["A=1", "B=2"], "Uniqueid": "42"}
    blocks = [b for b in CALL_EVENTS.split(b"\r\n\r\n") if b]
    first = dict(line.split(": ", 1) for line in blocks[0].decode().split("\r\n"))
    assert events[1] == first  # every header, as sent


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_events_stats_as_json_and_csv(tmp_path, secret, fmt):
    with Peer(script=SCRIPT, after_login=CALL_EVENTS) as server:
        path = str(config(tmp_path, server.port))
        status, out, err = run_cli("ami", "events", "--config", path, "--stats", "--count", "5",
                                   "--format", fmt)
    assert status == 0 and err == ""
    if fmt == "json":
        data = json.loads(out)
        assert data["events"] == 5 and sum(n["events"] for n in data["names"]) == 5
        assert data["names"][0] == {"name": "Newchannel", "events": 2, "per_s": data["names"][0]["per_s"]}
    else:
        rows = list(csv.reader(io.StringIO(out)))
        assert rows[0] == ["name", "events", "per_s"] and rows[-1][:2] == ["total", "5"]
        assert sum(int(r[1]) for r in rows[1:-1]) == 5


@pytest.mark.parametrize("argv, message", [
    (("--format", "json"), "--format json: events stream as table"),
    (("--format", "csv"), "--format csv: events stream as table"),
    (("--stats", "--format", "jsonl"), "--format jsonl: --stats prints one table"),
])
def test_events_format_that_does_not_apply_is_one_line(tmp_path, secret, argv, message):
    status, out, err = run_cli("ami", "events", "--config", str(config(tmp_path, 1)), *argv)
    assert status == 1 and out == "" and message in one_error_line(err)


PROBE = """
import sys
from dialer.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:  # argparse's --help of a subcommand
    status = exc.code
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"sqlalchemy", "alembic"})
sys.stderr.write(f"database layer: {loaded}\\n")
sys.exit(status)
"""


@pytest.mark.parametrize("argv", [
    ["--help"],
    ["ami", "--help"],
    ["ami", "ping"],
    ["ami", "command", "core show channels"],
    ["ami", "events", "--count", "3"],
    ["ami", "events", "--count", "3", "--stats", "--format", "json"],
    ["ami", "originate", "--channel", "Local/15551230000@carrier", "--context", "dialer-connect",
     "--exten", "s", "--wait"],
])
def test_help_and_ami_commands_do_not_load_the_database_layer(tmp_path, secret, argv):
    with Peer(script=SCRIPT, after_login=CALL_EVENTS) as server:
        path = str(config(tmp_path, server.port))
        extra = [] if argv[-1] == "--help" else ["--config", path]
        env = {**os.environ, "DIALER_TEST_AMI_SECRET": SECRET}
        done = subprocess.run([sys.executable, "-c", PROBE, *argv, *extra], capture_output=True,
                              text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout
    assert done.stderr.splitlines()[-1] == "database layer: []"
