"""``--since``: where a report, an export or a chart starts."""

from __future__ import annotations

import datetime as dt
import re

from dialer.errors import UserError


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
