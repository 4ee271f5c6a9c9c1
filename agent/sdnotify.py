"""systemd notification protocol (sd_notify) and a progress-gated watchdog, without libsystemd.

The protocol is one datagram of ``KEY=value`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). Outside systemd the
variable is unset and every call is a cheap no-op, so the agent runs the same code in a
terminal, in tests and under ``Type=notify``.

:class:`WatchdogGate` makes ``WatchdogSec=`` mean "the agent is doing its job", not merely
"the process is alive": the main loop reports :meth:`~WatchdogGate.progress` after it actually
processed a window (or :meth:`~WatchdogGate.idle_ok` when the source is legitimately idle),
and :meth:`~WatchdogGate.maybe_ping` sends ``WATCHDOG=1`` at most every ``WATCHDOG_USEC / 2``
and only if progress was reported since the previous ping. A stuck main loop, a wedged
backend or a dead source therefore stops the pings and systemd restarts the service. There is
deliberately no timer thread: a thread would keep pinging while the main loop hangs.

Usage::

    notifier = SdNotifier.from_env()
    gate = WatchdogGate(notifier)
    notifier.ready("scoring 2 robots")        # after model warm-up and source open
    while running:
        if process_one_window(): gate.progress()
        gate.maybe_ping()
    notifier.stopping()
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from agent.core.errors import AgentRuntimeError

log = logging.getLogger(__name__)


class SdNotifyError(AgentRuntimeError):
    """Malformed notify environment (bad ``NOTIFY_SOCKET`` or ``WATCHDOG_USEC``)."""


class SdNotifier:
    """Sends sd_notify datagrams; a no-op when ``NOTIFY_SOCKET`` is unset.

    Send failures (systemd gone, socket full) are logged and reported as False, never raised:
    a notification problem must not take the agent down.
    """

    def __init__(self, socket_address: str | None) -> None:
        self._address: str | bytes | None = None
        if socket_address:
            if socket_address.startswith("@"):
                # abstract namespace: leading NUL instead of '@'
                self._address = "\0" + socket_address[1:]
            elif socket_address.startswith("/"):
                self._address = socket_address
            else:
                raise SdNotifyError(
                    f"NOTIFY_SOCKET = {socket_address!r}: must be an absolute path or '@name'"
                )
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SdNotifier:
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens for notifications."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` assignments as one datagram. True if sent."""
        if self._address is None:
            return False
        for item in assignments:
            if "=" not in item or "\n" in item:
                raise SdNotifyError(f"notify assignment {item!r}: must be one KEY=value line")
        data = "\n".join(assignments).encode()
        try:
            if self._sock is None:
                # Non-blocking: a service manager that stops reading (full receive queue)
                # must never stall the main loop; the datagram is dropped and logged.
                self._sock = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
                )
            self._sock.sendto(data, self._address)
        except OSError as err:
            log.warning("sd_notify %r failed: %s", assignments, err)
            return False
        return True

    @staticmethod
    def _status_line(text: str) -> str:
        return "STATUS=" + " ".join(text.split())  # one line, no control characters

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: startup finished (model warmed up, source open)."""
        extra = () if status is None else (self._status_line(status),)
        return self.notify("READY=1", *extra)

    def status(self, text: str) -> bool:
        """Free-form status shown by ``systemctl status``."""
        return self.notify(self._status_line(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``. Prefer :meth:`WatchdogGate.maybe_ping`, which gates it on progress."""
        return self.notify("WATCHDOG=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown began (e.g. draining the outbox after SIGTERM)."""
        extra = () if status is None else (self._status_line(status),)
        return self.notify("STOPPING=1", *extra)

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` (+ ``MONOTONIC_USEC``): a SIGHUP reload began; READY=1 ends it."""
        extra = () if status is None else (self._status_line(status),)
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *extra)

    def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC``: ask for more time during a slow start or stop."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class WatchdogGate:
    """Sends ``WATCHDOG=1`` only while the main loop makes progress. Main thread only.

    The watchdog is enabled when ``WATCHDOG_USEC`` is set and ``WATCHDOG_PID`` is unset or
    equal to this process (systemd sets it so a forked child does not ping for its parent).
    """

    def __init__(
        self,
        notifier: SdNotifier,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        pid: int | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._notifier = notifier
        self._clock = clock
        self._interval: float | None = None
        usec_text = env.get("WATCHDOG_USEC")
        pid_text = env.get("WATCHDOG_PID")
        if usec_text and notifier.enabled:
            try:
                usec = int(usec_text)
            except ValueError as err:
                raise SdNotifyError(f"WATCHDOG_USEC = {usec_text!r}: not an integer") from err
            my_pid = os.getpid() if pid is None else pid
            if usec > 0 and (not pid_text or pid_text.strip() == str(my_pid)):
                self._interval = usec / 2 / 1_000_000
        self._last_ping: float | None = None
        self._progress = False
        self.pings = 0

    @property
    def enabled(self) -> bool:
        return self._interval is not None

    @property
    def interval(self) -> float | None:
        """Minimum seconds between pings (half the watchdog timeout), None if disabled."""
        return self._interval

    def progress(self) -> None:
        """The main loop processed a window (scored it, or counted it as skipped)."""
        self._progress = True

    def idle_ok(self) -> None:
        """The source is open and healthy but legitimately quiet (e.g. robot stopped)."""
        self._progress = True

    def maybe_ping(self) -> bool:
        """Send ``WATCHDOG=1`` if due and progress was reported since the last ping."""
        if self._interval is None or not self._progress:
            return False
        now = self._clock()
        if self._last_ping is not None and now - self._last_ping < self._interval:
            return False
        if not self._notifier.watchdog():
            return False
        self._last_ping = now
        self._progress = False
        self.pings += 1
        return True
