"""The drop message with its opt-out key on a real Asterisk: an answered call that no
agent takes hears the README's dialer-drop, the called party presses 9 (the carrier
side, with SendDTMF), the UserEvent reaches the engine and the number is on the
do-not-call list at once; a called party who does not press stays off it.

Two dialplans: the README's own (Queue() gives up after 2 s and goes on to the drop
message), and an operator's without the give-up, where the engine's safety net moves
the call there with AMI Redirect."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
import trio

from dialer.compliance import rules
from dialer.calls.drops import GRACE
from dialer.engine import Engine
from dialer.models import Campaign, DncNumber, Lead
from tests.real_tier import EventLog, attempts, campaign, fast_settings, sessions_for

pytestmark = pytest.mark.asterisk

#: seconds of lateness allowed to what the engine does in real time
CLOCK_SLACK = 1.0

# The carrier's 1646555XXXX numbers answer after 1 s; a last digit 9 presses 9
# PRESS_AFTER (4.5 s) after answering, while the message's Read() waits.
PRESSES = "+16465550009"
SILENT = "+16465550010"


@pytest.mark.parametrize("context, moved", [("dialer-connect-drop", 0), ("dialer-connect-nogiveup", 2)])
async def test_opt_out_key_on_the_drop_message(asterisk, sqlite_url, context, moved):
    engine_db, sessions = sessions_for(sqlite_url)
    campaign(sessions, "drops", [PRESSES, SILENT], mode="progressive", context=context,
             max_concurrent=2)
    # The same numbers waiting in another campaign: an opt-out makes them dnc there too.
    campaign(sessions, "autumn", [PRESSES, SILENT], state="stopped")
    engine = Engine(sessions, [asterisk.config_for_dialer()], settings=fast_settings(),
                    until_done=True)
    try:
        with EventLog(asterisk) as log:
            with trio.fail_after(60):
                await engine.run()
    finally:
        engine_db.dispose()
    assert log.error is None
    rows = {a.phone_e164: a for a in attempts(sessions, "drops")}
    assert {p: a.disposition for p, a in rows.items()} == {PRESSES: "dropped", SILENT: "dropped"}
    with sessions.begin() as s:
        listed = dict(s.execute(sa.select(DncNumber.phone_e164, DncNumber.source)).all())
        autumn = dict(s.execute(
            sa.select(Lead.phone_e164, Lead.state).join(Campaign, Campaign.id == Lead.campaign_id)
            .where(Campaign.name == "autumn")).all())
    assert listed == {PRESSES: f"opt-out attempt {rows[PRESSES].id}"}
    assert autumn == {PRESSES: "dnc", SILENT: "new"}
    assert engine.counters["opt_outs"] == 1
    assert engine.counters["drop_redirects"] == moved
    # Both heard the drop message: 2 s after joining the queue (the answer: both
    # dialplans queue the call at once), or the safety net's grace later (CLOCK_SLACK
    # for a loaded machine).
    for phone, attempt in rows.items():
        events = log.call_events(attempt.channel_id)
        joined = next(log.at(e) for e in events if e.name == "QueueCallerJoin")
        # (After a Redirect, the first Newexten in dialer-drop still names the
        # application the channel was in, Queue.)
        entered = [log.at(e) for e in events
                   if e.name == "Newexten" and e.get("Context") == "dialer-drop"]
        assert entered, phone
        waited = entered[0] - joined
        assert rules.CONNECT_DEADLINE - 0.1 <= waited < rules.CONNECT_DEADLINE + GRACE + CLOCK_SLACK, phone
        pressed = [e for e in events if e.name == "UserEvent"]
        assert len(pressed) == (1 if phone == PRESSES else 0), phone
