"""The simulated Asterisk over real TCP: login, permissions, events, calls and the queue.

Everything runs under trio's MockClock, so ring and talk times pass instantly.
"""

from __future__ import annotations

import hashlib
import ssl

import pytest
import trio
import trio.testing

from dialer.ami.codec.message import Message
from dialer.sim import SimAsterisk, parse_scenario
from tests.sim_harness import STANDARD, Client, start


@pytest.fixture
async def sim_port(nursery):
    sim = SimAsterisk(seed=1)
    port = await nursery.start(sim.serve, "127.0.0.1", 0)
    return sim, port


# --- login and permissions ------------------------------------------------------------


async def test_md5_challenge_login(sim_port, autojump_clock):
    sim, port = sim_port
    c = await Client.connect(port)
    await c.send("Challenge", ("AuthType", "MD5"), action_id="ch")
    ch = await c.response("ch")
    assert [k for k, _ in ch.items()] == ["Response", "ActionID", "Challenge"]
    key = hashlib.md5((ch["Challenge"] + "dialerpass").encode()).hexdigest()
    await c.send("Login", ("AuthType", "MD5"), ("Username", "dialer"), ("Key", key), action_id="l")
    ok = await c.response("l")
    assert ok["Response"] == "Success" and ok["Message"] == "Authentication accepted"
    assert (await c.next()).name == "FullyBooted"


async def test_md5_login_with_wrong_key_fails_after_a_second_and_closes(sim_port, autojump_clock):
    sim, port = sim_port
    c = await Client.connect(port)
    await c.send("Challenge", ("AuthType", "MD5"), action_id="ch")
    await c.response("ch")
    t0 = trio.current_time()
    await c.send("Login", ("AuthType", "MD5"), ("Username", "dialer"), ("Key", "0" * 32), action_id="l")
    bad = await c.response("l")
    assert bad["Message"] == "Authentication failed"
    assert trio.current_time() - t0 == pytest.approx(1.0)
    assert await c.next() is None
    assert sim.statistics()["login_failures"] == 1


async def test_unauthenticated_connection_is_closed_after_auth_timeout(nursery, autojump_clock):
    sim, port = await start(nursery, auth_timeout=30)
    c = await Client.connect(port)
    t0 = trio.current_time()
    assert await c.next() is None
    assert trio.current_time() - t0 == pytest.approx(30, abs=0.1)


async def test_events_class_mask_and_read_classes(sim_port, autojump_clock):
    sim, port = sim_port
    agent_only = await Client.connect(port)
    await agent_only.login(Events="agent")
    monitor = await Client.connect(port)
    m = await monitor.login("monitor")
    assert m["Response"] == "Success"
    c = await Client.connect(port)
    await c.login(Events="off")
    await c.originate("15551230000", "o1")
    got_agent = await agent_only.drain(12)
    got_monitor = await monitor.drain(0.1)
    assert got_agent and {x.get("Privilege").split(",")[0] for x in got_agent} == {"agent"}
    assert "QueueCallerJoin" in [x.name for x in got_agent]
    # monitor reads call and agent, not dialplan: no Newexten/VarSet, but the
    # OriginateResponse of another connection's Originate, with its ActionID.
    names = {x.name for x in got_monitor}
    assert "Newexten" not in names and "VarSet" not in names
    orr = [x for x in got_monitor if x.name == "OriginateResponse"]
    assert len(orr) == 1 and orr[0].action_id == "o1" and orr[0]["Reason"] == "4"
    assert "AgentConnect" in names and "Hangup" in names


async def test_logoff_before_login_is_allowed_and_other_actions_are_not(sim_port, autojump_clock):
    sim, port = sim_port
    c = await Client.connect(port)
    await c.send("CoreShowChannels", action_id="x")
    assert (await c.response("x"))["Message"] == "Permission denied"
    await c.send("Logoff", action_id="bye")
    assert (await c.response("bye"))["Response"] == "Goodbye"
    assert await c.next() is None


# --- calls --------------------------------------------------------------------------------


async def test_ring_timeout_shorter_than_ring_time_gives_reason_3(sim_port, autojump_clock):
    sim, port = sim_port
    c = await Client.connect(port)
    await c.login()
    t0 = trio.current_time()
    await c.send("Originate", ("Channel", "Local/15551230009@carrier"), *[
        (k, "2000" if k == "Timeout" else v) for k, v in STANDARD], action_id="o")
    r = await c.event("OriginateResponse")
    assert (r["Response"], r["Reason"], r["Uniqueid"]) == ("Failure", "3", "<unknown>")
    assert trio.current_time() - t0 == pytest.approx(2.0)
    causes = []
    while len(causes) < 2:
        h = await c.event("Hangup")
        causes.append((h["Cause"], h["Cause-txt"]))
    assert causes == [("19", "User alerting, no answer")] * 2
    assert not sim.channels and sim.statistics()["calls_active"] == 0


async def test_speed_divides_every_delay(nursery, autojump_clock):
    sim, port = await start(nursery, speed=10)
    c = await Client.connect(port)
    await c.login()
    t0 = trio.current_time()
    await c.originate("15551230000", "o")
    await c.event("OriginateResponse")
    assert trio.current_time() - t0 == pytest.approx(0.1)
    await c.event("Hangup", Channel=sim_last_ch1(c))
    # Ring 1 s, Answer() waits 0.5 s for media, talk 8 s: all ten times faster.
    assert trio.current_time() - t0 == pytest.approx(0.95, abs=0.01)


def sim_last_ch1(c: Client) -> str:
    return next(m["Channel"] for m in reversed(c.messages)
                if m.kind == "event" and m.name == "OriginateResponse")


async def test_sync_originate_blocks_the_session_until_answered(sim_port, autojump_clock):
    sim, port = sim_port
    c = await Client.connect(port)
    await c.login()
    sync = [(k, "false" if k == "Async" else v) for k, v in STANDARD]
    t0 = trio.current_time()
    await c.send("Originate", ("Channel", "Local/15551230009@carrier"), *sync, action_id="s")
    await c.send("Ping", action_id="p")
    first = await c.until(lambda m: m.kind == "response")
    assert first.action_id == "s" and first["Message"] == "Originate successfully queued"
    assert trio.current_time() - t0 == pytest.approx(3.0)
    # The call's earlier events come after the Response; the Ping waited its turn.
    following = await c.until(lambda m: m.kind == "response")
    assert following.action_id == "p"
    between = c.messages[c.messages.index(first) + 1: c.messages.index(following)]
    assert between[0].name == "Newchannel"
    assert "OriginateResponse" not in [m.name for m in c.messages[1:]]


async def test_hangup_action_variants(sim_port, autojump_clock):
    sim, port = sim_port
    c = await Client.connect(port)
    await c.login()
    await c.send("Hangup", action_id="h0")
    assert (await c.response("h0"))["Message"] == "No channel specified"
    await c.send("Hangup", ("Channel", "Local/nope@carrier-00000099;1"), action_id="h1")
    assert (await c.response("h1"))["Message"] == "No such channel"
    # Hanging up the lead's leg while it talks to an agent ends the agent's call too.
    await c.originate("15551230009", "o")
    conn = await c.event("AgentConnect")
    await c.send("Hangup", ("Channel", conn["Channel"]), ("Cause", "16"), action_id="h2")
    assert (await c.response("h2"))["Message"] == "Channel Hungup"
    done = await c.event("AgentComplete")
    assert done["Reason"] == "caller"
    await c.event("QueueMemberStatus", InCall="0", Status="1")
    await c.drain(1)
    assert not sim.channels


async def test_redirect_takes_the_lead_from_the_agent(sim_port, autojump_clock):
    sim, port = sim_port
    c = await Client.connect(port)
    await c.login()
    await c.originate("15551230009", "o")
    conn = await c.event("AgentConnect")
    lead = conn["Channel"]
    await c.send("Redirect", ("Channel", lead), ("Context", "ivr"), ("Exten", "100"),
                 ("Priority", "1"), action_id="r")
    assert (await c.response("r"))["Message"] == "Redirect successful"
    done = await c.event("AgentComplete")
    assert done["Reason"] == "transfer"
    ext = await c.event("Newexten", Channel=lead)
    assert (ext["Context"], ext["Exten"]) == ("ivr", "100")
    # The called party still hangs up after its talk time (30 s from answer).
    h = await c.event("Hangup", Channel=lead)
    assert h["Cause"] == "16"
    assert not sim.channels


async def test_channel_capacity_gives_congestion(nursery, autojump_clock):
    scenario = parse_scenario("channel_capacity = 2\n")
    sim, port = await start(nursery, scenario=scenario)
    c = await Client.connect(port)
    await c.login()
    for i in range(3):
        await c.originate("15551230006", f"o{i}")
    r = await c.event("OriginateResponse")
    assert (r.action_id, r["Reason"]) == ("o2", "8")
    assert sim.statistics()["calls_active"] == 2


async def test_status_and_coreshowchannels_list_live_channels(sim_port, autojump_clock):
    sim, port = sim_port
    c = await Client.connect(port)
    await c.login(Events="off")
    await c.originate("15551230009", "o")
    await trio.sleep(5)
    await c.send("Status", action_id="st")
    await c.response("st")
    items = []
    while True:
        m = await c.next()
        if m.name == "StatusComplete":
            break
        items.append(m)
    assert len(items) == 4 == int(m["ListItems"])
    assert {x["Channel"].split("-")[0] for x in items} == {"Local/15551230009@carrier", "Local/agent1@agents"}
    assert all(x["Privilege"] == "Call" and x.action_id == "st" for x in items)
    bridged = [x for x in items if x["BridgeID"]]
    assert len(bridged) == 2 and bridged[0]["BridgeID"] == bridged[1]["BridgeID"]
    await c.send("Status", ("Channel", items[0]["Channel"]), action_id="one")
    await c.response("one")
    assert (await c.next())["Channel"] == items[0]["Channel"]
    await c.send("Command", ("Command", "core show channels count"), action_id="cnt")
    out = (await c.response("cnt")).get_all("Output")
    assert out[:2] == ["4 active channels", "3 active calls"]
    await c.send("Command", ("Command", "core show nonsense"), action_id="bad")
    bad = await c.response("bad")
    assert bad["Response"] == "Error" and "No such command" in bad["Output"]


async def test_userevent_reaches_user_readers_only(sim_port, autojump_clock):
    sim, port = sim_port
    a = await Client.connect(port)
    await a.login()
    b = await Client.connect(port)
    await b.login("monitor")
    await a.send("UserEvent", ("UserEvent", "Tick"), ("X", "1"), action_id="u")
    await a.response("u")
    ev = await a.event("UserEvent")
    assert ev.items()[3:] == [("UserEvent", "Tick"), ("X", "1"), ("ActionID", "u")]
    assert [m for m in await b.drain(0.5) if m.name == "UserEvent"] == []


async def test_filters_exclude_and_header_criteria(sim_port, autojump_clock):
    sim, port = sim_port
    c = await Client.connect(port)
    await c.login()
    await c.send("Filter", ("Operation", "Add"), ("Filter", "!Event: (Newexten|VarSet)"), action_id="f1")
    assert (await c.response("f1"))["Message"] == "Success"
    await c.send("Filter", ("Operation", "Add"), ("MatchCriteria", "header(Channel),method(starts_with)"),
                 ("Filter", "Local/agent"), action_id="f2")
    await c.response("f2")
    await c.originate("15551230000", "o")
    got = await c.drain(12)
    assert got and all(m.get("Channel", "").startswith("Local/agent") for m in got)
    assert {"Newchannel", "Hangup"} <= {m.name for m in got}
    assert not {"Newexten", "VarSet"} & {m.name for m in got}


# --- the queue --------------------------------------------------------------------------------


async def test_longest_waiting_caller_gets_the_next_free_agent(nursery, autojump_clock):
    sim, port = await start(nursery, scenario=parse_scenario("[queue]\ntimeout = 60\n"))
    c = await Client.connect(port)
    await c.login()
    # Four long calls (answer after 3 s, 30 s talk) for three agents (20 s each).
    for i in range(4):
        await c.originate(f"155512300{i}9", f"o{i}")
        await trio.sleep(0.5)
    joins = []
    while len(joins) < 4:
        joins.append(await c.event("QueueCallerJoin"))
    fourth = joins[3]["Channel"]
    assert joins[3]["Position"] == "1" and joins[3]["Count"] == "1"
    await c.send("QueueStatus", action_id="qs")
    await c.response("qs")
    listing = []
    while (m := await c.next()).name != "QueueStatusComplete":
        listing.append(m)
    entry = [m for m in listing if m.name == "QueueEntry"]
    assert len(entry) == 1 and entry[0]["Channel"] == fourth
    members = [m for m in listing if m.name == "QueueMember"]
    assert [(m["InCall"], m["Status"]) for m in members] == [("1", "2")] * 3
    freed = await c.event("QueueMemberStatus", InCall="0")
    conn = await c.event("AgentConnect", Channel=fourth)
    assert conn["MemberName"] == freed["MemberName"]
    assert 0 < trio.current_time() - freed_time(c, freed) <= 1.0


def freed_time(c: Client, msg: Message) -> float:
    return c.times[c.messages.index(msg)]


async def test_caller_keeps_waiting_past_the_member_ring_timeout(nursery, autojump_clock):
    """queues.conf's timeout is the member's ring time: a caller finding every agent
    busy waits until one frees (as app_queue does), however long that takes."""
    scenario = parse_scenario("[queue]\nagents = 1\ntimeout = 5\nagent_talk_time = 12\n")
    sim, port = await start(nursery, scenario=scenario)
    c = await Client.connect(port)
    await c.login()
    await c.originate("15551230009", "a")
    await c.event("AgentConnect")
    t_first = trio.current_time()
    await c.originate("15551240009", "b")
    join = await c.event("QueueCallerJoin")
    conn = await c.event("AgentConnect", Channel=join["Channel"])
    assert 12.0 <= trio.current_time() - t_first <= 13.0
    assert int(conn["HoldTime"]) >= 9
    assert not [m for m in c.messages if getattr(m, "name", None) == "QueueCallerAbandon"]
    assert sim.queue.abandoned == 0


async def test_caller_still_queued_when_queue_timeout_runs_out_leaves(nursery, autojump_clock):
    """drop_after (the dialplan's Queue(agents,,,,2)): after it, QueueCallerAbandon and
    QueueCallerLeave, as app_queue sends them on its timeout, then the hang-up."""
    scenario = parse_scenario("drop_after = 2\n[queue]\nagents = 1\nagent_talk_time = 60\n")
    sim, port = await start(nursery, scenario=scenario)
    c = await Client.connect(port)
    await c.login()
    await c.originate("15551230009", "a")
    await c.event("AgentConnect")
    await c.originate("15551240009", "b")
    join = await c.event("QueueCallerJoin")
    t_join = trio.current_time()
    ab = await c.event("QueueCallerAbandon")
    assert ab["Channel"] == join["Channel"] and ab["HoldTime"] == "2"
    assert trio.current_time() - t_join == pytest.approx(2.0)
    leave = await c.event("QueueCallerLeave")
    assert leave["Count"] == "0"
    await c.event("Hangup", Channel=join["Channel"])
    assert sim.queue.abandoned == 1


async def test_wrapup_keeps_an_agent_unavailable(nursery, autojump_clock):
    scenario = parse_scenario("[queue]\nagents = 1\nwrapup = 10\ntimeout = 60\n")
    sim, port = await start(nursery, scenario=scenario)
    c = await Client.connect(port)
    await c.login()
    await c.originate("15551230007", "a")  # 1 s talk
    await c.event("AgentComplete")
    t_free = trio.current_time()
    await c.originate("15551230009", "b")  # answers 3 s later, then waits for the agent
    await c.event("QueueCallerJoin")
    await c.event("AgentConnect")
    assert trio.current_time() - t_free >= 10.0
    assert trio.current_time() - t_free <= 11.0


async def test_same_seed_same_calls(autojump_clock):
    text = ('seed = 7\n[outcomes]\nanswered = 0.5\nbusy = 0.2\nnoanswer = 0.3\n'
            '[ring_time]\ndist = "uniform"\nmin = 1\nmax = 9\n'
            '[talk_time]\ndist = "exponential"\nmean = 30\nmax = 120\n')

    async def run_once():
        async with trio.open_nursery() as nursery:
            sim, port = await start(nursery, scenario=parse_scenario(text))
            c = await Client.connect(port)
            await c.login()
            t0 = trio.current_time()
            for i in range(20):
                await c.originate(f"155512300{i:02d}", f"o{i}")
            await c.drain(40)
            seen = {m.action_id: (m["Reason"], round(c.times[i] - t0, 6))
                    for i, m in enumerate(c.messages) if isinstance(m, Message) and m.kind == "event"
                    and m.name == "OriginateResponse"}
            assert len(seen) == 20
            nursery.cancel_scope.cancel()
        return seen

    first = await run_once()
    second = await run_once()
    reasons = [v[0] for v in first.values()]
    assert {"4", "5", "3"} <= set(reasons)
    assert second == first


# --- transport and bookkeeping -----------------------------------------------------------------


async def test_tls(nursery, autojump_clock):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    sim = SimAsterisk()
    port = await nursery.start(lambda task_status: sim.serve("127.0.0.1", 0, ssl_context=server_ctx,
                                                             task_status=task_status))
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    c = Client(trio.SSLStream(tcp, client_ctx, server_hostname="127.0.0.1"))
    assert (await c.next()).line == "Asterisk Call Manager/11.0.0"
    await c.login()
    await c.send("Ping", action_id="p")
    assert (await c.response("p"))["Ping"] == "Pong"


async def test_received_and_statistics(sim_port, autojump_clock):
    sim, port = sim_port
    c = await Client.connect(port)
    await c.login()
    t0 = trio.current_time()
    for i in range(5):
        await c.originate("15551230004", f"o{i}")
        await trio.sleep(0.2)
    await c.drain(1)
    (conn_id, got), = sim.received.items()
    origs = [(t, m) for t, m in got if m.name == "Originate"]
    assert [m.action_id for _, m in origs] == [f"o{i}" for i in range(5)]
    gaps = [b[0] - a[0] for a, b in zip(origs, origs[1:])]
    assert all(g == pytest.approx(0.2, abs=0.01) for g in gaps)
    assert origs[0][0] >= t0
    st = sim.statistics()
    assert st["actions"] == {"Login": 1, "Originate": 5}
    assert st["calls_total"] == 5 and st["calls_peak"] == 1 and st["calls_active"] == 0
    assert st["events_emitted"] == st["events_delivered"] > 100
    assert st["connections"] == st["connections_active"] == 1
    assert st["bytes_sent"] > st["events_emitted"] * 100


async def test_serve_sim_convenience(nursery, autojump_clock):
    import functools

    from dialer.sim import serve_sim

    sim = SimAsterisk(parse_scenario("[queue]\nagents = 1\n"), speed=2)
    port = await nursery.start(functools.partial(serve_sim, host="127.0.0.1", port=0, sim=sim))
    assert port == sim.port
    c = await Client.connect(port)
    await c.login()
    t0 = trio.current_time()
    await c.originate("15551230000", "o")
    await c.event("OriginateResponse")
    assert trio.current_time() - t0 == pytest.approx(0.5)
    other = await nursery.start(functools.partial(serve_sim, port=0, speed=4))
    d = await Client.connect(other)
    assert (await d.login())["Response"] == "Success"


async def test_hangup_by_regex_and_by_carrier_leg(sim_port, autojump_clock):
    sim, port = sim_port
    c = await Client.connect(port)
    await c.login()
    await c.originate("15551230006", "a")
    await c.originate("15551240006", "b")
    await c.send("Hangup", ("Channel", "/^Local/1555124.*;1$/"), action_id="h")
    assert (await c.response("h"))["Message"] == "Channel Hungup"
    r = await c.event("OriginateResponse")
    assert (r.action_id, r["Reason"]) == ("b", "0")
    (leg2,) = [n for n in sim.channels if n.startswith("Local/15551230006") and n.endswith(";2")]
    await c.send("Hangup", ("Channel", leg2), ("Cause", "21"), action_id="h2")
    r = await c.event("OriginateResponse")
    assert (r.action_id, r["Reason"]) == ("a", "0")
    h = await c.event("Hangup")
    assert (h["Cause"], h["Cause-txt"]) == ("21", "Call Rejected")
    await c.drain(0.1)
    assert not sim.channels
