"""Build a robot's source from its settings: one builder per settings class."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.sources.base import ChunkQueue, Source, SourceError
from agent.sources.mqtt_source import MqttSource, Subscribe
from agent.sources.settings import (
    MqttSourceSettings,
    ReplaySourceSettings,
    SerialSourceSettings,
    SimulatorSourceSettings,
    SourceSettings,
)
from firmware_config.channel_map import (
    ChannelMap,
    ChannelMapError,
    load_builtin_map,
    load_channel_map,
)


def channel_map_for(settings: SourceSettings, robot_id: str) -> ChannelMap | None:
    """The source's channel map: its file, the shipped map for kinds that default to it, or
    None (a replay names its channels by the bundle)."""
    if settings.channel_map is None:
        return load_builtin_map() if settings.BUILTIN_MAP_DEFAULT else None
    try:
        return load_channel_map(settings.channel_map)
    except ChannelMapError as err:
        raise SourceError(f"robots[{robot_id}].source.channel_map: {err}") from err


@dataclass(frozen=True)
class SourceInputs:
    """What a builder may use besides the settings."""

    channel_map: ChannelMap | None
    queue: ChunkQueue
    bundle_channels: tuple[str, ...]
    bundle_rate_hz: float
    subscribe: Subscribe | None

    def require_map(self, settings: SourceSettings) -> ChannelMap:
        if self.channel_map is None:
            raise SourceError(f"a {settings.kind} source needs a channel map")
        return self.channel_map


def build_source(
    settings: SourceSettings,
    channel_map: ChannelMap | None,
    queue: ChunkQueue,
    bundle_channels: tuple[str, ...],
    bundle_rate_hz: float,
    subscribe: Subscribe | None,
) -> Source:
    builder = BUILDERS[type(settings)]
    return builder(
        settings, SourceInputs(channel_map, queue, bundle_channels, bundle_rate_hz, subscribe)
    )


def _serial(settings: SerialSourceSettings, inputs: SourceInputs) -> Source:
    from agent.sources.serial_source import SerialSource

    return SerialSource(
        settings.port, settings.baudrate, inputs.require_map(settings), inputs.queue
    )


def _simulator(settings: SimulatorSourceSettings, inputs: SourceInputs) -> Source:
    from agent.sources.simulator_source import SimulatorSource

    return SimulatorSource(
        inputs.require_map(settings),
        inputs.queue,
        seed=settings.seed,
        program=settings.program,
        faults=settings.faults,
        speed=settings.speed,
    )


def _replay(settings: ReplaySourceSettings, inputs: SourceInputs) -> Source:
    from agent.sources.replay_source import ReplaySource

    if settings.file is None:
        raise SourceError("a replay source needs a file")
    return ReplaySource.open(
        settings.file,
        inputs.bundle_channels,
        inputs.bundle_rate_hz,
        inputs.queue,
        speed=settings.speed,
        loop=settings.loop,
    )


def _mqtt(settings: MqttSourceSettings, inputs: SourceInputs) -> Source:
    if inputs.subscribe is None:
        raise SourceError(
            f"source.kind = 'mqtt' (topic {settings.topic!r}) needs an [mqtt] section to subscribe"
        )
    channel_map = inputs.require_map(settings)
    return MqttSource(settings.topic, settings.payload, channel_map, inputs.queue, inputs.subscribe)


# Each builder takes its own settings class; the registry is what keeps the pairs together.
BUILDERS: dict[type[SourceSettings], Callable[[Any, SourceInputs], Source]] = {
    SerialSourceSettings: _serial,
    MqttSourceSettings: _mqtt,
    ReplaySourceSettings: _replay,
    SimulatorSourceSettings: _simulator,
}
