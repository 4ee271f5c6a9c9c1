"""The agent's TOML configuration: parsed into frozen dataclasses, validated field by field.

Parsing is pure (no file or port access) so it can be tested and reused; what needs the
machine — files that must exist, ports that must open — is checked by
:func:`check_environment`. Every error names the key, the value and the fix, and the CLI
turns :class:`ConfigError` into exit code 2 (ESPHome-style: tell the user what to do).

Example: see ``examples/agent-*.toml`` and the README.
"""

from __future__ import annotations

import base64
import binascii
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.backends import BACKEND_NAMES
from agent.core.errors import ConfigError
from agent.core.tables import Table, identifier, in_range, one_of, resolve_path, str_list
from agent.ota.settings import OtaSettings
from agent.pipeline.alarms import AlarmOverrides
from agent.sinks.homeassistant.settings import HomeAssistantSettings
from agent.sinks.http.settings import HttpSettings
from agent.sinks.mqtt.settings import MqttSettings
from agent.sinks.sparkplug.settings import SparkplugSettings
from agent.sinks.topics import RESERVED_ROBOT_IDS
from agent.sources.settings import SourceSettings, parse_source

DEFAULT_STATE_DIR = "/var/lib/rapp-agent"
DEFAULT_BUNDLE = "default"  # the shipped simulator-trained bundle (agent.models)
ED25519_KEY_BYTES = 32


@dataclass(frozen=True)
class TelemetryConfig:
    """Rates of what the agent publishes besides alarms."""

    score_interval_s: float = 1.0
    telemetry_limit: int = 10_000
    status_interval_s: float = 10.0


@dataclass(frozen=True)
class DriftConfig:
    """[robots.drift]: drift monitor limits and the optional capture of normal windows."""

    window: int = 512
    min_windows: int = 64
    ks_limit: float = 0.5
    capture_dir: str = ""  # empty: no capture
    capture_max_windows: int = 4096
    capture_max_mb: float = 256.0  # disk budget of the capture directory


@dataclass(frozen=True)
class RobotConfig:
    id: str
    source: SourceSettings
    bundles: tuple[str, ...]
    alarm: AlarmOverrides = field(default_factory=AlarmOverrides)
    drift: DriftConfig = field(default_factory=DriftConfig)


@dataclass(frozen=True)
class TrustConfig:
    keys: tuple[str, ...] = ()
    allow_unsigned: bool = False


@dataclass(frozen=True)
class AgentSection:
    device_id: str
    state_dir: str = DEFAULT_STATE_DIR
    backend: str = "auto"
    precision: str = "int8"
    threads: int = 1
    log_level: str = "info"


@dataclass(frozen=True)
class AgentConfig:
    agent: AgentSection
    mqtt: MqttSettings | None
    telemetry: TelemetryConfig
    trust: TrustConfig
    robots: tuple[RobotConfig, ...]
    source_path: str = ""
    ota: OtaSettings = field(default_factory=OtaSettings)
    http: HttpSettings | None = None  # [http]: no table, no endpoint
    homeassistant: HomeAssistantSettings = field(default_factory=HomeAssistantSettings)
    sparkplug: SparkplugSettings = field(default_factory=SparkplugSettings)


# --- small declarative validator -------------------------------------------------------

# --- sections ---------------------------------------------------------------------------


def _parse_agent(t: Table, base_dir: Path | None) -> AgentSection:
    state_dir = t.path("state_dir", base_dir, DEFAULT_STATE_DIR)
    section = AgentSection(
        device_id=t.get("device_id", str, check=identifier, fix='e.g. device_id = "cell7-ipc"'),
        state_dir=str(state_dir),
        backend=t.get("backend", str, "auto", check=one_of(BACKEND_NAMES)),
        precision=t.get("precision", str, "int8", check=one_of(("int8", "fp32", "auto"))),
        threads=t.get("threads", int, 1, check=in_range(1, 64)),
        log_level=t.get(
            "log_level", str, "info", check=one_of(("debug", "info", "warning", "error"))
        ),
    )
    t.done()
    return section


def _parse_mqtt(data: Any, device_id: str, base_dir: Path | None) -> MqttSettings:
    """The [mqtt] table, read by the MQTT subsystem's own settings class; its file paths are
    made absolute against the config file's directory."""
    return MqttSettings.from_table(Table(data, "mqtt"), device_id, base_dir)


def _parse_telemetry(t: Table | None) -> TelemetryConfig:
    if t is None:
        return TelemetryConfig()
    config = TelemetryConfig(
        score_interval_s=t.get("score_interval_s", float, 1.0, check=in_range(0.0, 3600)),
        telemetry_limit=t.get("telemetry_limit", int, 10_000, check=in_range(10, 10_000_000)),
        status_interval_s=t.get("status_interval_s", float, 10.0, check=in_range(1, 3600)),
    )
    t.done()
    return config


def _parse_alarm(t: Table | None) -> AlarmOverrides:
    if t is None:
        return AlarmOverrides()
    alarm = AlarmOverrides(
        ewma_alpha=t.get("ewma_alpha", float, None, check=in_range(0.001, 1.0)),
        debounce_k=t.get("debounce_k", int, None, check=in_range(1, 1000)),
        debounce_n=t.get("debounce_n", int, None, check=in_range(1, 1000)),
        clear_ratio=t.get("clear_ratio", float, None, check=in_range(0.01, 1.0)),
        clear_windows=t.get("clear_windows", int, None, check=in_range(1, 1000)),
        threshold=t.get("threshold", str, "fixed", check=one_of(("fixed", "dynamic"))),
    )
    t.done()
    if alarm.debounce_k and alarm.debounce_n and alarm.debounce_k > alarm.debounce_n:
        raise ConfigError(
            f"{t.key('debounce_k')} = {alarm.debounce_k}: must not exceed debounce_n "
            f"({alarm.debounce_n}); it is 'k of the last n windows'"
        )
    return alarm


def _parse_drift(t: Table | None, base_dir: Path | None) -> DriftConfig:
    if t is None:
        return DriftConfig()
    drift = DriftConfig(
        window=t.get("window", int, 512, check=in_range(8, 100_000)),
        min_windows=t.get("min_windows", int, 64, check=in_range(1, 100_000)),
        ks_limit=t.get("ks_limit", float, 0.5, check=in_range(0.01, 1.0)),
        capture_dir=str(t.path("capture_dir", base_dir) or ""),
        capture_max_windows=t.get("capture_max_windows", int, 4096, check=in_range(1, 10_000_000)),
        capture_max_mb=t.get("capture_max_mb", float, 256.0, check=in_range(0.1, 1_000_000.0)),
    )
    t.done()
    if drift.min_windows > drift.window:
        raise ConfigError(
            f"{t.key('min_windows')} = {drift.min_windows}: must not exceed window ({drift.window})"
        )
    return drift


def _parse_robot(t: Table, base_dir: Path | None) -> RobotConfig:
    robot_id = t.get("id", str, check=identifier, fix='e.g. id = "robot1"')
    if robot_id in RESERVED_ROBOT_IDS:
        raise ConfigError(
            f"{t.key('id')} = {robot_id!r}: reserved for device-level MQTT topics "
            f"({', '.join(sorted(RESERVED_ROBOT_IDS))}); choose another robot id"
        )
    bundles: tuple[str, ...]
    if "bundle" in t.data and "bundles" in t.data:
        raise ConfigError(f"{t.where}: set bundle or bundles, not both")
    if "bundles" in t.data:
        bundles = str_list(t, "bundles", 'e.g. bundles = ["/var/lib/rapp-agent/r1-p1.rapp"]')
        if not bundles:
            raise ConfigError(f"{t.key('bundles')} is empty; list at least one .rapp file")
    else:
        bundles = (
            t.get("bundle", str, "", fix="set bundle = '/path/model.rapp' (or 'default')") or "",
        )
        t.seen.add("bundles")
    source_table = t.table("source", required=True)
    assert source_table is not None
    robot = RobotConfig(
        id=robot_id,
        source=parse_source(source_table, base_dir),
        bundles=tuple(_bundle_path(b, base_dir) for b in bundles if b),
        alarm=_parse_alarm(t.table("alarm")),
        drift=_parse_drift(t.table("drift"), base_dir),
    )
    t.done()
    if not robot.bundles:
        raise ConfigError(
            f"{t.key('bundle')} is missing; give the robot a model bundle (a .rapp file, or "
            "'default' for the shipped simulator model)"
        )
    return robot


def _parse_trust(t: Table | None, base_dir: Path | None) -> TrustConfig:
    if t is None:
        return TrustConfig()
    trust = TrustConfig(
        keys=tuple(
            _key_entry(k, base_dir)
            for k in str_list(t, "keys", "base64 Ed25519 public keys or paths to .pub files")
        ),
        allow_unsigned=t.get("allow_unsigned", bool, False),
    )
    t.done()
    return trust


def _parse_ota(t: Table | None, base_dir: Path | None) -> OtaSettings:
    return OtaSettings() if t is None else OtaSettings.from_table(t, base_dir)


def _parse_integrations(
    top: Table, device_id: str, broker: bool
) -> tuple[HomeAssistantSettings, SparkplugSettings]:
    """[homeassistant] and [sparkplug]: opt-in, and both need the [mqtt] broker."""
    ha, spb = top.table("homeassistant"), top.table("sparkplug")
    return (
        HomeAssistantSettings()
        if ha is None
        else HomeAssistantSettings.from_table(ha, broker=broker),
        SparkplugSettings()
        if spb is None
        else SparkplugSettings.from_table(spb, device_id, broker=broker),
    )


def parse_config(data: Mapping[str, Any], source_path: str = "") -> AgentConfig:
    """Validate a parsed TOML document (pure: no file system access). Relative paths are
    resolved against the directory of ``source_path``, the config file."""
    base_dir = Path(source_path).absolute().parent if source_path else None
    top = Table(data, "")
    agent_table = top.table("agent", required=True)
    assert agent_table is not None
    agent = _parse_agent(agent_table, base_dir)
    top.seen.add("mqtt")
    mqtt = _parse_mqtt(data["mqtt"], agent.device_id, base_dir) if "mqtt" in data else None
    telemetry = _parse_telemetry(top.table("telemetry"))
    trust = _parse_trust(top.table("trust"), base_dir)
    ota = _parse_ota(top.table("ota"), base_dir)
    http_table = top.table("http")
    http = HttpSettings.from_table(http_table) if http_table is not None else None
    homeassistant, sparkplug = _parse_integrations(top, agent.device_id, mqtt is not None)
    top.seen.add("robots")
    robots_raw = data.get("robots")
    if not isinstance(robots_raw, list) or not robots_raw:
        raise ConfigError(
            "robots: missing; add at least one [[robots]] table with id, bundle and [robots.source]"
        )
    robots = tuple(
        _parse_robot(Table(r, f"robots[{i}]"), base_dir) for i, r in enumerate(robots_raw)
    )
    ids = [r.id for r in robots]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise ConfigError(f"robots: id {duplicate!r} appears twice; robot ids must be unique")
    top.done()
    return AgentConfig(
        agent=agent,
        mqtt=mqtt,
        telemetry=telemetry,
        trust=trust,
        robots=robots,
        source_path=source_path,
        ota=ota,
        http=http,
        homeassistant=homeassistant,
        sparkplug=sparkplug,
    )


def load_config(path: Path | str) -> AgentConfig:
    """Read and validate the TOML file at ``path``."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{file}: no such config file; pass --config PATH") from err
    except OSError as err:
        raise ConfigError(f"{file}: cannot read ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{file}: not UTF-8 text ({err.reason}); save it as UTF-8") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{file}: not valid TOML ({err})") from err
    return parse_config(data, str(file))


def _bundle_path(entry: str, base_dir: Path | None) -> str:
    """A bundle entry as an absolute path; ``default`` names the shipped bundle."""
    return entry if entry == DEFAULT_BUNDLE else str(resolve_path(entry, base_dir))


def _key_entry(entry: str, base_dir: Path | None) -> str:
    """A trust key is either the base64 text of an Ed25519 public key or a path to a .pub
    file; paths are made absolute here, keys are left alone."""
    try:
        if len(base64.b64decode(entry, validate=True)) == ED25519_KEY_BYTES:
            return entry
    except (binascii.Error, ValueError):
        pass
    return str(resolve_path(entry, base_dir))


def check_environment(config: AgentConfig) -> None:
    """The checks that need the machine: files exist and are readable, ports can be opened."""

    def readable(key: str, value: str) -> None:
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"{key} = {value!r}: no such file ({path}); fix the path")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"{key} = {value!r}: not readable by this user; check permissions")

    mqtt = config.mqtt
    if mqtt is not None:
        if mqtt.password_file is not None:
            readable("mqtt.password_file", str(mqtt.password_file))
        if mqtt.tls is not None:
            for key in ("ca_file", "cert_file", "key_file"):
                value = getattr(mqtt.tls, key)
                if value is not None:
                    readable(f"mqtt.tls.{key}", str(value))
    for i, robot in enumerate(config.robots):
        for j, bundle in enumerate(robot.bundles):
            if bundle == "default":  # shipped with the package; checked when loaded
                continue
            readable(f"robots[{i}].bundles[{j}]", bundle)
        robot.source.check_environment(f"robots[{i}].source")
