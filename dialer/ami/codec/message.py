"""The message model: :class:`Banner` and :class:`Message`, and how headers are split.

A message is an immutable, ordered multi-map of headers (keys repeat). Lookup
is case-insensitive and gives the first occurrence; :meth:`Message.items`
gives every header in wire order, keys as sent. Values lose the one space
after the colon and nothing else (``AccountCode: `` gives ``""``). Header
bytes are decoded as UTF-8 with ``surrogateescape``: bytes that are not UTF-8
become lone surrogates and are written back byte for byte.

There are two kinds of messages behind the one interface:

* ``Message(headers)`` builds one from ``(key, value)`` pairs (what the
  simulator and the tests send).
* A received message is a :class:`WireMessage`, a tuple of its raw bytes,
  kind, name, place in the stream and (when split while framing) its split
  headers.
  The parser builds them in bulk, in C, with no Python code run per message;
  the headers are split on first use and cached in the instance dict, and a
  single :meth:`~Message.get` before that looks at the bytes directly.
"""

from __future__ import annotations

import re
from collections import namedtuple
from dataclasses import dataclass
from typing import Iterable, Iterator

from dialer.ami.codec.errors import RemoteProtocolError
from dialer.ami.codec.framing import LEGACY_MARK

TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_KINDS = {"response": "response", "event": "event", "action": "action"}
_SECRET_KEYS = frozenset({"secret", "key"})
UNKNOWN: tuple[str, str | None] = ("unknown", None)


def decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def kind_name(key: str, value: str) -> tuple[str, str | None]:
    """(kind, name) of a message whose first header is ``key: value``."""
    kind = _KINDS.get(key.strip().lower(), "unknown")
    return (kind, None if kind == "unknown" else value)


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


# -- splitting header bytes ---------------------------------------------------------

# Header bytes reduced to their colons and CRs: a block of n well-formed
# "Key: Value" lines with no other colon or CR gives ":\r" * (n - 1) + ":".
_ALL_BUT_COLON_CR = bytes(c for c in range(256) if c not in (0x3A, 0x0D))
_COLON_CR = b":\r" * 4096


def split_fast(raw: bytes) -> list[str] | None:
    """[key1, value1, key2, ...] if every line is exactly ``Key: Value``, else None."""
    shape = raw.translate(None, _ALL_BUT_COLON_CR)
    n = len(shape)
    if n & 1 and _COLON_CR.startswith(shape):
        # One colon per line: split in C at ": " and at line ends. A colon
        # without its space yields one item instead of two, so the count tells.
        flat = decode(raw).replace("\r\n", ": ").split(": ")
        if len(flat) == n + 1:
            return flat
    return None


def split_lines(raw: bytes, offset: int) -> list[str]:
    """:func:`split_fast` line by line, for the blocks it refuses; raises on a line without a colon."""
    flat = []
    pos = offset
    for line in decode(raw).split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep:
            raise RemoteProtocolError(f"AMI header line without ':': {line[:60]!r}", pos)
        flat.append(key)
        flat.append(value[1:] if value[:1] == " " else value)
        pos += len(line.encode("utf-8", "surrogateescape")) + 2
    return flat


def split_headers(raw: bytes, offset: int) -> list[str]:
    flat = split_fast(raw)
    return split_lines(raw, offset) if flat is None else flat


def _flat_index(flat: list[str]) -> dict[str, str]:
    """Lower-cased key -> first value (the dict keeps the last write, so walk backwards)."""
    return dict(zip(map(str.lower, flat[-2::-2]), flat[::-2]))


def _pairs(flat: list[str]) -> list[tuple[str, str]]:
    it = iter(flat)
    return list(zip(it, it))


# -- the messages -----------------------------------------------------------------


class Message:
    """One AMI message: an immutable, ordered multi-map of headers.

    ``Message(headers)`` builds one from ``(key, value)`` pairs. Messages
    parsed from the wire also carry ``offset`` and ``length`` (in bytes,
    terminator included) and :attr:`raw`; constructed ones have ``None`` there.
    """

    __slots__ = ()

    raw: bytes | None
    offset: int | None
    length: int | None

    def __new__(cls, headers: Iterable[tuple[str, str]] = ()) -> Message:
        return object.__new__(HeaderMessage if cls is Message else cls)

    # What the two kinds provide.

    def _items(self) -> list[tuple[str, str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _index(self) -> dict[str, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def kind(self) -> str:
        """``"response"``, ``"event"``, ``"action"`` or ``"unknown"``, from the first header."""
        raise NotImplementedError  # pragma: no cover - abstract

    @property
    def name(self) -> str | None:
        """The value of the first header when that is Response, Event or Action."""
        raise NotImplementedError  # pragma: no cover - abstract

    # The mapping, built on those.

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
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
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

    def __repr__(self) -> str:
        shown = [(k, "********" if k.lower() in _SECRET_KEYS else v) for k, v in self.items()]
        return f"Message({shown!r})"


class HeaderMessage(Message):
    """A message built from a list of headers."""

    __slots__ = ("_headers", "_idx", "_kn", "offset", "length")

    raw = None

    def __init__(self, headers: Iterable[tuple[str, str]] = ()) -> None:
        items = []
        for key, value in headers:
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"header {key!r}: keys and values must be str")
            items.append((key, value))
        self._headers = items
        self._idx: dict[str, str] | None = None
        self._kn = kind_name(*items[0]) if items else UNKNOWN
        self.offset = None
        self.length = None

    @property
    def kind(self) -> str:
        return self._kn[0]

    @property
    def name(self) -> str | None:
        return self._kn[1]

    def _items(self) -> list[tuple[str, str]]:
        return self._headers

    def _index(self) -> dict[str, str]:
        idx = self._idx
        if idx is None:
            idx = self._idx = {}
            for key, value in self._headers:
                idx.setdefault(key.lower(), value)
        return idx


def _no_order(self: object, other: object) -> bool:
    return NotImplemented


# The fields of a received message. Only their accessors are used: they read
# the tuple's own items (not through __getitem__, which is Message's lookup by
# header name), in C.
# The fields of a received message. Only their accessors are used: they read
# the tuple's own items (not through __getitem__, which is Message's lookup by
# header name), in C.
_WireFields = namedtuple("_WireFields", ["raw", "kind", "name", "where", "index", "flat"])


class WireMessage(tuple, Message):
    """A received message: the tuple ``(raw, kind, name, where, index, flat)``.

    ``raw`` is the bytes as received, without the terminating empty line;
    ``kind`` and ``name`` come from the first header; ``flat`` is
    ``[key1, value1, ...]`` when the headers were split while framing
    (``AMIParser(lazy=False)``), else None. Where the message starts in the
    stream is worked out when asked (see :func:`batch_offset`): ``where`` is
    that offset itself (``index`` None) or, for blocks framed together, a list
    they share (their lengths, then the offset of the first) and ``index`` the
    message's place in it.

    Built from one tuple of those, in C: the parser maps the class over its
    blocks. Splits made later are cached in the instance dict: ``_f`` (the
    flat list), ``_h`` (the pairs), ``_idx`` (the index), ``_output`` (a
    ``Response: Follows`` body's text).
    """

    raw = _WireFields.raw
    kind = _WireFields.kind
    name = _WireFields.name
    _where = _WireFields.where
    _nth = _WireFields.index
    flat = _WireFields.flat

    @property
    def offset(self) -> int:
        """Stream offset of the first byte."""
        nth = self._nth
        return self._where if nth is None else batch_offset(self._where, nth)

    # Read through these class defaults so that a message nobody has asked
    # anything yet gets no instance dict.
    _f: list[str] | None = None
    _h: list[tuple[str, str]] | None = None

    @property
    def length(self) -> int:
        """Length in bytes, terminating empty line included."""
        return len(self.raw) + 4

    # A message, not a tuple: Message's protocol wins over tuple's.
    __getitem__ = Message.__getitem__
    __contains__ = Message.__contains__
    __iter__ = Message.__iter__
    __bool__ = Message.__bool__
    __eq__ = Message.__eq__  # (so __hash__ is None, as for Message)
    __ne__ = Message.__ne__
    __repr__ = Message.__repr__
    __lt__ = __le__ = __gt__ = __ge__ = _no_order

    def __add__(self, other: object) -> WireMessage:
        return NotImplemented

    __mul__ = __rmul__ = __add__

    def __getnewargs__(self) -> tuple[tuple[bytes, str, str | None, int, None, list[str] | None]]:
        # For pickle (iterating a message gives its keys, not its fields).
        return ((self.raw, self.kind, self.name, self.offset, None, self.flat),)

    def _flat(self) -> list[str]:
        flat = self.flat
        if flat is None:
            flat = self._f
            if flat is None:
                flat = self.__dict__["_f"] = split_headers(self.raw, self.offset)
        return flat

    def _items(self) -> list[tuple[str, str]]:
        headers = self._h
        if headers is None:
            headers = self.__dict__["_h"] = _pairs(self._flat())
        return headers

    def items(self) -> list[tuple[str, str]]:
        headers = self._h
        if headers is not None:
            return headers.copy()
        # Not cached: most callers ask once.
        flat = self.flat or self._f or split_fast(self.raw) or self._flat()
        return _pairs(flat)

    def _index(self) -> dict[str, str]:
        idx = self.__dict__.get("_idx")
        if idx is None:
            idx = self.__dict__["_idx"] = _flat_index(self._flat())
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
        idx = self.__dict__.get("_idx")
        if idx is None:
            if self.flat is None and self._f is None:
                found = self._find(key)
                if found is not None:
                    return found
            idx = self.__dict__["_idx"] = _flat_index(self._flat())
        return idx.get(key.lower(), default)

    def _find(self, key: str) -> str | None:
        """The first value of ``key``, read from the raw bytes without splitting them (None: not found)."""
        try:
            needle = key.lower().encode("ascii")
        except UnicodeEncodeError:
            return None
        if not needle or b"\r" in needle or b"\n" in needle or b":" in needle:
            return None
        raw = self.raw
        lower = raw.lower()
        if lower.startswith(needle + b":"):
            start = len(needle) + 1
        else:
            at = lower.find(b"\r\n" + needle + b":")
            if at < 0:
                return None
            start = at + len(needle) + 3
        end = raw.find(b"\r\n", start)
        value = raw[start:] if end < 0 else raw[start:end]
        return decode(value[1:] if value[:1] == b" " else value)


def batch_offset(batch: list[int], index: int) -> int:
    """Stream offset of block ``index`` of blocks framed together: ``batch`` is their lengths, then the first's offset."""
    return batch[-1] + sum(batch[:index]) + 4 * index  # each block is followed by its terminator


def legacy_message(raw: bytes, offset: int) -> WireMessage:
    """A ``Response: Follows`` block (ending ``--END COMMAND--``): headers, then CLI text."""
    text = decode(raw[: -len(LEGACY_MARK)])
    headers = []
    pos = 0
    while True:
        end = text.find("\r\n", pos)
        if end < 0:
            break
        key, sep, value = text[pos:end].partition(":")
        if not sep or not TOKEN.fullmatch(key):
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
    kind, name = kind_name(*headers[0]) if headers else UNKNOWN
    message = WireMessage((raw, kind, name, offset, None, [x for pair in headers for x in pair]))
    message.__dict__["_h"] = headers
    message.__dict__["_output"] = [line[:-1] if line[-1:] == "\r" else line for line in lines]
    return message
