"""CRC-16/CCITT-FALSE, the frame trailer checksum and the channel-map schema hash.

Parameters (Rocksoft model): width 16, poly 0x1021, init 0xFFFF, refin/refout false,
xorout 0x0000, check value crc(b"123456789") == 0x29B1. The firmware computes the same thing
bit by bit (see ``c/rapp_frame.c``); here :func:`binascii.crc_hqx` does the work in C, which
is the same polynomial without reflection, so we only supply the init value. A pure-Python
bitwise version is kept as the independent reference that tests compare against.
"""

from __future__ import annotations

import binascii

CRC16_POLY = 0x1021
CRC16_INIT = 0xFFFF
CRC16_XOROUT = 0x0000
CRC16_CHECK = 0x29B1  # crc16(b"123456789")
_BYTE_BITS = 8
_TOP_BIT = 0x8000
_MASK16 = 0xFFFF


def crc16(data: bytes | bytearray | memoryview, crc: int = CRC16_INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data``; pass a previous result as ``crc`` to continue it."""
    return binascii.crc_hqx(data, crc) ^ CRC16_XOROUT


def crc16_reference(data: bytes | bytearray | memoryview, crc: int = CRC16_INIT) -> int:
    """Bitwise CRC-16/CCITT-FALSE, slow and obvious; used only to cross-check :func:`crc16`."""
    for byte in bytes(data):
        crc ^= byte << _BYTE_BITS
        for _ in range(_BYTE_BITS):
            crc = ((crc << 1) ^ CRC16_POLY) if crc & _TOP_BIT else (crc << 1)
            crc &= _MASK16
    return crc ^ CRC16_XOROUT
