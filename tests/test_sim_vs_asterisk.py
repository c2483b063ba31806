"""The simulator side by side with the real Asterisk (see tests/fidelity.py): the
same campaign, and the same queue situation, give the same outcome per lead and
the same events per call on both."""

from __future__ import annotations

import pytest

from tests import fidelity

pytestmark = pytest.mark.asterisk


def test_campaign_on_asterisk_and_on_the_simulator(asterisk, tmp_path):
    real, sim = fidelity.campaign_side_by_side(asterisk, tmp_path)
    assert len(real.outcomes) == len(fidelity.CAMPAIGN_DIGITS) and real.events > 100
    # Every digit's outcome on the real Asterisk, as the dialplan says.
    by_digit = {"4": "busy", "5": "congestion", "6": "no_answer", "8": "invalid_number"}
    for phone, disposition in real.outcomes.items():
        assert disposition == by_digit.get(phone[-1], "connected"), phone
    differences = fidelity.compare_runs(real, sim)
    assert differences == [], "\n".join(map(str, differences))


def test_queue_with_every_agent_busy(asterisk):
    real, sim = fidelity.queue_busy_side_by_side(asterisk)
    assert real.outcomes == {"long-1": "connected", "long-2": "connected", "long-3": "connected",
                             "drop": "dropped", "waits": "connected"}
    differences = fidelity.compare_runs(real, sim)
    assert differences == [], "\n".join(map(str, differences))


QUEUE_OUTCOMES = {
    "paused": {"long": "connected", "waits": "dropped", "stays": "dropped", "joinempty": "dropped"},
    "wrapuptime": {"first": "connected", "in-wrapup": "dropped", "after": "connected"},
    "ringinuse": {"inuse": "dropped", "free": "connected"},
}


@pytest.mark.parametrize("name", sorted(QUEUE_OUTCOMES))
def test_queue_behaviours_the_dialer_relies_on(asterisk, name):
    real, sim = fidelity.queue_behaviour_side_by_side(asterisk, name)
    assert real.outcomes == QUEUE_OUTCOMES[name]
    differences = fidelity.compare_runs(real, sim)
    assert differences == [], "\n".join(map(str, differences))
