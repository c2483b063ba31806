"""dialer.toml: loading, defaults, secrets and one-line errors naming file, line and key."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from dialer.config import AMIServerConfig, ConfigError, load_config
from dialer.errors import UserError

GOOD = """\
# AMI servers
[[ami]]
name = "pbx1"
host = "127.0.0.1"
username = "dialer"
secret_env = "DIALER_TEST_SECRET"

[[ami]]
name = "pbx2"
host = "pbx2.example.com"
port = 15038
username = "dialer"
secret_file = "secrets/pbx2.secret"
connections = 3
originate_rate = 12.5
burst = 4
max_in_flight = 200

[engine]
poll_interval = 0.5
"""


def write(tmp_path: Path, text: str, name: str = "dialer.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_file_and_defaults(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    first, second = config.ami
    assert (first.name, first.host, first.port, first.username) == ("pbx1", "127.0.0.1", 5038, "dialer")
    assert (first.tls, first.ca_file, first.md5) == (False, None, False)
    assert (first.connections, first.originate_rate, first.burst, first.max_in_flight) == (1, 50.0, 1, 500)
    assert first.secret_env == "DIALER_TEST_SECRET" and first.secret_file is None
    assert second.port == 15038 and second.connections == 3 and second.originate_rate == 12.5
    assert second.burst == 4 and second.max_in_flight == 200
    assert second.secret_file == tmp_path / "secrets" / "pbx2.secret"  # relative to the file
    assert config.engine == {"poll_interval": 0.5}
    assert config.server() is first and config.server("pbx2") is second


def test_server_lookup_errors(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    with pytest.raises(ConfigError) as info:
        config.server("pbx3")
    assert "pbx3" in str(info.value) and "pbx1, pbx2" in str(info.value)
    empty = load_config(write(tmp_path, "[engine]\n", "empty.toml"))
    assert empty.ami == [] and empty.engine == {}
    with pytest.raises(ConfigError) as info:
        empty.server()
    assert "empty.toml" in str(info.value) and "[[ami]]" in str(info.value)


def test_secret_from_env_strips_one_newline(tmp_path, monkeypatch):
    server = load_config(write(tmp_path, GOOD)).server("pbx1")
    monkeypatch.setenv("DIALER_TEST_SECRET", "s3cret\n")
    assert server.read_secret() == "s3cret"
    monkeypatch.delenv("DIALER_TEST_SECRET")
    with pytest.raises(ConfigError) as info:
        server.read_secret()
    assert "DIALER_TEST_SECRET" in str(info.value) and "pbx1" in str(info.value)
    monkeypatch.setenv("DIALER_TEST_SECRET", "")
    with pytest.raises(ConfigError, match="empty"):
        server.read_secret()


def test_secret_from_file(tmp_path):
    server = load_config(write(tmp_path, GOOD)).server("pbx2")
    with pytest.raises(ConfigError) as info:
        server.read_secret()
    assert "pbx2.secret" in str(info.value) and "not found" in str(info.value)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pbx2.secret").write_text("a b c\n")
    assert server.read_secret() == "a b c"
    (tmp_path / "secrets" / "pbx2.secret").write_text("top\r\n")
    assert server.read_secret() == "top"
    for text in ("two\nlines\n", "extra\n\n"):
        (tmp_path / "secrets" / "pbx2.secret").write_text(text)
        with pytest.raises(ConfigError, match="line break"):
            server.read_secret()


def test_secret_never_in_repr_or_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("DIALER_TEST_SECRET", "hunter2-very-secret")
    config = load_config(write(tmp_path, GOOD))
    server = config.server("pbx1")
    assert server.read_secret() == "hunter2-very-secret"
    assert "hunter2" not in repr(config) + repr(server) + str(server)
    kwargs = server.open_kwargs()
    assert kwargs["secret"] == "hunter2-very-secret"
    # A secret written into the file by mistake is refused without echoing it.
    bad = GOOD.replace('secret_env = "DIALER_TEST_SECRET"', 'secret = "hunter2-very-secret"')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, bad, "bad.toml"))
    assert "hunter2" not in str(info.value)
    assert "bad.toml:6: ami[1].secret: unknown setting" in str(info.value)


@pytest.mark.parametrize(
    "change, expected",
    [
        (("port = 15038", "port = 70000"), "dialer.toml:11: ami[2].port: must be an integer 1-65535"),
        (("port = 15038", 'port = "5038"'), "dialer.toml:11: ami[2].port: must be an integer 1-65535"),
        (("port = 15038", "port = true"), "dialer.toml:11: ami[2].port: must be an integer 1-65535"),
        (("port = 15038", "prot = 15038"), "dialer.toml:11: ami[2].prot: unknown setting (did you mean 'port'?)"),
        (('host = "pbx2.example.com"', 'host = ""'), "dialer.toml:10: ami[2].host: must be a non-empty string"),
        (('host = "pbx2.example.com"', ""), "dialer.toml:8: ami[2]: host is required"),
        (("connections = 3", "connections = 0"), "dialer.toml:14: ami[2].connections: must be an integer 1-64"),
        (("originate_rate = 12.5", "originate_rate = -1"), "dialer.toml:15: ami[2].originate_rate: must be a number"),
        (("burst = 4", "burst = 1.5"), "dialer.toml:16: ami[2].burst: must be an integer"),
        (("max_in_flight = 200", "max_in_flight = 0"), "dialer.toml:17: ami[2].max_in_flight: must be an integer"),
        (('secret_file = "secrets/pbx2.secret"', ""), "dialer.toml:8: ami[2]: set exactly one of secret_env or secret_file"),
        (('secret_file = "secrets/pbx2.secret"', 'secret_file = "x"\nsecret_env = "Y"'), "ami[2]: set exactly one of"),
        (('secret_env = "DIALER_TEST_SECRET"', 'secret_env = "NOT A NAME"'), "dialer.toml:6: ami[1].secret_env: must be an environment variable name"),
        (('name = "pbx2"', 'name = "pbx1"'), "dialer.toml:9: ami[2].name: 'pbx1' is already used by ami[1]"),
        (("[engine]", "[engine]\n[typo]"), "dialer.toml:20: typo: unknown setting"),
        (("# AMI servers", "verbose = true"), "dialer.toml:1: verbose: unknown setting"),
        (("[engine]\npoll_interval = 0.5", "engine = 3"), "dialer.toml:19: ami[2].engine: unknown setting"),
        (("poll_interval = 0.5", "pol_interval = 0.5"),
         "dialer.toml:20: engine.pol_interval: unknown setting (did you mean 'poll_interval'?)"),
        (("poll_interval = 0.5", "poll_interval = 0"), "dialer.toml:20: engine.poll_interval: must be a positive number"),
        (("poll_interval = 0.5", 'speed = "fast"'), "dialer.toml:20: engine.speed: must be a positive number"),
        (("max_in_flight = 200", "tls = \"yes\""), "dialer.toml:17: ami[2].tls: must be true or false"),
        (("max_in_flight = 200", 'ca_file = "ca.pem"'), "dialer.toml:17: ami[2].ca_file: is set but tls = false"),
        (("max_in_flight = 200", 'tls = true\nca_file = "nope.pem"'), "dialer.toml:18: ami[2].ca_file: file not found"),
        (("port = 15038", "port = "), "dialer.toml:11: invalid TOML"),
        (("[engine]", "[[engine]]"), "dialer.toml:19: engine: must be a table"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path, change, expected):
    old, new = change
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(str(tmp_path)) and "\n" not in message
    assert expected in message, message
    assert isinstance(info.value, UserError)


def test_engine_not_a_table(tmp_path):
    path = write(tmp_path, 'engine = 3\n')
    with pytest.raises(ConfigError, match=r"dialer.toml:1: engine: must be a table"):
        load_config(path)


def test_ami_not_an_array(tmp_path):
    path = write(tmp_path, '[ami]\nname = "x"\n')
    with pytest.raises(ConfigError, match=r"dialer.toml:1: ami: must be written as \[\[ami\]\] tables"):
        load_config(path)


def test_missing_unreadable_and_binary_files(tmp_path):
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    path = tmp_path / "bin.toml"
    path.write_bytes(b'# ok\n[engine]\nx = "\xff"\n')
    with pytest.raises(ConfigError, match=r"bin.toml:3: not UTF-8"):
        load_config(path)


def test_tls_context_with_private_ca(tmp_path):
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    text = GOOD.replace("max_in_flight = 200", 'max_in_flight = 200\ntls = true\nca_file = "ca.pem"')
    server = load_config(write(tmp_path, text)).server("pbx2")
    assert server.tls and server.ca_file == tmp_path / "ca.pem"
    context = server.ssl_context()
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert len(context.get_ca_certs()) == 1
    assert load_config(write(tmp_path, GOOD)).server("pbx1").ssl_context() is None
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="ca_file"):
        server.ssl_context()


def test_dataclass_is_plain_data():
    server = AMIServerConfig(name="a", host="h", username="u", secret_env="X")
    assert server.port == 5038 and server.where == "dialer.toml: ami[1] (a)"


def test_engine_keys_are_the_engine_settings():
    import dataclasses

    from dialer.config import ENGINE_KEYS
    from dialer.engine import EngineSettings

    assert ENGINE_KEYS == {f.name for f in dataclasses.fields(EngineSettings)}
