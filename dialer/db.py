"""Database engines, sessions and the Alembic migrations that shape them.

The URL comes from ``--db`` / ``DIALER_DB``; ``sqlite:///dialer.db`` (a file in
the working directory) is the default. PostgreSQL URLs may be written
``postgresql://…`` and are run through psycopg 3. SQLite connections get WAL
journaling, foreign keys and a busy timeout.

Deadlines: no call to the database may hang the process. PostgreSQL
connections get a client-side connect timeout and server-side statement, lock
and idle-in-transaction timeouts; but a server that stops answering (stopped,
frozen, its host gone) cannot fire its own timeouts, and a blocked call in
psycopg or sqlite3 cannot be cancelled from outside its thread. So a unit of
work runs under :func:`deadline`: a watchdog thread that, once the time is up,
breaks the engine's connections under it (shuts their sockets down on
PostgreSQL, ``interrupt()`` on SQLite). The blocked call then fails at once,
its thread returns, and the unit raises :class:`DatabaseTimeout`. The
timeout is ``$DIALER_DB_TIMEOUT`` seconds (default 30) for commands, the
``[engine]`` table's ``db_timeout`` for the engine.

Alembic is configured here rather than from an ``alembic.ini``: the migration
scripts live in the top-level ``migrations/`` folder (inside the package when
installed from a wheel, see :mod:`dialer.resources`).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import itertools
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from dialer.errors import UserError
from dialer.resources import shipped

MIGRATIONS_DIR = shipped("migrations")

# How long a SQLite writer waits for another writer's lock, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 10_000


#: Seconds a command waits for the database (connecting, or one unit of work).
DEFAULT_TIMEOUT = 30.0
TIMEOUT_ENV = "DIALER_DB_TIMEOUT"


class DatabaseError(UserError):
    """The database is unreachable, unknown, or not at the expected revision."""


class DatabaseBusy(Exception):
    """The database could not be reached or stayed locked (another writer, a
    restart): the unit of work did not happen and may be tried again."""


class DatabaseTimeout(DatabaseError):
    """The database did not answer within the deadline; the unit of work did not happen
    (or its commit's fate is unknown, when the deadline passed during the commit)."""


def timeout_from_env() -> float:
    """``$DIALER_DB_TIMEOUT`` (seconds), else :data:`DEFAULT_TIMEOUT`."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise DatabaseError(f"${TIMEOUT_ENV}: {text!r} is not a positive number of seconds")
    return value


def parse_url(url: str | URL) -> URL:
    """Parse and check a database URL; ``postgresql://`` means psycopg 3."""
    if isinstance(url, URL):
        parsed = url
    else:
        try:
            parsed = sa.make_url(url)
        except Exception:
            raise DatabaseError(f"--db: not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.drivername not in ("sqlite", "sqlite+pysqlite"):
            raise DatabaseError(f"--db: unsupported SQLite driver {parsed.drivername!r}")
        return parsed
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        elif parsed.drivername != "postgresql+psycopg":
            raise DatabaseError(
                f"--db: unsupported PostgreSQL driver {parsed.drivername!r}"
                " (use postgresql:// or postgresql+psycopg://)"
            )
        return parsed
    raise DatabaseError(
        f"--db: unsupported database {parsed.drivername!r} (use sqlite:/// or postgresql://)"
    )


def _sqlite_on_connect(dbapi_connection, connection_record) -> None:
    # Leave transaction control to SQLAlchemy's BEGIN (see _sqlite_on_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    # pysqlite's own deferred BEGIN is disabled; an IMMEDIATE transaction takes
    # the write lock up front so two writers queue on busy_timeout instead of
    # failing with "database is locked" when one upgrades a read lock.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


# The DBAPI connections each Engine opened, and its timeout, for deadline().
_CONNECTIONS: weakref.WeakKeyDictionary[Engine, set] = weakref.WeakKeyDictionary()
_TIMEOUTS: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()
# The deadlines of the current thread's blocks (threading.Events, set once passed).
_deadlines = threading.local()


def _passed() -> bool:
    return any(e.is_set() for e in getattr(_deadlines, "stack", ()))


def _track(engine: Engine, timeout: float) -> Engine:
    opened: set = set()  # sqlite3 connections take no weak references
    _CONNECTIONS[engine] = opened
    _TIMEOUTS[engine] = timeout

    def do_connect(dialect, conn_rec, cargs, cparams):
        # Once a deadline has passed, its block makes no new connection (the
        # pool would replace the one just broken, and wait for it all over again).
        if _passed():
            raise DatabaseTimeout("deadline passed")

    sa.event.listen(engine, "do_connect", do_connect)
    sa.event.listen(engine, "connect", lambda dbapi_connection, record: opened.add(dbapi_connection))
    for closed in ("close", "close_detached"):
        sa.event.listen(engine, closed, lambda dbapi_connection, *rest: opened.discard(dbapi_connection))
    sa.event.listen(engine, "invalidate",
                    lambda dbapi_connection, record, exc: opened.discard(dbapi_connection))
    return engine


def _postgres_connect_args(timeout: float) -> dict:
    ms = int(timeout * 1000)
    return {
        # libpq counts whole seconds, at least 2; psycopg enforces it client side.
        "connect_timeout": max(2, math.ceil(timeout)),
        # Server side: no statement or lock wait outlives the client's deadline, and
        # a transaction left open by a client that froze is ended.
        "options": f"-c statement_timeout={ms} -c lock_timeout={ms}"
                   f" -c idle_in_transaction_session_timeout={2 * ms}",
        # A peer that vanished (host down, cable cut) is noticed within about a minute.
        "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
    }


def _sqlite_on_begin_deferred(connection: Connection) -> None:
    # Readers only: a deferred BEGIN takes no lock, so reads never queue behind writers.
    connection.exec_driver_sql("BEGIN")


def create_engine(url: str | URL, *, timeout: float | None = None, readers: bool = False,
                  **kwargs) -> Engine:
    """An Engine for ``url`` with the dialer's connection settings; ``timeout``
    (default :func:`timeout_from_env`) bounds connecting and each :func:`deadline`.

    ``readers=True``: for work that only reads (the web console's pages and
    wallboard): on SQLite its transactions begin deferred and take no write
    lock, so a busy console never holds the engines up; never write through it.
    """
    parsed = parse_url(url)
    if timeout is None:
        timeout = timeout_from_env()
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise DatabaseError(f"--db: directory {str(parent)!r} does not exist")
        engine = sa.create_engine(parsed, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin_deferred if readers else _sqlite_on_begin)
        return _track(engine, timeout)
    kwargs.setdefault("pool_pre_ping", True)
    connect_args = {**_postgres_connect_args(timeout), **kwargs.pop("connect_args", {})}
    return _track(sa.create_engine(parsed, connect_args=connect_args, **kwargs), timeout)


def interrupt(engine: Engine) -> None:
    """Break every connection ``engine`` holds, from any thread: a call blocked
    on one fails at once (PostgreSQL: the socket is shut down; SQLite: the
    running statement is interrupted). The pool replaces broken connections."""
    for conn in list(_CONNECTIONS.get(engine, ())):
        try:
            if engine.dialect.name == "sqlite":
                conn.interrupt()
                continue
            fd = conn.pgconn.socket
            sock = socket.socket(fileno=os.dup(fd))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
        except Exception:  # closed meanwhile: nothing left to break
            pass


class _Watchdog:
    """One daemon thread that runs callbacks at their deadlines (cheaper than a
    timer thread per unit of work, which costs more than a small query)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._heap: list[tuple[float, int, Any]] = []
        self._armed: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback) -> int:
        key = next(self._ids)
        at = time.monotonic() + seconds
        with self._lock:
            sooner = not self._heap or at < self._heap[0][0]
            heapq.heappush(self._heap, (at, key, callback))
            self._armed.add(key)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dialer-db-watchdog", daemon=True)
                self._thread.start()
            if sooner:  # else the thread wakes up in time for it anyway
                self._lock.notify()
        return key

    def disarm(self, key: int) -> None:
        with self._lock:
            self._armed.discard(key)

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._lock.wait()
                    continue
                at, key, callback = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                heapq.heappop(self._heap)
                self._armed.discard(key)
            callback()


_watchdog = _Watchdog()


@contextlib.contextmanager
def deadline(engine: Engine, seconds: float | None = None) -> Iterator[None]:
    """Bound the database work of the block (in this thread) to ``seconds``
    (default: the engine's timeout): when the time is up, :func:`interrupt`
    breaks the engine's connections, and the block's failure comes out as
    :class:`DatabaseTimeout`."""
    if seconds is None:
        seconds = _TIMEOUTS.get(engine, DEFAULT_TIMEOUT)
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        interrupt(engine)

    stack = _deadlines.__dict__.setdefault("stack", [])
    stack.append(fired)
    key = _watchdog.arm(seconds, fire)
    try:
        yield
    except Exception as exc:
        if fired.is_set():
            raise DatabaseTimeout(
                f"--db: {display_url(engine)}: no answer within {seconds:g} s"
                f" (${TIMEOUT_ENV} sets the limit)"
            ) from exc
        raise
    finally:
        _watchdog.disarm(key)
        stack.remove(fired)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; the caller owns each unit of work::

        with factory.begin() as session:
            ...
    """
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def connect(engine: Engine) -> Iterator[Connection]:
    """A connection, with connection failures turned into a one-line error."""
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as exc:
        if isinstance(exc.orig, Exception) and "timeout expired" in str(exc.orig):
            raise DatabaseTimeout(
                f"--db: cannot connect to {display_url(engine)}: no answer within"
                f" {_TIMEOUTS.get(engine, DEFAULT_TIMEOUT):g} s (${TIMEOUT_ENV} sets the limit)"
            ) from None
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseError(
            f"--db: cannot connect to {engine.url.render_as_string(hide_password=True)}: {reason}"
        ) from None
    with conn:
        yield conn


# --- Alembic -----------------------------------------------------------------


def alembic_config(connection: Connection | None = None, stdout=None):
    """An Alembic Config for the top-level ``migrations/`` scripts.

    With ``connection``, migrations run on it (``env.py`` picks it up from
    ``config.attributes``); the caller owns its transaction.
    """
    from alembic.config import Config

    config = Config(stdout=stdout if stdout is not None else io.StringIO())
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
        url = connection.engine.url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest revision among the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, None when it was never migrated."""
    from alembic.migration import MigrationContext

    with connect(engine) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _no_statement_timeout(conn: Connection) -> None:
    # A migration may rewrite a large table: the statement timeout that guards
    # everyday work does not apply to it (this transaction only).
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")


def revisions() -> list[str]:
    """Every revision of the migration scripts, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def check_revision_name(revision: str, step: str) -> None:
    """Refuse a target revision the migration scripts do not have (one line)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    if revision in ("head", "heads", "base") or revision[:1] in ("+", "-") or "+" in revision:
        return  # alembic's own names and relative steps, checked when migrating
    try:
        found = ScriptDirectory.from_config(alembic_config()).get_revisions(revision)
    except CommandError:
        found = ()
    if not found:
        known = ", ".join(["base", *revisions(), "head"])
        raise DatabaseError(f"db {step} {revision}: no such revision (known: {known})")


def _migrate(engine: Engine, step: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    check_revision_name(revision, step)
    with connect(engine) as conn:
        with conn.begin():
            _no_statement_timeout(conn)
            try:
                getattr(command, step)(alembic_config(conn), revision)
            except CommandError as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "refused"
                raise DatabaseError(f"db {step} {revision}: {reason}") from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database forward to ``revision``, in one transaction."""
    _migrate(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database back to ``revision``, in one transaction."""
    _migrate(engine, "downgrade", revision)


def schema_drift(engine: Engine) -> list:
    """Differences between the models and a database migrated to head.

    An empty list means the migrations produce exactly the models' schema.
    """
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from dialer.models import Base

    with connect(engine) as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, Base.metadata)


def require_current(engine: Engine) -> None:
    """Refuse to work on a database that is not migrated to head."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        where = engine.url.render_as_string(hide_password=True)
        if current is None:
            raise DatabaseError(
                f"--db: {where} has no dialer schema; run 'dialer db upgrade' first"
            )
        raise DatabaseError(
            f"--db: {where} is at revision {current}, expected {head};"
            " run 'dialer db upgrade'"
        )


@contextlib.contextmanager
def unit_of_work(url: str | URL, *, bounded: bool = True) -> Iterator[Session]:
    """One transaction on the database at ``url`` (which must be migrated to head),
    within the database deadline unless not ``bounded`` (a long export: then
    only connecting and each statement are bounded)."""
    engine = open_database(url)
    try:
        with deadline(engine) if bounded else contextlib.nullcontext():
            with session_factory(engine).begin() as session:
                yield session
    finally:
        engine.dispose()


def open_database(url: str | URL, *, check_revision: bool = True, **kwargs) -> Engine:
    """An Engine for a command to work with; by default the schema must be at head."""
    engine = create_engine(url, **kwargs)
    if check_revision:
        try:
            with deadline(engine):
                require_current(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine


def display_url(engine_or_url: Engine | URL | str) -> str:
    """The URL with any password hidden, for messages."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else parse_url(engine_or_url)
    return url.render_as_string(hide_password=True)
