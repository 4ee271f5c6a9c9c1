"""Everything `rapp-agent run` checks before it serves, run up front and reported at once.

`rapp-agent run --check` and `run` itself call :func:`preflight`: keys parse and are public
keys, every bundle loads and verifies against the trust policy and passes its canary on this
device, channel maps load and deliver the bundles' channels, replay files read, serial ports
exist, the state directory is (or can be made) a writable directory, password and TLS files
load, MQTT sources have an ``[mqtt]`` section, the ``[http]`` address can be listened on
(or is this agent's own endpoint, on a reload). Each problem is one line naming the key, the
value and the fix; the CLI prints them all and exits 2, so systemd does not restart into a
broken configuration (``RestartPreventExitStatus=2``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from agent.config import AgentConfig, RobotConfig
from agent.core.bundle import TrustPolicy
from agent.core.errors import AgentError, ConfigError
from agent.core.recording import read_recording
from agent.models import (
    DEFAULT_BUNDLE,
    ScorerSettings,
    column_selection,
    load_robot_scorers,
    trust_policy,
)
from agent.sinks.http.probe import check_listen
from agent.sinks.mqtt.client import build_client
from agent.sources.factory import channel_map_for
from agent.sources.settings import MqttSourceSettings, ReplaySourceSettings
from firmware_config.errors import FirmwareError

Problem = str


def _attempt(problems: list[Problem], check: Callable[[], object]) -> object | None:
    try:
        return check()
    except (AgentError, FirmwareError) as err:
        problems.append(str(err))
    except OSError as err:
        problems.append(f"{err.filename or 'file'}: {err.strerror or err}")
    return None


def check_state_dir(path: Path) -> None:
    """The state directory exists as a writable directory, or can be created."""

    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"agent.state_dir = {str(path)!r}: is a file, not a directory; fix the path"
        )
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"agent.state_dir = {str(path)!r}: {existing} is not writable by this user; "
            "fix the permissions or use StateDirectory= in the unit"
        )


def preflight(config: AgentConfig) -> list[Problem]:
    """Every problem that would stop `run` from serving, in config order (empty: ready)."""
    problems: list[Problem] = []
    _attempt(problems, lambda: check_state_dir(Path(config.agent.state_dir)))
    if config.mqtt is not None:
        settings = config.mqtt
        _attempt(problems, lambda: build_client(settings))  # password and TLS files load
    if config.http is not None:
        http = config.http
        _attempt(problems, lambda: check_listen(http, config.agent.device_id))  # port free
    policy = _attempt(
        problems, lambda: trust_policy(config.trust.keys, config.trust.allow_unsigned)
    )
    a = config.agent
    scorer_settings = ScorerSettings(a.backend, a.precision, a.threads)
    for i, robot in enumerate(config.robots):
        if isinstance(robot.source, MqttSourceSettings) and config.mqtt is None:
            problems.append(
                f"robots[{i}].source.kind = 'mqtt' needs an [mqtt] section to subscribe to "
                f"{robot.source.topic!r}; add [mqtt] host = …"
            )
        if isinstance(policy, TrustPolicy):
            _check_robot(problems, i, robot, policy, scorer_settings)
    return problems


def _check_robot(
    problems: list[Problem],
    i: int,
    robot: RobotConfig,
    policy: TrustPolicy,
    scorer_settings: ScorerSettings,
) -> None:
    before = len(problems)
    _attempt(problems, lambda: robot.source.check_environment(f"robots[{i}].source"))
    if len(problems) > before:
        return  # the source's files or port are missing: nothing more to learn
    for j, entry in enumerate(robot.bundles):
        if entry != DEFAULT_BUNDLE and not Path(entry).is_file():
            problems.append(
                f"robots[{i}].bundles[{j}] = {entry!r}: no such file; fix the path (or use "
                "'default' for the shipped simulator model)"
            )
    if len(problems) > before:
        return
    channel_map = _attempt(problems, lambda: channel_map_for(robot.source, robot.id))
    rate = getattr(channel_map, "sample_rate_hz", None)
    scorers = _attempt(
        problems, lambda: load_robot_scorers(robot.bundles, policy, rate, scorer_settings)
    )
    if not scorers:
        return
    first = scorers[0].bundle  # type: ignore[index]
    names = getattr(channel_map, "names", None)
    if names is not None:
        _attempt(problems, lambda: column_selection(names, first))
    if isinstance(robot.source, ReplaySourceSettings):
        channels = first.manifest.input.channels
        _attempt(problems, lambda: read_recording(robot.source.file, channels))
