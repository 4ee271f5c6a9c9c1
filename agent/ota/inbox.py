"""The hand-over from the MQTT thread to the OTA worker, bounded in messages and bytes.

The worker may be busy for a while (verifying a bundle, waiting for the gate) while anyone on
the broker keeps publishing; an unbounded queue would let them exhaust memory. Past either
bound a message is dropped and counted: a dropped chunk of a real transfer is asked for again
(``ota/need``), a dropped command is re-delivered with the retained message on reconnect.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from agent.ota.refusals import Refusals

MAX_MESSAGES = 1024
MAX_BYTES = 16 * 1024 * 1024


class Inbox:
    def __init__(
        self, refusals: Refusals, max_messages: int = MAX_MESSAGES, max_bytes: int = MAX_BYTES
    ) -> None:
        self.refusals = refusals
        self.max_bytes = max_bytes
        self._queue: queue.Queue[tuple[int, tuple[Any, ...]]] = queue.Queue(max_messages)
        self._lock = threading.Lock()
        self._bytes = 0

    def put(self, item: tuple[Any, ...], size: int = 0, *, control: bool = False) -> None:
        """Queue ``item`` (``size`` bytes of payload), or drop and count it when full.
        ``control`` items (the stop signal) are never dropped."""
        with self._lock:
            if not control and self._bytes + size > self.max_bytes:
                self.refusals.note("inbox_full", f"{item[0]} dropped: {self._bytes} bytes queued")
                return
            self._bytes += size
        try:
            if control:  # a full queue means the worker is draining it and sees its halt flag
                self._queue.put((size, item), timeout=1.0)
            else:
                self._queue.put_nowait((size, item))
        except queue.Full:
            with self._lock:
                self._bytes -= size
            if not control:
                self.refusals.note("inbox_full", f"{item[0]} dropped: {self._queue.maxsize} queued")

    def __len__(self) -> int:
        return self._queue.qsize()

    def get(self, timeout: float) -> tuple[Any, ...] | None:
        try:
            size, item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            self._bytes -= size
        return item
