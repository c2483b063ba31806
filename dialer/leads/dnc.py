"""The do-not-call list: numbers that are never dialed.

Numbers are normalised to E.164 the same way leads are. Adding a number also
takes every lead with that number that is waiting to be dialed or leased
(states ``new``, ``retry``, ``claimed``) out of the hopper: it moves to state
``dnc``. A lead already being dialed when its number is listed is not
touched here; the engine checks the list again (:func:`not_on_dnc_list`)
when it claims leads.

Functions take a Session; the caller owns the unit of work.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.errors import UserError
from dialer.leads.leadfile import LeadFileError, open_text, parse_header, read_sample
from dialer.leads.phones import InvalidPhone, PhoneNormalizer
from dialer.models import DncNumber, Lead, LeadState, utcnow

__all__ = [
    "DncLoadResult",
    "add_dnc",
    "is_dnc",
    "load_dnc",
    "mark_dnc_leads",
    "normalize_number",
    "not_on_dnc_list",
]

BATCH_SIZE = 5000
# Lead states a newly listed number takes out of the hopper.
_SCRUBBED_STATES = (LeadState.NEW.value, LeadState.RETRY.value, LeadState.CLAIMED.value)
_BAD_CHARS = re.compile("[\x00-\x1f\x7f\udc80-\udcff]")


@dataclass
class DncLoadResult:
    source: str
    rows: int = 0
    added: int = 0
    already: int = 0
    invalid: int = 0
    leads_scrubbed: int = 0
    rejects_path: str | None = None

    def summary(self) -> str:
        text = (
            f"{self.source}: {self.added} numbers added to the do-not-call list,"
            f" {self.already} already listed, {self.invalid} invalid;"
            f" {self.leads_scrubbed} leads taken out of the hopper"
        )
        if self.invalid and self.rejects_path:
            text += f"; rejected rows in {self.rejects_path}"
        return text


def normalize_number(text: str, region: str = "US") -> str:
    """E.164 form of a phone number; UserError naming it when it is not valid."""
    try:
        return PhoneNormalizer(region).normalize(text).e164
    except InvalidPhone as exc:
        raise UserError(f"{text.strip()!r}: {exc}") from None
    except ValueError as exc:
        raise UserError(f"--region: {exc}") from None


def not_on_dnc_list(phone_column=Lead.phone_e164) -> sa.ColumnElement[bool]:
    """A WHERE clause for the hopper: the lead's number is not on the list."""
    return ~sa.exists().where(DncNumber.phone_e164 == phone_column)


def is_dnc(session: Session, number: str, *, region: str = "US") -> bool:
    """Whether a number (any format) is on the do-not-call list."""
    e164 = number if number.startswith("+") and number[1:].isdigit() else normalize_number(number, region)
    return session.scalar(sa.select(sa.literal(True)).where(DncNumber.phone_e164 == e164)) is not None


def _insert_new(session: Session, numbers: list[str], source: str | None, now: dt.datetime) -> int:
    """Insert the numbers not yet listed; returns how many were new."""
    if not numbers:
        return 0
    existing = set(
        session.scalars(sa.select(DncNumber.phone_e164).where(DncNumber.phone_e164.in_(numbers)))
    )
    new = [n for n in dict.fromkeys(numbers) if n not in existing]
    if new:
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        session.execute(
            insert(DncNumber).on_conflict_do_nothing(index_elements=["phone_e164"]),
            [{"phone_e164": n, "source": source, "added_at": now} for n in new],
        )
    return len(new)


def mark_dnc_leads(session: Session, *, since: dt.datetime | None = None) -> int:
    """Move waiting or leased leads whose number is listed to state ``dnc``.

    With ``since``, only numbers added at or after it are looked at.
    Returns the number of leads moved.
    """
    listed = sa.select(DncNumber.phone_e164)
    if since is not None:
        listed = listed.where(DncNumber.added_at >= since)
    result = session.execute(
        sa.update(Lead)
        .where(Lead.state.in_(_SCRUBBED_STATES), Lead.phone_e164.in_(listed))
        .values(
            state=LeadState.DNC.value,
            next_attempt_at=None,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def add_dnc(
    session: Session,
    numbers: Iterable[str],
    *,
    region: str = "US",
    source: str | None = None,
    now: dt.datetime | None = None,
    actor=None,
) -> int:
    """List numbers (any format); UserError naming the first invalid one, before any is added.

    Returns how many were not listed before. Leads with these numbers leave
    the hopper (see :func:`mark_dnc_leads`). With ``actor`` (a
    :class:`dialer.audit.Actor`) the addition is written to the audit log.
    """
    try:
        normalizer = PhoneNormalizer(region)
    except ValueError as exc:
        raise UserError(f"--region: {exc}") from None
    e164s = []
    for text in numbers:
        try:
            e164s.append(normalizer.normalize(text).e164)
        except InvalidPhone as exc:
            raise UserError(f"{text.strip()!r}: {exc}") from None
    now = (now or utcnow()).replace(tzinfo=None)
    added = 0
    for i in range(0, len(e164s), BATCH_SIZE):
        added += _insert_new(session, e164s[i : i + BATCH_SIZE], source, now)
    marked = mark_dnc_leads(session, since=now) if added else 0
    if actor is not None:
        from dialer import audit

        audit.record(session, actor, "dnc.add", ", ".join(dict.fromkeys(e164s))[:2000],
                     after={"added": added, "leads_marked_dnc": marked, "source": source}, now=now)
    return added


def load_dnc(
    session: Session,
    path: str | os.PathLike,
    *,
    region: str = "US",
    rejects: str | os.PathLike | TextIO | None = None,
    source: str | None = None,
    now: dt.datetime | None = None,
) -> DncLoadResult:
    """List every number of a file, streaming.

    The file is either CSV with a header row that has a ``phone`` column, or a
    plain list with one number per line (blank lines and ``#`` comments
    skipped). Invalid numbers go to the rejects file with their line number.
    """
    source = source or str(path)
    sample = read_sample(path, source, "a list of numbers")
    try:
        normalizer = PhoneNormalizer(region)
    except ValueError as exc:
        raise UserError(f"--region: {exc}") from None
    if not sample.strip():
        raise LeadFileError(f"{source}: empty file, expected numbers")
    if b"\x00" in sample:
        raise LeadFileError(f"{source}: not a list of numbers (binary data)")
    first_line = sample.lstrip(b"\xef\xbb\xbf").splitlines()[0].decode("utf-8", "replace")
    plain = _looks_like_number(first_line, normalizer)
    header = None if plain else parse_header(sample, source)

    now = (now or utcnow()).replace(tzinfo=None)
    result = DncLoadResult(source=source)
    rejects_file = None
    owned = False
    failed = True
    try:
        with open(path, "rb") as raw:
            text = (open_text(raw, header) if header is not None else
                    io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline=""))
            batch: list[str] = []
            for line_no, value in _numbers(text, header, source):
                result.rows += 1
                reason = None
                if _BAD_CHARS.search(value):
                    reason = "phone: not valid UTF-8 text or contains a control character"
                else:
                    try:
                        batch.append(normalizer.normalize(value).e164)
                    except InvalidPhone as exc:
                        reason = f"phone: {value.strip()!r}: {exc}"
                if reason is not None:
                    result.invalid += 1
                    if rejects is not None:
                        if rejects_file is None:
                            if isinstance(rejects, (str, os.PathLike)):
                                rejects_file = open(rejects, "w", encoding="utf-8", errors="backslashreplace", newline="")
                                owned = True
                                result.rejects_path = str(rejects)
                            else:
                                rejects_file = rejects
                            rejects_writer = csv.writer(rejects_file)
                            rejects_writer.writerow(["line", "reason", "phone"])
                        rejects_writer.writerow([line_no, reason, value])
                if len(batch) >= BATCH_SIZE:
                    added = _insert_new(session, batch, source, now)
                    result.added += added
                    result.already += len(batch) - added
                    batch.clear()
            added = _insert_new(session, batch, source, now)
            result.added += added
            result.already += len(batch) - added
        result.leads_scrubbed = mark_dnc_leads(session, since=now) if result.added else 0
        failed = False
    finally:
        if owned and rejects_file is not None:
            rejects_file.close()
            if failed:
                try:
                    os.unlink(rejects)
                except OSError:
                    pass
    return result


def _looks_like_number(line: str, normalizer: PhoneNormalizer) -> bool:
    line = line.strip()
    if not line or line.startswith("#"):
        return True
    try:
        normalizer.normalize(line)
        return True
    except InvalidPhone:
        return bool(re.fullmatch(r"[+\d\s().\-]+", line))


def _numbers(text: TextIO, header, source: str):
    """(line number, number text) of each entry."""
    if header is None:
        for line_no, line in enumerate(text, start=1):
            value = line.strip()
            if value and not value.startswith("#"):
                yield line_no, value
        return
    reader = csv.reader(text, delimiter=header.delimiter, strict=True)
    phone_i = header.columns["phone"]
    try:
        next(reader)
        line = reader.line_num + 1
        for row in reader:
            this_line, line = line, reader.line_num + 1
            if not row:
                continue
            if len(row) <= phone_i:
                yield this_line, ""
            else:
                yield this_line, row[phone_i]
    except csv.Error as exc:
        raise LeadFileError(f"{source}: line {line}: not valid CSV ({exc})") from None
