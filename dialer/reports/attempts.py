"""The attempt export (``dialer report --attempts``): one row per call attempt, streamed.

Times are formatted by the database, so the export handles only text and a
million rows stream in constant memory, as CSV, JSON lines or one JSON array.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.calls.dispositions import REASON_TEXT
from dialer.campaigns import get_campaign
from dialer.models import CallAttempt, Lead
from dialer.reports.queries import dialect_of


# Columns of the --attempts export, in order.
ATTEMPT_COLUMNS = (
    "attempt_id", "lead_id", "phone", "first_name", "last_name", "attempt_no",
    "queued_at", "originated_at", "ringing_at", "answered_at", "queue_joined_at",
    "connected_at", "ended_at", "disposition", "cause", "cause_txt", "time_to_agent",
    "agent", "server", "connection", "hangup_at", "estimated",
    "originate_reason", "originate_reason_txt", "response_message", "charged",
)


def export_attempts(
    session: Session, name: str, out: TextIO, *, fmt: str = "csv",
    since: dt.datetime | None = None, batch: int = 10_000,
) -> int:
    """Write one row per call attempt of campaign ``name``, oldest first,
    streamed from the database; returns the number of rows."""
    campaign = get_campaign(session, name)
    dialect = dialect_of(session)
    a = CallAttempt

    def when(column):
        # Formatted by the database: the export handles only text.
        if dialect == "postgresql":
            return sa.func.to_char(column, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
        return sa.func.strftime("%Y-%m-%dT%H:%M:%fZ", column)

    def millis(column):
        # Seconds to the millisecond, as the times are.
        if dialect == "postgresql":
            return sa.cast(sa.func.round(sa.cast(column, sa.Numeric), 3), sa.Float)
        return sa.func.round(column, 3)

    stmt = (
        sa.select(
            a.id, a.lead_id, a.phone_e164, Lead.first_name, Lead.last_name, a.attempt_no,
            when(a.created_at), when(a.originated_at), when(a.ringing_at), when(a.answered_at),
            when(a.queue_joined_at), when(a.connected_at), when(a.ended_at), a.disposition, a.cause,
            a.cause_txt, millis(a.time_to_agent), a.agent, a.server, a.connection, when(a.hangup_at),
            a.estimated, a.originate_reason,
            sa.case(*((a.originate_reason == k, v) for k, v in REASON_TEXT.items()), else_=None),
            a.response_message, sa.case((a.charged, 1), else_=0),
        )
        .join(Lead, Lead.id == a.lead_id)
        .where(a.campaign_id == campaign.id)
        .order_by(a.id)
    )
    if since is not None:
        stmt = stmt.where(a.created_at >= since)
    result = session.connection().execute(stmt.execution_options(stream_results=True, yield_per=batch))
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(ATTEMPT_COLUMNS)
        for part in result.partitions():
            writer.writerows(part)
            count += len(part)
        return count
    if fmt == "jsonl":
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        for part in result.partitions():
            out.write("".join([dumps(dict(zip(ATTEMPT_COLUMNS, row))) + "\n" for row in part]))
            count += len(part)
        return count
    out.write("[")
    first = True
    for part in result.partitions():
        chunk = []
        for row in part:
            chunk.append(json.dumps(dict(zip(ATTEMPT_COLUMNS, row))))
        if chunk:
            out.write(("\n" if first else ",\n") + ",\n".join(chunk))
            first = False
            count += len(chunk)
    out.write("\n]\n")
    return count
