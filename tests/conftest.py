"""Shared fixtures: a fresh, migrated database for each test.

SQLite: the schema is migrated once per session into a template file, and each
test gets its own copy (``sqlite_url``).

PostgreSQL (tests marked ``@pytest.mark.postgres``; server from
``$DIALER_TEST_PG_URL``): the schema is migrated once per session into a
template database, and each test gets its own ``CREATE DATABASE … TEMPLATE``
copy (``pg_url``), made ahead of time in a thread and dropped afterwards. Without ``$DIALER_TEST_PG_URL`` these
tests are skipped, except under ``CI=true`` where they fail.

``db_url`` runs a test on both; ``engine`` and ``sessions`` are built on it.
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
