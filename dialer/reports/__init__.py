"""Campaign reports and live status, from the database alone.

``summary`` computes a campaign's figures as plain data (:func:`build_report`);
``render`` writes them as a table, CSV or JSON; ``attempts`` streams the
attempt export and ``decisions`` the pacing decisions log; ``queries`` holds
the SQL pieces they share; ``since`` reads ``--since``; ``status`` is what
the campaigns are doing now (``dialer status``). The names below are
importable from ``dialer.reports`` directly.

May import: dialer.errors, dialer.models, dialer.compliance, dialer.campaigns,
dialer.calls.dispositions. Nothing that dials (AMI, the engine, pacing) and no
console.
"""

from dialer.reports.attempts import ATTEMPT_COLUMNS, export_attempts
from dialer.reports.decisions import DECISION_COLUMNS, export_decisions
from dialer.reports.render import render_csv, render_json, render_table, report_rows
from dialer.reports.since import ReportOptionError, parse_since
from dialer.reports.summary import ANSWERED, DISPOSITIONS, REPORT_FORMAT, abandon_figures, build_report, hours_since

__all__ = [
    "ANSWERED",
    "ATTEMPT_COLUMNS",
    "DECISION_COLUMNS",
    "DISPOSITIONS",
    "REPORT_FORMAT",
    "ReportOptionError",
    "abandon_figures",
    "build_report",
    "export_attempts",
    "export_decisions",
    "hours_since",
    "parse_since",
    "render_csv",
    "render_json",
    "render_table",
    "report_rows",
]
