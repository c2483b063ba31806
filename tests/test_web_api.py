"""The console's HTTP surface in-process: roles, CSRF, login rate limits, the
audit trail, JSON errors for bad input, and the API calling the CLI's functions."""

from __future__ import annotations

import io
import json
import re

import httpx
import pytest
import sqlalchemy as sa

from dialer import db
from dialer.cli import main
from dialer.models import ApiToken, AuditEntry, Campaign, DncNumber, Lead, WebUser, utcnow
from dialer.web import auth
from dialer.web.app import Console, create_app
from dialer.web.board import Wallboard
from tests.engine_harness import make_campaign
from tests.web_harness import PASSWORDS, TEST_ACTOR, add_users


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sessions(sqlite_url):
    engine = db.create_engine(sqlite_url)
    factory = db.session_factory(engine)
    add_users(factory)
    make_campaign(factory, "spring", ["+12125550100", "+12125550101"], state="running")
    make_campaign(factory, "autumn", (), state="stopped")
    yield factory
    engine.dispose()


@pytest.fixture
def clock():
    return FakeClock()


def make_console(sessions, clock, **kwargs) -> Console:
    return Console(sessions=sessions, wallboard=Wallboard(sessions),
                   limiter=auth.LoginLimiter(failures=5, window=300, clock=clock), **kwargs)


@pytest.fixture
def console(sessions, clock):
    return make_console(sessions, clock)


class Client(httpx.AsyncClient):
    """A client that may be used before ``async with`` (to log in) and closed by it."""

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


def client_for(console, address: str = "10.1.2.3") -> Client:
    transport = httpx.ASGITransport(app=create_app(console), client=(address, 40000))
    return Client(transport=transport, base_url=f"{'https' if console.tls else 'http'}://console.test")


async def log_in(client: httpx.AsyncClient, name: str, password: str | None = None) -> httpx.Response:
    page = await client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    return await client.post("/login", data={"name": name, "password": password or PASSWORDS[name][1],
                                             "csrf": token})


async def csrf_of(client: httpx.AsyncClient) -> str:
    page = await client.get("/")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


async def session_client(console, name: str, address: str = "10.1.2.3") -> tuple[httpx.AsyncClient, str]:
    client = client_for(console, address)
    r = await log_in(client, name)
    assert r.status_code == 303, r.text
    return client, await csrf_of(client)


def state_of(sessions, name: str) -> str:
    with sessions.begin() as s:
        return s.scalar(sa.select(Campaign.state).where(Campaign.name == name))


def audit_rows(sessions, action: str | None = None) -> list[AuditEntry]:
    with sessions.begin() as s:
        q = sa.select(AuditEntry).order_by(AuditEntry.id)
        if action:
            q = q.where(AuditEntry.action == action)
        return list(s.scalars(q))


def new_token(sessions, name: str, role: str) -> str:
    with sessions.begin() as s:
        return auth.add_token(s, name, role, actor=TEST_ACTOR)


# --- roles ---------------------------------------------------------------------


async def test_a_viewer_cannot_pause_by_session_or_token(console, sessions):
    client, csrf = await session_client(console, "vic")
    async with client:
        r = await client.post("/api/v1/campaigns/spring/state", json={"command": "pause"},
                              headers={"X-CSRF-Token": csrf})
        assert r.status_code == 403
        assert r.json()["error"]["message"] == "vic is a viewer: this needs the supervisor role"
        # Reading is allowed.
        assert (await client.get("/api/v1/campaigns/spring")).json()["state"] == "running"
    token = new_token(sessions, "wall", "viewer")
    async with client_for(console) as api:
        r = await api.post("/api/v1/campaigns/spring/state", json={"command": "pause"},
                           headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
    assert state_of(sessions, "spring") == "running"
    assert audit_rows(sessions, "campaign.pause") == []


@pytest.mark.parametrize("path,method,body,role", [
    ("/api/v1/campaigns/spring/state", "POST", {"command": "pause"}, "supervisor"),
    ("/api/v1/stop-all", "POST", {}, "supervisor"),
    ("/api/v1/dnc", "POST", {"numbers": ["+12125550199"]}, "supervisor"),
    ("/api/v1/campaigns/spring/settings", "PATCH", {"settings": {"ring_timeout": "30"}}, "admin"),
    ("/api/v1/audit", "GET", None, "admin"),
    ("/api/v1/leads?phone=%2B12125550100", "GET", None, "supervisor"),
])
async def test_each_role_gets_what_it_may_and_no_more(console, sessions, path, method, body, role):
    outcomes = {}
    for name in ("vic", "sam", "ada"):
        client, csrf = await session_client(console, name)
        async with client:
            r = await client.request(method, path, json=body, headers={"X-CSRF-Token": csrf})
            outcomes[PASSWORDS[name][0]] = r.status_code
    ranks = ["viewer", "supervisor", "admin"]
    allowed = ranks[ranks.index(role):]
    for r_name, status in outcomes.items():
        if r_name in allowed:
            assert status in (200, 409), (r_name, status)  # 409: already paused by the one before
        else:
            assert status == 403, (r_name, status)


async def test_no_identity_gets_401_json_from_the_api_and_a_redirect_from_pages(console):
    async with client_for(console) as client:
        r = await client.get("/api/v1/campaigns")
        assert r.status_code == 401 and r.json() == {"error": {"status": 401, "message": "log in or give an API token"}}
        r = await client.get("/")
        assert r.status_code == 303 and r.headers["location"] == "/login"
        r = await client.get("/api/v1/campaigns", headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["error"]["message"] == "invalid or revoked API token"
        r = await client.get("/api/v1/campaigns", headers={"Authorization": "Basic eDp5"})
        assert r.status_code == 401 and "Bearer" in r.json()["error"]["message"]


async def test_a_revoked_token_or_disabled_user_is_refused(console, sessions):
    token = new_token(sessions, "crm", "supervisor")
    client, _ = await session_client(console, "sam")
    async with client_for(console) as api, client:
        assert (await api.get("/api/v1/campaigns", headers={"Authorization": f"Bearer {token}"})).status_code == 200
        with sessions.begin() as s:
            auth.revoke_token(s, "crm", actor=TEST_ACTOR)
            auth.disable_user(s, "sam", actor=TEST_ACTOR)
        assert (await api.get("/api/v1/campaigns", headers={"Authorization": f"Bearer {token}"})).status_code == 401
        assert (await client.get("/api/v1/campaigns")).status_code == 401
        r = await log_in(client, "sam")
        assert r.status_code == 401


# --- CSRF and cookies -------------------------------------------------------------


async def test_a_state_change_without_the_csrf_token_is_refused(console, sessions):
    client, csrf = await session_client(console, "sam")
    async with client:
        for headers in ({}, {"X-CSRF-Token": "x" * 43}, {"X-CSRF-Token": ""}):
            r = await client.post("/api/v1/campaigns/spring/state", json={"command": "pause"}, headers=headers)
            assert r.status_code == 403, headers
            assert "CSRF" in r.json()["error"]["message"]
        r = await client.post("/logout")
        assert r.status_code == 403
        assert state_of(sessions, "spring") == "running"
        r = await client.post("/api/v1/campaigns/spring/state", json={"command": "pause"},
                              headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json() == {"name": "spring", "before": "running", "state": "paused"}
    assert state_of(sessions, "spring") == "paused"


async def test_the_login_form_needs_its_csrf_cookie(console):
    async with client_for(console) as client:
        r = await client.post("/login", data={"name": "sam", "password": PASSWORDS["sam"][1], "csrf": "forged"})
        assert r.status_code == 403
        assert "dialer_session" not in r.cookies


async def test_session_cookie_is_httponly_strict_and_secure_under_tls(sessions, clock):
    for tls in (False, True):
        console = make_console(sessions, clock, tls=tls)
        async with client_for(console) as client:
            r = await log_in(client, "sam")
            cookie = next(v for k, v in r.headers.multi_items()
                          if k == "set-cookie" and v.startswith("dialer_session="))
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie
            assert ("Secure" in cookie) is tls
            page = await client.get("/login")
            assert "default-src 'self'" in page.headers["content-security-policy"]
            assert page.headers["x-frame-options"] == "DENY"
            assert ("strict-transport-security" in page.headers) is tls


async def test_logout_ends_the_session(console):
    client, csrf = await session_client(console, "sam")
    async with client:
        cookie = client.cookies.get("dialer_session")
        r = await client.post("/logout", data={"csrf": csrf})
        assert r.status_code == 303
        client.cookies.set("dialer_session", cookie)
        assert (await client.get("/api/v1/campaigns")).status_code == 401


# --- login rate limit ---------------------------------------------------------------


async def test_wrong_passwords_are_rate_limited_per_address_and_per_user(console, sessions, clock):
    async with client_for(console, "10.9.9.9") as client:
        for _ in range(5):
            r = await log_in(client, "sam", "wrong-password")
            assert r.status_code == 401 and "wrong user name or password" in r.text
        r = await log_in(client, "sam")  # the right password, too late
        assert r.status_code == 429
        assert r.headers["retry-after"] == "301"
        assert "too many failed logins" in r.json()["error"]["message"]
        # Another user from the same address is refused too.
        assert (await log_in(client, "ada")).status_code == 429
    async with client_for(console, "10.8.8.8") as other:
        # The same user from elsewhere is refused as well (a spread-out guess).
        assert (await log_in(other, "sam")).status_code == 429
        assert (await log_in(other, "ada")).status_code == 303
    clock.now += 300
    async with client_for(console, "10.9.9.9") as client:
        assert (await log_in(client, "sam")).status_code == 303
    failed = audit_rows(sessions, "login.failed")
    assert len(failed) == 5 and {(e.actor, e.address) for e in failed} == {("web:sam", "10.9.9.9")}


# --- the audit trail --------------------------------------------------------------------


async def test_every_action_writes_an_audit_row_with_who_where_and_before_after(console, sessions, tmp_path):
    client, csrf = await session_client(console, "ada", "10.0.0.7")
    h = {"X-CSRF-Token": csrf}
    async with client:
        assert (await client.post("/api/v1/campaigns/spring/state", json={"command": "pause", "reason": "lunch"},
                                  headers=h)).status_code == 200
        assert (await client.patch("/api/v1/campaigns/spring/settings",
                                   json={"settings": {"ring_timeout": "40", "max_concurrent": "12"}},
                                   headers=h)).status_code == 200
        assert (await client.post("/api/v1/dnc", json={"numbers": ["(212) 555-0101"]}, headers=h)).json() \
            == {"added": 1, "already_listed": 0}
        files = {"file": ("more.csv", b"phone\n+12125550150\n", "text/csv")}
        assert (await client.post("/api/v1/campaigns/autumn/leads", files=files, headers=h)).status_code == 200
        assert (await client.post("/api/v1/stop-all", json={"reason": "fire drill"}, headers=h)).json() \
            == {"stopped": [{"name": "spring", "state": "stopped"}]}
    token = new_token(sessions, "crm", "supervisor")
    async with client_for(console, "10.0.0.8") as api:
        r = await api.post("/api/v1/campaigns/autumn/state", json={"command": "start"},
                           headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    rows = [(e.actor, e.via, e.address, e.action, e.target, e.before, e.after) for e in audit_rows(sessions)]
    web = [r for r in rows if r[3] not in ("user.add", "token.add")]
    assert web[0] == ("web:ada", "web", "10.0.0.7", "login", "ada", None, {"role": "admin"})
    assert web[1] == ("web:ada", "web", "10.0.0.7", "campaign.pause", "spring", {"state": "running"},
                      {"state": "paused", "reason": "lunch"})
    assert web[2] == ("web:ada", "web", "10.0.0.7", "campaign.settings", "spring",
                      {"ring_timeout": "25", "max_concurrent": "10"}, {"ring_timeout": "40", "max_concurrent": "12"})
    assert web[3][:5] == ("web:ada", "web", "10.0.0.7", "dnc.add", "+12125550101")
    assert web[3][6]["added"] == 1 and web[3][6]["leads_marked_dnc"] == 1
    assert web[4][:5] == ("web:ada", "web", "10.0.0.7", "leads.load", "autumn")
    assert web[4][6] == {"file": "more.csv", "rows": 1, "loaded": 1, "invalid": 0, "duplicate": 0, "dnc": 0}
    assert web[5][3:6] == ("campaign.stop", "spring", {"state": "paused"})
    assert web[5][6]["reason"] == "fire drill"
    assert web[6] == ("token:crm", "api", "10.0.0.8", "campaign.start", "autumn", {"state": "stopped"},
                      {"state": "running", "reason": None})
    assert ("test", "cli", "localhost", "token.add", "crm", None, {"role": "supervisor"}) in rows


def test_the_command_line_writes_audit_rows_with_its_host(sqlite_url, tmp_path, monkeypatch):
    out, err = io.StringIO(), io.StringIO()
    assert main(["--db", sqlite_url, "campaign", "create", "spring"], out, err) == 0
    assert main(["--db", sqlite_url, "start", "spring", "--reason", "go"], out, err) == 0
    assert main(["--db", sqlite_url, "campaign", "set", "spring", "ring_timeout=30"], out, err) == 0
    assert main(["--db", sqlite_url, "dnc", "add", "+12125550100"], out, err) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert main(["--db", sqlite_url, "web", "user", "add", "zoe", "--role", "viewer"], out, err) == 0, err.getvalue()
    engine = db.create_engine(sqlite_url)
    with db.session_factory(engine).begin() as s:
        rows = [(e.via, e.action, e.target, e.before, e.after) for e in s.scalars(sa.select(AuditEntry))]
        hosts = {e.address for e in s.scalars(sa.select(AuditEntry))}
        user = s.scalar(sa.select(WebUser).where(WebUser.name == "zoe"))
        assert user.password_hash.startswith("$argon2id$") and "a-long-password" not in user.password_hash
    engine.dispose()
    import socket
    assert hosts == {socket.gethostname()}
    assert rows == [
        ("cli", "campaign.start", "spring", {"state": "stopped"}, {"state": "running", "reason": "go"}),
        ("cli", "campaign.settings", "spring", {"ring_timeout": "25"}, {"ring_timeout": "30"}),
        ("cli", "dnc.add", "+12125550100", None, {"added": 1, "leads_marked_dnc": 0, "source": "cli"}),
        ("cli", "user.add", "zoe", None, {"role": "viewer"}),
    ]


# --- bad input: a clear JSON error, nothing changed ------------------------------------------


@pytest.mark.parametrize("method,path,kwargs,status,message", [
    ("POST", "/api/v1/campaigns/spring/state", {"content": b"{nope", "headers": {"Content-Type": "application/json"}},
     400, "body: not valid JSON"),
    ("POST", "/api/v1/campaigns/spring/state", {"json": ["pause"]}, 400, "body: expected a JSON object"),
    ("POST", "/api/v1/campaigns/spring/state", {"content": b"command=pause",
                                                "headers": {"Content-Type": "text/plain"}}, 415, "expected a JSON body"),
    ("POST", "/api/v1/campaigns/spring/state", {"json": {}}, 400, "body: 'command' is required"),
    ("POST", "/api/v1/campaigns/spring/state", {"json": {"command": "explode"}}, 400,
     "command 'explode': expected one of start, pause, resume, stop"),
    ("POST", "/api/v1/campaigns/spring/state", {"json": {"command": 7}}, 400, "body: 'command' must be a string"),
    ("POST", "/api/v1/campaigns/spring/state", {"json": {"command": "pause", "reason": "a\nb"}}, 400,
     "--reason: control characters are not allowed"),
    ("POST", "/api/v1/campaigns/nosuch/state", {"json": {"command": "pause"}}, 404, "no such campaign"),
    ("POST", "/api/v1/campaigns/autumn/state", {"json": {"command": "pause"}}, 409,
     "campaign 'autumn' is stopped: cannot pause it"),
    ("PATCH", "/api/v1/campaigns/spring/settings", {"json": {"settings": {"ring_timeout": "5"}}}, 400,
     "ring_timeout"),
    ("PATCH", "/api/v1/campaigns/spring/settings", {"json": {"settings": {"colour": "red"}}}, 400, "colour"),
    ("PATCH", "/api/v1/campaigns/spring/settings", {"json": {"settings": {"ring_timeout": 30}}}, 400,
     "give the value as text"),
    ("PATCH", "/api/v1/campaigns/spring/settings", {"json": {"settings": {"dial_ratio": "5"}}}, 400,
     "above max_dial_level"),
    ("POST", "/api/v1/dnc", {"json": {"numbers": ["+12125550100", "12"]}}, 400, "'12'"),
    ("POST", "/api/v1/dnc", {"json": {"numbers": "+12125550100"}}, 400, "'numbers' must be a non-empty list"),
    ("GET", "/api/v1/leads", {}, 400, "query: 'phone' is required"),
    ("GET", "/api/v1/leads?phone=hello", {}, 400, "hello"),
    ("GET", "/api/v1/campaigns/spring/report?format=xml", {}, 400, "format 'xml'"),
    ("GET", "/api/v1/campaigns/spring/report?since=yesterdayish", {}, 400, "yesterdayish"),
    ("GET", "/api/v1/campaigns/nosuch/report", {}, 404, "no such campaign"),
    ("GET", "/api/v1/audit?limit=lots", {}, 400, "limit"),
    ("POST", "/api/v1/campaigns/spring/leads", {"content": b"x", "headers": {"Content-Type": "image/png"}}, 415,
     "expected multipart/form-data"),
    ("POST", "/api/v1/campaigns/spring/leads", {"files": {"other": ("a.csv", b"phone\n")}}, 400, "'file' field"),
    ("POST", "/api/v1/campaigns/spring/leads", {"files": {"file": ("a.csv", b"name,age\nann,3\n")}}, 400, "phone"),
    ("POST", "/api/v1/campaigns/spring/leads", {"files": {"file": ("a.csv", b"\x89PNG\r\n\x1a\n\x00\x00")}}, 400, "a.csv"),
    ("GET", "/api/v1/rejects/nonexistent", {}, 404, "no such rejects report"),
    ("GET", "/api/v1/campaigns/nosuch", {}, 404, "no such campaign"),
    ("GET", "/api/v1/nothing-here", {}, 404, "Not Found"),
])
async def test_bad_requests_get_a_clear_json_error_and_change_nothing(console, sessions, method, path, kwargs,
                                                                     status, message):
    token = new_token(sessions, "ops", "admin")
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    with sessions.begin() as s:
        before = (s.scalar(sa.select(sa.func.count()).select_from(Lead)),
                  s.scalar(sa.select(sa.func.count()).select_from(DncNumber)),
                  [(c.name, c.state, c.ring_timeout) for c in s.scalars(sa.select(Campaign).order_by(Campaign.id))])
    async with client_for(console) as client:
        r = await client.request(method, path, headers=headers, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["status"] == status and message in error["message"], error
    assert "\n" not in error["message"]
    with sessions.begin() as s:
        after = (s.scalar(sa.select(sa.func.count()).select_from(Lead)),
                 s.scalar(sa.select(sa.func.count()).select_from(DncNumber)),
                 [(c.name, c.state, c.ring_timeout) for c in s.scalars(sa.select(Campaign).order_by(Campaign.id))])
    assert after == before


async def test_settings_are_refused_with_the_command_line_s_message(console, sessions, sqlite_url):
    token = new_token(sessions, "ops", "admin")
    async with client_for(console) as client:
        r = await client.patch("/api/v1/campaigns/spring/settings", json={"settings": {"ring_timeout": "5"}},
                               headers={"Authorization": f"Bearer {token}"})
    err = io.StringIO()
    assert main(["--db", sqlite_url, "campaign", "set", "spring", "ring_timeout=5"], io.StringIO(), err) != 0
    assert err.getvalue() == f"dialer: {r.json()['error']['message']}\n"


# --- the API's reads --------------------------------------------------------------------------


async def test_lead_lookup_dnc_check_report_and_live_state(console, sessions):
    token = new_token(sessions, "crm", "supervisor")
    h = {"Authorization": f"Bearer {token}"}
    async with client_for(console) as client:
        r = await client.get("/api/v1/leads", params={"phone": "(212) 555-0100"}, headers=h)
        body = r.json()
        assert body["phone"] == "+12125550100" and body["dnc"] is False
        assert [(x["campaign"], x["state"], x["calls"]) for x in body["leads"]] == [("spring", "new", [])]
        assert (await client.get("/api/v1/dnc/2125550100", headers=h)).json() == {"phone": "+12125550100",
                                                                                  "listed": False}
        report = (await client.get("/api/v1/campaigns/spring/report", headers=h)).json()
        assert report["format"] == "dialer-report/1" and report["leads"]["total"] == 2
        r = await client.get("/api/v1/campaigns/spring/report?format=csv", headers=h)
        assert r.headers["content-type"].startswith("text/csv") and "attachment" in r.headers["content-disposition"]
        await console.wallboard.refresh()
        live = (await client.get("/api/v1/live", headers=h)).json()
        assert [c["name"] for c in live["campaigns"]] == ["autumn", "spring"]
        assert live["campaigns"][1]["leads"]["left"] == 2
        spec = (await client.get("/api/v1/openapi.json", headers=h)).json()
        assert "/api/v1/campaigns/{name}/state" in spec["paths"]


async def test_upload_reports_rejects_only_to_its_uploader(console, sessions):
    sam, sam_csrf = await session_client(console, "sam")
    async with sam:
        files = {"file": ("leads.csv", b"phone,first_name\n+12125550160,Ann\nbad,Bob\n+12125550160,Ann\n", "text/csv")}
        r = await sam.post("/api/v1/campaigns/autumn/leads", files=files, headers={"X-CSRF-Token": sam_csrf})
        body = r.json()
        assert (body["loaded"], body["invalid"], body["duplicate"], body["rejected"]) == (1, 1, 1, 2)
        rejects = await sam.get(body["rejects_url"])
        assert rejects.status_code == 200
        assert rejects.text.splitlines()[0] == "line,reason,phone,first_name"
        assert [line.split(",")[0] for line in rejects.text.splitlines()[1:]] == ["3", "4"]
    token = new_token(sessions, "other", "supervisor")
    async with client_for(console) as other:
        r = await other.get(body["rejects_url"], headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 404


async def test_metrics_open_on_loopback_else_a_token(sessions, clock):
    console = make_console(sessions, clock)
    await console.wallboard.refresh()
    async with client_for(console, "127.0.0.1") as client:
        r = await client.get("/metrics")
        assert r.status_code == 200
        assert 'dialer_campaign_state{campaign="spring",state="running"} 1.0' in r.text
    console = make_console(sessions, clock, loopback=False)
    await console.wallboard.refresh()
    token = new_token(sessions, "prom", "viewer")
    async with client_for(console) as client:
        assert (await client.get("/metrics")).status_code == 401
        r = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and "dialer_abandon_target" in r.text


def test_tokens_are_stored_hashed_and_shown_once(sqlite_url):
    out, err = io.StringIO(), io.StringIO()
    assert main(["--db", sqlite_url, "web", "token", "add", "crm", "--role", "supervisor"], out, err) == 0
    token = out.getvalue().strip()
    assert token.startswith("dlr_") and len(token) > 40
    engine = db.create_engine(sqlite_url)
    with db.session_factory(engine).begin() as s:
        row = s.scalar(sa.select(ApiToken))
        assert row.token_hash == auth.sha256(token) and token not in json.dumps([row.token_hash, row.name])
        assert auth.token_identity(s, token).role == "supervisor"
    engine.dispose()
    err = io.StringIO()
    assert main(["--db", sqlite_url, "web", "token", "add", "crm", "--role", "boss"], io.StringIO(), err) == 2
    assert "--role" in err.getvalue()


@pytest.mark.parametrize("stdin,message", [
    ("short\n", "password: must be 10 to 1024 characters long"),
    ("", "password: nothing on standard input"),
])
def test_user_add_refuses_a_bad_password(sqlite_url, monkeypatch, stdin, message):
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    err = io.StringIO()
    assert main(["--db", sqlite_url, "web", "user", "add", "zoe", "--role", "admin"], io.StringIO(), err) == 1
    assert err.getvalue() == f"dialer: {message}" + ("" if message.endswith(")") else "") + \
        (" (give it as the first line)\n" if stdin == "" else "\n")


def test_stop_all_from_the_command_line(sqlite_url):
    engine = db.create_engine(sqlite_url)
    sessions = db.session_factory(engine)
    make_campaign(sessions, "a", (), state="running")
    make_campaign(sessions, "b", (), state="paused")
    make_campaign(sessions, "c", (), state="stopped")
    out, err = io.StringIO(), io.StringIO()
    assert main(["--db", sqlite_url, "stop", "--all", "--reason", "fire"], out, err) == 0, err.getvalue()
    assert out.getvalue() == "campaign a: stopped\ncampaign b: stopped\n"
    with sessions.begin() as s:
        assert dict(s.execute(sa.select(Campaign.name, Campaign.state)).all()) == {
            "a": "stopped", "b": "stopped", "c": "stopped"}
    out = io.StringIO()
    assert main(["--db", sqlite_url, "stop", "--all"], out, io.StringIO()) == 0
    assert out.getvalue() == "no campaign to stop\n"
    err = io.StringIO()
    assert main(["--db", sqlite_url, "stop", "a", "--all"], io.StringIO(), err) == 1
    assert err.getvalue() == "dialer: stop: give a campaign NAME or --all (not both)\n"
    assert main(["--db", sqlite_url, "stop"], io.StringIO(), io.StringIO()) == 1
    engine.dispose()


async def test_admins_manage_users_and_tokens_from_the_console(console, sessions):
    client, csrf = await session_client(console, "ada", "10.0.0.9")
    h = {"X-CSRF-Token": csrf}
    async with client:
        assert (await client.get("/admin")).status_code == 200
        r = await client.post("/api/v1/users", json={"name": "zed", "role": "supervisor",
                                                     "password": "zed-password-1"}, headers=h)
        assert r.json() == {"name": "zed", "role": "supervisor"}
        r = await client.post("/api/v1/users", json={"name": "zed", "role": "viewer", "password": "x"}, headers=h)
        assert r.status_code == 400 and r.json()["error"]["message"] == "password: must be 10 to 1024 characters long"
        r = await client.post("/api/v1/tokens", json={"name": "crm", "role": "viewer"}, headers=h)
        token = r.json()["token"]
        assert r.headers["cache-control"] == "no-store"
        async with client_for(console) as api:
            assert (await api.get("/api/v1/live", headers={"Authorization": f"Bearer {token}"})).status_code != 401
            assert (await client.post("/api/v1/tokens/crm/revoke", headers=h)).status_code == 200
            assert (await api.get("/api/v1/live", headers={"Authorization": f"Bearer {token}"})).status_code == 401
        assert (await client.post("/api/v1/users/ada/disable", headers=h)).status_code == 400
        assert (await client.post("/api/v1/users/zed/disable", headers=h)).status_code == 200
        people = (await client.get("/api/v1/people")).json()
        assert {u["name"]: u["disabled"] for u in people["users"]}["zed"] is True
    sam, sam_csrf = await session_client(console, "sam")
    async with sam:
        r = await sam.post("/api/v1/users", json={"name": "eve", "role": "admin", "password": "eve-password-1"},
                           headers={"X-CSRF-Token": sam_csrf})
        assert r.status_code == 403
    actions = [(e.actor, e.action, e.target) for e in audit_rows(sessions) if e.address == "10.0.0.9"]
    assert actions == [("web:ada", "login", "ada"), ("web:ada", "user.add", "zed"), ("web:ada", "token.add", "crm"),
                       ("web:ada", "token.revoke", "crm"), ("web:ada", "user.disable", "zed")]


async def test_metrics_carry_the_engines_figures(sessions, clock):
    import time as _time

    from dialer.models import LiveState
    from tests.web_harness import live_doc

    wall = _time.time()
    with sessions.begin() as s:
        cid = s.scalar(sa.select(Campaign.id).where(Campaign.name == "spring"))
        doc = live_doc("spring", "e1", wall, health={"event_lag": {"median": 0.012, "max": 0.05, "samples": 4},
                                                 "db_unit": {"median": 0.003, "max": 0.02, "samples": 9}})
        doc["connections"][0].update(originates_sent=120, failures=3)
        s.add(LiveState(engine_id="e1", campaign_id=cid, heartbeat_at=utcnow(), data=doc))
    console = make_console(sessions, clock)
    await console.wallboard.refresh()
    async with client_for(console, "127.0.0.1") as client:
        text = (await client.get("/metrics")).text
    for line in ('dialer_originates_sent_total{connection="e1#1",engine="e1",server="pbx"} 120.0',
                 'dialer_originates_refused_total{connection="e1#1",engine="e1",server="pbx"} 3.0',
                 'dialer_connection_up{connection="e1#1",engine="e1",server="pbx"} 1.0',
                 'dialer_connection_rate_cap{connection="e1#1",engine="e1",server="pbx"} 20.0',
                 'dialer_calls_ringing{campaign="spring"} 3.0',
                 'dialer_agents{campaign="spring",state="talking"} 1.0',
                 'dialer_event_lag_seconds{engine="e1",stat="median"} 0.012',
                 'dialer_db_unit_seconds{engine="e1",stat="max"} 0.02'):
        assert line in text, line
