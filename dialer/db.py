"""Database engines, sessions and the Alembic migrations that shape them.

The URL comes from ``--db`` / ``DIALER_DB``; ``sqlite:///dialer.db`` (a file in
the working directory) is the default. PostgreSQL URLs may be written
``postgresql://…`` and are run through psycopg 3. SQLite connections get WAL
journaling, foreign keys and a busy timeout.

Alembic is configured here rather than from an ``alembic.ini``: the migration
scripts live in the top-level ``migrations/`` folder.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from dialer.errors import UserError

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"

# How long a SQLite writer waits for another writer's lock, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 10_000


class DatabaseError(UserError):
    """The database is unreachable, unknown, or not at the expected revision."""


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


def _sqlite_on_begin_deferred(connection: Connection) -> None:
    # Readers only: a deferred BEGIN takes no lock, so reads never queue behind writers.
    connection.exec_driver_sql("BEGIN")


def create_engine(url: str | URL, *, readers: bool = False, **kwargs) -> Engine:
    """An Engine for ``url`` with the dialer's connection settings.

    ``readers=True``: for work that only reads (the web console's pages and
    wallboard): on SQLite its transactions begin deferred and take no write
    lock, so a busy console never holds the engines up; never write through it.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise DatabaseError(f"--db: directory {str(parent)!r} does not exist")
        engine = sa.create_engine(parsed, **kwargs)
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin_deferred if readers else _sqlite_on_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(parsed, **kwargs)


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


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database forward to ``revision``, in one transaction."""
    from alembic import command

    with connect(engine) as conn:
        with conn.begin():
            command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database back to ``revision``, in one transaction."""
    from alembic import command

    with connect(engine) as conn:
        with conn.begin():
            command.downgrade(alembic_config(conn), revision)


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


def open_database(url: str | URL, *, check_revision: bool = True, **kwargs) -> Engine:
    """An Engine for a command to work with; by default the schema must be at head."""
    engine = create_engine(url, **kwargs)
    if check_revision:
        try:
            require_current(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine


def display_url(engine_or_url: Engine | URL | str) -> str:
    """The URL with any password hidden, for messages."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else parse_url(engine_or_url)
    return url.render_as_string(hide_password=True)
