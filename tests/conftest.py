"""Shared fixtures: a fresh, migrated database for each test.

SQLite: the schema is migrated once per session into a template file, and each
test gets its own copy (``sqlite_url``).

PostgreSQL (tests marked ``@pytest.mark.postgres``; server from
``$DIALER_TEST_PG_URL``): the schema is migrated once per session into a
template database, and each test gets its own ``CREATE DATABASE … TEMPLATE``
copy (``pg_url``), made ahead of time in a thread and dropped afterwards. Without ``$DIALER_TEST_PG_URL`` these
tests are skipped, except under ``CI=true`` where they fail.

``db_url`` runs a test on both; ``engine`` and ``sessions`` are built on it.
``sqlite_sessions`` is the same on SQLite alone, for tests whose subject is not
the database (the engine against the simulator, a real Asterisk).

Trio tests: ``clock`` is trio's mock clock (a test that takes it runs on it);
``ami_secret`` puts the simulator's AMI password where
``tests.engine_harness.server()`` says to read it; ``no_engine_left_behind``
kills the engine processes a test started and left running. Real Asterisk: see
the end of this file.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import trio
import trio.testing

from dialer import db

PG_URL_ENV = "DIALER_TEST_PG_URL"


def _pg_admin_url() -> str | None:
    return os.environ.get(PG_URL_ENV) or None


def require_postgres() -> str:
    """The admin URL of the test server, or skip (fail under CI=true)."""
    url = _pg_admin_url()
    if url is None:
        message = f"${PG_URL_ENV} is not set: no PostgreSQL server to test against"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return url


@pytest.fixture(autouse=True)
def _postgres_marker(request) -> None:
    # Tests marked postgres are skipped (failed in CI) when there is no server.
    if request.node.get_closest_marker("postgres") is not None:
        require_postgres()


# --- SQLite -------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = db.create_engine(f"sqlite:///{path}")
    db.upgrade(engine)
    # Closing the last connection checkpoints the WAL into the main file.
    engine.dispose()
    assert not Path(f"{path}-wal").exists()
    return path


@pytest.fixture
def sqlite_url(_sqlite_template, tmp_path) -> str:
    """URL of a fresh SQLite database file migrated to head."""
    path = tmp_path / "dialer.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


# --- PostgreSQL ----------------------------------------------------------------


def _pg_admin_engine(admin_url: str):
    return sa.create_engine(db.parse_url(admin_url), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


class _PgDatabases:
    """Copies of the migrated template database, made one ahead in a thread.

    ``CREATE DATABASE … TEMPLATE`` takes a few hundred milliseconds; making
    the next copy while a test runs hides most of it. Used copies are dropped
    by the same thread.
    """

    AHEAD = 2

    def __init__(self, admin_url: str, template: str) -> None:
        self.admin_url = admin_url
        self.template = template
        self.ready: queue.Queue = queue.Queue(maxsize=self.AHEAD)
        self.drops: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.counter = itertools.count()
        self.thread = threading.Thread(target=self._run, name="pg-test-databases", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        admin = _pg_admin_engine(self.admin_url)
        try:
            with admin.connect() as conn:
                while not self.stopping.is_set():
                    try:
                        while True:
                            name = self.drops.get_nowait()
                            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    except queue.Empty:
                        pass
                    if self.ready.full():
                        time.sleep(0.005)
                        continue
                    name = f"{self.template}_{next(self.counter)}"
                    try:
                        conn.exec_driver_sql(
                            f'CREATE DATABASE "{name}" TEMPLATE "{self.template}" STRATEGY FILE_COPY'
                        )
                    except Exception as exc:  # handed to the test that waits for it
                        self.ready.put(exc)
                        return
                    self.ready.put(name)
        finally:
            admin.dispose()

    def take(self) -> str:
        item = self.ready.get(timeout=120)
        if isinstance(item, Exception):
            raise item
        return item

    def give_back(self, name: str) -> None:
        self.drops.put(name)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)
        leftovers = []
        while not self.ready.empty():
            item = self.ready.get_nowait()
            if isinstance(item, str):
                leftovers.append(item)
        while not self.drops.empty():
            leftovers.append(self.drops.get_nowait())
        admin = _pg_admin_engine(self.admin_url)
        with admin.connect() as conn:
            for name in leftovers:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def _pg_databases():
    admin_url = _pg_admin_url()
    if admin_url is None:
        yield None
        return
    template = f"dialer_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _pg_admin_engine(admin_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{template}"')
    engine = db.create_engine(db.parse_url(admin_url).set(database=template), poolclass=sa.NullPool)
    db.upgrade(engine)
    engine.dispose()
    pool = _PgDatabases(admin_url, template)
    yield pool
    pool.close()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def pg_url(_pg_databases) -> str:
    """URL of a fresh PostgreSQL database migrated to head, dropped after the test."""
    admin_url = require_postgres()
    name = _pg_databases.take()
    yield db.parse_url(admin_url).set(database=name).render_as_string(hide_password=False)
    _pg_databases.give_back(name)


# --- Either -------------------------------------------------------------------


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db_url(request) -> str:
    """A fresh migrated database: each test using it runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url):
    """An Engine on ``db_url``, disposed after the test."""
    eng = db.create_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine):
    """A sessionmaker on ``engine``: ``with sessions.begin() as s: ...``."""
    return db.session_factory(engine)


@pytest.fixture
def sqlite_sessions(sqlite_url):
    """A sessionmaker on a fresh SQLite file only (``sessions`` runs on both databases)."""
    eng = db.create_engine(sqlite_url)
    yield db.session_factory(eng)
    eng.dispose()


@pytest.fixture
def impatient(sqlite_url):
    """Sessions on the same SQLite file as ``sqlite_sessions`` that give up on a
    locked database after 10 ms (to show what a busy database does)."""
    engine = db.create_engine(sqlite_url)
    sa.event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA busy_timeout = 10"))
    yield db.session_factory(engine)
    engine.dispose()


# --- Trio and the simulated Asterisk -------------------------------------------


@pytest.fixture
def clock():
    """trio's mock clock: time stands still while any task can run, then jumps to
    the next deadline, so timeouts and rates are exact and nothing sleeps for real."""
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def no_engine_left_behind():
    """After the test, kill any engine process it started (tests/engine_processes.py) and left running."""
    yield
    from tests.engine_processes import kill_leftovers

    kill_leftovers()


@pytest.fixture
def ami_secret(monkeypatch):
    """The AMI password the simulator accepts, in the variable the test servers name."""
    from tests.engine_harness import SECRET_ENV

    monkeypatch.setenv(SECRET_ENV, "dialerpass")


# --- Real Asterisk (tests marked ``@pytest.mark.asterisk``) --------------------
# See tests/asterisk_harness.py. Without an Asterisk these tests are skipped
# (failed when $CI is set).

from tests import asterisk_harness as _ah  # noqa: E402


def _ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def require_asterisk() -> "_ah.AsteriskInstall":
    try:
        return _ah.find_asterisk()
    except _ah.AsteriskNotFound as exc:
        message = f"{exc}: {_ah.HOW_TO_RUN}"
        if _ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _asterisk_marker(request) -> None:
    if request.node.get_closest_marker("asterisk") is not None:
        require_asterisk()


_ASTERISK_KEY = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def asterisk():
    """The session's shared Asterisk (an AsteriskInstance), started on first use;
    reset to its defaults after each test that used it."""
    instance = _ah.AsteriskInstance(require_asterisk())
    instance.start()
    yield instance
    instance.cleanup()


@pytest.fixture(autouse=True)
def _asterisk_reset(request):
    yield
    if "asterisk" in request.fixturenames:
        request.getfixturevalue("asterisk").reset()


@pytest.fixture
def asterisk_factory(request):
    """``asterisk_factory(agents=3, start=True)``: an Asterisk of the test's own
    (to stop, kill or stall), stopped and removed after the test."""
    made: list = []
    request.node.stash[_ASTERISK_KEY] = made

    def make(*, agents: int = _ah.DEFAULT_AGENTS, start: bool = True):
        instance = _ah.AsteriskInstance(require_asterisk(), agents=agents)
        made.append(instance)
        if start:
            instance.start()
        return instance

    yield make
    for instance in made:
        instance.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    instances = list(item.stash.get(_ASTERISK_KEY, []))
    if "asterisk" in getattr(item, "fixturenames", ()):
        shared = item.funcargs.get("asterisk") if hasattr(item, "funcargs") else None
        if shared is not None:
            instances.insert(0, shared)
    for n, instance in enumerate(instances):
        report.sections.append((f"Asterisk log tail ({instance.run_dir})", instance.log_tail()))


# The real-Asterisk tier's size and time, said at the end of every run that
# collected it (setup, call and teardown of each test marked asterisk).
_TIER: dict[str, dict[str, float | str]] = {}


def pytest_runtest_logreport(report):
    if "asterisk" not in report.keywords:
        return
    entry = _TIER.setdefault(report.nodeid, {"seconds": 0.0, "outcome": "passed"})
    entry["seconds"] = float(entry["seconds"]) + report.duration
    if report.skipped:
        entry["outcome"] = "skipped"
    elif report.failed:
        entry["outcome"] = "failed"


def pytest_terminal_summary(terminalreporter):
    if not _TIER:
        return
    outcomes = [str(e["outcome"]) for e in _TIER.values()]
    seconds = sum(float(e["seconds"]) for e in _TIER.values())
    counts = ", ".join(f"{outcomes.count(o)} {o}" for o in ("passed", "failed", "skipped") if o in outcomes)
    terminalreporter.write_line(f"real-Asterisk tier: {len(_TIER)} tests ({counts}), {seconds:.0f} s")
