"""Frames → per-sample blocks in physical units, the shape the windowing code consumes.

A frame carries its cycle marker once (flag + sample index) and one program id (the program
running at its last sample), and gaps are only visible in the sequence numbers. Consumers
want per-sample arrays instead: samples in amps, a cycle-start flag per sample, a program id
per sample, and whether data is missing before the block. :class:`FrameAssembler` does that
conversion statefully, so every consumer (live agent, replay, demo) gets it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_config.channel_map import ChannelMap
from firmware_config.protocol import Frame, seq_distance

NO_PROGRAM = -1


@dataclass(frozen=True, eq=False)
class SampleBlock:
    """One frame's samples, ready for windowing."""

    seq: int
    timestamp_us: int
    samples: np.ndarray  # (S, C) float32, physical units
    cycle_start: np.ndarray  # (S,) bool
    program_id: np.ndarray  # (S,) int64; -1 where unknown
    gap_before: bool  # frames are missing between the previous block and this one
    missing_frames: int  # how many (0 if none or unknown)


class FrameAssembler:
    """Stateful Frame → :class:`SampleBlock` converter for one stream.

    Samples before the cycle start inside a frame still belong to the previous cycle, so they
    get the previous frame's program id (unknown, -1, for the very first frame).
    """

    def __init__(self, channel_map: ChannelMap) -> None:
        self._map = channel_map
        self._last_seq: int | None = None
        self._program = NO_PROGRAM

    def reset(self) -> None:
        """Forget the stream position (e.g. after switching devices)."""
        self._last_seq = None
        self._program = NO_PROGRAM

    def convert(self, frame: Frame) -> SampleBlock:
        missing = 0
        if self._last_seq is not None:
            distance = seq_distance(self._last_seq, frame.seq)
            missing = distance - 1 if 0 < distance < (1 << 15) else 0
            gap = distance != 1
        else:
            gap = False
        self._last_seq = frame.seq
        programs = np.full(frame.n_samples, frame.program_id, dtype=np.int64)
        if frame.cycle_start:
            programs[: frame.cycle_start_index] = self._program
        self._program = frame.program_id
        return SampleBlock(
            seq=frame.seq,
            timestamp_us=frame.timestamp_us,
            samples=self._map.to_physical(frame.samples),
            cycle_start=frame.cycle_mask(),
            program_id=programs,
            gap_before=gap,
            missing_frames=missing,
        )
