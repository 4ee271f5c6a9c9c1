"""Build a robot's source from its config section."""

from __future__ import annotations

from collections.abc import Callable

from agent.config import AgentConfig, RobotConfig, resolve
from agent.sources.base import ChunkQueue, Source, SourceError
from firmware_config.channel_map import (
    ChannelMap,
    ChannelMapError,
    load_builtin_map,
    load_channel_map,
)

Subscribe = Callable[[str, Callable[[str, bytes], None]], None]


def channel_map_for(config: AgentConfig, robot: RobotConfig) -> ChannelMap | None:
    src = robot.source
    if not src.channel_map:
        return load_builtin_map() if src.kind == "simulator" else None
    try:
        return load_channel_map(resolve(config, src.channel_map))
    except ChannelMapError as err:
        raise SourceError(f"robots[{robot.id}].source.channel_map: {err}") from err


def build_source(
    config: AgentConfig,
    robot: RobotConfig,
    channel_map: ChannelMap | None,
    queue: ChunkQueue,
    bundle_channels: tuple[str, ...],
    bundle_rate_hz: float,
    subscribe: Subscribe | None,
) -> Source:
    src = robot.source
    if src.kind == "serial":
        from agent.sources.serial_source import SerialSource

        assert channel_map is not None
        return SerialSource(src.port, src.baudrate, channel_map, queue)
    if src.kind == "simulator":
        from agent.sources.simulator_source import SimulatorSource

        assert channel_map is not None
        return SimulatorSource(
            channel_map,
            queue,
            seed=src.seed,
            program=src.program,
            faults=src.faults,
            speed=src.speed,
        )
    if src.kind == "replay":
        from agent.sources.replay_source import ReplaySource

        return ReplaySource(
            resolve(config, src.file),
            bundle_channels,
            bundle_rate_hz,
            queue,
            speed=src.speed,
            loop=src.loop,
        )
    if src.kind == "mqtt":
        from agent.sources.mqtt_source import MqttSource

        if subscribe is None:
            raise SourceError(
                f"robots[{robot.id}].source.kind = 'mqtt' needs an [mqtt] section to subscribe"
            )
        if channel_map is None:
            raise SourceError(f"robots[{robot.id}].source.channel_map is needed for MQTT input")
        return MqttSource(src.topic, src.payload, channel_map, queue, subscribe)
    raise SourceError(f"unknown source kind {src.kind!r}")
