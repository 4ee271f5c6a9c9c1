"""The agent's TOML configuration: parsed into frozen dataclasses, validated field by field.

Parsing is pure (no file or port access) so it can be tested and reused; what needs the
machine — files that must exist, ports that must open — is checked by
:func:`check_environment`. Every error names the key, the value and the fix, and the CLI
turns :class:`ConfigError` into exit code 2 (ESPHome-style: tell the user what to do).

Example: see ``examples/agent-*.toml`` and the README.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.backends import BACKEND_NAMES
from agent.sinks.mqtt.errors import MqttSettingsError
from agent.sinks.mqtt.settings import MqttSettings

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SOURCE_KINDS = ("serial", "mqtt", "replay", "simulator")
DEFAULT_STATE_DIR = "/var/lib/rapp-agent"


class ConfigError(ValueError):
    """An invalid agent configuration; the message says which key and how to fix it."""


@dataclass(frozen=True)
class TelemetryConfig:
    """Rates of what the agent publishes besides alarms."""

    score_interval_s: float = 1.0
    telemetry_limit: int = 10_000
    status_interval_s: float = 10.0


@dataclass(frozen=True)
class SourceConfig:
    kind: str
    port: str = ""
    baudrate: int = 921_600
    channel_map: str = ""
    topic: str = ""
    payload: str = "frames"
    file: str = ""
    speed: float = 1.0
    loop: bool = False
    seed: int = 0
    program: int = 1
    faults: tuple[str, ...] = ()
    queue_chunks: int = 1000


@dataclass(frozen=True)
class AlarmOverrides:
    ewma_alpha: float | None = None
    debounce_k: int | None = None
    debounce_n: int | None = None
    clear_ratio: float | None = None
    clear_windows: int | None = None
    threshold: str = "fixed"  # or "dynamic" (Telemanom-style, agent/pipeline/thresholds.py)


@dataclass(frozen=True)
class DriftConfig:
    """[robots.drift]: drift monitor limits and the optional capture of normal windows."""

    window: int = 512
    min_windows: int = 64
    ks_limit: float = 0.5
    capture_dir: str = ""  # empty: no capture
    capture_max_windows: int = 4096


@dataclass(frozen=True)
class RobotConfig:
    id: str
    source: SourceConfig
    bundles: tuple[str, ...]
    alarm: AlarmOverrides = field(default_factory=AlarmOverrides)
    drift: DriftConfig = field(default_factory=DriftConfig)


@dataclass(frozen=True)
class TrustConfig:
    keys: tuple[str, ...] = ()
    allow_unsigned: bool = False


@dataclass(frozen=True)
class OtaConfig:
    """Over-the-air updates (SPEC §9; see agent/ota/). Rates are fractions of windows."""

    enabled: bool = True
    groups: tuple[str, ...] = ()
    max_bundle_bytes: int = 64 * 1024 * 1024
    need_interval_s: float = 2.0  # ask for missing chunks after this long without one
    transfer_timeout_s: float = 300.0  # give up when no chunk arrived for this long
    max_normal_alarm_rate: float = 0.05  # gate: candidate on recent normal windows
    min_recent_windows: int = 32  # gate: wait for this many recent normal windows …
    gate_wait_s: float = 30.0  # … at most this long, then gate on what there is
    probation_windows: int = 200
    probation_max_alarm_rate: float = 0.05
    probation_max_latency_s: float = 5.0
    probation_max_s: float = 600.0  # commit a clean probation that saw too few windows


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
    ota: OtaConfig = field(default_factory=OtaConfig)


# --- small declarative validator -------------------------------------------------------

Check = Callable[[Any], str | None]


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


class _Table:
    """Reads one TOML table, tracking which keys were used to reject unknown ones."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: must be a table (e.g. [{where}]), got {data!r}")
        self.data = data
        self.where = where
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def get(
        self,
        name: str,
        kind: type | tuple[type, ...],
        default: Any = ...,
        check: Check | None = None,
        fix: str = "",
    ) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if default is ...:
                raise ConfigError(f"{self.key(name)} is missing; {fix or 'add it'}")
            return default
        value = self.data[name]
        if kind in (float, (float,)) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ConfigError(
                f"{self.key(name)} = {value!r}: must be {_type_name(kind)}"
                + (f"; {fix}" if fix else "")
            )
        if check is not None:
            problem = check(value)
            if problem:
                raise ConfigError(f"{self.key(name)} = {value!r}: {problem}")
        return value

    def table(self, name: str, required: bool = False) -> _Table | None:
        self.seen.add(name)
        if name not in self.data:
            if required:
                raise ConfigError(f"[{self.key(name)}] is missing; add the section")
            return None
        return _Table(self.data[name], self.key(name))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            allowed = ", ".join(sorted(self.seen))
            place = self.where or "top level"
            raise ConfigError(
                f"{self.key(unknown[0])}: unknown key in {place}; allowed keys: {allowed} "
                "(check the spelling)"
            )


def _one_of(choices: tuple[str, ...]) -> Check:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _in_range(lo: float, hi: float, what: str = "") -> Check:
    def check(value: float) -> str | None:
        if lo <= value <= hi:
            return None
        return f"must be between {lo:g} and {hi:g}" + (f" ({what})" if what else "")

    return check


def _identifier(value: str) -> str | None:
    if ID_PATTERN.match(value):
        return None
    return "use 1–64 letters, digits, '.', '_' or '-' (it becomes part of MQTT topics)"


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _str_list(table: _Table, name: str, fix: str) -> tuple[str, ...]:
    values = table.get(name, list, [], fix=fix)
    if not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{table.key(name)} = {values!r}: must be a list of strings; {fix}")
    return tuple(values)


# --- sections ---------------------------------------------------------------------------


def _parse_agent(t: _Table) -> AgentSection:
    section = AgentSection(
        device_id=t.get("device_id", str, check=_identifier, fix='e.g. device_id = "cell7-ipc"'),
        state_dir=t.get("state_dir", str, DEFAULT_STATE_DIR, check=_non_empty),
        backend=t.get("backend", str, "auto", check=_one_of(BACKEND_NAMES)),
        precision=t.get("precision", str, "int8", check=_one_of(("int8", "fp32"))),
        threads=t.get("threads", int, 1, check=_in_range(1, 64)),
        log_level=t.get(
            "log_level", str, "info", check=_one_of(("debug", "info", "warning", "error"))
        ),
    )
    t.done()
    return section


def _parse_mqtt(data: Any, device_id: str) -> MqttSettings:
    """The [mqtt] table, validated by the MQTT subsystem's own settings class."""
    if isinstance(data, Mapping) and "password" in data:
        raise ConfigError(
            "mqtt.password: passwords are not accepted in the config file; put it in a file "
            "readable only by the agent and set password_file, or use a systemd credential "
            "(password_credential)"
        )
    if isinstance(data, Mapping) and "device_id" in data:
        raise ConfigError("mqtt.device_id: set agent.device_id instead (one id per agent)")
    try:
        return MqttSettings.from_mapping({**data, "device_id": device_id})
    except (MqttSettingsError, TypeError) as err:
        raise ConfigError(str(err)) from err


def _parse_telemetry(t: _Table | None) -> TelemetryConfig:
    if t is None:
        return TelemetryConfig()
    config = TelemetryConfig(
        score_interval_s=t.get("score_interval_s", float, 1.0, check=_in_range(0.0, 3600)),
        telemetry_limit=t.get("telemetry_limit", int, 10_000, check=_in_range(10, 10_000_000)),
        status_interval_s=t.get("status_interval_s", float, 10.0, check=_in_range(1, 3600)),
    )
    t.done()
    return config


SOURCE_KEYS = {
    "serial": ("port", "baudrate", "channel_map", "queue_chunks"),
    "mqtt": ("topic", "payload", "channel_map", "queue_chunks"),
    "replay": ("file", "speed", "loop", "queue_chunks"),
    "simulator": ("channel_map", "speed", "seed", "program", "faults", "queue_chunks"),
}


def _parse_source(t: _Table) -> SourceConfig:
    kind = t.get("kind", str, check=_one_of(SOURCE_KINDS), fix='e.g. kind = "serial"')
    allowed = SOURCE_KEYS[kind]
    for key in t.data:
        if key != "kind" and key not in allowed and key in _all_source_keys():
            raise ConfigError(
                f"{t.key(key)}: not used by a {kind} source; allowed: {', '.join(allowed)}"
            )
    src = SourceConfig(
        kind=kind,
        port=t.get("port", str, "", fix='e.g. port = "/dev/ttyUSB0"'),
        baudrate=t.get("baudrate", int, 921_600, check=_in_range(1200, 16_000_000)),
        channel_map=t.get("channel_map", str, ""),
        topic=t.get("topic", str, ""),
        payload=t.get("payload", str, "frames", check=_one_of(("frames", "json"))),
        file=t.get("file", str, ""),
        speed=t.get("speed", float, 1.0, check=_in_range(0.0, 1000.0, "0 = as fast as possible")),
        loop=t.get("loop", bool, False),
        seed=t.get("seed", int, 0),
        program=t.get("program", int, 1, check=_in_range(0, 255)),
        faults=_str_list(t, "faults", 'e.g. faults = ["friction:J2:onset=60"]'),
        queue_chunks=t.get("queue_chunks", int, 1000, check=_in_range(10, 1_000_000)),
    )
    t.done()
    required = {"serial": ("port", "channel_map"), "mqtt": ("topic",), "replay": ("file",)}
    for key in required.get(kind, ()):
        if not getattr(src, key):
            raise ConfigError(f"{t.key(key)} is missing; a {kind} source needs it")
    return src


def _all_source_keys() -> set[str]:
    return {key for keys in SOURCE_KEYS.values() for key in keys}


def _parse_alarm(t: _Table | None) -> AlarmOverrides:
    if t is None:
        return AlarmOverrides()
    alarm = AlarmOverrides(
        ewma_alpha=t.get("ewma_alpha", float, None, check=_in_range(0.001, 1.0)),
        debounce_k=t.get("debounce_k", int, None, check=_in_range(1, 1000)),
        debounce_n=t.get("debounce_n", int, None, check=_in_range(1, 1000)),
        clear_ratio=t.get("clear_ratio", float, None, check=_in_range(0.01, 1.0)),
        clear_windows=t.get("clear_windows", int, None, check=_in_range(1, 1000)),
        threshold=t.get("threshold", str, "fixed", check=_one_of(("fixed", "dynamic"))),
    )
    t.done()
    if alarm.debounce_k and alarm.debounce_n and alarm.debounce_k > alarm.debounce_n:
        raise ConfigError(
            f"{t.key('debounce_k')} = {alarm.debounce_k}: must not exceed debounce_n "
            f"({alarm.debounce_n}); it is 'k of the last n windows'"
        )
    return alarm


def _parse_drift(t: _Table | None) -> DriftConfig:
    if t is None:
        return DriftConfig()
    drift = DriftConfig(
        window=t.get("window", int, 512, check=_in_range(8, 100_000)),
        min_windows=t.get("min_windows", int, 64, check=_in_range(1, 100_000)),
        ks_limit=t.get("ks_limit", float, 0.5, check=_in_range(0.01, 1.0)),
        capture_dir=t.get("capture_dir", str, ""),
        capture_max_windows=t.get("capture_max_windows", int, 4096, check=_in_range(1, 10_000_000)),
    )
    t.done()
    if drift.min_windows > drift.window:
        raise ConfigError(
            f"{t.key('min_windows')} = {drift.min_windows}: must not exceed window ({drift.window})"
        )
    return drift


def _parse_robot(t: _Table) -> RobotConfig:
    robot_id = t.get("id", str, check=_identifier, fix='e.g. id = "robot1"')
    bundles: tuple[str, ...]
    if "bundle" in t.data and "bundles" in t.data:
        raise ConfigError(f"{t.where}: set bundle or bundles, not both")
    if "bundles" in t.data:
        bundles = _str_list(t, "bundles", 'e.g. bundles = ["/var/lib/rapp-agent/r1-p1.rapp"]')
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
        source=_parse_source(source_table),
        bundles=tuple(b for b in bundles if b),
        alarm=_parse_alarm(t.table("alarm")),
        drift=_parse_drift(t.table("drift")),
    )
    t.done()
    if not robot.bundles:
        raise ConfigError(
            f"{t.key('bundle')} is missing; give the robot a model bundle (a .rapp file, or "
            "'default' for the shipped simulator model)"
        )
    return robot


def _parse_trust(t: _Table | None) -> TrustConfig:
    if t is None:
        return TrustConfig()
    trust = TrustConfig(
        keys=_str_list(t, "keys", "base64 Ed25519 public keys or paths to .pub files"),
        allow_unsigned=t.get("allow_unsigned", bool, False),
    )
    t.done()
    return trust


def _parse_ota(t: _Table | None) -> OtaConfig:
    if t is None:
        return OtaConfig()
    groups = _str_list(t, "groups", 'e.g. groups = ["hall3", "kr16"] (MQTT topic levels)')
    for group in groups:
        if _identifier(group):
            raise ConfigError(f"{t.key('groups')}: {group!r}: {_identifier(group)}")
    ota = OtaConfig(
        enabled=t.get("enabled", bool, True),
        groups=groups,
        max_bundle_bytes=t.get(
            "max_bundle_bytes", int, 64 * 1024 * 1024, check=_in_range(1024, 1 << 31)
        ),
        need_interval_s=t.get("need_interval_s", float, 2.0, check=_in_range(0.1, 600)),
        transfer_timeout_s=t.get("transfer_timeout_s", float, 300.0, check=_in_range(1, 86400)),
        max_normal_alarm_rate=t.get(
            "max_normal_alarm_rate", float, 0.05, check=_in_range(0.0, 1.0)
        ),
        min_recent_windows=t.get("min_recent_windows", int, 32, check=_in_range(0, 100_000)),
        gate_wait_s=t.get("gate_wait_s", float, 30.0, check=_in_range(0, 3600)),
        probation_windows=t.get("probation_windows", int, 200, check=_in_range(1, 1_000_000)),
        probation_max_alarm_rate=t.get(
            "probation_max_alarm_rate", float, 0.05, check=_in_range(0.0, 1.0)
        ),
        probation_max_latency_s=t.get(
            "probation_max_latency_s", float, 5.0, check=_in_range(0.001, 3600)
        ),
        probation_max_s=t.get("probation_max_s", float, 600.0, check=_in_range(1, 30 * 86400)),
    )
    t.done()
    return ota


def parse_config(data: Mapping[str, Any], source_path: str = "") -> AgentConfig:
    """Validate a parsed TOML document (pure: no file system access)."""
    top = _Table(data, "")
    agent_table = top.table("agent", required=True)
    assert agent_table is not None
    agent = _parse_agent(agent_table)
    top.seen.add("mqtt")
    mqtt = _parse_mqtt(data["mqtt"], agent.device_id) if "mqtt" in data else None
    telemetry = _parse_telemetry(top.table("telemetry"))
    trust = _parse_trust(top.table("trust"))
    ota = _parse_ota(top.table("ota"))
    top.seen.add("robots")
    robots_raw = data.get("robots")
    if not isinstance(robots_raw, list) or not robots_raw:
        raise ConfigError(
            "robots: missing; add at least one [[robots]] table with id, bundle and [robots.source]"
        )
    robots = tuple(_parse_robot(_Table(r, f"robots[{i}]")) for i, r in enumerate(robots_raw))
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
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{file}: not valid TOML ({err})") from err
    return parse_config(data, str(file))


def resolve(config: AgentConfig, value: str) -> Path:
    """Relative paths in the config are relative to the config file's directory."""
    path = Path(value)
    if path.is_absolute() or not config.source_path:
        return path
    return Path(config.source_path).parent / path


def check_environment(config: AgentConfig) -> None:
    """The checks that need the machine: files exist and are readable, ports can be opened."""

    def readable(key: str, value: str) -> None:
        path = resolve(config, value)
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
        src = robot.source
        if src.channel_map:
            readable(f"robots[{i}].source.channel_map", src.channel_map)
        if src.kind == "replay":
            readable(f"robots[{i}].source.file", src.file)
        if src.kind == "serial":
            port = Path(src.port)
            if not port.exists():
                raise ConfigError(
                    f"robots[{i}].source.port = {src.port!r}: no such device; check the cable "
                    "and `ls /dev/serial/by-id/` (the agent will retry once it runs, but it "
                    "must exist at start)"
                )
            if not os.access(port, os.R_OK | os.W_OK):
                raise ConfigError(
                    f"robots[{i}].source.port = {src.port!r}: permission denied; add the agent "
                    "user to the dialout group (SupplementaryGroups=dialout in the unit)"
                )
