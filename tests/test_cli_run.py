"""dialer run / start / pause / resume / stop: usage and bad input."""

import io

import pytest
import sqlalchemy as sa

from dialer import db
from dialer.cli import main
from dialer.models import Campaign, SupervisorCommand


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def dbu(sqlite_url):
    status, _, err = run_cli("--db", sqlite_url, "campaign", "create", "spring")
    assert status == 0, err
    return sqlite_url


def state(url):
    engine = db.create_engine(url)
    with engine.connect() as conn:
        value = conn.scalar(sa.select(Campaign.state))
    engine.dispose()
    return value


def test_supervisor_commands_walk_the_states_and_are_recorded(dbu):
    assert run_cli("--db", dbu, "start", "spring")[:2] == (0, "campaign spring: running\n")
    assert run_cli("--db", dbu, "pause", "spring", "--reason", "lunch")[1] == "campaign spring: paused\n"
    assert run_cli("--db", dbu, "resume", "spring")[1] == "campaign spring: running\n"
    # nothing in flight: stop is immediate
    assert run_cli("--db", dbu, "stop", "spring")[1] == "campaign spring: stopped\n"
    engine = db.create_engine(dbu)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(SupervisorCommand.command, SupervisorCommand.reason,
                                      SupervisorCommand.issued_by).order_by(SupervisorCommand.id)).all()
    engine.dispose()
    assert [r[0] for r in rows] == ["start", "pause", "resume", "stop"]
    assert rows[1][1] == "lunch" and "@" in rows[0][2]


@pytest.mark.parametrize(
    "argv,message",
    [
        (("pause", "spring"), "campaign 'spring' is stopped: cannot pause it"),
        (("resume", "spring"), "campaign 'spring' is stopped: cannot resume it"),
        (("start", "nosuch"), "nosuch"),
        (("start", "spring", "--reason", "a\x07b"), "--reason"),
    ],
)
def test_refused_commands_are_one_line_and_change_nothing(dbu, argv, message):
    status, out, err = run_cli("--db", dbu, *argv)
    assert status != 0 and out == ""
    assert err.startswith("dialer: ") and err.count("\n") == 1 and message in err
    assert state(dbu) == "stopped"


def test_run_needs_a_configuration(dbu, tmp_path):
    status, _, err = run_cli("--db", dbu, "--config", str(tmp_path / "none.toml"), "run")
    assert status != 0 and "none.toml" in err and err.count("\n") == 1


def test_run_refuses_an_unknown_engine_setting(dbu, tmp_path, monkeypatch):
    config = tmp_path / "dialer.toml"
    config.write_text('[[ami]]\nname = "p"\nhost = "127.0.0.1"\nusername = "u"\n'
                      'secret_env = "X_SECRET"\n[engine]\nlease = -1\n')
    monkeypatch.setenv("X_SECRET", "s")
    status, _, err = run_cli("--db", dbu, "--config", str(config), "run")
    assert status != 0 and err.count("\n") == 1
    assert err == f"dialer: {config}:7: engine.lease: must be a positive number\n"
    # dialer ami reads the same file the same way
    assert run_cli("--config", str(config), "ami", "ping") == (status, "", err)


def test_run_reports_a_missing_secret_before_starting(dbu, tmp_path, monkeypatch):
    config = tmp_path / "dialer.toml"
    config.write_text('[[ami]]\nname = "p"\nhost = "127.0.0.1"\nusername = "u"\n'
                      'secret_env = "X_SECRET_UNSET"\n')
    monkeypatch.delenv("X_SECRET_UNSET", raising=False)
    status, _, err = run_cli("--db", dbu, "--config", str(config), "run")
    assert status != 0 and "X_SECRET_UNSET" in err and err.count("\n") == 1


def test_run_refuses_an_unmigrated_database(tmp_path, monkeypatch):
    config = tmp_path / "dialer.toml"
    config.write_text('[[ami]]\nname = "p"\nhost = "127.0.0.1"\nusername = "u"\n'
                      'secret_env = "X_SECRET"\n')
    monkeypatch.setenv("X_SECRET", "s")
    status, _, err = run_cli("--db", f"sqlite:///{tmp_path}/empty.db", "--config", str(config), "run")
    assert status != 0 and "dialer db upgrade" in err


def test_run_with_a_wrong_secret_or_unknown_campaign_is_one_line(dbu, tmp_path, monkeypatch):

    from tests.sim_thread import SimThread

    with SimThread() as sim:
        config = tmp_path / "dialer.toml"
        config.write_text(f'[[ami]]\nname = "pbx"\nhost = "127.0.0.1"\nport = {sim.port}\n'
                          'username = "dialer"\nsecret_env = "X_SECRET"\n')
        monkeypatch.setenv("X_SECRET", "wrong")
        status, _, err = run_cli("--db", dbu, "--config", str(config), "run")
        assert status != 0 and err.count("\n") == 1 and "Authentication failed" in err, err
        monkeypatch.setenv("X_SECRET", "dialerpass")
        status, _, err = run_cli("--db", dbu, "--config", str(config), "run", "--campaign", "nosuch")
        assert status != 0 and err == "dialer: no campaign named 'nosuch'\n"
