"""Frame → sample block conversion, and the package layering rule."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from firmware_config.blocks import FrameAssembler
from firmware_config.channel_map import ChannelMap
from firmware_config.protocol import Frame

PACKAGE = Path(__file__).parents[3] / "firmware_config"


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
    first = assembler.convert(_frame(65535, 1))
    assert not first.gap_before and first.program_id.tolist() == [1] * 10
    assert first.samples.dtype == np.float32
    np.testing.assert_allclose(first.samples[0], [1, 1, 1, 0.1, 0.1, 0.1], rtol=1e-6)
    switch = assembler.convert(_frame(0, 2, cycle_index=4))  # wraps: no gap
    assert not switch.gap_before and switch.missing_frames == 0
    assert switch.cycle_start.tolist() == [False] * 4 + [True] + [False] * 5
    assert switch.program_id.tolist() == [1] * 4 + [2] * 6
    later = assembler.convert(_frame(3, 2))
    assert later.gap_before and later.missing_frames == 2


def test_firmware_config_never_imports_agent_or_exporter() -> None:
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"agent", "exporter"}, f"{path}: {name}"
