"""The pacing decisions log (``dialer report --decisions``): one row per engine and second of dialing."""

from __future__ import annotations

import csv
import datetime as dt
import json
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.campaigns import get_campaign
from dialer.models import PacingDecisionRow as D


DECISION_COLUMNS = (
    "at", "engine_id", "mode", "agents_logged_in", "agents_free", "agents_expected", "ringing", "waiting",
    "in_flight", "other_engines_ringing", "engines", "answer_rate", "abandon_rate", "hour_abandon_rate",
    "allowed_drop", "dial_level", "calls_placed", "calls_cut", "reason",
)


def export_decisions(session: Session, name: str, out: TextIO, *, fmt: str = "csv",
                     since: dt.datetime | None = None) -> int:
    """Write campaign ``name``'s pacing decisions log (one row per engine and
    second of dialing, oldest first) as ``csv``, ``json`` (one array) or
    ``jsonl`` (one decision a line); returns the number of rows."""
    campaign = get_campaign(session, name)
    stmt = sa.select(*(getattr(D, c) for c in DECISION_COLUMNS)).where(D.campaign_id == campaign.id)
    if since is not None:
        stmt = stmt.where(D.at >= since)
    result = session.connection().execute(stmt.order_by(D.at, D.id).execution_options(stream_results=True,
                                                                                        yield_per=10_000))
    count = 0
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(DECISION_COLUMNS)
    elif fmt == "json":
        out.write("[")
    for part in result.partitions():
        for row in part:
            values = [row[0].isoformat(timespec="milliseconds") + "Z", *row[1:]]
            values = [round(v, 4) if isinstance(v, float) else v for v in values]
            if writer is not None:
                writer.writerow(values)
            elif fmt == "jsonl":
                out.write(json.dumps(dict(zip(DECISION_COLUMNS, values)), separators=(",", ":")) + "\n")
            else:
                out.write(("," if count else "") + "\n" + json.dumps(dict(zip(DECISION_COLUMNS, values))))
            count += 1
    if fmt == "json":
        out.write("\n]\n" if count else "]\n")
    return count
