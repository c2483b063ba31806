"""The console's HTML pages (login, wallboard, campaign, audit log, administration) and the wallboard's server-sent events.

Each page shows the data of its JSON twin in :mod:`dialer.web.api`.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.templating import Jinja2Templates

from dialer import audit, campaigns
from dialer.errors import UserError
from dialer.web import auth
from dialer.web.api import describe_campaign, people
from dialer.web.request import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    ApiError,
    Identity,
    client_address,
    console_of,
    not_found,
    requires,
    set_cookie,
)


def page(request: Request, name: str, ident: Identity | None, **context: Any) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    can = {r: ident is not None and auth.role_allows(ident.role, r) for r in auth.ROLES}
    return templates.TemplateResponse(request, name, {"ident": ident, "can": can, **context},
                                      headers={"Cache-Control": "no-store"})


async def login_page(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(request, "login.html", None, login_csrf=token, message=request.query_params.get("m"))
    set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600, path="/login")
    return response


async def login(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
    name = form.get("name") if isinstance(form.get("name"), str) else ""
    password = form.get("password") if isinstance(form.get("password"), str) else ""
    sent = form.get("csrf") if isinstance(form.get("csrf"), str) else ""
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not sent or not cookie or not hmac.compare_digest(sent, cookie):
        raise ApiError(403, "missing or wrong CSRF token on the login form (reload the page)")
    address = client_address(request) or "?"
    wait = console.limiter.retry_after(address, name)
    if wait > 0:
        raise ApiError(429, f"too many failed logins: try again in {int(wait) + 1} s",
                       headers={"Retry-After": str(int(wait) + 1)})

    def check(s: Session) -> tuple[str, str] | None:
        user = auth.verify_login(s, name[:100], password[:auth.MAX_PASSWORD])
        actor = audit.Actor(f"web:{name[:100]}", "web", address)
        if user is None:
            audit.record(s, actor, "login.failed", name[:100])
            return None
        audit.record(s, actor, "login", name, after={"role": user.role})
        return auth.open_session(s, user, address)
    opened = await console.db(check, write=True)
    if opened is None:
        console.limiter.failed(address, name)
        templates: Jinja2Templates = request.app.state.templates
        token = secrets.token_urlsafe(24)
        response = templates.TemplateResponse(
            request, "login.html", {"ident": None, "can": {}, "login_csrf": token,
                                    "message": "wrong user name or password"}, status_code=401)
        set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600, path="/login")
        return response
    key, _csrf = opened
    response = RedirectResponse("/", 303)
    set_cookie(request, response, SESSION_COOKIE, key, max_age=int(auth.SESSION_LIFETIME.total_seconds()))
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@requires("viewer")
async def logout(request: Request, ident: Identity) -> Response:
    key = request.cookies.get(SESSION_COOKIE, "")
    await console_of(request).db(auth.close_session, key, write=True)
    response = RedirectResponse("/login?m=logged+out", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@requires("viewer")
async def board_page(request: Request, ident: Identity) -> Response:
    return page(request, "board.html", ident)


@requires("viewer")
async def campaign_page(request: Request, ident: Identity) -> Response:
    name = request.path_params["name"]
    try:
        info = await console_of(request).db(describe_campaign, name)
    except UserError as exc:
        raise not_found(exc) from None
    settings_help = {s.name: s.help for s in campaigns.SETTINGS.values()}
    return page(request, "campaign.html", ident, campaign=info, settings_help=settings_help)


@requires("admin")
async def audit_page(request: Request, ident: Identity) -> Response:
    rows = await console_of(request).db(lambda s: [audit.as_dict(e) for e in audit.recent(s, 200)])
    return page(request, "audit.html", ident, rows=rows)


@requires("viewer")
async def events(request: Request, ident: Identity) -> Response:
    """The wallboard by server-sent events: the document now, then every change."""
    wallboard = console_of(request).wallboard

    async def stream():
        yield "retry: 1000\n\n"
        async for text in wallboard.updates():
            if text is None:
                yield ": keep-alive\n\n"
            else:
                yield f"event: board\ndata: {text}\n\n"
    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@requires("admin")
async def admin_page(request: Request, ident: Identity) -> Response:
    return page(request, "admin.html", ident, people=await console_of(request).db(people), roles=auth.ROLES)
