"""The console served for real (Hypercorn on trio): pushes within a second of a
change, TLS with a certificate and key, the bind checks, and ``dialer demo --web``."""

from __future__ import annotations

import functools
import io
import json
import re
import signal
import ssl
import subprocess
import sys
import time

import httpx
import pytest
import trio
import trustme

from dialer import db
from dialer.campaigns import control
from dialer.cli import main
from dialer.models import utcnow
from dialer.web.server import Bind, check_exposure, parse_bind, serve
from tests.engine_harness import make_campaign
from tests.web_harness import PASSWORDS, add_users


@pytest.fixture
def sessions(sqlite_url):
    engine = db.create_engine(sqlite_url)
    factory = db.session_factory(engine)
    add_users(factory)
    make_campaign(factory, "spring", (), state="running")
    yield factory
    engine.dispose()


async def log_in(client: httpx.AsyncClient, name: str = "sam") -> str:
    page = await client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = await client.post("/login", data={"name": name, "password": PASSWORDS[name][1], "csrf": token})
    assert r.status_code == 303, r.text
    page = await client.get("/")
    return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)


async def next_board(lines) -> dict:
    async for line in lines:
        if line.startswith("data: "):
            return json.loads(line[6:])
    raise AssertionError("the stream ended")


async def test_a_state_change_reaches_an_open_wallboard_stream(sessions):
    async with trio.open_nursery() as nursery:
        url = await nursery.start(functools.partial(serve, sessions, Bind("127.0.0.1", 0)))
        async with httpx.AsyncClient(base_url=url) as client:
            csrf = await log_in(client)
            async with client.stream("GET", "/events", timeout=10) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                lines = stream.aiter_lines()
                first = await next_board(lines)
                assert [c["state"] for c in first["campaigns"]] == ["running"]
                # A change made elsewhere (here: as the command line would).
                with sessions.begin() as s:
                    control.issue(s, "spring", "pause", now=utcnow())
                changed_at = time.monotonic()
                with trio.fail_after(5):
                    doc = await next_board(lines)
                assert [c["state"] for c in doc["campaigns"]] == ["paused"]
                assert doc["version"] > first["version"]
                print(f"pushed {time.monotonic() - changed_at:.3f} s after the change")
                # And a change through the API, by another client.
                r = await client.post("/api/v1/campaigns/spring/state", json={"command": "resume"},
                                      headers={"X-CSRF-Token": csrf})
                assert r.status_code == 200
                with trio.fail_after(5):
                    doc = await next_board(lines)
                assert [c["state"] for c in doc["campaigns"]] == ["running"]
        nursery.cancel_scope.cancel()


async def test_tls_with_a_certificate_and_key(sessions, tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    async with trio.open_nursery() as nursery:
        url = await nursery.start(functools.partial(serve, sessions, Bind("127.0.0.1", 0),
                                                    tls=(cert_file, key_file)))
        assert url.startswith("https://")
        ssl_context = ssl.create_default_context()
        ca.configure_trust(ssl_context)
        async with httpx.AsyncClient(base_url=url, verify=ssl_context) as client:
            page = await client.get("/login")
            assert page.status_code == 200
            assert page.headers["strict-transport-security"] == "max-age=31536000"
            assert "Secure" in page.headers["set-cookie"]
            await log_in(client)
            assert (await client.get("/api/v1/campaigns")).status_code == 200
        async with httpx.AsyncClient(base_url=url.replace("https", "http")) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get("/login")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("text,bind", [("127.0.0.1:8080", Bind("127.0.0.1", 8080)),
                                       ("[::1]:9000", Bind("::1", 9000)), ("0.0.0.0:0", Bind("0.0.0.0", 0))])
def test_parse_bind(text, bind):
    assert parse_bind(text) == bind


@pytest.mark.parametrize("argv,message", [
    (["--bind", "0.0.0.0:8080"], "dialer: --bind 0.0.0.0: not a loopback address, and no TLS"),
    (["--bind", "8080"], "dialer: --bind '8080': expected HOST:PORT, e.g. 127.0.0.1:8080"),
    (["--bind", "127.0.0.1:99999"], "dialer: --bind '127.0.0.1:99999': port must be a number from 0 to 65535"),
    (["--cert", "/nonexistent.pem"], "dialer: --cert and --key: give both (or neither)"),
    (["--cert", "/nonexistent.pem", "--key", "/nonexistent.key"], "dialer: --cert /nonexistent.pem: file not found"),
])
def test_dialer_web_refuses_bad_or_exposed_binds(sqlite_url, argv, message):
    err = io.StringIO()
    assert main(["--db", sqlite_url, "web", *argv], io.StringIO(), err) == 1
    assert err.getvalue().startswith(message), err.getvalue()
    assert err.getvalue().count("\n") == 1


def test_a_certificate_that_is_not_one_is_refused(sqlite_url, tmp_path):
    (tmp_path / "c.pem").write_text("not a certificate")
    (tmp_path / "k.pem").write_text("not a key")
    err = io.StringIO()
    assert main(["--db", sqlite_url, "web", "--cert", str(tmp_path / "c.pem"), "--key", str(tmp_path / "k.pem")],
                io.StringIO(), err) == 1
    assert "not a usable certificate and key" in err.getvalue()


def test_an_exposed_bind_is_allowed_only_when_asked():
    check_exposure(Bind("10.0.0.1", 80), tls=False, allow_insecure=True)
    check_exposure(Bind("10.0.0.1", 80), tls=True, allow_insecure=False)
    check_exposure(Bind("localhost", 80), tls=False, allow_insecure=False)


def test_demo_with_the_console(tmp_path):
    """dialer demo --web: the printed address and password log in; the demo
    campaign shows on the live state; after the last call Ctrl-C ends it cleanly."""
    proc = subprocess.Popen([sys.executable, "-m", "dialer", "demo", "--web", "--web-bind", "127.0.0.1:0",
                             "--speed", "50", "--dir", str(tmp_path / "demo")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("web console:"):
                break
        found = re.match(r"web console: (\S+)  \(user demo, password (\S+)\)", lines[-1])
        assert found, "".join(lines)
        url, password = found.groups()
        with httpx.Client(base_url=url) as client:
            page = client.get("/login")
            token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            r = client.post("/login", data={"name": "demo", "password": password, "csrf": token})
            assert r.status_code == 303
            deadline = time.monotonic() + 30
            while True:
                live = client.get("/api/v1/live").json()
                if live["campaigns"] and live["campaigns"][0]["live"]:
                    break
                assert time.monotonic() < deadline, live
                time.sleep(0.2)
            assert live["campaigns"][0]["name"] == "demo"
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("every lead is dialed"):
                break
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, "".join(lines) + rest
        assert "demo" in rest and "abandon" in rest.lower()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
