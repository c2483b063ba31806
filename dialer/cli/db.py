"""``dialer db``: migrate the database schema and inspect its revision."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from dialer.errors import UserError


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
    p.add_argument("--yes", action="store_true",
                   help="do not ask before 'base' removes every table and its rows")
    p.set_defaults(handler=downgrade)

    p = sub.add_parser("current", parents=[common], help="show the schema revision of the database")
    p.set_defaults(handler=current)

    p = sub.add_parser(
        "check", parents=[common],
        help="fail when the models and the migrations disagree (run on a migrated database)",
    )
    p.set_defaults(handler=check)


def _engine(args):
    from dialer import db

    return db.open_database(args.db, check_revision=False)


@contextlib.contextmanager
def unit_of_work(args, *, bounded: bool = True) -> Iterator:
    """One transaction on the database of ``--db`` (see :func:`dialer.db.unit_of_work`)."""
    from dialer import db

    with db.unit_of_work(args.db, bounded=bounded) as session:
        yield session


def _migrate(args, step) -> tuple[str, str | None, str | None]:
    """Run ``step(engine, args.revision)``: (database shown, revision before, after)."""
    from dialer import db

    engine = _engine(args)
    try:
        before = db.current_revision(engine)
        step(engine, args.revision)
        after = db.current_revision(engine)
    finally:
        engine.dispose()
    return db.display_url(engine), before, after


def upgrade(args, out, err) -> int:
    from dialer import db

    where, before, after = _migrate(args, db.upgrade)
    if before == after:
        out.write(f"{where}: already at revision {after}\n")
    else:
        out.write(f"{where}: upgraded from {before or 'empty'} to {after}\n")
    return 0


def _confirm_base(args, err) -> None:
    """Downgrading to base drops every campaign, lead and call: --yes, or 'yes' at a terminal."""
    from dialer import db

    where = db.display_url(args.db)
    what = f"'dialer db downgrade base' removes every table of {where} and every row in them"
    if args.yes:
        return
    stdin = sys.stdin
    if not (stdin is not None and stdin.isatty()):
        raise UserError(f"{what}; add --yes to go on")
    err.write(f"{what}. Type 'yes' to go on: ")
    err.flush()
    answer = stdin.readline().strip().lower()
    if answer != "yes":
        raise UserError("db downgrade base: not confirmed; nothing was changed")


def downgrade(args, out, err) -> int:
    from dialer import db

    db.check_revision_name(args.revision, "downgrade")
    if args.revision == "base":
        _confirm_base(args, err)
    where, before, after = _migrate(args, db.downgrade)
    out.write(f"{where}: downgraded from {before or 'empty'} to {after or 'empty'}\n")
    return 0


def current(args, out, err) -> int:
    from dialer import db

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
    from dialer import db

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
