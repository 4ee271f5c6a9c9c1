"""The agent's one framed-input stage: wire-format bytes → :class:`SampleChunk` in the queue.

Serial and MQTT frame sources both hand their bytes to a :class:`FramedInput`. It wraps
:class:`~firmware_config.stream.BatchFrameStream` (decoding, HELLO, channel-map check,
sequence tracking, physical units — for everything one read or message completed at once) and
adds what only the agent knows: reception times and its own frame numbering (1 for the first
frame, then 1 + the frames known to be missing, so it never wraps and never goes backwards).

Everything one ``feed`` completed becomes one chunk — one queue put, one wake-up of the main
loop — unless a frame inside it is discontinuous (a gap, a repeat, a reconnect): a new chunk
starts there with ``gap_before`` set, so the segmenter never joins samples across it.
``batched=False`` is the reference path (:class:`~firmware_config.stream.FrameStream`, one
chunk per frame), kept to compare against.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable

import numpy as np

from agent.sources.base import ChunkQueue, SampleChunk
from firmware_config.blocks import SampleBatch, SampleBlock
from firmware_config.channel_map import ChannelMap
from firmware_config.stream import NOTICE_ERROR, BatchFrameStream, FrameStream, StreamNotice

LOG = logging.getLogger(__name__)


class FramedInput:
    """Feed bytes from one byte stream; chunks go to ``queue``, reports to ``on_notice``.

    Not thread-safe: ``feed`` and ``reset`` run in the one thread that reads the stream;
    ``counters`` may be read from any thread (a snapshot of plain integers).
    """

    def __init__(
        self,
        channel_map: ChannelMap,
        queue: ChunkQueue,
        on_notice: Callable[[str], None] | None = None,
        *,
        batched: bool = True,
    ) -> None:
        self._stream: BatchFrameStream | FrameStream
        if batched:
            self._stream = BatchFrameStream(channel_map, on_notice=self._notice)
        else:
            self._stream = FrameStream(channel_map, on_notice=self._notice)
        self._queue = queue
        self._on_notice = on_notice
        self._position = 0

    def feed(self, data: bytes) -> None:
        """Queue the chunks ``data`` completed (problems are counted, never raised)."""
        completed = self._stream.feed(data)
        if not completed:
            return
        wall, monotonic = time.time(), time.monotonic()
        if isinstance(completed, SampleBatch):
            self._queue.put_many(self._batch_chunks(completed, wall, monotonic))
        else:  # the reference path, as it was: one put (and wake-up) per frame
            for block in completed:
                self._queue.put(self._block_chunk(block, wall, monotonic))

    def reset(self) -> None:
        """After a reconnect: the next chunk follows a gap, the device is reported again."""
        self._stream.reset()

    def counters(self) -> dict[str, int]:
        """Counters for ``status()``. ``frames_ok`` counts frames delivered as chunks;
        ``sequence_gaps`` counts gap events, ``missing_frames`` the frames lost in them."""
        stats = self._stream.stats
        decoder, sequence = stats.decoder, stats.sequence
        return {
            "frames_ok": stats.frames_delivered,
            "crc_errors": decoder.crc_errors,
            "malformed": decoder.malformed,
            "unsupported": decoder.unsupported,
            "oversize": decoder.oversize,
            "resyncs": decoder.resyncs,
            "hellos": decoder.hellos,
            "schema_mismatches": stats.schema_mismatches,
            "sequence_gaps": sequence.gap_events,
            "missing_frames": sequence.missing_frames,
            "out_of_order": sequence.out_of_order,
        }

    def _batch_chunks(self, batch: SampleBatch, wall: float, monotonic: float) -> list[SampleChunk]:
        """One chunk per run of contiguous frames: usually the whole batch."""
        n_frames = batch.n_frames
        if not batch.missing_frames.any():
            positions = np.arange(self._position + 1, self._position + n_frames + 1)
        else:
            positions = self._position + np.cumsum(batch.missing_frames + 1)
        self._position = int(positions[-1])
        starts = [0, *(np.flatnonzero(batch.gap_before[1:]) + 1).tolist(), n_frames]
        per_frame = batch.samples_per_frame
        chunks = []
        for first, end in itertools.pairwise(starts):
            rows = slice(first * per_frame, end * per_frame)
            chunks.append(
                SampleChunk(
                    samples=batch.samples[rows],
                    cycle_start=batch.cycle_start[rows],
                    program=batch.program_id[rows],
                    seq_first=int(positions[first]),
                    seq_last=int(positions[end - 1]),
                    wall_time=wall,
                    received_monotonic=monotonic,
                    gap_before=bool(batch.gap_before[first]),
                    missing_samples=int(batch.missing_frames[first]) * per_frame,
                )
            )
        return chunks

    def _block_chunk(self, block: SampleBlock, wall: float, monotonic: float) -> SampleChunk:
        self._position += 1 + block.missing_frames
        return SampleChunk(
            samples=block.samples,
            cycle_start=block.cycle_start,
            program=block.program_id,
            seq_first=self._position,
            seq_last=self._position,
            wall_time=wall,
            received_monotonic=monotonic,
            gap_before=block.gap_before,
            missing_samples=block.missing_frames * int(block.samples.shape[0]),
        )

    def _notice(self, notice: StreamNotice) -> None:
        log = LOG.warning if notice.kind == NOTICE_ERROR else LOG.info
        log("%s: %s", notice.kind, notice.message)
        if self._on_notice is not None:
            self._on_notice(f"{notice.kind}: {notice.message}")
