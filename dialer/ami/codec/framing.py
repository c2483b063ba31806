"""Framing: where messages begin and end in the received bytes.

A :class:`Framer` holds the bytes received and not yet framed. It finds the
banner line, the blocks ended by an empty line (``\\r\\n\\r\\n``) and the
``Response: Follows`` blocks ended by ``--END COMMAND--``; it knows nothing of
headers. Two rules keep it fast:

* No byte is searched twice for a terminator: a search that fails remembers
  where the next one starts (the last bytes, which a terminator may straddle).
  Input arriving one byte at a time therefore costs linear time.
* Few copies: a chunk received while the buffer is short is held apart and
  split on its own (the first block joined to what came before), so the rest
  of it becomes the buffer without being copied; a long buffer (a big
  message arriving in pieces) is a ``bytearray`` that grows in place.

Offsets are stream offsets: 0 is the first byte ever received.
"""

from __future__ import annotations

from dialer.ami.codec.errors import LocalProtocolError, RemoteProtocolError

TERMINATOR = b"\r\n\r\n"
LEGACY_MARK = b"--END COMMAND--"
LEGACY_END = LEGACY_MARK + TERMINATOR

# Buffers shorter than this stay immutable bytes (see Framer.receive).
_SMALL = 8192
_CR_OR_LF = (b"\r", b"\n")


class Framer:
    """The unframed bytes of one stream, and where the next search starts."""

    def __init__(self, max_message_size: int) -> None:
        self.max_message_size = max_message_size
        self.eof = False
        self.closed = False  # the stream ended cleanly, everything framed
        # False when blocks() would find nothing: it has just taken every
        # block or found none, and nothing was received since.
        self.pending = False
        # Unframed bytes (after _pos): bytes while short, a bytearray once long.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._tail: bytes | None = None  # received after _buf, not yet appended
        self._scan = 0  # where the next terminator search in _buf starts
        self._base = 0  # stream offset of _buf[0]

    # -- what is buffered -----------------------------------------------------------

    @property
    def offset(self) -> int:
        """Stream offset of the first unframed byte."""
        return self._base + self._pos

    @property
    def buffered(self) -> int:
        """Bytes received and not framed yet."""
        self._absorb()
        return len(self._buf) - self._pos

    @property
    def received(self) -> int:
        """Bytes received so far."""
        self._absorb()
        return self._base + len(self._buf)

    def receive(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed the stream."""
        buf = self._buf
        if type(buf) is bytearray and data and not self.eof:
            # A long message arriving in pieces: only a line end can end
            # it, and only a size over the limit is an error before then.
            end = len(buf)
            buf += data
            if buf.find(b"\n", end) >= 0 or len(buf) - self._pos > self.max_message_size:
                self.pending = True
            return
        self.pending = True
        if not data or self.eof:
            if data:
                raise LocalProtocolError("receive_data() after end of stream")
            self.eof = True
        elif self._tail is None and type(data) is bytes:
            self._tail = data
        else:
            self._absorb()
            self._append(data)

    def _append(self, data: bytes) -> None:
        buf = self._buf
        if type(buf) is bytearray:
            buf += data
        elif len(buf) < _SMALL:
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

    # -- blocks ended by an empty line ------------------------------------------------

    def blocks(self) -> tuple[list[bytes], int]:
        """Take every complete block buffered (without its terminator); also the offset of the first.

        An empty list means no complete block: then the bytes buffered have
        been checked as by :meth:`check_incomplete` (:attr:`closed` tells
        whether the stream has ended cleanly). Raises
        :class:`RemoteProtocolError` if a block is longer than the limit.
        :meth:`unread` gives blocks back.
        """
        buf = self._buf
        pos = self._pos
        tail = self._tail
        if tail is not None and not buf.endswith(_CR_OR_LF) and TERMINATOR in tail:
            # No terminator straddles the join: split the tail alone and join
            # only its first block to the buffer.
            pieces = tail.split(TERMINATOR)
            pieces[0] = (buf[pos:] if pos else buf) + pieces[0]
            size = len(buf) - pos + len(tail)
            self._tail = None
        else:
            if tail is not None:
                self._absorb()
                buf = self._buf
            # (_scan >= _pos always, so a terminator found is one to split on.)
            if buf.find(TERMINATOR, self._scan) < 0:
                if len(buf) - pos > self.max_message_size or self.eof:
                    self.closed = self.check_incomplete()
                else:
                    end = len(buf) - 3
                    self._scan = end if end > pos else pos
                self.pending = False
                return [], 0
            region = buf if pos == 0 and type(buf) is bytes else bytes(memoryview(buf)[pos:])
            pieces = region.split(TERMINATOR)
            size = len(region)
        # What follows the last terminator becomes the buffer, uncopied; it
        # holds no terminator.
        self.pending = False
        rest = self._buf = pieces.pop()
        offset = self._base + pos
        self._base = offset + size - len(rest)
        self._pos = 0
        end = len(rest) - 3
        self._scan = end if end > 0 else 0
        if size - len(rest) > self.max_message_size:
            self._check_sizes(pieces, offset)
        return pieces, offset

    def _check_sizes(self, pieces: list[bytes], offset: int) -> None:
        for piece in pieces:
            if len(piece) + 4 > self.max_message_size:
                raise RemoteProtocolError(
                    f"AMI message of {len(piece) + 4} bytes exceeds the limit of "
                    f"{self.max_message_size}",
                    offset,
                )
            offset += len(piece) + 4

    def unread(self, blocks: list[bytes], offset: int, search_from: int = 0) -> None:
        """Give back blocks taken by :meth:`blocks`, the last ones it gave, from stream offset ``offset``.

        The next search starts ``search_from`` bytes after ``offset``.
        """
        self._absorb()
        data = TERMINATOR.join(blocks) + TERMINATOR
        if offset + len(data) != self._base + self._pos:
            raise ValueError("unread() takes back the last blocks taken, in order")
        self._buf = data + self._buf[self._pos :]
        self.pending = True
        self._base = offset
        self._pos = 0
        self._scan = search_from

    def check_incomplete(self, keep: int = 3) -> bool:
        """Called when no end was found: raise if the bytes cannot become a message.

        Returns True if the stream has ended cleanly (nothing but empty lines
        left), False if more bytes are needed. The next search starts at the
        last ``keep`` bytes, the ones an end marker may straddle.
        """
        self._absorb()
        buf = self._buf
        pos = self._pos
        self._scan = max(pos, len(buf) - keep)
        if len(buf) - pos > self.max_message_size:
            raise RemoteProtocolError(
                f"incomplete AMI message exceeds the limit of {self.max_message_size} bytes",
                self._base + pos,
            )
        if self.eof:
            if buf[pos:].strip(b"\r\n"):
                raise RemoteProtocolError(
                    "connection closed in the middle of an AMI message", self._base + pos
                )
            return True
        return False

    # -- the banner line and legacy blocks -----------------------------------------

    def line(self) -> bytes | None:
        """The next line (consumed, without its CRLF), or None if it is incomplete."""
        self._absorb()
        buf = self._buf
        pos = self._pos
        end = buf.find(b"\r\n", self._scan)
        if end < 0:
            self._scan = max(pos, len(buf) - 1)
            return None
        self._pos = self._scan = end + 2
        return bytes(buf[pos:end])

    def legacy_block(self) -> bytes | None:
        """The next block ended by ``--END COMMAND--`` and an empty line, or None if incomplete.

        Returned without the final empty line (so ending with the marker), consumed.
        """
        self._absorb()
        buf = self._buf
        pos = self._pos
        end = buf.find(LEGACY_END, self._scan)
        if end < 0:
            self._scan = max(pos, len(buf) - len(LEGACY_END) + 1)
            return None
        stop = end + len(LEGACY_END)
        if stop - pos > self.max_message_size:
            raise RemoteProtocolError(
                f"AMI message of {stop - pos} bytes exceeds the limit of {self.max_message_size}",
                self._base + pos,
            )
        self._pos = self._scan = stop
        return bytes(buf[pos : stop - len(TERMINATOR)])
