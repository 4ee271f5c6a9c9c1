"""Exact bytes of a hand-worked frame, and the codec's field validation."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from firmware_config.cobs import cobs_decode, cobs_encode
from firmware_config.crc import crc16_reference
from firmware_config.protocol import (
    HEADER_FORMAT,
    HEADER_SIZE,
    PROTOCOL_VERSION,
    CrcMismatchError,
    Frame,
    Hello,
    ProtocolError,
    UnsupportedFrameError,
    encode_frame,
    encode_hello,
    pack_frame,
    raw_frame_size,
    seq_distance,
    unpack_message,
    wire_frame_size_max,
)

# Worked by hand from the layout in protocol.py:
#   01          protocol version 1
#   01          message type DATA
#   02 01       seq 0x0102, little-endian
#   06 05 04 03 timestamp 0x03040506 µs
#   03          flags: bit0 cycle start | cycle index 1 << 1
#   07          program id 7
#   02          2 channels
#   cd ab       schema hash 0xABCD
#   01 00 fe ff sample 0: ch0 = 1, ch1 = -2
#   00 01 ff 7f sample 1: ch0 = 256, ch1 = 32767
#   70 05       CRC-16/CCITT-FALSE 0x0570 of the 21 bytes above, little-endian
HAND_RAW = "0101020106050403030702cdab0100feff0001ff7f7005"
# COBS: zeros at raw offsets 14 and 18 → blocks of 14, 3 and 5 data bytes (+1 code each)
HAND_WIRE = "0f0101020106050403030702cdab0103feff0601ff7f700500"


def hand_frame() -> Frame:
    return Frame(
        seq=0x0102,
        timestamp_us=0x03040506,
        cycle_start=True,
        cycle_start_index=1,
        program_id=7,
        schema_hash=0xABCD,
        samples=np.array([[1, -2], [256, 32767]], dtype=np.int16),
    )


def test_hand_worked_crc() -> None:
    raw = bytes.fromhex(HAND_RAW)
    assert crc16_reference(raw[:-2]) == 0x0570


def test_hand_worked_frame_exact_bytes() -> None:
    frame = hand_frame()
    assert pack_frame(frame).hex() == HAND_RAW
    assert encode_frame(frame).hex() == HAND_WIRE
    assert cobs_encode(bytes.fromhex(HAND_RAW)).hex() + "00" == HAND_WIRE


def test_hand_worked_frame_decodes() -> None:
    decoded = unpack_message(cobs_decode(bytes.fromhex(HAND_WIRE)[:-1]))
    assert decoded == hand_frame()
    assert isinstance(decoded, Frame)
    assert decoded.cycle_mask().tolist() == [False, True]


def test_header_layout_is_13_packed_little_endian_bytes() -> None:
    assert HEADER_FORMAT.startswith("<")
    assert HEADER_SIZE == struct.calcsize(HEADER_FORMAT) == 13
    fields = struct.unpack_from(HEADER_FORMAT, bytes.fromhex(HAND_RAW))
    assert fields == (PROTOCOL_VERSION, 1, 0x0102, 0x03040506, 0x03, 7, 2, 0xABCD)


def test_body_is_sample_major() -> None:
    samples = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16)
    raw = pack_frame(Frame(0, 0, False, 0, 0, samples))
    body = np.frombuffer(raw[HEADER_SIZE:-2], dtype="<i2")
    assert body.tolist() == [1, 2, 3, 4, 5, 6]


def test_sizes() -> None:
    assert raw_frame_size(6, 10) == 13 + 120 + 2
    assert len(encode_frame(Frame(0, 0, False, 0, 0, np.ones((10, 6), np.int16)))) <= (
        wire_frame_size_max(6, 10)
    )


def test_seq_distance_wraps() -> None:
    assert seq_distance(65535, 0) == 1
    assert seq_distance(65534, 2) == 4
    assert seq_distance(10, 10) == 0


def test_hello_round_trip() -> None:
    hello = Hello(5, 6, 0x1234, 6, 1000, 10, "fw 1.2")
    decoded = unpack_message(cobs_decode(encode_hello(hello)[:-1]))
    assert decoded == hello


def test_corrupted_crc_is_reported_as_crc_mismatch() -> None:
    raw = bytearray.fromhex(HAND_RAW)
    raw[15] ^= 0x10
    with pytest.raises(CrcMismatchError):
        unpack_message(bytes(raw))


def _reseal(raw: bytearray) -> bytes:
    body = bytes(raw[:-2])
    return body + struct.pack("<H", crc16_reference(body))


@pytest.mark.parametrize(("offset", "value"), [(0, 2), (1, 0x09)])
def test_foreign_version_or_type_is_unsupported(offset: int, value: int) -> None:
    raw = bytearray.fromhex(HAND_RAW)
    raw[offset] = value
    with pytest.raises(UnsupportedFrameError):
        unpack_message(_reseal(raw))


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (10, 3, "whole number"),  # 8 body bytes are not whole 3-channel samples
        (10, 0, "whole number"),  # zero channels
        (8, 0x02, "without cycle_start"),  # cycle index bits set without the flag
        (8, 0x05, "cycle_start_index"),  # index 2 of a 2-sample frame
    ],
)
def test_inconsistent_fields_are_malformed(offset: int, value: int, message: str) -> None:
    raw = bytearray.fromhex(HAND_RAW)
    raw[offset] = value
    with pytest.raises(ProtocolError, match=message):
        unpack_message(_reseal(raw))


def test_short_frame_is_malformed() -> None:
    with pytest.raises(ProtocolError, match="shorter"):
        unpack_message(b"\x01\x01\x00")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"seq": 65536}, "seq"),
        ({"timestamp_us": -1}, "timestamp_us"),
        ({"program_id": 256}, "program_id"),
        ({"schema_hash": 1 << 16}, "schema_hash"),
        ({"samples": np.zeros((2, 2), dtype=np.int32)}, "int16"),
        ({"samples": np.zeros(4, dtype=np.int16)}, "2-D"),
        ({"samples": np.zeros((129, 1), dtype=np.int16)}, "samples_per_frame"),
        ({"samples": np.zeros((100, 21), dtype=np.int16)}, "values per frame"),
        ({"cycle_start_index": 2}, "cycle_start_index"),
    ],
)
def test_frame_field_validation(changes: dict[str, object], message: str) -> None:
    fields = {
        "seq": 1,
        "timestamp_us": 2,
        "cycle_start": True,
        "program_id": 3,
        "schema_hash": 4,
        "samples": np.zeros((2, 2), dtype=np.int16),
        "cycle_start_index": 0,
    } | changes
    with pytest.raises(ProtocolError, match=message):
        Frame(**fields)  # type: ignore[arg-type]


def test_hello_rejects_long_or_non_ascii_firmware() -> None:
    with pytest.raises(ProtocolError, match="ASCII"):
        Hello(0, 0, 0, 1, 1, 1, "x" * 33)
    with pytest.raises(ProtocolError, match="ASCII"):
        Hello(0, 0, 0, 1, 1, 1, "héllo")
