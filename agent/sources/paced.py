"""A source thread that produces chunks at a pace (real time × speed, or as fast as allowed).

Shared by the simulator and replay sources: both generate samples themselves rather than
waiting on a device, so they need the same pacing and stop handling.
"""

from __future__ import annotations

import threading
import time
from abc import abstractmethod

from agent.sources.base import ChunkQueue, SampleChunk, Source, SourceStatus


class PacedSource(Source):
    """Runs :meth:`next_chunk` in a thread; ``speed`` 1 = real time, 0 = as fast as possible.

    As fast as possible still never overruns the pipeline: with ``speed == 0`` the thread
    waits while the queue is more than half full, so an offline replay loses nothing.
    """

    def __init__(
        self, channels: tuple[str, ...], queue: ChunkQueue, sample_rate_hz: float, speed: float
    ) -> None:
        super().__init__(channels, queue)
        self._rate = sample_rate_hz
        self._speed = speed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._produced = 0
        self._done = False
        self._error = ""

    @abstractmethod
    def next_chunk(self) -> SampleChunk | None:
        """The next chunk, or None when the source has nothing more."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"source-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def finished(self) -> bool:
        return self._done

    def idle_ok(self) -> bool:
        return self._done

    def status(self) -> SourceStatus:
        return SourceStatus(
            kind=self.kind,
            connected=not self._done,
            counters={"samples": self._produced, "queue_dropped": self.queue.stats.dropped},
            last_event=self._error or ("finished" if self._done else "running"),
        )

    def _run(self) -> None:
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                chunk = self.next_chunk()
                if chunk is None:
                    break
                self._produced += chunk.n
                if self._speed > 0:
                    due = started + self._produced / (self._rate * self._speed)
                    delay = due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                else:
                    while len(self.queue) > self.queue.capacity // 2 and not self._stop.wait(0.001):
                        pass
                self.queue.put(chunk)
        except Exception as err:  # a source thread must report, not die silently
            self._error = f"error: {err}"
        finally:
            self._done = True
