"""Calling hours, applied in each lead's own local time.

A campaign's :class:`CallingWindow` says at which local wall-clock times
(``start`` inclusive, ``end`` exclusive), on which weekdays (0 = Monday ..
6 = Sunday) and except on which local dates (holidays) a lead may be called.
The window is read in the lead's time zone, an IANA key such as
``America/New_York``. A number that may ring in several zones carries them
``|``-joined (``America/Chicago|America/Denver``); it is callable only while
the window is open in every one of them.

Local time comes from :mod:`zoneinfo`, so daylight saving is applied as the
zone's rules say: an 08:00 opening is 08:00 on the wall clock the day the
clocks change too. A window edge that falls into a spring-forward gap is read
the way :mod:`zoneinfo` reads a non-existent time (with the offset in force
before the change), so it opens that much later on the wall clock; an edge in
a fall-back overlap uses its first occurrence.

All instants are aware datetimes; :func:`next_opening` answers in UTC.
Nothing here reads a clock: ``now`` is always passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "CallingWindow",
    "is_callable",
    "next_opening",
    "callable_timezones",
    "zones_of",
]

UTC = dt.timezone.utc

#: How far ahead :func:`next_opening` looks before deciding a lead never opens.
SEARCH_HORIZON = dt.timedelta(days=400)

ALL_DAYS = frozenset(range(7))


@dataclass(frozen=True)
class CallingWindow:
    """Local calling hours: ``start`` <= wall time < ``end`` on ``days``, not on ``holidays``."""

    start: dt.time
    end: dt.time
    days: frozenset[int] = ALL_DAYS
    holidays: frozenset[dt.date] = frozenset()

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("calling window times are local wall-clock times, without a zone")
        if not self.start < self.end:
            raise ValueError(
                f"calling window start {self.start:%H:%M} must be before its end {self.end:%H:%M}"
            )
        if not self.days:
            raise ValueError("calling window has no weekday to call on")
        bad = sorted(d for d in self.days if not (isinstance(d, int) and 0 <= d <= 6))
        if bad:
            raise ValueError(f"calling window weekdays must be 0 (Monday) .. 6 (Sunday), not {bad}")
        # Accept any iterable of the right things, keep frozensets.
        object.__setattr__(self, "days", frozenset(self.days))
        object.__setattr__(self, "holidays", frozenset(self.holidays))

    def day_allowed(self, day: dt.date) -> bool:
        """Whether calls may be placed at all on this local date."""
        return day.weekday() in self.days and day not in self.holidays

    def contains_local(self, local: dt.datetime) -> bool:
        """Whether a local wall-clock time is inside the window."""
        wall = local.time().replace(tzinfo=None, fold=0)
        return self.start <= wall < self.end and self.day_allowed(local.date())


@lru_cache(maxsize=1024)
def zones_of(timezone: str) -> tuple[ZoneInfo, ...]:
    """The zones of a lead's time zone value: one IANA key, or several ``|``-joined.

    Raises ``ValueError`` naming the value when it is empty or a key is unknown.
    """
    keys = [k.strip() for k in timezone.split("|")] if timezone else []
    if not keys or any(not k for k in keys):
        raise ValueError(f"time zone value {timezone!r} is empty or has an empty part")
    zones = []
    for key in keys:
        try:
            zones.append(ZoneInfo(key))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {key!r} in {timezone!r}") from exc
    return tuple(zones)


def _check_now(now: dt.datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now must be an aware datetime, got naive {now.isoformat()}")


def is_callable(timezone: str, window: CallingWindow, now: dt.datetime) -> bool:
    """Whether a lead in ``timezone`` may be called at instant ``now``."""
    _check_now(now)
    return all(window.contains_local(now.astimezone(z)) for z in zones_of(timezone))


def _zone_next_opening(zone: ZoneInfo, window: CallingWindow, t: dt.datetime) -> dt.datetime | None:
    """The first instant >= t at which the window is open in one zone, or None within the horizon."""
    local = t.astimezone(zone)
    if window.contains_local(local):
        return t
    day = local.date()
    limit = day + SEARCH_HORIZON
    while day <= limit:
        if window.day_allowed(day):
            opening = dt.datetime.combine(day, window.start, tzinfo=zone).astimezone(UTC)
            if opening >= t:
                return opening
            # Opening already passed today; if the window is still open we would
            # have returned above, so it has closed: try the next day.
        day += dt.timedelta(days=1)
    return None


def next_opening(timezone: str, window: CallingWindow, now: dt.datetime) -> dt.datetime | None:
    """The first instant at or after ``now`` (in UTC) when the lead is callable.

    Returns ``now`` itself (in UTC) when the lead is callable now, and ``None``
    when the window never opens in all of its zones at once within
    :data:`SEARCH_HORIZON` (for example two zones too far apart for their
    windows to overlap).
    """
    _check_now(now)
    zones = zones_of(timezone)
    t = now.astimezone(UTC)
    limit = t + SEARCH_HORIZON
    while t <= limit:
        if all(window.contains_local(t.astimezone(z)) for z in zones):
            return t
        later = t
        for zone in zones:
            opening = _zone_next_opening(zone, window, t)
            if opening is None:
                return None
            later = max(later, opening)
        if later == t:
            # Every zone says "open at t" on its own reading but not together;
            # cannot happen with consistent zone data. Step on rather than loop.
            later = t + dt.timedelta(minutes=1)
        t = later
    return None


def callable_timezones(
    timezones: Iterable[str | None], window: CallingWindow, now: dt.datetime
) -> set[str]:
    """The values among ``timezones`` whose leads may be called at ``now``.

    Meant for the hopper's ``timezone IN (...)`` filter over the distinct
    values in the lead table. An empty, missing or unknown value is never
    callable, so it is left out (the lead loader reports such values).
    """
    _check_now(now)
    result = set()
    for value in timezones:
        if not value:
            continue
        try:
            if is_callable(value, window, now):
                result.add(value)
        except ValueError:
            continue
    return result
