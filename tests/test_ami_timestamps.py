"""Asterisk's event Timestamps mapped onto the reader's clock (dialer.ami.timestamps)."""

import pytest

from dialer.ami.timestamps import ServerClock


def test_backlog_does_not_stretch_intervals():
    clock = ServerClock()
    # Asterisk's clock is 3.5 s behind the reader's; the quickest delivery takes 2 ms.
    assert clock.event_time("1000.000000", 1003.502) == pytest.approx(1003.502)
    # An answer at Asterisk's 1010.0 read 10 ms late, the agent taking the call
    # 1.5 s later read 2.5 s late (a backlog): 1.5 s apart, not 4 s.
    answered = clock.event_time("1010.000000", 1013.512)
    connected = clock.event_time("1011.500000", 1016.002)
    assert answered == pytest.approx(1013.502)
    assert connected == pytest.approx(1015.002)
    assert connected - answered == pytest.approx(1.5)
    assert clock.offset == pytest.approx(3.502)
    assert clock.stamped == 3 and clock.unstamped == 0


def test_an_event_never_happens_after_it_was_read():
    clock = ServerClock()
    clock.event_time("100.0", 100.5)
    # Quicker than ever before (the clocks stepped, or the first one was slow):
    # the new smallest lag counts at once.
    assert clock.event_time("200.0", 200.1) == pytest.approx(200.1)
    assert clock.event_time("201.0", 201.3) == pytest.approx(201.1)


def test_a_clock_step_that_makes_lags_larger_is_followed_within_two_windows():
    clock = ServerClock(window=60.0)
    clock.event_time("0.0", 0.0)
    # Asterisk's clock steps back 5 s: its events now look 5 s older than they are.
    assert clock.event_time("5.0", 10.0) == pytest.approx(5.0)
    assert clock.event_time("65.0", 70.0) == pytest.approx(65.0)   # second window
    assert clock.event_time("125.0", 130.0) == pytest.approx(130.0)  # first window forgotten
    assert clock.offset == pytest.approx(5.0)


def test_a_long_silence_forgets_the_old_offset():
    clock = ServerClock(window=60.0)
    clock.event_time("0.0", 0.0)
    assert clock.event_time("495.0", 500.0) == pytest.approx(500.0)


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf"])
def test_without_a_usable_timestamp_the_read_time_is_used(value):
    clock = ServerClock()
    assert clock.event_time(value, 42.0) == 42.0
    assert clock.unstamped == 1 and clock.stamped == 0 and clock.offset is None
