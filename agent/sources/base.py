"""What every source hands the pipeline, and the bounded queue between them.

Sources run in their own threads (serial reader, MQTT network loop, pacing loops) and put
:class:`SampleChunk` objects into a :class:`ChunkQueue` — one chunk for all the samples one
read or message brought, so the queue's lock and the consumer's wake-up are paid per read,
not per frame. The queue is bounded: when the
pipeline falls behind, the *oldest* chunk is dropped and counted — memory never grows, and
the drop shows up in ``status`` as overload plus a sequence gap, never silently.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.core.errors import AgentInputError


class SourceError(AgentInputError, RuntimeError):
    """A source that cannot be created or started (bad channel map, unknown file, …)."""


@dataclass(frozen=True)
class SampleChunk:
    """Consecutive samples of one robot in physical units.

    ``gap_before`` is set when this chunk does not continue the previous one: samples were
    lost (a sequence gap, a dropped chunk, a reconnect) or the sequence went backwards (a
    device reboot, a repeated frame); windows never straddle it. ``missing_samples`` is how
    many samples the gap lost when the source knows it (missing frames × samples per frame),
    0 when unknown; the segmenter interpolates across a short known gap instead.
    """

    samples: np.ndarray  # (n × C) float32
    cycle_start: np.ndarray  # (n,) bool
    program: np.ndarray  # (n,) int
    seq_first: int  # unwrapped frame/sample sequence number of the first sample
    seq_last: int  # … of the last; consecutive in between, samples spread evenly over them
    wall_time: float  # Unix time of the last sample (agent clock at reception)
    received_monotonic: float  # for frame-to-alarm latency
    gap_before: bool = False
    missing_samples: int = 0

    @property
    def n(self) -> int:
        return int(self.samples.shape[0])


@dataclass
class QueueStats:
    put: int = 0
    dropped: int = 0
    high_water: int = 0


class ChunkQueue:
    """Bounded FIFO that drops the oldest chunk when full and marks the next one as a gap."""

    def __init__(self, max_chunks: int) -> None:
        self._items: collections.deque[SampleChunk] = collections.deque()
        self._max = max_chunks
        self._cond = threading.Condition()
        self.stats = QueueStats()
        self.on_put: Callable[[], None] | None = None  # wakes the consumer loop

    def put(self, chunk: SampleChunk) -> None:
        self.put_many((chunk,))

    def put_many(self, chunks: Sequence[SampleChunk]) -> None:
        """Append ``chunks`` in order under one lock, with one wake-up of the consumer."""
        if not chunks:
            return
        with self._cond:
            for chunk in chunks:
                self._append(chunk)
            self.stats.high_water = max(self.stats.high_water, len(self._items))
            self._cond.notify()
        if self.on_put is not None:
            self.on_put()

    def _append(self, chunk: SampleChunk) -> None:
        if len(self._items) >= self._max:
            self._items.popleft()
            self.stats.dropped += 1
            # whatever now follows the dropped chunk starts after a hole
            if self._items:
                self._items[0] = _with_gap(self._items[0])
            else:
                chunk = _with_gap(chunk)
        self._items.append(chunk)
        self.stats.put += 1

    def get(self, timeout: float) -> SampleChunk | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            return self._items.popleft() if self._items else None

    @property
    def capacity(self) -> int:
        return self._max

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


def _with_gap(chunk: SampleChunk) -> SampleChunk:
    # A whole dropped chunk is a gap of unknown length: never interpolated across.
    return dataclasses.replace(chunk, gap_before=True, missing_samples=0)


@dataclass
class SourceStatus:
    """What a source reports in ``status``: connection, counters, last event."""

    kind: str
    connected: bool = False
    counters: dict[str, int] = field(default_factory=dict)
    last_event: str = ""


class Source(ABC):
    """A producer of :class:`SampleChunk` for one robot.

    Lifecycle: ``start()`` opens the input and starts producing into ``queue``; ``status()``
    may be called any time from the main thread; ``stop()`` ends production and returns
    once the source's threads have exited. ``idle_ok()`` tells the watchdog that no data is
    legitimately expected right now (e.g. a replay that has finished).
    """

    kind = "abstract"

    def __init__(self, channels: tuple[str, ...], queue: ChunkQueue) -> None:
        self.channels = channels
        self.queue = queue

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    @abstractmethod
    def status(self) -> SourceStatus: ...

    def idle_ok(self) -> bool:
        return False

    def finished(self) -> bool:
        """True for finite sources (replay without loop) once everything was produced."""
        return False
