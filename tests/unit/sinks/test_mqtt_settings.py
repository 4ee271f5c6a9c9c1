from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.config import check_environment, load_config
from agent.core.errors import ConfigError
from agent.core.tables import Table
from agent.sinks.mqtt.client import build_client
from agent.sinks.mqtt.errors import CredentialError, MqttSettingsError
from agent.sinks.mqtt.settings import MqttSettings, TlsSettings, resolve_password


def test_defaults() -> None:
    s = MqttSettings(host="broker.lan", device_id="cell7")
    assert (s.port, s.protocol, s.topic_root, s.effective_client_id) == (
        1883,
        "5",
        "rapp/v1",
        "rapp-agent-cell7",
    )
    assert not s.has_password


def parse(table: dict[str, object], device_id: str = "d", base_dir: Path | None = None):
    return MqttSettings.from_table(Table(table, "mqtt"), device_id, base_dir)


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"host": ""}, "mqtt.host"),
        ({"host": "mqtt://x"}, "mqtt.host"),
        ({"device_id": "a/b"}, "mqtt.device_id"),
        ({"port": 0}, "mqtt.port"),
        ({"port": "1883"}, "mqtt.port"),
        ({"protocol": "3"}, "mqtt.protocol"),
        ({"keepalive": 1}, "mqtt.keepalive"),
        ({"reconnect_min_delay": 0}, "mqtt.reconnect_min_delay"),
        ({"reconnect_min_delay": 5.0, "reconnect_max_delay": 1.0}, "mqtt.reconnect_max_delay"),
        ({"max_inflight": 0}, "mqtt.max_inflight"),
        ({"password_file": "/p"}, "mqtt.username"),
        (
            {"username": "u", "password_file": "/p", "password_credential": "c"},
            "mqtt.password_file",
        ),
        ({"username": "u", "password_credential": "../x"}, "mqtt.password_credential"),
        ({"topic_root": "a/+"}, "topic root"),
    ],
)
def test_validation_names_key_value_and_fix(kw: dict[str, object], key: str) -> None:
    table: dict[str, object] = {"host": "h", **kw}
    device_id = str(table.pop("device_id", "d"))
    with pytest.raises(MqttSettingsError) as err:
        parse(table, device_id)
    assert key in str(err.value) and "fix" in str(err.value)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"port": 0}, "mqtt.port = 0: must be 1..65535; fix: 1883, or 8883 with TLS"),
        ({"port": True}, "mqtt.port = True: must be an integer; fix: 1883, or 8883 with TLS"),
        ({"keepalive": 1}, "mqtt.keepalive = 1: must be 5..65535 seconds; fix: e.g. 30"),
        ({"max_inflight": 1001}, "mqtt.max_inflight = 1001: must be 1..1000; fix: e.g. 16"),
        ({"client_id": ""}, "mqtt.client_id = '': must be a non-empty string; fix: omit it"),
        ({"reconnect_max_delay": float("inf")}, "mqtt.reconnect_max_delay = inf: must be a"),
        (
            {"reconnect_min_delay": 5, "reconnect_max_delay": 1},
            "mqtt.reconnect_max_delay = 1.0: must be >= reconnect_min_delay (5.0); fix: 60",
        ),
    ],
)
def test_error_texts(kw: dict[str, object], message: str) -> None:
    with pytest.raises(MqttSettingsError) as err:
        parse({"host": "h", **kw})
    assert message in str(err.value)


def test_cross_field_checks_on_direct_construction() -> None:
    with pytest.raises(MqttSettingsError, match=r"mqtt\.username"):
        MqttSettings(host="h", device_id="d", password_file=Path("/p"))
    with pytest.raises(MqttSettingsError, match=r"mqtt\.password_file"):
        MqttSettings(
            host="h", device_id="d", username="u", password_file=Path("/p"), password_credential="c"
        )
    with pytest.raises(MqttSettingsError, match=r"mqtt\.reconnect_max_delay"):
        MqttSettings(host="h", device_id="d", reconnect_min_delay=5.0, reconnect_max_delay=1.0)


def test_settings_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        parse({"host": "h", "port": -1})


def test_tls_validation() -> None:
    with pytest.raises(MqttSettingsError, match="cert_file"):
        TlsSettings(key_file=Path("/k"))
    with pytest.raises(MqttSettingsError, match="insecure"):
        parse({"host": "h", "tls": {"insecure": "yes"}})
    with pytest.raises(MqttSettingsError, match="cert_file"):
        parse({"host": "h", "tls": {"key_file": "/k"}})


def test_from_table_converts_paths_and_rejects_unknown_keys() -> None:
    s = parse(
        {
            "host": "h",
            "port": 8883,
            "username": "u",
            "password_file": "/etc/rapp-agent/pw",
            "tls": {"ca_file": "/etc/ssl/ca.pem", "insecure": False},
        }
    )
    assert s.password_file == Path("/etc/rapp-agent/pw")
    assert s.tls == TlsSettings(ca_file=Path("/etc/ssl/ca.pem"))
    with pytest.raises(MqttSettingsError, match=r"mqtt\.hots: unknown key"):
        parse({"host": "h", "hots": 1})
    with pytest.raises(MqttSettingsError, match=r"mqtt\.tls\.ca: unknown key"):
        parse({"host": "h", "tls": {"ca": "x"}})
    with pytest.raises(MqttSettingsError, match=r"mqtt\.host is missing"):
        parse({})
    with pytest.raises(MqttSettingsError, match=r"mqtt\.device_id: set agent\.device_id"):
        parse({"host": "h", "device_id": "d"})
    with pytest.raises(MqttSettingsError, match=r"mqtt\.password: passwords are not accepted"):
        parse({"host": "h", "username": "u", "password": "x"})


def test_relative_paths_are_resolved_against_the_config_directory(tmp_path: Path) -> None:
    s = parse(
        {
            "host": "h",
            "username": "u",
            "password_file": "secrets/pw",
            "tls": {"ca_file": "ca.pem", "cert_file": "../c.pem", "key_file": "/abs/k.pem"},
        },
        base_dir=tmp_path,
    )
    assert s.password_file == tmp_path / "secrets/pw"
    assert s.tls == TlsSettings(
        ca_file=tmp_path / "ca.pem", cert_file=tmp_path / "../c.pem", key_file=Path("/abs/k.pem")
    )
    with pytest.raises(MqttSettingsError, match=r"mqtt\.tls\.ca_file = '': must not be empty"):
        parse({"host": "h", "tls": {"ca_file": ""}})


def _write_ca(path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_relative_ca_file_checked_and_used_from_another_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--check`` resolves paths against the config file's directory; ``run`` must open the
    same file, not one relative to wherever the agent was started."""
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    _write_ca(conf_dir / "ca.pem")
    config_file = conf_dir / "agent.toml"
    config_file.write_text(
        '[agent]\ndevice_id = "d1"\n'
        '[mqtt]\nhost = "127.0.0.1"\n[mqtt.tls]\nca_file = "ca.pem"\n'
        '[[robots]]\nid = "r1"\nbundle = "default"\n'
        '[robots.source]\nkind = "simulator"\n'
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("..") / "etc" / "agent.toml")
    assert config.mqtt is not None and config.mqtt.tls is not None
    ca_file = config.mqtt.tls.ca_file
    assert ca_file is not None and ca_file.is_absolute()
    assert ca_file.resolve() == (conf_dir / "ca.pem").resolve()
    check_environment(config)
    build_client(config.mqtt)  # loads the CA; a cwd-relative open would raise CredentialError


def test_password_from_file_and_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    s = MqttSettings(host="h", device_id="d", username="u", password_file=tmp_path / "pw")
    assert resolve_password(s, {}) == "s3cret"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("from-systemd")
    s = MqttSettings(host="h", device_id="d", username="u", password_credential="mqtt-password")
    assert resolve_password(s, {"CREDENTIALS_DIRECTORY": str(creds)}) == "from-systemd"
    with pytest.raises(CredentialError, match="CREDENTIALS_DIRECTORY"):
        resolve_password(s, {})
    assert resolve_password(MqttSettings(host="h", device_id="d"), {}) is None


def test_password_errors_name_the_file(tmp_path: Path) -> None:
    s = MqttSettings(host="h", device_id="d", username="u", password_file=tmp_path / "missing")
    with pytest.raises(CredentialError, match="missing") as err:
        resolve_password(s, {})
    assert isinstance(err.value.__cause__, OSError)
    (tmp_path / "empty").write_text("\n")
    s = MqttSettings(host="h", device_id="d", username="u", password_file=tmp_path / "empty")
    with pytest.raises(CredentialError, match="empty"):
        resolve_password(s, {})


def test_settings_do_no_io(tmp_path: Path) -> None:
    # a password file that does not exist yet is fine until connect time
    MqttSettings(host="h", device_id="d", username="u", password_file=tmp_path / "later")
