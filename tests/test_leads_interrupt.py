"""``dialer leads load`` interrupted by SIGINT (once, twice, many times) or SIGTERM at many
moments of a large load, as a real process: afterwards the campaign holds all of the file
or none of it, and the last line said which."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer import campaigns, db
from dialer.cli import main
from dialer.models import Lead

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
from bench_import import generate  # noqa: E402

ROWS = 40_000


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("leads") / "big.csv"
    generate(path, ROWS, seed=3)  # about 1 % invalid and 0.5 % repeated numbers
    return path


def count_leads(url: str, campaign: str) -> int:
    engine = db.create_engine(url)
    try:
        with db.session_factory(engine).begin() as s:
            c = campaigns.get_campaign(s, campaign)
            return s.scalar(sa.select(sa.func.count()).select_from(Lead).where(Lead.campaign_id == c.id))
    finally:
        engine.dispose()


def create(url: str, name: str) -> None:
    status, _, err = run_cli("campaign", "create", name, "--db", url)
    assert status == 0, err


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def start_load(url: str, path: Path, campaign: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dialer", "leads", "load", str(path), "--campaign", campaign, "--db", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )


# (moment as a share of an uninterrupted load's time, signals sent 20 ms apart)
POINTS = [
    (0.25, ["SIGINT"]),
    (0.35, ["SIGINT", "SIGINT"]),
    (0.45, ["SIGTERM"]),
    (0.55, ["SIGINT"] * 6),
    (0.65, ["SIGINT", "SIGTERM"]),
    (0.75, ["SIGINT", "SIGINT"]),
    (0.85, ["SIGTERM"]),
    (0.92, ["SIGINT"]),
    (0.97, ["SIGINT", "SIGINT"]),
    (1.0, ["SIGTERM"]),
    (1.03, ["SIGINT"]),
    (1.08, ["SIGINT", "SIGINT", "SIGINT"]),
    (1.3, ["SIGINT", "SIGINT"]),
    (1.6, ["SIGTERM"]),
    (None, ["SIGINT"]),  # once it has exited: a load left alone ends loaded
]


def test_interrupted_load_is_all_or_nothing_and_says_which(db_url, big_file, tmp_path):
    create(db_url, "whole")
    t0 = time.perf_counter()
    proc = start_load(db_url, big_file, "whole", tmp_path)
    out, err = proc.communicate(timeout=300)
    took = time.perf_counter() - t0
    assert proc.returncode == 0, err
    loaded = count_leads(db_url, "whole")
    assert f": {loaded} loaded, " in out and 0.97 * ROWS < loaded < ROWS
    rejects = tmp_path / "big.csv.rejects.csv"
    assert rejects.exists()
    rejects.unlink()

    outcomes = []
    for i, (share, signals) in enumerate(POINTS):
        name = f"c{i}"
        create(db_url, name)
        proc = start_load(db_url, big_file, name, tmp_path)
        if share is None:
            proc.wait(timeout=300)
        else:
            threading.Event().wait(share * took)
        for k, sig in enumerate(signals):
            if k:
                threading.Event().wait(0.02)
            if proc.poll() is None:
                proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=300)
        n = count_leads(db_url, name)
        where = f"{signals} at {share} of {took:.1f} s: rc {proc.returncode}, {n} leads, {err!r}"
        assert n in (0, loaded), where  # all or nothing
        assert "Traceback" not in err, where
        if n == 0:
            # Interrupted before the commit: said so, in one line, and left no rejects behind.
            assert proc.returncode == 130, where
            assert err.endswith(": nothing was loaded; run the same command again to load the file\n"), where
            assert err.count("\n") == 1 and out == "", where
            assert not rejects.exists(), where
            outcomes.append("nothing")
        else:
            # Committed: the summary, and when a signal came during the commit, that line.
            assert proc.returncode == 0, where
            assert f": {loaded} loaded, " in out, where
            assert err == "" or err.endswith(f": all {loaded} leads were loaded\n"), where
            assert rejects.exists(), where
            rejects.unlink()
            outcomes.append("all")
    assert "nothing" in outcomes and "all" in outcomes, outcomes

    # A load that was interrupted completes when run again.
    first = outcomes.index("nothing")
    proc = start_load(db_url, big_file, f"c{first}", tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert count_leads(db_url, f"c{first}") == loaded


def test_a_signal_during_the_commit_is_reported_as_loaded(sqlite_url, tmp_path, monkeypatch):
    """A signal that arrives once the rows are committed leaves them, and says all are loaded."""
    from dialer.leads import importer

    path = tmp_path / "few.csv"
    path.write_text("phone,first_name\n4155550100,A\n2125550199,B\n")
    create(sqlite_url, "spring")
    real = importer.load_leads

    def load_then_signal(*args, **kwargs):
        result = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)  # held back by the command, as any signal during the load
        return result

    monkeypatch.setattr(importer, "load_leads", load_then_signal)
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli("leads", "load", str(path), "--campaign", "spring", "--db", sqlite_url)
    assert status == 0 and ": 2 loaded, 0 rejected" in out
    assert err == f"dialer: leads load {path}: SIGINT came as the load was committed: all 2 leads were loaded\n"
    assert count_leads(sqlite_url, "spring") == 2


def test_a_signal_before_the_commit_loads_nothing(sqlite_url, tmp_path, monkeypatch):
    from dialer.leads import importer

    path = tmp_path / "few.csv"
    path.write_text("phone,first_name\n4155550100,A\n2125550199,B\nnope,C\n")
    create(sqlite_url, "spring")
    real = importer.import_leads

    def signal_while_importing(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(importer, "import_leads", signal_while_importing)
    monkeypatch.chdir(tmp_path)
    status, out, err = run_cli("leads", "load", str(path), "--campaign", "spring", "--db", sqlite_url)
    assert status == 130 and out == ""
    assert err == (f"dialer: leads load {path}: interrupted (SIGTERM): nothing was loaded;"
                   " run the same command again to load the file\n")
    assert count_leads(sqlite_url, "spring") == 0
    assert not (tmp_path / "few.csv.rejects.csv").exists()
    # the handlers are put back afterwards
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
