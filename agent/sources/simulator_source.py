"""Built-in simulator source: the firmware simulator's arm, straight into the pipeline."""

from __future__ import annotations

import time

import numpy as np

from agent.core.clock import PROCESS_CLOCK
from agent.sources.base import ChunkQueue, SampleChunk, SourceError
from agent.sources.paced import PacedSource
from firmware_config.channel_map import ChannelMap
from firmware_config.simulator import (
    SimulationConfig,
    SimulationError,
    Simulator,
    parse_fault,
)


class SimulatorSource(PacedSource):
    kind = "simulator"

    def __init__(
        self,
        channel_map: ChannelMap,
        queue: ChunkQueue,
        *,
        seed: int = 0,
        program: int = 1,
        faults: tuple[str, ...] = (),
        speed: float = 1.0,
        duration_s: float | None = None,
    ) -> None:
        try:
            config = SimulationConfig(
                seed=seed,
                duration_s=duration_s,
                sample_rate_hz=int(channel_map.sample_rate_hz),
                schedule=((program, 1),),
                faults=tuple(parse_fault(f) for f in faults),
            )
            self._sim = Simulator(config, channel_map)
        except SimulationError as err:
            raise SourceError(f"simulator source: {err}") from err
        super().__init__(channel_map.names, queue, config.sample_rate_hz, speed)
        self._frame = channel_map.samples_per_frame
        self._chunks = self._sim.chunks(self._frame)
        self._seq = 0

    def next_chunk(self) -> SampleChunk | None:
        run = next(self._chunks, None)
        if run is None:
            return None
        self._seq += 1
        return SampleChunk(
            samples=run.currents,
            cycle_start=run.cycle_start,
            program=run.program_id.astype(np.int64),
            seq_first=self._seq,
            seq_last=self._seq,
            wall_time=PROCESS_CLOCK.now(),
            received_monotonic=time.monotonic(),
        )
