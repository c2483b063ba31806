"""The sans-IO AMI codec against the recorded transcripts and hand-made edge cases."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialer.ami.codec.errors import LocalProtocolError, RemoteProtocolError
from dialer.ami.codec.message import Banner, Message
from dialer.ami.codec.parser import CLOSED, NEED_DATA, AMIParser
from dialer.ami.codec.serialize import encode_action, encode_message

from tests.transcripts import TRANSCRIPTS

RECORDED = sorted(p.stem for p in TRANSCRIPTS.glob("*.json"))
ALL_TXT = sorted(p.stem for p in TRANSCRIPTS.glob("*.txt"))


def test_transcripts_are_there():
    assert len(RECORDED) >= 30
    assert "login-tls" in ALL_TXT


# -- feeding helpers ---------------------------------------------------------------


def drain(parser: AMIParser) -> list:
    out = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA or event is CLOSED:
            return out
        out.append(event)


def feed_whole(data: bytes, **kw) -> list:
    parser = AMIParser(**kw)
    parser.receive_data(data)
    events = drain(parser)
    parser.receive_data(b"")
    events += drain(parser)
    assert parser.next_event() is CLOSED
    return events


def feed_bytewise(data: bytes, **kw) -> list:
    parser = AMIParser(**kw)
    events = []
    for i in range(len(data)):
        parser.receive_data(data[i : i + 1])
        events += drain(parser)
    parser.receive_data(b"")
    events += drain(parser)
    assert parser.next_event() is CLOSED
    return events


def feed_chunks(data: bytes, seed: int, lo: int = 1, hi: int = 8192, **kw) -> list:
    rng = random.Random(seed)
    parser = AMIParser(**kw)
    events = []
    i = 0
    while i < len(data):
        n = rng.randint(lo, hi)
        parser.receive_data(data[i : i + n])
        i += n
        events += drain(parser)
    parser.receive_data(b"")
    events += drain(parser)
    assert parser.next_event() is CLOSED
    return events


def feed_chunks_batched(data: bytes, seed: int, **kw) -> list:
    """Random chunks, collecting with next_events() instead of next_event()."""
    rng = random.Random(seed)
    parser = AMIParser(**kw)
    events = []
    i = 0
    while i < len(data):
        n = rng.randint(1, 3000)
        parser.receive_data(data[i : i + n])
        i += n
        while batch := parser.next_events():
            events += batch
        assert not parser.closed
    parser.receive_data(b"")
    while batch := parser.next_events():
        events += batch
    assert parser.closed and parser.next_event() is CLOSED
    return events


def summary(events: list) -> list[tuple]:
    out = []
    for e in events:
        if isinstance(e, Banner):
            out.append(("banner", e.line, None, e.offset, e.length))
        else:
            out.append((e.kind, e.name, e.action_id, e.offset, e.length))
    return out


def expected(stem: str) -> list[tuple]:
    meta = json.loads((TRANSCRIPTS / f"{stem}.json").read_text())
    return [
        (r["kind"], r["name"], r["ActionID"], r["offset"], r["length"])
        for r in meta["received"]
    ]


# -- every transcript, three ways (and with trailing bytes) ------------------------


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
@pytest.mark.parametrize("stem", RECORDED)
def test_transcript_whole(stem, lazy):
    data = (TRANSCRIPTS / f"{stem}.txt").read_bytes()
    events = feed_whole(data, lazy=lazy)
    assert summary(events) == expected(stem)
    meta = json.loads((TRANSCRIPTS / f"{stem}.json").read_text())
    assert sum(e.length for e in events) == meta["received_bytes"] == len(data)


@pytest.mark.parametrize("stem", RECORDED)
def test_transcript_byte_by_byte(stem):
    data = (TRANSCRIPTS / f"{stem}.txt").read_bytes()
    if len(data) > 100_000:
        data = data[: _cut_after_messages(stem, 300)]
        want = expected(stem)[:300]
    else:
        want = expected(stem)
    assert summary(feed_bytewise(data)) == want


def _cut_after_messages(stem: str, n: int) -> int:
    last = expected(stem)[n - 1]
    return last[3] + last[4]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("stem", RECORDED)
def test_transcript_random_chunks(stem, seed):
    data = (TRANSCRIPTS / f"{stem}.txt").read_bytes()
    assert summary(feed_chunks(data, seed)) == expected(stem)
    assert summary(feed_chunks(data, seed, 1, 40, lazy=False)) == expected(stem)
    assert summary(feed_chunks_batched(data, seed, lazy=seed != 2)) == expected(stem)


@pytest.mark.parametrize("stem", RECORDED)
def test_transcript_with_trailing_bytes(stem):
    data = (TRANSCRIPTS / f"{stem}.txt").read_bytes()
    trailing = b"Event: Partial\r\nChannel: SIP/1-0"
    parser = AMIParser()
    parser.receive_data(data + trailing)
    events = drain(parser)
    assert summary(events) == expected(stem)
    assert parser.next_event() is NEED_DATA
    assert parser.buffered == len(trailing)
    # The partial message completes later and keeps its stream offset.
    parser.receive_data(b"0000001\r\n\r\n")
    tail = parser.next_event()
    assert (tail.kind, tail.name, tail["Channel"]) == ("event", "Partial", "SIP/1-00000001")
    assert tail.offset == len(data)
    # End of stream right after a complete message is clean.
    parser.receive_data(b"")
    assert parser.next_event() is CLOSED


@pytest.mark.parametrize("stem", ALL_TXT)
def test_transcript_message_headers_parse(stem):
    """Every header line of every recorded message parses, values re-encode to the same bytes."""
    data = (TRANSCRIPTS / f"{stem}.txt").read_bytes()
    events = feed_whole(data, lazy=False)
    assert isinstance(events[0], Banner)
    assert events[0].version == "11.0.0"
    rebuilt = bytearray(data[: events[0].length])
    for message in events[1:]:
        assert message.kind in ("response", "event")
        rebuilt += encode_message(message.items())
    assert bytes(rebuilt) == data


def test_login_tls_transcript_has_no_sidecar_but_parses():
    events = feed_bytewise((TRANSCRIPTS / "login-tls.txt").read_bytes())
    names = [(e.kind, e.name) for e in events[1:]]
    assert names[0] == ("response", "Success")
    assert names[-1] == ("response", "Goodbye")
    assert any(e.get("Ping") == "Pong" for e in events[1:])


@pytest.mark.parametrize("stem", RECORDED)
def test_sent_actions_parse_as_server(stem):
    meta = json.loads((TRANSCRIPTS / f"{stem}.json").read_text())
    sent = [s["text"].encode() for s in meta["sent"]]
    stream = b"".join(sent)
    for events in (feed_whole(stream, role="server"), feed_bytewise(stream, role="server")):
        assert len(events) == len(sent)
        offset = 0
        for raw, message in zip(sent, events):
            assert message.offset == offset and message.length == len(raw)
            offset += len(raw)
            first_key = raw.split(b":", 1)[0].decode()
            if first_key == "Action":
                assert message.kind == "action"
                assert message.name == message["Action"]
            # Re-encoding the parsed headers gives the bytes that were sent.
            assert encode_message(message.items()) == raw


def test_server_role_has_no_banner():
    parser = AMIParser(role="server")
    parser.receive_data(b"Action: Ping\r\n\r\n")
    message = parser.next_event()
    assert isinstance(message, Message) and message.name == "Ping"


# -- message semantics ------------------------------------------------------------


def one(data: bytes, **kw) -> Message:
    events = feed_whole(b"Asterisk Call Manager/11.0.0\r\n" + data, **kw)
    assert len(events) == 2
    return events[1]


def test_lookup_is_case_insensitive_first_occurrence_and_multimap():
    raw = (
        b"Event: VarSet\r\nChannel: A\r\nVariable: X=1\r\nvariable: Y=2\r\n"
        b"AccountCode: \r\nValue: a: b: c\r\n\r\n"
    )
    for lazy in (True, False):
        m = one(raw, lazy=lazy)
        assert m.kind == "event" and m.name == "VarSet"
        assert m.get("VARIABLE") == "X=1"
        assert m.get_all("variable") == ["X=1", "Y=2"]
        assert m["accountcode"] == ""
        assert m.get("Value") == "a: b: c"
        assert m.get("Missing") is None and m.get("Missing", "d") == "d"
        assert "channel" in m and "Nope" not in m
        with pytest.raises(KeyError):
            m["Nope"]
        assert m.items() == [
            ("Event", "VarSet"), ("Channel", "A"), ("Variable", "X=1"),
            ("variable", "Y=2"), ("AccountCode", ""), ("Value", "a: b: c"),
        ]
        assert m.action_id is None
        assert len(m) == 6


def test_constructed_message():
    m = Message([("Response", "Success"), ("ActionID", "a-1"), ("Output", "x"), ("Output", "")])
    assert (m.kind, m.name, m.action_id) == ("response", "Success", "a-1")
    assert m.output == ["x", ""]
    assert m.offset is None and m.raw is None
    assert Message([("Foo", "bar")]).kind == "unknown"
    assert Message([("Foo", "bar")]).name is None
    assert Message([]).kind == "unknown"
    with pytest.raises(TypeError):
        Message([("Foo", 1)])  # type: ignore[list-item]


def test_repr_hides_secrets():
    m = Message([("Action", "Login"), ("Username", "u"), ("Secret", "hunter2")])
    assert "hunter2" not in repr(m)
    m2 = one(b"Action: Login\r\nKey: 0123abcd\r\n\r\n")
    assert "0123abcd" not in repr(m2)


def test_command_output_lines():
    data = (TRANSCRIPTS / "command-core-show-channels.txt").read_bytes()
    events = feed_whole(data)
    reply = next(e for e in events[1:] if e.action_id == "cmd-1")
    raw = [line[len(b"Output: "):].decode() for line in data.split(b"\r\n") if line.startswith(b"Output: ")]
    assert reply.output == raw
    channels, calls, processed = reply.output[-3:]
    assert re.fullmatch(r"\d+ active channels?", channels)
    assert re.fullmatch(r"\d+ active calls?", calls)
    assert re.fullmatch(r"\d+ calls? processed", processed)
    # A header line, one line per channel (the recording has calls up), the three totals.
    assert int(channels.split()[0]) > 0
    assert len(reply.output) == 1 + int(channels.split()[0]) + 3


LEGACY = (
    b"Response: Follows\r\nPrivilege: Command\r\nActionID: cmd-7\r\n"
    b"Channel              Location\n"
    b"SIP/1-0001           s@default:1\n"
    b"\r\n\r\n"
    b"Note: looks like a header\n"
    b"\n"
    b"1 active channel\n"
    b"--END COMMAND--\r\n\r\n"
)


@pytest.mark.parametrize("how", ["whole", "bytes", "chunks"])
def test_legacy_follows_body(how):
    banner = b"Asterisk Call Manager/1.1\r\n"
    after = b"Event: FullyBooted\r\nStatus: Fully Booted\r\n\r\n"
    before = b"Response: Success\r\nActionID: x\r\n\r\n"
    data = banner + before + LEGACY + after
    if how == "whole":
        events = feed_whole(data)
    elif how == "bytes":
        events = feed_bytewise(data)
    else:
        events = feed_chunks(data, 7, 1, 9)
    assert [isinstance(e, Message) for e in events] == [False, True, True, True]
    assert isinstance(events[0], Banner)
    legacy = events[2]
    assert (legacy.kind, legacy.name, legacy.action_id) == ("response", "Follows", "cmd-7")
    assert legacy["Privilege"] == "Command"
    assert legacy.output == [
        "Channel              Location",
        "SIP/1-0001           s@default:1",
        "",
        "",
        "Note: looks like a header",
        "",
        "1 active channel",
    ]
    assert legacy.offset == len(banner) + len(before)
    assert legacy.length == len(LEGACY)
    assert events[3].name == "FullyBooted" and events[3].offset == legacy.offset + len(LEGACY)


def test_legacy_follows_without_actionid_or_output():
    m = one(b"Response: Follows\r\nPrivilege: Command\r\n--END COMMAND--\r\n\r\n")
    assert m.name == "Follows" and m.action_id is None and m.output == []


def test_value_with_follows_is_not_legacy():
    m = one(b"Event: UserEvent\r\nNote: Follows\r\n\r\n")
    assert m["Note"] == "Follows"


def test_utf8_character_split_across_reads_arrives_whole():
    data = "Event: Newchannel\r\nCallerIDName: Jürgen Müller €\r\n\r\n".encode()
    cut = data.index("ü".encode()) + 1  # between the two bytes of ü
    parser = AMIParser(role="server")
    parser.receive_data(data[:cut])
    assert parser.next_event() is NEED_DATA
    parser.receive_data(data[cut:])
    assert parser.next_event()["CallerIDName"] == "Jürgen Müller €"


def test_invalid_utf8_is_kept_losslessly():
    data = b"Event: X\r\nCallerIDName: caf\xe9 \xff\xfe\r\n\r\n"
    m = one(data)
    value = m["CallerIDName"]
    assert value == "caf\udce9 \udcff\udcfe"
    assert value.encode("utf-8", "surrogateescape") == b"caf\xe9 \xff\xfe"
    assert encode_message(m.items()) == data


def test_stray_empty_lines_between_messages_are_skipped():
    data = b"Event: A\r\n\r\n\r\n\r\n\r\nEvent: B\r\n\r\n"
    for events in (feed_whole(data, role="server"), feed_bytewise(data, role="server")):
        assert [(e.name, e.offset, e.length) for e in events] == [("A", 0, 12), ("B", 18, 12)]


# -- malformed input --------------------------------------------------------------


def test_header_line_without_colon_eager_raises_with_offset():
    banner = b"Asterisk Call Manager/11.0.0\r\n"
    good = b"Event: A\r\n\r\n"
    bad = b"Event: B\r\nthis is not a header\r\n\r\n"
    for feed in (feed_whole, feed_bytewise):
        with pytest.raises(RemoteProtocolError) as info:
            feed(banner + good + bad, lazy=False)
        assert info.value.offset == len(banner) + len(good) + len(b"Event: B\r\n")
        assert "at byte" in str(info.value)


def test_next_events_returns_good_messages_before_raising():
    data = b"Event: A\r\n\r\nEvent: B\r\nbad\r\n\r\nEvent: C\r\n\r\n"
    parser = AMIParser(role="server", lazy=False)
    parser.receive_data(data)
    assert [m.name for m in parser.next_events()] == ["A"]
    with pytest.raises(RemoteProtocolError):
        parser.next_events()
    parser = AMIParser(role="server")
    parser.receive_data(b"Event: A\r\n")
    assert parser.next_events() == [] and not parser.closed
    parser.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        parser.next_events()


def test_eager_returns_good_messages_before_raising():
    banner = b"Asterisk Call Manager/11.0.0\r\n"
    data = banner + b"Event: A\r\n\r\nEvent: B\r\nX: 1\r\n\r\nEvent: C\r\nbad line\r\n\r\nEvent: D\r\n\r\n"
    parser = AMIParser(lazy=False)
    parser.receive_data(data)
    assert isinstance(parser.next_event(), Banner)
    assert parser.next_event().name == "A"
    assert parser.next_event()["X"] == "1"
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.offset == data.index(b"bad line")
    with pytest.raises(RemoteProtocolError):
        parser.next_event()


def test_header_line_without_colon_lazy_raises_on_access():
    m = one(b"Event: B\r\nnot a header\r\n\r\n")
    assert m.name == "B"  # framing and the first line are fine
    with pytest.raises(RemoteProtocolError) as info:
        m.items()
    assert info.value.offset == 30 + 10


def test_first_line_without_colon_is_unknown_and_raises_on_headers():
    m = one(b"garbage\r\nEvent: X\r\n\r\n")
    assert (m.kind, m.name) == ("unknown", None)
    with pytest.raises(RemoteProtocolError) as info:
        m.items()
    assert info.value.offset == 30
    with pytest.raises(RemoteProtocolError):
        one(b"garbage\r\n\r\n", lazy=False)


@pytest.mark.parametrize(
    "line", [b"HTTP/1.1 200 OK", b"Response: Success", b"hello", b"Asterisk Call Manager/"]
)
def test_bad_banner(line):
    parser = AMIParser()
    parser.receive_data(line + b"\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.offset == 0
    # The error is sticky.
    with pytest.raises(RemoteProtocolError):
        parser.next_event()


def test_other_banner_versions_are_accepted():
    parser = AMIParser()
    parser.receive_data(b"Asterisk Call Manager/2.10.4\r\n")
    banner = parser.next_event()
    assert banner == Banner(version="2.10.4", offset=0, length=30)
    assert banner.line == "Asterisk Call Manager/2.10.4"


def test_incomplete_message_over_limit():
    parser = AMIParser(max_message_size=1000)
    parser.receive_data(b"Asterisk Call Manager/11.0.0\r\nEvent: A\r\n\r\n")
    drain(parser)
    parser.receive_data(b"Event: Big\r\nData: " + b"x" * 990)
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.offset == 42
    assert "limit" in str(info.value)


def test_complete_message_over_limit_in_one_read():
    parser = AMIParser(max_message_size=100, role="server")
    parser.receive_data(b"Action: Ping\r\n\r\nAction: X\r\nData: " + b"y" * 200 + b"\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.offset == 16


def test_banner_over_limit():
    parser = AMIParser(max_message_size=100)
    parser.receive_data(b"A" * 200)
    with pytest.raises(RemoteProtocolError):
        parser.next_event()


def test_eof_inside_message_raises():
    parser = AMIParser(role="server")
    parser.receive_data(b"Action: Ping\r\n\r\nAction: Log")
    assert parser.next_event().name == "Ping"
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"")
    with pytest.raises(RemoteProtocolError) as info:
        parser.next_event()
    assert info.value.offset == 16


def test_eof_before_banner_is_clean_and_after_eof_receive_is_refused():
    parser = AMIParser()
    parser.receive_data(b"")
    assert parser.next_event() is CLOSED
    assert parser.next_event() is CLOSED
    with pytest.raises(LocalProtocolError):
        parser.receive_data(b"x")


def test_bad_role():
    with pytest.raises(ValueError):
        AMIParser(role="proxy")  # type: ignore[arg-type]


def test_one_byte_at_a_time_is_linear():
    """A 600 kB message fed one byte at a time: quadratic rescanning would take minutes."""
    body = b"".join(b"Variable: V%06d=%s\r\n" % (i, b"v" * 20) for i in range(20_000))
    data = b"Event: Big\r\n" + body + b"\r\n"
    parser = AMIParser(role="server", max_message_size=4 << 20)
    start = time.perf_counter()
    for i in range(len(data)):
        parser.receive_data(data[i : i + 1])
        assert parser.next_event() is NEED_DATA or i == len(data) - 1
    elapsed = time.perf_counter() - start
    parser = AMIParser(role="server", max_message_size=4 << 20)
    parser.receive_data(data)
    assert len(parser.next_event().get_all("Variable")) == 20_000
    assert elapsed < 10, elapsed


# -- encoding -----------------------------------------------------------------------


def test_encode_action_matches_recorded_bytes():
    meta = json.loads((TRANSCRIPTS / "originate-answered.json").read_text())
    originate = next(s["text"] for s in meta["sent"] if s["text"].startswith("Action: Originate"))
    encoded = encode_action(
        "Originate",
        [
            ("Channel", "Local/15551230000@carrier"), ("Context", "dialer-connect"),
            ("Exten", "s"), ("Priority", "1"), ("Async", "true"), ("Timeout", "20000"),
            ("CallerID", '"Campaign" <15550001000>'), ("ActionID", "orig-0"),
            ("Variable", "DIALER_LEAD=123"),
        ],
    )
    assert encoded == originate.encode()
    assert encode_action("Ping", action_id="p-1") == b"Action: Ping\r\nActionID: p-1\r\n\r\n"


@pytest.mark.parametrize(
    "headers, field",
    [
        ([("Channel", "SIP/1\r\nAction: Originate")], "'Channel'"),
        ([("Channel", "a\nb")], "'Channel'"),
        ([("Channel", "a\rb")], "'Channel'"),
        ([("Channel", "a\0b")], "'Channel'"),
        ([("Ok", "x"), ("Bad Key", "x")], "'Bad Key'"),
        ([("Bad:Key", "x")], "'Bad:Key'"),
        ([("", "x")], "''"),
        ([("Key\r\n", "x")], "'Key\\r\\n'"),
        ([("Timeout", 5)], "'Timeout'"),
        ([("Var", None)], "'Var'"),
    ],
)
def test_encode_refuses_bad_fields_naming_them(headers, field):
    with pytest.raises(LocalProtocolError) as info:
        encode_message(headers)
    assert field in str(info.value)
    with pytest.raises(LocalProtocolError):
        encode_action("Originate", headers)


def test_encode_refuses_bad_action_and_duplicate_actionid():
    with pytest.raises(LocalProtocolError):
        encode_action("Ping\r\nAction: Originate")
    with pytest.raises(LocalProtocolError):
        encode_action("")
    with pytest.raises(LocalProtocolError) as info:
        encode_action("Ping", [("ActionID", "a")], action_id="b")
    assert "ActionID" in str(info.value)
    with pytest.raises(LocalProtocolError):
        encode_message(["not a pair"])  # type: ignore[list-item]


# -- properties ---------------------------------------------------------------------

token = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12)
value_bytes = st.binary(max_size=40).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
)
value = st.one_of(
    st.text(max_size=30).filter(lambda s: not set(s) & {"\r", "\n", "\0"} and not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
    value_bytes.map(lambda b: b.decode("utf-8", "surrogateescape")),
)
headers_st = st.lists(st.tuples(token, value), min_size=1, max_size=12)
message_st = st.tuples(st.sampled_from(["Event", "Response", "Action"]), token, headers_st).map(
    lambda t: [(t[0], t[1])] + t[2]
)


@given(headers=message_st)
@settings(max_examples=300, deadline=None)
def test_round_trip(headers):
    data = encode_message(headers)
    for lazy in (True, False):
        m = one(data, lazy=lazy)
        assert m.items() == headers
        assert m.kind == headers[0][0].lower() and m.name == headers[0][1]
        assert encode_message(m.items()) == data
    # Lookup through the raw bytes agrees with the parsed headers.
    for key, _ in headers:
        lazy_msg = one(data)
        first = next(v for k, v in headers if k.lower() == key.lower())
        assert lazy_msg.get(key.upper()) == first
        assert Message(headers).get(key) == first


@given(messages=st.lists(message_st, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 4000), max_size=20), stray=st.booleans())
@settings(max_examples=200, deadline=None)
def test_arbitrary_chunking(messages, cuts, stray):
    stream = b"Asterisk Call Manager/11.0.0\r\n" + b"".join(
        (b"\r\n" if stray else b"") + encode_message(h) for h in messages
    )
    whole = feed_whole(stream)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    parser = AMIParser()
    events = []
    prev = 0
    for point in points + [len(stream)]:
        parser.receive_data(stream[prev:point]) if point > prev else None
        prev = point
        events += drain(parser)
    parser.receive_data(b"")
    events += drain(parser)
    assert summary(events) == summary(whole)
    assert [e.items() for e in events[1:]] == messages


def test_received_and_constructed_messages_compare_equal():
    headers = [("Event", "Hangup"), ("Cause", "16"), ("Cause-txt", "Normal Clearing")]
    received = one(encode_message(headers))
    built = Message(headers)
    assert received == built and not (received != built)
    assert received != Message(headers[:2])
    assert list(received) == received.keys() == ["Event", "Cause", "Cause-txt"]
    assert len(received) == 3 and bool(received)
    assert received.length == len(encode_message(headers))


def test_values_with_colons_take_the_careful_split():
    m = one(b"Event: X\r\nAppData: a:b: c\r\nEmpty:\r\nURL: http://x/\r\n\r\n")
    assert m.items() == [("Event", "X"), ("AppData", "a:b: c"), ("Empty", ""), ("URL", "http://x/")]


def test_codec_does_not_import_trio():
    import subprocess
    import sys

    code = "import sys, dialer.ami.codec; print('trio' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


line_st = st.text(alphabet="ab: \t:é\x7f-", min_size=0, max_size=12)


@given(lines=st.lists(line_st, min_size=1, max_size=8))
@settings(max_examples=400, deadline=None)
def test_header_split_matches_reference(lines):
    """Whatever the colons and spaces, a line splits at its first colon minus one space."""
    lines = ["Event: X"] + [line for line in lines if line]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode()
    expected = []
    for line in lines:
        key, sep, value = line.partition(":")
        expected.append((key, value[1:] if value.startswith(" ") else value) if sep else None)
    for lazy in (True, False):
        parser = AMIParser(role="server", lazy=lazy)
        parser.receive_data(data)
        if None in expected:
            with pytest.raises(RemoteProtocolError):
                parser.next_event().items()
        else:
            message = parser.next_event()
            assert message.items() == expected
            for key, value in expected:
                assert one_server(data).get(key) == next(v for k, v in expected if k.lower() == key.lower())


def one_server(data: bytes) -> Message:
    parser = AMIParser(role="server")
    parser.receive_data(data)
    return parser.next_event()


def test_same_prefix_different_first_lines():
    """Blocks sharing their first 32 bytes but not their first line are told apart."""
    a = b"Event: " + b"A" * 40 + b"\r\nX: 1\r\n\r\n"
    b = b"Event: " + b"A" * 41 + b"\r\nX: 2\r\n\r\n"
    c = b"Event: Short\r\nPrivilege: call,all\r\n\r\n"
    d = b"Event: Short\r\nPrivilege: call,allX\r\n\r\n"
    e = b"Event: Shor\rt\r\nPrivilege: x\r\n\r\n"
    for _ in range(2):
        parser = AMIParser(role="server")
        parser.receive_data(a + b + c + d + e)
        names = [m.name for m in parser.next_events()]
        assert names == ["A" * 40, "A" * 41, "Short", "Short", "Shor\rt"]


# -- framing paths agree --------------------------------------------------------------


@given(
    messages=st.lists(message_st, min_size=1, max_size=8),
    sizes=st.lists(st.sampled_from([1, 2, 3, 5, 17, 300, 4000, 9000, 20000]), min_size=1, max_size=30),
    pad=st.integers(0, 12000),
    batched=st.booleans(),
    lazy=st.booleans(),
    kinds=st.lists(st.sampled_from([bytes, bytearray, memoryview]), min_size=1, max_size=5),
    skips=st.lists(st.booleans(), min_size=1, max_size=7),
)
@settings(max_examples=300, deadline=None)
def test_buffer_kinds_and_batches_agree(messages, sizes, pad, batched, lazy, kinds, skips):
    """Short (bytes) and long (bytearray) buffers, reads split on their own or
    appended first (bytes, bytearray or memoryview data; several reads before
    asking), one or many blocks per split: the same messages at the same
    offsets, and bytes_received / buffered add up."""
    big = [("Event", "Big"), ("Data", "x" * pad)]
    blocks = [encode_message(h) for h in [big] + messages + [big] + messages]
    stream = b"Asterisk Call Manager/11.0.0\r\n" + b"".join(blocks)
    parser = AMIParser(lazy=lazy)
    events = []
    i = 0
    k = 0
    while i < len(stream):
        n = sizes[k % len(sizes)]
        parser.receive_data(kinds[k % len(kinds)](stream[i : i + n]))
        k += 1
        i += n
        if skips[k % len(skips)] and i < len(stream):
            continue  # another read before asking
        assert parser.bytes_received == min(i, len(stream))
        if batched:
            while batch := parser.next_events():
                events += batch
        else:
            events += drain(parser)
        assert parser.buffered == parser.bytes_received - sum(e.length for e in events)
    assert isinstance(events[0], Banner)
    got = [(m.offset, m.raw, m.kind, m.name) for m in events[1:]]
    offset = events[0].length
    want = []
    for headers, block in zip([big] + messages + [big] + messages, blocks):
        want.append((offset, block[:-4], headers[0][0].lower(), headers[0][1]))
        offset += len(block)
    assert got == want
    assert [m.items() for m in events[1:]] == [big] + messages + [big] + messages


def test_terminator_straddling_the_banner():
    """The banner's CRLF and a stray CRLF after it form no message."""
    parser = AMIParser()
    parser.receive_data(b"Asterisk Call Manager/11.0.0\r\n")
    assert isinstance(parser.next_event(), Banner)
    parser.receive_data(b"\r")
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"\n")
    assert parser.next_event() is NEED_DATA
    assert parser.next_events() == []
    parser.receive_data(b"Event: A\r\n\r\n")
    message = parser.next_event()
    assert (message.name, message.offset, message.length) == ("A", 32, 12)


def test_offsets_survive_pickling():
    import pickle

    for lazy in (True, False):
        parser = AMIParser(role="server", lazy=lazy)
        parser.receive_data(b"Event: A\r\n\r\nEvent: B\r\nX: 1\r\n\r\n")
        a, b = parser.next_events()
        for message, offset in ((a, 0), (b, 12)):
            copy = pickle.loads(pickle.dumps(message))
            assert copy == message and copy.offset == offset and copy.name == message.name
            assert type(copy) is type(message)
