"""Shared fixtures: a fresh, migrated database for each test.

SQLite: the schema is migrated once per session into a template file, and each
test gets its own copy (``sqlite_url``).

PostgreSQL (tests marked ``@pytest.mark.postgres``; server from
``$DIALER_TEST_PG_URL``): the schema is migrated once per session into a
template database, and each test gets its own ``CREATE DATABASE … TEMPLATE``
copy (``pg_url``), dropped afterwards. Without ``$DIALER_TEST_PG_URL`` these
tests are skipped, except under ``CI=true`` where they fail.

``db_url`` runs a test on both; ``engine`` and ``sessions`` are built on it.
"""

from __future__ import annotations

import itertools
import os
import shutil
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

_pg_counter = itertools.count()


def _pg_admin_engine(admin_url: str):
    return sa.create_engine(db.parse_url(admin_url), isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)


@pytest.fixture(scope="session")
def _pg_template():
    admin_url = _pg_admin_url()
    if admin_url is None:
        yield None
        return
    name = f"dialer_tpl_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine(admin_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = db.parse_url(admin_url).set(database=name)
    engine = db.create_engine(url, poolclass=sa.NullPool)
    db.upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture
def pg_url(_pg_template) -> str:
    """URL of a fresh PostgreSQL database migrated to head, dropped after the test."""
    admin_url = require_postgres()
    name = f"{_pg_template}_{os.getpid()}_{next(_pg_counter)}"
    admin = _pg_admin_engine(admin_url)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{_pg_template}"')
    url = db.parse_url(admin_url).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


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
