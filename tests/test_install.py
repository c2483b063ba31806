"""The wheel: built once, installed (not editable) into a fresh virtualenv, used from another folder.

The wheel is built from a copy of the source tree (so the checkout gets no
build/ or egg-info), with pip's build isolation (setuptools comes from the
package index). It is installed with ``--no-deps`` into a virtualenv without
pip; that virtualenv reads the test interpreter's site-packages for the
dependencies only (a ``.pth`` line, which adds the folder but not the editable
install's finder), and every test checks that ``dialer`` itself is imported
from the virtualenv.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.engine_harness import business_zone

REPO = Path(__file__).resolve().parents[1]
_IGNORE = shutil.ignore_patterns(".venv", ".git", "__pycache__", "build", "dist", "*.egg-info",
                                 ".pytest_cache", ".hypothesis", "dialer.db*", "dialer.toml")


def _run(cmd, *, cwd, env=None, timeout=300, check=True):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=_IGNORE)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--disable-pip-version-check",
          src, "-w", root / "dist"], cwd=root, timeout=600)
    (built,) = (root / "dist").glob("dialer-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", home], cwd=home.parent)
    python = home / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q",
          "--disable-pip-version-check", wheel], cwd=home.parent, timeout=300)
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=home.parent).stdout.strip()
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "_dialer_test_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(deps)))
    return home


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A working folder with nothing of the project in it."""
    where = tmp_path / "elsewhere"
    where.mkdir()
    return where


def _env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DIALER_DB", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def test_the_wheel_carries_migrations_sample_leads_and_the_example_scenario(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    versions = sorted(p.name for p in (REPO / "migrations" / "versions").glob("*.py"))
    assert versions
    for name in versions:
        assert f"dialer/_shipped/migrations/versions/{name}" in names
    for name in ("dialer/_shipped/migrations/env.py", "dialer/_shipped/migrations/script.py.mako",
                 "dialer/_shipped/sample_leads.csv", "dialer/sim/demo.toml"):
        assert name in names
    assert not any(n.startswith(("migrations/", "tests/")) for n in names)


def test_installed_dialer_is_the_wheel_not_the_checkout(venv, elsewhere):
    out = _run([venv / "bin" / "python", "-c",
                "import dialer, dialer.db, dialer.demo;"
                " print(dialer.__file__); print(dialer.db.MIGRATIONS_DIR); print(dialer.demo.SAMPLE_LEADS)"],
               cwd=elsewhere).stdout.splitlines()
    for line in out:
        assert Path(line).is_relative_to(venv), out
        assert Path(line).exists()


def test_db_upgrade_and_demo_from_another_folder(venv, elsewhere):
    dialer = venv / "bin" / "dialer"
    url = f"sqlite:///{elsewhere / 'dialer.db'}"
    proc = _run([dialer, "db", "upgrade", "--db", url], cwd=elsewhere, env=_env())
    assert "upgraded from empty to" in proc.stdout
    head = sorted((REPO / "migrations" / "versions").glob("*.py"))[-1].name.split("_")[0]
    assert _run([dialer, "db", "current", "--db", url], cwd=elsewhere, env=_env()).stdout.startswith(
        f"{head} (head)")
    proc = _run([dialer, "demo", "--speed", "200"], cwd=elsewhere, env=_env(), timeout=600)
    assert "Campaign demo" in proc.stdout and "total ended" in proc.stdout, proc.stdout
    ended = next(line for line in proc.stdout.splitlines() if "total ended" in line)
    assert ended.split()[2] == "200", ended  # every one of the shipped sample's 200 leads


def test_a_campaign_against_dialer_sim_from_another_folder(venv, elsewhere):
    dialer = venv / "bin" / "dialer"
    env = _env(DIALER_DB=f"sqlite:///{elsewhere / 'dialer.db'}", DIALER_AMI_SECRET="dialerpass")
    sim = subprocess.Popen([dialer, "sim", "--listen", "127.0.0.1:0", "--scenario", "demo",
                            "--speed", "50", "--seed", "7"], cwd=elsewhere, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           stdin=subprocess.DEVNULL)
    try:
        banner = sim.stdout.readline()
        assert "listening on 127.0.0.1:" in banner, banner + sim.stderr.read()
        port = int(banner.rsplit(":", 1)[1])
        (elsewhere / "dialer.toml").write_text(
            f'[[ami]]\nname = "pbx1"\nhost = "127.0.0.1"\nport = {port}\nusername = "dialer"\n'
            f'secret_env = "DIALER_AMI_SECRET"\nconnections = 2\noriginate_rate = 50\nburst = 5\n\n'
            f'[engine]\nspeed = 50\n')
        # The first 20 numbers of the shipped sample, in a zone where it is about noon now.
        sample = Path(_run([venv / "bin" / "python", "-c",
                            "import dialer.demo; print(dialer.demo.SAMPLE_LEADS)"],
                           cwd=elsewhere).stdout.strip())
        with sample.open(newline="") as f:
            rows = list(csv.DictReader(f))[:20]
        with (elsewhere / "leads.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["phone", "timezone"])
            writer.writerows([r["phone"], business_zone()] for r in rows)
        _run([dialer, "db", "upgrade"], cwd=elsewhere, env=env)
        _run([dialer, "campaign", "create", "spring", "--channel", "Local/{digits}@carrier",
              "--context", "dialer-connect", "--queue", "agents", "--max-attempts", "1"],
             cwd=elsewhere, env=env)
        assert "20" in _run([dialer, "leads", "load", "leads.csv", "--campaign", "spring"],
                            cwd=elsewhere, env=env).stdout
        _run([dialer, "start", "spring"], cwd=elsewhere, env=env)
        run = _run([dialer, "run", "--until-done"], cwd=elsewhere, env=env, timeout=300)
        assert "20 calls placed, 20 ended" in run.stdout, run.stdout + run.stderr
        report = json.loads(_run([dialer, "report", "spring", "--format", "json"],
                                 cwd=elsewhere, env=env).stdout)
        assert report["attempts"]["ended"] == 20 and report["attempts"]["in_progress"] == 0
        assert sum(v["count"] for v in report["attempts"]["by_disposition"].values()) == 20
    finally:
        sim.terminate()
        sim.wait(timeout=30)
        sim.stdout.close()
        sim.stderr.close()
