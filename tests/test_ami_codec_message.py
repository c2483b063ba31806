"""The message model (dialer.ami.codec.message): one interface for built and received messages."""

from __future__ import annotations

import pickle

import pytest

from dialer.ami.codec.errors import RemoteProtocolError
from dialer.ami.codec.message import (
    Banner,
    Message,
    WireMessage,
    batch_offset,
    legacy_message,
    split_fast,
    split_lines,
)
from dialer.ami.codec.parser import AMIParser

HEADERS = [("Event", "Hangup"), ("Channel", "PJSIP/1-1"), ("Cause", "16"), ("channel", "second")]
RAW = b"Event: Hangup\r\nChannel: PJSIP/1-1\r\nCause: 16\r\nchannel: second"


def received(raw: bytes = RAW, lazy: bool = True) -> Message:
    parser = AMIParser(role="server", lazy=lazy)
    parser.receive_data(b"Event: First\r\n\r\n" + raw + b"\r\n\r\n")
    first, message = parser.next_events()
    return message


@pytest.fixture(params=["built", "received", "received-eager"])
def message(request) -> Message:
    if request.param == "built":
        return Message(HEADERS)
    return received(lazy=request.param == "received")


def test_the_mapping_is_ordered_case_insensitive_first_wins(message):
    assert message.kind == "event" and message.name == "Hangup"
    assert message["CHANNEL"] == "PJSIP/1-1" and message.get("channel") == "PJSIP/1-1"
    assert message.get_all("Channel") == ["PJSIP/1-1", "second"]
    assert message.items() == HEADERS and list(message) == [k for k, _ in HEADERS]
    assert len(message) == 4 and "cause" in message and "Missing" not in message and 3 not in message
    assert message.get("Missing") is None and message.get("Missing", "x") == "x"
    with pytest.raises(KeyError):
        message["Missing"]


def test_built_and_received_messages_are_equal_and_unhashable(message):
    assert message == Message(HEADERS) and message != Message(HEADERS[:2])
    assert message != HEADERS
    with pytest.raises(TypeError):
        hash(message)


def test_a_received_message_is_not_a_tuple_to_its_users():
    message = received()
    assert isinstance(message, WireMessage)
    assert message.raw == RAW and message.offset == 16 and message.length == len(RAW) + 4
    with pytest.raises(TypeError):
        message + message
    with pytest.raises(TypeError):
        message < message
    assert bool(received(b"Event: X"))


def test_a_single_get_before_any_split_reads_the_bytes():
    message = received()
    assert message.get("cause") == "16"
    assert "_f" not in message.__dict__  # nothing split yet
    assert message.get_all("channel") == ["PJSIP/1-1", "second"]


def test_repr_hides_secrets():
    text = repr(Message([("Action", "Login"), ("Username", "u"), ("Secret", "s3cret")]))
    assert "s3cret" not in text and "********" in text


def test_built_messages_take_str_only():
    with pytest.raises(TypeError, match="must be str"):
        Message([("Action", 1)])
    empty = Message()
    assert empty.kind == "unknown" and empty.name is None and empty.raw is None and empty.offset is None


def test_pickled_received_messages_keep_their_fields():
    message = received()
    message.items()
    copy = pickle.loads(pickle.dumps(message))
    assert copy == message and (copy.raw, copy.offset, copy.name) == (message.raw, 16, "Hangup")


def test_split_fast_takes_plain_lines_and_refuses_the_rest():
    assert split_fast(b"A: 1\r\nB: 2") == ["A", "1", "B", "2"]
    assert split_fast(b"A: 1:2") is None  # a second colon
    assert split_fast(b"A:1") is None  # no space after the colon
    assert split_fast(b"A: 1\rB: 2") is None  # a bare CR
    assert split_lines(b"A: 1:2\r\nB:2\r\nC: ", 0) == ["A", "1:2", "B", "2", "C", ""]


def test_split_lines_names_the_bad_line_and_its_offset():
    with pytest.raises(RemoteProtocolError, match=r"without ':': 'oops' \(at byte 106\)"):
        split_lines(b"A: \xff\r\noops\r\nB: 1", 100)


def test_bytes_that_are_not_utf8_survive_as_surrogates():
    message = received(b"Event: X\r\nName: caf\xe9")
    assert message["Name"] == "caf\udce9"
    assert message["Name"].encode("utf-8", "surrogateescape") == b"caf\xe9"


def test_batch_offset_counts_each_terminator():
    batch = [10, 5, 7, 100]  # three blocks, the first at 100
    assert [batch_offset(batch, i) for i in range(3)] == [100, 114, 123]


def test_legacy_message_keeps_headers_and_the_command_text():
    raw = b"Response: Follows\r\nPrivilege: Command\r\nline one\r\n\r\nline: three\n--END COMMAND--"
    message = legacy_message(raw, 7)
    assert message.kind == "response" and message.name == "Follows" and message.offset == 7
    assert message.items() == [("Response", "Follows"), ("Privilege", "Command")]
    assert message.output == ["line one", "", "line: three"]


def test_banner_line():
    assert Banner(version="11.0.0").line == "Asterisk Call Manager/11.0.0"
