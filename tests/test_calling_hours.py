import datetime as dt

import pytest

from dialer.leads.calling_hours import (
    CallingWindow,
    callable_timezones,
    is_callable,
    next_opening,
)

UTC = dt.timezone.utc
DAY = CallingWindow(start=dt.time(8), end=dt.time(21))
WEEKDAYS = CallingWindow(
    start=dt.time(8), end=dt.time(21), days=frozenset(range(5)), holidays=frozenset()
)


def utc(*args):
    return dt.datetime(*args, tzinfo=UTC)


def walk(start, stop, step=dt.timedelta(minutes=5)):
    t = start
    while t < stop:
        yield t
        t += step


# Offsets written out by hand (not read from zoneinfo), with the UTC instant of
# each change, so the test checks the zone rules rather than repeating them.
NEW_YORK_2026 = [  # (change instant in UTC, offset in hours from then on)
    (utc(2026, 1, 1), -5),
    (utc(2026, 3, 8, 7), -4),  # 02:00 EST -> 03:00 EDT
    (utc(2026, 11, 1, 6), -5),  # 02:00 EDT -> 01:00 EST
]
SYDNEY_2026 = [
    (utc(2026, 1, 1), 11),
    (utc(2026, 4, 4, 16), 10),  # 03:00 AEDT -> 02:00 AEST
    (utc(2026, 10, 3, 16), 11),  # 02:00 AEST -> 03:00 AEDT
]


def local_wall(t, table):
    offset = [hours for since, hours in table if t >= since][-1]
    return (t + dt.timedelta(hours=offset)).replace(tzinfo=None)


def expected_open(t, table, window):
    wall = local_wall(t, table)
    return window.start <= wall.time() < window.end and wall.weekday() in window.days


@pytest.mark.parametrize(
    "zone,table,start,stop",
    [
        ("America/New_York", NEW_YORK_2026, utc(2026, 3, 6), utc(2026, 3, 10)),  # spring forward
        ("America/New_York", NEW_YORK_2026, utc(2026, 10, 30), utc(2026, 11, 3)),  # fall back
        ("Australia/Sydney", SYDNEY_2026, utc(2026, 4, 2), utc(2026, 4, 7)),  # autumn, back
        ("Australia/Sydney", SYDNEY_2026, utc(2026, 10, 1), utc(2026, 10, 6)),  # spring, forward
    ],
)
def test_clock_walk_across_dst_change(zone, table, start, stop):
    opens_seen = []
    previous = None
    for t in walk(start, stop):
        got = is_callable(zone, DAY, t)
        assert got == expected_open(t, table, DAY), t
        if got and previous is False:
            opens_seen.append(t)
        previous = got
        # next_opening agrees with the walk: it is now when open, and otherwise
        # the wall clock reads exactly 08:00 then and the lead is callable.
        opening = next_opening(zone, DAY, t)
        if got:
            assert opening == t
        else:
            assert opening > t
            assert local_wall(opening, table).time() == dt.time(8)
            assert is_callable(zone, DAY, opening)
            assert not is_callable(zone, DAY, opening - dt.timedelta(seconds=1))
    # Every day opened at 08:00 local, whatever the offset was that day.
    assert opens_seen and all(local_wall(t, table).time() == dt.time(8) for t in opens_seen)


def test_new_york_window_in_utc_moves_by_an_hour_at_spring_forward():
    # Saturday 7 March: EST, 08:00-21:00 is 13:00-02:00 UTC.
    assert not is_callable("America/New_York", DAY, utc(2026, 3, 7, 12, 59))
    assert is_callable("America/New_York", DAY, utc(2026, 3, 7, 13, 0))
    assert is_callable("America/New_York", DAY, utc(2026, 3, 8, 1, 59))
    assert not is_callable("America/New_York", DAY, utc(2026, 3, 8, 2, 0))  # 21:00 is excluded
    # Sunday 8 March: EDT, 12:00-01:00 UTC.
    assert next_opening("America/New_York", DAY, utc(2026, 3, 8, 3)) == utc(2026, 3, 8, 12)
    assert is_callable("America/New_York", DAY, utc(2026, 3, 8, 12))
    assert not is_callable("America/New_York", DAY, utc(2026, 3, 9, 1))


def test_new_york_fall_back_opens_an_hour_later_in_utc():
    assert next_opening("America/New_York", DAY, utc(2026, 11, 1, 3)) == utc(2026, 11, 1, 13)
    assert not is_callable("America/New_York", DAY, utc(2026, 11, 1, 12, 30))


def test_end_is_exclusive_and_start_inclusive():
    assert is_callable("UTC", DAY, utc(2026, 6, 1, 8))
    assert is_callable("UTC", DAY, utc(2026, 6, 1, 20, 59, 59, 999999))
    assert not is_callable("UTC", DAY, utc(2026, 6, 1, 21))
    assert not is_callable("UTC", DAY, utc(2026, 6, 1, 7, 59, 59))


def test_now_in_another_offset_is_the_same_instant():
    paris_noon = dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    # 10:00 UTC is 06:00 in New York: closed, opens at 12:00 UTC.
    assert not is_callable("America/New_York", DAY, paris_noon)
    assert next_opening("America/New_York", DAY, paris_noon) == utc(2026, 6, 1, 12)
    assert next_opening("America/New_York", DAY, paris_noon).tzinfo is UTC


def test_weekdays_skip_the_weekend():
    # Friday 5 June 2026 21:30 in New York -> next opening Monday 08:00 EDT.
    friday_late = utc(2026, 6, 6, 1, 30)
    assert not is_callable("America/New_York", WEEKDAYS, friday_late)
    assert next_opening("America/New_York", WEEKDAYS, friday_late) == utc(2026, 6, 8, 12)
    # Saturday noon: inside the hours but not a calling day.
    assert not is_callable("America/New_York", WEEKDAYS, utc(2026, 6, 6, 16))
    assert is_callable("America/New_York", DAY, utc(2026, 6, 6, 16))


def test_weekday_is_the_leads_local_day_not_utc():
    # Monday 00:30 UTC is still Sunday 10:30 in Honolulu: closed for a Mon-Fri window,
    # while Monday 10:30 in Auckland (Sunday 22:30 UTC) is open.
    assert not is_callable("Pacific/Honolulu", WEEKDAYS, utc(2026, 6, 8, 0, 30))
    assert is_callable("Pacific/Auckland", WEEKDAYS, utc(2026, 6, 7, 22, 30))


def test_holidays_are_local_dates():
    july4 = CallingWindow(
        start=dt.time(8), end=dt.time(21), holidays=frozenset({dt.date(2026, 7, 4)})
    )
    # 4 July 23:00 UTC: 19:00 on 4 July in New York (its holiday), 08:00 on 5 July in Tokyo.
    t = utc(2026, 7, 4, 23)
    assert not is_callable("America/New_York", july4, t)
    assert is_callable("Asia/Tokyo", july4, t)
    assert next_opening("America/New_York", july4, t) == utc(2026, 7, 5, 12)
    # 08:30 on 4 July in Tokyo: its holiday, so the next opening is 08:00 on the 5th.
    assert next_opening("Asia/Tokyo", july4, utc(2026, 7, 3, 23, 30)) == utc(2026, 7, 4, 23)


def test_several_zones_all_must_be_open():
    both = "America/New_York|America/Los_Angeles"
    # 12:30 UTC: 08:30 in New York, 05:30 in Los Angeles.
    assert is_callable("America/New_York", DAY, utc(2026, 6, 1, 12, 30))
    assert not is_callable(both, DAY, utc(2026, 6, 1, 12, 30))
    # Opens when Los Angeles does (15:00 UTC), closes when New York does (01:00 UTC).
    assert next_opening(both, DAY, utc(2026, 6, 1, 12, 30)) == utc(2026, 6, 1, 15)
    assert is_callable(both, DAY, utc(2026, 6, 2, 0, 59))
    assert not is_callable(both, DAY, utc(2026, 6, 2, 1, 0))
    assert next_opening(both, DAY, utc(2026, 6, 2, 1, 0)) == utc(2026, 6, 2, 15)


def test_several_zones_with_different_local_days():
    # A Mon-Fri window over Honolulu and Auckland: their weekdays overlap only
    # on the hours where both are between Monday and Friday, 08:00-21:00 local.
    both = "Pacific/Honolulu|Pacific/Auckland"
    win = CallingWindow(start=dt.time(8), end=dt.time(21), days=frozenset(range(5)))
    t = next_opening(both, win, utc(2026, 6, 6, 0))  # Friday 14:00 Honolulu
    assert t is not None and is_callable(both, win, t)
    assert not is_callable(both, win, t - dt.timedelta(seconds=1))


def test_zones_whose_windows_never_overlap_have_no_opening():
    short = CallingWindow(start=dt.time(9), end=dt.time(12))
    assert next_opening("Asia/Tokyo|America/New_York", short, utc(2026, 6, 1)) is None


def test_callable_timezones_for_the_hopper_filter():
    t = utc(2026, 6, 1, 14)  # 10:00 New York, 07:00 Los Angeles, 16:00 Paris, 23:00 Tokyo
    values = [
        "America/New_York",
        "America/Los_Angeles",
        "Europe/Paris",
        "Asia/Tokyo",
        "America/New_York|Europe/Paris",
        "America/New_York|America/Los_Angeles",
        "",
        None,
        "Not/AZone",
    ]
    assert callable_timezones(values, DAY, t) == {
        "America/New_York",
        "Europe/Paris",
        "America/New_York|Europe/Paris",
    }


def test_unknown_or_empty_zone_is_an_error_naming_it():
    with pytest.raises(ValueError, match="Not/AZone"):
        is_callable("Not/AZone", DAY, utc(2026, 6, 1))
    with pytest.raises(ValueError, match="empty"):
        is_callable("", DAY, utc(2026, 6, 1))
    with pytest.raises(ValueError, match="empty"):
        next_opening("Europe/Paris|", DAY, utc(2026, 6, 1))


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        is_callable("UTC", DAY, dt.datetime(2026, 6, 1, 12))
    with pytest.raises(ValueError, match="aware"):
        next_opening("UTC", DAY, dt.datetime(2026, 6, 1, 12))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(start=dt.time(21), end=dt.time(8)), "before its end"),
        (dict(start=dt.time(8), end=dt.time(8)), "before its end"),
        (dict(start=dt.time(8), end=dt.time(21), days=frozenset()), "no weekday"),
        (dict(start=dt.time(8), end=dt.time(21), days=frozenset({7})), r"\[7\]"),
    ],
)
def test_bad_window_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CallingWindow(**kwargs)


def test_window_keeps_frozensets():
    win = CallingWindow(start=dt.time(8), end=dt.time(21), days={0, 1}, holidays=[dt.date(2026, 1, 1)])
    assert win.days == frozenset({0, 1}) and isinstance(win.days, frozenset)
    assert win.holidays == frozenset({dt.date(2026, 1, 1)})
    hash(win)
