"""The configuration file (``dialer.toml``): AMI servers and engine settings.

Shape::

    [[ami]]                      # one table per Asterisk server, in order
    name = "pbx1"                # unique; --server NAME picks it (default: the first)
    host = "127.0.0.1"
    port = 5038                  # default 5038
    username = "dialer"
    secret_env = "DIALER_AMI_SECRET"   # exactly one of secret_env / secret_file
    # secret_file = "/etc/dialer/pbx1.secret"   (relative paths: from this file's folder)
    tls = false                  # true: AMI over TLS (Asterisk's tlsbindaddr)
    # ca_file = "private-ca.pem" # trust this CA (with tls = true); default: system CAs
    # server_hostname = "pbx1.example.com"  # name to check in the certificate (default: host)
    # md5 = false                # challenge-response login instead of a plain secret
    connections = 1              # AMI connections the engine opens to this server
    originate_rate = 50          # Originates per second per connection (the rate cap)
    burst = 1                    # Originates that may be saved up and sent back to back;
                                 # 1 spreads them evenly at 1/originate_rate
    max_in_flight = 500          # calls in progress at once on this server

    [engine]                     # engine settings, passed through as a dict

Secrets never live in the file or on the command line: they are read from
the environment variable or the file named here, only when needed, and are
never part of a repr or an error message. Every error is a
:class:`~dialer.errors.UserError` naming the file, the line where it can be
found, and the setting, e.g. ``dialer.toml:7: ami[1].port: must be an integer 1-65535``
(``ami[N]`` counts the ``[[ami]]`` tables from 1).
"""

from __future__ import annotations

import difflib
import os
import re
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.errors import UserError

__all__ = ["Config", "AMIServerConfig", "ConfigError", "load_config"]

_TOP_LEVEL = ("ami", "engine", "web")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ConfigError(UserError):
    """A problem in the configuration file (or in a secret it points to)."""


@dataclass(frozen=True, kw_only=True)
class AMIServerConfig:
    """One ``[[ami]]`` entry. Holds where the secret is, never the secret."""

    name: str
    host: str
    port: int = 5038
    username: str
    secret_env: str | None = None
    secret_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    server_hostname: str | None = None
    md5: bool = False
    connections: int = 1
    originate_rate: float = 50.0
    burst: int = 1
    max_in_flight: int = 500
    source: str = field(default="dialer.toml", compare=False)
    index: int = field(default=1, compare=False)

    @property
    def where(self) -> str:
        return f"{self.source}: ami[{self.index}] ({self.name})"

    def read_secret(self) -> str:
        """The secret from the environment variable or file, minus one trailing newline."""
        if self.secret_env is not None:
            value = os.environ.get(self.secret_env)
            if value is None:
                raise ConfigError(
                    f"{self.where}: environment variable {self.secret_env} "
                    f"(secret_env) is not set"
                )
            what = f"environment variable {self.secret_env}"
        else:
            assert self.secret_file is not None
            try:
                value = self.secret_file.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ConfigError(
                    f"{self.where}: secret_file {self.secret_file}: file not found"
                ) from None
            except PermissionError:
                raise ConfigError(
                    f"{self.where}: secret_file {self.secret_file}: permission denied"
                ) from None
            except IsADirectoryError:
                raise ConfigError(
                    f"{self.where}: secret_file {self.secret_file}: is a directory"
                ) from None
            except UnicodeDecodeError:
                raise ConfigError(
                    f"{self.where}: secret_file {self.secret_file}: not UTF-8 text"
                ) from None
            what = f"secret_file {self.secret_file}"
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
        if not value:
            raise ConfigError(f"{self.where}: {what} is empty")
        if any(c in value for c in "\r\n\0"):
            raise ConfigError(f"{self.where}: {what} contains a line break or NUL")
        return value

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for this server (None without ``tls``)."""
        if not self.tls:
            return None
        try:
            return ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{self.where}: ca_file {self.ca_file}: cannot load: {exc}"
            ) from None

    def open_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :func:`dialer.ami.connection.open_ami` (reads the secret)."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "secret": self.read_secret(),
            "ssl_context": self.ssl_context(),
            "server_hostname": self.server_hostname,
            "name": self.name,
            "md5": self.md5,
        }


@dataclass(frozen=True, kw_only=True)
class Config:
    path: Path
    ami: list[AMIServerConfig]
    engine: dict[str, Any]
    web: dict[str, Any] = field(default_factory=dict)   # the console's [web] table

    def server(self, name: str | None = None) -> AMIServerConfig:
        """The ``[[ami]]`` entry called ``name``, or the first one."""
        if not self.ami:
            raise ConfigError(f"{self.path}: no [[ami]] server is configured")
        if name is None:
            return self.ami[0]
        for server in self.ami:
            if server.name == name:
                return server
        names = ", ".join(s.name for s in self.ami)
        raise ConfigError(f"{self.path}: no [[ami]] server named {name!r} (configured: {names})")


# -- loading ---------------------------------------------------------------------------


class _Lines:
    """Finds the line of a setting in the file text, for error messages."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def _header(self, table: str, nth: int) -> int | None:
        pattern = re.compile(rf"^\s*\[\[?\s*{re.escape(table)}\s*\]\]?\s*(#.*)?$")
        seen = 0
        for number, line in enumerate(self.lines, 1):
            if pattern.match(line):
                seen += 1
                if seen == nth:
                    return number
        return None

    def top(self, key: str) -> int | None:
        found = self._header(key, 1)
        if found is not None:
            return found
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*[=.]")
        for number, line in enumerate(self.lines, 1):
            if line.lstrip().startswith("["):
                break
            if pattern.match(line):
                return number
        return None

    def in_table(self, table: str, nth: int, key: str | None) -> int | None:
        start = self._header(table, nth)
        if start is None or key is None:
            return start
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for number in range(start + 1, len(self.lines) + 1):
            line = self.lines[number - 1]
            if line.lstrip().startswith("["):
                break
            if pattern.match(line):
                return number
        return start


def _fail(source: str, line: int | None, where: str, message: str) -> ConfigError:
    at = f"{source}:{line}" if line is not None else source
    return ConfigError(f"{at}: {where}: {message}")


_SERVER_KEYS = {
    "name", "host", "port", "username", "secret_env", "secret_file", "tls", "ca_file",
    "server_hostname", "md5", "connections", "originate_rate", "burst", "max_in_flight",
}


# The settings of the [engine] table (one field each of dialer.engine.EngineSettings,
# which holds their defaults). Checked here, so that every command that reads the
# file (dialer run, dialer ami ...) refuses the same file with the same line.
ENGINE_KEYS = frozenset({
    "poll_interval", "flush_interval", "lease", "drop_after", "stale_after",
    "housekeeping_interval", "stats_interval", "batch_interval", "speed", "db_timeout",
    "ping_interval", "ping_timeout", "breaker_failures", "breaker_within", "drop_target",
})


_DROP_TARGET = re.compile(r"\s*[^,\s]+\s*(,\s*[^,\s]*\s*(,\s*0*[1-9][0-9]*\s*)?)?")


def _engine_table(raw: dict[str, Any], source: str, lines: _Lines) -> dict[str, Any]:
    for key, value in raw.items():
        line = lines.in_table("engine", 1, key)
        if key not in ENGINE_KEYS:
            close = difflib.get_close_matches(key, sorted(ENGINE_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _fail(source, line, f"engine.{key}", f"unknown setting{hint}")
        if key == "drop_target":
            # The form dialer.calls.drops.DropTarget reads: context[,exten[,priority]].
            if value != "off" and not (isinstance(value, str) and _DROP_TARGET.fullmatch(value)):
                raise _fail(source, line, f"engine.{key}",
                            f"{value!r}: expected context,exten,priority (e.g. dialer-drop,s,1) or off")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise _fail(source, line, f"engine.{key}", "must be a positive number")
    return raw


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _server(
    raw: Any, index: int, source: str, base: Path, lines: _Lines
) -> AMIServerConfig:
    where = f"ami[{index}]"

    def fail(key: str | None, message: str) -> ConfigError:
        return _fail(
            source, lines.in_table("ami", index, key), f"{where}.{key}" if key else where, message
        )

    if not isinstance(raw, dict):
        raise fail(None, "must be a table ([[ami]])")
    for key in raw:
        if key not in _SERVER_KEYS:
            close = difflib.get_close_matches(key, sorted(_SERVER_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise fail(key, f"unknown setting{hint}")

    def text(key: str, required: bool = True) -> str | None:
        if key not in raw:
            if required:
                raise fail(None, f"{key} is required")
            return None
        value = raw[key]
        if not isinstance(value, str) or not value.strip():
            raise fail(key, "must be a non-empty string")
        if any(c in value for c in "\r\n\0"):
            raise fail(key, "must not contain line breaks")
        return value

    def integer(key: str, default: int, low: int, high: int) -> int:
        value = raw.get(key, default)
        if not _is_int(value) or not low <= value <= high:
            raise fail(key, f"must be an integer {low}-{high}")
        return value

    def flag(key: str) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            raise fail(key, "must be true or false")
        return value

    def path(key: str) -> Path | None:
        value = text(key, required=False)
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else base / p

    name = text("name")
    host = text("host")
    username = text("username")
    assert name is not None and host is not None and username is not None
    port = integer("port", 5038, 1, 65535)
    secret_env = text("secret_env", required=False)
    secret_file = path("secret_file")
    if (secret_env is None) == (secret_file is None):
        raise fail(None, "set exactly one of secret_env or secret_file (never the secret itself)")
    if secret_env is not None and not _ENV_NAME.fullmatch(secret_env):
        raise fail("secret_env", "must be an environment variable name")
    tls = flag("tls")
    ca_file = path("ca_file")
    if ca_file is not None:
        if not tls:
            raise fail("ca_file", "is set but tls = false")
        if not ca_file.is_file():
            raise fail("ca_file", f"file not found: {ca_file}")
    server_hostname = text("server_hostname", required=False)
    md5 = flag("md5")
    connections = integer("connections", 1, 1, 64)
    rate = raw.get("originate_rate", 50)
    if not (_is_int(rate) or isinstance(rate, float)) or not 0 < rate <= 10_000:
        raise fail("originate_rate", "must be a number of Originates per second, > 0 and <= 10000")
    burst = integer("burst", 1, 1, 10_000)
    max_in_flight = integer("max_in_flight", 500, 1, 1_000_000)
    return AMIServerConfig(
        name=name, host=host, port=port, username=username, secret_env=secret_env,
        secret_file=secret_file, tls=tls, ca_file=ca_file, server_hostname=server_hostname,
        md5=md5, connections=connections, originate_rate=float(rate), burst=burst,
        max_in_flight=max_in_flight, source=source, index=index,
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check the TOML configuration file."""
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{source}: configuration file not found (see --config)") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a configuration file") from None
    except PermissionError:
        raise ConfigError(f"{source}: permission denied") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{source}:{line}: not UTF-8 text") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        at = f"{source}:{found.group(1)}" if found else source
        raise ConfigError(f"{at}: invalid TOML: {exc}") from None
    lines = _Lines(text)
    for key in raw:
        if key not in _TOP_LEVEL:
            raise _fail(
                source, lines.top(key), key,
                "unknown setting (expected [[ami]] tables, an [engine] and a [web] table)",
            )
    servers_raw = raw.get("ami", [])
    if not isinstance(servers_raw, list):
        raise _fail(source, lines.top("ami"), "ami", "must be written as [[ami]] tables")
    base = path.parent
    servers = [_server(s, i, source, base, lines) for i, s in enumerate(servers_raw, 1)]
    seen: dict[str, int] = {}
    for server in servers:
        if server.name in seen:
            raise _fail(
                source, lines.in_table("ami", server.index, "name"), f"ami[{server.index}].name",
                f"{server.name!r} is already used by ami[{seen[server.name]}]",
            )
        seen[server.name] = server.index
    engine = raw.get("engine", {})
    if not isinstance(engine, dict):
        raise _fail(source, lines.top("engine"), "engine", "must be a table ([engine])")
    web = raw.get("web", {})
    if not isinstance(web, dict):
        raise _fail(source, lines.top("web"), "web", "must be a table ([web])")
    return Config(path=path, ami=servers, engine=_engine_table(engine, source, lines), web=web)
