"""The lead file itself: its header, its encoding, and the rejects file written beside it.

:func:`read_header` refuses what is not a CSV lead file (empty, binary, UTF-16
without a byte-order mark, no ``phone`` column, a column named twice) before
anything is written, naming the file and line; :func:`open_text` decodes the
rows as the header said; :class:`Rejects` writes the refused rows with their
line and reason. No database here.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from dataclasses import dataclass
from typing import TextIO

from dialer.errors import UserError


# Bytes looked at before anything is written, to refuse what is not CSV text.
SNIFF_BYTES = 64 * 1024


# Largest field accepted (csv's default is 128 KiB).
FIELD_LIMIT = 64 * 1024


# Header name (lower case, '_' for spaces and '-') -> lead column.
KNOWN_COLUMNS = {
    "phone": "phone",
    "phone_number": "phone",
    "first_name": "first_name",
    "firstname": "first_name",
    "last_name": "last_name",
    "lastname": "last_name",
    "timezone": "timezone",
    "time_zone": "timezone",
    "tz": "timezone",
    "state": "region",
    "region": "region",
    "province": "region",
    "postal_code": "postal_code",
    "postcode": "postal_code",
    "zip": "postal_code",
    "zip_code": "postal_code",
    "zipcode": "postal_code",
    "priority": "priority",
}


# Control characters, and the stand-ins of bytes that are not UTF-8.
BAD_CHARS = re.compile("[\x00-\x1f\x7f\udc80-\udcff]")


UNDECODABLE = re.compile("[\udc80-\udcff]")


class LeadFileError(UserError):
    """The lead file as a whole is refused (before anything was written)."""


@dataclass(frozen=True)
class Header:
    names: list[str]
    delimiter: str
    # lead column -> index in the row
    columns: dict[str, int]
    # (header name, index) of every other column, kept as custom fields
    custom: list[tuple[str, int]]
    # how the file is decoded: UTF-8 (a byte-order mark skipped), or UTF-16 with
    # its byte-order mark (what spreadsheets save as "Unicode text")
    encoding: str = "utf-8-sig"


def _normal_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def read_sample(path: str | os.PathLike, source: str, expected: str) -> bytes:
    """The first SNIFF_BYTES of a file; LeadFileError naming ``source`` when it
    cannot be read (``expected`` says what a directory was taken for)."""
    try:
        with open(path, "rb") as f:
            return f.read(SNIFF_BYTES)
    except FileNotFoundError:
        raise LeadFileError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise LeadFileError(f"{source}: is a directory, not {expected}") from None
    except OSError as exc:
        raise LeadFileError(f"{source}: cannot read: {exc.strerror or exc}") from None


def read_header(path: str | os.PathLike, source: str | None = None) -> Header:
    """Check that ``path`` is a CSV lead file and read its header; refuses with LeadFileError."""
    source = source or str(path)
    return parse_header(read_sample(path, source, "a CSV file"), source)


def parse_header(sample: bytes, source: str) -> Header:
    """Check the first bytes of a file and read its CSV header (see :func:`read_header`)."""
    if not sample.strip():
        raise LeadFileError(f"{source}: empty file, expected a CSV header row with a 'phone' column")
    encoding = "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Only the header line is read from the sample (cut anywhere): the rows
        # are decoded strictly as they are read.
        encoding = "utf-16"
        sample = sample[: len(sample) & ~1].decode("utf-16", "replace").encode("utf-8")
    if b"\x00" in sample:
        if _looks_utf16(sample):
            raise LeadFileError(f"{source}: UTF-16 text without a byte-order mark; save it as"
                                " CSV UTF-8 (or as Unicode text, which has the mark)")
        raise LeadFileError(f"{source}: not a CSV file (binary data)")
    if sample.startswith(codecs.BOM_UTF8):
        sample = sample[len(codecs.BOM_UTF8):]
    first = re.split(rb"\r\n|\r|\n", sample, maxsplit=1)[0]
    try:
        line = first.decode("utf-8")
    except UnicodeDecodeError:
        raise LeadFileError(f"{source}: line 1: not a CSV file (not UTF-8 text)") from None
    delimiter = ","
    if "," not in line:
        for candidate in (";", "\t", "|"):
            if candidate in line:
                delimiter = candidate
                break
    try:
        names = next(csv.reader([line], delimiter=delimiter, strict=True))
    except (csv.Error, StopIteration) as exc:
        raise LeadFileError(f"{source}: line 1: not a CSV header ({exc})") from None
    names = [n.strip() for n in names]
    columns: dict[str, int] = {}
    custom: list[tuple[str, int]] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            raise LeadFileError(f"{source}: line 1: column {i + 1} has no name")
        if BAD_CHARS.search(name):
            raise LeadFileError(f"{source}: line 1: column {i + 1} name contains a control character")
        key = name.lower()
        if key in seen:
            raise LeadFileError(f"{source}: line 1: column {name!r} appears twice")
        seen[key] = i
        target = KNOWN_COLUMNS.get(_normal_name(name))
        if target is None:
            custom.append((name, i))
        elif target in columns:
            other = names[columns[target]]
            raise LeadFileError(f"{source}: line 1: columns {other!r} and {name!r} both give {target}")
        else:
            columns[target] = i
    if "phone" not in columns:
        shown = ", ".join(repr(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
        raise LeadFileError(f"{source}: line 1: no 'phone' column (header: {shown})")
    return Header(names, delimiter, columns, custom, encoding)


def _looks_utf16(sample: bytes) -> bool:
    """Text in UTF-16 has a NUL in every other byte of its ASCII characters."""
    head = sample[:4096]
    return len(head) >= 4 and (head[1::2].count(0) > len(head) // 4 or head[0::2].count(0) > len(head) // 4)


def open_text(raw, header: Header) -> io.TextIOWrapper:
    """The file's text as the CSV reader reads it (see :attr:`Header.encoding`)."""
    if header.encoding == "utf-16":
        return io.TextIOWrapper(raw, encoding="utf-16", errors="strict", newline="")
    # Undecodable bytes become lone surrogates: the row is rejected, naming the field.
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")


class Rejects:
    """The rejects file: line, reason, then the row as read. Opened at the first reject."""

    def __init__(self, target: str | os.PathLike | TextIO | None, header: list[str]) -> None:
        self.target = target
        self.header = header
        self._file: TextIO | None = None
        self._writer = None
        self._owned = False

    @property
    def path(self) -> str | None:
        if self.target is None or not isinstance(self.target, (str, os.PathLike)):
            return None
        return str(self.target)

    def write(self, rejects: list[tuple[int, str, list[str]]]) -> None:
        if not rejects or self.target is None:
            return
        if self._writer is None:
            if isinstance(self.target, (str, os.PathLike)):
                try:
                    # Undecodable bytes are written back as they were read.
                    self._file = open(self.target, "w", encoding="utf-8", errors="surrogateescape", newline="")
                except OSError as exc:
                    raise UserError(f"--rejects {self.target}: cannot write: {exc.strerror or exc}") from None
                self._owned = True
            else:
                self._file = self.target
            self._writer = csv.writer(self._file)
            self._writer.writerow(["line", "reason", *self.header])
        rejects.sort(key=lambda r: r[0])
        self._writer.writerows([line, reason, *row] for line, reason, row in rejects)

    def close(self, *, failed: bool) -> None:
        if self._owned and self._file is not None:
            self._file.close()
            if failed:
                try:
                    os.unlink(self.target)
                except OSError:
                    pass
