"""What every endpoint of the console shares: who is asking, the console's state, errors as responses.

Authentication: a browser session cookie (HttpOnly, SameSite=Strict, Secure
under TLS) or an ``Authorization: Bearer`` API token. A request carrying the
cookie must also carry the session's CSRF token (``X-CSRF-Token`` header or
``csrf`` form field) for any method but GET/HEAD; token requests carry no
ambient credential and need none. :func:`requires` puts this in front of an
endpoint; an :class:`ApiError` or a :class:`~dialer.errors.UserError` becomes a
JSON error (API calls) or the error page (browsers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hmac
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from dialer import audit
from dialer.errors import UserError
from dialer.web import auth
from dialer.web.board import Wallboard


SESSION_COOKIE = "dialer_session"


LOGIN_COOKIE = "dialer_login"


MAX_JSON = 1024 * 1024


UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclasses.dataclass(frozen=True)
class Identity:
    """Who is asking: a logged-in user or an API token."""

    name: str
    role: str
    kind: str                 # "session" or "token"
    csrf: str | None = None   # the session's CSRF token
    user_id: int | None = None

    def actor(self, request: Request) -> audit.Actor:
        via = "web" if self.kind == "session" else "api"
        prefix = "web" if self.kind == "session" else "token"
        return audit.Actor(f"{prefix}:{self.name}", via, client_address(request))


@dataclasses.dataclass
class Console:
    """What the application holds between requests."""

    sessions: sessionmaker
    wallboard: Wallboard
    tls: bool = False
    loopback: bool = True           # /metrics without a token only then
    limiter: auth.LoginLimiter = dataclasses.field(default_factory=auth.LoginLimiter)
    rejects_dir: Path = dataclasses.field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="dialer-web.")))
    db_limiter: trio.CapacityLimiter = dataclasses.field(default_factory=lambda: trio.CapacityLimiter(8))
    # Sessions for reads only (see dialer.db.create_engine's readers); default: ``sessions``.
    readers: sessionmaker | None = None

    async def db(self, fn: Callable[..., Any], *args: Any, write: bool = False) -> Any:
        """Run ``fn(session, *args)`` in one transaction in a worker thread
        (``write=True`` for anything that changes the database)."""
        factory = self.sessions if write or self.readers is None else self.readers

        def unit() -> Any:
            with factory.begin() as s:
                return fn(s, *args)
        return await trio.to_thread.run_sync(unit, limiter=self.db_limiter)


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def console_of(request: Request) -> Console:
    return request.app.state.console


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/metrics"


class ApiError(HTTPException):
    pass


def error_response(request: Request, status: int, message: str, headers: dict | None = None) -> Response:
    wants_json = is_api(request) or "application/json" in request.headers.get("accept", "")
    if wants_json or request.method != "GET":
        return JSONResponse({"error": {"status": status, "message": message}}, status, headers=headers)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, "error.html", {"status": status, "message": message},
                                      status_code=status, headers=headers)


async def http_error(request: Request, exc: HTTPException) -> Response:
    return error_response(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def user_error(request: Request, exc: UserError) -> Response:
    return error_response(request, 400, str(exc))


async def identify(request: Request) -> Identity | None:
    console = console_of(request)
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Authorization: expected 'Bearer <token>'")

        def by_token(s: Session) -> tuple[Identity, bool] | None:
            row = auth.token_identity(s, token.strip())
            return None if row is None else (Identity(row.name, row.role, "token"), auth.token_use_due(row))
        found = await console.db(by_token)
        if found is None:
            raise ApiError(401, "invalid or revoked API token")
        ident, due = found
        if due:
            await console.db(auth.note_token_use, ident.name, write=True)
        return ident
    key = request.cookies.get(SESSION_COOKIE)
    if not key:
        return None

    def by_cookie(s: Session) -> Identity | None:
        found = auth.session_identity(s, key)
        if found is None:
            return None
        user, row = found
        return Identity(user.name, user.role, "session", csrf=row.csrf_token, user_id=user.id)
    return await console.db(by_cookie)


async def check_csrf(request: Request, ident: Identity) -> None:
    if ident.kind != "session" or request.method not in UNSAFE:
        return
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        sent = form.get("csrf") if isinstance(form.get("csrf"), str) else None
    if not sent or not ident.csrf or not hmac.compare_digest(sent, ident.csrf):
        raise ApiError(403, "missing or wrong CSRF token (reload the page)")


def requires(role: str) -> Callable:
    """Endpoint decorator: the caller must be logged in (or hold a token) with ``role``."""
    def wrap(endpoint: Callable[..., Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(endpoint)
        async def handler(request: Request) -> Response:
            ident = await identify(request)
            if ident is None:
                if is_api(request) or request.method != "GET":
                    raise ApiError(401, "log in or give an API token")
                return RedirectResponse("/login", 303)
            if not auth.role_allows(ident.role, role):
                raise ApiError(403, f"{ident.name} is a {ident.role}: this needs the {role} role")
            await check_csrf(request, ident)
            request.state.identity = ident
            return await endpoint(request, ident)
        handler.required_role = role  # type: ignore[attr-defined]
        return handler
    return wrap


async def json_body(request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ApiError(415, "expected a JSON body (Content-Type: application/json)")
    body = await request.body()
    if len(body) > MAX_JSON:
        raise ApiError(413, f"JSON body over {MAX_JSON} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "body: expected a JSON object")
    return data


def text_field(data: dict, key: str, *, required: bool = False, limit: int = 1000) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise ApiError(400, f"body: {key!r} is required")
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"body: {key!r} must be a string")
    if len(value) > limit:
        raise ApiError(400, f"body: {key!r} is longer than {limit} characters")
    return value


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int,
                path: str = "/") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="strict",
                        secure=console_of(request).tls)


def not_found(exc: UserError) -> ApiError:
    return ApiError(404, str(exc))


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"
