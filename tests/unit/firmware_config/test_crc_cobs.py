"""Known answers and properties of the two primitives the wire format stands on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_config.cobs import (
    COBS_DELIMITER,
    CobsError,
    cobs_decode,
    cobs_encode,
    max_encoded_size,
)
from firmware_config.crc import CRC16_CHECK, crc16, crc16_reference


def test_crc16_ccitt_false_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1 == CRC16_CHECK
    assert crc16_reference(b"123456789") == 0x29B1


def test_crc16_of_nothing_is_the_init_value() -> None:
    assert crc16(b"") == 0xFFFF


def test_crc16_continues_across_calls() -> None:
    assert crc16(b"6789", crc16(b"12345")) == 0x29B1


@given(st.binary(max_size=300))
@settings(max_examples=200)
def test_fast_crc_matches_bitwise_reference(data: bytes) -> None:
    assert crc16(data) == crc16_reference(data)


# Examples from Cheshire & Baker / Wikipedia "Consistent Overhead Byte Stuffing".
COBS_KNOWN = [
    ("00", "0101"),
    ("0000", "010101"),
    ("00110000", "0102110101"),
    ("11220033", "0311220233"),
    ("11223344", "0511223344"),
    ("11000000", "0211010101"),
    (bytes(range(1, 255)).hex(), "ff" + bytes(range(1, 255)).hex()),
    (bytes(range(0, 255)).hex(), "01ff" + bytes(range(1, 255)).hex()),
    (bytes(range(1, 256)).hex(), "ff" + bytes(range(1, 255)).hex() + "02ff"),
    (bytes(range(2, 256)).hex() + "00", "ff" + bytes(range(2, 256)).hex() + "0101"),
    (bytes(range(3, 256)).hex() + "0001", "fe" + bytes(range(3, 256)).hex() + "0201"),
]


@pytest.mark.parametrize(("data", "encoded"), COBS_KNOWN)
def test_cobs_known_answers(data: str, encoded: str) -> None:
    assert cobs_encode(bytes.fromhex(data)).hex() == encoded
    assert cobs_decode(bytes.fromhex(encoded)).hex() == data


def test_cobs_empty_input_is_one_code_byte() -> None:
    assert cobs_encode(b"") == b"\x01"
    assert cobs_decode(b"\x01") == b""


@given(st.binary(max_size=1200))
@settings(max_examples=300)
def test_cobs_round_trip_and_no_zero(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert COBS_DELIMITER not in encoded
    assert len(encoded) <= max_encoded_size(len(data))
    assert cobs_decode(encoded) == data


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        (b"", "empty input"),
        (b"\x05\x11\x22", "runs past the end"),
        (b"\x03\x11\x00", "zero byte"),
        (b"\x00", "zero byte at offset 0"),
    ],
)
def test_cobs_decode_rejects_invalid_input(encoded: bytes, message: str) -> None:
    with pytest.raises(CobsError, match=message):
        cobs_decode(encoded)
