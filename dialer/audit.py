"""The audit log: one row per state-changing action, whoever made it and from where.

The command line, the JSON API and the browser all write here through
:func:`record`, in the same transaction as the change itself, so an action
that is rolled back leaves no audit row and one that is kept always has one.
An :class:`Actor` says who acted (``cli:alice@host``, ``web:bob``,
``token:crm``), through what (cli, web, api) and from which address.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import socket
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dialer.models import AuditEntry, utcnow


@dataclasses.dataclass(frozen=True)
class Actor:
    name: str             # who, as shown in the log
    via: str              # cli, web or api
    address: str | None   # the client's IP address, or the host for the command line


def cli_actor() -> Actor:
    """The person at this shell: ``cli:user@host``, address the host name."""
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    host = socket.gethostname()
    return Actor(f"{user}@{host}", "cli", host)


def record(
    session: Session,
    actor: Actor,
    action: str,
    target: str | None = None,
    *,
    before: Any = None,
    after: Any = None,
    now: dt.datetime | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=now or utcnow(), actor=actor.name, via=actor.via, address=actor.address,
        action=action, target=target, before=before, after=after,
    )
    session.add(entry)
    return entry


def recent(session: Session, limit: int = 100) -> list[AuditEntry]:
    return list(session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)))


def as_dict(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "at": entry.at.isoformat(timespec="milliseconds") + "Z", "actor": entry.actor,
        "via": entry.via, "address": entry.address, "action": entry.action, "target": entry.target,
        "before": entry.before, "after": entry.after,
    }
