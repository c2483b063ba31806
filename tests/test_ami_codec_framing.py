"""Framing (dialer.ami.codec.framing): message boundaries in the received bytes, and its errors."""

from __future__ import annotations

import pytest

from dialer.ami.codec.errors import LocalProtocolError, RemoteProtocolError
from dialer.ami.codec.framing import LEGACY_END, Framer
from dialer.ami.codec.parser import NEED_DATA, AMIParser

A = b"Event: A\r\nX: 1"
B = b"Event: B"


def take_all(framer: Framer) -> list[tuple[bytes, int]]:
    out = []
    while True:
        pieces, first = framer.blocks()
        if not pieces:
            return out
        for piece in pieces:
            out.append((piece, first))
            first += len(piece) + 4


def test_blocks_in_one_chunk_and_the_rest_kept():
    framer = Framer(1000)
    framer.receive(A + b"\r\n\r\n" + B + b"\r\n\r\nEvent: C\r\n")
    assert take_all(framer) == [(A, 0), (B, len(A) + 4)]
    assert framer.buffered == len(b"Event: C\r\n") and framer.offset == len(A) + len(B) + 8
    framer.receive(b"\r\n")
    assert take_all(framer) == [(b"Event: C", len(A) + len(B) + 8)]
    assert framer.buffered == 0 and framer.received == len(A) + len(B) + 20


@pytest.mark.parametrize("cut", range(1, len(A) + 4))
def test_a_block_split_across_two_reads_at_any_byte(cut):
    data = A + b"\r\n\r\n" + B + b"\r\n\r\n"
    framer = Framer(1000)
    framer.receive(data[:cut])
    got = take_all(framer)
    framer.receive(data[cut:])
    got += take_all(framer)
    assert got == [(A, 0), (B, len(A) + 4)]


def test_one_byte_at_a_time_with_the_terminator_straddling_reads():
    data = (A + b"\r\n\r\n") * 3
    framer = Framer(1000)
    got = []
    for i in range(len(data)):
        framer.receive(data[i : i + 1])
        got += take_all(framer)
    assert got == [(A, 0), (A, len(A) + 4), (A, 2 * (len(A) + 4))]


def test_a_long_message_arriving_in_pieces_grows_one_buffer():
    body = b"".join(b"Variable: V%05d=x\r\n" % i for i in range(2000))  # ~40 kB
    data = b"Event: Big\r\n" + body + b"\r\n"
    framer = Framer(1 << 20)
    for i in range(0, len(data), 1000):
        framer.receive(data[i : i + 1000])
        if i + 1000 < len(data):
            assert framer.blocks() == ([], 0)
    assert take_all(framer) == [(data[:-4], 0)]


def test_memoryview_and_bytearray_chunks_are_accepted():
    framer = Framer(1000)
    framer.receive(memoryview(A + b"\r\n"))
    framer.receive(bytearray(b"\r\n"))
    assert take_all(framer) == [(A, 0)]


def test_incomplete_bytes_over_the_limit_raise_naming_the_limit():
    framer = Framer(20)
    framer.receive(b"Event: A\r\n" + b"X" * 30)
    with pytest.raises(RemoteProtocolError, match="incomplete AMI message exceeds the limit of 20 bytes") as info:
        framer.blocks()
    assert info.value.offset == 0


def test_a_complete_block_over_the_limit_raises_with_its_size_and_offset():
    framer = Framer(30)
    framer.receive(b"Event: A\r\n\r\n" + b"Event: B\r\nX: " + b"y" * 30 + b"\r\n\r\n")
    with pytest.raises(RemoteProtocolError, match=r"AMI message of 47 bytes exceeds the limit of 30") as info:
        framer.blocks()
    assert info.value.offset == 12


def test_end_of_stream_inside_a_block_is_an_error_between_blocks_is_clean():
    framer = Framer(1000)
    framer.receive(A + b"\r\n\r\n\r\n")
    framer.receive(b"")
    assert take_all(framer) == [(A, 0)]
    assert framer.closed
    framer = Framer(1000)
    framer.receive(A + b"\r\n\r\nEvent: B\r\n")
    framer.receive(b"")
    assert framer.blocks() == ([A], 0)
    with pytest.raises(RemoteProtocolError, match="connection closed in the middle of an AMI message") as info:
        framer.blocks()
    assert info.value.offset == len(A) + 4


def test_bytes_after_the_end_of_stream_are_refused():
    framer = Framer(1000)
    framer.receive(b"")
    with pytest.raises(LocalProtocolError, match="after end of stream"):
        framer.receive(b"Event: A\r\n\r\n")
    framer.receive(b"")  # a second end is harmless


def test_unread_gives_blocks_back_for_framing_on_another_marker():
    legacy = b"Response: Follows\r\n\r\nline 2\r\n--END COMMAND--\r\n\r\n"
    framer = Framer(1000)
    framer.receive(legacy + B + b"\r\n\r\n")
    pieces, first = framer.blocks()
    assert len(pieces) == 3
    framer.unread(pieces, first)
    assert framer.legacy_block() == legacy[: -4] and legacy.endswith(LEGACY_END)
    assert take_all(framer) == [(B, len(legacy))]
    with pytest.raises(ValueError, match="last blocks taken"):
        framer.unread([b"Event: X"], 0)


def test_line_waits_for_its_crlf():
    framer = Framer(1000)
    framer.receive(b"Asterisk Call Manager/11.0.0\r")
    assert framer.line() is None
    framer.receive(b"\nEvent: A\r\n\r\n")
    assert framer.line() == b"Asterisk Call Manager/11.0.0"
    assert framer.offset == 30
    assert take_all(framer) == [(b"Event: A", 30)]


# -- bad bytes, through the parser: one clear error naming what was wrong ------------


def test_not_an_ami_banner_names_what_came_instead():
    parser = AMIParser()
    parser.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(RemoteProtocolError, match=r"expected an AMI banner .* got 'HTTP/1.1 400 Bad Request' \(at byte 0\)"):
        parser.next_event()


def test_a_header_line_without_colon_is_named_with_its_offset():
    parser = AMIParser(role="server", lazy=False)
    parser.receive_data(b"Action: Ping\r\nthis is not a header\r\n\r\n")
    with pytest.raises(RemoteProtocolError, match=r"AMI header line without ':': 'this is not a header' \(at byte 14\)"):
        parser.next_event()


def test_lf_only_line_ends_never_frame_and_hit_the_limit():
    parser = AMIParser(role="server", max_message_size=64)
    parser.receive_data(b"Action: Ping\n\n" * 4)
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"Action: Ping\n\n" * 2)
    with pytest.raises(RemoteProtocolError, match="incomplete AMI message exceeds the limit of 64 bytes"):
        parser.next_event()


def test_the_error_stays_raised():
    parser = AMIParser(role="server", max_message_size=16)
    parser.receive_data(b"Action: " + b"P" * 20 + b"\r\n\r\n")
    for _ in range(2):
        with pytest.raises(RemoteProtocolError, match="exceeds the limit of 16"):
            parser.next_event()


def test_a_long_message_one_byte_at_a_time_from_a_memoryview():
    data = b"Event: Big\r\n" + b"".join(b"V: %05d\r\n" % i for i in range(2000)) + b"\r\n"
    parser = AMIParser(role="server")
    view = memoryview(data)
    for k in range(len(data) - 1):
        parser.receive_data(view[k : k + 1])
        assert parser.next_event() is NEED_DATA
    parser.receive_data(view[-1:])
    message = parser.next_event()
    assert message.name == "Big" and len(message.get_all("V")) == 2000


def test_a_long_line_growing_past_the_limit_raises_before_any_line_end():
    parser = AMIParser(role="server", max_message_size=10_000)
    parser.receive_data(b"Action: Ping\r\nData: " + b"x" * 9000)  # a bytearray from here on
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"x" * 500)
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"x" * 600)
    with pytest.raises(RemoteProtocolError, match="incomplete AMI message exceeds the limit of 10000 bytes"):
        parser.next_event()
