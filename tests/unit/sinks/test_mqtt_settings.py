from __future__ import annotations

from pathlib import Path

import pytest

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
        ({"password_file": Path("/p")}, "mqtt.username"),
        (
            {"username": "u", "password_file": Path("/p"), "password_credential": "c"},
            "mqtt.password_file",
        ),
        ({"username": "u", "password_credential": "../x"}, "mqtt.password_credential"),
        ({"topic_root": "a/+"}, "topic root"),
    ],
)
def test_validation_names_key_value_and_fix(kw: dict[str, object], key: str) -> None:
    base: dict[str, object] = {"host": "h", "device_id": "d"}
    with pytest.raises(MqttSettingsError) as err:
        MqttSettings(**{**base, **kw})  # type: ignore[arg-type]
    assert key in str(err.value) and "fix" in str(err.value)


def test_tls_validation() -> None:
    with pytest.raises(MqttSettingsError, match="cert_file"):
        TlsSettings(key_file=Path("/k"))
    with pytest.raises(MqttSettingsError, match="insecure"):
        TlsSettings(insecure="yes")  # type: ignore[arg-type]


def test_from_mapping_converts_paths_and_rejects_unknown_keys() -> None:
    s = MqttSettings.from_mapping(
        {
            "host": "h",
            "device_id": "d",
            "port": 8883,
            "username": "u",
            "password_file": "/etc/rapp-agent/pw",
            "tls": {"ca_file": "/etc/ssl/ca.pem", "insecure": False},
        }
    )
    assert s.password_file == Path("/etc/rapp-agent/pw")
    assert s.tls == TlsSettings(ca_file=Path("/etc/ssl/ca.pem"))
    with pytest.raises(MqttSettingsError, match=r"mqtt\.hots: unknown key"):
        MqttSettings.from_mapping({"host": "h", "device_id": "d", "hots": 1})
    with pytest.raises(MqttSettingsError, match=r"mqtt\.tls\.ca: unknown key"):
        MqttSettings.from_mapping({"host": "h", "device_id": "d", "tls": {"ca": "x"}})
    with pytest.raises(MqttSettingsError, match=r"mqtt\.device_id: missing"):
        MqttSettings.from_mapping({"host": "h"})


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
