"""Streaming import of leads from a CSV file into a campaign.

The file is read row by row and written in batches, so memory does not grow
with its size. Each row is checked (field count, control characters and
undecodable bytes, phone number, time zone, priority), deduplicated against
the rest of the file and the campaign, and scrubbed against the do-not-call
list; a refused row goes to the rejects file with its line number and reason,
and the good rows load. The whole load is one unit of work owned by the
caller: when it fails half-way nothing of it is kept, and nothing stored
before is touched.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import operator
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.campaigns import get_campaign
from dialer.errors import UserError
from dialer.leads.phones import (
    InvalidPhone,
    InvalidTimezone,
    PhoneNormalizer,
    lead_region,
    normalize_timezone,
)
from dialer.models import Campaign, DncNumber, Lead, LeadState, utcnow

__all__ = ["ImportResult", "LeadFileError", "LoadInterrupted", "import_leads", "load_leads", "read_header"]

BATCH_SIZE = 5000
# Bytes looked at before anything is written, to refuse what is not CSV text.
SNIFF_BYTES = 64 * 1024
# SQLite page cache during a load, KiB.
SQLITE_CACHE_KIB = 64 * 1024
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
PRIORITY_RANGE = (-1_000_000, 1_000_000)

# Control characters, and the stand-ins of bytes that are not UTF-8.
_BAD_CHARS = re.compile("[\x00-\x1f\x7f\udc80-\udcff]")
_UNDECODABLE = re.compile("[\udc80-\udcff]")


class LeadFileError(UserError):
    """The lead file as a whole is refused (before anything was written)."""


class LoadInterrupted(Exception):
    """The load was asked to stop (``should_stop``) before it was done; the
    caller rolls its transaction back."""


@dataclass
class ImportResult:
    """What a load did; ``rejected`` = invalid + duplicate + dnc."""

    campaign: str
    source: str
    rows: int = 0
    loaded: int = 0
    invalid: int = 0
    duplicate: int = 0
    dnc: int = 0
    seconds: float = 0.0
    rejects_path: str | None = None

    @property
    def rejected(self) -> int:
        return self.invalid + self.duplicate + self.dnc

    def counts(self) -> dict[str, int]:
        return {"rows": self.rows, "loaded": self.loaded, "invalid": self.invalid,
                "duplicate": self.duplicate, "dnc": self.dnc}

    def summary(self) -> str:
        parts = [f"{self.loaded} loaded", f"{self.rejected} rejected"]
        detail = f" ({self.invalid} invalid, {self.duplicate} duplicate, {self.dnc} do-not-call)"
        text = f"{self.source}: {', '.join(parts)}{detail} of {self.rows} rows into campaign {self.campaign!r}"
        rate = f" in {self.seconds:.1f} s"
        if self.rejects_path and self.rejected:
            return f"{text}{rate}; rejected rows in {self.rejects_path}"
        return text + rate


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
        if _BAD_CHARS.search(name):
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


class _Rejects:
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


_INSERT_COLUMNS = (
    "campaign_id", "phone_e164", "first_name", "last_name", "timezone", "region",
    "rules_region", "postal_code", "state", "priority", "attempts", "next_attempt_at", "custom",
    "source_file", "source_line", "created_at",
)
# What varies per lead, in the order of a row tuple (and of the COPY columns).
_ROW_COLUMNS = (
    "phone_e164", "first_name", "last_name", "timezone", "region", "rules_region", "postal_code",
    "priority", "custom", "source_line",
)


# Size of the filter of numbers stored by a load into an empty campaign: 2**26
# bits (8 MiB); with a million numbers about 1.5 % of lookups are needed.
_SEEN_BITS = 1 << 26
_SEEN_MASK = _SEEN_BITS - 1

# PostgreSQL staging table: one column per item of a row tuple.
_PG_STAGING_TABLE = "dialer_lead_load"
_PG_STAGING = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_PG_STAGING_TABLE} (phone text, first_name text,"
    " last_name text, timezone text, region text, rules_region text, postal_code text,"
    " priority int, custom text,"
    " line int) ON COMMIT DROP"
)
_PG_COPY = (
    f"COPY {_PG_STAGING_TABLE} (phone, first_name, last_name, timezone, region, rules_region,"
    " postal_code,"
    " priority, custom, line) FROM STDIN"
)
_PG_INSERT = (
    f"INSERT INTO {Lead.__tablename__} ({', '.join(_INSERT_COLUMNS)})"
    " SELECT %s, phone, first_name, last_name, timezone, region, rules_region, postal_code,"
    " %s, priority, 0, %s, custom::jsonb, %s, line, %s"
    f" FROM {_PG_STAGING_TABLE} ORDER BY line"
    " ON CONFLICT (campaign_id, phone_e164) DO NOTHING"
)


def _sqlite_literal(value: Any) -> str:
    """A SQL literal for SQLite: an integer, or a string with its quotes doubled."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        if "\x00" in value:
            raise UserError(f"{value!r}: contains a NUL character")
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQLite literal for {value!r}")


class _Sql:
    """The load's statements, in the driver's own parameter style.

    The hot path skips SQLAlchemy's per-row parameter processing: values are
    given as tuples already in the form the driver stores (timestamps through
    the dialect's own DateTime processor, JSON as text).
    """

    def __init__(self, conn, campaign_id: int, load_time: dt.datetime, source: str) -> None:
        dialect = conn.dialect
        if dialect.name not in ("sqlite", "postgresql"):  # pragma: no cover
            raise UserError(f"unsupported database {dialect.name!r}")
        self.conn = conn
        self.campaign_id = campaign_id
        self.sqlite = dialect.name == "sqlite"
        mark = "?" if self.sqlite else "%s"
        process = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
        # The load time as the driver stores it, and as it reads it back.
        self.load_time = process(load_time) if process else load_time
        self._mark = mark
        self._source = source
        if self.sqlite:
            # The values shared by every lead of the load are written into the
            # statement once (as quoted literals) instead of bound per row.
            constants = {
                "campaign_id": int(campaign_id),
                "state": LeadState.NEW.value,
                "attempts": 0,
                "next_attempt_at": self.load_time,
                "source_file": source,
                "created_at": self.load_time,
            }
            values = [
                _sqlite_literal(constants[c]) if c in constants else "?" for c in _INSERT_COLUMNS
            ]
            self.insert = (
                f"INSERT INTO {Lead.__tablename__} ({', '.join(_INSERT_COLUMNS)})"
                f" VALUES ({', '.join(values)})"
                " ON CONFLICT (campaign_id, phone_e164) DO NOTHING"
            )
        self._pg_staging = False
        self._cache_size = None
        if self.sqlite:
            # A bigger page cache for the load keeps the unique index's pages in
            # memory while numbers arrive in random order (bounded: 64 MiB).
            self._cache_size = conn.exec_driver_sql("PRAGMA cache_size").scalar()
            conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")

    def close(self) -> None:
        if self._cache_size is not None:
            self.conn.exec_driver_sql(f"PRAGMA cache_size = {int(self._cache_size)}")

    def _in(self, phones: list[str]) -> tuple[str, Any]:
        if self.sqlite:
            return f"IN ({', '.join(['?'] * len(phones))})", tuple(phones)
        return "= ANY(%s)", (phones,)

    def campaign_has_leads(self) -> bool:
        sql = f"SELECT 1 FROM {Lead.__tablename__} WHERE campaign_id = {self._mark} LIMIT 1"
        return self.conn.exec_driver_sql(sql, (self.campaign_id,)).first() is not None

    def dnc_list_empty(self) -> bool:
        sql = f"SELECT 1 FROM {DncNumber.__tablename__} LIMIT 1"
        return self.conn.exec_driver_sql(sql).first() is None

    def dnc(self, phones: list[str]) -> set[str]:
        if not phones:
            return set()
        clause, params = self._in(phones)
        sql = f"SELECT phone_e164 FROM {DncNumber.__tablename__} WHERE phone_e164 {clause}"
        return {row[0] for row in self.conn.exec_driver_sql(sql, params)}

    def existing(self, phones: list[str]) -> dict[str, tuple[Any, Any, Any]]:
        if not phones:
            return {}
        clause, params = self._in(phones)
        sql = (
            f"SELECT phone_e164, source_file, source_line, created_at FROM {Lead.__tablename__}"
            f" WHERE campaign_id = {self._mark} AND phone_e164 {clause}"
        )
        params = (self.campaign_id, *params)
        return {row[0]: (row[1], row[2], row[3]) for row in self.conn.exec_driver_sql(sql, params)}

    def insert_rows(self, rows: list[tuple]) -> None:
        if self.sqlite:
            self.conn.exec_driver_sql(self.insert, rows)
            return
        # PostgreSQL: COPY the batch into a temporary table, then one INSERT …
        # SELECT with ON CONFLICT (a row-by-row executemany costs a server
        # round of bind/execute per lead; COPY's rows are formatted in C).
        raw = self.conn.connection.driver_connection
        with raw.cursor() as cur:
            if not self._pg_staging:
                cur.execute(_PG_STAGING)
                self._pg_staging = True
            with cur.copy(_PG_COPY) as copy:
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
            cur.execute(
                _PG_INSERT,
                (self.campaign_id, LeadState.NEW.value, self.load_time, self._source, self.load_time),
            )
            cur.execute(f"TRUNCATE {_PG_STAGING_TABLE}")


def import_leads(
    session: Session,
    campaign: Campaign | str,
    path: str | os.PathLike,
    *,
    region: str = "US",
    rejects: str | os.PathLike | TextIO | None = None,
    source: str | None = None,
    batch_size: int = BATCH_SIZE,
    now: dt.datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ImportResult:
    """Load the leads of a CSV file into a campaign, in the caller's transaction.

    ``source`` is the name stored with each lead and used in messages
    (default: the path as given). ``now`` (naive UTC) is the load time: it
    becomes each new lead's ``created_at`` and ``next_attempt_at``.
    ``progress(bytes_read, bytes_total)`` is called after each batch.
    ``should_stop()`` is asked before each batch is handed to the database:
    True raises :class:`LoadInterrupted` once the batch being written is
    done (the caller then rolls back; nothing is left half-written).
    Raises :class:`LeadFileError` before writing anything when the file is
    not a CSV lead file, and UserError for an unknown campaign or region.
    """
    started = time.perf_counter()
    source = source or str(path)
    header = read_header(path, source)
    if isinstance(campaign, str):
        campaign = get_campaign(session, campaign)
    try:
        normalizer = PhoneNormalizer(region)
    except ValueError as exc:
        raise UserError(f"--region: {exc}") from None
    if rejects is not None and isinstance(rejects, (str, os.PathLike)):
        if Path(rejects).resolve() == Path(path).resolve():
            raise UserError(f"--rejects {rejects}: is the file being loaded")
    load_time = (now or utcnow()).replace(tzinfo=None)

    result = ImportResult(campaign=campaign.name, source=source)
    rejects_out = _Rejects(rejects, header.names)
    result.rejects_path = rejects_out.path
    sql = _Sql(session.connection(), campaign.id, load_time, source)
    total_bytes = os.path.getsize(path)
    failed = True
    try:
        with open(path, "rb") as raw:
            text = open_text(raw, header)
            reader = csv.reader(text, delimiter=header.delimiter, strict=True)
            try:
                _Load(
                    sql=sql, campaign=campaign, header=header, source=source,
                    normalizer=normalizer, load_time=load_time, batch_size=batch_size,
                    rejects=rejects_out, result=result,
                    position=raw.tell,
                    progress=(lambda done: progress(done, total_bytes)) if progress else None,
                    should_stop=should_stop,
                ).run(reader)
            except UnicodeDecodeError:
                # Only a strict decoding (UTF-16) raises; the text is decoded ahead of the rows.
                after = f" after line {reader.line_num}" if reader.line_num else ""
                raise LeadFileError(f"{source}: not valid {header.encoding.upper()} text{after};"
                                    " save the file as CSV UTF-8") from None
        if should_stop is not None and should_stop():
            raise LoadInterrupted(f"{source}: load interrupted")
        failed = False
    finally:
        rejects_out.close(failed=failed)
        try:
            sql.close()
        except sa.exc.SQLAlchemyError:
            if not failed:
                raise
    result.seconds = time.perf_counter() - started
    return result


def load_leads(
    url: str,
    campaign: str,
    path: str | os.PathLike,
    *,
    should_stop: Callable[[], bool] | None = None,
    actor: Any = None,
    **options: Any,
) -> ImportResult:
    """One whole load in a transaction of its own on the database at ``url``:
    committed whole, or (on any error, or ``should_stop()`` before the commit)
    rolled back whole. Options as for :func:`import_leads`.

    Raises :class:`LoadInterrupted` when stopped: then nothing was loaded.
    With ``actor`` (a :class:`dialer.audit.Actor`), the load's audit row is
    written in the same transaction.
    """
    from dialer import db

    read_header(path, options.get("source"))  # refuse a file that is not a lead file first
    engine = db.open_database(url)
    try:
        with db.session_factory(engine)() as session:
            with session.begin():
                result = import_leads(session, campaign, path, should_stop=should_stop, **options)
                if actor is not None:  # the audit row commits with the leads, or not at all
                    from dialer import audit

                    audit.record(session, actor, "leads.load", campaign,
                                 after={"file": str(path), **result.counts()})
            # committed
    finally:
        engine.dispose()
    return result


class _Load:
    """One load: rows are parsed here while a writer thread stores the batch before.

    The writer checks each batch against the database (do-not-call list,
    leads already in the campaign, including earlier batches of this file),
    inserts it and writes its rejects, while the next batch is being parsed:
    the database drivers release the GIL while the database works. The queue
    between the two holds one batch, so memory stays bounded.
    """

    def __init__(self, *, sql, campaign, header, source, normalizer, load_time,
                 batch_size, rejects, result, position, progress, should_stop=None) -> None:
        self.sql = sql
        self.campaign = campaign
        self.header = header
        self.source = source
        self.normalizer = normalizer
        self.load_time = load_time
        self.batch_size = batch_size
        self.rejects = rejects
        self.result = result
        self.position = position
        self.progress = progress
        self.should_stop = should_stop
        # Counts kept apart per thread, added up at the end.
        self.parse_counts = {"invalid": 0, "duplicate": 0}
        self.write_counts = {"loaded": 0, "duplicate": 0, "dnc": 0}
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.writer_error: BaseException | None = None
        # With an empty do-not-call list at the start, batches are not looked
        # up in it (a number listed during the load is still never dialed: the
        # hopper checks the list when it claims leads).
        self.skip_dnc = sql.dnc_list_empty()
        # With a campaign empty at the start, a fixed-size bit set of the
        # numbers stored so far (a hash filter: false positives only cost a
        # lookup) spares most lookups of earlier batches.
        self.seen_bits = None if sql.campaign_has_leads() else bytearray(_SEEN_BITS // 8)

    # --- the writer thread ---

    def _write_loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.writer_error is not None:
                continue  # drain after a failure; the parser stops at its next batch
            try:
                self.flush(*item)
            except BaseException as exc:  # handed to the parsing thread
                self.writer_error = exc

    def _submit(self, batch, batch_rejects) -> None:
        if self.writer_error is not None:
            raise self.writer_error
        if self.should_stop is not None and self.should_stop():
            raise LoadInterrupted(f"{self.source}: load interrupted")
        self.queue.put((batch, batch_rejects, self.position()))

    def run(self, reader) -> None:
        writer = threading.Thread(target=self._write_loop, name="lead-load-writer", daemon=True)
        writer.start()
        try:
            self._parse(reader)
        finally:
            self.queue.put(None)
            writer.join()
        if self.writer_error is not None:
            raise self.writer_error
        result = self.result
        result.invalid = self.parse_counts["invalid"]
        result.duplicate = self.parse_counts["duplicate"] + self.write_counts["duplicate"]
        result.dnc = self.write_counts["dnc"]
        result.loaded = self.write_counts["loaded"]

    def _parse(self, reader) -> None:
        header = self.header
        ncols = len(header.names)
        cols = header.columns
        phone_i = cols["phone"]
        first_i = cols.get("first_name")
        last_i = cols.get("last_name")
        tz_i = cols.get("timezone")
        region_i = cols.get("region")
        postal_i = cols.get("postal_code")
        prio_i = cols.get("priority")
        custom = header.custom
        normalize = self.normalizer.normalize
        bad_chars = _BAD_CHARS.search
        counts = self.parse_counts
        # phone -> (line, row values for the insert, raw row)
        batch: dict[str, tuple[int, tuple, list[str]]] = {}
        batch_rejects: list[tuple[int, str, list[str]]] = []

        def reject(kind: str, line: int, reason: str, row: list[str]) -> None:
            counts[kind] += 1
            batch_rejects.append((line, reason, row))

        source = self.source
        # Custom fields as a JSON object, formatted directly: '{"a":%s,"b":%s}'
        # with each value quoted by json's own (C) string encoder.
        quote = json.encoder.encode_basestring_ascii
        custom_format = (
            "{" + ",".join(quote(name).replace("%", "%%") + ":%s" for name, _ in custom) + "}"
        )
        custom_values = operator.itemgetter(*[i for _, i in custom]) if custom else None
        if len(custom) == 1:
            single = custom_values
            custom_values = lambda row: (single(row),)  # noqa: E731 - itemgetter of one is not a tuple
        sep = ","  # joins fields for one search; not a bad character itself
        batch_size = self.batch_size
        rows_read = 0

        previous_limit = csv.field_size_limit(FIELD_LIMIT)
        try:
            rows = iter(reader)
            next(rows)  # the header, already checked
            line = reader.line_num + 1
            while True:
                try:
                    row = next(rows)
                except StopIteration:
                    break
                except csv.Error as exc:
                    raise LeadFileError(f"{source}: line {line}: not valid CSV ({exc})") from None
                this_line, line = line, reader.line_num + 1
                if not row:
                    continue  # a blank line
                rows_read += 1
                if len(batch) + len(batch_rejects) >= batch_size:
                    self._submit(batch, batch_rejects)
                    batch, batch_rejects = {}, []
                if len(row) != ncols:
                    reject("invalid", this_line, f"fields: {len(row)} fields, the header has {ncols}", row)
                    continue
                if bad_chars(sep.join(row)):
                    reject("invalid", this_line, self._bad_char_reason(row), row)
                    continue
                phone_text = row[phone_i]
                try:
                    phone = normalize(phone_text)
                except InvalidPhone as exc:
                    reason = f"phone: {exc}" if not phone_text.strip() else f"phone: {phone_text.strip()!r}: {exc}"
                    reject("invalid", this_line, reason, row)
                    continue
                zone = None
                if tz_i is not None:
                    zone_text = row[tz_i].strip()
                    if zone_text:
                        try:
                            zone = normalize_timezone(zone_text)
                        except InvalidTimezone as exc:
                            reject("invalid", this_line, f"timezone: {exc}", row)
                            continue
                if zone is None:
                    zone = phone.timezone
                    if zone is None:
                        reject("invalid", this_line,
                               f"timezone: none known for {phone.e164}; give one in a timezone column", row)
                        continue
                priority = 0
                if prio_i is not None:
                    prio_text = row[prio_i].strip()
                    if prio_text:
                        try:
                            priority = int(prio_text)
                        except ValueError:
                            priority = None
                        if priority is None or not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]:
                            reject("invalid", this_line,
                                   f"priority: {prio_text!r} is not a whole number between"
                                   f" {PRIORITY_RANGE[0]} and {PRIORITY_RANGE[1]}", row)
                            continue
                e164 = phone.e164
                earlier = batch.get(e164)
                if earlier is not None:
                    reject("duplicate", this_line, f"duplicate: same number {e164} as line {earlier[0]}", row)
                    continue
                region_text = (row[region_i].strip() or None) if region_i is not None else None
                # In the order of _ROW_COLUMNS.
                batch[e164] = (this_line, (
                    e164,
                    (row[first_i].strip() or None) if first_i is not None else None,
                    (row[last_i].strip() or None) if last_i is not None else None,
                    zone,
                    region_text,
                    lead_region(region_text, phone) if region_text else phone.region,
                    (row[postal_i].strip() or None) if postal_i is not None else None,
                    priority,
                    custom_format % tuple(map(quote, custom_values(row))) if custom else None,
                    this_line,
                ), row)
            self._submit(batch, batch_rejects)
        finally:
            csv.field_size_limit(previous_limit)
            self.result.rows = rows_read

    def _bad_char_reason(self, row: list[str]) -> str:
        for name, value in zip(self.header.names, row):
            if _UNDECODABLE.search(value):
                return f"{name}: not valid UTF-8 text"
            m = _BAD_CHARS.search(value)
            if m:
                return f"{name}: contains control character {m.group()!r}"
        return "contains a control character"  # pragma: no cover - the search found one

    def flush(self, batch: dict[str, tuple[int, tuple, list[str]]], batch_rejects: list, position: int) -> None:
        """Check one batch against the database, store it, write its rejects (writer thread)."""
        sql = self.sql
        counts = self.write_counts

        def reject(kind: str, line: int, reason: str, row: list[str]) -> None:
            counts[kind] += 1
            batch_rejects.append((line, reason, row))

        if batch:
            phones = list(batch)
            on_dnc = set() if self.skip_dnc else sql.dnc(phones)
            seen_bits = self.seen_bits
            if seen_bits is None:
                existing = sql.existing(phones)
            else:
                # The campaign had no leads when the load began: only numbers
                # this load may have stored already need a look in the table.
                maybe = []
                for phone in phones:
                    bit = hash(phone) & _SEEN_MASK
                    byte, flag = bit >> 3, 1 << (bit & 7)
                    if seen_bits[byte] & flag:
                        maybe.append(phone)
                    else:
                        seen_bits[byte] |= flag
                existing = sql.existing(maybe)
            values = []
            load_time = sql.load_time
            for phone, (line, row_values, row) in batch.items():
                seen = existing.get(phone)
                if seen is not None and seen[2] == load_time and seen[0] == self.source:
                    reject("duplicate", line, f"duplicate: same number {phone} as line {seen[1]}", row)
                elif phone in on_dnc:
                    reject("dnc", line, f"dnc: {phone} is on the do-not-call list", row)
                elif seen is not None:
                    where = f"line {seen[1]} of {seen[0]}" if seen[0] else "earlier"
                    reject("duplicate", line,
                           f"duplicate: {phone} is already in campaign {self.campaign.name!r} ({where})", row)
                else:
                    values.append(row_values)
            if values:
                sql.insert_rows(values)
                counts["loaded"] += len(values)
        self.rejects.write(batch_rejects)
        if self.progress is not None:
            self.progress(position)
