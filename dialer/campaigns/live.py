"""The live state: what each engine publishes per campaign for consoles and pacing.

One definition: ``payloads(engine)`` turns ``Engine.status()`` into one JSON
document per campaign (the campaign's figures plus the engine's connections,
its health figures (event lag, database times) and its wall time); ``publish`` runs in the engine's nursery and writes them to
``live_state`` when they change and at least every ``interval`` seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from typing import Any

import sqlalchemy as sa
import trio
from sqlalchemy.orm import Session

from dialer.db import DatabaseBusy
from dialer.models import Campaign, LiveState

INTERVAL = 0.2       # real seconds since the last write before another is due (so gaps stay within 0.25 s)
MIN_GAP = 0.05       # real seconds between two writes at least


def payloads(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Campaign name -> its live-state document, from ``Engine.status()``."""
    return {
        name: {**figures, "campaign": name, "engine_id": status["engine_id"],
               "wall_time": status["wall_time"], "clock": status.get("clock"), "speed": status["speed"],
               "connections": status["connections"], "health": status.get("health")}
        for name, figures in status["campaigns"].items()
    }


def write(session: Session, engine_id: str, docs: dict[str, dict[str, Any]], now: dt.datetime) -> None:
    ids = dict(session.execute(sa.select(Campaign.name, Campaign.id).where(Campaign.name.in_(list(docs)))).all())
    for name, doc in docs.items():
        cid = ids.get(name)
        if cid is None:
            continue
        row = session.get(LiveState, (engine_id, cid))
        if row is None:
            session.add(LiveState(engine_id=engine_id, campaign_id=cid, heartbeat_at=now, data=doc))
        else:
            row.heartbeat_at = now
            row.data = doc


def _comparable(docs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: {k: v for k, v in doc.items() if k not in ("wall_time", "clock", "health")} for name, doc in docs.items()}


async def publish(engine: Any, *, interval: float = INTERVAL, min_gap: float = MIN_GAP) -> None:
    """Write the engine's live state on change (checked every ``min_gap``) and every ``interval``."""
    last: dict[str, dict[str, Any]] | None = None
    last_at = -float("inf")
    while True:
        docs = payloads(engine.status())
        now_t = trio.current_time()
        same = last is not None and _comparable(docs) == _comparable(last)
        if docs and (not same or now_t - last_at >= interval):
            wall = dt.datetime.fromtimestamp(time.time(), dt.UTC).replace(tzinfo=None)
            with contextlib.suppress(DatabaseBusy):  # figures only: the next write catches up
                await engine.database.run(write, engine.engine_id, docs, wall)
                last, last_at = docs, now_t
        await trio.sleep(min_gap)
