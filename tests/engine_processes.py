"""Whole engines as processes (``dialer run`` in a child process), for the tests that kill and restart them.

:func:`write_config` writes a ``dialer.toml`` for a simulated Asterisk on a port;
:func:`start_engine` starts ``dialer run --until-done`` on it and remembers the
process, and :func:`kill_leftovers` (the ``no_engine_left_behind`` fixture in
``conftest.py``) kills whatever a failing test left running, so that it does not
go on dialing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DIALER = [sys.executable, "-m", "dialer"]


def write_config(path: Path, port: int, *, rate=20, speed=10, lease=20, name="pbx") -> Path:
    path.write_text(
        f"""
[[ami]]
name = "{name}"
host = "127.0.0.1"
port = {port}
username = "dialer"
secret_env = "DIALER_AMI_SECRET"
connections = 2
originate_rate = {rate}
burst = 2

[engine]
speed = {speed}
lease = {lease}
housekeeping_interval = 1
"""
    )
    return path


_started: list[subprocess.Popen] = []


def kill_leftovers() -> None:
    """Kill every engine :func:`start_engine` started that is still running."""
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def start_engine(config: Path, url: str, log: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, DIALER_AMI_SECRET="dialerpass")
    proc = subprocess.Popen(
        [*DIALER, "--config", str(config), "--db", url, "run", "--until-done", *extra],
        stdout=subprocess.PIPE, stderr=log.open("ab"), env=env,
    )
    _started.append(proc)
    return proc
