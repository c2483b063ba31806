"""The trio AMI client against a replaying AMI peer over real TCP on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from functools import partial
import ssl
from pathlib import Path

import pytest
import trio
import trustme

from dialer.ami.codec.message import Message
from dialer.ami.connection import ConnectionStateChanged, open_ami
from dialer.ami.errors import (
    ActionTimeout,
    AMIActionError,
    AuthenticationError,
    ConnectError,
    ConnectionLost,
    NotConnected,
    PermissionDenied,
)
from tests.ami_replay import ReplayServer, Transcript

from tests.transcripts import TRANSCRIPTS

NAMES = [
    "login-success", "login-failure", "permission-denied", "unknown-action", "ping",
    "coreshowchannels", "coreshowchannels-idle", "command-core-show-channels", "status",
    "originate-answered", "queuestatus", "userevent",
]
LOADED = {name: Transcript.load(TRANSCRIPTS, name) for name in NAMES}
SCRIPT = {
    "Ping": ("ping", 0),
    "CoreShowChannels": ("coreshowchannels", 0),
    "Command": ("command-core-show-channels", 0),
    "Status": ("status", 0),
    "Originate": ("originate-answered", 0),
    "QueueStatus": ("queuestatus", 0),
    "UserEvent": ("userevent", 0),
}
SECRET = "dialerpass"


def make_server(**kw) -> ReplayServer:
    kw.setdefault("script", SCRIPT)
    kw.setdefault("users", {"dialer": SECRET, "limited": "lim"})
    kw.setdefault("deny", {"limited": {"Originate", "Command"}})
    return ReplayServer(LOADED, **kw)


@pytest.fixture
async def server(nursery):
    srv = make_server()
    await nursery.start(srv.serve)
    return srv


async def next_state(events) -> ConnectionStateChanged:
    """The next connection notice, skipping events (e.g. FullyBooted after login)."""
    while True:
        item = await events.receive()
        if isinstance(item, ConnectionStateChanged):
            return item


def connect(srv: ReplayServer, **kw):
    kw.setdefault("username", "dialer")
    kw.setdefault("secret", SECRET)
    kw.setdefault("name", "pbx1")
    kw.setdefault("ping_interval", None)
    return open_ami("127.0.0.1", srv.port, **kw)


ORIGINATE = [
    ("Channel", "Local/15551230000@carrier"), ("Context", "dialer-connect"), ("Exten", "s"),
    ("Priority", "1"), ("Async", "true"), ("Timeout", "20000"),
]


async def test_login_and_ping(server):
    async with connect(server) as ami:
        assert ami.is_connected and ami.generation == 1
        assert ami.banner is not None and ami.banner.version == "11.0.0"
        reply = await ami.action("Ping")
        assert (reply.kind, reply.name, reply["Ping"]) == ("response", "Success", "Pong")
        stats = ami.statistics()
        assert stats.actions_sent == 1 and stats.responses_in >= 1 and stats.connected
    login, ping, logoff = server.actions
    assert (login.name, login["Username"], login["Secret"]) == ("Login", "dialer", SECRET)
    assert "Events" not in login
    assert ping.name == "Ping" and reply.action_id == ping.action_id
    assert logoff.name == "Logoff"
    assert len({login.action_id, ping.action_id, logoff.action_id}) == 3


async def test_wrong_secret_is_a_clear_error_and_no_retry(server, autojump_clock):
    start = trio.current_time()
    with pytest.raises(AuthenticationError) as info:
        async with connect(server, secret="wrong-secret-123"):
            pass  # pragma: no cover
    text = str(info.value)
    assert "pbx1" in text and "Authentication failed" in text and "dialer" in text
    assert "wrong-secret-123" not in text
    assert trio.current_time() - start >= 1.0  # the server's delay, on the mock clock
    assert server.connections == 1


async def test_connection_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectError) as info:
        async with open_ami("127.0.0.1", port, username="u", secret="s", name="pbx9"):
            pass  # pragma: no cover
    assert "pbx9" in str(info.value) and "refused" in str(info.value)


async def test_not_an_ami_server(nursery):
    async def http(stream):
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await trio.sleep(1)

    listeners = await nursery.start(partial(trio.serve_tcp, http, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    with pytest.raises(ConnectError) as info:
        async with open_ami("127.0.0.1", port, username="u", secret="s", name="web"):
            pass  # pragma: no cover
    assert "not an AMI server" in str(info.value) and "HTTP/1.1" in str(info.value)


async def test_silent_peer_hits_login_timeout(nursery, autojump_clock):
    async def mute(stream):
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, mute, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    start = trio.current_time()
    with pytest.raises(ConnectError) as info:
        async with open_ami("127.0.0.1", port, username="u", secret="s", login_timeout=7):
            pass  # pragma: no cover
    assert "within 7 s" in str(info.value)
    assert trio.current_time() - start == pytest.approx(7)


async def test_events_off_and_md5_login(server):
    async with connect(server, events=False, md5=True) as ami:
        await ami.action("Ping")
    challenge, login = server.actions[:2]
    assert challenge.name == "Challenge" and challenge["AuthType"] == "MD5"
    assert login["AuthType"] == "MD5" and "Secret" not in login and len(login["Key"]) == 32
    assert login["Events"] == "off"


async def test_md5_login_with_wrong_secret(server, autojump_clock):
    with pytest.raises(AuthenticationError):
        async with connect(server, md5=True, secret="nope"):
            pass  # pragma: no cover


async def test_error_responses(server):
    async with connect(server) as ami:
        with pytest.raises(AMIActionError) as info:
            await ami.action("NoSuchAction")
        assert not isinstance(info.value, PermissionDenied)
        assert "Invalid/unknown command" in info.value.reason
        assert info.value.response.name == "Error"
        # The connection is still fine afterwards.
        assert (await ami.action("Ping"))["Ping"] == "Pong"
        assert ami.statistics().action_errors == 1


async def test_permission_denied(server):
    async with connect(server, username="limited", secret="lim") as ami:
        with pytest.raises(PermissionDenied) as info:
            await ami.action("Originate", ORIGINATE)
        assert "pbx1" in str(info.value) and "Permission denied" in str(info.value)
        assert info.value.action == "Originate"


def recorded_list_items(name: str) -> list[str]:
    """The names of the list events a recorded list action answered with."""
    _, replies = LOADED[name].exchanges[1]
    names = [r.split(b"\r\n", 1)[0].decode().partition(": ")[2] for r in replies]
    assert names[0] == "Success" and names[-1].endswith("Complete")
    return names[1:-1]


async def test_list_actions(server):
    async with connect(server) as ami:
        response, items = await ami.list_action("CoreShowChannels")
        assert response["EventList"].lower() == "start"
        assert [e.name for e in items] == ["CoreShowChannel"] * 8
        assert {e.action_id for e in items} == {response.action_id}
        response, items = await ami.list_action("Status")
        assert [e.name for e in items] == ["Status"] * 8
        _, items = await ami.list_action("QueueStatus")
        assert [e.name for e in items] == recorded_list_items("queuestatus")
        # Two queues (agents: 3 members, busy: 2), each a QueueParams and its members.
        assert sorted(e.name for e in items) == ["QueueMember"] * 5 + ["QueueParams"] * 2
        # A plain action through list_action: no EventList, no items.
        response, items = await ami.list_action("Ping")
        assert response["Ping"] == "Pong" and items == []


async def test_list_events_are_not_published_but_others_are(server):
    async with connect(server) as ami:
        async with ami.subscribe(names={"UserEvent", "CoreShowChannel"}) as events:
            assert events.receive_nowait() == ConnectionStateChanged(up=True, generation=1)
            await ami.list_action("CoreShowChannels")
            reply = await ami.action("UserEvent", [("UserEvent", "DialerTest")])
            got = await events.receive()
            assert got.name == "UserEvent" and got.action_id == reply.action_id
            with pytest.raises(trio.WouldBlock):
                events.receive_nowait()


async def test_command_output(server):
    async with connect(server) as ami:
        reply = await ami.action("Command", [("Command", "core show channels")])
        assert reply.output[-3] == "8 active channels" and reply.output[-2] == "6 active calls"
        assert reply.output[-1].endswith(" calls processed")


async def test_originate_events_reach_subscribers(server):
    async with connect(server) as ami:
        async with ami.subscribe(max_buffer=500) as events, ami.subscribe(names={"Hangup"}) as hangups:
            reply = await ami.action("Originate", ORIGINATE, action_id="orig-test-1")
            assert reply.action_id == "orig-test-1"
            assert reply["Message"] == "Originate successfully queued"
            seen = []
            with trio.fail_after(5):
                while len(seen) < 10 or seen[-1].name != "Hangup" or len([s for s in seen if s.name == "Hangup"]) < 4:
                    item = await events.receive()
                    if isinstance(item, Message):
                        seen.append(item)
            response = [e for e in seen if e.name == "OriginateResponse"]
            assert len(response) == 1 and response[0].action_id == "orig-test-1"
            assert response[0]["Reason"] == "4"
            assert hangups.receive_nowait() == ConnectionStateChanged(up=True, generation=1)
            names = []
            while True:
                try:
                    names.append(hangups.receive_nowait().name)
                except trio.WouldBlock:
                    break
            assert names == ["Hangup"] * 4
    assert [a.name for a in server.actions].count("Originate") == 1


async def test_action_ids_unique_across_connections(server):
    async with connect(server) as a, connect(server, name="pbx1b") as b:
        replies = []
        for _ in range(5):
            replies.append(await a.action("Ping"))
            replies.append(await b.action("Ping"))
    ids = [m.action_id for m in server.actions]
    assert len(ids) == len(set(ids)) == 14  # 2 logins, 10 pings, 2 logoffs


async def test_duplicate_caller_action_id_in_flight_is_refused(server):
    server.silent.add("originate")
    async with connect(server) as ami:
        async with trio.open_nursery() as n:
            n.start_soon(lambda: ami.action("Originate", ORIGINATE, action_id="same", timeout=3))
            await trio.sleep(0.05)
            with pytest.raises(Exception) as info:
                await ami.action("Ping", action_id="same")
            assert "already in flight" in str(info.value)
            n.cancel_scope.cancel()


async def test_reconnect_after_drop(server, autojump_clock):
    async with connect(server, backoff_initial=1, backoff_max=4) as ami:
        async with ami.subscribe() as events:
            assert (await next_state(events)).generation == 1
            server.drop()
            down = await next_state(events)
            assert down.up is False and down.generation == 1 and down.reason
            up = await next_state(events)
            assert up == ConnectionStateChanged(up=True, generation=2)
            assert (await ami.action("Ping"))["Ping"] == "Pong"
        stats = ami.statistics()
        assert stats.reconnects == 1 and stats.disconnects == 1 and stats.generation == 2
    assert server.logins == 2


async def test_action_in_flight_fails_and_is_never_resent(server, autojump_clock):
    server.silent.add("originate")
    async with connect(server) as ami:
        async def originate():
            with pytest.raises(ConnectionLost) as info:
                await ami.action("Originate", ORIGINATE, action_id="orig-lost", timeout=60)
            assert "orig-lost" in str(info.value) and "not resent" in str(info.value)

        async with trio.open_nursery() as n:
            n.start_soon(originate)
            while not any(a.name == "Originate" for a in server.actions):
                await trio.sleep(0.01)
            server.drop()
        await ami.wait_connected(timeout=30)
        assert ami.generation == 2
        await ami.action("Ping")
        assert ami.statistics().actions_lost == 1
    assert [a.action_id for a in server.actions if a.name == "Originate"] == ["orig-lost"]


async def test_action_timeout_keeps_connection(server, autojump_clock):
    server.silent.add("originate")
    async with connect(server, action_timeout=4) as ami:
        start = trio.current_time()
        with pytest.raises(ActionTimeout) as info:
            await ami.action("Originate", ORIGINATE)
        assert info.value.sent is True
        assert trio.current_time() - start == pytest.approx(4)
        assert ami.is_connected
        assert (await ami.action("Ping"))["Ping"] == "Pong"
        assert ami.statistics().action_timeouts == 1


async def test_auth_failure_on_reconnect_stops_retrying(server, autojump_clock):
    async with connect(server) as ami:
        async with ami.subscribe() as events:
            await events.receive()
            server.users["dialer"] = "rotated"
            server.drop()
            items = [item async for item in events]  # ends: the channel is closed
        states = [i for i in items if isinstance(i, ConnectionStateChanged)]
        assert [s.up for s in states] == [False]
        with pytest.raises(NotConnected):
            await ami.action("Ping")
        with pytest.raises(AuthenticationError):
            await ami.wait_connected()
        assert server.connections == 2


async def test_no_reconnect_closes_subscribers(server, autojump_clock):
    async with connect(server, reconnect=False) as ami:
        async with ami.subscribe() as events:
            await events.receive()
            server.drop()
            items = [item async for item in events]
        assert [i.up for i in items if isinstance(i, ConnectionStateChanged)] == [False]
        with pytest.raises(NotConnected):
            await ami.wait_connected()
    assert server.connections == 1


async def test_ping_detects_stalled_peer(server, autojump_clock):
    async with connect(server, ping_interval=20, ping_timeout=5, backoff_initial=1) as ami:
        server.stalled = True
        while ami.statistics().ping_failures == 0:
            await trio.sleep(1)
        assert 24 <= trio.current_time() <= 27
        server.stalled = False
        await ami.wait_connected(timeout=60)
        assert ami.generation >= 2
        assert (await ami.action("Ping"))["Ping"] == "Pong"


async def test_backpressure_loses_nothing_and_is_not_a_dead_peer(server, autojump_clock):
    events_bytes = b"".join(
        b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: Flood\r\nSeq: %d\r\n\r\n" % i
        for i in range(3000)
    )
    async with connect(server, ping_interval=10, ping_timeout=2) as ami:
        async with ami.subscribe(max_buffer=10, names={"UserEvent"}) as events:
            await events.receive()
            async with trio.open_nursery() as n:
                n.start_soon(server.push, events_bytes)
                await trio.sleep(120)  # not reading: the reader waits, pings go unanswered
                assert ami.is_connected
                got = []
                while len(got) < 3000:
                    got.append(await events.receive())
        assert [int(e["Seq"]) for e in got] == list(range(3000))
        stats = ami.statistics()
        assert stats.backpressure_waits > 0 and stats.backpressure_seconds >= 100
        assert stats.disconnects == 0 and stats.ping_failures == 0


async def test_require_initial_false_waits_for_server(autojump_clock, nursery):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with open_ami(
        "127.0.0.1", port, username="dialer", secret=SECRET, require_initial=False,
        backoff_initial=1, backoff_max=8, ping_interval=None,
    ) as ami:
        assert not ami.is_connected
        with pytest.raises(NotConnected):
            await ami.action("Ping")
        with pytest.raises(NotConnected):
            await ami.wait_connected(timeout=60)
        failures = ami.statistics().connect_failures
        # Delays double up to 8 s with a factor in [0.5, 1]: 1 + 2 + 4 + 8 * k (halved at worst).
        assert 8 <= failures <= 20, failures
        assert "refused" in ami.statistics().last_error


async def test_tls(nursery):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    srv = make_server(ssl_context=server_ctx)
    await nursery.start(srv.serve)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with connect(srv, ssl_context=client_ctx) as ami:
        assert (await ami.action("Ping"))["Ping"] == "Pong"
        _, items = await ami.list_action("CoreShowChannels")
        assert len(items) == 8
    # A certificate from an unknown CA is refused with a clear error.
    with pytest.raises(ConnectError) as info:
        async with connect(srv, ssl_context=ssl.create_default_context()):
            pass  # pragma: no cover
    assert "TLS" in str(info.value) and "pbx1" in str(info.value)


async def test_secret_never_logged_or_shown(server, caplog, autojump_clock):
    caplog.set_level(logging.DEBUG)
    async with connect(server) as ami:
        await ami.action("Ping")
        server.drop()
        await trio.sleep(5)
        await ami.wait_connected(timeout=30)
        shown = repr(ami) + repr(ami.statistics()) + repr(server.actions)
    with pytest.raises(AuthenticationError) as info:
        async with connect(server, secret="s3cr3t-wrong"):
            pass  # pragma: no cover
    shown += str(info.value) + repr(info.value)
    assert SECRET not in shown and "s3cr3t-wrong" not in shown
    assert SECRET not in caplog.text and "s3cr3t-wrong" not in caplog.text
    assert "pbx1" in caplog.text  # the logs did say something


async def test_block_that_fails_at_once_still_logs_off(server):
    with pytest.raises(ExceptionGroup) as info:
        async with connect(server):
            raise ValueError("boom")
    assert info.group_contains(ValueError)
    assert [a.name for a in server.actions] == ["Login", "Logoff"]
    with trio.fail_after(5):
        while server.active:
            await trio.sleep(0.01)


async def test_subscription_at_block_start_sees_events_right_after_login(nursery):
    srv = make_server(after_login=b"Event: UserEvent\r\nUserEvent: Early\r\n\r\n")
    await nursery.start(srv.serve)
    async with connect(srv) as ami:
        async with ami.subscribe() as events:
            assert await next_state(events) == ConnectionStateChanged(up=True, generation=1)
            first, second = await events.receive(), await events.receive()
            assert (first.name, second.name, second["UserEvent"]) == ("FullyBooted", "UserEvent", "Early")


async def test_batch_subscribers_get_lists_in_order_with_backpressure(server, autojump_clock):
    events_bytes = b"".join(
        b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: Flood\r\nSeq: %d\r\n\r\n" % i
        + (b"Event: Newexten\r\nSeq: %d\r\n\r\n" % i if i % 10 == 0 else b"")
        for i in range(3000)
    )
    async with connect(server) as ami:
        flood = {"UserEvent", "Newexten"}
        async with ami.subscribe(max_buffer=2, names=flood, batches=True) as batches, \
                ami.subscribe(max_buffer=2, names={"Newexten"}, batches=True) as picked, \
                ami.subscribe(max_buffer=5000, names=flood) as single:
            assert await batches.receive() == ConnectionStateChanged(up=True, generation=1)
            assert await picked.receive() == ConnectionStateChanged(up=True, generation=1)
            async with trio.open_nursery() as n:
                n.start_soon(server.push, events_bytes)
                await trio.sleep(60)  # not reading: the reader waits for room, drops nothing
                everything, newexten = [], []

                async def read(channel, into, n):
                    while len(into) < n:
                        batch = await channel.receive()
                        assert type(batch) is list and batch
                        into += batch

                with trio.fail_after(30):
                    async with trio.open_nursery() as readers:
                        readers.start_soon(read, batches, everything, 3300)
                        readers.start_soon(read, picked, newexten, 300)
                assert all(e.name == "Newexten" for e in newexten)
            # a subscriber of single events alongside gets the same events
            seen = []
            while len(seen) < 3300:
                item = single.receive_nowait()
                if isinstance(item, Message):
                    seen.append(item)
            assert [e["Seq"] for e in seen] == [e["Seq"] for e in everything]
        assert [(e.name, int(e["Seq"])) for e in everything] == [
            (name, i) for i in range(3000)
            for name in (("UserEvent", "Newexten") if i % 10 == 0 else ("UserEvent",))
        ]
        assert [int(e["Seq"]) for e in newexten] == list(range(0, 3000, 10))
        stats = ami.statistics()
        assert stats.backpressure_waits > 0 and stats.disconnects == 0


async def test_logoff_timeout_zero_sends_logoff_and_leaves_at_once(server, autojump_clock):
    server.silent.add("logoff")
    start = trio.current_time()
    async with connect(server, logoff_timeout=0) as ami:
        await ami.action("Ping")
    assert trio.current_time() - start < 0.5
    assert [a.name for a in server.actions] == ["Login", "Ping", "Logoff"]
