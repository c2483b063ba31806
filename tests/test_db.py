"""The schema, its migrations and ``dialer db``."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from dialer import db
from dialer.cli import main
from dialer.errors import UserError
from dialer.models import Base, Campaign

REPO = Path(__file__).resolve().parents[1]


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out, err)
    return status, out.getvalue(), err.getvalue()


def test_fixture_database_is_at_head_without_drift(engine):
    assert db.current_revision(engine) == db.head_revision()
    assert db.schema_drift(engine) == []
    tables = set(sa.inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_check_reports_drift_when_a_model_column_has_no_migration(engine):
    table = Base.metadata.tables["dnc_numbers"]
    extra = sa.Column("not_migrated", sa.Integer, nullable=True)
    table.append_column(extra)
    try:
        drift = db.schema_drift(engine)
    finally:
        table._columns.remove(extra)
    assert any(d[0] == "add_column" and d[3].name == "not_migrated" for d in drift)
    assert db.schema_drift(engine) == []


def test_upgrade_downgrade_upgrade_round_trip(db_url):
    engine = db.create_engine(db_url)
    try:
        db.downgrade(engine, "base")
        assert db.current_revision(engine) is None
        assert "campaigns" not in sa.inspect(engine).get_table_names()
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
        assert db.schema_drift(engine) == []
    finally:
        engine.dispose()


def test_migrations_keep_the_rows_of_a_populated_database(db_url):
    """Down to the first revision and back up: every lead, attempt and event
    is still there (a table rebuilt on SQLite would cascade-delete them)."""
    from dialer import campaigns
    from dialer.models import CallAttempt, CallEvent, Lead

    engine = db.create_engine(db_url)
    sessions = db.session_factory(engine)
    try:
        with sessions.begin() as s:
            c = campaigns.create_campaign(s, "spring", hangup_after=20)
            s.flush()
            lead = Lead(campaign_id=c.id, phone_e164="+12125550100", timezone="America/New_York",
                        next_attempt_at=dt.datetime(2026, 1, 1))
            s.add(lead)
            s.flush()
            attempt = CallAttempt(lead_id=lead.id, campaign_id=c.id, phone_e164=lead.phone_e164,
                                  attempt_no=1, action_id="a-1", channel_id="c-1", engine_id="e",
                                  server="pbx1", connection="pbx1#1")
            s.add(attempt)
            s.flush()
            s.add(CallEvent(attempt_id=attempt.id, event="Newchannel", data=[]))

        def counts():
            with engine.connect() as conn:
                return [conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                        for t in ("campaigns", "leads", "call_attempts", "call_events")]

        assert counts() == [1, 1, 1, 1]
        db.downgrade(engine, "0001")
        assert counts() == [1, 1, 1, 1]
        db.upgrade(engine)
        assert counts() == [1, 1, 1, 1]
        assert db.schema_drift(engine) == []
        with sessions.begin() as s:
            # the column came back with its default, and its check
            assert s.scalar(sa.select(Campaign.hangup_after)) == 0
        with pytest.raises(sa.exc.IntegrityError):
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE campaigns SET hangup_after = 5"))
    finally:
        engine.dispose()


def test_cli_upgrade_current_check_on_empty_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    status, out, err = run_cli("db", "current", "--db", url)
    assert status == 1 and "empty" in out and err == ""
    status, out, err = run_cli("db", "upgrade", "--db", url)
    assert status == 0, err
    assert f"upgraded from empty to {db.head_revision()}" in out
    status, out, err = run_cli("db", "upgrade", "--db", url)
    assert status == 0 and "already at revision" in out
    status, out, err = run_cli("db", "current", "--db", url)
    assert (status, out) == (0, f"{db.head_revision()} (head)\n")
    status, out, err = run_cli("db", "check", "--db", url)
    assert status == 0 and "no drift" in out, err


@pytest.mark.parametrize("step", ["upgrade", "downgrade"])
def test_unknown_revision_is_one_line_and_changes_nothing(sqlite_url, step):
    status, out, err = run_cli("db", step, "9999", "--db", sqlite_url)
    assert status == 1 and out == ""
    assert err == (f"dialer: db {step} 9999: no such revision (known: base, "
                   f"{', '.join(db.revisions())}, head)\n")
    assert run_cli("db", "current", "--db", sqlite_url)[1] == f"{db.head_revision()} (head)\n"


def test_a_refused_relative_step_is_one_line(sqlite_url):
    status, out, err = run_cli("db", "upgrade", "+1", "--db", sqlite_url)
    assert status == 1 and err.startswith("dialer: db upgrade +1: ") and err.count("\n") == 1


def _campaigns(url: str) -> int:
    engine = db.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM campaigns")).scalar()
    finally:
        engine.dispose()


def test_downgrade_to_base_asks_first(sqlite_url, monkeypatch):
    assert run_cli("campaign", "create", "spring", "--db", sqlite_url)[0] == 0
    # Not at a terminal: refused unless --yes.
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))
    status, out, err = run_cli("db", "downgrade", "base", "--db", sqlite_url)
    assert status == 1 and out == "" and err.count("\n") == 1
    assert "removes every table" in err and "--yes" in err
    assert _campaigns(sqlite_url) == 1

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    # At a terminal: anything but 'yes' changes nothing.
    monkeypatch.setattr("sys.stdin", Terminal("no\n"))
    status, out, err = run_cli("db", "downgrade", "base", "--db", sqlite_url)
    assert status == 1 and "Type 'yes' to go on" in err and "nothing was changed" in err
    assert _campaigns(sqlite_url) == 1
    monkeypatch.setattr("sys.stdin", Terminal("yes\n"))
    status, out, err = run_cli("db", "downgrade", "base", "--db", sqlite_url)
    assert status == 0 and "downgraded from" in out and "to empty" in out
    assert run_cli("db", "upgrade", "--db", sqlite_url)[0] == 0
    assert run_cli("db", "downgrade", "base", "--yes", "--db", sqlite_url)[0] == 0
    assert run_cli("db", "current", "--db", sqlite_url)[0] == 1  # empty


@pytest.mark.postgres
def test_cli_upgrade_and_check_on_postgres(pg_url):
    status, out, err = run_cli("db", "downgrade", "base", "--yes", "--db", pg_url)
    assert status == 0, err
    status, out, err = run_cli("db", "upgrade", "--db", pg_url)
    assert status == 0, err
    assert "upgraded from empty" in out
    status, out, err = run_cli("db", "check", "--db", pg_url)
    assert status == 0, err


def test_sqlite_connection_pragmas(sqlite_url):
    engine = db.create_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced(engine):
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO supervisor_commands (campaign_id, command, issued_by, issued_at)"
                    " VALUES (12345, 'start', 'a@b', '2026-01-01 00:00:00')"
                )
            )


def test_check_constraints_are_enforced(engine):
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO campaigns (name, state, mode, dial_ratio, max_dial_level,"
                    " abandon_target, channel, context, exten, priority, ring_timeout,"
                    " calling_window_start, calling_window_end, calling_days, holidays,"
                    " max_attempts, retry_delays, max_concurrent, created_at, updated_at)"
                    " VALUES ('c', 'stopped', 'progressive', 1, 3, 0.03, 'X', 'c', 's', 1,"
                    " 25, '08:00:00', '21:00:00', '[]', '[]', 3, '{}', 10,"
                    " '2026-01-01', '2026-01-01')"
                )
            )
            conn.execute(
                sa.text(
                    "INSERT INTO supervisor_commands (campaign_id, command, issued_by, issued_at)"
                    " SELECT id, 'explode', 'a@b', '2026-01-01' FROM campaigns"
                )
            )


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("not a url", "not a database URL"),
        ("postgresql+asyncpg://u@h/db", "unsupported PostgreSQL driver"),
    ],
)
def test_bad_database_url_is_one_line_naming_the_option(url, message):
    status, out, err = run_cli("db", "current", "--db", url)
    assert status == 1
    assert err.startswith("dialer: --db: ") and message in err and err.count("\n") == 1


def test_missing_sqlite_directory_is_refused(tmp_path):
    status, out, err = run_cli("db", "upgrade", "--db", f"sqlite:///{tmp_path}/nope/x.db")
    assert status == 1 and "does not exist" in err and err.startswith("dialer: --db:")


def test_unreachable_postgres_is_one_line():
    # Port 1 on loopback: nothing listens there.
    status, out, err = run_cli("db", "current", "--db", "postgresql://u@127.0.0.1:1/x")
    assert status == 1
    assert err.startswith("dialer: --db: cannot connect to postgresql+psycopg://u@127.0.0.1:1/x")
    assert err.count("\n") == 1


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are notes, not a database\n" * 100)
    status, out, err = run_cli("campaign", "list", "--db", f"sqlite:///{path}")
    assert status == 1
    assert err == f"dialer: --db: cannot connect to sqlite:///{path}: file is not a database\n"


def test_postgres_url_without_driver_uses_psycopg():
    assert db.parse_url("postgresql://u:p@h/d").drivername == "postgresql+psycopg"


def test_open_database_refuses_unmigrated_database(tmp_path):
    with pytest.raises(UserError, match="no dialer schema; run 'dialer db upgrade' first"):
        db.open_database(f"sqlite:///{tmp_path / 'empty.db'}")


def test_db_upgrade_as_a_subprocess_uses_dialer_db_env(tmp_path):
    env = {"DIALER_DB": f"sqlite:///{tmp_path / 'env.db'}", "PATH": "/usr/bin:/bin"}
    dialer = Path(sys.executable).parent / "dialer"
    proc = subprocess.run([str(dialer), "db", "upgrade"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "env.db").exists()
    proc = subprocess.run([str(dialer), "db", "check"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and "no drift" in proc.stdout


def test_hopper_claim_order_is_read_from_the_index_without_sorting(sqlite_url):
    # The claim reads due leads of one campaign and zone in (next_attempt_at,
    # priority DESC) order; the index must give that order, since leads loaded
    # together share one next_attempt_at and sorting them all is slow.
    engine = db.create_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            plan = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM leads WHERE campaign_id = 1"
                " AND timezone = 'America/New_York' AND next_attempt_at <= '2026-01-01 00:00:00'"
                " ORDER BY next_attempt_at, priority DESC LIMIT 50"
            ).all()
        details = " / ".join(row[-1] for row in plan)
        assert "INDEX ix_leads_hopper" in details
        assert "TEMP B-TREE" not in details
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_hopper_claim_order_uses_the_index_on_postgres(pg_url):
    engine = db.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = conn.exec_driver_sql(
                "EXPLAIN SELECT id FROM leads WHERE campaign_id = 1"
                " AND timezone = 'America/New_York' AND next_attempt_at <= '2026-01-01 00:00:00'"
                " ORDER BY next_attempt_at, priority DESC LIMIT 50"
            ).scalars().all()
        text = "\n".join(plan)
        assert "ix_leads_hopper" in text
        assert "Sort" not in text
    finally:
        engine.dispose()


@pytest.mark.parametrize("ci, status, outcome", [("true", 1, "1 error"), ("", 0, "1 skipped")])
def test_postgres_tests_skip_without_a_server_but_fail_in_ci(ci, status, outcome):
    env = {k: v for k, v in os.environ.items() if k not in ("DIALER_TEST_PG_URL", "CI")}
    if ci:
        env["CI"] = ci
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "tests/test_db.py::test_cli_upgrade_and_check_on_postgres"],
        capture_output=True, text=True, cwd=REPO, env=env,
    )
    assert proc.returncode == status, proc.stdout
    assert outcome in proc.stdout
    assert "DIALER_TEST_PG_URL is not set" in proc.stdout or not ci
