"""One robot as the daemon runs it: its config, source, queue and pipeline, wired together.

The daemon's main loop owns every :class:`RobotRuntime`; other threads never touch one directly
(the OTA worker goes through the main loop, see agent/ota/). It is also the per-robot side of
OTA's narrow view of the daemon (:class:`agent.ota.host.OtaRobot`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.config import RobotConfig
from agent.core.features import FeatureSpec, Segment
from agent.core.scoring import Scorer
from agent.pipeline.robot import RobotPipeline, Swap
from agent.sources.base import ChunkQueue, Source
from firmware_config.channel_map import ChannelMap


@dataclass
class RobotRuntime:
    config: RobotConfig
    pipeline: RobotPipeline
    source: Source
    queue: ChunkQueue
    columns: np.ndarray | None  # source column → bundle channel selection, None = identity
    channel_map: ChannelMap | None = None  # the map the source was built with, if any

    # -- what OTA sees (agent/ota/host.py) ----------------------------------------------------

    @property
    def input_spec(self) -> FeatureSpec:
        return self.pipeline.spec

    @property
    def source_channels(self) -> tuple[str, ...]:
        return tuple(self.source.channels)

    @property
    def schema_hash(self) -> int | None:
        return self.channel_map.schema_hash if self.channel_map is not None else None

    def recent_normal(self) -> list[Segment]:
        return list(self.pipeline.recent_normal)

    def install(self, scorer: Scorer) -> Swap:
        return self.pipeline.install(scorer)

    def restore(self, swap: Swap) -> None:
        self.pipeline.restore(swap)
