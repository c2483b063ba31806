"""Console users, API tokens, browser sessions and login rate limiting.

Passwords are stored as Argon2id hashes (argon2-cffi, RFC 9106 defaults).
API tokens and session keys are random 32-byte values shown once; only their
SHA-256 is stored, so a copy of the database lets no one in.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import hashlib
import re
import secrets
import time
from collections.abc import Callable

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from dialer import audit
from dialer.errors import UserError
from dialer.models import ApiToken, Role, WebSession, WebUser, utcnow

ROLES = [r.value for r in Role]
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
SESSION_LIFETIME = dt.timedelta(hours=12)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")

_hasher = PasswordHasher()
# Verified against when the user does not exist, so that a wrong name takes as
# long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def role_allows(role: str, needed: str) -> bool:
    """True when ``role`` includes ``needed`` (admin > supervisor > viewer)."""
    return ROLES.index(role) >= ROLES.index(needed)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"--role {role!r}: expected one of {', '.join(ROLES)}")
    return role


def check_name(name: str, what: str = "user name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"{what} {name!r}: use letters, digits and _ . @ - (at most 100)")
    return name


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- users --------------------------------------------------------------------


def add_user(session: Session, name: str, role: str, password: str, *, actor: audit.Actor,
             replace: bool = False) -> WebUser:
    """Create a user (or, with ``replace``, set an existing one's role and password)."""
    check_name(name)
    check_role(role)
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise UserError(f"password: must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long")
    user = session.scalar(sa.select(WebUser).where(WebUser.name == name))
    before = None
    if user is not None:
        if not replace:
            raise UserError(f"user {name!r} already exists (--replace sets a new password and role)")
        before = {"role": user.role, "disabled": user.disabled_at is not None}
        user.role, user.password_hash, user.disabled_at = role, _hasher.hash(password), None
        session.execute(sa.delete(WebSession).where(WebSession.user_id == user.id))
    else:
        user = WebUser(name=name, role=role, password_hash=_hasher.hash(password))
        session.add(user)
    audit.record(session, actor, "user.add" if before is None else "user.replace", name,
                 before=before, after={"role": role})
    session.flush()
    return user


def disable_user(session: Session, name: str, *, actor: audit.Actor) -> None:
    user = session.scalar(sa.select(WebUser).where(WebUser.name == name))
    if user is None:
        raise UserError(f"user {name!r}: no such user")
    user.disabled_at = utcnow()
    session.execute(sa.delete(WebSession).where(WebSession.user_id == user.id))
    audit.record(session, actor, "user.disable", name, before={"role": user.role}, after={"disabled": True})


def list_users(session: Session) -> list[WebUser]:
    return list(session.scalars(sa.select(WebUser).order_by(WebUser.name)))


def verify_login(session: Session, name: str, password: str) -> WebUser | None:
    """The user when ``password`` is theirs and they are not disabled, else None."""
    user = session.scalar(sa.select(WebUser).where(WebUser.name == name)) if name else None
    try:
        _hasher.verify(user.password_hash if user is not None else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled_at is not None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


# --- API tokens ---------------------------------------------------------------


def add_token(session: Session, name: str, role: str, *, actor: audit.Actor) -> str:
    """Create a token; returns it (the only time it is seen: only its hash is kept)."""
    check_name(name, "token name")
    check_role(role)
    if session.scalar(sa.select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise UserError(f"token {name!r} already exists")
    token = "dlr_" + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, role=role, token_hash=sha256(token)))
    audit.record(session, actor, "token.add", name, after={"role": role})
    session.flush()
    return token


def revoke_token(session: Session, name: str, *, actor: audit.Actor) -> None:
    row = session.scalar(sa.select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None)))
    if row is None:
        raise UserError(f"token {name!r}: no such token")
    row.revoked_at = utcnow()
    audit.record(session, actor, "token.revoke", name, before={"role": row.role}, after={"revoked": True})


def list_tokens(session: Session) -> list[ApiToken]:
    return list(session.scalars(sa.select(ApiToken).order_by(ApiToken.name)))


def token_identity(session: Session, token: str) -> ApiToken | None:
    """The token's row, None when it is unknown or revoked (reads only)."""
    row = session.scalar(sa.select(ApiToken).where(ApiToken.token_hash == sha256(token)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def token_use_due(row: ApiToken) -> bool:
    """Whether the token's last use should be written (at most once a minute)."""
    return row.last_used_at is None or (utcnow() - row.last_used_at).total_seconds() > 60


def note_token_use(session: Session, name: str) -> None:
    session.execute(sa.update(ApiToken).where(ApiToken.name == name).values(last_used_at=utcnow()))


# --- browser sessions -----------------------------------------------------------


def open_session(session: Session, user: WebUser, address: str | None,
                 now: dt.datetime | None = None) -> tuple[str, str]:
    """A new browser session: (cookie key, CSRF token)."""
    now = now or utcnow()
    key, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.execute(sa.delete(WebSession).where(WebSession.expires_at < now))
    session.add(WebSession(key_hash=sha256(key), user_id=user.id, csrf_token=csrf, address=address,
                           created_at=now, expires_at=now + SESSION_LIFETIME))
    return key, csrf


def session_identity(session: Session, key: str, now: dt.datetime | None = None
                     ) -> tuple[WebUser, WebSession] | None:
    now = now or utcnow()
    row = session.get(WebSession, sha256(key))
    if row is None or row.expires_at < now:
        return None
    user = session.get(WebUser, row.user_id)
    if user is None or user.disabled_at is not None:
        return None
    return user, row


def close_session(session: Session, key: str) -> None:
    session.execute(sa.delete(WebSession).where(WebSession.key_hash == sha256(key)))


# --- login rate limiting --------------------------------------------------------


@dataclasses.dataclass
class LoginLimiter:
    """At most ``failures`` failed logins per ``window`` seconds from one address,
    and for one user name from anywhere; past that, logins are refused (even
    with the right password) until the oldest failure leaves the window."""

    failures: int = 5
    window: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _by_key: dict[str, collections.deque] = dataclasses.field(default_factory=dict)

    def _recent(self, key: str) -> collections.deque:
        now = self.clock()
        q = self._by_key.setdefault(key, collections.deque())
        while q and now - q[0] >= self.window:
            q.popleft()
        if not q:
            del self._by_key[key]
            return collections.deque()
        return q

    def retry_after(self, address: str, name: str) -> float:
        """Seconds until a login may be tried again (0: now)."""
        waits = [0.0]
        for key in (f"a:{address}", f"u:{name.lower()}"):
            q = self._recent(key)
            if len(q) >= self.failures:
                waits.append(q[0] + self.window - self.clock())
        return max(waits)

    def failed(self, address: str, name: str) -> None:
        now = self.clock()
        for key in (f"a:{address}", f"u:{name.lower()}"):
            self._by_key.setdefault(key, collections.deque()).append(now)
            if len(self._by_key) > 100_000:  # bounded memory under a flood
                self._by_key.pop(next(iter(self._by_key)))
