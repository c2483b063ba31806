import pytest

from dialer.ami.ratelimit import RateLimiter
from tests.engine_harness import max_in_window


def drive(limiter, start, end):
    """Send as soon as the limiter allows, from start to end."""
    now, sent = start, []
    while now < end:
        if limiter.try_take(now):
            sent.append(now)
        else:
            now = limiter.next_time(now)
    return sent


def test_burst_then_steady_rate():
    lim = RateLimiter(10, burst=3, now=0.0)
    assert lim.available(0.0) == 3
    assert [lim.try_take(0.0) for _ in range(4)] == [True, True, True, False]
    assert lim.next_time(0.0) == pytest.approx(0.1)
    assert lim.try_take(0.1)
    assert not lim.try_take(0.1)


def test_never_more_than_cap_in_any_one_second_window():
    lim = RateLimiter(50, burst=20, now=0.0)
    sent = drive(lim, 0.0, 10.0)
    assert max_in_window(sent) == 50
    # and the long-run rate is the cap: 50/s over 10 s, give or take the edges
    assert 495 <= len(sent) <= 520


def test_idle_time_saves_at_most_burst():
    lim = RateLimiter(5, burst=2, now=0.0)
    assert lim.available(100.0) == 2


def test_fractional_rate():
    lim = RateLimiter(0.5, burst=1, now=0.0)
    sent = drive(lim, 0.0, 10.0)
    assert sent == [0.0, 2.0, 4.0, 6.0, 8.0]


@pytest.mark.parametrize("rate,burst", [(0, 1), (-1, 1), (10, 0)])
def test_bad_settings_refused(rate, burst):
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)


def test_refund_gives_the_send_back():
    lim = RateLimiter(2, burst=2, now=0.0)
    assert lim.try_take(0.0) and lim.try_take(0.0)
    assert lim.available(0.0) == 0
    lim.refund(0.0)
    assert lim.available(0.0) == 1
    assert lim.try_take(0.0)
    assert not lim.try_take(0.0)



def test_sends_are_counted_from_when_they_reached_the_wire():
    lim = RateLimiter(10, burst=10, now=0.0)
    # Ten sends let go at once; the first one's bytes left only 0.3 s later
    # (other work ran in between), the others at once.
    assert all(lim.try_take(0.0) for _ in range(10))
    lim.restamp(0.0, 0.3)
    # At 1.0 s the nine sent at 0.0 have left the window; the one that left at
    # 0.3 s has not: nine more now, the tenth at 1.3 s (ten at 1.0 s would
    # make eleven on the wire in the second from 0.3 s).
    assert [lim.try_take(1.0) for _ in range(10)] == [True] * 9 + [False]
    assert lim.next_time(1.0) == pytest.approx(1.3)
    assert not lim.try_take(1.29) and lim.try_take(1.3)
    assert max_in_window([0.0] * 9 + [0.3] + [1.0] * 9 + [1.3]) == 10


def test_a_send_restamped_after_leaving_the_window_changes_nothing():
    lim = RateLimiter(2, burst=2, now=0.0)
    assert lim.try_take(0.0)
    assert lim.available(5.0) == 2
    lim.restamp(0.0, 0.1)
    assert lim.available(5.0) == 2
