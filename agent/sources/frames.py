"""Decoded frames → :class:`SampleChunk`: the firmware side's block conversion, plus what the
agent adds (unwrapped sequence numbers, reception times, gap counters, reconnect gaps)."""

from __future__ import annotations

import time

from agent.sources.base import SampleChunk
from firmware_config.blocks import FrameAssembler
from firmware_config.channel_map import ChannelMap
from firmware_config.protocol import Frame


class FrameChunker:
    def __init__(self, channel_map: ChannelMap) -> None:
        self._blocks = FrameAssembler(channel_map)
        self._seq = 0
        self._after_reset = False
        self.frames = 0
        self.gaps = 0
        self.missing_frames = 0

    def reset(self) -> None:
        """After a reconnect the stream restarts: the next chunk follows a gap."""
        self._blocks.reset()
        self._after_reset = self.frames > 0

    def chunk(self, frame: Frame) -> SampleChunk:
        block = self._blocks.convert(frame)
        gap = block.gap_before or self._after_reset
        self._after_reset = False
        if gap:
            self.gaps += 1
            self.missing_frames += block.missing_frames
        self._seq += 1 + block.missing_frames
        self.frames += 1
        return SampleChunk(
            samples=block.samples,
            cycle_start=block.cycle_start,
            program=block.program_id,
            seq_first=self._seq,
            seq_last=self._seq,
            wall_time=time.time(),
            received_monotonic=time.monotonic(),
            gap_before=gap,
        )
