"""``dialer sim`` from the command line."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dialer.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--listen", "localhost"], "--listen 'localhost': expected HOST:PORT"),
        (["--listen", "127.0.0.1:99999"], "port 99999 is out of range"),
        (["--speed", "0"], "--speed '0': must be a positive number"),
        (["--speed", "fast"], "--speed 'fast': expected a positive number"),
        (["--speed", "nan"], "--speed 'nan': must be a positive number"),
        (["--seed", "x"], "--seed 'x': expected an integer"),
    ],
)
def test_bad_options_are_one_line(argv, words):
    status, out, err = run_cli("sim", *argv)
    assert status != 0 and out == ""
    assert err.startswith("dialer: ") and err.count("\n") == 1
    assert words in err


def test_bad_scenario_names_file_and_line(tmp_path):
    path = tmp_path / "demo.toml"
    path.write_text("seed = 3\n\n[queue]\nagents = \"many\"\n")
    status, out, err = run_cli("sim", "--scenario", str(path), "--listen", "127.0.0.1:0")
    assert status == 1 and out == ""
    assert err == f"dialer: {path}:4: queue.agents: must be an integer, not 'many'\n"


def test_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        status, out, err = run_cli("sim", "--listen", f"127.0.0.1:{port}")
    assert status == 1
    assert err.startswith(f"dialer: --listen 127.0.0.1:{port}: cannot listen:")


def test_runs_until_interrupted(tmp_path):
    """A real process: prints address and users, answers a Login, stops on SIGINT."""
    scen = tmp_path / "s.toml"
    scen.write_text("seed = 1\n[queue]\nagents = 2\n")
    exe = Path(sys.executable).parent / "dialer"
    proc = subprocess.Popen(
        [str(exe), "sim", "--listen", "127.0.0.1:0", "--scenario", str(scen), "--speed", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        first = proc.stdout.readline()
        m = re.search(r"listening on 127\.0\.0\.1:(\d+)", first)
        assert m, first
        lines = [proc.stdout.readline() for _ in range(5)]
        assert "user dialer / secret dialerpass" in lines[0]
        assert "queue agents: 2 agents" in "".join(lines)
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10) as s:
            s.settimeout(10)
            s.sendall(b"Action: Login\r\nUsername: dialer\r\nSecret: dialerpass\r\nActionID: 1\r\n\r\n")
            data = b""
            deadline = time.monotonic() + 10
            while b"Authentication accepted" not in data and time.monotonic() < deadline:
                data += s.recv(4096)
            assert data.startswith(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nActionID: 1\r\n")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "dialer sim: stopped after 1 connections" in out
    assert err == ""
