"""The JSON API under ``/api/v1``, and ``/metrics`` and ``/healthz``.

Every change goes through the library functions the command line uses
(``dialer.campaigns.control``, ``dialer.campaigns``, ``dialer.leads``,
``dialer.leads.dnc``), with an :class:`~dialer.audit.Actor` naming the user or
token and the client's address.
"""

from __future__ import annotations

import datetime as dt
import io
import secrets
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import trio
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from dialer import audit, campaigns, reports
from dialer.campaigns import control
from dialer.errors import UserError
from dialer.leads import dnc
from dialer.leads.importer import import_leads
from dialer.models import CallAttempt, Lead, utcnow
from dialer.web import auth
from dialer.web.request import (
    ApiError,
    Console,
    Identity,
    console_of,
    identify,
    iso,
    json_body,
    not_found,
    requires,
    text_field,
)


MAX_UPLOAD = 200 * 1024 * 1024    # bytes of lead CSV one upload may carry


REJECTS_KEPT = dt.timedelta(hours=12)


def describe_campaign(s: Session, name: str) -> dict[str, Any]:
    c = campaigns.get_campaign(s, name)
    counts = campaigns.lead_counts(s, c)
    return {
        "name": c.name, "state": c.state,
        "settings": {k: campaigns.format_setting(k, v) for k, v in campaigns.campaign_settings(c).items()},
        "leads": {"total": sum(counts.values()), **counts},
        "updated_at": c.updated_at.isoformat(timespec="seconds") + "Z",
    }


@requires("viewer")
async def api_campaigns(request: Request, ident: Identity) -> Response:
    def run(s: Session) -> list[dict]:
        return [describe_campaign(s, c.name) for c in campaigns.list_campaigns(s)]
    return JSONResponse({"campaigns": await console_of(request).db(run)})


@requires("viewer")
async def api_campaign(request: Request, ident: Identity) -> Response:
    try:
        return JSONResponse(await console_of(request).db(describe_campaign, request.path_params["name"]))
    except UserError as exc:
        raise not_found(exc) from None


@requires("supervisor")
async def api_campaign_state(request: Request, ident: Identity) -> Response:
    data = await json_body(request)
    command = text_field(data, "command", required=True)
    reason = text_field(data, "reason")
    if command not in control.TRANSITIONS:
        raise ApiError(400, f"command {command!r}: expected one of {', '.join(control.TRANSITIONS)}")
    name = request.path_params["name"]
    actor = ident.actor(request)

    def run(s: Session) -> dict:
        before = campaigns.get_campaign(s, name).state
        c = control.issue(s, name, command, reason=reason, now=utcnow(), actor=actor)
        return {"name": c.name, "before": before, "state": c.state}
    try:
        return JSONResponse(await console_of(request).db(run, write=True))
    except UserError as exc:
        if "no such campaign" in str(exc):
            raise not_found(exc) from None
        if ": cannot " in str(exc):
            raise ApiError(409, str(exc)) from None   # the campaign's state does not allow it
        raise


@requires("supervisor")
async def api_stop_all(request: Request, ident: Identity) -> Response:
    data = await json_body(request)
    reason = text_field(data, "reason")
    actor = ident.actor(request)

    def run(s: Session) -> list[dict]:
        return [{"name": c.name, "state": c.state}
                for c in control.stop_all(s, reason=reason, now=utcnow(), actor=actor)]
    return JSONResponse({"stopped": await console_of(request).db(run, write=True)})


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
        return describe_campaign(s, name)
    try:
        return JSONResponse(await console_of(request).db(run, write=True))
    except UserError as exc:
        if "no such campaign" in str(exc):
            raise not_found(exc) from None
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
    console = console_of(request)
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
                raise not_found(exc) from None
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
    folder = console_of(request).rejects_dir / upload_id
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
                "next_attempt_at": iso(lead.next_attempt_at), "last_disposition": lead.last_disposition,
                "calls": [{"id": a.id, "attempt_no": a.attempt_no, "state": a.state,
                           "disposition": a.disposition, "created_at": iso(a.created_at),
                           "answered_at": iso(a.answered_at), "connected_at": iso(a.connected_at),
                           "ended_at": iso(a.ended_at), "cause": a.cause, "agent": a.agent}
                          for a in attempts],
            })
        return {"phone": number, "dnc": dnc.is_dnc(s, number), "leads": leads}
    return JSONResponse(await console_of(request).db(run))


@requires("supervisor")
async def api_dnc_add(request: Request, ident: Identity) -> Response:
    data = await json_body(request)
    numbers = data.get("numbers")
    if not isinstance(numbers, list) or not numbers or not all(isinstance(n, str) for n in numbers):
        raise ApiError(400, "body: 'numbers' must be a non-empty list of strings")
    if len(numbers) > 10_000:
        raise ApiError(400, "body: at most 10000 numbers at once (use 'dialer dnc load' for files)")
    region = text_field(data, "region") or "US"
    source = text_field(data, "source") or f"web:{ident.name}"
    actor = ident.actor(request)

    def run(s: Session) -> dict:
        added = dnc.add_dnc(s, numbers, region=region, source=source, actor=actor)
        return {"added": added, "already_listed": len({dnc.normalize_number(n, region) for n in numbers}) - added}
    return JSONResponse(await console_of(request).db(run, write=True))


@requires("viewer")
async def api_dnc_check(request: Request, ident: Identity) -> Response:
    number = dnc.normalize_number(request.path_params["number"], request.query_params.get("region", "US"))
    listed = await console_of(request).db(lambda s: dnc.is_dnc(s, number))
    return JSONResponse({"phone": number, "listed": listed})


@requires("viewer")
async def api_report(request: Request, ident: Identity) -> Response:
    name = request.path_params["name"]
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiError(400, f"format {fmt!r}: expected json or csv")
    since_text = request.query_params.get("since")
    console = console_of(request)
    now = _board_now(console)

    def run(s: Session) -> dict:
        since = reports.parse_since(since_text, now) if since_text else None
        return reports.build_report(s, name, since=since, now=now)
    try:
        report = await console.db(run)
    except UserError as exc:
        if "no such campaign" in str(exc):
            raise not_found(exc) from None
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
    wallboard = console_of(request).wallboard
    with trio.move_on_after(2):
        await wallboard.wait_ready()
    if not wallboard.text:
        raise ApiError(503, "the live state has not been read yet")
    return Response(wallboard.text, media_type="application/json")


def people(s: Session) -> dict[str, Any]:
    return {
        "users": [{"name": u.name, "role": u.role, "disabled": u.disabled_at is not None,
                   "created_at": iso(u.created_at)} for u in auth.list_users(s)],
        "tokens": [{"name": t.name, "role": t.role, "revoked": t.revoked_at is not None,
                    "created_at": iso(t.created_at), "last_used_at": iso(t.last_used_at)}
                   for t in auth.list_tokens(s)],
    }


@requires("admin")
async def api_people(request: Request, ident: Identity) -> Response:
    return JSONResponse(await console_of(request).db(people))


@requires("admin")
async def api_user_add(request: Request, ident: Identity) -> Response:
    data = await json_body(request)
    name = text_field(data, "name", required=True, limit=100)
    role = text_field(data, "role", required=True, limit=20)
    password = text_field(data, "password", required=True, limit=auth.MAX_PASSWORD)
    replace = data.get("replace") is True
    actor = ident.actor(request)

    def run(s: Session) -> dict:
        user = auth.add_user(s, name, role, password, actor=actor, replace=replace)
        return {"name": user.name, "role": user.role}
    return JSONResponse(await console_of(request).db(run, write=True))


@requires("admin")
async def api_user_disable(request: Request, ident: Identity) -> Response:
    name = request.path_params["user"]
    if name == ident.name and ident.kind == "session":
        raise ApiError(400, "you cannot disable yourself")
    actor = ident.actor(request)
    await console_of(request).db(lambda s: auth.disable_user(s, name, actor=actor), write=True)
    return JSONResponse({"name": name, "disabled": True})


@requires("admin")
async def api_token_add(request: Request, ident: Identity) -> Response:
    data = await json_body(request)
    name = text_field(data, "name", required=True, limit=100)
    role = text_field(data, "role", required=True, limit=20)
    actor = ident.actor(request)
    token = await console_of(request).db(lambda s: auth.add_token(s, name, role, actor=actor), write=True)
    return JSONResponse({"name": name, "role": role, "token": token},
                        headers={"Cache-Control": "no-store"})


@requires("admin")
async def api_token_revoke(request: Request, ident: Identity) -> Response:
    name = request.path_params["token"]
    actor = ident.actor(request)
    await console_of(request).db(lambda s: auth.revoke_token(s, name, actor=actor), write=True)
    return JSONResponse({"name": name, "revoked": True})


@requires("admin")
async def api_audit(request: Request, ident: Identity) -> Response:
    try:
        limit = int(request.query_params.get("limit", "100"))
    except ValueError:
        raise ApiError(400, "limit: expected a whole number") from None
    if not 1 <= limit <= 10_000:
        raise ApiError(400, "limit: expected 1 to 10000")
    rows = await console_of(request).db(lambda s: [audit.as_dict(e) for e in audit.recent(s, limit)])
    return JSONResponse({"entries": rows})


async def metrics(request: Request) -> Response:
    from dialer.web.metrics import render

    console = console_of(request)
    if not console.loopback or request.headers.get("authorization"):
        ident = await identify(request)
        if ident is None:
            raise ApiError(401, "/metrics needs an API token with the viewer role off loopback")
    body, ctype = await console.db(render, console.wallboard.doc, console.wallboard.health)
    return Response(body, media_type=ctype)


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True, "wallboard_version": console_of(request).wallboard.version})


async def openapi(request: Request) -> Response:
    from dialer.web.openapi import spec

    return JSONResponse(spec(request.app.routes))
