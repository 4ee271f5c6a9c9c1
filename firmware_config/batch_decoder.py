"""Batch frame decoding: every frame one ``feed`` completed, checked and parsed at once.

:class:`~firmware_config.decoder.FrameDecoder` is the reference: one :class:`Frame` object per
frame, every check in Python. A receiver that knows the one frame shape it accepts (its
channel map's channel count, samples per frame and schema hash) does not need that for the
common case. :class:`BatchDecoder` splits the bytes at the delimiters, COBS-decodes each piece
(:func:`cobs_decode_piece`, a faster equivalent of :func:`~firmware_config.cobs.cobs_decode`
for delimiter-free input), checks CRC, version, type, shape, schema and flags of every frame
of that size on its bytes (no :class:`Frame`, no exceptions) and returns the frames that pass
as rows of one numpy record array (:func:`record_dtype`). Whatever does not pass — HELLOs,
frames of another shape or schema, damaged frames — goes through the reference parser one by
one, so every counter means exactly what it means for :class:`FrameDecoder` (a property test
feeds both the same random streams).
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass, field

import numpy as np

from firmware_config.cobs import COBS_MAX_BLOCK, CobsError, cobs_decode
from firmware_config.crc import CRC16_INIT
from firmware_config.decoder import DecoderStats
from firmware_config.errors import FirmwareInputError
from firmware_config.protocol import (
    CRC_SIZE,
    CYCLE_INDEX_SHIFT,
    FLAG_CYCLE_START,
    FRAME_DELIMITER,
    HEADER_SIZE,
    MAX_ENCODED_FRAME,
    MSG_DATA,
    OFFSET_CHANNEL_COUNT,
    OFFSET_FLAGS,
    PROTOCOL_VERSION,
    SAMPLE_DTYPE,
    CrcMismatchError,
    Frame,
    Hello,
    ProtocolError,
    UnsupportedFrameError,
    raw_frame_size,
    unpack_message,
)

_DELIMITER = bytes([FRAME_DELIMITER])


@dataclass(frozen=True)
class FrameShape:
    """The one kind of DATA frame a receiver takes: its channel map's shape and schema."""

    n_channels: int
    samples_per_frame: int
    schema_hash: int

    @property
    def raw_size(self) -> int:
        return raw_frame_size(self.n_channels, self.samples_per_frame)


def record_dtype(shape: FrameShape) -> np.dtype:
    """One DATA frame as a numpy record: the header fields, the samples and the CRC trailer.

    Packed (no padding), so its item size is the raw frame size and ``np.frombuffer`` over
    concatenated frames yields one row per frame.
    """
    return np.dtype(
        [
            ("version", "u1"),
            ("msg_type", "u1"),
            ("seq", "<u2"),
            ("timestamp_us", "<u4"),
            ("flags", "u1"),
            ("program_id", "u1"),
            ("channel_count", "u1"),
            ("schema_hash", "<u2"),
            ("samples", SAMPLE_DTYPE, (shape.samples_per_frame, shape.n_channels)),
            ("crc", "<u2"),
        ]
    )


def cobs_decode_piece(encoded: bytes) -> bytes | None:
    """Decode one COBS piece that holds no 0x00 (the bytes between two delimiters).

    Same result as :func:`~firmware_config.cobs.cobs_decode`, None where it raises. Without a
    full 254-byte block, decoding is "drop the first code byte, zero the later ones", so only
    the code bytes are visited; a piece with a 0xFF code takes the reference path.
    """
    size = len(encoded)
    if not size:
        return None
    out = bytearray(encoded)
    pos = out[0]
    if pos == COBS_MAX_BLOCK:
        return _reference_decode(encoded)
    while pos < size:
        code = out[pos]
        if code == COBS_MAX_BLOCK:
            return _reference_decode(encoded)
        out[pos] = 0
        pos += code
    if pos != size:
        return None  # the last code byte runs past the end
    return bytes(memoryview(out)[1:])


def _reference_decode(encoded: bytes) -> bytes | None:
    try:
        return cobs_decode(encoded)
    except CobsError:
        return None


@dataclass(frozen=True, eq=False)
class DecodedBatch:
    """The DATA frames completed by one ``feed``.

    ``accepted``: the frames of the expected shape and schema, as rows of
    :func:`record_dtype`, in stream order. ``foreign``: intact DATA frames of any other shape
    or schema, in stream order (a receiver counts and reports them, never converts them).
    """

    accepted: np.ndarray
    foreign: list[Frame] = field(default_factory=list)


class BatchDecoder:
    """Feed bytes as they arrive; get back the frames completed by them as a batch.

    Counters and buffering are those of :class:`~firmware_config.decoder.FrameDecoder` (same
    ``max_frame_bytes`` bound, same resync rules). Not thread-safe: one decoder per byte
    stream, driven by one thread.
    """

    def __init__(self, shape: FrameShape, max_frame_bytes: int = MAX_ENCODED_FRAME) -> None:
        if max_frame_bytes < 1:
            raise FirmwareInputError(f"max_frame_bytes = {max_frame_bytes}: must be ≥ 1")
        self._shape = shape
        self._dtype = record_dtype(shape)
        self._raw_size = shape.raw_size
        # header bytes every accepted frame carries: version and type; channels and schema
        self._expected_header = (
            bytes([PROTOCOL_VERSION, MSG_DATA]),
            struct.pack("<BH", shape.n_channels, shape.schema_hash),
        )
        self._max = max_frame_bytes
        self._buffer = bytearray()
        self._skipping = False  # inside an oversize run or after resync(): drop to next 0x00
        self._skip_is_resync = False
        self._skipped = 0
        self.last_hello: Hello | None = None
        self._counts = dict.fromkeys(DecoderStats.__dataclass_fields__, 0)

    @property
    def shape(self) -> FrameShape:
        return self._shape

    @property
    def buffered(self) -> int:
        """Bytes of the unfinished frame currently held."""
        return len(self._buffer)

    @property
    def stats(self) -> DecoderStats:
        return DecoderStats(**self._counts)

    @property
    def hellos(self) -> int:
        """HELLOs decoded so far (without building a :attr:`stats` snapshot)."""
        return self._counts["hellos"]

    def feed(self, data: bytes | bytearray | memoryview) -> DecodedBatch | None:
        """Consume ``data``; None if it completed no frame (nor any rejected piece)."""
        chunk = bytes(data)
        self._counts["bytes_received"] += len(chunk)
        pieces = chunk.split(_DELIMITER)
        tail = pieces.pop()
        candidates = []
        for piece in pieces:
            if self._skipping or self._buffer or len(piece) > self._max:
                piece = self._terminate(piece)
            if piece:
                candidates.append(piece)
        self._accumulate(tail)
        return self._decode(candidates) if candidates else None

    def resync(self) -> None:
        """Drop any unfinished frame and ignore bytes up to the next delimiter (a reconnect)."""
        if self._buffer:
            self._skipped += len(self._buffer)
            self._counts["bytes_discarded"] += len(self._buffer)
            self._buffer.clear()
        if not self._skipping:
            self._skip_is_resync = True
        self._skipping = True

    # -- framing: the reference decoder's rules, piece by piece -------------------------------

    def _accumulate(self, piece: bytes) -> None:
        size = len(piece)
        if not size:
            return
        if self._skipping:
            self._skipped += size
            self._counts["bytes_discarded"] += size
            return
        if len(self._buffer) + size > self._max:
            self._counts["oversize"] += 1
            self._counts["resyncs"] += 1
            self._counts["bytes_discarded"] += len(self._buffer) + size
            self._buffer.clear()
            self._skipping = True
            self._skip_is_resync = False  # already counted as oversize
            return
        self._buffer += piece

    def _terminate(self, piece: bytes) -> bytes | None:
        """A delimiter follows ``piece``: the candidate frame it completes, if any."""
        self._accumulate(piece)
        if self._skipping:
            if self._skip_is_resync and self._skipped:
                self._counts["resyncs"] += 1
            self._skipping = False
            self._skip_is_resync = False
            self._skipped = 0
            return None
        candidate = bytes(self._buffer)
        self._buffer.clear()
        return candidate or None

    # -- decoding -----------------------------------------------------------------------------

    def _decode(self, candidates: list[bytes]) -> DecodedBatch:
        accepted: list[bytes] = []
        foreign: list[Frame] = []
        size, expected = self._raw_size, self._expected_header
        for candidate in candidates:
            raw = cobs_decode_piece(candidate)
            if raw is None:
                self._counts["malformed"] += 1
                self._reject(len(candidate))
            elif len(raw) == size and self._passes(raw, expected):
                accepted.append(raw)
            else:
                self._one(raw, len(candidate), foreign)
        self._counts["frames_ok"] += len(accepted)
        records = np.frombuffer(b"".join(accepted), dtype=self._dtype)
        return DecodedBatch(records, foreign)

    def _passes(self, raw: bytes, expected: tuple[bytes, bytes]) -> bool:
        """Every check the reference makes, for a frame of the expected size: CRC, version
        and type, channel count and schema, and a cycle index inside the frame (or none)."""
        head, shape_and_schema = expected
        if raw[:2] != head or raw[OFFSET_CHANNEL_COUNT:HEADER_SIZE] != shape_and_schema:
            return False
        flags = raw[OFFSET_FLAGS]
        if flags and not (
            flags & FLAG_CYCLE_START and flags >> CYCLE_INDEX_SHIFT < self._shape.samples_per_frame
        ):
            return False
        stored = raw[-2] | raw[-1] << 8  # little-endian trailer
        return binascii.crc_hqx(raw[:-CRC_SIZE], CRC16_INIT) == stored

    def _one(self, raw: bytes, encoded_size: int, foreign: list[Frame]) -> None:
        """The reference parser's verdict on one frame, counted as the reference counts it."""
        try:
            message = unpack_message(raw)
        except CrcMismatchError:
            self._counts["crc_errors"] += 1
        except UnsupportedFrameError:
            self._counts["unsupported"] += 1
        except (ProtocolError, ValueError, struct.error):
            self._counts["malformed"] += 1
        else:
            if isinstance(message, Hello):
                self._counts["hellos"] += 1
                self.last_hello = message
            else:
                self._counts["frames_ok"] += 1
                foreign.append(message)
            return
        self._reject(encoded_size)

    def _reject(self, encoded_size: int) -> None:
        self._counts["resyncs"] += 1
        self._counts["bytes_discarded"] += encoded_size
