"""FrameStream: the whole receive path — decode, HELLO, channel-map check, sequence, units."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from firmware_config.channel_map import ChannelMap, load_builtin_map
from firmware_config.decoder import FrameDecoder
from firmware_config.protocol import Frame, Hello, encode_frame, encode_hello, wire_frame_size_max
from firmware_config.sequence import SequenceTracker
from firmware_config.stream import (
    FRAME_SLACK_BYTES,
    NOTICE_ERROR,
    NOTICE_HELLO,
    FrameStream,
    StreamNotice,
)

MAP = load_builtin_map()


def frame(seq: int, schema: int = MAP.schema_hash, channels: int = 6, samples: int = 10) -> Frame:
    return Frame(seq, seq * 10_000, False, 1, schema, np.full((samples, channels), seq, np.int16))


def hello(schema: int = MAP.schema_hash, firmware: str = "fw 2") -> Hello:
    return Hello(0, 0, schema, 6, 1000, 10, firmware)


def stream_with_notices(channel_map: ChannelMap = MAP) -> tuple[FrameStream, list[StreamNotice]]:
    notices: list[StreamNotice] = []
    return FrameStream(channel_map, on_notice=notices.append), notices


def test_blocks_in_physical_units_with_gaps(six_axis_map: ChannelMap) -> None:
    stream, _ = stream_with_notices(six_axis_map)
    blocks = stream.feed(b"".join(encode_frame(frame(s)) for s in (7, 8, 11)))
    assert [b.seq for b in blocks] == [7, 8, 11]
    assert [b.gap_before for b in blocks] == [False, False, True]
    assert [b.missing_frames for b in blocks] == [0, 0, 2]
    np.testing.assert_array_equal(blocks[0].samples, six_axis_map.to_physical(frame(7).samples))
    stats = stream.stats
    assert (stats.decoder.frames_ok, stats.frames_delivered, stats.schema_mismatches) == (3, 3, 0)
    assert (stats.sequence.missing_frames, stats.sequence.gap_events) == (2, 1)


def test_schema_mismatch_is_counted_reported_once_and_never_delivered() -> None:
    other = (MAP.schema_hash + 1) & 0xFFFF
    stream, notices = stream_with_notices()
    wire = encode_hello(hello(other, "old fw")) * 3  # repeated: one notice
    wire += encode_frame(frame(0, other)) + encode_frame(frame(1, other))
    blocks = stream.feed(wire + encode_frame(frame(2)))
    assert [b.seq for b in blocks] == [2]
    assert stream.stats.schema_mismatches == 2
    errors = [n.message for n in notices if n.kind == NOTICE_ERROR]
    assert len(errors) == 2
    assert "device announces schema" in errors[0] and "flash matching firmware" in errors[0]
    assert "does not match channel map 'six_axis_arm'" in errors[1]
    # the dropped frames are a hole in the data: the next delivered block follows a gap
    assert blocks[0].gap_before is False  # nothing was delivered before it
    more = stream.feed(encode_frame(frame(3, other)) + encode_frame(frame(4)))
    assert [b.seq for b in more] == [4] and more[0].gap_before and more[0].missing_frames == 1
    assert len([n for n in notices if n.kind == NOTICE_ERROR]) == 2  # once per connection
    stream.reset()
    stream.feed(b"\0" + encode_frame(frame(5, other)))
    assert len([n for n in notices if n.kind == NOTICE_ERROR]) == 3  # reported again


def test_wrong_shape_frames_are_mismatches_not_exceptions() -> None:
    """Three-channel frames on a six-channel map: counted, never converted."""
    stream, notices = stream_with_notices()
    for seq in range(500):
        assert stream.feed(encode_frame(frame(seq, channels=3))) == []
    assert stream.feed(encode_frame(frame(500, samples=5))) == []
    assert stream.stats.schema_mismatches == 501
    assert stream.stats.frames_delivered == 0
    assert len(notices) == 1 and "3 channels × 10 samples" in notices[0].message


def test_hello_reported_once_per_connection_and_again_when_it_changes() -> None:
    stream, notices = stream_with_notices()
    stream.feed(b"\0" + encode_hello(hello()) + encode_frame(frame(0)) + encode_hello(hello()))
    assert [n.kind for n in notices] == [NOTICE_HELLO]
    assert "fw 2" in notices[0].message
    assert stream.last_hello is not None and stream.last_hello.firmware == "fw 2"
    stream.feed(encode_hello(hello(firmware="fw 3")))
    assert len(notices) == 2 and "fw 3" in notices[1].message
    stream.reset()
    assert stream.last_hello is None
    stream.feed(b"\0" + encode_hello(hello(firmware="fw 3")))
    assert len(notices) == 3


def test_reset_skips_the_tail_and_marks_the_next_block_as_a_gap() -> None:
    stream, _ = stream_with_notices()
    wire = encode_frame(frame(1))
    stream.feed(encode_frame(frame(0)) + wire[:30])
    stream.reset()  # port reopened mid-frame
    blocks = stream.feed(wire[30:] + encode_frame(frame(1)))
    assert [b.seq for b in blocks] == [1]
    assert blocks[0].gap_before and blocks[0].missing_frames == 0
    stats = stream.stats
    assert stats.decoder.crc_errors == 0 and stats.decoder.rejected == 0
    assert stats.sequence.gap_events == 1


def test_frames_beyond_the_map_size_are_oversize() -> None:
    stream, _ = stream_with_notices()
    big = frame(0, channels=12)  # larger than any frame of the six-channel map
    assert len(encode_frame(big)) > wire_frame_size_max(6, 10) + FRAME_SLACK_BYTES
    blocks = stream.feed(encode_frame(big) + encode_frame(frame(1)))
    assert [b.seq for b in blocks] == [1]
    assert stream.stats.decoder.oversize == 1


# ---- property: same frames and counters as the reference decoder + tracker ---------------


def matches(f: Frame, m: ChannelMap) -> bool:
    return (f.schema_hash, f.n_channels, f.n_samples) == (
        m.schema_hash,
        m.n_channels,
        m.samples_per_frame,
    )


@st.composite
def wire_streams(draw: st.DrawFn) -> bytes:
    """Frames of the map (some foreign or misshapen), HELLOs, sequence jumps, then damage."""
    seq = draw(st.integers(0, 0xFFFF))
    wire = bytearray()
    for _ in range(draw(st.integers(1, 12))):
        seq = (seq + draw(st.sampled_from([1, 1, 1, 2, 5, 0, -3, 40_000]))) % 0x10000
        kind = draw(st.sampled_from(["ok"] * 6 + ["schema", "shape", "hello"]))
        if kind == "hello":
            wire += encode_hello(hello(firmware=draw(st.sampled_from(["a", "b"]))))
            continue
        channels, schema = (3, MAP.schema_hash) if kind == "shape" else (6, MAP.schema_hash)
        if kind == "schema":
            schema = (schema + 1) & 0xFFFF
        samples = draw(hnp.arrays(np.int16, (10, channels)))
        wire += encode_frame(Frame(seq, 0, False, draw(st.integers(0, 3)), schema, samples))
    for _ in range(draw(st.integers(0, 5))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(wire) - 1, 0)))
        if op == "flip" and wire:
            wire[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            wire[pos:pos] = draw(st.binary(min_size=1, max_size=40))
        elif wire:
            del wire[pos : pos + draw(st.integers(1, 40))]
    return bytes(wire)


@given(wire_streams(), st.lists(st.integers(0, 5000), max_size=15))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_chunking_matches_the_reference_fed_byte_by_byte(wire: bytes, cuts: list[int]) -> None:
    stream = FrameStream(MAP)
    blocks = []
    start = 0
    for cut in sorted({c for c in cuts if c <= len(wire)}):
        blocks += stream.feed(wire[start:cut])
        start = cut
    blocks += stream.feed(wire[start:])

    decoder = FrameDecoder(max_frame_bytes=wire_frame_size_max(6, 10) + FRAME_SLACK_BYTES)
    tracker = SequenceTracker()
    frames = [f for i in range(len(wire)) for f in decoder.feed(wire[i : i + 1])]
    delivered = [f for f in frames if matches(f, MAP)]
    steps = [tracker.observe(f.seq) for f in delivered]

    assert [b.seq for b in blocks] == [f.seq for f in delivered]
    assert [b.gap_before for b in blocks] == [s.discontinuous for s in steps]
    assert [b.missing_frames for b in blocks] == [s.missing for s in steps]
    for block, f in zip(blocks, delivered, strict=True):
        np.testing.assert_array_equal(block.samples, MAP.to_physical(f.samples))
    stats = stream.stats
    assert stats.decoder == decoder.stats
    assert stats.sequence == tracker.stats
    assert stats.schema_mismatches == len(frames) - len(delivered)
    assert stats.frames_delivered == len(delivered)
