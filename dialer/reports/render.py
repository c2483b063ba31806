"""A report (the plain data of :func:`dialer.reports.summary.build_report`) as a table, CSV or JSON."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO


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
