"""The console's ASGI application: the route table (the site map), the security headers.

Pages are in :mod:`.pages`, the JSON API in :mod:`.api`, what both share
(authentication, the console's state, errors) in :mod:`.request`.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from dialer.errors import UserError
from dialer.web.api import (
    api_audit,
    api_campaign,
    api_campaign_settings,
    api_campaign_state,
    api_campaigns,
    api_dnc_add,
    api_dnc_check,
    api_lead_lookup,
    api_leads_upload,
    api_live,
    api_people,
    api_rejects,
    api_report,
    api_stop_all,
    api_token_add,
    api_token_revoke,
    api_user_add,
    api_user_disable,
    health,
    metrics,
    openapi,
)
from dialer.web.pages import (
    admin_page,
    audit_page,
    board_page,
    campaign_page,
    events,
    login,
    login_page,
    logout,
)
from dialer.web.request import Console, http_error, user_error


HERE = Path(__file__).resolve().parent


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
       " connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none';"
       " form-action 'self'; frame-ancestors 'none'")


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
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, UserError: user_error})
    app.state.console = console
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.add_middleware(SecurityHeaders, tls=console.tls)
    return app


__all__ = ["Console", "SecurityHeaders", "create_app"]
