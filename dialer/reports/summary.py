"""A campaign's figures as plain data: leads, attempts, rates, abandon windows, timings, hours, connections.

:func:`build_report` computes every figure with a handful of aggregate queries
(``GROUP BY`` in the database; nothing per row in Python), so a campaign with
a million attempts reports in seconds. Percentiles are ``percentile_cont`` on
PostgreSQL; on SQLite the same interpolated value is read with one
``ORDER BY … LIMIT 2 OFFSET k`` query.

The report is plain data (see :data:`REPORT_FORMAT` and the README for its
JSON form): shares and rates are fractions (0.25 = 25 %), durations are
seconds, times are ISO 8601 UTC strings ending in ``Z``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.campaigns import get_campaign
from dialer.compliance import abandon
from dialer.models import AmiConnectionStats, CallAttempt, Campaign, Disposition, Lead, LeadState
from dialer.reports.queries import (
    campaign_rows,
    dialect_of,
    iso,
    per_hour,
    percentile,
    rounded,
    second_key,
    seconds_between,
    share,
)


REPORT_FORMAT = "dialer-report/1"


DISPOSITIONS = [d.value for d in Disposition]


ANSWERED = (Disposition.CONNECTED.value, Disposition.DROPPED.value)


def _durations(dialect: str) -> dict[str, Any]:
    """The duration expressions: ring time (answered calls, ringing to answer),
    time to agent (answer to agent), talk time (agent to hang-up)."""
    a = CallAttempt
    return {
        "ring_time": seconds_between(dialect, sa.func.coalesce(a.ringing_at, a.originated_at, a.created_at),
                              a.answered_at),
        "time_to_agent": a.time_to_agent,
        "talk_time": seconds_between(dialect, a.connected_at, a.ended_at),
    }


def build_report(
    session: Session, name: str, *, now: dt.datetime, since: dt.datetime | None = None
) -> dict[str, Any]:
    """Every figure of campaign ``name`` as plain data (``now``/``since`` naive UTC)."""
    campaign = get_campaign(session, name)
    dialect = dialect_of(session)
    if dialect == "postgresql":
        # Room for the per-second grouping and the percentile sorts in memory,
        # for this transaction only (the default 4 MB spills them to disk).
        session.execute(sa.text("SET LOCAL work_mem = '128MB'"))
    a = CallAttempt
    where = [campaign_rows(session, dialect, campaign.id)]
    if since is not None:
        where.append(a.created_at >= since)

    # Leads by state; 'due now' are waiting leads whose next attempt time has come.
    leads = {s.value: 0 for s in LeadState}
    due = {LeadState.NEW.value: 0, LeadState.RETRY.value: 0}
    for state, count, due_count in session.execute(
        sa.select(Lead.state, sa.func.count(), sa.func.count().filter(Lead.next_attempt_at <= now))
        .where(Lead.campaign_id == campaign.id)
        .group_by(Lead.state)
    ):
        leads[state] = count
        if state in due:
            due[state] = due_count
    lead_figures = {
        "total": sum(leads.values()),
        "new": leads["new"],
        "due_now": due["new"] + due["retry"],
        "waiting_retry": leads["retry"] - due["retry"],
        "in_progress": leads["claimed"] + leads["dialing"],
        "done": leads["done"],
        "exhausted": leads["exhausted"],
        "dnc": leads["dnc"],
        # Rows refused by 'dialer leads load' go to its rejects file, not the database.
        "rejected_at_load": None,
    }

    # Attempts by disposition, the duration sums for the averages and the
    # abandon windows: one pass, one row (no grouping, so no sort).
    durations = _durations(dialect)
    done = a.disposition.is_not(None)
    columns = [sa.func.count(), sa.func.count(a.answered_at).filter(done),
               sa.func.count(a.connected_at).filter(done)]
    columns += [sa.func.count().filter(a.disposition == d) for d in DISPOSITIONS]
    # Timings only from attempts whose every value was observed, not estimated.
    observed = a.estimated.is_(None)
    for expr in durations.values():
        columns += [sa.func.count(expr).filter(done, observed), sa.func.sum(expr).filter(done, observed)]
    columns.append(sa.func.count(a.estimated).filter(done))
    # The abandon windows come from the same pass when --since does not cut into them.
    # The campaign's (or --since's) own abandon rate, too.
    windows = abandon.rolling(now)
    fold = since is None or since <= min(w.start for w in windows)
    counted = (abandon.LIFE, *windows) if fold else (abandon.LIFE,)
    for window in counted:
        columns += abandon.columns(window)
    row = list(session.execute(sa.select(*columns).where(*where)).one())
    total_n, answered, connected = (v or 0 for v in row[:3])
    by_disp = {d: row[3 + i] or 0 for i, d in enumerate(DISPOSITIONS)}
    at = 3 + len(DISPOSITIONS)
    sums = {}
    for key in durations:
        sums[key] = [row[at] or 0, float(row[at + 1] or 0.0)]
        at += 2
    estimated_n = row[at] or 0
    at += 1
    window_counts = abandon.read(row, counted, at)
    life = window_counts.pop(abandon.LIFE.key)
    in_progress = total_n - sum(by_disp.values())
    ended = sum(by_disp.values())
    timings = {}
    ended_where = [*where, a.disposition.is_not(None), observed]
    for key, expr in durations.items():
        n, total = sums[key]
        timings[key] = {
            "count": n,
            "avg": rounded(total / n) if n else None,
            "p90": rounded(percentile(session, dialect, expr, ended_where, n)),
        }

    if fold:
        windows_part = _abandon_dict(campaign, window_counts)
    else:
        windows_part = abandon_figures(session, campaign, now)

    # Per hour (UTC) of the attempt's start, and per connection.
    hour_rows, conn_rows = per_hour(session, dialect, where), _per_second_sql(session, dialect, where)
    hours = [
        {"hour": h, "attempts": n, "ended": done, "answered": ans, "connected": conn, "dropped": drop,
         "answer_rate": share(ans, done), "abandon_rate": abandon.rate(drop, ans)}
        for h, n, ans, conn, drop, done in hour_rows
    ]

    return {
        "format": REPORT_FORMAT,
        "generated_at": iso(now),
        "since": iso(since),
        "campaign": {
            "name": campaign.name, "state": campaign.state, "mode": campaign.mode,
            "abandon_target": campaign.abandon_target,
        },
        "leads": lead_figures,
        "attempts": {
            "total": ended + in_progress,
            "ended": ended,
            "in_progress": in_progress,
            "estimated": estimated_n,
            "by_disposition": {d: {"count": n, "share": share(n, ended)} for d, n in by_disp.items()},
        },
        "rates": {
            "answer_rate": share(answered, ended),
            "contact_rate": share(connected, ended),
            "abandon_rate": life.rate,
        },
        "abandon": windows_part,
        "timings": timings,
        "hours": hours,
        "connections": _connections(session, conn_rows),
    }


def abandon_figures(session: Session, campaign: Campaign, now: dt.datetime) -> dict[str, Any]:
    """Dropped calls over answered calls that ended in the last 30 days and in
    the last 24 hours: the windows the engine enforces."""
    rows = campaign_rows(session, dialect_of(session), campaign.id)
    # Through the index, by default; straight through the table for a large
    # campaign, where a range on ended_at would send SQLite back to an index.
    through_index = rows.compare(CallAttempt.campaign_id == campaign.id)
    counts = abandon.counts(session, campaign.id, abandon.rolling(now),
                            rows=None if through_index else rows)
    return _abandon_dict(campaign, counts)


def _abandon_dict(campaign: Campaign, counts: dict[str, abandon.Count]) -> dict[str, Any]:
    figures: dict[str, Any] = {"target": campaign.abandon_target}
    within = True
    for key, count in counts.items():
        rate = count.rate
        figures[key] = {"dropped": count.dropped, "answered": count.answered, "rate": rate}
        within = within and (rate is None or rate <= campaign.abandon_target)
    figures["within_target"] = within
    return figures


def _per_second_sql(session: Session, dialect: str, where: list) -> list[tuple]:
    """(server, connection, attempts, seconds with one, busiest second, failed)."""
    a = CallAttempt
    second = second_key(dialect, a.created_at).label("second")
    per_second = (
        sa.select(a.server, a.connection, second, sa.func.count().label("n"),
                  sa.func.count().filter(a.disposition == Disposition.FAILED.value).label("failed"))
        .where(*where)
        .group_by(a.server, a.connection, second)
        .subquery()
    )
    return [tuple(r) for r in session.execute(
        sa.select(
            per_second.c.server, per_second.c.connection, sa.func.sum(per_second.c.n),
            sa.func.count(), sa.func.max(per_second.c.n), sa.func.sum(per_second.c.failed),
        ).group_by(per_second.c.server, per_second.c.connection)
    )]


def _connections(session: Session, rows: list[tuple]) -> list[dict]:
    """Per AMI connection: this campaign's attempts through it, their rate (mean
    over the seconds it dialed, and the busiest second) against its cap, and
    the connection's own counters summed over engines."""
    s = AmiConnectionStats
    stats = {
        (server, conn): (sent, failures, reconnects, cap)
        for server, conn, sent, failures, reconnects, cap in session.execute(
            sa.select(s.server, s.connection, sa.func.sum(s.originates_sent), sa.func.sum(s.failures),
                      sa.func.sum(s.reconnects), sa.func.max(s.rate_cap))
            .group_by(s.server, s.connection)
        )
    }
    out = []
    for server, conn, attempts, seconds, peak, failed in sorted(rows, key=lambda r: (r[0], r[1])):
        sent, failures, reconnects, cap = stats.get((server, conn), (None, None, None, None))
        mean = attempts / seconds if seconds else None
        out.append({
            "server": server, "connection": conn, "attempts": int(attempts),
            "failed": int(failed or 0), "active_seconds": int(seconds),
            "mean_rate": rounded(mean), "peak_rate": int(peak), "rate_cap": cap,
            "peak_vs_cap": share(int(peak), cap) if cap else None,
            "originates_sent": None if sent is None else int(sent),
            "failures": None if failures is None else int(failures),
            "reconnects": None if reconnects is None else int(reconnects),
        })
    return out


def hours_since(session: Session, campaign: Campaign, since: dt.datetime) -> list[dict[str, Any]]:
    """Attempts, answers, drops and abandon rate per UTC hour of the calls a
    campaign placed from ``since`` on (the console's charts of today)."""
    a = CallAttempt
    where = [a.campaign_id == campaign.id, a.created_at >= since]
    return [
        {"hour": hour, "attempts": n, "answered": answered, "connected": connected, "dropped": dropped,
         "abandon_rate": share(dropped, answered)}
        for hour, n, answered, connected, dropped, _ended in per_hour(session, dialect_of(session), where)
    ]
