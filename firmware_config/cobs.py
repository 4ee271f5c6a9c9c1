"""Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999).

COBS removes every 0x00 from a frame so that 0x00 can delimit frames on the wire: a receiver
that joins mid-stream or loses bytes resynchronizes at the next 0x00. Overhead is one byte per
254 bytes of payload (plus one), so the worst-case size is known in advance — the firmware
sizes its buffer with :func:`max_encoded_size`.

The encoding matches the widely used reference C implementation byte for byte, including its
one subtle case: when the data ends exactly after a full 254-byte block, no trailing 0x01 code
byte is emitted. ``c/rapp_frame.c`` does the same; golden vectors pin it.
"""

from __future__ import annotations

from firmware_config.errors import FirmwareInputError

COBS_DELIMITER = 0x00
COBS_MAX_BLOCK = 0xFF  # code byte meaning "254 data bytes follow, no implied zero"
COBS_MAX_RUN = COBS_MAX_BLOCK - 1  # data bytes in a full block
_ZERO = bytes([COBS_DELIMITER])


class CobsError(FirmwareInputError):
    """Bytes that are not a valid COBS encoding."""


def max_encoded_size(raw_size: int) -> int:
    """Largest COBS encoding of ``raw_size`` bytes (without the frame delimiter)."""
    return raw_size + raw_size // COBS_MAX_RUN + 1


def cobs_encode(data: bytes | bytearray | memoryview) -> bytes:
    """Encode ``data`` (may contain zeros); the result contains no 0x00 and no delimiter."""
    raw = bytes(data)
    out = bytearray()
    segments = raw.split(_ZERO)
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        start = 0
        remaining = len(segment)
        while remaining >= COBS_MAX_RUN:
            out.append(COBS_MAX_BLOCK)
            out += segment[start : start + COBS_MAX_RUN]
            start += COBS_MAX_RUN
            remaining -= COBS_MAX_RUN
        if remaining == 0 and start > 0 and index == last:
            break  # data ended on a full block: the reference encoder emits no final 0x01
        out.append(remaining + 1)
        out += segment[start:]
    return bytes(out)


def cobs_decode(data: bytes | bytearray | memoryview) -> bytes:
    """Decode one COBS block sequence (delimiter already stripped); raise :class:`CobsError`."""
    encoded = bytes(data)
    size = len(encoded)
    if size == 0:
        raise CobsError("empty input: a COBS encoding is at least one code byte")
    out = bytearray()
    pos = 0
    while pos < size:
        code = encoded[pos]
        if code == COBS_DELIMITER:
            raise CobsError(f"zero byte at offset {pos} inside a COBS block")
        end = pos + code
        if end > size:
            raise CobsError(
                f"code byte {code:#04x} at offset {pos} runs past the end ({size} bytes)"
            )
        block = encoded[pos + 1 : end]
        if _ZERO in block:
            raise CobsError(f"zero byte inside the block starting at offset {pos}")
        out += block
        pos = end
        if code != COBS_MAX_BLOCK and pos < size:
            out.append(COBS_DELIMITER)
    return bytes(out)
