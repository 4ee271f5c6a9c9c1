"""Replay of a recorded CSV (the documented recording format) as if it were live."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from agent.core.clock import PROCESS_CLOCK
from agent.core.recording import Recording, RecordingError, read_recording
from agent.sources.base import ChunkQueue, SampleChunk, SourceError
from agent.sources.paced import PacedSource

CHUNK_SAMPLES = 10


class ReplaySource(PacedSource):
    """Plays a :class:`Recording` in chunks of :data:`CHUNK_SAMPLES`; ``loop`` starts over at
    the end (a discontinuity, flagged as a gap). Open a file with :meth:`open`."""

    kind = "replay"

    def __init__(
        self,
        recording: Recording,
        sample_rate_hz: float,
        queue: ChunkQueue,
        *,
        speed: float = 1.0,
        loop: bool = False,
    ) -> None:
        super().__init__(recording.channels, queue, sample_rate_hz, speed)
        self._rec = recording
        self._loop = loop
        self._pos = 0
        self._seq = 0

    @classmethod
    def open(
        cls,
        path: Path,
        channels: tuple[str, ...],
        sample_rate_hz: float,
        queue: ChunkQueue,
        *,
        speed: float = 1.0,
        loop: bool = False,
    ) -> ReplaySource:
        """Read the recording CSV at ``path`` (``channels`` in bundle order) and replay it."""
        try:
            recording = read_recording(path, channels)
        except RecordingError as err:
            raise SourceError(f"replay source: {err}") from err
        return cls(recording, sample_rate_hz, queue, speed=speed, loop=loop)

    @classmethod
    def from_recording(
        cls, recording: Recording, sample_rate_hz: float, queue: ChunkQueue
    ) -> ReplaySource:
        """A replay of an already-read recording (offline scoring pulls chunks directly)."""
        return cls(recording, sample_rate_hz, queue, speed=0.0)

    def next_chunk(self) -> SampleChunk | None:
        rec = self._rec
        if self._pos >= rec.n_samples:
            if not self._loop or rec.n_samples == 0:
                return None
            self._pos = 0
        lo = self._pos
        hi = min(lo + CHUNK_SAMPLES, rec.n_samples)
        gap = lo == 0 and self._seq > 0  # looping back to the start is a discontinuity
        if rec.gap_before is not None:
            gap = gap or bool(lo > 0 and rec.gap_before[lo])
            inside = np.flatnonzero(rec.gap_before[lo + 1 : hi])
            if inside.size:  # end the chunk at the gap so the next one can carry the flag
                hi = lo + 1 + int(inside[0])
        self._pos = hi
        self._seq += 1
        n = hi - lo
        return SampleChunk(
            samples=rec.samples[lo:hi],
            cycle_start=(
                rec.cycle_start[lo:hi] if rec.cycle_start is not None else np.zeros(n, bool)
            ),
            program=(
                rec.program_id[lo:hi]
                if rec.program_id is not None
                else np.full(n, -1, dtype=np.int64)
            ),
            seq_first=self._seq,
            seq_last=self._seq,
            wall_time=PROCESS_CLOCK.now(),
            received_monotonic=time.monotonic(),
            gap_before=gap,
        )
