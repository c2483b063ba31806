"""A real Asterisk for the test suite: configuration, start, readiness, stop.

The configuration is the project's own (``tests/asterisk/``); ``AsteriskInstance``
writes it into a short temporary folder under ``/tmp`` (the control socket's
path must stay under 107 bytes), picks free ports for plain AMI and AMI over
TLS, makes a certificate for the instance with ``trustme``, starts
``asterisk -C … -f -n`` as a child process and waits until AMI accepts a login
and ``FullyBooted`` has arrived.

Asterisk is found through ``$DIALER_TEST_ASTERISK`` (the folder where the
tarball is unpacked, containing ``sbin/asterisk``) or ``asterisk`` on ``PATH``.
``tests/run.sh`` unpacks the tarball of ``../shared/asterisk/`` when it is
there and sets the variable.

Everything here is synchronous (sockets and ``subprocess``) so that sync tests,
trio tests and fixtures can all use it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dialer.ami.codec.message import Banner, Message
from dialer.ami.codec.parser import NEED_DATA, AMIParser

CONFIG_DIR = Path(__file__).resolve().parent / "asterisk"
ENV = "DIALER_TEST_ASTERISK"
HOW_TO_RUN = (
    f"set {ENV} to an unpacked asterisk-22 folder (containing sbin/asterisk), "
    "or run bash tests/run.sh"
)
DEFAULT_AGENTS = 3
DEFAULT_AGENT_TALK = 4
# The drop message's prompts (tests/asterisk/extensions.conf [dialer-drop], the
# README's names): silent recordings of these lengths (seconds), written as
# 8 kHz mu-law into the instance's sounds folder (the tarball ships no sounds).
PROMPTS = {
    "dialer-this-is-acme-call-back-18005550100": 1.0,
    "dialer-press-9-to-opt-out": 1.0,
    "dialer-you-will-not-be-called-again": 0.5,
}
# The [agents] queue's settings in tests/asterisk/queues.conf, as set_queue()
# restores them.
QUEUE_DEFAULTS = {"wrapuptime": "0", "ringinuse": "no", "joinempty": "no", "leavewhenempty": "no"}
BOOT_TIMEOUT = 30.0


class AsteriskNotFound(Exception):
    pass


class AsteriskStartError(Exception):
    pass


@dataclass(frozen=True)
class AsteriskInstall:
    """Where the binary, the modules and the data (XML docs) are."""

    binary: Path
    moddir: Path
    datadir: Path

    @property
    def prefix(self) -> Path:
        return self.binary.parent.parent


def find_asterisk() -> AsteriskInstall:
    """The Asterisk to test against, or AsteriskNotFound saying why."""
    folder = os.environ.get(ENV)
    if folder:
        root = Path(folder)
        binary = root / "sbin" / "asterisk"
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise AsteriskNotFound(f"{ENV}={folder}: no executable sbin/asterisk there")
        return AsteriskInstall(binary, root / "lib" / "asterisk" / "modules", root / "var" / "lib" / "asterisk")
    found = shutil.which("asterisk")
    if found is None:
        raise AsteriskNotFound(f"no Asterisk ({ENV} is not set and asterisk is not on PATH)")
    binary = Path(found).resolve()
    prefix = binary.parent.parent
    candidates = [prefix / "lib" / "asterisk" / "modules", Path("/usr/lib/asterisk/modules"),
                  Path("/usr/lib/x86_64-linux-gnu/asterisk/modules")]
    moddir = next((p for p in candidates if (p / "app_queue.so").exists()), None)
    if moddir is None:
        raise AsteriskNotFound(f"{binary}: no modules folder with app_queue.so found")
    datadirs = [prefix / "var" / "lib" / "asterisk", Path("/usr/share/asterisk"), Path("/var/lib/asterisk")]
    datadir = next((p for p in datadirs if p.is_dir()), datadirs[0])
    return AsteriskInstall(binary, moddir, datadir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AMIError(Exception):
    """An AMI action answered with ``Response: Error``."""


class SyncAMI:
    """A minimal blocking AMI client for test control (not the dialer's client)."""

    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 timeout: float = 10.0, events: str = "off") -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.parser = AMIParser(role="client")
        self.pending: list[Message] = []
        self.counter = 0
        self._next(timeout)  # the banner
        reply = self.action("Login", Username=username, Secret=secret, Events=events)
        if reply.get("Response") != "Success":
            self.close()
            raise AMIError(f"login as {username}: {reply.get('Message')}")

    def _next(self, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            item = self.parser.next_event()
            if item is not NEED_DATA:
                return item
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no AMI message in time")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("AMI connection closed")
            self.parser.receive_data(data)

    def send(self, action: str, **headers: str) -> str:
        self.counter += 1
        action_id = headers.pop("ActionID", f"t-{self.counter}")
        lines = [f"Action: {action}", f"ActionID: {action_id}"]
        for key, value in headers.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            lines.extend(f"{key}: {v}" for v in values)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return action_id

    def action(self, action: str, *, timeout: float = 10.0, **headers: str) -> Message:
        """Send one action and return its Response (events meanwhile are kept)."""
        action_id = self.send(action, **headers)
        deadline = time.monotonic() + timeout
        while True:
            item = self._next(max(0.0, deadline - time.monotonic()))
            if isinstance(item, Banner):
                continue
            if item.kind == "response" and item.action_id == action_id:
                return item
            self.pending.append(item)

    def wait_event(self, name: str, *, timeout: float = 10.0, **match: str) -> Message:
        """The next event named ``name`` whose headers match ``match``."""
        def fits(m: Message) -> bool:
            return (m.kind == "event" and m.name == name
                    and all(m.get(k) == v for k, v in match.items()))
        for i, m in enumerate(self.pending):
            if fits(m):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            item = self._next(max(0.0, deadline - time.monotonic()))
            if not isinstance(item, Banner) and fits(item):
                return item
            if not isinstance(item, Banner):
                self.pending.append(item)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "SyncAMI":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.send("Logoff")
        except OSError:
            pass
        self.close()


@dataclass
class AsteriskInstance:
    """One Asterisk child process with the project's configuration.

    Public attributes: ``host``, ``port`` (plain AMI), ``tls_port``,
    ``secrets`` (user -> secret for ``dialer``, ``admin``, ``limited``,
    ``monitor``), ``run_dir``, ``log`` (Asterisk's console output, verbose 3),
    ``ca_file`` (PEM of the CA that signed the TLS certificate),
    ``server_hostname`` (the name the certificate carries), ``agents``.
    """

    install: AsteriskInstall
    agents: int = DEFAULT_AGENTS
    host: str = "127.0.0.1"
    port: int = 0
    tls_port: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    run_dir: Path = field(default=Path())
    server_hostname: str = "localhost"
    process: subprocess.Popen | None = None
    _log_file: object = None

    USERS = ("dialer", "admin", "limited", "monitor")

    def __post_init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="dast-", dir="/tmp"))
        for sub in ("etc", "lib", "db", "agi", "cache", "spool", "run", "log", "tls", "data"):
            (self.run_dir / sub).mkdir()
        self.queue_options = dict(QUEUE_DEFAULTS)
        self.secrets = {user: f"{user}-{secrets.token_hex(8)}" for user in self.USERS}
        self._make_certificate()
        self._pick_ports()

    # --- paths ---------------------------------------------------------------

    @property
    def log(self) -> Path:
        return self.run_dir / "log" / "console.log"

    @property
    def messages_log(self) -> Path:
        return self.run_dir / "log" / "messages"

    @property
    def ca_file(self) -> Path:
        return self.run_dir / "tls" / "ca.pem"

    @property
    def tls_cert(self) -> Path:
        return self.run_dir / "tls" / "cert.pem"

    @property
    def tls_key(self) -> Path:
        return self.run_dir / "tls" / "key.pem"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # --- configuration -------------------------------------------------------

    def _make_certificate(self) -> None:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.cert_chain_pems[0].write_to_path(str(self.tls_cert))
        cert.private_key_pem.write_to_path(str(self.tls_key))

    def _pick_ports(self) -> None:
        self.port = free_port()
        self.tls_port = free_port()
        while self.tls_port == self.port:
            self.tls_port = free_port()

    def _write_config(self) -> None:
        members = "\n".join(
            f"member => Local/agent{i}@agents,0,Agent{i}" for i in range(1, self.agents + 1)
        )
        values = {
            "PREFIX": str(self.install.prefix),
            "RUN": str(self.run_dir),
            "AMI_PORT": str(self.port),
            "TLS_PORT": str(self.tls_port),
            "TLS_CERT": str(self.tls_cert),
            "TLS_KEY": str(self.tls_key),
            "AGENT_MEMBERS": members,
        }
        values.update({f"AGENTS_{key.upper()}": value for key, value in self.queue_options.items()})
        values.update({f"{user.upper()}_SECRET": s for user, s in self.secrets.items()})
        etc = self.run_dir / "etc"
        for source in sorted(CONFIG_DIR.glob("*.conf")):
            text = source.read_text()
            for key, value in values.items():
                text = text.replace(f"@{key}@", value)
            target = self.run_dir / source.name if source.name == "asterisk.conf" else etc / source.name
            target.write_text(text)
        # The install's own folders override the template's defaults.
        conf = self.run_dir / "asterisk.conf"
        text = conf.read_text()
        text = text.replace(f"astmoddir => {self.install.prefix}/lib/asterisk/modules",
                            f"astmoddir => {self.install.moddir}")
        conf.write_text(text)
        self._write_data()

    def _write_data(self) -> None:
        """The data folder: the install's (XML docs, ...) linked in, plus the drop
        message's prompts as silence."""
        data = self.run_dir / "data"
        if self.install.datadir.is_dir():
            for entry in self.install.datadir.iterdir():
                link = data / entry.name
                if entry.name != "sounds" and not link.exists():
                    link.symlink_to(entry)
        sounds = data / "sounds" / "en"
        sounds.mkdir(parents=True, exist_ok=True)
        for name, seconds in PROMPTS.items():
            (sounds / f"{name}.ulaw").write_bytes(b"\xff" * int(8000 * seconds))

    # --- life cycle ----------------------------------------------------------

    def start(self, *, timeout: float = BOOT_TIMEOUT) -> None:
        """Start Asterisk (again: same ports, same AstDB) and wait until it is ready."""
        if self.running:
            raise AsteriskStartError("Asterisk is already running")
        attempts = 3
        for attempt in range(attempts):
            self._write_config()
            with self.log.open("ab") as out:
                out.write(f"=== harness: starting Asterisk (AMI {self.port}, TLS {self.tls_port})\n".encode())
            self._log_file = self.log.open("ab")
            self.process = subprocess.Popen(
                [str(self.install.binary), "-C", str(self.run_dir / "asterisk.conf"), "-f", "-n"],
                stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
                cwd=str(self.run_dir),
            )
            try:
                self._wait_ready(timeout)
                return
            except _PortInUse:
                self._terminate()
                if attempt == attempts - 1 or self._ports_fixed:
                    raise AsteriskStartError(
                        f"AMI port {self.port} or {self.tls_port} is in use\n{self.log_tail()}"
                    ) from None
                self._pick_ports()
            except Exception:
                self._terminate()
                raise

    _ports_fixed: bool = False

    def _log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        start_at = len(self._log_text())
        while True:
            text = self._log_text()[start_at:]
            if "Unable to bind" in text and ("AMI" in text or "Address already in use" in text):
                raise _PortInUse()
            if "declined to load" in text or "ASTERISK EXITING" in text:
                raise AsteriskStartError(f"Asterisk could not start as configured\n{self.log_tail()}")
            if self.process.poll() is not None:
                raise AsteriskStartError(
                    f"Asterisk exited with status {self.process.returncode} during start-up\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AsteriskStartError(f"Asterisk not ready after {timeout:.0f} s\n{self.log_tail()}")
            try:
                with SyncAMI(self.host, self.port, "admin", self.secrets["admin"],
                             timeout=2.0, events="system") as ami:
                    ami.wait_event("FullyBooted", timeout=max(0.1, min(5.0, deadline - time.monotonic())))
                with socket.create_connection((self.host, self.tls_port), timeout=2.0):
                    pass
                return
            except (OSError, TimeoutError, ConnectionError, AMIError):
                time.sleep(0.05)

    def _terminate(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self, graceful: bool = True, *, timeout: float = 30.0) -> int:
        """Stop Asterisk and return its exit status.

        ``graceful=True``: ``core stop gracefully`` over AMI, as for maintenance
        (Asterisk refuses new calls, waits for the calls up to end, then
        exits); ``graceful=False``: SIGTERM (``core stop now``). Either way,
        SIGKILL if it has not exited within ``timeout`` seconds.
        """
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            sent = False
            if graceful:
                try:
                    ami = SyncAMI(self.host, self.port, "admin", self.secrets["admin"], timeout=2.0)
                    ami.send("Command", Command="core stop gracefully")
                    sent = True
                    ami.close()
                except (OSError, TimeoutError, ConnectionError, AMIError):
                    pass
            if not sent:
                self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._close_log()
        self._ports_fixed = True
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: Asterisk dies at once, calls and all."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close_log()
        self._ports_fixed = True

    def pause(self) -> None:
        """SIGSTOP: Asterisk stalls (connections stay open, nothing is answered)."""
        assert self.running
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after ``pause()``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def cleanup(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and remove its folder."""
        self._terminate()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self._log_text().splitlines()[-lines:])

    # --- test control over AMI (admin user) ----------------------------------

    def ami(self, user: str = "admin", *, events: str = "off", timeout: float = 10.0) -> SyncAMI:
        """A logged-in blocking AMI client (``with asterisk.ami() as ami: ...``)."""
        return SyncAMI(self.host, self.port, user, self.secrets[user], timeout=timeout, events=events)

    def action(self, action: str, **headers: str) -> Message:
        """One action as the admin user; AMIError on ``Response: Error``."""
        with self.ami() as ami:
            reply = ami.action(action, **headers)
        if reply.get("Response") == "Error":
            raise AMIError(f"{action}: {reply.get('Message')}")
        return reply

    def command(self, command: str) -> list[str]:
        """A CLI command's output lines."""
        return self.action("Command", Command=command).output

    def set_agent_talk(self, seconds: float, agent: str | None = None) -> None:
        """How long agents talk before they hang up (one agent: ``agent="agent2"``)."""
        name = "AGENT_TALK" if agent is None else f"AGENT_TALK_{agent}"
        self.action("Setvar", Variable=name, Value=f"{seconds:g}")

    def set_queue(self, **options: str) -> None:
        """Change settings of the [agents] queue (``wrapuptime="3"``, ``ringinuse="yes"``,
        ...; the others back to QUEUE_DEFAULTS) and reload app_queue."""
        unknown = set(options) - set(QUEUE_DEFAULTS)
        if unknown:
            raise ValueError(f"not a templated queue setting: {sorted(unknown)}")
        self.queue_options = {**QUEUE_DEFAULTS, **options}
        self._write_config()
        self.action("QueueReload", Queue="agents", Members="yes", Rules="yes", Parameters="yes")

    def pause_agent(self, agent: str, paused: bool = True) -> None:
        """Pause (or unpause) queue member ``agent`` ("agent2") in every queue."""
        self.action("QueuePause", Interface=f"Local/{agent}@agents",
                    Paused="true" if paused else "false", Reason="test")

    def db_get(self, family: str, key: str) -> str | None:
        """An AstDB value, or None when there is none."""
        with self.ami() as ami:
            reply = ami.action("DBGet", Family=family, Key=key)
            if reply.get("Response") != "Success":
                return None
            event = ami.wait_event("DBGetResponse", timeout=5.0)
        return event.get("Val")

    def hangup_record(self, attempt: int | str, *, family: str = "dialer-end") -> tuple[float, int, str] | None:
        """What the dialplan's hangup handler recorded for DIALER_ATTEMPT ``attempt``:
        (epoch seconds, HANGUPCAUSE, step), or None."""
        value = self.db_get(family, str(attempt))
        if value is None:
            return None
        epoch, cause, step = value.split(",", 2)
        return float(epoch), int(cause or 0), step

    def hangup_all(self) -> None:
        """Hang up every channel (between tests)."""
        self.command("channel request hangup all")

    def channel_count(self) -> int:
        with self.ami() as ami:
            reply = ami.action("CoreShowChannels")
            done = ami.wait_event("CoreShowChannelsComplete", timeout=5.0)
        return int(done.get("ListItems") or 0) if reply.get("Response") == "Success" else 0

    def reset(self) -> None:
        """Back to the defaults a fresh instance has: running, not paused, agents'
        talk time 4 s and no per-agent override, no call up."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        if not self.running:
            self.start()
        self.set_agent_talk(DEFAULT_AGENT_TALK)
        if self.queue_options != QUEUE_DEFAULTS:
            self.set_queue()
        for i in range(1, self.agents + 1):
            self.pause_agent(f"agent{i}", False)
        for i in range(1, 11):
            self.action("Setvar", Variable=f"AGENT_TALK_agent{i}", Value="")
        self.hangup_all()

    # --- the dialer's view ---------------------------------------------------

    def secret_file(self, user: str = "dialer") -> Path:
        path = self.run_dir / f"secret-{user}"
        path.write_text(self.secrets[user] + "\n")
        path.chmod(0o600)
        return path

    def config_for_dialer(self, *, user: str = "dialer", tls: bool = False, name: str = "pbx1",
                          **overrides):
        """An ``AMIServerConfig`` pointing at this instance (secret in a file)."""
        from dialer.config import AMIServerConfig

        kw = dict(name=name, host=self.host, port=self.tls_port if tls else self.port,
                  username=user, secret_file=self.secret_file(user), tls=tls)
        if tls:
            kw.update(ca_file=self.ca_file, server_hostname=self.server_hostname)
        kw.update(overrides)
        return AMIServerConfig(**kw)

    def dialer_toml(self, *, user: str = "dialer", tls: bool = False, name: str = "pbx1",
                    extra: str = "") -> str:
        """The text of a dialer.toml with one ``[[ami]]`` entry for this instance."""
        lines = [
            "[[ami]]",
            f'name = "{name}"',
            f'host = "{self.host}"',
            f"port = {self.tls_port if tls else self.port}",
            f'username = "{user}"',
            f'secret_file = "{self.secret_file(user)}"',
        ]
        if tls:
            lines += ["tls = true", f'ca_file = "{self.ca_file}"',
                      f'server_hostname = "{self.server_hostname}"']
        return "\n".join(lines) + "\n" + extra


class _PortInUse(Exception):
    pass
