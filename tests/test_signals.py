"""dialer.signals: SIGINT/SIGTERM held back inside a block, and put back after it
unless the block ends a console command."""

from __future__ import annotations

import os
import signal

import pytest

from dialer import signals


@pytest.fixture
def console(monkeypatch):
    monkeypatch.setattr(signals, "_hold_to_exit", False)
    before = {s: signal.getsignal(s) for s in signals.HELD}
    yield
    for s, handler in before.items():
        signal.signal(s, handler)


def test_signals_inside_the_block_are_counted_not_raised(console):
    with signals.DeferredSignals() as held:
        assert not held.received()
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert held.received() and held.name == "SIGINT" and held.count == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)


def test_a_block_ending_a_command_restores_the_handlers_when_called_from_python(console):
    with signals.DeferredSignals(to_exit=True):
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_in_the_console_command_a_final_block_holds_signals_until_exit(console):
    signals.hold_to_exit()
    with signals.DeferredSignals(to_exit=True) as held:
        pass
    # After the block the command is only printing how it ended: a late Ctrl-C
    # is counted, and neither raises nor changes the exit status.
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
    assert held.count == 2 and held.name == "SIGINT"
    # A block not marked to_exit still puts the handlers back.
    with signals.DeferredSignals():
        pass
    assert signal.getsignal(signal.SIGINT) == held._record
