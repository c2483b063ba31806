"""The SQL pieces the report's figures and the console's charts share, for SQLite and PostgreSQL.

Times are grouped by hour and by second as text prefixes on SQLite (where
they are stored as text) and as whole epoch hours or seconds on PostgreSQL;
:func:`campaign_rows` picks a campaign's attempts the fastest way for its
size; :func:`percentile` interpolates like ``percentile_cont`` on both.
"""

from __future__ import annotations

import datetime as dt
import math

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.compliance import abandon
from dialer.models import CallAttempt


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def seconds_between(dialect: str, start, end):
    """SQL seconds from ``start`` to ``end`` (NULL when either is NULL)."""
    if dialect == "postgresql":
        return sa.func.extract("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


def hour_key(dialect: str, column):
    """The UTC hour: whole hours since the epoch on PostgreSQL; on SQLite, where
    times are stored as 'YYYY-MM-DD HH:MM:SS.ffffff' text, its first 13 characters
    (a prefix groups much faster than a computed number)."""
    if dialect == "postgresql":
        return sa.func.floor(sa.func.extract("epoch", column) / 3600)
    return sa.func.substr(column, 1, 13, type_=sa.String)


_EPOCH = dt.datetime(1970, 1, 1)


def hour_text(hour) -> str:
    if isinstance(hour, str):  # SQLite: 'YYYY-MM-DD HH'
        return f"{hour[:10]}T{hour[11:13]}:00Z"
    return (_EPOCH + dt.timedelta(hours=int(hour))).strftime("%Y-%m-%dT%H:00Z")


def second_key(dialect: str, column):
    """The second, as a group key (see :func:`hour_key`)."""
    if dialect == "postgresql":
        return sa.func.floor(sa.func.extract("epoch", column))
    return sa.func.substr(column, 1, 19, type_=sa.String)


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds") + "Z"


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def rounded(value: float | None, places: int = 2) -> float | None:
    return None if value is None else round(float(value), places)


def campaign_rows(session: Session, dialect: str, campaign_id: int) -> sa.ColumnElement[bool]:
    """The condition selecting a campaign's attempts.

    On SQLite, reading a large share of the table through the campaign's index
    visits the rows in index order, i.e. all over the file: several times slower
    than reading the table straight through. ``campaign_id + 0`` keeps SQLite
    from using the index when the campaign holds more than a twentieth of the
    attempts (the index still counts them, cheaply)."""
    a = CallAttempt
    if dialect != "sqlite":
        return a.campaign_id == campaign_id
    mine = session.scalar(sa.select(sa.func.count()).where(a.campaign_id == campaign_id)) or 0
    table = session.scalar(sa.select(sa.func.max(a.id))) or 0
    if mine * 20 > table:
        return (a.campaign_id + 0) == campaign_id
    return a.campaign_id == campaign_id


def percentile(session: Session, dialect: str, expr, where, count: int, q: float = 0.9) -> float | None:
    """The ``q`` percentile of ``expr`` over the rows of ``where``, interpolated
    like ``percentile_cont``."""
    if count == 0:
        return None
    cond = sa.and_(*where, expr.is_not(None))
    if dialect == "postgresql":
        return session.scalar(
            sa.select(sa.func.percentile_cont(q).within_group(expr)).where(cond)
        )
    pos = q * (count - 1)
    low = math.floor(pos)
    high = min(low + 1, count - 1)
    # Counted from the top: SQLite's sorter then keeps only the top rows
    # (a tenth of them for the 90th percentile), not nine tenths.
    values = list(session.scalars(
        sa.select(expr).where(cond).order_by(expr.desc()).limit(2).offset(count - 1 - high)
    ))
    if not values:
        return None
    upper, lower = float(values[0]), float(values[-1])
    if high == low:
        return upper
    return lower + (upper - lower) * (pos - low)


def per_hour(session: Session, dialect: str, where: list) -> list[tuple]:
    """(hour text, attempts, answered, connected, dropped, ended) per UTC hour."""
    a = CallAttempt
    hour = hour_key(dialect, a.created_at).label("hour")
    dropped, answered = abandon.columns(abandon.LIFE)
    return [
        (hour_text(h), n, ans, conn, drop, done)
        for h, n, ans, conn, drop, done in session.execute(
            sa.select(
                hour, sa.func.count(), answered, sa.func.count(a.connected_at), dropped,
                sa.func.count(a.disposition),
            ).where(*where).group_by(hour).order_by(hour)
        )
    ]
