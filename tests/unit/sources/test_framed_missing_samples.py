"""A framed source says how many samples a sequence gap lost (for the segmenter's fill)."""

from __future__ import annotations

import numpy as np
import pytest

from agent.sources.base import ChunkQueue, SampleChunk
from agent.sources.framed import FramedInput
from firmware_config.channel_map import ChannelMap
from firmware_config.protocol import Frame, encode_frame


def frame(seq: int, schema: int) -> Frame:
    return Frame(seq, seq * 10_000, False, 2, schema, np.full((10, 6), seq, np.int16))


def drain(queue: ChunkQueue) -> list[SampleChunk]:
    out = []
    while (chunk := queue.get(0)) is not None:
        out.append(chunk)
    return out


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "per-frame"])
def test_missing_samples_are_missing_frames_times_samples_per_frame(
    six_axis_map: ChannelMap, batched: bool
) -> None:
    queue = ChunkQueue(100)
    framed = FramedInput(six_axis_map, queue, batched=batched)
    h = six_axis_map.schema_hash
    framed.feed(b"".join(encode_frame(frame(s, h)) for s in (0, 1, 2, 5, 6)))
    framed.reset()  # a reconnect: a gap of unknown size
    framed.feed(b"\0" + encode_frame(frame(7, h)))
    chunks = drain(queue)
    after_gap = [c for c in chunks if c.gap_before]
    assert [c.missing_samples for c in after_gap] == [20, 0]  # frames 3 and 4; unknown
    assert all(c.missing_samples == 0 for c in chunks if not c.gap_before)
