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

