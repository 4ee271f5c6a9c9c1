"""Frame → sample block conversion (the layering rule is in tests/unit/architecture)."""

from __future__ import annotations

import numpy as np

from firmware_config.blocks import FrameAssembler, SampleBlock
from firmware_config.channel_map import ChannelMap
from firmware_config.protocol import Frame
from firmware_config.sequence import SequenceStep, SequenceTracker


def _frame(seq: int, program: int, cycle_index: int | None = None) -> Frame:
    return Frame(
        seq=seq,
        timestamp_us=seq * 10_000,
        cycle_start=cycle_index is not None,
        program_id=program,
        schema_hash=0,
        samples=np.full((10, 6), 1000, dtype=np.int16),
        cycle_start_index=cycle_index or 0,
    )


def test_blocks_carry_per_sample_flags_programs_and_gaps(six_axis_map: ChannelMap) -> None:
    assembler = FrameAssembler(six_axis_map)
    tracker = SequenceTracker()

    def convert(frame: Frame) -> SampleBlock:
        return assembler.convert(frame, tracker.observe(frame.seq))

    first = convert(_frame(65535, 1))
    assert not first.gap_before and first.program_id.tolist() == [1] * 10
    assert first.samples.dtype == np.float32
    np.testing.assert_allclose(first.samples[0], [1, 1, 1, 0.1, 0.1, 0.1], rtol=1e-6)
    switch = convert(_frame(0, 2, cycle_index=4))  # wraps: no gap
    assert not switch.gap_before and switch.missing_frames == 0
    assert switch.cycle_start.tolist() == [False] * 4 + [True] + [False] * 5
    assert switch.program_id.tolist() == [1] * 4 + [2] * 6
    later = convert(_frame(3, 2))
    assert later.gap_before and later.missing_frames == 2
    back = convert(_frame(1, 2))  # a reboot or a repeated frame: not contiguous either
    assert back.gap_before and back.missing_frames == 0


def test_reset_forgets_the_running_program(six_axis_map: ChannelMap) -> None:
    assembler = FrameAssembler(six_axis_map)
    assembler.convert(_frame(0, 3), SequenceStep())
    assembler.reset()
    block = assembler.convert(_frame(1, 4, cycle_index=2), SequenceStep(gap=True))
    assert block.program_id.tolist() == [-1] * 2 + [4] * 8
    assert block.gap_before
