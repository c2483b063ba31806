"""Serialization (dialer.ami.codec.serialize): headers to bytes, refusing what the wire cannot carry."""

from __future__ import annotations

import pytest

from dialer.ami.codec.errors import LocalProtocolError
from dialer.ami.codec.parser import AMIParser
from dialer.ami.codec.serialize import encode_action, encode_message


def test_lines_and_the_empty_line():
    assert encode_message([("Action", "Ping"), ("ActionID", "1")]) == b"Action: Ping\r\nActionID: 1\r\n\r\n"
    assert encode_message(iter([("Event", "X"), ("Empty", "")])) == b"Event: X\r\nEmpty: \r\n\r\n"
    assert encode_message([]) == b"\r\n"


def test_surrogates_are_written_back_byte_for_byte():
    assert encode_message([("Name", "caf\udce9")]) == b"Name: caf\xe9\r\n\r\n"


@pytest.mark.parametrize(
    "headers, error",
    [
        ([("Action", "Ping"), ("Bad Key", "x")], r"header #2 has an invalid name 'Bad Key' \(must be a token\)"),
        ([("", "x")], r"header #1 has an invalid name ''"),
        ([(1, "x")], r"header #1 has an invalid name 1"),
        ([("Action", "Ping"), ("Data", 5)], r"header 'Data': value must be str, not int"),
        ([("Data", "a\r\nAction: Hangup")], r"header 'Data': value contains CR"),
        ([("Data", "a\nb")], r"header 'Data': value contains LF"),
        ([("Data", "a\0b")], r"header 'Data': value contains NUL"),
        ([("Action", "Ping", "extra")], r"must be \(key, value\) pairs"),
        (["Action"], r"must be \(key, value\) pairs"),
    ],
)
def test_what_cannot_be_sent_is_refused_naming_the_field(headers, error):
    with pytest.raises(LocalProtocolError, match=error):
        encode_message(headers)


def test_encode_action_puts_action_and_action_id_first():
    data = encode_action("Originate", [("Channel", "Local/1@x"), ("Async", "true")], action_id="o-1")
    assert data == b"Action: Originate\r\nActionID: o-1\r\nChannel: Local/1@x\r\nAsync: true\r\n\r\n"
    parser = AMIParser(role="server")
    parser.receive_data(data)
    message = parser.next_event()
    assert message.name == "Originate" and message.action_id == "o-1"


def test_encode_action_refusals():
    with pytest.raises(LocalProtocolError, match="invalid AMI action name ''"):
        encode_action("")
    with pytest.raises(LocalProtocolError, match="ActionID given both"):
        encode_action("Ping", [("actionid", "a")], action_id="b")
    with pytest.raises(LocalProtocolError, match="value contains CR"):
        encode_action("Ping\r\nAction: Hangup")
