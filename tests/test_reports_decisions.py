"""The pacing decisions log (``dialer report NAME --decisions``) in each of its formats."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

from dialer import db
from dialer.campaigns import create_campaign
from dialer.cli import main
from dialer.models import PacingDecisionRow
from dialer.reports.decisions import DECISION_COLUMNS

T0 = dt.datetime(2026, 11, 25, 16, 0, 0)


def _decision(campaign_id: int, second: int, placed: int) -> PacingDecisionRow:
    return PacingDecisionRow(
        campaign_id=campaign_id, engine_id="e1", at=T0 + dt.timedelta(seconds=second), mode="predictive",
        agents_logged_in=4, agents_free=1, agents_expected=1.5, ringing=2, waiting=0, in_flight=2,
        other_engines_ringing=0, engines=1, answer_rate=0.25, abandon_rate=0.01, hour_abandon_rate=0.02,
        allowed_drop=0.123456, dial_level=2.0, calls_placed=placed, calls_cut=0, reason="free agents",
    )


def _export(url: str, *fmt: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    assert main(["--db", url, "report", "spring", "--decisions", *fmt], out, err) == 0, err.getvalue()
    return out.getvalue()


def test_the_decisions_log_as_csv_json_and_jsonl(sqlite_url):
    engine = db.create_engine(sqlite_url)
    with db.session_factory(engine).begin() as s:
        campaign = create_campaign(s, "spring")
        s.add_all([_decision(campaign.id, 1, 2), _decision(campaign.id, 0, 3)])
    engine.dispose()

    rows = list(csv.DictReader(io.StringIO(_export(sqlite_url))))
    assert [(r["at"], r["calls_placed"]) for r in rows] == [("2026-11-25T16:00:00.000Z", "3"),
                                                           ("2026-11-25T16:00:01.000Z", "2")]
    assert list(rows[0]) == list(DECISION_COLUMNS)

    documents = json.loads(_export(sqlite_url, "--format", "json"))
    lines = [json.loads(line) for line in _export(sqlite_url, "--format", "jsonl").splitlines()]
    assert documents == lines
    assert [d["calls_placed"] for d in lines] == [3, 2] and lines[0]["allowed_drop"] == 0.1235


def test_an_empty_log_is_an_empty_document(sqlite_url):
    engine = db.create_engine(sqlite_url)
    with db.session_factory(engine).begin() as s:
        create_campaign(s, "spring")
    engine.dispose()
    assert _export(sqlite_url, "--format", "json") == "[]\n"
    assert _export(sqlite_url, "--format", "jsonl") == ""
    assert _export(sqlite_url) == ",".join(DECISION_COLUMNS) + "\n"
