"""The AMI client against the simulated Asterisk (dialer.sim) over TCP, on trio's mock clock."""

from __future__ import annotations

import pytest
import trio

from dialer.ami.codec.message import Message
from dialer.ami.connection import ConnectionStateChanged, open_ami
from dialer.ami.errors import AuthenticationError, PermissionDenied
from dialer.sim.server import SimAsterisk

ORIGINATE = [
    ("Context", "dialer-connect"), ("Exten", "s"), ("Priority", "1"), ("Async", "true"),
    ("Timeout", "20000"), ("CallerID", '"Campaign" <15550001000>'),
]


@pytest.fixture
async def sim(nursery):
    server = SimAsterisk(seed=7)
    await nursery.start(server.serve)
    return server


def connect(sim, **kw):
    kw.setdefault("username", "dialer")
    kw.setdefault("secret", "dialerpass")
    kw.setdefault("ping_interval", None)
    return open_ami("127.0.0.1", sim.port, name="sim", **kw)


async def test_answered_call_end_to_end(sim, autojump_clock):
    async with connect(sim) as ami:
        async with ami.subscribe(max_buffer=1000) as events:
            assert (await events.receive()) == ConnectionStateChanged(up=True, generation=1)
            reply = await ami.action(
                "Originate",
                [("Channel", "Local/15551230000@carrier"), *ORIGINATE,
                 ("ChannelId", "lead-1-a"), ("OtherChannelId", "lead-1-b")],
                action_id="orig-1",
            )
            assert reply["Message"] == "Originate successfully queued"
            seen: list[Message] = []
            with trio.fail_after(120):
                while sum(1 for e in seen if e.name == "Hangup") < 4:
                    item = await events.receive()
                    if isinstance(item, Message):
                        seen.append(item)
    response = [e for e in seen if e.name == "OriginateResponse"]
    assert len(response) == 1
    assert (response[0].action_id, response[0]["Reason"], response[0]["Uniqueid"]) == (
        "orig-1", "4", "lead-1-a",
    )
    assert {e["Linkedid"] for e in seen if e.name == "Newchannel"} == {"lead-1-a"}


async def test_list_action_and_command_during_a_call(sim, autojump_clock):
    async with connect(sim, events=False) as ami:
        await ami.action("Originate", [("Channel", "Local/15551230009@carrier"), *ORIGINATE])
        await trio.sleep(5)  # answered after 3 s, then queued to an agent
        response, items = await ami.list_action("CoreShowChannels")
        assert response["EventList"].lower() == "start"
        assert len(items) >= 2 and all(e.name == "CoreShowChannel" for e in items)
        reply = await ami.action("Command", [("Command", "core show channels")])
        assert any(line.endswith("active channels") for line in reply.output)


async def test_busy_call_reason(sim, autojump_clock):
    async with connect(sim) as ami:
        async with ami.subscribe(names={"OriginateResponse"}) as events:
            await events.receive()
            await ami.action(
                "Originate", [("Channel", "Local/15551230004@carrier"), *ORIGINATE],
                action_id="busy-1",
            )
            with trio.fail_after(60):
                event = await events.receive()
    assert (event.action_id, event["Response"], event["Reason"]) == ("busy-1", "Failure", "5")


async def test_sim_refuses_wrong_secret_and_denies_originate(sim, autojump_clock):
    with pytest.raises(AuthenticationError):
        async with connect(sim, secret="nope"):
            pass  # pragma: no cover
    async with connect(sim, username="limited", secret="limitedpass") as ami:
        with pytest.raises(PermissionDenied):
            await ami.action("Command", [("Command", "core show channels")])
