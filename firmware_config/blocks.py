"""Frames → per-sample blocks in physical units, the shape the windowing code consumes.

A frame carries its cycle marker once (flag + sample index) and one program id (the program
running at its last sample). Consumers want per-sample arrays instead: samples in amps, a
cycle-start flag per sample, a program id per sample, and whether the block follows a
discontinuity. :class:`FrameAssembler` does that conversion statefully, so every consumer
(live agent, replay, demo) gets it the same way; whether data is missing before a frame is
decided by :class:`~firmware_config.sequence.SequenceTracker`, not here.

:meth:`FrameAssembler.convert` takes one :class:`Frame`; :meth:`FrameAssembler.convert_batch`
takes the frames one read completed, as rows of
:func:`~firmware_config.batch_decoder.record_dtype`, and returns one :class:`SampleBatch` with
the same per-sample values the frames' blocks would have had.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_config.channel_map import ChannelMap
from firmware_config.protocol import CYCLE_INDEX_SHIFT, FLAG_CYCLE_START, Frame
from firmware_config.sequence import SequenceStep, SequenceSteps

NO_PROGRAM = -1


@dataclass(frozen=True, eq=False)
class SampleBlock:
    """One frame's samples, ready for windowing."""

    seq: int
    timestamp_us: int
    samples: np.ndarray  # (S, C) float32, physical units
    cycle_start: np.ndarray  # (S,) bool
    program_id: np.ndarray  # (S,) int64; -1 where unknown
    gap_before: bool  # not contiguous with the previous block (lost, repeated or reordered)
    missing_frames: int  # frames known to be lost right before this block (0 if none)


@dataclass(frozen=True, eq=False)
class SampleBatch:
    """Consecutive frames' samples, ready for windowing; per-frame facts in per-frame arrays.

    Frame ``k`` holds samples ``k × samples_per_frame`` up to the next frame's first sample.
    """

    seq: np.ndarray  # (F,) wire sequence numbers
    timestamp_us: np.ndarray  # (F,)
    samples: np.ndarray  # (F × S, C) float32, physical units
    cycle_start: np.ndarray  # (F × S,) bool
    program_id: np.ndarray  # (F × S,) int64; -1 where unknown
    gap_before: np.ndarray  # (F,) bool: frame k is not contiguous with the frame before it
    missing_frames: np.ndarray  # (F,) frames known to be lost right before frame k
    samples_per_frame: int

    @property
    def n_frames(self) -> int:
        return int(self.seq.shape[0])

    def block(self, k: int) -> SampleBlock:
        """Frame ``k`` as the :class:`SampleBlock` :meth:`FrameAssembler.convert` gives."""
        rows = slice(k * self.samples_per_frame, (k + 1) * self.samples_per_frame)
        return SampleBlock(
            seq=int(self.seq[k]),
            timestamp_us=int(self.timestamp_us[k]),
            samples=self.samples[rows],
            cycle_start=self.cycle_start[rows],
            program_id=self.program_id[rows],
            gap_before=bool(self.gap_before[k]),
            missing_frames=int(self.missing_frames[k]),
        )


class FrameAssembler:
    """Stateful Frame → :class:`SampleBlock` converter for one stream.

    Samples before the cycle start inside a frame still belong to the previous cycle, so they
    get the previous frame's program id (unknown, -1, for the very first frame).
    """

    def __init__(self, channel_map: ChannelMap) -> None:
        self._map = channel_map
        self._program = NO_PROGRAM

    def reset(self) -> None:
        """Forget the running program (e.g. after a reconnect or switching devices)."""
        self._program = NO_PROGRAM

    def convert(self, frame: Frame, step: SequenceStep) -> SampleBlock:
        """``frame`` (shaped as the channel map says) with what its sequence number told."""
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
            gap_before=step.discontinuous,
            missing_frames=step.missing,
        )

    def convert_batch(self, records: np.ndarray, steps: SequenceSteps) -> SampleBatch:
        """Frames as records (of the channel map's shape, in order) → one :class:`SampleBatch`.

        ``steps`` are the tracker's verdicts on the same frames. The values equal those of
        :meth:`convert` frame by frame, including the program carried across frames.
        """
        n_frames = len(records)
        per_frame = self._map.samples_per_frame
        program = records["program_id"].astype(np.int64)
        cycle, programs = self._cycles(records["flags"], program, per_frame)
        self._program = int(program[n_frames - 1])
        counts = records["samples"].reshape(n_frames * per_frame, self._map.n_channels)
        return SampleBatch(
            seq=records["seq"],
            timestamp_us=records["timestamp_us"],
            samples=self._map.to_physical(counts),
            cycle_start=cycle,
            program_id=programs,
            gap_before=steps.discontinuous,
            missing_frames=steps.missing,
            samples_per_frame=per_frame,
        )

    def _cycles(
        self, flags: np.ndarray, program: np.ndarray, per_frame: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample cycle-start flags and program ids of frames with these flags/programs."""
        n_samples = flags.shape[0] * per_frame
        cycle = np.zeros(n_samples, dtype=bool)
        if not flags.any():  # most frames: no cycle starts, one program per frame
            return cycle, np.repeat(program, per_frame)
        marked = np.flatnonzero(flags & FLAG_CYCLE_START)
        index = (flags[marked] >> CYCLE_INDEX_SHIFT).astype(np.int64)
        cycle[marked * per_frame + index] = True
        programs = np.repeat(program, per_frame).reshape(-1, per_frame)
        previous = np.concatenate(([self._program], program[:-1]))
        for frame, first in zip(marked.tolist(), index.tolist(), strict=True):
            # samples before the cycle start still belong to the previous frame's program
            programs[frame, :first] = previous[frame]
        return cycle, programs.reshape(-1)
