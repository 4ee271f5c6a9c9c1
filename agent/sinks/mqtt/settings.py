"""MQTT connection settings: a frozen value object, parsed from the ``[mqtt]`` table, plus
password resolution.

:meth:`MqttSettings.from_table` reads the table with :class:`agent.core.tables.Table` (types,
defaults, ranges; unknown keys rejected by name) and resolves every path (``password_file``,
``tls.*_file``) to absolute against the config file's directory, so ``--check`` and ``run``
open the same files whatever the working directory. The dataclasses themselves only check
what involves several fields; build them directly in tests and tools. Parsing never touches
the filesystem (files can appear later, e.g. systemd credentials): the password is read by
:func:`resolve_password` when the link connects, either from ``password_file`` or from the
systemd credential ``password_credential`` (``$CREDENTIALS_DIRECTORY/<name>``, set up with
``LoadCredential=`` in the unit). It is never accepted in the config file or on the command
line, where ``ps`` and the journal would show it.

Usage::

    settings = MqttSettings.from_table(Table(doc["mqtt"], "mqtt"), "cell7", config_dir)
    settings = MqttSettings(host="broker.lan", device_id="cell7", password_credential="mqtt")
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agent.core.errors import ConfigError
from agent.core.tables import Table
from agent.sinks.mqtt.errors import CredentialError, MqttSettingsError
from agent.sinks.topics import TopicError, validate_id, validate_root

ProtocolVersion = Literal["5", "3.1.1"]
PROTOCOLS: tuple[str, ...] = ("5", "3.1.1")


def _fail(key: str, value: object, why: str, fix: str) -> None:
    raise MqttSettingsError(f"{key} = {value!r}: {why}; fix: {fix}")


def _get(
    t: Table,
    name: str,
    kind: type,
    default: Any,
    ok: Callable[[Any], bool],
    why: str,
    fix: str,
) -> Any:
    """``t.get`` whose errors end in ``; fix: <fix>``; a value that is not ``ok`` reads
    ``<key> = <value>: <why>; fix: <fix>``."""

    def check(value: Any) -> str | None:
        return None if ok(value) else f"{why}; fix: {fix}"

    return t.get(name, kind, default, check=check, fix=f"fix: {fix}")


def _between(lo: int, hi: int) -> Callable[[int], bool]:
    return lambda value: lo <= value <= hi


def _host_ok(value: str) -> bool:
    return bool(value) and "://" not in value


def _client_id_ok(value: str) -> bool:
    return bool(value) and "\x00" not in value


def _credential_ok(value: str) -> bool:
    return bool(value) and "/" not in value and value not in (".", "..")


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


NON_EMPTY = "must be a non-empty string"
POSITIVE = "must be a number > 0"
PROTOCOL_WHY = f"must be one of {list(PROTOCOLS)}"
CREDENTIAL_WHY = "must be a systemd credential name"
HOST_FIX = "e.g. host = 'broker.plant.lan' (no 'mqtt://' prefix; the port goes in mqtt.port)"
PORT_FIX = "1883, or 8883 with TLS"
CREDENTIAL_FIX = "the name used in LoadCredential=, e.g. 'mqtt-password'"
PATH_FIX = "fix: a file path, absolute or relative to the config file's directory"


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
        if self.key_file is not None and self.cert_file is None:
            _fail(
                "mqtt.tls.key_file",
                str(self.key_file),
                "a client key needs a client certificate",
                "also set mqtt.tls.cert_file",
            )

    @classmethod
    def from_table(cls, t: Table, base_dir: Path | None) -> TlsSettings:
        """The ``[mqtt.tls]`` table; paths made absolute against ``base_dir``."""
        tls = cls(
            ca_file=t.path("ca_file", base_dir, fix=PATH_FIX),
            cert_file=t.path("cert_file", base_dir, fix=PATH_FIX),
            key_file=t.path("key_file", base_dir, fix=PATH_FIX),
            insecure=t.get("insecure", bool, False, fix="fix: insecure = false"),
        )
        t.done()
        return tls


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
        """Only what involves several fields; single values are checked by from_table."""
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
        if hi < lo:
            _fail("mqtt.reconnect_max_delay", hi, f"must be >= reconnect_min_delay ({lo})", "60")

    @property
    def has_password(self) -> bool:
        return self.password_file is not None or self.password_credential is not None

    @property
    def effective_client_id(self) -> str:
        return self.client_id or f"rapp-agent-{self.device_id}"

    @classmethod
    def from_table(cls, t: Table, device_id: str, base_dir: Path | None = None) -> MqttSettings:
        """The ``[mqtt]`` table (``tls`` is the sub-table ``[mqtt.tls]``); ``device_id`` is
        the agent's, and relative paths are relative to ``base_dir``, the config file's
        directory (without one they stay as given). Raises :class:`MqttSettingsError`."""
        try:
            return cls._read(t, device_id, base_dir)
        except MqttSettingsError:
            raise
        except (ConfigError, TopicError) as err:
            raise MqttSettingsError(str(err)) from err

    @classmethod
    def _read(cls, t: Table, device_id: str, base_dir: Path | None) -> MqttSettings:
        _refuse_misplaced_keys(t)
        tls = t.table("tls")
        name_fix = "omit it"
        settings = cls(
            host=_get(t, "host", str, ..., _host_ok, "must be a host name or IP address", HOST_FIX),
            device_id=validate_id(device_id, what="mqtt.device_id"),
            port=_get(t, "port", int, 1883, _between(1, 65535), "must be 1..65535", PORT_FIX),
            client_id=_get(t, "client_id", str, None, _client_id_ok, NON_EMPTY, name_fix),
            protocol=_get(t, "protocol", str, "5", PROTOCOLS.__contains__, PROTOCOL_WHY, "'5'"),
            keepalive=_get(
                t, "keepalive", int, 30, _between(5, 65535), "must be 5..65535 seconds", "e.g. 30"
            ),
            tls=None if tls is None else TlsSettings.from_table(tls, base_dir),
            username=_get(t, "username", str, None, bool, NON_EMPTY, name_fix),
            password_file=t.path("password_file", base_dir, fix=PATH_FIX),
            password_credential=_get(
                t, "password_credential", str, None, _credential_ok, CREDENTIAL_WHY, CREDENTIAL_FIX
            ),
            reconnect_min_delay=_get(
                t, "reconnect_min_delay", float, 1.0, _positive, POSITIVE, "e.g. 1.0"
            ),
            reconnect_max_delay=_get(
                t, "reconnect_max_delay", float, 60.0, _positive, POSITIVE, "60"
            ),
            topic_root=validate_root(t.get("topic_root", str, "rapp/v1", fix="fix: 'rapp/v1'")),
            max_inflight=_get(
                t, "max_inflight", int, 16, _between(1, 1000), "must be 1..1000", "e.g. 16"
            ),
        )
        t.done()
        return settings


def _refuse_misplaced_keys(t: Table) -> None:
    if "password" in t.data:
        raise MqttSettingsError(
            f"{t.key('password')}: passwords are not accepted in the config file; put it in a "
            "file readable only by the agent and set password_file, or use a systemd "
            "credential (password_credential)"
        )
    if "device_id" in t.data:
        raise MqttSettingsError(
            f"{t.key('device_id')}: set agent.device_id instead (one id per agent)"
        )


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
