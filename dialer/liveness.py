"""Which engines are alive: one lock per engine name, held for as long as the
engine runs and released by the operating system or the database server the
moment its process dies.

Each run of an engine holds the lock of its name (``--engine-id``) and leases
its leads as ``<name>#<run>`` (:func:`lease_owner`), ``<run>`` being random per
run. Another engine, or the next run under the same name, can then tell a
dead run's leases at once instead of waiting for them to expire:

* a lease whose name is this run's own but whose run is not belongs to a
  previous run of this engine, which is dead (this run holds the name's lock);
* a lease of another name belongs to a dead run when that name's lock is free.

The lock is, on PostgreSQL, a session-level advisory lock held on a connection
of its own (the server drops it when the connection goes, i.e. when the process
dies); a check takes the same key with ``pg_try_advisory_xact_lock`` inside the
checker's transaction, so two engines cannot both decide to adopt one dead
run's calls. On SQLite (one host), it is an ``flock`` on a file per engine name
in the folder ``<database>.engines/`` beside the database file; the files stay
(removing one would race with a run taking it). An in-memory SQLite database
lives in one process: the locks are then kept in that process.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.errors import UserError

#: longest engine name: leases store "<name>#<run>" in a 100-character column
MAX_ENGINE_ID = 80
RUN_TOKEN_LENGTH = 12


def lease_owner(engine_id: str, run: str) -> str:
    return f"{engine_id}#{run}"


def owner_engine(owner: str) -> tuple[str, str | None]:
    """(engine name, run token) of a lease owner; a lease written before runs
    had tokens has no run."""
    name, sep, run = owner.rpartition("#")
    if not sep or len(run) != RUN_TOKEN_LENGTH:
        return owner, None
    return name, run


def check_engine_id(engine_id: str) -> str:
    if not engine_id or len(engine_id) > MAX_ENGINE_ID:
        raise UserError(f"--engine-id: must be 1 to {MAX_ENGINE_ID} characters")
    if any(ch.isspace() for ch in engine_id) or not engine_id.isprintable():
        raise UserError(f"--engine-id: {engine_id!r}: no spaces or control characters")
    return engine_id


def _key(engine_id: str) -> int:
    """A signed 64-bit advisory-lock key for an engine name."""
    digest = hashlib.sha256(b"dialer-engine:" + engine_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_memory_locks: dict[tuple[str, str], object] = {}
_memory_guard = threading.Lock()


class EngineLock:
    """The lock of one engine name, for one run (``acquire`` / ``release``)."""

    def __init__(self, bind: sa.Engine, engine_id: str) -> None:
        self.bind = bind
        self.engine_id = engine_id
        self._conn: sa.Connection | None = None
        self._fd: int | None = None
        self._memory_key: tuple[str, str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise UserError when a live engine holds it."""
        busy = UserError(
            f"engine {self.engine_id!r} is already running (another `dialer run` holds its"
            " lock); give each engine its own --engine-id"
        )
        dialect = self.bind.dialect.name
        if dialect == "postgresql":
            conn = self.bind.connect()
            try:
                got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(_key(self.engine_id)))).scalar()
                conn.commit()
            except BaseException:
                conn.close()
                raise
            if not got:
                conn.close()
                raise busy
            self._conn = conn
            return
        path = lock_path(self.bind, self.engine_id)
        if path is None:
            key = (str(self.bind.url), self.engine_id)
            with _memory_guard:
                if key in _memory_locks:
                    raise busy
                _memory_locks[key] = self
            self._memory_key = key
            return
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise busy from None
            raise UserError(f"{path}: cannot lock: {exc.strerror}") from None
        self._fd = fd

    def release(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(_key(self.engine_id))))
                conn.commit()
            except sa.exc.SQLAlchemyError:  # a broken connection, or one awaiting its rollback
                conn.invalidate()  # not back into the pool: the server drops the lock with it
            finally:
                conn.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._memory_key is not None:
            with _memory_guard:
                _memory_locks.pop(self._memory_key, None)
            self._memory_key = None

    def held(self) -> bool:
        """Whether the lock is still ours (on PostgreSQL: its connection is up)."""
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT 1"))
                self._conn.commit()
                return True
            except sa.exc.SQLAlchemyError:
                return False
        return self._fd is not None or self._memory_key is not None


def lock_path(bind: sa.Engine, engine_id: str) -> Path | None:
    """The lock file of an engine name on a SQLite file database, else None."""
    database = bind.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    db = Path(database).expanduser().resolve()
    name = hashlib.sha256(engine_id.encode()).hexdigest()[:32]
    return db.parent / f"{db.name}.engines" / f"{name}.lock"


def engine_alive(session: Session, engine_id: str) -> bool:
    """Whether a run of ``engine_id`` holds its lock now. On PostgreSQL the
    check holds the name's lock until the caller's transaction ends."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        free = session.execute(sa.select(sa.func.pg_try_advisory_xact_lock(_key(engine_id)))).scalar()
        return not free
    engine = bind.engine if isinstance(bind, sa.Connection) else bind
    path = lock_path(engine, engine_id)
    if path is None:
        with _memory_guard:
            return (str(engine.url), engine_id) in _memory_locks
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False  # never locked on this host: not a live engine's
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # closing drops our flock, if we got it
    return False


def dead_owners(session: Session, owners: set[str], *, engine_id: str, run: str) -> set[str]:
    """The lease owners among ``owners`` whose run is dead."""
    dead: set[str] = set()
    alive_by_name: dict[str, bool] = {}
    for owner in owners:
        name, owner_run = owner_engine(owner)
        if name == engine_id:
            if owner_run != run:
                dead.add(owner)  # an earlier run of this engine: we hold its lock
            continue
        if name not in alive_by_name:
            alive_by_name[name] = engine_alive(session, name)
        if not alive_by_name[name]:
            dead.add(owner)
    return dead
