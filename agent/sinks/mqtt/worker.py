"""A thread that runs one job whenever it is woken, and at least every ``poll_interval``."""

from __future__ import annotations

import threading
from collections.abc import Callable


class WakeableWorker:
    """Runs ``job()`` on a daemon thread after each :meth:`wake` (wakes coalesce) and every
    ``poll_interval`` seconds otherwise. A failing job is reported to ``on_error`` and retried
    after ``poll_interval``; it never ends the thread."""

    def __init__(
        self,
        name: str,
        job: Callable[[], None],
        poll_interval: float,
        on_error: Callable[[Exception], None],
    ) -> None:
        self._name = name
        self._job = job
        self._poll_interval = poll_interval
        self._on_error = on_error
        self._wake = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float) -> None:
        """Ask the thread to end after its current job and wait up to ``timeout`` seconds."""
        self._halt.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._halt.is_set():
            self._wake.wait(self._poll_interval)
            self._wake.clear()
            if self._halt.is_set():
                return
            try:
                self._job()
            except Exception as err:  # keep running; on_error logs it (still in the handler)
                self._on_error(err)
                self._halt.wait(self._poll_interval)
