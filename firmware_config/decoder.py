"""Streaming frame decoder: bytes in any chunking → validated frames, never an exception.

The serial line is hostile: the agent may connect mid-frame, bytes get lost or flipped, a
misconfigured board may send something else entirely. The decoder therefore

- keeps at most ``max_frame_bytes`` of an unfinished frame (bounded memory whatever arrives);
  a longer run without delimiter is dropped whole and counted as ``oversize``;
- treats every 0x00 as a frame boundary, so after any damage it is back in sync at the next
  delimiter (``resyncs`` counts how often bytes had to be thrown away);
- yields a frame only if its COBS is valid, its CRC matches and every field is consistent;
- counts what it rejects.

It never raises on input bytes: every parse error is a counter. Sequence numbers are not its
business: :class:`~firmware_config.sequence.SequenceTracker` judges them (see
:class:`~firmware_config.stream.FrameStream`, which combines the two).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

from firmware_config.cobs import CobsError, cobs_decode
from firmware_config.errors import FirmwareInputError
from firmware_config.protocol import (
    FRAME_DELIMITER,
    MAX_ENCODED_FRAME,
    CrcMismatchError,
    Frame,
    Hello,
    ProtocolError,
    UnsupportedFrameError,
    unpack_message,
)

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecoderStats:
    """Counters of one decoder (a snapshot; every field only ever grows).

    ``frames_ok`` counts DATA frames that passed COBS, CRC and field checks (whatever their
    schema). ``resyncs`` counts every time bytes were discarded to get back in sync
    (each rejected frame, each oversize run, each :meth:`FrameDecoder.resync` that dropped data).
    """

    frames_ok: int = 0
    hellos: int = 0
    crc_errors: int = 0
    malformed: int = 0
    unsupported: int = 0
    oversize: int = 0
    resyncs: int = 0
    bytes_received: int = 0
    bytes_discarded: int = 0

    @property
    def rejected(self) -> int:
        """Frames (or runs of bytes) thrown away for any reason."""
        return self.crc_errors + self.malformed + self.unsupported + self.oversize


class FrameDecoder:
    """Feed bytes as they arrive; get back the DATA frames completed by them.

    Not thread-safe: one decoder per byte stream, driven by one thread.
    """

    def __init__(self, max_frame_bytes: int = MAX_ENCODED_FRAME) -> None:
        if max_frame_bytes < 1:
            raise FirmwareInputError(f"max_frame_bytes = {max_frame_bytes}: must be ≥ 1")
        self._max = max_frame_bytes
        self._buffer = bytearray()
        self._skipping = False  # inside an oversize run or after resync(): drop to next 0x00
        self._skip_is_resync = False  # the skip came from resync(), not from an oversize run
        self._skipped = 0  # bytes dropped by the current skip
        self.last_hello: Hello | None = None
        self._frames_ok = 0
        self._hellos = 0
        self._crc_errors = 0
        self._malformed = 0
        self._unsupported = 0
        self._oversize = 0
        self._resyncs = 0
        self._bytes_received = 0
        self._bytes_discarded = 0

    @property
    def max_frame_bytes(self) -> int:
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes of the unfinished frame currently held."""
        return len(self._buffer)

    @property
    def stats(self) -> DecoderStats:
        return DecoderStats(
            frames_ok=self._frames_ok,
            hellos=self._hellos,
            crc_errors=self._crc_errors,
            malformed=self._malformed,
            unsupported=self._unsupported,
            oversize=self._oversize,
            resyncs=self._resyncs,
            bytes_received=self._bytes_received,
            bytes_discarded=self._bytes_discarded,
        )

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Consume ``data``; return the DATA frames it completed, in order."""
        chunk = bytes(data)
        self._bytes_received += len(chunk)
        frames: list[Frame] = []
        start = 0
        while True:
            end = chunk.find(FRAME_DELIMITER, start)
            if end < 0:
                self._accumulate(chunk, start, len(chunk))
                return frames
            self._accumulate(chunk, start, end)
            self._finish(frames)
            start = end + 1

    def resync(self) -> None:
        """Drop any unfinished frame and ignore bytes up to the next delimiter.

        Call it when the byte stream was interrupted (port reopened): the first bytes after a
        reconnect are usually the tail of a frame and are not worth an error count.
        """
        if self._buffer:
            self._skipped += len(self._buffer)
            self._bytes_discarded += len(self._buffer)
            self._buffer.clear()
        if not self._skipping:
            self._skip_is_resync = True
        self._skipping = True

    def _accumulate(self, chunk: bytes, start: int, end: int) -> None:
        size = end - start
        if size <= 0:
            return
        if self._skipping:
            self._skipped += size
            self._bytes_discarded += size
            return
        if len(self._buffer) + size > self._max:
            self._oversize += 1
            self._resyncs += 1
            self._bytes_discarded += len(self._buffer) + size
            self._buffer.clear()
            self._skipping = True
            self._skip_is_resync = False  # already counted as oversize
            return
        self._buffer += chunk[start:end]

    def _finish(self, frames: list[Frame]) -> None:
        """A delimiter arrived: decode what came before it."""
        if self._skipping:
            if self._skip_is_resync and self._skipped:
                self._resyncs += 1
            self._skipping = False
            self._skip_is_resync = False
            self._skipped = 0
            return
        if not self._buffer:
            return  # back-to-back delimiters are idle fill, not an error
        candidate = bytes(self._buffer)
        self._buffer.clear()
        message = self._decode(candidate)
        if message is None:
            self._resyncs += 1
            self._bytes_discarded += len(candidate)
        elif isinstance(message, Hello):
            self._hellos += 1
            self.last_hello = message
        else:
            self._frames_ok += 1
            frames.append(message)

    def _decode(self, candidate: bytes) -> Frame | Hello | None:
        try:
            return unpack_message(cobs_decode(candidate))
        except CrcMismatchError:
            self._crc_errors += 1
        except UnsupportedFrameError:
            self._unsupported += 1
        except (CobsError, ProtocolError, ValueError, struct.error) as err:
            LOG.debug("malformed frame: %s", err)
            self._malformed += 1
        return None
