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

import csv
import datetime as dt
import json
import operator
import os
import queue
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
from dialer.leads.leadfile import (
    BAD_CHARS,
    FIELD_LIMIT,
    LeadFileError,
    UNDECODABLE,
    Rejects,
    open_text,
    read_header,
)
from dialer.leads.loadsql import LoadStatements
from dialer.leads.phones import (
    InvalidPhone,
    InvalidTimezone,
    PhoneNormalizer,
    lead_region,
    normalize_timezone,
)
from dialer.models import Campaign, utcnow

__all__ = ["ImportResult", "LeadFileError", "LoadInterrupted", "import_leads", "load_leads", "read_header"]

BATCH_SIZE = 5000

PRIORITY_RANGE = (-1_000_000, 1_000_000)


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


# Size of the filter of numbers stored by a load into an empty campaign: 2**26
# bits (8 MiB); with a million numbers about 1.5 % of lookups are needed.
_SEEN_BITS = 1 << 26
_SEEN_MASK = _SEEN_BITS - 1


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
    rejects_out = Rejects(rejects, header.names)
    result.rejects_path = rejects_out.path
    sql = LoadStatements(session.connection(), campaign.id, load_time, source)
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
        bad_chars = BAD_CHARS.search
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
                # In the order of ROW_COLUMNS.
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
            if UNDECODABLE.search(value):
                return f"{name}: not valid UTF-8 text"
            m = BAD_CHARS.search(value)
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
