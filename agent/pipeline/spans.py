"""Where a window came from: stream sample index → frame sequence numbers and reception times.

The pipeline numbers samples of a robot's stream consecutively; every chunk it receives covers
a range of those indices and carries the frame sequence numbers, the wall time of its last
sample and when it was received. :class:`SpanIndex` keeps the recent chunks so that a scored
window can say which frames it spans, when its first and last sample were taken, and how long
after reception it was scored (frame-to-alarm latency).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from agent.core.clock import PROCESS_CLOCK
from agent.sources.base import SampleChunk


@dataclass(frozen=True)
class ChunkSpan:
    first_index: int
    last_index: int
    seq_first: int
    seq_last: int
    wall_time: float  # of the chunk's last sample
    received: float  # monotonic

    def seq_of(self, index: int) -> int:
        """Sequence number of stream sample ``index``: a chunk of several frames spreads its
        samples evenly over its consecutive numbers, so a window names the frame it ends in."""
        numbers = self.seq_last - self.seq_first + 1
        samples = self.last_index - self.first_index + 1
        return self.seq_first + (index - self.first_index) * numbers // samples


@dataclass(frozen=True)
class WindowSpan:
    start: float  # wall time of the first sample, Unix seconds
    end: float  # … of the last sample
    seq_first: int
    seq_last: int
    received: float | None  # monotonic reception of the newest sample, if still known


class SpanIndex:
    """Recent chunk spans of one stream; memory bounded by ``keep_samples`` of history."""

    def __init__(self, sample_rate_hz: float, keep_samples: int) -> None:
        self._rate = sample_rate_hz
        self._keep = keep_samples
        self._spans: collections.deque[ChunkSpan] = collections.deque()
        self.position = 0  # stream index of the next sample

    def add(self, chunk: SampleChunk) -> None:
        self._spans.append(
            ChunkSpan(
                self.position,
                self.position + chunk.n - 1,
                chunk.seq_first,
                chunk.seq_last,
                chunk.wall_time,
                chunk.received_monotonic,
            )
        )
        self.position += chunk.n

    def window(self, start: int, stop: int) -> WindowSpan:
        """Times and frames of the samples [start, stop) of the stream."""
        first, last = self._find(start), self._find(stop - 1)
        if last is not None:
            end = last.wall_time - (last.last_index - (stop - 1)) / self._rate
        else:
            end = PROCESS_CLOCK.now()
        return WindowSpan(
            start=end - (stop - 1 - start) / self._rate,
            end=end,
            seq_first=first.seq_of(start) if first else 0,
            seq_last=last.seq_of(stop - 1) if last else 0,
            received=last.received if last else None,
        )

    def forget_old(self) -> None:
        """Drop chunks no pending segment can start in any more."""
        while self._spans and self._spans[0].last_index < self.position - self._keep:
            self._spans.popleft()

    def _find(self, index: int) -> ChunkSpan | None:
        for span in reversed(self._spans):
            if span.first_index <= index <= span.last_index:
                return span
        return None
