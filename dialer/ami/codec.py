"""Sans-IO codec for the Asterisk Manager Interface (AMI).

No I/O happens here and trio is never imported: :class:`AMIParser` takes bytes
with :meth:`~AMIParser.receive_data` and hands out :class:`Banner` and
:class:`Message` objects from :meth:`~AMIParser.next_event`;
:func:`encode_message` and :func:`encode_action` turn headers into bytes.

Wire format: the server opens with one banner line
(``Asterisk Call Manager/11.0.0\\r\\n``); after that every message is a block
of ``Key: Value\\r\\n`` lines ended by an empty line. Keys repeat, so a message
is an ordered multi-map. ``Command`` on Asterisk 13 and older answers
``Response: Follows`` followed by the raw CLI text (lines without ``: `` and
blank lines allowed) and ``--END COMMAND--``; that form is framed on its end
marker and its text is exposed as :attr:`Message.output`.

Decisions:

* Decoding: every header is decoded as UTF-8 with ``surrogateescape``. Bytes
  that are not UTF-8 become lone surrogates, nothing is dropped, and
  :func:`encode_message` writes them back byte for byte. Messages are framed as
  bytes and decoded whole, so a character split across reads arrives whole.
* Laziness: framing is done on bytes; a message keeps its raw bytes and parses
  its headers only when they are first read. :attr:`Message.kind`,
  :attr:`Message.name` and a single :meth:`Message.get` look at the bytes
  without building the header list. With ``AMIParser(lazy=True)`` (the
  default) a malformed header line therefore raises
  :class:`RemoteProtocolError` (with its stream offset) when that message's
  headers are read; ``lazy=False`` parses every message inside
  :meth:`AMIParser.next_event`, so every error comes from there.
* Values: one space after the colon is removed (``AccountCode: `` gives
  ``""``); everything else in the value is kept as sent.
* End of stream: ``receive_data(b"")`` marks EOF. Once every complete message
  has been returned, :meth:`AMIParser.next_event` returns the :data:`CLOSED`
  sentinel (forever after) if the stream ended between messages, and raises
  :class:`RemoteProtocolError` if it ended inside one.
* Limits: a message (or banner) longer than ``max_message_size`` bytes raises
  :class:`RemoteProtocolError`, whether still incomplete or not. The parser
  never searches the same bytes twice for a terminator, so input arriving one
  byte at a time costs linear time.
* Stray empty lines between messages are skipped (they carry no data).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Literal, Union

__all__ = [
    "NEED_DATA",
    "CLOSED",
    "Banner",
    "Message",
    "AMIParser",
    "encode_message",
    "encode_action",
    "AMIProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
]


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")
"""Returned by :meth:`AMIParser.next_event` when more bytes are needed."""

CLOSED = _Sentinel("CLOSED")
"""Returned by :meth:`AMIParser.next_event` after a clean end of stream."""


class AMIProtocolError(Exception):
    """Base class of the codec's errors."""


class LocalProtocolError(AMIProtocolError):
    """We tried to send something the protocol cannot carry."""


class RemoteProtocolError(AMIProtocolError):
    """The peer sent bytes that are not valid AMI.

    ``offset`` is the position in the received stream (0 = first byte ever
    received) of the offending message or line.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


@dataclass(frozen=True, kw_only=True, slots=True)
class Banner:
    """The server's greeting line, e.g. ``Asterisk Call Manager/11.0.0``.

    Any ``<product containing "Call Manager">/<version>`` line is accepted, so
    that a wrong port (an HTTP or SIP server) gives a clear error.
    """

    version: str
    product: str = "Asterisk Call Manager"
    offset: int = 0
    length: int = 0

    @property
    def line(self) -> str:
        return f"{self.product}/{self.version}"


_KIND_EXACT = {b"Response": "response", b"Event": "event", b"Action": "action"}
_KIND_LOWER = {"response": "response", "event": "event", "action": "action"}
_SECRET_KEYS = frozenset({"secret", "key"})
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_LEGACY_END = b"--END COMMAND--\r\n\r\n"
_LEGACY_FIRST = re.compile(rb"(?i)response:[ \t]*follows[ \t]*")


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


class Message:
    """One AMI message: an immutable, ordered multi-map of headers.

    Header lookup is case-insensitive and returns the first occurrence;
    :meth:`items` gives every header in wire order with keys as sent.
    Messages parsed from the wire also carry ``offset`` and ``length`` (in
    bytes, terminator included) and :attr:`raw`; constructed ones have ``None``.
    """

    __slots__ = (
        "_raw", "_headers", "_index", "_lower", "_kind", "_name", "_output",
        "offset", "length",
    )

    def __init__(self, headers: Iterable[tuple[str, str]]) -> None:
        items = []
        for pair in headers:
            key, value = pair
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"header {key!r}: keys and values must be str")
            items.append((key, value))
        self._headers = items
        self._raw = None
        self._index = None
        self._lower = None
        self._kind = None
        self._name = None
        self._output = None
        self.offset = None
        self.length = None

    # -- construction from the wire -------------------------------------------------

    @classmethod
    def _from_wire(cls, raw: bytes, offset: int, length: int) -> "Message":
        self = cls.__new__(cls)
        self._raw = raw
        self._headers = None
        self._index = None
        self._lower = None
        self._kind = None
        self._name = None
        self._output = None
        self.offset = offset
        self.length = length
        return self

    @classmethod
    def _from_legacy(cls, raw: bytes, offset: int, length: int) -> "Message":
        """A ``Response: Follows`` block: header lines, then raw text."""
        self = cls._from_wire(raw, offset, length)
        text = _decode(raw[: -len(_LEGACY_END)])
        headers = []
        pos = 0
        while True:
            end = text.find("\r\n", pos)
            if end < 0:
                break
            line = text[pos:end]
            key, sep, value = line.partition(":")
            if not sep or not _TOKEN.fullmatch(key):
                break
            if pos and key.lower() not in ("privilege", "actionid"):
                # Only these follow the first line in this form; anything
                # else is already command output.
                break
            headers.append((key, value[1:] if value[:1] == " " else value))
            pos = end + 2
        body = text[pos:]
        lines = body.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self._output = [line[:-1] if line[-1:] == "\r" else line for line in lines]
        self._headers = headers
        return self

    # -- lazy parsing ---------------------------------------------------------------

    def _parse(self) -> list[tuple[str, str]]:
        raw = self._raw
        text = _decode(raw)
        lines = text.split("\r\n")
        parts = [line.partition(":") for line in lines]
        headers = [(k, v[1:] if v[:1] == " " else v) for k, s, v in parts if s]
        if len(headers) != len(parts):
            pos = self.offset or 0
            for line, (k, s, v) in zip(lines, parts):
                if not s:
                    raise RemoteProtocolError(
                        f"AMI header line without ':': {line[:60]!r}", pos
                    )
                pos += len(line.encode("utf-8", "surrogateescape")) + 2
        self._headers = headers
        return headers

    def _first(self) -> None:
        if self._raw is not None and self._headers is None:
            raw = self._raw
            end = raw.find(b"\r\n")
            first = raw if end < 0 else raw[:end]
            key, sep, value = first.partition(b":")
            if not sep:
                raise RemoteProtocolError(
                    f"AMI message does not start with a header: {first[:60]!r}",
                    self.offset or 0,
                )
            kind = _KIND_EXACT.get(key)
            if kind is None:
                kind = _KIND_LOWER.get(_decode(key).strip().lower(), "unknown")
            self._kind = kind
            self._name = _decode(value[1:] if value[:1] == b" " else value)
        else:
            headers = self._headers if self._headers is not None else self._parse()
            if not headers:
                self._kind, self._name = "unknown", None
                return
            key, value = headers[0]
            self._kind = _KIND_LOWER.get(key.strip().lower(), "unknown")
            self._name = value
        if self._kind == "unknown":
            self._name = None

    @property
    def kind(self) -> str:
        """``"response"``, ``"event"``, ``"action"`` or ``"unknown"``, from the first header."""
        if self._kind is None:
            self._first()
        return self._kind  # type: ignore[return-value]

    @property
    def name(self) -> str | None:
        """The value of the first header when it is Response, Event or Action."""
        if self._kind is None:
            self._first()
        return self._name

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    @property
    def raw(self) -> bytes | None:
        """The bytes as received, without the terminating empty line (None if constructed)."""
        return self._raw

    @property
    def output(self) -> list[str]:
        """Command output: the ``Output:`` values, or the text of a ``Response: Follows`` body."""
        if self._output is not None:
            return list(self._output)
        return self.get_all("Output")

    # -- mapping interface ---------------------------------------------------------

    def items(self) -> list[tuple[str, str]]:
        headers = self._headers if self._headers is not None else self._parse()
        return list(headers)

    def get(self, key: str, default: str | None = None) -> str | None:
        index = self._index
        if index is None:
            if self._headers is None:
                found = self._find(key)
                if found is not _MISSING:
                    return found  # type: ignore[return-value]
                # Fall through: the full parse decides (and may raise).
            index = self._build_index()
        return index.get(key.lower(), default)

    def _find(self, key: str) -> object:
        """Look one key up in the raw bytes without parsing every header."""
        try:
            needle = key.lower().encode("ascii")
        except UnicodeEncodeError:
            return _MISSING
        if not needle or b"\r" in needle or b"\n" in needle or b":" in needle:
            return _MISSING
        lower = self._lower
        if lower is None:
            lower = self._lower = self._raw.lower()  # type: ignore[union-attr]
        if lower.startswith(needle + b":"):
            start = len(needle) + 1
        else:
            at = lower.find(b"\r\n" + needle + b":")
            if at < 0:
                return _MISSING
            start = at + len(needle) + 3
        raw = self._raw
        end = raw.find(b"\r\n", start)  # type: ignore[union-attr]
        value = raw[start:] if end < 0 else raw[start:end]  # type: ignore[index]
        if value[:1] == b" ":
            value = value[1:]
        return _decode(value)

    def _build_index(self) -> dict[str, str]:
        headers = self._headers if self._headers is not None else self._parse()
        index: dict[str, str] = {}
        for key, value in headers:
            index.setdefault(key.lower(), value)
        self._index = index
        return index

    def get_all(self, key: str) -> list[str]:
        key = key.lower()
        headers = self._headers if self._headers is not None else self._parse()
        return [v for k, v in headers if k.lower() == key]

    def __getitem__(self, key: str) -> str:
        value = self.get(key, _MISSING)  # type: ignore[arg-type]
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._headers if self._headers is not None else self._parse())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.items() == other.items() and self.output == other.output

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = [
            (k, "********" if k.lower() in _SECRET_KEYS else v) for k, v in self.items()
        ]
        return f"Message({shown!r})"


class _Missing:
    pass


_MISSING = _Missing()


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
        self.max_message_size = max_message_size
        self.lazy = lazy
        self._buf = bytearray()
        self._pos = 0  # start of the first unconsumed byte in _buf
        self._scan = 0  # where the next terminator search starts
        self._base = 0  # stream offset of _buf[0]
        self._want_banner = role == "client"
        self._legacy = False  # the message at _pos is a Response: Follows block
        self._legacy_ok = role == "client"
        self._ready: deque[Message] = deque()
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self.bytes_received = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed the stream."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("receive_data() after end of stream")
        buf = self._buf
        pos = self._pos
        if pos > 65536 and pos * 2 > len(buf):
            del buf[:pos]
            self._base += pos
            self._scan -= pos
            self._pos = 0
        buf += data
        self.bytes_received += len(data)

    def next_event(self) -> Union[Banner, Message, _Sentinel]:
        """Return the next :class:`Banner` or :class:`Message`, or :data:`NEED_DATA` / :data:`CLOSED`."""
        ready = self._ready
        if ready:
            return ready.popleft()
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except RemoteProtocolError as exc:
            self._error = exc
            raise

    def _next(self) -> Union[Banner, Message, _Sentinel]:
        buf = self._buf
        if self._want_banner:
            return self._banner()
        if self._legacy:
            return self._legacy_block()
        pos = self._pos
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            return self._incomplete(3)
        # Grab every complete block in one go: split them in C.
        last = buf.rfind(b"\r\n\r\n", end + 4)
        if last < 0:
            last = end
        else:
            # In a run of empty lines the terminator is the first CRLF CRLF.
            while last - 2 >= end + 4 and buf[last - 2 : last] == b"\r\n":
                last -= 2
        region = bytes(buf[pos:last])
        if self._legacy_ok and (b"ollows" in region or b"OLLOWS" in region):
            # A Response: Follows block may be among them; go one at a time.
            region = region[: end - pos]
            last = end
            if _LEGACY_FIRST.match(region.lstrip(b"\r\n")):
                # No terminator lies before ``end``, so the end marker (which
                # ends in one) cannot start before end - 15.
                self._legacy = True
                self._scan = max(pos, end + 4 - len(_LEGACY_END))
                return self._legacy_block()
        self._pos = self._scan = last + 4
        offset = self._base + pos
        pieces = region.split(b"\r\n\r\n")
        limit = self.max_message_size
        check = len(region) + 4 > limit
        from_wire = Message._from_wire
        out = []
        for piece in pieces:
            size = len(piece) + 4
            if not piece or piece[0] == 13:
                stripped = piece.lstrip(b"\r\n")
                if not stripped:
                    offset += size
                    continue
                offset += len(piece) - len(stripped)
                size -= len(piece) - len(stripped)
                piece = stripped
            if check and size > limit:
                raise RemoteProtocolError(
                    f"AMI message of {size} bytes exceeds the limit of {limit}", offset
                )
            out.append(from_wire(piece, offset, size))
            offset += size
        if not self.lazy:
            for message in out:
                message._parse()
                message._first()
        if not out:
            return self._next()
        first = out[0]
        if len(out) > 1:
            self._ready.extend(out[1:])
        return first

    def _incomplete(self, keep: int) -> _Sentinel:
        buf = self._buf
        pos = self._pos
        size = len(buf) - pos
        self._scan = max(pos, len(buf) - keep)
        if size > self.max_message_size:
            raise RemoteProtocolError(
                f"incomplete AMI message exceeds the limit of {self.max_message_size} bytes",
                self._base + pos,
            )
        if self._eof:
            if buf[pos:].strip(b"\r\n"):
                raise RemoteProtocolError(
                    "connection closed in the middle of an AMI message",
                    self._base + pos,
                )
            return CLOSED
        return NEED_DATA

    def _banner(self) -> Union[Banner, _Sentinel]:
        buf = self._buf
        pos = self._pos
        end = buf.find(b"\r\n", self._scan)
        if end < 0:
            return self._incomplete(1)
        line = bytes(buf[pos:end])
        offset = self._base + pos
        if end - pos > self.max_message_size:
            raise RemoteProtocolError("AMI banner line too long", offset)
        text = _decode(line)
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
        self._pos = self._scan = end + 2
        self._want_banner = False
        return Banner(version=version, product=product, offset=offset, length=end + 2 - pos)

    def _legacy_block(self) -> Union[Message, _Sentinel]:
        buf = self._buf
        pos = self._pos
        end = buf.find(_LEGACY_END, self._scan)
        if end < 0:
            return self._incomplete(len(_LEGACY_END) - 1)
        stop = end + len(_LEGACY_END)
        block = bytes(buf[pos:stop])
        stripped = block.lstrip(b"\r\n")
        skipped = len(block) - len(stripped)
        offset = self._base + pos + skipped
        if len(stripped) > self.max_message_size:
            raise RemoteProtocolError(
                f"AMI message of {len(stripped)} bytes exceeds the limit of {self.max_message_size}",
                offset,
            )
        self._pos = self._scan = stop
        self._legacy = False
        return Message._from_legacy(stripped, offset, len(stripped))


def _bad_field(headers: list[tuple[str, str]]) -> LocalProtocolError:
    for index, pair in enumerate(headers):
        key, value = pair
        if not isinstance(key, str) or not _TOKEN.fullmatch(key):
            return LocalProtocolError(
                f"AMI header #{index + 1} has an invalid name {key!r} (must be a token)"
            )
        if not isinstance(value, str):
            return LocalProtocolError(
                f"AMI header {key!r}: value must be str, not {type(value).__name__}"
            )
        for bad, label in (("\r", "CR"), ("\n", "LF"), ("\0", "NUL")):
            if bad in value:
                return LocalProtocolError(f"AMI header {key!r}: value contains {label}")
    return LocalProtocolError("AMI message cannot be encoded")


_good_keys: set[str] = set()


def encode_message(headers: Iterable[tuple[str, str]]) -> bytes:
    """Serialise one message: ``Key: Value`` lines and the empty line.

    Refuses (with :class:`LocalProtocolError` naming the field) CR, LF or NUL
    anywhere, a key that is not a token, and values that are not str.
    """
    headers = headers if isinstance(headers, list) else list(headers)
    good = _good_keys
    try:
        for key, value in headers:
            if key not in good:
                if type(key) is not str or not _TOKEN.fullmatch(key):
                    raise _bad_field(headers)
                if len(good) < 4096:
                    good.add(key)
            if type(value) is not str:
                raise _bad_field(headers)
    except (TypeError, ValueError):
        raise LocalProtocolError("AMI headers must be (key, value) pairs") from None
    text = "".join([f"{k}: {v}\r\n" for k, v in headers])
    n = len(headers)
    if text.count("\r") != n or text.count("\n") != n or "\0" in text:
        raise _bad_field(headers)
    return (text + "\r\n").encode("utf-8", "surrogateescape")


def encode_action(
    action: str,
    headers: Iterable[tuple[str, str]] = (),
    action_id: str | None = None,
) -> bytes:
    """Serialise ``Action: <action>`` (plus ``ActionID`` if given) and the headers."""
    first = [("Action", action)]
    if action_id is not None:
        first.append(("ActionID", action_id))
    rest = list(headers)
    if action_id is not None:
        for key, _ in rest:
            if isinstance(key, str) and key.lower() == "actionid":
                raise LocalProtocolError(
                    f"action {action!r}: ActionID given both as argument and as header"
                )
    if not isinstance(action, str) or not action:
        raise LocalProtocolError(f"invalid AMI action name {action!r}")
    return encode_message(first + rest)
