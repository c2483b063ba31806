"""The console as a real process for tests: ``dialer web`` on a free port, an
engine (``dialer run``) against a simulated Asterisk, and console users."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from dialer.audit import Actor
from dialer.web import auth

DIALER = [sys.executable, "-m", "dialer"]
PASSWORDS = {"ada": ("admin", "ada-password-1"), "sam": ("supervisor", "sam-password-1"),
             "vic": ("viewer", "vic-password-1")}
TEST_ACTOR = Actor("test", "cli", "localhost")


def add_users(sessions) -> None:
    with sessions.begin() as s:
        for name, (role, password) in PASSWORDS.items():
            auth.add_user(s, name, role, password, actor=TEST_ACTOR)


def write_engine_config(path: Path, port: int, *, rate=20, speed=1) -> Path:
    path.write_text(f"""
[[ami]]
name = "pbx"
host = "127.0.0.1"
port = {port}
username = "dialer"
secret_env = "DIALER_AMI_SECRET"
connections = 2
originate_rate = {rate}
burst = 2

[engine]
speed = {speed}
""")
    return path


class Process:
    """A ``dialer`` subprocess whose output goes to a log file; killed on exit."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None) -> None:
        self.log = log
        self.proc = subprocess.Popen([*DIALER, *args], stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                     env={**os.environ, "DIALER_AMI_SECRET": "dialerpass", **(env or {})})

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log.read_text(errors="replace"))
            if found:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(f"process exited {self.proc.returncode}: {self.log.read_text()}")
            threading.Event().wait(0.1)
        raise AssertionError(f"timed out waiting for {pattern!r}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_web(url: str, log: Path, *extra: str) -> tuple[Process, str]:
    web = Process(["--db", url, "web", "--bind", "127.0.0.1:0", *extra], log)
    found = web.wait_for(r"serving on (https?://\S+)")
    return web, found.group(1)


def live_doc(name: str, engine: str, wall: float, **figures) -> dict:
    """A live_state document as an engine writes it (dialer.campaigns.live), with ``figures`` over the defaults."""
    return {"campaign": name, "engine_id": engine, "wall_time": wall, "clock": wall * 1.0, "speed": 1,
            "state": "running", "in_flight": 5, "ringing": 3, "waiting": 1, "connected": 1,
            "agents_logged_in": 2, "agents_free": 1, "dial_level": 1.5, "decision": 2, "reason": "predictive",
            "placed": 10, "agents": {"free": 1, "talking": 1, "wrapup": 0, "paused": 0,
                                     "agents": [{"name": f"{engine}-a", "state": "talking", "since": wall - 30}]},
            "connections": [{"server": "pbx", "connection": f"{engine}#1", "up": True, "rate_cap": 20.0,
                             "rate_1s": 4}], **figures}
