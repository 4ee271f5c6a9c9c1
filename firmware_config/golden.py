"""Golden vectors: exact wire bytes for chosen inputs, the contract between Python and C.

``rapp-firmware golden --out tests/golden/frames`` regenerates them. Inputs come from a tiny
xorshift32 generator written out here (not numpy's RNG, whose streams may change between
releases), so the files are byte-identical on every machine and every run. The vectors are
chosen to hit the edge cases of the codec: zeros everywhere (COBS code 0x01 runs), long
zero-free runs (0xFF blocks), a frame ending exactly on a full 254-byte COBS block,
u16/u32 wraparound values, int16 extremes, the largest cycle index, and HELLO messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from firmware_config.channel_map import ChannelMap
from firmware_config.cobs import COBS_MAX_RUN, cobs_encode
from firmware_config.crc import crc16
from firmware_config.errors import FirmwareInputError
from firmware_config.protocol import (
    HEADER_SIZE,
    Frame,
    Hello,
    encode_frame,
    encode_hello,
    pack_frame,
    pack_hello,
)

FILES = ("frames.json", "cobs.json", "crc.json")
_XORSHIFT_SEED = 0x2545F491
_U32 = 0xFFFFFFFF


class GoldenError(FirmwareInputError):
    """Golden files that are missing or differ from what the codec produces now."""


def _xorshift32(state: int) -> Iterator[int]:
    while True:
        state ^= (state << 13) & _U32
        state ^= state >> 17
        state ^= (state << 5) & _U32
        yield state


def _samples(rng: Iterator[int], n_samples: int, n_channels: int, amplitude: int) -> np.ndarray:
    values = [(next(rng) % (2 * amplitude + 1)) - amplitude for _ in range(n_samples * n_channels)]
    return np.array(values, dtype=np.int16).reshape(n_samples, n_channels)


def _frame_entry(name: str, frame: Frame) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "data",
        "seq": frame.seq,
        "timestamp_us": frame.timestamp_us,
        "cycle_start": frame.cycle_start,
        "cycle_start_index": frame.cycle_start_index,
        "program_id": frame.program_id,
        "schema_hash": frame.schema_hash,
        "samples": frame.samples.tolist(),
        "raw_hex": pack_frame(frame).hex(),
        "wire_hex": encode_frame(frame).hex(),
    }


def _hello_entry(name: str, hello: Hello) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "hello",
        "seq": hello.seq,
        "timestamp_us": hello.timestamp_us,
        "schema_hash": hello.schema_hash,
        "channel_count": hello.channel_count,
        "sample_rate_hz": hello.sample_rate_hz,
        "samples_per_frame": hello.samples_per_frame,
        "firmware": hello.firmware,
        "raw_hex": pack_hello(hello).hex(),
        "wire_hex": encode_hello(hello).hex(),
    }


def _full_block_frame() -> Frame:
    """A frame whose raw bytes end with exactly 254 non-zero bytes after a zero.

    6 channels × 21 samples → 267 raw bytes; byte 12 (schema-hash high byte) is 0 and bytes
    13…266 must be non-zero, so we step the timestamp until the CRC has no zero byte.
    """
    samples = np.full((21, 6), 0x0101, dtype=np.int16)
    for timestamp in range(0x01010101, 0x01010101 + 1000):
        frame = Frame(
            seq=0x0101,
            timestamp_us=timestamp,
            cycle_start=False,
            program_id=1,
            schema_hash=0x0011,
            samples=samples,
        )
        raw = pack_frame(frame)
        if 0 not in raw[HEADER_SIZE:] and raw[HEADER_SIZE - 1] == 0:
            assert len(raw) - HEADER_SIZE == COBS_MAX_RUN
            return frame
    raise GoldenError("no timestamp gives a zero-free CRC; widen the search")  # pragma: no cover


def frame_vectors(channel_map: ChannelMap) -> list[dict[str, Any]]:
    """Frame and HELLO vectors (the six-axis map supplies realistic dimensions and hash)."""
    rng = _xorshift32(_XORSHIFT_SEED)
    spf, nch = channel_map.samples_per_frame, channel_map.n_channels
    extremes = np.array([-32768, 32767, 0, -1, 1, 256, -256, 255], dtype=np.int16)
    vectors = [
        _frame_entry(
            "minimal_one_value_zero",
            Frame(0, 0, False, 0, 0, np.zeros((1, 1), dtype=np.int16)),
        ),
        _frame_entry(
            "map_typical",
            Frame(
                seq=1234,
                timestamp_us=123_456_789,
                cycle_start=True,
                program_id=2,
                schema_hash=channel_map.schema_hash,
                samples=_samples(rng, spf, nch, 20000),
                cycle_start_index=3,
            ),
        ),
        _frame_entry(
            "map_all_zero_samples",
            Frame(7, 1000, False, 1, channel_map.schema_hash, np.zeros((spf, nch), np.int16)),
        ),
        _frame_entry(
            "wraparound_and_extremes",
            Frame(
                seq=0xFFFF,
                timestamp_us=_U32,
                cycle_start=True,
                program_id=255,
                schema_hash=0xFFFF,
                samples=np.resize(extremes, (spf, nch)).astype(np.int16),
                cycle_start_index=spf - 1,
            ),
        ),
        _frame_entry(
            "long_zero_free_run",
            Frame(
                seq=0x0101,
                timestamp_us=0x01010101,
                cycle_start=True,
                program_id=1,
                schema_hash=0x0101,
                samples=np.full((30, 6), 0x0101, dtype=np.int16),
                cycle_start_index=0,
            ),
        ),
        _frame_entry("ends_on_full_cobs_block", _full_block_frame()),
        _frame_entry(
            "largest_cycle_index_one_channel",
            Frame(65534, 4_000_000_000, True, 3, 0x1234, _samples(rng, 128, 1, 300), 127),
        ),
        _frame_entry(
            "many_channels_many_blocks",
            Frame(42, 987_654, False, 9, 0xBEEF, _samples(rng, 16, 64, 32767)),
        ),
        _frame_entry(
            "max_values_per_frame",
            Frame(500, 5, False, 0, 0x0F0F, _samples(rng, 8, 255, 1000)),
        ),
        _hello_entry(
            "hello_map",
            Hello(
                seq=0,
                timestamp_us=0,
                schema_hash=channel_map.schema_hash,
                channel_count=nch,
                sample_rate_hz=channel_map.sample_rate_hz,
                samples_per_frame=spf,
                firmware="rapp-emu 0.1.0",
            ),
        ),
        _hello_entry("hello_no_firmware_id", Hello(300, 77, 0xABCD, 3, 25_000, 1, "")),
        _hello_entry("hello_longest_firmware_id", Hello(65535, _U32, 1, 255, 1, 128, "x" * 32)),
    ]
    return vectors


def cobs_vectors() -> list[dict[str, str]]:
    """The classic COBS examples (Cheshire & Baker; Wikipedia) plus block-boundary cases."""
    inputs = {
        "empty": b"",
        "one_zero": b"\x00",
        "two_zeros": b"\x00\x00",
        "zero_inside": b"\x11\x22\x00\x33",
        "no_zero": b"\x11\x22\x33\x44",
        "trailing_zeros": b"\x11\x00\x00\x00",
        "254_nonzero": bytes(range(1, 255)),
        "zero_then_254_nonzero": bytes(range(0, 255)),
        "255_nonzero": bytes(range(1, 256)),
        "254_nonzero_then_zero": bytes(range(2, 256)) + b"\x00",
        "253_nonzero_zero_one": bytes(range(3, 256)) + b"\x00\x01",
        "508_nonzero": bytes(range(1, 255)) * 2,
        "508_nonzero_then_zero": bytes(range(1, 255)) * 2 + b"\x00",
    }
    return [
        {"name": name, "data_hex": data.hex(), "encoded_hex": cobs_encode(data).hex()}
        for name, data in inputs.items()
    ]


def crc_vectors() -> list[dict[str, Any]]:
    inputs = {
        "check_123456789": b"123456789",
        "empty": b"",
        "one_zero": b"\x00",
        "ff_ff": b"\xff\xff",
        "ascii_text": b"rapp-edge",
        "all_bytes": bytes(range(256)),
    }
    return [{"name": n, "data_hex": d.hex(), "crc": crc16(d)} for n, d in inputs.items()]


def render(entries: list[dict[str, Any]]) -> str:
    """One JSON object per line inside a list: diff-friendly and still plain JSON."""
    body = ",\n".join(json.dumps(entry, sort_keys=True) for entry in entries)
    return "[\n" + body + "\n]\n"


def golden_texts(channel_map: ChannelMap) -> dict[str, str]:
    return {
        "frames.json": render(frame_vectors(channel_map)),
        "cobs.json": render(cobs_vectors()),
        "crc.json": render(crc_vectors()),
    }


def write_golden(directory: Path, channel_map: ChannelMap) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in golden_texts(channel_map).items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check_golden(directory: Path, channel_map: ChannelMap) -> list[str]:
    """Names of golden files that are missing or differ from a fresh generation."""
    stale = []
    for name, text in golden_texts(channel_map).items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def frame_from_entry(entry: dict[str, Any]) -> Frame | Hello:
    """Rebuild the codec input of a golden entry (for tests and the C driver input)."""
    if entry["kind"] == "hello":
        return Hello(
            seq=entry["seq"],
            timestamp_us=entry["timestamp_us"],
            schema_hash=entry["schema_hash"],
            channel_count=entry["channel_count"],
            sample_rate_hz=entry["sample_rate_hz"],
            samples_per_frame=entry["samples_per_frame"],
            firmware=entry["firmware"],
        )
    return Frame(
        seq=entry["seq"],
        timestamp_us=entry["timestamp_us"],
        cycle_start=entry["cycle_start"],
        program_id=entry["program_id"],
        schema_hash=entry["schema_hash"],
        samples=np.array(entry["samples"], dtype=np.int16),
        cycle_start_index=entry["cycle_start_index"],
    )
