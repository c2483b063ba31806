"""Several engines on one campaign: the other engines' calls as pacing figures.

Pure functions of the other engines' live-state documents (see
:mod:`dialer.campaigns.live`); the watcher reads the documents, the dialer turns them
into :class:`~dialer.pacing.PacingStats` fields here.
"""

from __future__ import annotations

from typing import Any

from dialer.models import CampaignState


def shared_figures(mine: str, others: dict[str, dict[str, Any]], expected: dict[str, list[tuple[float, int]]],
                   wall: float, speed: float) -> dict[str, Any]:
    """Other engines' calls on a campaign as PacingStats fields, at real time ``wall``.

    Their ringing calls as their live state last showed them, aged by the real
    time since (at their clock speed), plus the calls they were to place by
    this engine's decisions since then (counted as placed at the decision;
    ``expected`` is pruned of those their live state now shows); the engines
    in the order of :func:`engine_order`.
    """
    ages: list[float] = []
    waiting = in_flight = 0
    for engine_id, other in others.items():
        lag = max(0.0, wall - other["wall"]) * other["speed"]
        ages += [a + lag for a in other["ringing"]]
        waiting += other["waiting"]
        in_flight += other["in_flight"]
        pending = [(t, n) for t, n in expected.get(engine_id, ()) if t >= other["wall"]]
        expected[engine_id] = pending
        for t, n in pending:
            ages += [max(0.0, wall - t) * speed] * n
            in_flight += n
    order = engine_order(mine, others, wall)
    return dict(shared_ringing_elapsed=tuple(ages), shared_waiting=waiting, shared_in_flight=in_flight,
                engines=len(order), engine_rank=order.index(mine))


def engine_order(mine: str, others: dict[str, Any], wall: float) -> list[str]:
    """The engines on a campaign in the order their shares are dealt: by id,
    turned by one place every real second, so that every engine reckons the same
    order and each has the larger share of an odd count in turn."""
    order = sorted([mine, *others])
    turn = int(wall) % len(order)
    return order[turn:] + order[:turn]


def other_engines(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """From other engines' live-state documents for a campaign: those dialing it
    now, with what pacing needs of them."""
    out = {}
    for engine_id, doc in rows.items():
        pacing = (doc or {}).get("pacing") or {}
        share = pacing.get("share")
        if doc.get("state") != CampaignState.RUNNING.value or not isinstance(share, dict):
            continue
        try:
            out[engine_id] = {
                "wall": float(doc["wall_time"]), "speed": float(doc.get("speed") or 1.0),
                "ringing": [float(a) for a in share.get("ringing", [])],
                "waiting": int(share.get("waiting", 0)), "in_flight": int(share.get("in_flight", 0)),
            }
        except (KeyError, TypeError, ValueError):
            continue  # a document this version cannot read: not counted
    return out
