"""Campaign reports from the database alone: figures, rendering, attempt export.

:func:`build_report` computes every figure with a handful of aggregate queries
(``GROUP BY`` in the database; nothing per row in Python), so a campaign with
a million attempts reports in seconds. Percentiles are ``percentile_cont`` on
PostgreSQL; on SQLite the same interpolated value is read with one
``ORDER BY … LIMIT 2 OFFSET k`` query. :func:`export_attempts` streams one row
per attempt.

The report is plain data (see :data:`REPORT_FORMAT` and the README for its
JSON form): shares and rates are fractions (0.25 = 25 %), durations are
seconds, times are ISO 8601 UTC strings ending in ``Z``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import re
from collections.abc import Iterable
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.compliance import abandon
from dialer.calls.dispositions import REASON_TEXT
from dialer.campaigns import get_campaign
from dialer.errors import UserError
from dialer.models import (
    AmiConnectionStats,
    CallAttempt,
    Campaign,
    Disposition,
    Lead,
    LeadState,
)

REPORT_FORMAT = "dialer-report/1"
DISPOSITIONS = [d.value for d in Disposition]
ANSWERED = (Disposition.CONNECTED.value, Disposition.DROPPED.value)

# Columns of the --attempts export, in order.
ATTEMPT_COLUMNS = (
    "attempt_id", "lead_id", "phone", "first_name", "last_name", "attempt_no",
    "queued_at", "originated_at", "ringing_at", "answered_at", "queue_joined_at",
    "connected_at", "ended_at", "disposition", "cause", "cause_txt", "time_to_agent",
    "agent", "server", "connection", "hangup_at", "estimated",
    "originate_reason", "originate_reason_txt", "response_message", "charged",
)

_DURATION = re.compile(r"(\d+)\s*([mhd])")


class ReportOptionError(UserError):
    pass


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``--since``: an ISO date or date-time (UTC unless it carries an offset),
    or a span back from ``now`` such as ``90m``, ``24h`` or ``7d`` (also
    written ``-24h``); naive UTC."""
    value = text.strip()
    m = _DURATION.fullmatch(value[1:] if value[:1] == "-" else value)
    if m:
        amount, unit = int(m.group(1)), m.group(2)
        span = {"m": dt.timedelta(minutes=amount), "h": dt.timedelta(hours=amount),
                "d": dt.timedelta(days=amount)}[unit]
        return now - span
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise ReportOptionError(
            f"--since {text!r}: expected an ISO date or time (2026-11-01, 2026-11-01T08:00Z)"
            " or a span such as 90m, 24h, 7d"
        )
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


# --- SQL helpers -----------------------------------------------------------------


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _seconds(dialect: str, start, end):
    """SQL seconds from ``start`` to ``end`` (NULL when either is NULL)."""
    if dialect == "postgresql":
        return sa.func.extract("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


def _hour(dialect: str, column):
    """The UTC hour: whole hours since the epoch on PostgreSQL; on SQLite, where
    times are stored as 'YYYY-MM-DD HH:MM:SS.ffffff' text, its first 13 characters
    (a prefix groups much faster than a computed number)."""
    if dialect == "postgresql":
        return sa.func.floor(sa.func.extract("epoch", column) / 3600)
    return sa.func.substr(column, 1, 13, type_=sa.String)


_EPOCH = dt.datetime(1970, 1, 1)


def _hour_text(hour) -> str:
    if isinstance(hour, str):  # SQLite: 'YYYY-MM-DD HH'
        return f"{hour[:10]}T{hour[11:13]}:00Z"
    return (_EPOCH + dt.timedelta(hours=int(hour))).strftime("%Y-%m-%dT%H:00Z")


def _second(dialect: str, column):
    """The second, as a group key (see :func:`_hour`)."""
    if dialect == "postgresql":
        return sa.func.floor(sa.func.extract("epoch", column))
    return sa.func.substr(column, 1, 19, type_=sa.String)


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds") + "Z"


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None, places: int = 2) -> float | None:
    return None if value is None else round(float(value), places)


# --- the figures -------------------------------------------------------------------


def _durations(dialect: str) -> dict[str, Any]:
    """The duration expressions: ring time (answered calls, ringing to answer),
    time to agent (answer to agent), talk time (agent to hang-up)."""
    a = CallAttempt
    return {
        "ring_time": _seconds(dialect, sa.func.coalesce(a.ringing_at, a.originated_at, a.created_at),
                              a.answered_at),
        "time_to_agent": a.time_to_agent,
        "talk_time": _seconds(dialect, a.connected_at, a.ended_at),
    }


def _campaign_rows(session: Session, dialect: str, campaign_id: int) -> sa.ColumnElement[bool]:
    """The condition selecting a campaign's attempts.

    On SQLite, reading a large share of the table through the campaign's index
    visits the rows in index order, i.e. all over the file: several times slower
    than reading the table straight through. ``campaign_id + 0`` keeps SQLite
    from using the index when the campaign holds more than a twentieth of the
    attempts (the index still counts them, cheaply)."""
    a = CallAttempt
    if dialect != "sqlite":
        return a.campaign_id == campaign_id
    mine = session.scalar(sa.select(sa.func.count()).where(a.campaign_id == campaign_id)) or 0
    table = session.scalar(sa.select(sa.func.max(a.id))) or 0
    if mine * 20 > table:
        return (a.campaign_id + 0) == campaign_id
    return a.campaign_id == campaign_id


def _percentile(session: Session, dialect: str, expr, where, count: int, q: float = 0.9) -> float | None:
    """The ``q`` percentile of ``expr`` over the rows of ``where``, interpolated
    like ``percentile_cont``."""
    if count == 0:
        return None
    cond = sa.and_(*where, expr.is_not(None))
    if dialect == "postgresql":
        return session.scalar(
            sa.select(sa.func.percentile_cont(q).within_group(expr)).where(cond)
        )
    pos = q * (count - 1)
    low = math.floor(pos)
    high = min(low + 1, count - 1)
    # Counted from the top: SQLite's sorter then keeps only the top rows
    # (a tenth of them for the 90th percentile), not nine tenths.
    values = list(session.scalars(
        sa.select(expr).where(cond).order_by(expr.desc()).limit(2).offset(count - 1 - high)
    ))
    if not values:
        return None
    upper, lower = float(values[0]), float(values[-1])
    if high == low:
        return upper
    return lower + (upper - lower) * (pos - low)


def build_report(
    session: Session, name: str, *, now: dt.datetime, since: dt.datetime | None = None
) -> dict[str, Any]:
    """Every figure of campaign ``name`` as plain data (``now``/``since`` naive UTC)."""
    campaign = get_campaign(session, name)
    dialect = _dialect(session)
    if dialect == "postgresql":
        # Room for the per-second grouping and the percentile sorts in memory,
        # for this transaction only (the default 4 MB spills them to disk).
        session.execute(sa.text("SET LOCAL work_mem = '128MB'"))
    a = CallAttempt
    where = [_campaign_rows(session, dialect, campaign.id)]
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
            "avg": _round(total / n) if n else None,
            "p90": _round(_percentile(session, dialect, expr, ended_where, n)),
        }

    if fold:
        windows_part = _abandon_dict(campaign, window_counts)
    else:
        windows_part = abandon_figures(session, campaign, now)

    # Per hour (UTC) of the attempt's start, and per connection.
    hour_rows, conn_rows = _hours_sql(session, dialect, where), _per_second_sql(session, dialect, where)
    hours = [
        {"hour": h, "attempts": n, "ended": done, "answered": ans, "connected": conn, "dropped": drop,
         "answer_rate": _share(ans, done), "abandon_rate": abandon.rate(drop, ans)}
        for h, n, ans, conn, drop, done in hour_rows
    ]

    return {
        "format": REPORT_FORMAT,
        "generated_at": _iso(now),
        "since": _iso(since),
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
            "by_disposition": {d: {"count": n, "share": _share(n, ended)} for d, n in by_disp.items()},
        },
        "rates": {
            "answer_rate": _share(answered, ended),
            "contact_rate": _share(connected, ended),
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
    rows = _campaign_rows(session, _dialect(session), campaign.id)
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


def _hours_sql(session: Session, dialect: str, where: list) -> list[tuple]:
    """(hour text, attempts, answered, connected, dropped, ended) per UTC hour."""
    a = CallAttempt
    hour = _hour(dialect, a.created_at).label("hour")
    dropped, answered = abandon.columns(abandon.LIFE)
    return [
        (_hour_text(h), n, ans, conn, drop, done)
        for h, n, ans, conn, drop, done in session.execute(
            sa.select(
                hour, sa.func.count(), answered, sa.func.count(a.connected_at), dropped,
                sa.func.count(a.disposition),
            ).where(*where).group_by(hour).order_by(hour)
        )
    ]


def _per_second_sql(session: Session, dialect: str, where: list) -> list[tuple]:
    """(server, connection, attempts, seconds with one, busiest second, failed)."""
    a = CallAttempt
    second = _second(dialect, a.created_at).label("second")
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
            "mean_rate": _round(mean), "peak_rate": int(peak), "rate_cap": cap,
            "peak_vs_cap": _share(int(peak), cap) if cap else None,
            "originates_sent": None if sent is None else int(sent),
            "failures": None if failures is None else int(failures),
            "reconnects": None if reconnects is None else int(reconnects),
        })
    return out


# --- rendering ------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _table(rows: list[list[str]], header: list[str], out: TextIO, indent: str = "  ") -> None:
    cells = [header] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, r in enumerate(cells):
        parts = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        out.write(indent + "  ".join(parts).rstrip() + "\n")
        if n == 0:
            out.write(indent + "  ".join("-" * w for w in widths) + "\n")


def render_table(report: dict[str, Any], out: TextIO) -> None:
    c = report["campaign"]
    since = f" since {report['since']}" if report["since"] else ""
    out.write(f"Campaign {c['name']} ({c['mode']}, {c['state']}){since}, at {report['generated_at']}\n\n")
    l = report["leads"]
    out.write("Leads\n")
    _table([
        ["new (never dialed)", str(l["new"])],
        ["due now", str(l["due_now"])],
        ["waiting for a retry", str(l["waiting_retry"])],
        ["being dialed", str(l["in_progress"])],
        ["done", str(l["done"])],
        ["exhausted", str(l["exhausted"])],
        ["do not call", str(l["dnc"])],
        ["total", str(l["total"])],
    ], ["state", "leads"], out)
    out.write("  (rows rejected at load are listed in the rejects file of 'dialer leads load')\n\n")

    at = report["attempts"]
    out.write("Attempts\n")
    rows = [[d, str(v["count"]), _pct(v["share"])] for d, v in at["by_disposition"].items()]
    rows.append(["total ended", str(at["ended"]), _pct(1.0 if at["ended"] else None)])
    if at["in_progress"]:
        rows.append(["in progress", str(at["in_progress"]), ""])
    _table(rows, ["disposition", "calls", "share"], out)
    if at.get("estimated"):
        out.write(f"  ({at['estimated']} with values no engine observed, estimated (see --attempts);"
                  " left out of the timings)\n")
    r = report["rates"]
    out.write(f"\n  answer rate {_pct(r['answer_rate'])}   contact rate {_pct(r['contact_rate'])}"
              f"   abandon rate {_pct(r['abandon_rate'])}\n\n")

    ab = report["abandon"]
    verdict = "within target" if ab["within_target"] else "OVER TARGET"
    out.write(f"Abandon rate (target {_pct(ab['target'])}): {verdict}\n")
    _table([
        [label, str(ab[key]["dropped"]), str(ab[key]["answered"]), _pct(ab[key]["rate"])]
        for key, label in (("rolling_30d", "rolling 30 days"), ("last_24h", "last 24 hours"))
    ], ["window", "dropped", "answered", "rate"], out)
    out.write("\n")

    out.write("Timings (seconds)\n")
    _table([
        [label, str(t["count"]), _num(t["avg"]), _num(t["p90"])]
        for key, label in (("ring_time", "ring time (to answer)"), ("time_to_agent", "time to agent"),
                           ("talk_time", "talk time"))
        for t in [report["timings"][key]]
    ], ["", "calls", "avg", "p90"], out)
    out.write("\n")

    out.write("Per hour (UTC)\n")
    if report["hours"]:
        _table([
            [h["hour"], str(h["attempts"]), str(h["answered"]), str(h["connected"]), str(h["dropped"]),
             _pct(h["answer_rate"]), _pct(h["abandon_rate"])]
            for h in report["hours"]
        ], ["hour", "calls", "answered", "connected", "dropped", "answer", "abandon"], out)
    else:
        out.write("  no calls\n")
    out.write("\n")

    out.write("Per connection\n")
    if report["connections"]:
        _table([
            [f"{x['server']}/{x['connection']}", str(x["attempts"]), _num(x["mean_rate"]),
             str(x["peak_rate"]), _num(x["rate_cap"]), _pct(x["peak_vs_cap"]), _num(x["originates_sent"]),
             _num(x["failures"]), _num(x["reconnects"])]
            for x in report["connections"]
        ], ["connection", "calls", "rate/s", "peak/s", "cap/s", "peak:cap", "sent (all)", "failures",
            "reconnects"], out)
    else:
        out.write("  no calls\n")


def report_rows(report: dict[str, Any]) -> Iterable[tuple[str, str, str, Any]]:
    """The report in long form: (section, key, metric, value) rows, for CSV."""
    for metric, value in report["campaign"].items():
        yield "campaign", "", metric, value
    yield "report", "", "generated_at", report["generated_at"]
    yield "report", "", "since", report["since"]
    for metric, value in report["leads"].items():
        yield "leads", "", metric, value
    at = report["attempts"]
    for metric in ("total", "ended", "in_progress", "estimated"):
        yield "attempts", "", metric, at[metric]
    for d, v in at["by_disposition"].items():
        yield "disposition", d, "count", v["count"]
        yield "disposition", d, "share", v["share"]
    for metric, value in report["rates"].items():
        yield "rates", "", metric, value
    ab = report["abandon"]
    yield "abandon", "", "target", ab["target"]
    yield "abandon", "", "within_target", ab["within_target"]
    for key in ("rolling_30d", "last_24h"):
        for metric, value in ab[key].items():
            yield "abandon", key, metric, value
    for key, t in report["timings"].items():
        for metric, value in t.items():
            yield "timings", key, metric, value
    for h in report["hours"]:
        for metric, value in h.items():
            if metric != "hour":
                yield "hour", h["hour"], metric, value
    for x in report["connections"]:
        for metric, value in x.items():
            if metric not in ("server", "connection"):
                yield "connection", f"{x['server']}/{x['connection']}", metric, value


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def render_csv(report: dict[str, Any], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("section", "key", "metric", "value"))
    writer.writerows((s, k, m, _csv_value(v)) for s, k, m, v in report_rows(report))


def render_json(report: dict[str, Any], out: TextIO) -> None:
    json.dump(report, out, indent=2)
    out.write("\n")


# --- attempt export --------------------------------------------------------------------


def export_attempts(
    session: Session, name: str, out: TextIO, *, fmt: str = "csv",
    since: dt.datetime | None = None, batch: int = 10_000,
) -> int:
    """Write one row per call attempt of campaign ``name``, oldest first,
    streamed from the database; returns the number of rows."""
    campaign = get_campaign(session, name)
    dialect = _dialect(session)
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


def hours_since(session: Session, campaign: Campaign, since: dt.datetime) -> list[dict[str, Any]]:
    """Attempts, answers, drops and abandon rate per UTC hour of the calls a
    campaign placed from ``since`` on (the console's charts of today)."""
    a = CallAttempt
    where = [a.campaign_id == campaign.id, a.created_at >= since]
    return [
        {"hour": hour, "attempts": n, "answered": answered, "connected": connected, "dropped": dropped,
         "abandon_rate": _share(dropped, answered)}
        for hour, n, answered, connected, dropped, _ended in _hours_sql(session, _dialect(session), where)
    ]


DECISION_COLUMNS = (
    "at", "engine_id", "mode", "agents_logged_in", "agents_free", "agents_expected", "ringing", "waiting",
    "in_flight", "other_engines_ringing", "engines", "answer_rate", "abandon_rate", "hour_abandon_rate",
    "allowed_drop", "dial_level", "calls_placed", "calls_cut", "reason",
)


def export_decisions(session: Session, name: str, out: TextIO, *, fmt: str = "csv",
                     since: dt.datetime | None = None) -> int:
    """Write campaign ``name``'s pacing decisions log (one row per engine and
    second of dialing, oldest first); returns the number of rows."""
    from dialer.models import PacingDecisionRow as D

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
    else:
        out.write("[")
    for part in result.partitions():
        for row in part:
            values = [row[0].isoformat(timespec="milliseconds") + "Z", *row[1:]]
            values = [round(v, 4) if isinstance(v, float) else v for v in values]
            if writer is not None:
                writer.writerow(values)
            else:
                out.write(("," if count else "") + "\n" + json.dumps(dict(zip(DECISION_COLUMNS, values))))
            count += 1
    if writer is None:
        out.write("\n]\n" if count else "]\n")
    return count
