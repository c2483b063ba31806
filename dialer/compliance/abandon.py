"""The abandon rate: one definition, and one query builder for any window.

*Answered* calls are the ended attempts that were answered (``answered_at``
set); *abandoned* ones are those among them whose disposition is ``dropped``
(no agent within :data:`dialer.compliance.rules.CONNECT_DEADLINE`). The rate is
abandoned / answered. A :class:`Window` picks the attempts by the time they
ended: the rolling 30 days and 24 hours the rules measure over
(:func:`rolling`), an hour of the day (:func:`hour`), or, unbounded, the
campaign's whole life (:data:`LIFE`).

:func:`columns` builds the two aggregates of one window, for a caller that
folds them into a larger ``SELECT`` (the report reads everything in one
pass); :func:`counts` runs them on their own for one campaign. Pacing,
``dialer status``, ``dialer report`` and the live state all count through
these two, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.compliance import rules
from dialer.models import CallAttempt, Disposition

__all__ = ["Window", "Count", "LIFE", "rolling", "hour", "columns", "counts", "rate"]


@dataclasses.dataclass(frozen=True)
class Window:
    """Attempts that ended at or after ``start`` and before ``end`` (either may
    be None: unbounded)."""

    key: str
    start: dt.datetime | None = None
    end: dt.datetime | None = None

    def condition(self) -> sa.ColumnElement[bool]:
        a = CallAttempt
        parts: list[sa.ColumnElement[bool]] = [a.ended_at.is_not(None)]
        if self.start is not None:
            parts.append(a.ended_at >= self.start)
        if self.end is not None:
            parts.append(a.ended_at < self.end)
        return sa.and_(*parts)


#: The campaign's whole life (every ended attempt).
LIFE = Window("life")


def rolling(now: dt.datetime) -> tuple[Window, Window]:
    """The windows the rules measure over, ending ``now`` (naive UTC): the
    rolling 30 days (US) and the last 24 hours (UK)."""
    return (Window("rolling_30d", now - rules.ROLLING_30D),
            Window("last_24h", now - rules.LAST_24H))


def hour(start: dt.datetime) -> Window:
    """The hour beginning at ``start`` (naive UTC), keyed ``YYYY-MM-DDTHH:00Z``."""
    return Window(start.strftime("%Y-%m-%dT%H:00Z"), start, start + dt.timedelta(hours=1))


@dataclasses.dataclass(frozen=True)
class Count:
    dropped: int
    answered: int

    @property
    def rate(self) -> float | None:
        return rate(self.dropped, self.answered)


def rate(dropped: int, answered: int) -> float | None:
    """Abandoned over answered, rounded to 4 places; None when nothing was answered."""
    return round(dropped / answered, 4) if answered else None


def columns(window: Window) -> list[sa.ColumnElement[int]]:
    """``[abandoned, answered]``: the two counts of ``window``, as aggregate
    columns over ``call_attempts``."""
    a = CallAttempt
    inside = window.condition()
    return [
        sa.func.count(a.answered_at).filter(inside, a.disposition == Disposition.DROPPED.value),
        sa.func.count(a.answered_at).filter(inside),
    ]


def read(row: Sequence, windows: Iterable[Window], at: int = 0) -> dict[str, Count]:
    """The counts of ``windows`` from a row that holds their :func:`columns`
    in order from position ``at``."""
    out = {}
    for i, window in enumerate(windows):
        out[window.key] = Count(row[at + 2 * i] or 0, row[at + 2 * i + 1] or 0)
    return out


def counts(session: Session, campaign_id: int, windows: Sequence[Window], *,
           rows: sa.ColumnElement[bool] | None = None) -> dict[str, Count]:
    """The counts of each window for one campaign, in one query.

    ``rows`` replaces the condition selecting the campaign's attempts (the
    report passes one that reads a large campaign straight through); by
    default it is ``campaign_id = :id`` plus the earliest window's start,
    one range of the ``(campaign_id, ended_at)`` index."""
    a = CallAttempt
    select: list[sa.ColumnElement[int]] = []
    for window in windows:
        select += columns(window)
    where: list[sa.ColumnElement[bool]]
    if rows is not None:
        where = [rows]
    else:
        where = [a.campaign_id == campaign_id]
        starts = [w.start for w in windows]
        if starts and all(s is not None for s in starts):
            where.append(a.ended_at >= min(starts))  # type: ignore[type-var]
    row = session.execute(sa.select(*select).where(*where)).one()
    return read(row, windows)
