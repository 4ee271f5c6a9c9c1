"""The serial wire protocol: frame layout, constants and the (stateless) frame codec.

Wire format, protocol version 1. Every multi-byte field is little-endian.

A *frame* on the wire is ``COBS(header ‖ body ‖ crc) ‖ 0x00``. COBS (:mod:`.cobs`) removes all
zero bytes so the 0x00 delimiter can only mean "end of frame"; a receiver that starts
mid-stream or loses bytes resynchronizes at the next delimiter.

Header, 13 bytes (``HEADER_FORMAT = "<BBHIBBBH"``, no padding)::

    offset size field
    0      1    protocol version            PROTOCOL_VERSION (1)
    1      1    message type                MSG_DATA (0x01) | MSG_HELLO (0x02)
    2      2    sequence number             u16, +1 per DATA frame, wraps 65535 → 0
    4      4    device timestamp            u32 µs of the frame's first sample, wraps (~71.6 min)
    8      1    flags                       bit 0: a robot cycle starts in this frame
                                            bits 1–7: index (0–127) of that sample in the frame
    9      1    program id                  robot program running at the frame's last sample
    10     1    channel count C             1–255
    11     2    schema hash                 u16 hash of the channel map (channel_map.py)

DATA body: ``S × C`` int16 samples, *sample-major*: all C channels of sample 0, then all C
channels of sample 1, …; S (samples per frame) is implied by the body length and must be
1–128. Channel order is the channel map's. Flags bits 1–7 must be 0 when bit 0 is clear.

HELLO body (sent by the device on connect and periodically, so the agent can check it speaks
the same protocol and channel map before trusting DATA): ``<IH`` sample rate in Hz (u32),
samples per frame (u16), then 0–32 bytes of ASCII firmware id. A HELLO carries the sequence
number of the next DATA frame and does not consume one; flags and program id are 0.

Trailer: CRC-16/CCITT-FALSE (:mod:`.crc`) over header ‖ body, appended little-endian (low byte
first). Frames with an unknown version or message type are rejected, never guessed at.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from firmware_config.cobs import COBS_DELIMITER, cobs_encode, max_encoded_size
from firmware_config.crc import crc16
from firmware_config.errors import FirmwareInputError
from firmware_config.limits import MAX_CHANNELS, MAX_SAMPLES_PER_FRAME, MAX_VALUES_PER_FRAME

PROTOCOL_VERSION = 1
MSG_DATA = 0x01
MSG_HELLO = 0x02
MESSAGE_TYPES = (MSG_DATA, MSG_HELLO)
FRAME_DELIMITER = COBS_DELIMITER

FLAG_CYCLE_START = 0x01
CYCLE_INDEX_SHIFT = 1
CYCLE_INDEX_MASK = 0x7F  # after shifting right by CYCLE_INDEX_SHIFT

HEADER_FORMAT = "<BBHIBBBH"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)  # 13
OFFSET_VERSION = 0
OFFSET_MSG_TYPE = 1
OFFSET_SEQ = 2
OFFSET_TIMESTAMP = 4
OFFSET_FLAGS = 8
OFFSET_PROGRAM_ID = 9
OFFSET_CHANNEL_COUNT = 10
OFFSET_SCHEMA_HASH = 11
HEADER_FIELDS = (
    ("version", OFFSET_VERSION, 1),
    ("msg_type", OFFSET_MSG_TYPE, 1),
    ("seq", OFFSET_SEQ, 2),
    ("timestamp_us", OFFSET_TIMESTAMP, 4),
    ("flags", OFFSET_FLAGS, 1),
    ("program_id", OFFSET_PROGRAM_ID, 1),
    ("channel_count", OFFSET_CHANNEL_COUNT, 1),
    ("schema_hash", OFFSET_SCHEMA_HASH, 2),
)
CRC_FORMAT = "<H"
CRC_SIZE = struct.calcsize(CRC_FORMAT)
SAMPLE_DTYPE = np.dtype("<i2")
SAMPLE_SIZE = SAMPLE_DTYPE.itemsize
HELLO_FORMAT = "<IH"
HELLO_FIXED_SIZE = struct.calcsize(HELLO_FORMAT)
MAX_FIRMWARE_ID = 32

SEQ_MODULUS = 1 << 16
TIMESTAMP_MODULUS = 1 << 32
U8_MAX = 0xFF
U16_MAX = 0xFFFF
U32_MAX = 0xFFFFFFFF

MIN_RAW_FRAME = HEADER_SIZE + CRC_SIZE
MAX_RAW_FRAME = HEADER_SIZE + MAX_VALUES_PER_FRAME * SAMPLE_SIZE + CRC_SIZE
MAX_ENCODED_FRAME = max_encoded_size(MAX_RAW_FRAME)  # without the delimiter

_HEADER = struct.Struct(HEADER_FORMAT)
_CRC = struct.Struct(CRC_FORMAT)
_HELLO = struct.Struct(HELLO_FORMAT)


class ProtocolError(FirmwareInputError):
    """A frame that cannot be encoded or decoded (bad field value, length, CRC, COBS)."""


class CrcMismatchError(ProtocolError):
    """The trailer CRC does not match header ‖ body."""


class UnsupportedFrameError(ProtocolError):
    """A CRC-valid frame from another protocol version or with an unknown message type."""


def _check_range(name: str, value: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value <= high:
        raise ProtocolError(f"{name} = {value!r}: must be an integer in 0..{high}")


@dataclass(frozen=True, eq=False)
class Frame:
    """One DATA frame: ``samples`` is int16 (samples_per_frame, channels), sample-major.

    ``cycle_start_index`` says which sample starts the cycle when ``cycle_start`` is set, so
    cycles can be cut at sample resolution although the flag travels once per frame.
    """

    seq: int
    timestamp_us: int
    cycle_start: bool
    program_id: int
    schema_hash: int
    samples: np.ndarray
    cycle_start_index: int = 0

    def __post_init__(self) -> None:
        _check_range("seq", self.seq, U16_MAX)
        _check_range("timestamp_us", self.timestamp_us, U32_MAX)
        _check_range("program_id", self.program_id, U8_MAX)
        _check_range("schema_hash", self.schema_hash, U16_MAX)
        samples = self.samples
        if not isinstance(samples, np.ndarray) or samples.dtype != np.int16 or samples.ndim != 2:
            raise ProtocolError(
                "samples must be a 2-D int16 numpy array (samples_per_frame, channels); got "
                f"{type(samples).__name__} {getattr(samples, 'dtype', '')} "
                f"{getattr(samples, 'shape', '')}"
            )
        n_samples, n_channels = samples.shape
        if not 1 <= n_channels <= MAX_CHANNELS:
            raise ProtocolError(f"channels = {n_channels}: must be 1..{MAX_CHANNELS}")
        if not 1 <= n_samples <= MAX_SAMPLES_PER_FRAME:
            raise ProtocolError(
                f"samples_per_frame = {n_samples}: must be 1..{MAX_SAMPLES_PER_FRAME}"
            )
        if n_samples * n_channels > MAX_VALUES_PER_FRAME:
            raise ProtocolError(
                f"{n_samples} samples × {n_channels} channels exceeds "
                f"{MAX_VALUES_PER_FRAME} values per frame"
            )
        index = self.cycle_start_index
        if self.cycle_start:
            _check_range("cycle_start_index", index, n_samples - 1)
        elif index != 0:
            raise ProtocolError(f"cycle_start_index = {index!r}: must be 0 without cycle_start")

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def flags(self) -> int:
        """The flags byte as sent on the wire."""
        if not self.cycle_start:
            return 0
        return FLAG_CYCLE_START | (self.cycle_start_index << CYCLE_INDEX_SHIFT)

    def cycle_mask(self) -> np.ndarray:
        """Per-sample cycle-start flags, bool (samples_per_frame,)."""
        mask = np.zeros(self.n_samples, dtype=bool)
        if self.cycle_start:
            mask[self.cycle_start_index] = True
        return mask

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self.seq == other.seq
            and self.timestamp_us == other.timestamp_us
            and bool(self.cycle_start) == bool(other.cycle_start)
            and self.cycle_start_index == other.cycle_start_index
            and self.program_id == other.program_id
            and self.schema_hash == other.schema_hash
            and self.samples.shape == other.samples.shape
            and bool(np.array_equal(self.samples, other.samples))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable array inside: not hashable


@dataclass(frozen=True)
class Hello:
    """Device announcement: who is talking, with which channel map and rate."""

    seq: int
    timestamp_us: int
    schema_hash: int
    channel_count: int
    sample_rate_hz: int
    samples_per_frame: int
    firmware: str = ""

    def __post_init__(self) -> None:
        _check_range("seq", self.seq, U16_MAX)
        _check_range("timestamp_us", self.timestamp_us, U32_MAX)
        _check_range("schema_hash", self.schema_hash, U16_MAX)
        _check_range("channel_count", self.channel_count, MAX_CHANNELS)
        _check_range("sample_rate_hz", self.sample_rate_hz, U32_MAX)
        _check_range("samples_per_frame", self.samples_per_frame, U16_MAX)
        try:
            firmware = self.firmware.encode("ascii")
        except UnicodeEncodeError:
            firmware = b"\x00"  # rejected below, with the same message
        if len(firmware) > MAX_FIRMWARE_ID or b"\x00" in firmware:
            raise ProtocolError(
                f"firmware = {self.firmware!r}: at most {MAX_FIRMWARE_ID} ASCII characters, no NUL"
            )


def raw_frame_size(n_channels: int, samples_per_frame: int) -> int:
    """Bytes of header ‖ body ‖ crc for a DATA frame, before COBS."""
    return HEADER_SIZE + n_channels * samples_per_frame * SAMPLE_SIZE + CRC_SIZE


def wire_frame_size_max(n_channels: int, samples_per_frame: int) -> int:
    """Worst-case bytes on the wire for one DATA frame, COBS overhead and delimiter included."""
    return max_encoded_size(raw_frame_size(n_channels, samples_per_frame)) + 1


def seq_distance(previous: int, current: int) -> int:
    """Forward distance from ``previous`` to ``current`` modulo 2**16 (1 = consecutive)."""
    return (current - previous) % SEQ_MODULUS


def _seal(header: bytes, body: bytes) -> bytes:
    payload = header + body
    return bytes(payload + _CRC.pack(crc16(payload)))


def pack_frame(frame: Frame) -> bytes:
    """header ‖ body ‖ crc of a DATA frame (before COBS)."""
    header = _HEADER.pack(
        PROTOCOL_VERSION,
        MSG_DATA,
        frame.seq,
        frame.timestamp_us,
        frame.flags,
        frame.program_id,
        frame.n_channels,
        frame.schema_hash,
    )
    body = np.ascontiguousarray(frame.samples, dtype=SAMPLE_DTYPE).tobytes()
    return _seal(header, body)


def pack_hello(hello: Hello) -> bytes:
    """header ‖ body ‖ crc of a HELLO message (before COBS)."""
    header = _HEADER.pack(
        PROTOCOL_VERSION,
        MSG_HELLO,
        hello.seq,
        hello.timestamp_us,
        0,
        0,
        hello.channel_count,
        hello.schema_hash,
    )
    body = _HELLO.pack(hello.sample_rate_hz, hello.samples_per_frame)
    return _seal(header, body + hello.firmware.encode("ascii"))


def encode_frame(frame: Frame) -> bytes:
    """Wire bytes of a DATA frame: COBS(header ‖ body ‖ crc) followed by the 0x00 delimiter."""
    return cobs_encode(pack_frame(frame)) + bytes([FRAME_DELIMITER])


def encode_hello(hello: Hello) -> bytes:
    """Wire bytes of a HELLO message, delimiter included."""
    return cobs_encode(pack_hello(hello)) + bytes([FRAME_DELIMITER])


def unpack_message(raw: bytes) -> Frame | Hello:
    """Parse header ‖ body ‖ crc (COBS already removed); raise a :class:`ProtocolError`.

    Checks run in the order that makes the counters meaningful: length, CRC (corruption),
    then version/type (a foreign but intact frame), then field consistency (malformed).
    """
    size = len(raw)
    if size < MIN_RAW_FRAME:
        raise ProtocolError(
            f"frame of {size} bytes is shorter than the {MIN_RAW_FRAME}-byte minimum"
        )
    (stored,) = _CRC.unpack_from(raw, size - CRC_SIZE)
    computed = crc16(memoryview(raw)[: size - CRC_SIZE])
    if stored != computed:
        raise CrcMismatchError(f"CRC {stored:#06x} does not match computed {computed:#06x}")
    version, msg_type, seq, timestamp, flags, program, channels, schema = _HEADER.unpack_from(raw)
    if version != PROTOCOL_VERSION:
        raise UnsupportedFrameError(
            f"protocol version {version}; this decoder speaks version {PROTOCOL_VERSION}"
        )
    body = raw[HEADER_SIZE : size - CRC_SIZE]
    if msg_type == MSG_DATA:
        return _unpack_data(body, seq, timestamp, flags, program, channels, schema)
    if msg_type == MSG_HELLO:
        return _unpack_hello(body, seq, timestamp, flags, program, channels, schema)
    raise UnsupportedFrameError(f"unknown message type {msg_type:#04x}")


def _unpack_data(
    body: bytes, seq: int, timestamp: int, flags: int, program: int, channels: int, schema: int
) -> Frame:
    row = channels * SAMPLE_SIZE
    if channels == 0 or not body or len(body) % row:
        raise ProtocolError(
            f"body of {len(body)} bytes is not a whole number of {channels}-channel samples"
        )
    samples = np.frombuffer(body, dtype=SAMPLE_DTYPE).astype(np.int16, copy=False)
    cycle_start = bool(flags & FLAG_CYCLE_START)
    index = (flags >> CYCLE_INDEX_SHIFT) & CYCLE_INDEX_MASK
    return Frame(
        seq=seq,
        timestamp_us=timestamp,
        cycle_start=cycle_start,
        program_id=program,
        schema_hash=schema,
        samples=samples.reshape(len(body) // row, channels),
        cycle_start_index=index,
    )


def _unpack_hello(
    body: bytes, seq: int, timestamp: int, flags: int, program: int, channels: int, schema: int
) -> Hello:
    if flags or program:
        raise ProtocolError("HELLO with non-zero flags or program id")
    if not HELLO_FIXED_SIZE <= len(body) <= HELLO_FIXED_SIZE + MAX_FIRMWARE_ID:
        raise ProtocolError(f"HELLO body of {len(body)} bytes")
    rate, per_frame = _HELLO.unpack_from(body)
    firmware = body[HELLO_FIXED_SIZE:]
    if not firmware.isascii() or b"\x00" in firmware:
        raise ProtocolError("HELLO firmware id is not ASCII")
    return Hello(
        seq=seq,
        timestamp_us=timestamp,
        schema_hash=schema,
        channel_count=channels,
        sample_rate_hz=rate,
        samples_per_frame=per_frame,
        firmware=firmware.decode("ascii"),
    )
