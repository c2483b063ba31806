"""Serving the console: Hypercorn's trio worker, the wallboard reader, TLS and the bind check."""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

import trio
from sqlalchemy.orm import sessionmaker

from dialer import db
from dialer.errors import UserError

DEFAULT_BIND = "127.0.0.1:8080"
log = logging.getLogger("dialer.web")


@dataclass(frozen=True)
class Bind:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def hypercorn(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_bind(text: str, where: str = "--bind") -> Bind:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6); port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise UserError(f"{where} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"{where} {text!r}: port must be a number from 0 to 65535")
    if any(c.isspace() for c in host):
        raise UserError(f"{where} {text!r}: bad host")
    return Bind(host, int(port))


def check_tls(cert: str | None, key: str | None) -> tuple[Path, Path] | None:
    """Both files or neither; each readable and a usable certificate/key pair."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise UserError("--cert and --key: give both (or neither)")
    for flag, path in (("--cert", cert), ("--key", key)):
        if not Path(path).is_file():
            raise UserError(f"{flag} {path}: file not found")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise UserError(f"--cert {cert} / --key {key}: not a usable certificate and key ({exc})") from None
    return Path(cert), Path(key)


def check_exposure(bind: Bind, tls: bool, allow_insecure: bool) -> None:
    if not bind.loopback and not tls and not allow_insecure:
        raise UserError(
            f"--bind {bind.host}: not a loopback address, and no TLS: passwords and session cookies"
            " would cross the network in clear; give --cert and --key (or --allow-insecure-http"
            " behind a TLS proxy)")


async def serve(
    sessions: sessionmaker,
    bind: Bind,
    *,
    tls: tuple[Path, Path] | None = None,
    poll: float = 0.1,
    task_status=trio.TASK_STATUS_IGNORED,
) -> None:
    """Read the wallboard and serve the console until cancelled; ``task_status``
    gets the URL it listens on."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    from dialer.web.app import Console, create_app
    from dialer.web.board import Wallboard

    readers = sessionmaker(db.create_engine(sessions.kw["bind"].url, readers=True), expire_on_commit=False)
    wallboard = Wallboard(readers, poll=poll)
    console = Console(sessions=sessions, wallboard=wallboard, tls=tls is not None, loopback=bind.loopback,
                      readers=readers)
    app = create_app(console)
    config = Config()
    config.bind = [bind.hypercorn()]
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 75
    if tls is not None:
        config.certfile, config.keyfile = str(tls[0]), str(tls[1])
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(wallboard.run)
            binds = await nursery.start(lambda task_status: hypercorn_serve(app, config, task_status=task_status))
            url = binds[0] if binds else f"{'https' if tls else 'http'}://{bind.hypercorn()}"
            task_status.started(url)
    finally:
        readers.kw["bind"].dispose()
