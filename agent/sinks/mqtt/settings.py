"""MQTT connection settings: a frozen, validated value object plus password resolution.

:class:`MqttSettings` only holds and checks values; it never touches the filesystem (files can
appear later, e.g. systemd credentials, and tests build settings freely). The password is read
by :func:`resolve_password` when the link connects, either from ``password_file`` or from the
systemd credential ``password_credential`` (``$CREDENTIALS_DIRECTORY/<name>``, set up with
``LoadCredential=`` in the unit). It is never accepted on the command line, where ``ps`` and
the journal would show it.

Usage::

    settings = MqttSettings.from_mapping(config["mqtt"])      # TOML table -> settings
    settings = MqttSettings(host="broker.lan", device_id="cell7", password_credential="mqtt")
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from agent.sinks.mqtt.errors import CredentialError, MqttSettingsError
from agent.sinks.topics import TopicError, validate_id, validate_root

ProtocolVersion = Literal["5", "3.1.1"]
PROTOCOLS: tuple[str, ...] = ("5", "3.1.1")


def _fail(key: str, value: object, why: str, fix: str) -> None:
    raise MqttSettingsError(f"{key} = {value!r}: {why}; fix: {fix}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS to the broker. ``ca_file`` None means the system CA store.

    cert_file/key_file: client certificate authentication (key_file needs cert_file; a
    cert_file that also contains the key may omit key_file).
    insecure: skip the broker hostname check. Only for lab brokers with ad-hoc certificates.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False

    def __post_init__(self) -> None:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                _fail(f"mqtt.tls.{name}", value, "must be a path", "give an absolute file path")
        if self.key_file is not None and self.cert_file is None:
            _fail(
                "mqtt.tls.key_file",
                str(self.key_file),
                "a client key needs a client certificate",
                "also set mqtt.tls.cert_file",
            )
        if not isinstance(self.insecure, bool):
            _fail("mqtt.tls.insecure", self.insecure, "must be true or false", "insecure = false")


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Where and how the agent connects, and under which topic root it publishes.

    host/port: the broker. device_id: this agent's topic level (``<topic_root>/<device_id>``).
    client_id: MQTT client id, default ``rapp-agent-<device_id>``; must be unique per broker
    (a second client with the same id disconnects the first).
    protocol: "5" (default) or "3.1.1" for old brokers.
    keepalive: seconds; a dead TCP connection is noticed after about 1.5 x keepalive.
    username / password_file / password_credential: optional authentication; at most one
    password source.
    reconnect_min_delay / reconnect_max_delay: exponential backoff bounds, seconds.
    max_inflight: QoS 1 messages awaiting PUBACK at once (also capped by the broker's
    Receive Maximum).
    """

    host: str
    device_id: str
    port: int = 1883
    client_id: str | None = None
    protocol: ProtocolVersion = "5"
    keepalive: int = 30
    tls: TlsSettings | None = None
    username: str | None = None
    password_file: Path | None = None
    password_credential: str | None = None
    reconnect_min_delay: float = 1.0
    reconnect_max_delay: float = 60.0
    topic_root: str = "rapp/v1"
    max_inflight: int = 16

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host or "://" in self.host:
            _fail(
                "mqtt.host",
                self.host,
                "must be a host name or IP address",
                "e.g. host = 'broker.plant.lan' (no 'mqtt://' prefix; the port goes in mqtt.port)",
            )
        try:
            validate_id(self.device_id, what="mqtt.device_id")
            validate_root(self.topic_root)
        except TopicError as err:
            raise MqttSettingsError(str(err)) from err
        if not _is_int(self.port) or not 1 <= self.port <= 65535:
            _fail("mqtt.port", self.port, "must be 1..65535", "1883, or 8883 with TLS")
        if self.client_id is not None and (
            not isinstance(self.client_id, str) or not self.client_id or "\x00" in self.client_id
        ):
            _fail("mqtt.client_id", self.client_id, "must be a non-empty string", "omit it")
        if self.protocol not in PROTOCOLS:
            _fail("mqtt.protocol", self.protocol, f"must be one of {list(PROTOCOLS)}", "'5'")
        if not _is_int(self.keepalive) or not 5 <= self.keepalive <= 65535:
            _fail("mqtt.keepalive", self.keepalive, "must be 5..65535 seconds", "e.g. 30")
        if self.tls is not None and not isinstance(self.tls, TlsSettings):
            _fail("mqtt.tls", self.tls, "must be a TLS settings table", "see the README")
        if self.username is not None and (not isinstance(self.username, str) or not self.username):
            _fail("mqtt.username", self.username, "must be a non-empty string", "omit it")
        if self.password_file is not None and not isinstance(self.password_file, Path):
            _fail("mqtt.password_file", self.password_file, "must be a path", "an absolute path")
        if self.password_credential is not None:
            cred = self.password_credential
            if not isinstance(cred, str) or not cred or "/" in cred or cred in (".", ".."):
                _fail(
                    "mqtt.password_credential",
                    cred,
                    "must be a systemd credential name",
                    "the name used in LoadCredential=, e.g. 'mqtt-password'",
                )
        if self.password_file is not None and self.password_credential is not None:
            _fail(
                "mqtt.password_file",
                str(self.password_file),
                "password_file and password_credential are both set",
                "keep one of them",
            )
        if self.has_password and self.username is None:
            _fail(
                "mqtt.username",
                None,
                "a password is configured but no username",
                "set mqtt.username",
            )
        lo, hi = self.reconnect_min_delay, self.reconnect_max_delay
        if not _is_number(lo) or lo <= 0:
            _fail("mqtt.reconnect_min_delay", lo, "must be a number > 0", "e.g. 1.0")
        if not _is_number(hi) or hi < lo:
            _fail("mqtt.reconnect_max_delay", hi, f"must be >= reconnect_min_delay ({lo})", "60")
        if not _is_int(self.max_inflight) or not 1 <= self.max_inflight <= 1000:
            _fail("mqtt.max_inflight", self.max_inflight, "must be 1..1000", "e.g. 16")

    @property
    def has_password(self) -> bool:
        return self.password_file is not None or self.password_credential is not None

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"rapp-agent-{self.device_id}"

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, prefix: str = "mqtt") -> MqttSettings:
        """Build from a parsed TOML table; unknown keys are rejected by name.

        Paths are given as strings; ``tls`` is a sub-table (``[mqtt.tls]``).
        """
        if not isinstance(table, Mapping):
            raise MqttSettingsError(f"[{prefix}]: must be a table; fix: add an [{prefix}] table")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise MqttSettingsError(
                f"{prefix}.{unknown[0]}: unknown key; fix: remove it or use one of {sorted(known)}"
            )
        for required in ("host", "device_id"):
            if required not in table:
                raise MqttSettingsError(f"{prefix}.{required}: missing; fix: set it")
        values = dict(table)
        for key in ("password_file",):
            if values.get(key) is not None:
                values[key] = _path(f"{prefix}.{key}", values[key])
        if values.get("tls") is not None:
            values["tls"] = _tls_from_mapping(values["tls"], f"{prefix}.tls")
        return cls(**values)


def _path(key: str, value: object) -> Path:
    if not isinstance(value, str) or not value:
        raise MqttSettingsError(f"{key} = {value!r}: must be a file path; fix: an absolute path")
    return Path(value)


def _tls_from_mapping(table: object, prefix: str) -> TlsSettings:
    if not isinstance(table, Mapping):
        raise MqttSettingsError(f"{prefix} = {table!r}: must be a table; fix: use [{prefix}]")
    known = {f.name for f in fields(TlsSettings)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise MqttSettingsError(
            f"{prefix}.{unknown[0]}: unknown key; fix: remove it or use one of {sorted(known)}"
        )
    values: dict[str, Any] = dict(table)
    for key in ("ca_file", "cert_file", "key_file"):
        if values.get(key) is not None:
            values[key] = _path(f"{prefix}.{key}", values[key])
    return TlsSettings(**values)


def resolve_password(
    settings: MqttSettings, environ: Mapping[str, str] | None = None
) -> str | None:
    """Read the configured password (at connect time), or None if none is configured.

    ``password_credential`` is looked up in ``$CREDENTIALS_DIRECTORY`` (systemd
    ``LoadCredential=``). One trailing newline is stripped, as editors and ``echo`` add one.
    """
    env = os.environ if environ is None else environ
    if settings.password_credential is not None:
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise CredentialError(
                f"mqtt.password_credential = {settings.password_credential!r}: "
                "$CREDENTIALS_DIRECTORY is not set (not started by systemd with LoadCredential=); "
                "fix: run under the rapp-agent.service unit, or use mqtt.password_file"
            )
        path = Path(directory) / settings.password_credential
        key = "mqtt.password_credential"
    elif settings.password_file is not None:
        path = settings.password_file
        key = "mqtt.password_file"
    else:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CredentialError(
            f"{key}: cannot read the MQTT password from {path}: {err}; "
            "fix: create the file (mode 0600, readable by the agent)"
        ) from err
    password = text[:-1] if text.endswith("\n") else text
    password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise CredentialError(f"{key}: {path} is empty; fix: write the password into it")
    return password
