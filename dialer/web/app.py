"""The console's ASGI application: HTML pages, the SSE wallboard, the JSON API, /metrics.

The route table in :func:`create_app` is the site map. Every page's data comes
from the same functions as its JSON twin under ``/api/v1``, and every change
goes through the library functions the command line uses (``dialer.campaigns.control``,
``dialer.campaigns``, ``dialer.leads``, ``dialer.leads.dnc``), with an
:class:`~dialer.audit.Actor` naming the user or token and the client's address.

Authentication: a browser session cookie (HttpOnly, SameSite=Strict, Secure
under TLS) or an ``Authorization: Bearer`` API token. A request carrying the
cookie must also carry the session's CSRF token (``X-CSRF-Token`` header or
``csrf`` form field) for any method but GET/HEAD; token requests carry no
ambient credential and need none.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hmac
import io
import json
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from dialer import audit, campaigns, reports
from dialer.campaigns import control
from dialer.leads import dnc
from dialer.errors import UserError
from dialer.leads.importer import import_leads
from dialer.models import CallAttempt, Lead, utcnow
from dialer.web import auth
from dialer.web.board import Wallboard

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "dialer_session"
LOGIN_COOKIE = "dialer_login"
MAX_UPLOAD = 200 * 1024 * 1024    # bytes of lead CSV one upload may carry
MAX_JSON = 1024 * 1024
REJECTS_KEPT = dt.timedelta(hours=12)
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
       " connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none';"
       " form-action 'self'; frame-ancestors 'none'")


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


def _console(request: Request) -> Console:
    return request.app.state.console


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/metrics"


# --- errors ---------------------------------------------------------------------


class ApiError(HTTPException):
    pass


def _error_response(request: Request, status: int, message: str, headers: dict | None = None) -> Response:
    wants_json = is_api(request) or "application/json" in request.headers.get("accept", "")
    if wants_json or request.method != "GET":
        return JSONResponse({"error": {"status": status, "message": message}}, status, headers=headers)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, "error.html", {"status": status, "message": message},
                                      status_code=status, headers=headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return _error_response(request, exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def _user_error(request: Request, exc: UserError) -> Response:
    return _error_response(request, 400, str(exc))


# --- authentication ---------------------------------------------------------------


async def identify(request: Request) -> Identity | None:
    console = _console(request)
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


async def _check_csrf(request: Request, ident: Identity) -> None:
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
            await _check_csrf(request, ident)
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


def _text_field(data: dict, key: str, *, required: bool = False, limit: int = 1000) -> str | None:
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


# --- pages ------------------------------------------------------------------------


def _page(request: Request, name: str, ident: Identity | None, **context: Any) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    can = {r: ident is not None and auth.role_allows(ident.role, r) for r in auth.ROLES}
    return templates.TemplateResponse(request, name, {"ident": ident, "can": can, **context},
                                      headers={"Cache-Control": "no-store"})


async def login_page(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    response = _page(request, "login.html", None, login_csrf=token, message=request.query_params.get("m"))
    _set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600, path="/login")
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int,
                path: str = "/") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="strict",
                        secure=_console(request).tls)


async def login(request: Request) -> Response:
    console = _console(request)
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
        _set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600, path="/login")
        return response
    key, _csrf = opened
    response = RedirectResponse("/", 303)
    _set_cookie(request, response, SESSION_COOKIE, key, max_age=int(auth.SESSION_LIFETIME.total_seconds()))
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    return response


@requires("viewer")
async def logout(request: Request, ident: Identity) -> Response:
    key = request.cookies.get(SESSION_COOKIE, "")
    await _console(request).db(auth.close_session, key, write=True)
    response = RedirectResponse("/login?m=logged+out", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@requires("viewer")
async def board_page(request: Request, ident: Identity) -> Response:
    return _page(request, "board.html", ident)


@requires("viewer")
async def campaign_page(request: Request, ident: Identity) -> Response:
    name = request.path_params["name"]
    try:
        info = await _console(request).db(_describe, name)
    except UserError as exc:
        raise _not_found(exc) from None
    settings_help = {s.name: s.help for s in campaigns.SETTINGS.values()}
    return _page(request, "campaign.html", ident, campaign=info, settings_help=settings_help)


@requires("admin")
async def audit_page(request: Request, ident: Identity) -> Response:
    rows = await _console(request).db(lambda s: [audit.as_dict(e) for e in audit.recent(s, 200)])
    return _page(request, "audit.html", ident, rows=rows)


@requires("viewer")
async def events(request: Request, ident: Identity) -> Response:
    """The wallboard by server-sent events: the document now, then every change."""
    wallboard = _console(request).wallboard

    async def stream():
        yield "retry: 1000\n\n"
        async for text in wallboard.updates():
            if text is None:
                yield ": keep-alive\n\n"
            else:
                yield f"event: board\ndata: {text}\n\n"
    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# --- the JSON API -------------------------------------------------------------------


def _describe(s: Session, name: str) -> dict[str, Any]:
    c = campaigns.get_campaign(s, name)
    counts = campaigns.lead_counts(s, c)
    return {
        "name": c.name, "state": c.state,
        "settings": {k: campaigns.format_setting(k, v) for k, v in campaigns.campaign_settings(c).items()},
        "leads": {"total": sum(counts.values()), **counts},
        "updated_at": c.updated_at.isoformat(timespec="seconds") + "Z",
    }


def _not_found(exc: UserError) -> ApiError:
    return ApiError(404, str(exc))


@requires("viewer")
async def api_campaigns(request: Request, ident: Identity) -> Response:
    def run(s: Session) -> list[dict]:
        return [_describe(s, c.name) for c in campaigns.list_campaigns(s)]
    return JSONResponse({"campaigns": await _console(request).db(run)})


@requires("viewer")
async def api_campaign(request: Request, ident: Identity) -> Response:
    try:
        return JSONResponse(await _console(request).db(_describe, request.path_params["name"]))
    except UserError as exc:
        raise _not_found(exc) from None


@requires("supervisor")
async def api_campaign_state(request: Request, ident: Identity) -> Response:
    data = await json_body(request)
    command = _text_field(data, "command", required=True)
    reason = _text_field(data, "reason")
    if command not in control.TRANSITIONS:
        raise ApiError(400, f"command {command!r}: expected one of {', '.join(control.TRANSITIONS)}")
    name = request.path_params["name"]
    actor = ident.actor(request)

    def run(s: Session) -> dict:
        before = campaigns.get_campaign(s, name).state
        c = control.issue(s, name, command, reason=reason, now=utcnow(), actor=actor)
        return {"name": c.name, "before": before, "state": c.state}
    try:
        return JSONResponse(await _console(request).db(run, write=True))
    except UserError as exc:
        if "no such campaign" in str(exc):
            raise _not_found(exc) from None
        if ": cannot " in str(exc):
            raise ApiError(409, str(exc)) from None   # the campaign's state does not allow it
        raise


@requires("supervisor")
async def api_stop_all(request: Request, ident: Identity) -> Response:
    data = await json_body(request)
    reason = _text_field(data, "reason")
    actor = ident.actor(request)

    def run(s: Session) -> list[dict]:
        return [{"name": c.name, "state": c.state}
                for c in control.stop_all(s, reason=reason, now=utcnow(), actor=actor)]
    return JSONResponse({"stopped": await _console(request).db(run, write=True)})


@requires("admin")
async def api_campaign_settings(request: Request, ident: Identity) -> Response:
    data = await json_body(request)
    values = data.get("settings")
    if not isinstance(values, dict) or not values:
        raise ApiError(400, "body: 'settings' must be an object of setting: text")
    parsed = {}
    for key, text in values.items():
        if not isinstance(text, str):
            raise ApiError(400, f"settings.{key}: give the value as text, as on the command line")
        parsed[key] = campaigns.parse_setting(key, text)   # UserError -> 400 naming the setting
    name = request.path_params["name"]
    actor = ident.actor(request)

    def run(s: Session) -> dict:
        campaigns.set_campaign_settings(s, name, actor=actor, **parsed)
        return _describe(s, name)
    try:
        return JSONResponse(await _console(request).db(run, write=True))
    except UserError as exc:
        if "no such campaign" in str(exc):
            raise _not_found(exc) from None
        raise


async def _receive_upload(request: Request, target: Path) -> str:
    """Write the CSV of a multipart ``file`` field or a text/csv body to ``target``;
    returns the file's name as sent."""
    ctype = request.headers.get("content-type", "")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_UPLOAD:
        raise ApiError(413, f"upload over {MAX_UPLOAD // (1024 * 1024)} MB")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10, max_part_size=MAX_UPLOAD)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "form: a 'file' field with the CSV is required")
        size = 0
        with target.open("wb") as out:
            while chunk := await upload.read(1 << 20):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    raise ApiError(413, f"upload over {MAX_UPLOAD // (1024 * 1024)} MB")
                out.write(chunk)
        return Path(upload.filename or "upload.csv").name
    if ctype.startswith(("text/csv", "application/octet-stream", "text/plain")):
        size = 0
        with target.open("wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_UPLOAD:
                    raise ApiError(413, f"upload over {MAX_UPLOAD // (1024 * 1024)} MB")
                out.write(chunk)
        return Path(request.query_params.get("filename") or "upload.csv").name
    raise ApiError(415, "expected multipart/form-data with a 'file' field, or a text/csv body")


@requires("supervisor")
async def api_leads_upload(request: Request, ident: Identity) -> Response:
    console = _console(request)
    name = request.path_params["name"]
    region = request.query_params.get("region", "US")
    upload_id = secrets.token_urlsafe(16)
    folder = console.rejects_dir / upload_id
    folder.mkdir(parents=True)
    csv_path = folder / "upload.csv"
    try:
        filename = await _receive_upload(request, csv_path)
        rejects_path = folder / (filename + ".rejects.csv")
        actor = ident.actor(request)

        def run(s: Session) -> dict:
            campaign = campaigns.get_campaign(s, name)
            result = import_leads(s, campaign, csv_path, region=region, rejects=rejects_path, source=filename)
            audit.record(s, actor, "leads.load", campaign.name, after={"file": filename, **result.counts()})
            return {"campaign": campaign.name, "file": filename, **result.counts(),
                    "rejected": result.rejected, "summary": result.summary().split("; rejected rows in")[0]}
        try:
            out = await console.db(run, write=True)
        except UserError as exc:
            if "no such campaign" in str(exc):
                raise _not_found(exc) from None
            raise
    finally:
        csv_path.unlink(missing_ok=True)
    if out["rejected"] and rejects_path.exists():
        (folder / "owner").write_text(ident.kind + ":" + ident.name, encoding="utf-8")
        out["rejects_url"] = f"/api/v1/rejects/{upload_id}"
    else:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
    _prune_rejects(console.rejects_dir)
    return JSONResponse(out)


def _prune_rejects(root: Path) -> None:
    cutoff = time.time() - REJECTS_KEPT.total_seconds()
    for folder in root.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                for p in folder.iterdir():
                    p.unlink()
                folder.rmdir()
        except OSError:
            pass


@requires("supervisor")
async def api_rejects(request: Request, ident: Identity) -> Response:
    upload_id = request.path_params["upload_id"]
    folder = _console(request).rejects_dir / upload_id
    if not upload_id.replace("-", "").replace("_", "").isalnum() or not folder.is_dir():
        raise ApiError(404, "no such rejects report (they are kept 12 hours)")
    owner = (folder / "owner").read_text(encoding="utf-8") if (folder / "owner").exists() else ""
    if owner != ident.kind + ":" + ident.name and ident.role != "admin":
        raise ApiError(404, "no such rejects report (they are kept 12 hours)")
    files = [p for p in folder.iterdir() if p.name.endswith(".rejects.csv")]
    if not files:
        raise ApiError(404, "no such rejects report")
    return FileResponse(files[0], media_type="text/csv", filename=files[0].name)


@requires("supervisor")
async def api_lead_lookup(request: Request, ident: Identity) -> Response:
    phone = request.query_params.get("phone")
    if not phone:
        raise ApiError(400, "query: 'phone' is required")
    region = request.query_params.get("region", "US")
    number = dnc.normalize_number(phone, region)

    def run(s: Session) -> dict:
        leads = []
        for lead, campaign_name in s.execute(
            sa.select(Lead, sa.literal_column("campaigns.name")).join(Lead.campaign)
            .where(Lead.phone_e164 == number).order_by(Lead.id)
        ):
            attempts = s.scalars(sa.select(CallAttempt).where(CallAttempt.lead_id == lead.id)
                                 .order_by(CallAttempt.id)).all()
            leads.append({
                "id": lead.id, "campaign": campaign_name, "state": lead.state, "attempts": lead.attempts,
                "first_name": lead.first_name, "last_name": lead.last_name, "timezone": lead.timezone,
                "next_attempt_at": _iso(lead.next_attempt_at), "last_disposition": lead.last_disposition,
                "calls": [{"id": a.id, "attempt_no": a.attempt_no, "state": a.state,
                           "disposition": a.disposition, "created_at": _iso(a.created_at),
                           "answered_at": _iso(a.answered_at), "connected_at": _iso(a.connected_at),
                           "ended_at": _iso(a.ended_at), "cause": a.cause, "agent": a.agent}
                          for a in attempts],
            })
        return {"phone": number, "dnc": dnc.is_dnc(s, number), "leads": leads}
    return JSONResponse(await _console(request).db(run))


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="milliseconds") + "Z"


@requires("supervisor")
async def api_dnc_add(request: Request, ident: Identity) -> Response:
    data = await json_body(request)
    numbers = data.get("numbers")
    if not isinstance(numbers, list) or not numbers or not all(isinstance(n, str) for n in numbers):
        raise ApiError(400, "body: 'numbers' must be a non-empty list of strings")
    if len(numbers) > 10_000:
        raise ApiError(400, "body: at most 10000 numbers at once (use 'dialer dnc load' for files)")
    region = _text_field(data, "region") or "US"
    source = _text_field(data, "source") or f"web:{ident.name}"
    actor = ident.actor(request)

    def run(s: Session) -> dict:
        added = dnc.add_dnc(s, numbers, region=region, source=source, actor=actor)
        return {"added": added, "already_listed": len({dnc.normalize_number(n, region) for n in numbers}) - added}
    return JSONResponse(await _console(request).db(run, write=True))


@requires("viewer")
async def api_dnc_check(request: Request, ident: Identity) -> Response:
    number = dnc.normalize_number(request.path_params["number"], request.query_params.get("region", "US"))
    listed = await _console(request).db(lambda s: dnc.is_dnc(s, number))
    return JSONResponse({"phone": number, "listed": listed})


@requires("viewer")
async def api_report(request: Request, ident: Identity) -> Response:
    name = request.path_params["name"]
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError(400, f"format {fmt!r}: expected json or csv")
    since_text = request.query_params.get("since")
    console = _console(request)
    now = _board_now(console)

    def run(s: Session) -> dict:
        since = reports.parse_since(since_text, now) if since_text else None
        return reports.build_report(s, name, since=since, now=now)
    try:
        report = await console.db(run)
    except UserError as exc:
        if "no such campaign" in str(exc):
            raise _not_found(exc) from None
        raise
    buf = io.StringIO()
    if fmt == "csv":
        reports.render_csv(report, buf)
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}-report.csv"'})
    reports.render_json(report, buf)
    headers = {"Content-Disposition": f'attachment; filename="{name}-report.json"'} \
        if request.query_params.get("download") else None
    return Response(buf.getvalue(), media_type="application/json", headers=headers)


def _board_now(console: Console) -> dt.datetime:
    """The engines' clock when one is running (it may run fast or start elsewhere,
    as in the demo), else now."""
    clock = console.wallboard.clock
    if clock is not None:
        return dt.datetime.fromtimestamp(clock, dt.UTC).replace(tzinfo=None)
    return utcnow()


@requires("viewer")
async def api_live(request: Request, ident: Identity) -> Response:
    wallboard = _console(request).wallboard
    with trio.move_on_after(2):
        await wallboard.wait_ready()
    if not wallboard.text:
        raise ApiError(503, "the live state has not been read yet")
    return Response(wallboard.text, media_type="application/json")


def _people(s: Session) -> dict[str, Any]:
    return {
        "users": [{"name": u.name, "role": u.role, "disabled": u.disabled_at is not None,
                   "created_at": _iso(u.created_at)} for u in auth.list_users(s)],
        "tokens": [{"name": t.name, "role": t.role, "revoked": t.revoked_at is not None,
                    "created_at": _iso(t.created_at), "last_used_at": _iso(t.last_used_at)}
                   for t in auth.list_tokens(s)],
    }


@requires("admin")
async def admin_page(request: Request, ident: Identity) -> Response:
    return _page(request, "admin.html", ident, people=await _console(request).db(_people), roles=auth.ROLES)


@requires("admin")
async def api_people(request: Request, ident: Identity) -> Response:
    return JSONResponse(await _console(request).db(_people))


@requires("admin")
async def api_user_add(request: Request, ident: Identity) -> Response:
    data = await json_body(request)
    name = _text_field(data, "name", required=True, limit=100)
    role = _text_field(data, "role", required=True, limit=20)
    password = _text_field(data, "password", required=True, limit=auth.MAX_PASSWORD)
    replace = data.get("replace") is True
    actor = ident.actor(request)

    def run(s: Session) -> dict:
        user = auth.add_user(s, name, role, password, actor=actor, replace=replace)
        return {"name": user.name, "role": user.role}
    return JSONResponse(await _console(request).db(run, write=True))


@requires("admin")
async def api_user_disable(request: Request, ident: Identity) -> Response:
    name = request.path_params["user"]
    if name == ident.name and ident.kind == "session":
        raise ApiError(400, "you cannot disable yourself")
    actor = ident.actor(request)
    await _console(request).db(lambda s: auth.disable_user(s, name, actor=actor), write=True)
    return JSONResponse({"name": name, "disabled": True})


@requires("admin")
async def api_token_add(request: Request, ident: Identity) -> Response:
    data = await json_body(request)
    name = _text_field(data, "name", required=True, limit=100)
    role = _text_field(data, "role", required=True, limit=20)
    actor = ident.actor(request)
    token = await _console(request).db(lambda s: auth.add_token(s, name, role, actor=actor), write=True)
    return JSONResponse({"name": name, "role": role, "token": token},
                        headers={"Cache-Control": "no-store"})


@requires("admin")
async def api_token_revoke(request: Request, ident: Identity) -> Response:
    name = request.path_params["token"]
    actor = ident.actor(request)
    await _console(request).db(lambda s: auth.revoke_token(s, name, actor=actor), write=True)
    return JSONResponse({"name": name, "revoked": True})


@requires("admin")
async def api_audit(request: Request, ident: Identity) -> Response:
    try:
        limit = int(request.query_params.get("limit", "100"))
    except ValueError:
        raise ApiError(400, "limit: expected a whole number") from None
    if not 1 <= limit <= 10_000:
        raise ApiError(400, "limit: expected 1 to 10000")
    rows = await _console(request).db(lambda s: [audit.as_dict(e) for e in audit.recent(s, limit)])
    return JSONResponse({"entries": rows})


async def metrics(request: Request) -> Response:
    from dialer.web.metrics import render

    console = _console(request)
    if not console.loopback or request.headers.get("authorization"):
        ident = await identify(request)
        if ident is None:
            raise ApiError(401, "/metrics needs an API token with the viewer role off loopback")
    body, ctype = await console.db(render, console.wallboard.doc, console.wallboard.health)
    return Response(body, media_type=ctype)


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True, "wallboard_version": _console(request).wallboard.version})


async def openapi(request: Request) -> Response:
    from dialer.web.openapi import spec

    return JSONResponse(spec(request.app.routes))


# --- the application ------------------------------------------------------------------


class SecurityHeaders:
    """Strict headers on every response (pure ASGI: streaming responses pass through)."""

    def __init__(self, app, tls: bool) -> None:
        self.app, self.tls = app, tls

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin"),
                         (b"cross-origin-opener-policy", b"same-origin")]
                if self.tls:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)
        await self.app(scope, receive, send_with_headers)


def create_app(console: Console) -> Starlette:
    routes = [
        Route("/", board_page),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/events", events),
        Route("/campaigns/{name}", campaign_page),
        Route("/audit", audit_page),
        Route("/admin", admin_page),
        Route("/metrics", metrics),
        Route("/healthz", health),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        Mount("/api/v1", routes=[
            Route("/openapi.json", openapi),
            Route("/campaigns", api_campaigns),
            Route("/campaigns/{name}", api_campaign),
            Route("/campaigns/{name}/state", api_campaign_state, methods=["POST"]),
            Route("/campaigns/{name}/settings", api_campaign_settings, methods=["PATCH"]),
            Route("/campaigns/{name}/leads", api_leads_upload, methods=["POST"]),
            Route("/campaigns/{name}/report", api_report),
            Route("/stop-all", api_stop_all, methods=["POST"]),
            Route("/rejects/{upload_id}", api_rejects),
            Route("/leads", api_lead_lookup),
            Route("/dnc", api_dnc_add, methods=["POST"]),
            Route("/dnc/{number}", api_dnc_check),
            Route("/live", api_live),
            Route("/audit", api_audit),
            Route("/people", api_people),
            Route("/users", api_user_add, methods=["POST"]),
            Route("/users/{user}/disable", api_user_disable, methods=["POST"]),
            Route("/tokens", api_token_add, methods=["POST"]),
            Route("/tokens/{token}/revoke", api_token_revoke, methods=["POST"]),
        ]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error, UserError: _user_error})
    app.state.console = console
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.add_middleware(SecurityHeaders, tls=console.tls)
    return app
