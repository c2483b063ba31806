"""``dialer db``: migrate the database schema and inspect its revision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy.orm import Session

from dialer import db


def register(subparsers, common) -> None:
    parser = subparsers.add_parser(
        "db", parents=[common], help="create or migrate the database schema",
        description="Create or migrate the database schema (Alembic migrations).",
    )
    sub = parser.add_subparsers(dest="db_command", metavar="COMMAND", required=True)

    p = sub.add_parser("upgrade", parents=[common], help="migrate the schema to the newest revision")
    p.add_argument("revision", nargs="?", default="head", help="target revision (default head)")
    p.set_defaults(handler=upgrade)

    p = sub.add_parser("downgrade", parents=[common], help="migrate the schema back to a revision")
    p.add_argument("revision", help="target revision ('base' removes every table)")
    p.set_defaults(handler=downgrade)

    p = sub.add_parser("current", parents=[common], help="show the schema revision of the database")
    p.set_defaults(handler=current)

    p = sub.add_parser(
        "check", parents=[common],
        help="fail when the models and the migrations disagree (run on a migrated database)",
    )
    p.set_defaults(handler=check)


def _engine(args):
    return db.open_database(args.db, check_revision=False)


@contextlib.contextmanager
def unit_of_work(args, *, bounded: bool = True) -> Iterator[Session]:
    """One transaction on the database of ``--db`` (which must be migrated to head),
    within the database deadline unless not ``bounded`` (a long export: then
    only connecting and each statement are bounded)."""
    engine = db.open_database(args.db)
    try:
        with db.deadline(engine) if bounded else contextlib.nullcontext():
            with db.session_factory(engine).begin() as session:
                yield session
    finally:
        engine.dispose()


def _migrate(args, step) -> tuple[str, str | None, str | None]:
    """Run ``step(engine, args.revision)``: (database shown, revision before, after)."""
    engine = _engine(args)
    try:
        before = db.current_revision(engine)
        step(engine, args.revision)
        after = db.current_revision(engine)
    finally:
        engine.dispose()
    return db.display_url(engine), before, after


def upgrade(args, out, err) -> int:
    where, before, after = _migrate(args, db.upgrade)
    if before == after:
        out.write(f"{where}: already at revision {after}\n")
    else:
        out.write(f"{where}: upgraded from {before or 'empty'} to {after}\n")
    return 0


def downgrade(args, out, err) -> int:
    where, before, after = _migrate(args, db.downgrade)
    out.write(f"{where}: downgraded from {before or 'empty'} to {after or 'empty'}\n")
    return 0


def current(args, out, err) -> int:
    engine = _engine(args)
    try:
        revision = db.current_revision(engine)
    finally:
        engine.dispose()
    head = db.head_revision()
    if revision is None:
        out.write(f"{db.display_url(engine)}: empty (newest revision is {head}; run 'dialer db upgrade')\n")
        return 1
    note = " (head)" if revision == head else f" (newest revision is {head}; run 'dialer db upgrade')"
    out.write(f"{revision}{note}\n")
    return 0 if revision == head else 1


def check(args, out, err) -> int:
    engine = _engine(args)
    try:
        db.require_current(engine)
        drift = db.schema_drift(engine)
    finally:
        engine.dispose()
    if drift:
        for diff in drift:
            err.write(f"dialer: schema drift: {diff}\n")
        err.write("dialer: the models differ from the migrations; add a migration\n")
        return 1
    out.write("no drift: the migrations match the models\n")
    return 0
