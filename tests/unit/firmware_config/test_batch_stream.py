"""BatchFrameStream and its parts against the reference: same frames, same counters.

The reference is the per-frame path — :class:`FrameDecoder` + :class:`SequenceTracker` (and
:class:`FrameStream` for the converted blocks) fed byte by byte; the batch path is fed in
arbitrary chunks of random streams with garbage, bit flips, drops, foreign frames, HELLOs,
cycle starts and runs longer than any frame.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from firmware_config.batch_decoder import (
    BatchDecoder,
    FrameShape,
    cobs_decode_piece,
    record_dtype,
)
from firmware_config.blocks import FrameAssembler, SampleBlock
from firmware_config.channel_map import ChannelMap, load_builtin_map
from firmware_config.cobs import CobsError, cobs_decode, cobs_encode
from firmware_config.crc import crc16
from firmware_config.decoder import FrameDecoder
from firmware_config.protocol import (
    Frame,
    Hello,
    encode_frame,
    encode_hello,
    pack_frame,
    wire_frame_size_max,
)
from firmware_config.sequence import SequenceTracker
from firmware_config.stream import (
    FRAME_SLACK_BYTES,
    NOTICE_ERROR,
    BatchFrameStream,
    FrameStream,
    StreamNotice,
)

MAP = load_builtin_map()
SHAPE = FrameShape(MAP.n_channels, MAP.samples_per_frame, MAP.schema_hash)
MAX_FRAME = wire_frame_size_max(MAP.n_channels, MAP.samples_per_frame) + FRAME_SLACK_BYTES


def frame(seq: int, **kw: object) -> Frame:
    fields = {
        "timestamp_us": seq * 10_000,
        "cycle_start": False,
        "program_id": 1,
        "schema_hash": MAP.schema_hash,
        "samples": np.full((10, 6), seq % 300, np.int16),
    }
    fields.update(kw)
    return Frame(seq=seq, **fields)  # type: ignore[arg-type]


def hello(firmware: str = "fw") -> Hello:
    return Hello(0, 0, MAP.schema_hash, 6, 1000, 10, firmware)


def feed_cut(feed, wire: bytes, cuts: list[int]) -> list:  # type: ignore[no-untyped-def]
    out = []
    start = 0
    for cut in sorted({c for c in cuts if c <= len(wire)}):
        out.append(feed(wire[start:cut]))
        start = cut
    out.append(feed(wire[start:]))
    return out


def blocks_of(stream: BatchFrameStream, wire: bytes, cuts: list[int]) -> list[SampleBlock]:
    batches = [b for b in feed_cut(stream.feed, wire, cuts) if b is not None]
    return [b.block(k) for b in batches for k in range(b.n_frames)]


# ---- the whole stream ------------------------------------------------------------------


@st.composite
def hostile_streams(draw: st.DrawFn) -> bytes:
    """Map frames (with cycle starts, programs, sequence jumps), foreign and misshapen frames,
    HELLOs, bad headers, long runs without delimiter, idle fill — then random damage."""
    seq = draw(st.integers(0, 0xFFFF))
    wire = bytearray()
    for _ in range(draw(st.integers(1, 14))):
        seq = (seq + draw(st.sampled_from([1, 1, 1, 1, 2, 5, 0, -3, 40_000]))) % 0x10000
        kind = draw(
            st.sampled_from(["ok"] * 8 + ["schema", "shape", "hello", "header", "long", "idle"])
        )
        if kind == "hello":
            wire += encode_hello(hello(draw(st.sampled_from(["a", "b"]))))
            continue
        if kind == "long":
            wire += bytes([0x55]) * draw(st.integers(MAX_FRAME - 3, MAX_FRAME + 40)) + b"\0"
            continue
        if kind == "idle":
            wire += b"\0" * draw(st.integers(1, 3))
            continue
        channels = 3 if kind == "shape" else 6
        schema = (MAP.schema_hash + 1) & 0xFFFF if kind == "schema" else MAP.schema_hash
        samples = draw(hnp.arrays(np.int16, (10, channels)))
        start = draw(st.booleans())
        made = Frame(
            seq,
            draw(st.integers(0, 0xFFFFFFFF)),
            start,
            draw(st.integers(0, 3)),
            schema,
            samples,
            cycle_start_index=draw(st.integers(0, 9)) if start else 0,
        )
        raw = bytearray(pack_frame(made))
        if kind == "header":  # CRC-valid, but a bad cycle index, version or message type
            offset, value = draw(
                st.sampled_from([(8, 0x02), (8, 0x01 | (10 << 1)), (8, 0xFF), (0, 2), (1, 7)])
            )
            raw[offset] = value
            raw[-2:] = crc16(bytes(raw[:-2])).to_bytes(2, "little")
        wire += cobs_encode(bytes(raw)) + b"\0"
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(wire) - 1, 0)))
        if op == "flip" and wire:
            wire[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            wire[pos:pos] = draw(st.binary(min_size=1, max_size=40))
        elif wire:
            del wire[pos : pos + draw(st.integers(1, 150))]
    return bytes(wire)


@given(hostile_streams(), st.lists(st.integers(0, 6000), max_size=15), st.integers(0, 3))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_same_frames_and_counters_as_the_reference_fed_byte_by_byte(
    wire: bytes, cuts: list[int], reset_at: int
) -> None:
    batch = BatchFrameStream(MAP)
    stream = FrameStream(MAP)  # the reference for the converted blocks
    decoder = FrameDecoder(max_frame_bytes=MAX_FRAME)  # … and for the counters
    tracker = SequenceTracker()
    if reset_at == 1:  # a reconnect before anything arrived
        for reference in (batch, stream):
            reference.reset()
        decoder.resync()
        tracker.interrupt()
    half = len(wire) // 2 if reset_at >= 2 else len(wire)
    got = blocks_of(batch, wire[:half], cuts)
    expected = [b for i in range(half) for b in stream.feed(wire[i : i + 1])]
    frames = [f for i in range(half) for f in decoder.feed(wire[i : i + 1])]
    if reset_at >= 2:  # a reconnect in the middle: the tail of a frame is skipped
        batch.reset()
        stream.reset()
        decoder.resync()
        tracker.interrupt()
        got += blocks_of(batch, wire[half:], [c - half for c in cuts if c > half])
        expected += [b for i in range(half, len(wire)) for b in stream.feed(wire[i : i + 1])]
        frames += [f for i in range(half, len(wire)) for f in decoder.feed(wire[i : i + 1])]
    delivered = [f for f in frames if (f.schema_hash, f.n_channels, f.n_samples) == (
        MAP.schema_hash, MAP.n_channels, MAP.samples_per_frame)]  # fmt: skip

    assert len(got) == len(expected) == len(delivered)
    for mine, ref, f in zip(got, expected, delivered, strict=True):
        assert (mine.seq, mine.timestamp_us) == (ref.seq, ref.timestamp_us)
        assert (mine.seq, mine.timestamp_us) == (f.seq, f.timestamp_us)
        assert (mine.gap_before, mine.missing_frames) == (ref.gap_before, ref.missing_frames)
        np.testing.assert_array_equal(mine.samples, ref.samples)
        assert mine.samples.dtype == ref.samples.dtype == np.float32
        np.testing.assert_array_equal(mine.cycle_start, ref.cycle_start)
        np.testing.assert_array_equal(mine.program_id, ref.program_id)
    stats = batch.stats
    assert stats.decoder == decoder.stats == stream.stats.decoder
    assert stats.sequence == stream.stats.sequence
    if reset_at < 2:
        for f in delivered:
            tracker.observe(f.seq)
        assert stats.sequence == tracker.stats
    assert stats.schema_mismatches == len(frames) - len(delivered)
    assert stats.frames_delivered == len(delivered)
    assert batch.last_hello == stream.last_hello


def test_notices_match_the_reference() -> None:
    other = (MAP.schema_hash + 1) & 0xFFFF
    wire = b"\0" + encode_hello(hello("fw 1")) + encode_frame(frame(0, schema_hash=other))
    wire += encode_frame(frame(1)) + encode_frame(frame(2, samples=np.zeros((10, 3), np.int16)))
    got: list[StreamNotice] = []
    want: list[StreamNotice] = []
    batch, stream = BatchFrameStream(MAP, got.append), FrameStream(MAP, want.append)
    for _ in range(2):
        batch.feed(wire)
        stream.feed(wire)
        batch.reset()
        stream.reset()
    assert got == want
    assert [n.kind for n in got].count(NOTICE_ERROR) == 2


def test_a_feed_without_a_complete_frame_returns_none() -> None:
    batch = BatchFrameStream(MAP)
    wire = encode_frame(frame(0))
    assert batch.feed(wire[:50]) is None
    assert batch.feed(encode_hello(hello())) is None  # tail of the frame + a HELLO
    assert batch.stats.decoder.crc_errors + batch.stats.decoder.malformed == 1
    out = batch.feed(wire + wire[:5])
    assert out is not None and out.n_frames == 1 and int(out.seq[0]) == 0


# ---- the parts -------------------------------------------------------------------------


@given(st.binary(min_size=1, max_size=700))
@settings(max_examples=500, deadline=None)
def test_cobs_piece_decoder_equals_the_reference(data: bytes) -> None:
    for piece in (data.replace(b"\0", b"\x01"), cobs_encode(data)):
        try:
            expected: bytes | None = cobs_decode(piece)
        except CobsError:
            expected = None
        assert cobs_decode_piece(piece) == expected


def test_cobs_piece_decoder_on_full_blocks_and_overruns() -> None:
    for size in (253, 254, 255, 508, 600):
        data = bytes((i % 255) + 1 for i in range(size))
        assert cobs_decode_piece(cobs_encode(data)) == data
    assert cobs_decode_piece(b"\x05\x01") is None
    assert cobs_decode_piece(b"") is None


@given(
    st.lists(st.one_of(st.integers(0, 0xFFFF), st.none()), max_size=60),
    st.lists(st.integers(0, 60), max_size=8),
    st.sampled_from([1 << 16, None]),
)
@settings(max_examples=300, deadline=None)
def test_observe_many_equals_observe_one_by_one(
    events: list[int | None], cuts: list[int], modulus: int | None
) -> None:
    """``None`` in ``events`` is an interruption (a reconnect); numbers are observed in runs
    cut at ``cuts`` and at every interruption."""
    one_by_one, many = SequenceTracker(modulus), SequenceTracker(modulus)
    expected = []
    for event in events:
        if event is None:
            one_by_one.interrupt()
        else:
            s = one_by_one.observe(event)
            expected.append((s.gap, s.missing, s.out_of_order, s.discontinuous))
    got = []
    run: list[int] = []

    def flush() -> None:
        bounds = sorted({0, len(run), *(c for c in cuts if c < len(run))})
        for lo, hi in itertools.pairwise(bounds):
            steps = many.observe_many(np.array(run[lo:hi], dtype=np.int64))
            got.extend(
                zip(
                    steps.gap.tolist(),
                    steps.missing.tolist(),
                    steps.out_of_order.tolist(),
                    steps.discontinuous.tolist(),
                    strict=True,
                )
            )
        run.clear()

    for event in events:
        if event is None:
            flush()
            many.interrupt()
        else:
            run.append(event)
    flush()
    assert got == expected
    assert many.stats == one_by_one.stats
    assert many.expected == one_by_one.expected


def test_convert_batch_equals_convert_frame_by_frame(six_axis_map: ChannelMap) -> None:
    rng = np.random.default_rng(3)
    frames = []
    for seq in range(40):
        start = bool(rng.random() < 0.3)
        frames.append(
            Frame(
                seq,
                seq * 7,
                start,
                int(rng.integers(0, 4)),
                six_axis_map.schema_hash,
                rng.integers(-32768, 32767, (10, 6), dtype=np.int16),
                cycle_start_index=int(rng.integers(0, 10)) if start else 0,
            )
        )
    one, many = FrameAssembler(six_axis_map), FrameAssembler(six_axis_map)
    tracker, batch_tracker = SequenceTracker(), SequenceTracker()
    expected = [one.convert(f, tracker.observe(f.seq)) for f in frames]
    dtype = record_dtype(FrameShape(6, 10, six_axis_map.schema_hash))
    got = []
    for lo, hi in ((0, 1), (1, 17), (17, 40)):
        records = np.frombuffer(b"".join(pack_frame(f) for f in frames[lo:hi]), dtype=dtype)
        batch = many.convert_batch(records, batch_tracker.observe_many(records["seq"]))
        got += [batch.block(k) for k in range(batch.n_frames)]
    for mine, ref in zip(got, expected, strict=True):
        assert (mine.seq, mine.timestamp_us, mine.gap_before) == (
            ref.seq,
            ref.timestamp_us,
            ref.gap_before,
        )
        np.testing.assert_array_equal(mine.samples, ref.samples)
        np.testing.assert_array_equal(mine.cycle_start, ref.cycle_start)
        np.testing.assert_array_equal(mine.program_id, ref.program_id)


def test_batch_decoder_bounds_and_limits() -> None:
    decoder = BatchDecoder(SHAPE, max_frame_bytes=100)
    reference = FrameDecoder(max_frame_bytes=100)
    for _ in range(50):
        assert decoder.feed(b"\x55" * 37) is None
        reference.feed(b"\x55" * 37)
        assert decoder.buffered <= 100
    # frames of 136 bytes (+ delimiter) are oversize for this bound: no candidate is left
    wire = b"\0" + encode_frame(frame(1)) + encode_frame(frame(2))
    assert decoder.feed(wire) is None and reference.feed(wire) == []
    stats = decoder.stats
    assert stats.oversize == 3 and stats.frames_ok == 0 and stats.bytes_discarded == 50 * 37 + 272
    assert stats == reference.stats
    roomy = BatchDecoder(SHAPE, max_frame_bytes=MAX_FRAME)
    out = roomy.feed(encode_frame(frame(1)) + encode_frame(frame(2)))
    assert out is not None and out.accepted["seq"].tolist() == [1, 2] and out.foreign == []
    with pytest.raises(ValueError, match="max_frame_bytes"):
        BatchDecoder(SHAPE, max_frame_bytes=0)
    assert record_dtype(SHAPE).itemsize == SHAPE.raw_size == len(pack_frame(frame(0)))


def test_observe_many_of_nothing_keeps_a_pending_interruption() -> None:
    tracker = SequenceTracker()
    tracker.observe(4)
    tracker.interrupt()
    assert tracker.observe_many(np.zeros(0, np.int64)).gap.shape == (0,)
    steps = tracker.observe_many(np.array([5, 6]))
    assert steps.gap.tolist() == [True, False] and tracker.stats.gap_events == 1
