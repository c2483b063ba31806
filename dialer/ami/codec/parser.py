"""The incremental parser: bytes in (:meth:`AMIParser.receive_data`), events out.

:meth:`AMIParser.next_event` returns a :class:`~dialer.ami.codec.message.Banner`,
a :class:`~dialer.ami.codec.message.Message`, :data:`NEED_DATA` or
:data:`CLOSED`; :meth:`AMIParser.next_events` returns every complete event at
once (a list), for consumers that want less overhead per message.

* Laziness: ``kind`` and ``name`` are resolved while framing from the block's
  first line (remembered by the block's first 32 bytes, per parser); the other
  headers are split when first read. With ``lazy=True`` (the default) a
  malformed header line therefore raises :class:`RemoteProtocolError` (with
  its stream offset) when that message's headers are read, and a first line
  without a colon gives ``kind == "unknown"``; ``lazy=False`` splits every
  message while framing, so every error comes from the parser, after the good
  messages before it have been returned.
* End of stream: ``receive_data(b"")``. Once every complete message has been
  returned, :data:`CLOSED` (forever after) if the stream ended between
  messages, :class:`RemoteProtocolError` if it ended inside one.
* Limits: a message (or banner) longer than ``max_message_size`` bytes raises
  :class:`RemoteProtocolError`, whether still incomplete or not.
* Stray empty lines between messages are skipped (they carry no data).
* ``Command`` on Asterisk 13 and older answers ``Response: Follows`` and the
  raw CLI text (lines without ``: ``, blank lines) up to ``--END COMMAND--``:
  that block is framed on its end marker and its text is
  :attr:`~dialer.ami.codec.message.Message.output`.
"""

from __future__ import annotations

import re
from collections import deque
from itertools import count, repeat
from operator import itemgetter
from typing import Literal, Union

from dialer.ami.codec.errors import RemoteProtocolError
from dialer.ami.codec.framing import LEGACY_END, Framer
from dialer.ami.codec.message import (
    UNKNOWN,
    Banner,
    Message,
    WireMessage,
    batch_offset,
    decode,
    kind_name,
    legacy_message,
    split_fast,
    split_lines,
)


class Sentinel:
    """:data:`NEED_DATA` and :data:`CLOSED`; compare with ``is``."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


NEED_DATA = Sentinel("NEED_DATA")
"""Returned by :meth:`AMIParser.next_event` when more bytes are needed."""

CLOSED = Sentinel("CLOSED")
"""Returned by :meth:`AMIParser.next_event` after a clean end of stream."""

Event = Union[Banner, Message]

_LEGACY_FIRST = re.compile(rb"(?i)response:[ \t]*follows[ \t]*")
_PREFIX_LEN = 32
_prefix = itemgetter(slice(0, _PREFIX_LEN))
_PREFIXES_MAX = 8192
_kind = itemgetter(0)
_name = itemgetter(1)


class AMIParser:
    """Incremental AMI parser.

    ``role="client"``: we are the client; the stream starts with the banner
    line and then carries responses and events. ``role="server"``: we are the
    server; the stream carries actions and has no banner.
    """

    def __init__(
        self,
        *,
        role: Literal["client", "server"] = "client",
        max_message_size: int = 1 << 20,
        lazy: bool = True,
    ) -> None:
        if role not in ("client", "server"):
            raise ValueError(f"role must be 'client' or 'server', not {role!r}")
        self.role = role
        self.lazy = lazy
        self._framer = Framer(max_message_size)
        # receive_data() is the framer's: one call per read, not two.
        self.receive_data = self._framer.receive
        self._want_banner = role == "client"
        self._legacy = False  # the next block is a Response: Follows block
        self._legacy_ok = role == "client"
        self._ready: deque[Event] = deque()
        self._error: RemoteProtocolError | None = None
        self._closed = False
        # A block's first _PREFIX_LEN bytes -> (kind, name), for blocks whose
        # first line ends within them; emptied when full (a response's
        # ActionID makes most prefixes unique).
        self._prefixes: dict[bytes, tuple[str, str | None]] = {}

    @property
    def max_message_size(self) -> int:
        return self._framer.max_message_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return self._framer.buffered

    @property
    def bytes_received(self) -> int:
        """Bytes received so far (end of stream not counted)."""
        return self._framer.received

    @property
    def closed(self) -> bool:
        """True once every message has been returned and the stream ended cleanly."""
        return self._closed

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed the stream."""
        self._framer.receive(data)

    def next_event(self) -> Union[Event, Sentinel]:
        """The next :class:`Banner` or :class:`Message`, or :data:`NEED_DATA` / :data:`CLOSED`."""
        ready = self._ready
        if not ready:
            if not self._framer.pending:
                return CLOSED if self._closed else NEED_DATA
            found = self._frame()
            if not found:
                return CLOSED if self._closed else NEED_DATA
            ready.extend(found)
        return ready.popleft()

    def next_events(self) -> list[Event]:
        """Every event complete so far, in order; ``[]`` when there is none.

        The same as calling :meth:`next_event` until it returns a sentinel,
        with less overhead per message. After ``[]``, :attr:`closed` tells
        whether the stream has ended (cleanly). Errors are raised as by
        :meth:`next_event`, after the good messages before them were returned.
        """
        ready = self._ready
        if ready:
            found = list(ready)
            ready.clear()
            return found
        return self._frame() if self._framer.pending else []

    # -- framing ------------------------------------------------------------------

    def _frame(self) -> list[Event]:
        """The events complete in the buffer; [] if there is none (then _closed tells why)."""
        if self._error is not None:
            raise self._error
        framer = self._framer
        try:
            while not self._want_banner and not self._legacy:
                # The common case: blocks ended by an empty line.
                pieces, first = framer.blocks()
                if not pieces:
                    self._closed = framer.closed
                    return []
                # (kind, name) by each block's first bytes, in C; misses are
                # resolved one by one.
                kns = list(map(self._prefixes.get, map(_prefix, pieces)))
                if None in kns and self._resolve(pieces, kns):
                    found = self._careful(pieces, first)
                    if found:
                        return found
                    continue  # only stray empty lines, or a Response: Follows block begins
                # Offsets are worked out when asked, from the lengths (see WireMessage).
                batch = list(map(len, pieces))
                batch.append(first)
                if self.lazy:
                    return list(map(WireMessage, zip(
                        pieces, map(_kind, kns), map(_name, kns), repeat(batch), count(), repeat(None)
                    )))
                return self._eager(pieces, kns, batch)
            if self._want_banner:
                return self._banner()
            return self._legacy_block()
        except RemoteProtocolError as exc:
            self._defer(exc)
            raise

    def _defer(self, exc: RemoteProtocolError) -> None:
        """Raise ``exc`` from every call from now on."""
        self._error = exc
        self._framer.pending = True  # so that next_event() gets as far as raising it

    def _eager(self, pieces: list[bytes], kns: list, batch: list[int]) -> list[Event]:
        """Messages with their headers split now (``lazy=False``)."""
        flats = list(map(split_fast, pieces))
        if None in flats:
            for i, flat in enumerate(flats):
                if flat is None:
                    try:
                        flats[i] = split_lines(pieces[i], batch_offset(batch, i))
                    except RemoteProtocolError as exc:
                        # Hand out the good messages before it; then raise.
                        self._defer(exc)
                        if not i:
                            raise
                        del flats[i:]
                        break
        return list(map(WireMessage, zip(
            pieces, map(_kind, kns), map(_name, kns), repeat(batch), count(), flats
        )))

    def _resolve(self, pieces: list[bytes], kns: list[tuple[str, str | None] | None]) -> bool:
        """Fill in unknown (kind, name)s; True if the blocks need the careful path."""
        prefixes = self._prefixes
        for i, kn in enumerate(kns):
            if kn is not None:
                continue
            piece = pieces[i]
            if not piece or piece[0] == 13:  # stray empty lines
                return True
            first = piece.partition(b"\r\n")[0]
            if _LEGACY_FIRST.fullmatch(first):
                return True
            kn = kns[i] = self._first_line(first)
            key = piece[:_PREFIX_LEN]
            if kn[0] != "unknown" and (len(first) + 2 <= len(key) or len(piece) < _PREFIX_LEN):
                # The prefix holds the whole first line, so it decides (kind, name).
                if len(prefixes) >= _PREFIXES_MAX:
                    prefixes.clear()
                prefixes[key] = kn
        return False

    @staticmethod
    def _first_line(first: bytes) -> tuple[str, str | None]:
        """(kind, name) of a first header line; a line without a colon gives ("unknown", None)."""
        key, sep, value = first.partition(b":")
        if not sep:
            return UNKNOWN
        return kind_name(decode(key), decode(value.removeprefix(b" ")))

    def _careful(self, pieces: list[bytes], offset: int) -> list[Event]:
        """Messages from blocks one by one: stray empty lines, a Response: Follows block."""
        out: list[Event] = []
        for i, piece in enumerate(pieces):
            if not piece or piece[0] == 13:  # stray empty lines
                stripped = piece.lstrip(b"\r\n")
                offset += len(piece) - len(stripped)
                if not stripped:
                    offset += 4
                    continue
                piece = stripped
            first = piece.partition(b"\r\n")[0]
            if self._legacy_ok and _LEGACY_FIRST.fullmatch(first):
                # Framed again on its end marker, searched from the first
                # terminator, which may be the marker's own.
                self._legacy = True
                search_from = max(0, len(piece) + 4 - len(LEGACY_END))
                self._framer.unread([piece, *pieces[i + 1 :]], offset, search_from)
                break
            kind, name = self._first_line(first)
            message = WireMessage((piece, kind, name, offset, None, None))
            if not self.lazy:
                try:
                    message._flat()
                except RemoteProtocolError as exc:
                    # Hand out the good messages before it; then raise.
                    self._defer(exc)
                    if not out:
                        raise
                    break
            out.append(message)
            offset += len(piece) + 4
        return out

    def _banner(self) -> list[Event]:
        framer = self._framer
        offset = framer.offset
        line = framer.line()
        if line is None:
            if framer.check_incomplete(1):
                self._closed = True
            return []
        if len(line) > framer.max_message_size:
            raise RemoteProtocolError("AMI banner line too long", offset)
        text = decode(line)
        product, slash, version = text.rpartition("/")
        if (
            not slash
            or "call manager" not in product.lower()
            or not version
            or ":" in text
            or " " in version
        ):
            raise RemoteProtocolError(
                f"expected an AMI banner like 'Asterisk Call Manager/11.0.0', got {text[:60]!r}",
                offset,
            )
        self._want_banner = False
        return [Banner(version=version, product=product, offset=offset, length=len(line) + 2)]

    def _legacy_block(self) -> list[Event]:
        framer = self._framer
        offset = framer.offset
        raw = framer.legacy_block()
        if raw is None:
            if framer.check_incomplete(len(LEGACY_END) - 1):
                self._closed = True
            return []
        self._legacy = False
        return [legacy_message(raw, offset)]
