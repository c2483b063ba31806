"""The real-Asterisk harness itself: login, a call to an agent, the README's user."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ini_block(text: str, section: str) -> dict[str, str]:
    values: dict[str, str] = {}
    inside = False
    for raw in text.splitlines():
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            inside = line == f"[{section}]"
            continue
        if inside and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def test_readme_dialer_user_is_the_tests_user():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"### A least-privilege AMI user.*?```ini\n(.*?)```", readme, re.S).group(1)
    documented = _ini_block(block, "dialer")
    ours = _ini_block((ROOT / "tests" / "asterisk" / "manager.conf").read_text(), "dialer")
    assert "secret" in documented and "secret" in ours
    documented.pop("secret")
    ours.pop("secret")
    assert ours == documented
    assert "originate" not in ours["read"] and "command" not in ours["write"]


def _context_lines(text: str, name: str) -> list[str]:
    """The lines of one dialplan context, from its header to the next one (blank lines,
    trailing spaces and the end of a code block left out)."""
    out: list[str] = []
    inside = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith("[") or line.startswith("```"):
            inside = line == f"[{name}]"
            if inside:
                out.append(line)
            continue
        if inside and line:
            out.append(line)
    return out


def test_readme_drop_message_is_the_tests_dialplan():
    """The drop message the real tier runs (tests/asterisk/extensions.conf) is the
    README's, word for word (the prompts are silent recordings of those names)."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"### The dialplan it expects.*?```ini\n(.*?)```", readme, re.S).group(1)
    documented = _context_lines(section, "dialer-drop")
    ours = _context_lines((ROOT / "tests" / "asterisk" / "extensions.conf").read_text(), "dialer-drop")
    assert len(documented) > 5 and ours == documented
    assert any("UserEvent(DialerOptOut," in line for line in ours)


@pytest.mark.asterisk
def test_login_as_readme_user_and_events_arrive(asterisk):
    with asterisk.ami("dialer", events="on") as ami:
        booted = ami.wait_event("FullyBooted", timeout=5)
        assert booted.get("Status") == "Fully Booted"
        assert ami.action("Ping").get("Ping") == "Pong"
        with asterisk.ami("admin") as admin:
            admin.action("UserEvent", UserEvent="HarnessCheck")
        # user events are not in the dialer's read classes; call events are
        reply = ami.action("Originate", Channel="Local/15551230004@carrier", Context="dialer-connect",
                           Exten="s", Priority="1", Async="true", Timeout="5000")
        assert reply.get("Response") == "Success"
        result = ami.wait_event("OriginateResponse", timeout=10)
        assert result.get("Reason") == "5"


@pytest.mark.asterisk
def test_answered_call_reaches_an_agent_and_is_recorded(asterisk):
    with asterisk.ami("dialer", events="on") as ami:
        ami.action("Originate", Channel="Local/15551230000@carrier", Context="dialer-connect",
                   Exten="s", Priority="1", Async="true", Timeout="20000",
                   Variable="DIALER_ATTEMPT=9001")
        answered = ami.wait_event("OriginateResponse", timeout=10)
        assert answered.get("Response") == "Success"
        connect = ami.wait_event("AgentConnect", timeout=10)
        assert connect.get("MemberName") == "Agent1" or connect.get("MemberName", "").startswith("Agent")
        done = ami.wait_event("AgentComplete", timeout=15)
        assert done.get("Reason") == "caller"
    deadline = time.monotonic() + 5
    while (record := asterisk.hangup_record(9001)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record is not None and record[1] == 16
    assert abs(record[0] - time.time()) < 10


def test_missing_asterisk_skips_or_fails_under_ci(tmp_path):
    test = tmp_path / "test_needs_it.py"
    test.write_text("import pytest\n\n@pytest.mark.asterisk\ndef test_x(asterisk):\n    pass\n")
    env = dict(os.environ, DIALER_TEST_ASTERISK=str(tmp_path / "nowhere"), PATH="/usr/bin:/bin")
    env.pop("CI", None)
    args = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
            "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"), "--confcutdir", str(ROOT / "tests"),
            str(test)]
    # The conftest is tests/conftest.py: run the file from inside tests/.
    target = ROOT / "tests" / f"_tmp_needs_asterisk_{os.getpid()}.py"
    target.write_text(test.read_text())
    try:
        args[-1] = str(target)
        skipped = subprocess.run(args, env=env, capture_output=True, text=True, cwd=ROOT)
        assert skipped.returncode == 0, skipped.stdout + skipped.stderr
        assert "1 skipped" in skipped.stdout and "DIALER_TEST_ASTERISK" in skipped.stdout
        failed = subprocess.run(args, env=dict(env, CI="true"), capture_output=True, text=True, cwd=ROOT)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "1 error" in failed.stdout or "1 failed" in failed.stdout
    finally:
        target.unlink()
