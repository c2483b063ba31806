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
* Laziness: framing is done on bytes, every complete block in the buffer at
  once, in C (``bytes.split``); :attr:`Message.kind` and :attr:`Message.name`
  are resolved while framing from the block's first line (cached by the
  block's first 32 bytes); the other headers are split only when first read,
  and a single :meth:`Message.get` before that looks at the bytes directly.
  With ``AMIParser(lazy=True)`` (the default) a malformed header line
  therefore raises :class:`RemoteProtocolError` (with its stream offset) when
  that message's headers are read, and a first line without a colon gives
  ``kind == "unknown"``; ``lazy=False`` splits every message while framing,
  so every error comes from :meth:`AMIParser.next_event`, after the good
  messages before it have been returned.
* :meth:`AMIParser.next_events` returns every complete message at once (a
  list), for consumers that want less overhead per message.
* Values: one space after the colon is removed (``AccountCode: `` gives
  ``""``); everything else in the value is kept as sent.
* End of stream: ``receive_data(b"")`` marks EOF. Once every complete message
  has been returned, :meth:`AMIParser.next_event` returns the :data:`CLOSED`
  sentinel (forever after) if the stream ended between messages, and raises
  :class:`RemoteProtocolError` if it ended inside one.
* Limits: a message (or banner) longer than ``max_message_size`` bytes raises
  :class:`RemoteProtocolError`, whether still incomplete or not. The parser
  never searches the same bytes twice for a terminator (the one exception: a
  ``Response: Follows`` block is searched once more for its end marker), so
  input arriving one byte at a time costs linear time.
* Stray empty lines between messages are skipped (they carry no data).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from itertools import count, repeat
from operator import itemgetter
from typing import Iterable, Literal, Union

try:
    from _collections import _tuplegetter
except ImportError:  # pragma: no cover - other Python implementations

    def _tuplegetter(index: int, doc: str):  # type: ignore[no-redef]
        return property(lambda self: tuple.__getitem__(self, index), doc=doc)

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


_KIND_LOWER = {"response": "response", "event": "event", "action": "action"}
_SECRET_KEYS = frozenset({"secret", "key"})
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_TOKEN_B = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_LEGACY_MARK = b"--END COMMAND--"
_LEGACY_END = _LEGACY_MARK + b"\r\n\r\n"
_LEGACY_FIRST = re.compile(rb"(?i)response:[ \t]*follows[ \t]*")


_first_item = itemgetter(0)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


class _Missing:
    __slots__ = ()


_MISSING = _Missing()

# First header line (bytes) -> (kind, name); filled as first lines are seen,
# emptied when full.
_FIRST_LINES: dict[bytes, tuple[str, str | None]] = {}
_FIRST_LINES_MAX = 4096
# The first _PREFIX_LEN bytes of a block -> (kind, name), for blocks whose
# first line ends within them. Emptied when full (unique prefixes, e.g. a
# response's ActionID, must not lock out new ones).
_PREFIX_LEN = 32
_prefix = itemgetter(slice(0, _PREFIX_LEN))
_PREFIXES: dict[bytes, tuple[str, str | None]] = {}
_PREFIXES_MAX = 8192
_prefix_kind_name = _PREFIXES.get
# Buffers shorter than this are immutable bytes (see AMIParser.receive_data).
_SMALL = 8192
_CR_OR_LF = (b"\r", b"\n")


_UNKNOWN: tuple[str, str | None] = ("unknown", None)
_second_item = itemgetter(1)


def _kind_name(key: str, value: str) -> tuple[str, str | None]:
    kind = _KIND_LOWER.get(key.strip().lower(), "unknown")
    return (kind, None if kind == "unknown" else value)


def _first_line(first: bytes) -> tuple[str, str | None]:
    """(kind, name) of a first header line; remembered if well-formed.

    A line without a colon gives ("unknown", None); reading the message's
    headers then raises the protocol error.
    """
    key, sep, value = first.partition(b":")
    if not sep:
        return _UNKNOWN
    kn = _kind_name(_decode(key), _decode(value[1:] if value[:1] == b" " else value))
    if kn[0] != "unknown" and _TOKEN_B.fullmatch(key) and not _LEGACY_FIRST.fullmatch(first):
        if len(_FIRST_LINES) >= _FIRST_LINES_MAX:
            _FIRST_LINES.clear()
        _FIRST_LINES[first] = kn
    return kn


# Header bytes reduced to their colons and CRs: a block of n well-formed
# "Key: Value" lines with no other colon or CR gives ":\r" * (n - 1) + ":".
_ALL_BUT_COLON_CR = bytes(c for c in range(256) if c not in (0x3A, 0x0D))
_COLON_CR = b":\r" * 4096


def _split_fast(raw: bytes) -> list[str] | None:
    """[key1, value1, key2, ...] if every line is exactly ``Key: Value``, else None."""
    shape = raw.translate(None, _ALL_BUT_COLON_CR)
    n = len(shape)
    if n & 1 and _COLON_CR.startswith(shape):
        # Exactly one colon per line. Split in C at ": " and at line ends;
        # if some colon lacks its space, that line yields one item, not two.
        flat = raw.decode("utf-8", "surrogateescape").replace("\r\n", ": ").split(": ")
        if len(flat) == n + 1:
            return flat
    return None


def _parse_raw(raw: bytes, offset: int) -> list[str]:
    """Split one block into a flat list [key1, value1, key2, value2, ...]."""
    flat = _split_fast(raw)
    if flat is not None:
        return flat
    return _parse_lines(raw, offset)


def _parse_lines(raw: bytes, offset: int) -> list[str]:
    """:func:`_parse_raw` line by line, for blocks :func:`_split_fast` refused."""
    flat = []
    pos = offset
    for line in _decode(raw).split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep:
            raise RemoteProtocolError(f"AMI header line without ':': {line[:60]!r}", pos)
        flat.append(key)
        flat.append(value[1:] if value[:1] == " " else value)
        pos += len(line.encode("utf-8", "surrogateescape")) + 2
    return flat


def _flat_index(flat: list[str]) -> dict[str, str]:
    """Lower-cased key -> first value."""
    return dict(zip(map(str.lower, flat[-2::-2]), flat[::-2]))


class Message:
    """One AMI message: an immutable, ordered multi-map of headers.

    ``Message(headers)`` builds one from ``(key, value)`` pairs. Header lookup
    is case-insensitive and returns the first occurrence; :meth:`items` gives
    every header in wire order with keys as sent. Messages parsed from the wire
    also carry ``offset`` and ``length`` (in bytes, terminator included) and
    :attr:`raw`; constructed ones have ``None`` there.

    Internally there are two kinds: constructed messages hold their header
    list; received ones hold their raw bytes and parse them on first use.
    """

    __slots__ = ()

    offset: int | None
    length: int | None

    def __new__(cls, headers: Iterable[tuple[str, str]] = ()) -> "Message":
        return object.__new__(_HeaderMessage if cls is Message else cls)

    # Subclasses provide _items() (the parsed header list), _kind_name() and raw.

    def _items(self) -> list[tuple[str, str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _kind_name(self) -> tuple[str, str | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _index(self) -> dict[str, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def kind(self) -> str:
        """``"response"``, ``"event"``, ``"action"`` or ``"unknown"``, from the first header."""
        return self._kind_name()[0]

    @property
    def name(self) -> str | None:
        """The value of the first header when that is Response, Event or Action."""
        return self._kind_name()[1]

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    @property
    def output(self) -> list[str]:
        """Command output: the ``Output:`` values, or the text of a ``Response: Follows`` body."""
        return self.get_all("Output")

    def items(self) -> list[tuple[str, str]]:
        return list(self._items())

    def keys(self) -> list[str]:
        return [k for k, _ in self._items()]

    def get(self, key: str, default: str | None = None) -> str | None:
        return self._index().get(key.lower(), default)

    def get_all(self, key: str) -> list[str]:
        key = key.lower()
        return [v for k, v in self._items() if k.lower() == key]

    def __getitem__(self, key: str) -> str:
        value = self.get(key, _MISSING)  # type: ignore[arg-type]
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return self.get(key, _MISSING) is not _MISSING  # type: ignore[arg-type]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items())

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.items() == other.items() and self.output == other.output

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = [(k, "********" if k.lower() in _SECRET_KEYS else v) for k, v in self.items()]
        return f"Message({shown!r})"


def _build_index(headers: list[tuple[str, str]]) -> dict[str, str]:
    index: dict[str, str] = {}
    for key, value in headers:
        index.setdefault(key.lower(), value)
    return index


class _HeaderMessage(Message):
    """A message built from a list of headers."""

    __slots__ = ("_headers", "_idx", "_kn", "offset", "length")

    def __init__(self, headers: Iterable[tuple[str, str]] = ()) -> None:
        items = []
        for pair in headers:
            key, value = pair
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"header {key!r}: keys and values must be str")
            items.append((key, value))
        self._headers = items
        self._idx = None
        self._kn = None
        self.offset = None
        self.length = None

    raw = None

    def _items(self) -> list[tuple[str, str]]:
        return self._headers

    def _index(self) -> dict[str, str]:
        idx = self._idx
        if idx is None:
            idx = self._idx = _build_index(self._headers)
        return idx

    def _kind_name(self) -> tuple[str, str | None]:
        kn = self._kn
        if kn is None:
            kn = self._kn = _kind_name(*self._headers[0]) if self._headers else ("unknown", None)
        return kn


class _WireMessage(tuple, Message):
    """A received message: (raw bytes, kind, name, where, index).

    Built in bulk by the parser without running any Python code per message;
    kind and name come from the first line when framing; the other headers
    are parsed on first use and cached in the instance dict. ``where`` is the
    stream offset itself (index None) or, for the blocks framed by one split,
    a list shared by them: their lengths, then the offset of the first
    (index: the position in that list); the offset is worked out when asked.
    """

    raw = _tuplegetter(0, "The bytes as received, without the terminating empty line.")
    kind = _tuplegetter(1, "response, event, action or unknown, from the first header.")
    name = _tuplegetter(2, "The value of the first header when that is Response, Event or Action.")
    _where = _tuplegetter(3, "Stream offset, or the batch it was framed in.")
    _nth = _tuplegetter(4, "Position in that batch.")
    _f0 = None  # see _EagerMessage

    @property
    def offset(self) -> int:
        """Stream offset of the first byte."""
        nth = self._nth
        if nth is None:
            return self._where
        return _batch_offset(self._where, nth)

    @property
    def length(self) -> int:
        """Length in bytes, terminating empty line included."""
        return len(self.raw) + 4

    __getitem__ = Message.__getitem__
    __contains__ = Message.__contains__
    __iter__ = Message.__iter__
    __bool__ = Message.__bool__
    __eq__ = Message.__eq__
    __ne__ = Message.__ne__
    __hash__ = None  # type: ignore[assignment]
    __repr__ = Message.__repr__
    __lt__ = __le__ = __gt__ = __ge__ = None  # type: ignore[assignment]

    def __add__(self, other):  # type: ignore[override]
        return NotImplemented

    __mul__ = __rmul__ = __add__  # type: ignore[assignment]

    def __reduce__(self):
        return (_restore_wire, (type(self), tuple.__getitem__(self, slice(None)), dict(self.__dict__)))

    def _kind_name(self) -> tuple[str, str | None]:
        return (self.kind, self.name)

    def _flat(self) -> list[str]:
        flat = self._f0
        if flat is None:
            d = self.__dict__
            flat = d.get("_f")
            if flat is None:
                raw = self.raw
                flat = _split_fast(raw)
                if flat is None:
                    flat = _parse_lines(raw, self.offset)
                d["_f"] = flat
        return flat

    def _items(self) -> list[tuple[str, str]]:
        d = self.__dict__
        headers = d.get("_h")
        if headers is None:
            pairs = iter(self._flat())
            headers = d["_h"] = list(zip(pairs, pairs))
        return headers

    # Cached in the instance dict once computed; read through these class
    # defaults so that a message nobody has asked anything yet gets no dict.
    _f = None
    _h = None

    def items(self) -> list[tuple[str, str]]:
        headers = self._h
        if headers is not None:
            return headers.copy()
        flat = self._f0 or self._f
        if flat is None:
            # Not cached: most callers ask once.
            flat = _split_fast(self.raw)
            if flat is None:
                flat = self._flat()
        pairs = iter(flat)
        return list(zip(pairs, pairs))

    def _index(self) -> dict[str, str]:
        d = self.__dict__
        idx = d.get("_idx")
        if idx is None:
            idx = d["_idx"] = _flat_index(self._flat())
        return idx

    def get_all(self, key: str) -> list[str]:
        key = key.lower()
        flat = self._flat()
        return [v for k, v in zip(flat[::2], flat[1::2]) if k.lower() == key]

    def __len__(self) -> int:
        return len(self._flat()) >> 1

    @property
    def output(self) -> list[str]:
        legacy = self.__dict__.get("_output")
        if legacy is not None:
            return list(legacy)
        return self.get_all("Output")

    def get(self, key: str, default: str | None = None) -> str | None:
        d = self.__dict__
        idx = d.get("_idx")
        if idx is None:
            if self._f0 is None and "_f" not in d:
                found = self._find(key)
                if found is not _MISSING:
                    return found  # type: ignore[return-value]
            idx = d["_idx"] = _flat_index(self._flat())
        return idx.get(key.lower(), default)

    def _find(self, key: str) -> object:
        """Look one key up in the raw bytes without parsing every header."""
        try:
            needle = key.lower().encode("ascii")
        except UnicodeEncodeError:
            return _MISSING
        if not needle or b"\r" in needle or b"\n" in needle or b":" in needle:
            return _MISSING
        raw = self.raw
        lower = raw.lower()
        if lower.startswith(needle + b":"):
            start = len(needle) + 1
        else:
            at = lower.find(b"\r\n" + needle + b":")
            if at < 0:
                return _MISSING
            start = at + len(needle) + 3
        end = raw.find(b"\r\n", start)
        value = raw[start:] if end < 0 else raw[start:end]
        if value[:1] == b" ":
            value = value[1:]
        return _decode(value)

    def _parse_now(self) -> "_WireMessage":
        self._flat()
        return self


class _EagerMessage(_WireMessage):
    """A received message split while framing (``lazy=False``): a sixth field holds the split."""

    _f0 = _tuplegetter(5, "[key1, value1, ...] as split while framing.")


def _batch_offset(batch: list[int], index: int) -> int:
    """Stream offset of block ``index`` of a batch: [length of each block..., offset of the first]."""
    # Each block is followed by its 4-byte terminator.
    return batch[-1] + sum(batch[:index]) + 4 * index


def _restore_wire(cls: type, fields: tuple, state: dict) -> _WireMessage:
    message = cls(fields)
    message.__dict__.update(state)
    return message


def _legacy_message(raw: bytes, offset: int) -> _WireMessage:
    """A ``Response: Follows`` block (ending ``--END COMMAND--``): headers, then CLI text."""
    text = _decode(raw[: -len(_LEGACY_MARK)])
    headers = []
    pos = 0
    while True:
        end = text.find("\r\n", pos)
        if end < 0:
            break
        key, sep, value = text[pos:end].partition(":")
        if not sep or not _TOKEN.fullmatch(key):
            break
        if pos and key.lower() not in ("privilege", "actionid"):
            # Only these follow the first line in this form; anything else
            # is already command output.
            break
        headers.append((key, value[1:] if value[:1] == " " else value))
        pos = end + 2
    lines = text[pos:].split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    kind, name = _kind_name(*headers[0]) if headers else ("unknown", None)
    message = _WireMessage((raw, kind, name, offset, None))
    message.__dict__["_h"] = headers
    message.__dict__["_f"] = [x for pair in headers for x in pair]
    message.__dict__["_output"] = [line[:-1] if line[-1:] == "\r" else line for line in lines]
    return message



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
        # Unconsumed bytes (and possibly some consumed ones before _pos): bytes
        # while short, a bytearray once longer than _SMALL.
        self._buf: bytes | bytearray = b""
        self._pos = 0  # start of the first unconsumed byte in _buf
        self._tail: bytes | None = None  # received after _buf, not yet appended
        self._scan = 0  # where the next terminator search starts
        self._base = 0  # stream offset of _buf[0]
        self._want_banner = role == "client"
        self._legacy = False  # the message at _pos is a Response: Follows block
        self._legacy_ok = role == "client"
        self._ready: deque[Message] = deque()
        self._eof = False
        self._error: RemoteProtocolError | None = None
        self._plain = not self._want_banner  # see next_event
        self._closed = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a message."""
        self._absorb()
        return len(self._buf) - self._pos

    @property
    def bytes_received(self) -> int:
        """Bytes received so far (end of stream not counted)."""
        self._absorb()
        return self._base + len(self._buf)

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed the stream."""
        if data and not self._eof:
            buf = self._buf
            if type(buf) is bytearray:
                buf += data
                return
            if self._tail is None and type(data) is bytes:
                # Held apart: framing splits it on its own, without copying
                # it onto the buffer first.
                self._tail = data
                return
            self._absorb()
            self._append(data)
            return
        if data:
            raise LocalProtocolError("receive_data() after end of stream")
        self._absorb()
        self._eof = True
        self._plain = False

    def _append(self, data: bytes) -> None:
        buf = self._buf
        if type(buf) is bytearray:
            buf += data
        elif len(buf) < _SMALL:
            # A short buffer is kept as bytes, so framing splits it without
            # copying it first; a long one grows in place.
            self._buf = buf + data
        else:
            buf = self._buf = bytearray(buf)
            buf += data

    def _absorb(self) -> None:
        """Append the held-apart bytes (if any) to the buffer."""
        tail = self._tail
        if tail is not None:
            self._tail = None
            self._append(tail)

    def _tail_splits(self) -> bool:
        """True if the held-apart bytes end a block that framing can split on their own.

        Otherwise they are appended to the buffer, where the usual search
        finds any terminator (one may straddle the two).
        """
        tail = self._tail
        buf = self._buf
        if not buf.endswith(_CR_OR_LF):
            if b"\r\n\r\n" in tail:
                return True
            # No terminator in it, nor across the join: search none of it again.
            self._absorb()
            end = len(self._buf) - 3
            if end > self._scan:
                self._scan = end
            return False
        self._absorb()
        return False

    def next_event(self) -> Union[Banner, Message, _Sentinel]:
        """Return the next :class:`Banner` or :class:`Message`, or :data:`NEED_DATA` / :data:`CLOSED`."""
        ready = self._ready
        if ready:
            return ready.popleft()
        if self._plain:
            # Between messages, no end of stream yet: the common case.
            if self._tail is not None and self._tail_splits():
                found = self._bulk_plain()
                if type(found) is list:
                    ready.extend(found)
                    return ready.popleft()
                return found  # type: ignore[return-value]
            buf = self._buf
            if buf.find(b"\r\n\r\n", self._scan) < 0:
                # Nothing to split. Within the size limit (a check that may
                # fail early: _frame checks exactly), search only the new
                # bytes next time. A terminator found that starts before
                # _pos (at most 3 bytes before it) is dropped by _bulk.
                end = len(buf)
                if end <= self.max_message_size:
                    self._scan = end - 3 if end > 3 else 0
                    return NEED_DATA
            else:
                found = self._bulk_plain()
                if type(found) is list:
                    ready.extend(found)
                    return ready.popleft()
                return found  # type: ignore[return-value]
        found = self._frame()
        if type(found) is list:
            ready.extend(found)
            return ready.popleft()
        return found  # type: ignore[return-value]

    def next_events(self) -> list[Union[Banner, Message]]:
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
        if self._plain:
            if self._tail is not None and self._tail_splits():
                found = self._bulk_plain()
                return found if type(found) is list else []  # type: ignore[return-value]
            buf = self._buf
            if buf.find(b"\r\n\r\n", self._scan) >= 0:
                found = self._bulk_plain()
            else:
                end = len(buf)  # as in next_event
                if end <= self.max_message_size:
                    self._scan = end - 3 if end > 3 else 0
                    return []
                found = self._frame()  # the size error, or NEED_DATA
        else:
            found = self._frame()
        if type(found) is list:
            return found  # type: ignore[return-value]
        return []

    def _bulk_plain(self) -> Union[list, _Sentinel]:
        """Frame complete blocks (a terminator is known to be buffered)."""
        try:
            found = self._bulk()
        except RemoteProtocolError as exc:
            self._error = exc
            self._plain = False
            raise
        if self._legacy or self._error is not None:
            self._plain = False
        if type(found) is list or found is NEED_DATA:
            return found
        return [found]

    @property
    def closed(self) -> bool:
        """True once every message has been returned and the stream ended cleanly."""
        return self._closed

    def _frame(self) -> Union[list, _Sentinel]:
        """Frame what is buffered: a list of one or more events, or a sentinel."""
        self._absorb()
        if self._error is not None:
            raise self._error
        try:
            found = self._next()
            if found is CLOSED:
                self._closed = True
            return found if type(found) is list or found is NEED_DATA or found is CLOSED else [found]
        except RemoteProtocolError as exc:
            self._error = exc
            self._plain = False
            raise
        finally:
            self._plain = not (self._want_banner or self._legacy or self._eof or self._error)

    def _next(self) -> Union[list, Banner, Message, _Sentinel]:
        if self._want_banner:
            return self._banner()
        if self._legacy:
            return self._legacy_block()
        if self._buf.find(b"\r\n\r\n", self._scan) < 0:
            return self._incomplete(3)
        return self._bulk()

    def _bulk(self) -> Union[list, Message, _Sentinel]:
        # Split everything buffered in one C call: every piece but the last is
        # a complete block, the last one is the start of the next.
        buf = self._buf
        pos = self._pos
        tail = self._tail
        if tail is None:
            region = buf if pos == 0 and type(buf) is bytes else bytes(memoryview(buf)[pos:])
            pieces = region.split(b"\r\n\r\n")
            size = len(region)
        else:
            # Bytes held apart, holding a terminator none straddles (see
            # _tail_splits): only the first block is joined to the buffer.
            pieces = tail.split(b"\r\n\r\n")
            pieces[0] = (buf[pos:] if pos else buf) + pieces[0]
            size = len(buf) - pos + len(tail)
        rest = pieces.pop()
        if not pieces:
            # The terminator found began before _pos.
            return self._incomplete(3)
        done = size - len(rest)
        # (kind, name) by the first 32 bytes of each block: in C, no copy of
        # the block. Misses are resolved one by one; stray empty lines, a
        # possible Response: Follows block or a size to check send the whole
        # batch down the careful path.
        kns = list(map(_prefix_kind_name, map(_prefix, pieces)))
        if done > self.max_message_size or (None in kns and self._resolve(pieces, kns)):
            self._absorb()  # the careful path reads the buffer
            return self._bulk_careful(pieces, pos, self._base + pos)
        # Everything buffered but the rest is consumed; the rest is what stays.
        base = self._base + pos
        self._tail = None
        self._buf = rest
        self._base = base + done
        self._pos = 0
        end = len(rest) - 3
        self._scan = end if end > 0 else 0
        batch = list(map(len, pieces))
        batch.append(base)
        if self.lazy:
            return list(
                map(
                    _WireMessage,
                    zip(pieces, map(_first_item, kns), map(_second_item, kns), repeat(batch), count()),
                )
            )
        flats = list(map(_split_fast, pieces))
        if None in flats:
            for i, flat in enumerate(flats):
                if flat is None:
                    try:
                        flats[i] = _parse_lines(pieces[i], _batch_offset(batch, i))
                    except RemoteProtocolError as exc:
                        # Hand out the good messages before it; then raise.
                        self._error = exc
                        if not i:
                            raise
                        del flats[i:]
                        break
        return list(
            map(
                _EagerMessage,
                zip(pieces, map(_first_item, kns), map(_second_item, kns), repeat(batch), count(), flats),
            )
        )

    def _bulk_careful(self, pieces: list[bytes], pos: int, base: int) -> Union[list, Message, _Sentinel]:
        """Frame blocks one by one: stray empty lines, a size to check, a possible legacy block."""
        firsts = list(map(_first_item, map(bytes.partition, pieces, repeat(b"\r\n"))))
        kns = list(map(_FIRST_LINES.get, firsts))
        messages, done = self._careful(pieces, firsts, kns, base)
        if not self.lazy:
            for i, message in enumerate(messages):
                try:
                    message._parse_now()
                except RemoteProtocolError as exc:
                    # Hand out the good messages before it; then raise.
                    self._error = exc
                    del messages[i:]
                    break
        self._pos = pos + done
        if not self._legacy:
            self._scan = max(self._pos, len(self._buf) - 3)
        if not messages:
            if self._error is not None:
                raise self._error
            return self._next()
        return messages

    def _resolve(self, pieces: list[bytes], kns: list) -> bool:
        """Fill in unknown (kind, name)s; True if the batch needs the careful path."""
        for i, kn in enumerate(kns):
            if kn is not None:
                continue
            piece = pieces[i]
            if not piece or piece[0] == 13:
                return True
            first = piece.partition(b"\r\n")[0]
            if _LEGACY_FIRST.fullmatch(first):
                return True
            kn = _FIRST_LINES.get(first) or _first_line(first)
            kns[i] = kn
            key = piece[:_PREFIX_LEN]
            if kn[0] != "unknown" and (len(first) + 2 <= len(key) or len(piece) < _PREFIX_LEN):
                # The key holds the whole first line, so it decides (kind, name).
                if len(_PREFIXES) >= _PREFIXES_MAX:
                    _PREFIXES.clear()
                _PREFIXES[key] = kn
        return False

    def _careful(
        self, pieces: list[bytes], firsts: list[bytes], kns: list, base: int
    ) -> tuple[list[_WireMessage], int]:
        """Frame blocks one by one; return them and the bytes consumed."""
        limit = self.max_message_size
        out = []
        offset = base
        for piece, first, kn in zip(pieces, firsts, kns):
            if kn is None:
                if not piece or piece[0] == 13:
                    stripped = piece.lstrip(b"\r\n")
                    offset += len(piece) - len(stripped)
                    if not stripped:
                        offset += 4
                        continue
                    piece = stripped
                    first = piece.partition(b"\r\n")[0]
                    kn = _FIRST_LINES.get(first)
                if kn is None and self._legacy_ok and _LEGACY_FIRST.fullmatch(first):
                    # The rest is re-framed on the end marker, searched from
                    # the first terminator, which may be the marker's own.
                    self._legacy = True
                    start = offset - self._base
                    self._scan = max(start, start + len(piece) + 4 - len(_LEGACY_END))
                    return out, offset - base
                if kn is None:
                    kn = _first_line(first)
            size = len(piece) + 4
            if size > limit:
                raise RemoteProtocolError(
                    f"AMI message of {size} bytes exceeds the limit of {limit}", offset
                )
            out.append(_WireMessage((piece, kn[0], kn[1], offset, None)))
            offset += size
        return out, offset - base

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
        offset = self._base + pos
        if stop - pos > self.max_message_size:
            raise RemoteProtocolError(
                f"AMI message of {stop - pos} bytes exceeds the limit of {self.max_message_size}",
                offset,
            )
        self._pos = self._scan = stop
        self._legacy = False
        message = _legacy_message(bytes(buf[pos : stop - 4]), offset)
        if not self.lazy:
            message._parse_now()
        return message


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
