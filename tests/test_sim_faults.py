"""Faults the simulator injects on demand, and how it treats misbehaving clients."""

from __future__ import annotations

import pytest
import trio

from dialer.ami.codec.errors import RemoteProtocolError
from dialer.sim import SimAsterisk
from tests.sim_harness import Client, start


async def closed(c: Client) -> bool:
    """Read whatever is still in flight; True once the server has closed."""
    while True:
        m = await c.next()
        if m is None:
            return True


async def test_close_after_n_messages(nursery, autojump_clock):
    sim, port = await start(nursery)
    sim.close_after_messages(3)
    c = await Client.connect(port)
    await c.login()  # response + FullyBooted
    await c.send("Ping", action_id="p1")
    await c.send("Ping", action_id="p2")
    assert (await c.next()).name == "FullyBooted"
    assert (await c.next()).action_id == "p1"
    assert await c.next() is None
    assert sim.statistics()["fault_closes"] == 1
    # Later connections get the same treatment until it is turned off.
    sim.close_after_messages(None)
    d = await Client.connect(port)
    await d.login()
    await d.send("Ping", action_id="p")
    assert (await d.response("p"))["Ping"] == "Pong"


async def test_close_one_connection_after_n_more_messages(nursery, autojump_clock):
    sim, port = await start(nursery)
    a = await Client.connect(port)
    await a.login()
    b = await Client.connect(port)
    await b.login()
    (id_a, id_b) = sorted(sim.sessions)
    sim.close_after_messages(1, connection=id_b)
    await b.send("Ping", action_id="x")
    await a.send("Ping", action_id="y")
    assert (await b.response("x"))["Ping"] == "Pong"
    assert await b.next() is None
    assert (await a.response("y"))["Ping"] == "Pong"
    assert list(sim.sessions) == [id_a]


async def test_close_at_a_time(nursery, autojump_clock):
    sim, port = await start(nursery)
    c = await Client.connect(port)
    await c.login()
    sim.close_at(trio.current_time() + 7)
    t0 = trio.current_time()
    assert await closed(c)
    assert trio.current_time() - t0 == pytest.approx(7)


async def test_stall_delays_reading_and_writing(nursery, autojump_clock):
    sim, port = await start(nursery)
    c = await Client.connect(port)
    await c.login()
    sim.stall(4)
    t0 = trio.current_time()
    await c.send("Ping", action_id="p")
    await c.response("p")
    assert trio.current_time() - t0 == pytest.approx(4, abs=0.01)
    sim.stall_new_connections(2)
    t1 = trio.current_time()
    d = await Client.connect(port)
    assert trio.current_time() - t1 == pytest.approx(2, abs=0.01)
    await d.login()


async def test_malformed_and_oversized_bytes_reach_the_client(nursery, autojump_clock):
    sim, port = await start(nursery)
    c = await Client.connect(port)
    await c.login()
    sim.send_malformed()
    with pytest.raises(RemoteProtocolError):
        while True:
            assert await c.next() is not None
            c.messages[-1].items()
    d = await Client.connect(port, max_message_size=1 << 16)
    await d.login()
    sim.send_oversized(1 << 20)
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        while True:
            assert await d.next() is not None


async def test_refused_logins(nursery, autojump_clock):
    sim, port = await start(nursery)
    sim.refuse_logins()
    c = await Client.connect(port)
    t0 = trio.current_time()
    r = await c.login()
    assert (r["Response"], r["Message"]) == ("Error", "Authentication failed")
    assert trio.current_time() - t0 == pytest.approx(1.0)
    assert await c.next() is None
    sim.refuse_logins(False)
    d = await Client.connect(port)
    assert (await d.login())["Response"] == "Success"


async def test_restart_keeping_calls(nursery, autojump_clock):
    sim, port = await start(nursery)
    c = await Client.connect(port)
    await c.login()
    await c.originate("15551230009", "o")
    conn = await c.event("AgentConnect")
    sim.restart(keep_calls=True)
    assert await closed(c)
    d = await Client.connect(port)
    await d.login()
    h = await d.event("Hangup", Channel=conn["Channel"])
    assert h["Cause"] == "16"
    assert sim.statistics()["restarts"] == 1


async def test_restart_losing_calls(nursery, autojump_clock):
    sim, port = await start(nursery)
    c = await Client.connect(port)
    await c.login()
    await trio.sleep(50)
    await c.originate("15551230009", "o")
    await c.event("AgentConnect")
    sim.restart(keep_calls=False)
    assert await closed(c)
    d = await Client.connect(port)
    await d.login()
    booted = await d.event("FullyBooted")
    assert booted["Uptime"] == "0"
    await d.send("CoreShowChannels", action_id="csc")
    await d.response("csc")
    done = await d.event("CoreShowChannelsComplete")
    assert done["ListItems"] == "0"
    assert [m for m in await d.drain(60) if m.name == "Hangup"] == []
    await d.send("QueueStatus", action_id="qs")
    members = []
    while (m := await d.next()).name != "QueueStatusComplete":
        if m.name == "QueueMember":
            members.append(m["InCall"])
    assert members == ["0", "0", "0"]


async def test_slow_reader_is_disconnected_and_the_sim_goes_on(nursery, autojump_clock):
    sim = SimAsterisk(max_outbound_bytes=200_000)
    port = await nursery.start(sim.serve, "127.0.0.1", 0)
    slow = await Client.connect(port)
    await slow.login()
    fast = await Client.connect(port)
    await fast.login(Events="off")
    # The slow client never reads; a few hundred calls' events overflow its backlog.
    for i in range(300):
        await fast.originate("15551230004", f"o{i}")
    await fast.drain(1)
    st = sim.statistics()
    assert st["slow_disconnects"] == 1
    assert st["connections_active"] == 1
    await fast.send("Ping", action_id="p")
    assert (await fast.response("p"))["Ping"] == "Pong"


async def test_client_sending_an_oversized_action_is_dropped(nursery, autojump_clock):
    sim, port = await start(nursery)
    c = await Client.connect(port)
    await c.login()
    await c.stream.send_all(b"Action: Ping\r\nX: " + b"y" * 100_000 + b"\r\n\r\n")
    assert await closed(c)
    assert [m for m in c.messages[1:] if m.kind == "response"] == [c.messages[1]]
    assert sim.statistics()["protocol_errors"] == 1


async def test_malformed_action_line_closes_the_connection(nursery, autojump_clock):
    sim, port = await start(nursery)
    c = await Client.connect(port)
    await c.login()
    await c.stream.send_all(b"Action: Ping\r\nthis has no colon\r\n\r\n")
    assert await closed(c)
    assert sim.statistics()["protocol_errors"] == 1


async def test_reader_that_stops_reading_is_dropped_after_the_write_timeout(nursery, autojump_clock):
    sim = SimAsterisk(max_outbound_bytes=1 << 40, write_timeout=10)
    port = await nursery.start(sim.serve, "127.0.0.1", 0)
    stuck = await Client.connect(port)
    await stuck.login()
    driver = await Client.connect(port)
    await driver.login(Events="off")
    t0 = trio.current_time()
    for i in range(2000):
        await driver.send("UserEvent", ("UserEvent", "Fill"), ("Pad", "x" * 2000), action_id=f"u{i}")
    with trio.fail_after(60):
        while sim.statistics()["connections_active"] == 2:
            await trio.sleep(0.5)
    assert trio.current_time() - t0 >= 10
    assert sim.statistics()["slow_disconnects"] == 1
    await driver.send("Ping", action_id="p")
    assert (await driver.response("p"))["Ping"] == "Pong"


async def test_a_client_reset_mid_write_ends_only_its_session(autojump_clock):
    """A client killed while events are being written to it (the socket is
    reset) must not take the server down."""
    import socket
    import struct

    import trio

    from dialer.sim import SimAsterisk

    sim = SimAsterisk()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"Action: Login\r\nUsername: dialer\r\nSecret: dialerpass\r\n\r\n")
            for i in range(50):
                sock.sendall(
                    b"Action: Originate\r\nChannel: Local/1212555%04d@carrier\r\n"
                    b"Context: dialer-connect\r\nExten: s\r\nPriority: 1\r\nAsync: true\r\n\r\n" % i
                )
            await trio.sleep(0.05)
            # close with RST instead of FIN, as a killed process's socket may
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            await trio.sleep(0.5)
        # still serving
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        banner = await stream.receive_some(100)
        assert banner.startswith(b"Asterisk Call Manager/")
        await stream.aclose()
        nursery.cancel_scope.cancel()
