"""Run callables on the agent's main loop thread and wait for their result.

The pipeline (routes, alarm trackers, the recent-normal ring) is owned by the thread that
calls ``process``; the OTA worker must never touch it directly. It queues a callable here and
the main loop runs it between chunks (``Agent.step``), so a swap happens exactly between two
windows and the old model keeps serving until then.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from agent.ota.errors import OtaError


class MainLoopCalls:
    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
        self.on_put: Callable[[], None] = lambda: None

    def call(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Run ``fn`` on the main loop; re-raise what it raised. From the worker thread only."""
        future: Future = Future()
        self._queue.put((fn, future))
        self.on_put()
        try:
            return future.result(timeout)
        except FutureTimeout as err:
            future.cancel()
            raise OtaError(
                f"the main loop did not run the request within {timeout:g} s (stopping?)"
            ) from err

    def run_pending(self) -> int:
        """Run every queued call (main loop thread); returns how many ran."""
        ran = 0
        while True:
            try:
                fn, future = self._queue.get_nowait()
            except queue.Empty:
                return ran
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as err:  # handed to the waiting thread
                future.set_exception(err)
            ran += 1
