"""Turn decoded serial frames into sample chunks: units, cycle marks, unwrapped sequence."""

from __future__ import annotations

import time

import numpy as np

from agent.sources.base import SampleChunk
from firmware_config.channel_map import ChannelMap
from firmware_config.protocol import Frame

SEQ_MODULUS = 1 << 16


class FrameAssembler:
    """Converts frames of one robot to chunks; detects sequence gaps across u16 wraparound."""

    def __init__(self, channel_map: ChannelMap) -> None:
        self._map = channel_map
        self._last_seq: int | None = None
        self._unwrapped = 0
        self.frames = 0
        self.gaps = 0
        self.missing_frames = 0

    def reset(self) -> None:
        """Forget the sequence after a reconnect: the next frame starts a new run."""
        self._last_seq = None

    def chunk(self, frame: Frame, gap_hint: bool = False) -> SampleChunk:
        n = frame.samples.shape[0]
        gap = gap_hint
        if self._last_seq is None:
            gap = gap or self.frames > 0
            self._unwrapped += 1
        else:
            step = (frame.seq - self._last_seq) % SEQ_MODULUS
            if step != 1:
                gap = True
                self.gaps += 1
                self.missing_frames += max(step - 1, 0)
            self._unwrapped += max(step, 1)
        self._last_seq = frame.seq
        self.frames += 1
        cycle = np.zeros(n, dtype=bool)
        if frame.cycle_start:
            cycle[frame.cycle_start_index] = True
        return SampleChunk(
            samples=self._map.to_physical(frame.samples).astype(np.float32),
            cycle_start=cycle,
            program=np.full(n, frame.program_id, dtype=np.int64),
            seq_first=self._unwrapped,
            seq_last=self._unwrapped,
            wall_time=time.time(),
            received_monotonic=time.monotonic(),
            gap_before=gap,
        )
