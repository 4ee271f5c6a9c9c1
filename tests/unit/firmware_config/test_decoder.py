"""Streaming decoder: round trips, hostile input, exact error accounting.

Sequence numbers are judged by the tracker (test_sequence.py); the garbage test runs the
recovered frames through it to check the gap accounting end to end."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from firmware_config.crc import crc16
from firmware_config.decoder import DecoderStats, FrameDecoder
from firmware_config.protocol import (
    MAX_ENCODED_FRAME,
    Frame,
    Hello,
    encode_frame,
    encode_hello,
    pack_frame,
)
from firmware_config.sequence import SequenceTracker

# ---- helpers ---------------------------------------------------------------------------


def reference_cobs_decode(data: bytes) -> bytes | None:
    """Byte-by-byte COBS decoder written independently of firmware_config.cobs."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0 or i + code > len(data):
            return None
        out += data[i + 1 : i + code]
        i += code
        if code < 0xFF and i < len(data):
            out.append(0)
    return bytes(out) if data else None


def carries_valid_crc(piece: bytes) -> bool:
    """Would this delimited piece pass COBS and CRC? (conservative oracle)"""
    raw = reference_cobs_decode(piece)
    if raw is None or len(raw) < 3:
        return False
    return crc16(raw[:-2]) == struct.unpack("<H", raw[-2:])[0]


def feed_in_chunks(decoder: FrameDecoder, stream: bytes, cuts: list[int]) -> list[Frame]:
    frames: list[Frame] = []
    start = 0
    for cut in sorted(set(cuts)):
        frames += decoder.feed(stream[start:cut])
        start = cut
    frames += decoder.feed(stream[start:])
    return frames


@st.composite
def frames(draw: st.DrawFn, max_channels: int = 12, max_samples: int = 20) -> Frame:
    n_channels = draw(st.integers(1, max_channels))
    n_samples = draw(st.integers(1, min(max_samples, 2048 // n_channels)))
    samples = draw(hnp.arrays(np.int16, (n_samples, n_channels)))
    cycle_start = draw(st.booleans())
    return Frame(
        seq=draw(st.integers(0, 0xFFFF)),
        timestamp_us=draw(st.integers(0, 0xFFFFFFFF)),
        cycle_start=cycle_start,
        program_id=draw(st.integers(0, 255)),
        schema_hash=draw(st.integers(0, 0xFFFF)),
        samples=samples,
        cycle_start_index=draw(st.integers(0, n_samples - 1)) if cycle_start else 0,
    )


# ---- properties ------------------------------------------------------------------------


@given(frames())
@settings(max_examples=300, deadline=None)
def test_encode_decode_round_trip(frame: Frame) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(frame)) == [frame]
    assert decoder.stats.frames_ok == 1
    assert decoder.stats.rejected == 0


@given(frames(max_channels=255, max_samples=128))
@settings(max_examples=40, deadline=None)
def test_round_trip_of_large_frames(frame: Frame) -> None:
    assert FrameDecoder().feed(encode_frame(frame)) == [frame]


@given(st.lists(frames(max_channels=4, max_samples=4), min_size=1, max_size=8), st.data())
@settings(max_examples=150, deadline=None)
def test_stream_of_frames_in_any_chunking(batch: list[Frame], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(f) for f in batch)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert feed_in_chunks(FrameDecoder(), stream, cuts) == batch


@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=30))
@settings(max_examples=400, deadline=None)
def test_arbitrary_bytes_never_raise_or_yield_crc_failures(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(max_frame_bytes=512)
    frames_out = feed_in_chunks(decoder, data, [c for c in cuts if c <= len(data)])
    valid_pieces = {reference_cobs_decode(p) for p in data.split(b"\0") if carries_valid_crc(p)}
    for frame in frames_out:
        assert pack_frame(frame) in valid_pieces
    stats = decoder.stats
    assert stats.bytes_received == len(data)
    assert decoder.buffered <= 512


@given(st.lists(frames(max_channels=3, max_samples=3), min_size=1, max_size=6), st.data())
@settings(max_examples=300, deadline=None)
def test_corrupted_streams_never_yield_crc_failures(
    batch: list[Frame], data: st.DataObject
) -> None:
    """Valid frames with random flips, insertions and deletions: only CRC-valid frames out."""
    stream = bytearray(b"".join(encode_frame(f) for f in batch))
    for _ in range(data.draw(st.integers(0, 6))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(len(stream) - 1, 0)))
        if op == "flip" and stream:
            stream[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "insert":
            stream[pos:pos] = data.draw(st.binary(min_size=1, max_size=20))
        elif stream:
            del stream[pos : pos + data.draw(st.integers(1, 20))]
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
    decoder = FrameDecoder()
    out = feed_in_chunks(decoder, bytes(stream), cuts)
    valid = {reference_cobs_decode(p) for p in bytes(stream).split(b"\0") if carries_valid_crc(p)}
    assert all(pack_frame(f) in valid for f in out)


# ---- exact accounting under garbage ----------------------------------------------------

N_FRAMES = 10_000
MAX_FRAME = 300  # decoder limit for this test; a clean frame encodes to 136 bytes


def _frame(k: int, rng: np.random.Generator) -> Frame:
    return Frame(
        seq=k % 65536,
        timestamp_us=(k * 10_000) % (1 << 32),
        cycle_start=k % 400 == 0,
        program_id=1 + (k // 400) % 3,
        schema_hash=0x73D3,
        samples=rng.integers(-3000, 3000, size=(10, 6), dtype=np.int16),
    )


def _nonzero_bytes(rng: np.random.Generator, size: int) -> bytes:
    return rng.integers(1, 256, size=size, dtype=np.uint8).tobytes()


def _corrupt(wire: bytes, rng: np.random.Generator, kind: str) -> bytes:
    """A damaged copy of an encoded frame (delimiter kept) that the oracle cannot accept."""
    body = bytearray(wire[:-1])
    code_positions = _cobs_code_positions(bytes(body))
    while True:
        damaged = bytearray(body)
        if kind == "truncate":
            damaged = damaged[: int(rng.integers(1, len(body) - 1))]
        else:
            if kind == "flip_data":  # a data byte, and the flip must not create a 0x00
                pos = int(rng.choice([i for i in range(len(body)) if i not in code_positions]))
            elif kind == "flip_code":
                pos = int(rng.choice(sorted(code_positions)))
            else:  # "flip_to_zero": a byte with a single set bit loses it
                pos = int(rng.choice([i for i, b in enumerate(body) if b.bit_count() == 1]))
            bit = int(rng.integers(0, 8))
            if kind == "flip_to_zero":
                bit = damaged[pos].bit_length() - 1
            damaged[pos] ^= 1 << bit
            if kind != "flip_to_zero" and damaged[pos] == 0:
                continue
        unit = bytes(damaged) + b"\0"
        if not any(carries_valid_crc(p) for p in unit.split(b"\0")):
            return unit


def _cobs_code_positions(encoded: bytes) -> set[int]:
    positions = set()
    i = 0
    while i < len(encoded):
        positions.add(i)
        i += encoded[i]
    return positions


def test_garbage_stream_recovers_every_intact_frame_and_counts_exactly() -> None:
    """10,000 frames; ~25 % damaged in five ways, garbage and idle fill in between.

    Every unit of the stream ends with a delimiter, so each damaged unit is self-contained:
    the expected counts follow from the construction. Data-byte flips are guaranteed CRC
    errors (CRC-16 detects every single-bit error). A flip that turns a byte into 0x00 splits
    a frame into two pieces, each rejected on its own. For the other damage kinds the test
    only knows that the piece is rejected (COBS, length or CRC), so it checks the sum; an
    independent oracle ensures no damaged piece happens to carry a valid CRC.
    """
    rng = np.random.default_rng(20240607)
    stream = bytearray()
    intact: list[Frame] = []
    destroyed_frames = 0
    gap_runs = 0
    previous_destroyed = False
    rejected_pieces = 0
    flip_data = 0
    oversize = 0
    kinds = ["intact"] * 75 + ["truncate"] * 6 + ["flip_data"] * 8 + ["flip_code"] * 4
    kinds += ["flip_to_zero"] * 4 + ["lost"] * 3
    for k in range(N_FRAMES):
        frame = _frame(k, rng)
        wire = encode_frame(frame)
        kind = "intact" if k in (0, N_FRAMES - 1) else str(rng.choice(kinds))
        if kind == "intact":
            stream += wire
            intact.append(frame)
        elif kind == "lost":
            pass  # never sent: only the sequence number tells
        else:
            unit = _corrupt(wire, rng, kind)
            stream += unit
            rejected_pieces += sum(1 for piece in unit.split(b"\0") if piece)
            flip_data += kind == "flip_data"
        destroyed = kind != "intact"
        destroyed_frames += destroyed
        gap_runs += destroyed and not previous_destroyed
        previous_destroyed = destroyed
        extra = rng.random()
        if extra < 0.05:  # line noise between frames, then the next frame's delimiter
            stream += _nonzero_bytes(rng, int(rng.integers(1, 80))) + b"\0"
            rejected_pieces += 1
        elif extra < 0.06:  # a babbling board: longer than any frame
            stream += _nonzero_bytes(rng, int(rng.integers(MAX_FRAME + 1, 3 * MAX_FRAME))) + b"\0"
            oversize += 1
        elif extra < 0.08:
            stream += b"\0" * int(rng.integers(1, 4))  # idle fill is not an error
    # the garbage pieces must not happen to be valid either
    intact_raw = {pack_frame(f) for f in intact}
    assert not any(
        carries_valid_crc(p) and reference_cobs_decode(p) not in intact_raw
        for p in bytes(stream).split(b"\0")
    )

    decoder = FrameDecoder(max_frame_bytes=MAX_FRAME)
    cuts = np.cumsum(rng.integers(1, 400, size=len(stream) // 150)).tolist()
    recovered = feed_in_chunks(decoder, bytes(stream), [c for c in cuts if c < len(stream)])
    stats = decoder.stats

    assert recovered == intact
    assert stats.frames_ok == len(intact)
    assert stats.oversize == oversize
    assert stats.crc_errors >= flip_data
    assert stats.crc_errors + stats.malformed + stats.unsupported == rejected_pieces
    assert stats.resyncs == rejected_pieces + oversize
    tracker = SequenceTracker()
    for frame in recovered:
        tracker.observe(frame.seq)
    assert tracker.stats.missing_frames == destroyed_frames
    assert tracker.stats.gap_events == gap_runs
    assert tracker.stats.out_of_order == 0
    assert stats.bytes_received == len(stream)
    assert decoder.buffered == 0
    # and feeding everything at once gives the same result
    whole = FrameDecoder(max_frame_bytes=MAX_FRAME)
    assert whole.feed(bytes(stream)) == intact
    assert whole.stats == stats


# ---- focused behaviours ----------------------------------------------------------------


def _simple(seq: int) -> Frame:
    return Frame(seq, seq * 10, False, 1, 2, np.full((2, 3), seq % 100, dtype=np.int16))


def test_oversize_run_is_dropped_and_buffer_stays_bounded() -> None:
    decoder = FrameDecoder(max_frame_bytes=100)
    for _ in range(50):
        assert decoder.feed(b"\x55" * 37) == []
        assert decoder.buffered <= 100
    assert decoder.stats.oversize == 1
    assert decoder.feed(b"\x00" + encode_frame(_simple(1))) == [_simple(1)]
    assert decoder.stats.oversize == 1
    assert decoder.stats.bytes_discarded == 50 * 37


def test_resync_skips_the_tail_without_counting_an_error() -> None:
    decoder = FrameDecoder()
    wire = encode_frame(_simple(7))
    decoder.feed(wire[:20])
    decoder.resync()  # e.g. the port was reopened
    out = decoder.feed(wire[20:] + encode_frame(_simple(8)))
    assert out == [_simple(8)]
    assert decoder.stats.rejected == 0
    assert decoder.stats.resyncs == 1


def test_hello_is_recorded_not_returned() -> None:
    decoder = FrameDecoder()
    hello = Hello(3, 4, 0x73D3, 6, 1000, 10, "fw")
    assert decoder.feed(encode_hello(hello) + encode_frame(_simple(3))) == [_simple(3)]
    assert decoder.last_hello == hello
    assert decoder.stats.hellos == 1


def test_decoder_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError, match="max_frame_bytes"):
        FrameDecoder(max_frame_bytes=0)
    assert FrameDecoder().max_frame_bytes == MAX_ENCODED_FRAME


def test_stats_is_an_immutable_snapshot() -> None:
    decoder = FrameDecoder()
    before = decoder.stats
    decoder.feed(encode_frame(_simple(1)))
    assert before == DecoderStats()
    assert decoder.stats.frames_ok == 1
