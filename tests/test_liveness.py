"""Engine liveness locks (dialer.liveness) on SQLite and PostgreSQL."""

import subprocess
import sys

import pytest

from dialer import db, liveness
from dialer.errors import UserError


@pytest.fixture
def bind(db_url):
    engine = db.create_engine(db_url)
    yield engine
    engine.dispose()


def alive(bind, name):
    with db.session_factory(bind).begin() as s:
        return liveness.engine_alive(s, name)


def test_a_name_is_held_by_one_run_at_a_time(bind):
    first = liveness.EngineLock(bind, "pbx-a")
    first.acquire()
    try:
        assert alive(bind, "pbx-a") and not alive(bind, "pbx-b")
        with pytest.raises(UserError, match="engine 'pbx-a' is already running"):
            liveness.EngineLock(bind, "pbx-a").acquire()
        other = liveness.EngineLock(bind, "pbx-b")
        other.acquire()
        assert alive(bind, "pbx-b") and first.held()
        other.release()
        assert not alive(bind, "pbx-b")
    finally:
        first.release()
    assert not alive(bind, "pbx-a")
    again = liveness.EngineLock(bind, "pbx-a")
    again.acquire()
    again.release()


def test_the_lock_dies_with_the_process(bind, db_url):
    """A process holding a name is SIGKILLed: the name is free at once."""
    code = (
        "import sys, time; from dialer import db, liveness\n"
        f"lock = liveness.EngineLock(db.create_engine({db_url!r}), 'pbx-k'); lock.acquire()\n"
        "print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"held\n"
        assert alive(bind, "pbx-k")
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not alive(bind, "pbx-k")


def test_dead_owners(bind):
    live = liveness.EngineLock(bind, "pbx-live")
    live.acquire()
    try:
        mine_now = liveness.lease_owner("pbx-a", "a" * 12)
        mine_before = liveness.lease_owner("pbx-a", "b" * 12)
        owners = {
            mine_before,                                 # an earlier run of this engine
            liveness.lease_owner("pbx-live", "c" * 12),  # a live engine's
            liveness.lease_owner("pbx-gone", "d" * 12),  # nobody holds pbx-gone
            "host:123:abcdef",                           # written before runs had tokens
        }
        with db.session_factory(bind).begin() as s:
            dead = liveness.dead_owners(s, owners | {mine_now}, engine_id="pbx-a", run="a" * 12)
        assert dead == {mine_before, liveness.lease_owner("pbx-gone", "d" * 12), "host:123:abcdef"}
    finally:
        live.release()


@pytest.mark.parametrize("bad", ["", "x" * 81, "two words", "tab\there"])
def test_engine_ids_are_checked(bad):
    with pytest.raises(UserError, match="--engine-id"):
        liveness.check_engine_id(bad)


def test_owner_engine():
    assert liveness.owner_engine("host:1:ab#0123456789ab") == ("host:1:ab", "0123456789ab")
    assert liveness.owner_engine("a#b#0123456789ab") == ("a#b", "0123456789ab")
    assert liveness.owner_engine("old-style") == ("old-style", None)
