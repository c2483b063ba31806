"""The README's campaign flow against `dialer sim`, run as written (real processes)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.engine_harness import business_zone, numbers

ROOT = Path(__file__).resolve().parents[1]


def _section() -> str:
    readme = (ROOT / "README.md").read_text()
    return re.search(r"### Trying it against the simulator\n(.*?)\n### ", readme, re.S).group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_campaign_flow_against_the_simulator_works_as_written(tmp_path):
    section = _section()
    assert "Local/{digits}@carrier" in section
    sim_block, flow = re.findall(r"```sh\n(.*?)```", section, re.S)
    (toml,) = re.findall(r"```toml\n(.*?)```", section, re.S)
    sim_command = sim_block.split("#", 1)[0].strip()
    assert sim_command.startswith("dialer sim ")
    # The documented port may be taken on a shared machine: the same flow on a free one.
    port = str(_free_port())
    sim_command = sim_command.replace("15038", port)
    (tmp_path / "dialer.toml").write_text(toml.replace("15038", port))
    # The user's own leads file: numbers whose time zone is at midday now, so that the
    # calling window is open whatever the time of day the test runs.
    zone = business_zone()
    phones = numbers(20, prefix="+1212559")
    (tmp_path / "leads.csv").write_text("phone,timezone\n" + "".join(f"{p},{zone}\n" for p in phones))
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin")
    env.pop("DIALER_DB", None)
    sim = subprocess.Popen(["bash", "-c", f"exec {sim_command}"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        script = "set -e\n" + flow
        # Its own process group, so that a timeout ends `dialer run` too, not only bash.
        proc = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError(f"the flow did not finish in 240 s\n{stdout}\n{stderr}") from None
        done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "20 loaded" in done.stdout
    assert re.search(r"total ended\s+20\s+100\.0%", done.stdout), done.stdout
    assert re.search(r"failed\s+0\s", done.stdout), done.stdout
    assert "circuit breaker" not in done.stdout + done.stderr
