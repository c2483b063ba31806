"""Logging in to a real Asterisk: TLS with certificate verification, the MD5
challenge, a wrong secret, and a user that may not Originate."""

from __future__ import annotations

import dataclasses
import io
import logging

import pytest
import sqlalchemy as sa
import trio
import trustme

from dialer.ami.connection import open_ami
from dialer.ami.errors import AuthenticationError, ConnectError
from dialer.cli import main
from dialer.engine import Engine
from dialer.models import CallAttempt, Campaign, Lead
from tests.real_tier import campaign, fast_settings, phones, sessions_for

pytestmark = pytest.mark.asterisk


def leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for e in group.exceptions for leaf in leaves(e)]
    return [group]


async def ping(config) -> dict:
    async with open_ami(**config.open_kwargs(), events=False, ping_interval=None,
                        reconnect=False, login_timeout=5) as ami:
        reply = await ami.action("Ping")
        return dict(reply.items())


async def test_tls_login_verifies_the_certificate(asterisk):
    config = asterisk.config_for_dialer(tls=True)
    assert config.port == asterisk.tls_port and config.ca_file == asterisk.ca_file
    assert (await ping(config))["Ping"] == "Pong"


async def test_tls_with_another_ca_is_refused_with_a_clear_error(asterisk, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    config = asterisk.config_for_dialer(tls=True, ca_file=other)
    with pytest.raises(ConnectError) as caught:
        await ping(config)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{asterisk.host}:{asterisk.tls_port}" in message
    assert "certificate verify failed" in message


async def test_tls_with_a_name_the_certificate_does_not_carry_is_refused(asterisk):
    config = asterisk.config_for_dialer(tls=True, server_hostname="pbx.example.com")
    with pytest.raises(ConnectError) as caught:
        await ping(config)
    assert "certificate" in str(caught.value) and "\n" not in str(caught.value)


async def test_md5_challenge_login(asterisk):
    config = asterisk.config_for_dialer(md5=True)
    assert (await ping(config))["Ping"] == "Pong"
    # ... also over TLS
    assert (await ping(dataclasses.replace(asterisk.config_for_dialer(tls=True), md5=True)))["Ping"] == "Pong"


@pytest.mark.parametrize("md5", [False, True])
def test_a_wrong_secret_is_a_clear_error_that_never_shows_the_secret(asterisk, tmp_path, md5):
    wrong = "Wr0ng-s3cret-" + asterisk.secrets["dialer"][-6:]
    (tmp_path / "secret").write_text(wrong + "\n")
    config = tmp_path / "dialer.toml"
    text = asterisk.dialer_toml().replace(str(asterisk.secret_file("dialer")), str(tmp_path / "secret"))
    config.write_text(text + f"md5 = {'true' if md5 else 'false'}\n")
    out, err = io.StringIO(), io.StringIO()
    status = main(["ami", "ping", "--config", str(config)], out, err)
    assert status != 0
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1, err.getvalue()
    assert lines[0].startswith("dialer: ") and "Authentication failed" in lines[0]
    assert "dialer" in lines[0] and str(asterisk.port) in lines[0]
    for secret in (wrong, asterisk.secrets["dialer"]):
        assert secret not in out.getvalue() + err.getvalue()


async def test_a_wrong_secret_stops_the_engine_with_a_clear_error_and_is_never_logged(asterisk, tmp_path,
                                                                            sqlite_url, caplog):
    (tmp_path / "secret").write_text("not-the-secret-at-all\n")
    config = asterisk.config_for_dialer(secret_file=tmp_path / "secret")
    engine_db, sessions = sessions_for(sqlite_url)
    campaign(sessions, "denied", phones("0000"), mode="progressive")
    engine = Engine(sessions, [config], settings=fast_settings(), until_done=True)
    caplog.set_level(logging.DEBUG)
    refused = []
    try:
        with trio.fail_after(10):
            await engine.run()
    except* AuthenticationError as group:
        refused = leaves(group)
    finally:
        engine_db.dispose()
    # The engine stops with the login error (the command line prints it as one line).
    assert len(refused) == 1
    assert str(refused[0]) == (f"AMI server pbx1#1 ({asterisk.host}:{asterisk.port}):"
                               " login as 'dialer' failed: Authentication failed")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and all("Authentication failed" in r.getMessage() for r in errors)
    assert "not-the-secret-at-all" not in caplog.text
    with sessions.begin() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(CallAttempt)) == 0
        assert set(s.scalars(sa.select(Lead.state))) == {"new"}


async def test_a_user_that_may_not_originate_gets_a_clear_error_and_no_lead_fails(
        asterisk, sqlite_url, caplog):
    engine_db, sessions = sessions_for(sqlite_url)
    campaign(sessions, "nope", phones("0123"), mode="progressive", dial_ratio=3, max_dial_level=3)
    engine = Engine(sessions, [asterisk.config_for_dialer(user="limited")], settings=fast_settings(),
                    until_done=True)
    caplog.set_level(logging.INFO)
    try:
        # This user cannot read "system" (no FullyBooted): the engine takes the
        # server as ready 10 s after login.
        with trio.move_on_after(14):
            await engine.run()
    finally:
        engine_db.dispose()
    denied = [r.getMessage() for r in caplog.records
              if r.levelno >= logging.ERROR and "may not Originate" in r.getMessage()]
    assert len(denied) == 1, caplog.text
    assert "limited" in denied[0] and "write = originate" in denied[0] and "Permission denied" in denied[0]
    assert asterisk.secrets["limited"] not in caplog.text
    with sessions.begin() as s:
        leads = s.execute(sa.select(Lead.state, Lead.attempts, Lead.last_disposition)).all()
        failed = s.scalar(sa.select(sa.func.count()).where(CallAttempt.disposition.is_not(None)))
    # Handed back as never dialed: waiting, no attempt counted, no attempt row left.
    assert leads and all(state == "new" and tries == 0 and last is None for state, tries, last in leads)
    assert failed == 0
    # The engine stopped trying after the first refusal: the calls queued
    # behind it were never sent.
    assert engine.counters["originates"] == 1
    assert engine.counters["not_sent"] == len(leads)
    # With no connection left that may dial, the campaign is paused, saying why.
    with sessions.begin() as s:
        assert s.scalar(sa.select(Campaign.state)) == "paused"
