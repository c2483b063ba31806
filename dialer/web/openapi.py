"""A small OpenAPI 3.1 description of ``/api/v1``, built from the route table."""

from __future__ import annotations

from typing import Any

from starlette.routing import Mount, Route

SUMMARIES = {
    ("GET", "/campaigns"): "List campaigns with their settings and leads by state",
    ("GET", "/campaigns/{name}"): "One campaign: state, settings, leads by state",
    ("POST", "/campaigns/{name}/state"): 'Start, pause, resume or stop: {"command": "pause", "reason": "..."}',
    ("PATCH", "/campaigns/{name}/settings"): 'Change settings, values as on the command line: {"settings": {"ring_timeout": "30"}}',
    ("POST", "/campaigns/{name}/leads"): "Load a lead CSV (multipart field 'file', or a text/csv body); ?region=US",
    ("GET", "/campaigns/{name}/report"): "The campaign report (?format=json|csv, ?since=24h)",
    ("POST", "/stop-all"): 'The emergency stop: every campaign at once {"reason": "..."}',
    ("GET", "/rejects/{upload_id}"): "The rejects report of an upload (CSV: line, reason, the row)",
    ("GET", "/leads"): "Look a number up (?phone=): its leads, their state and attempts, and whether it is do-not-call",
    ("POST", "/dnc"): 'Add numbers to the do-not-call list: {"numbers": ["+12125550100"], "source": "..."}',
    ("GET", "/dnc/{number}"): "Is a number on the do-not-call list",
    ("GET", "/live"): "The live state: the wallboard's document",
    ("GET", "/audit"): "The audit log, newest first (?limit=100)",
    ("GET", "/openapi.json"): "This document",
    ("GET", "/people"): "Console users and API tokens",
    ("POST", "/users"): 'Add a user: {"name": "...", "role": "viewer", "password": "...", "replace": false}',
    ("POST", "/users/{user}/disable"): "Disable a user and end their sessions",
    ("POST", "/tokens"): 'Create an API token (shown once): {"name": "...", "role": "viewer"}',
    ("POST", "/tokens/{token}/revoke"): "Revoke an API token",
}

ERROR = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "status": {"type": "integer"}, "message": {"type": "string"}}}}}


def spec(routes: list) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for mount in routes:
        if not isinstance(mount, Mount) or mount.path != "/api/v1":
            continue
        for route in mount.routes:
            if not isinstance(route, Route):
                continue
            for method in sorted((route.methods or set()) - {"HEAD"}):
                role = getattr(route.endpoint, "required_role", None)
                op: dict[str, Any] = {
                    "summary": SUMMARIES.get((method, route.path), route.path),
                    "responses": {"200": {"description": "OK"},
                                  "4XX": {"description": "A JSON error",
                                          "content": {"application/json": {"schema": ERROR}}}},
                }
                if role:
                    op["description"] = f"Needs the {role} role (a session with its CSRF token, or a Bearer token)."
                    op["security"] = [{"bearer": []}, {"session": []}]
                params = [p.strip("{}") for p in route.path.split("/") if p.startswith("{")]
                if params:
                    op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                        for p in params]
                paths.setdefault("/api/v1" + route.path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "dialer console API", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "dialer web token add NAME --role ROLE"},
            "session": {"type": "apiKey", "in": "cookie", "name": "dialer_session"},
        }},
    }
