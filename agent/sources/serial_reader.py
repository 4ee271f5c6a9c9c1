"""Serial port reader: a thread that owns one port's life cycle and hands on its bytes.

The acquisition board is a USB-serial device that can vanish at any moment (cable pulled,
board reset, ``/dev/ttyUSB0`` re-enumerated). The reader therefore owns the whole life cycle:
it opens the port, passes whatever arrives to ``on_data``, and when the port fails it reports
a ``disconnected`` event, reopens it with capped exponential backoff, and carries on. I/O
problems become :class:`SerialEvent` objects and counters — the thread never dies from them.

It knows nothing about frames: the consumer (:class:`~agent.sources.framed.FramedInput`)
decodes them, and should treat every ``connected`` event as an interruption of the stream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial

from agent.core.errors import AgentInputError
from agent.sources.settings import DEFAULT_BAUDRATE

LOG = logging.getLogger(__name__)

EVENT_CONNECTED = "connected"
EVENT_DISCONNECTED = "disconnected"
EVENT_ERROR = "error"
MAX_READ_BYTES = 65_536


class SerialSourceError(AgentInputError):
    """The serial source cannot be set up as configured (bad port name, rate, limits)."""


@dataclass(frozen=True)
class SerialEvent:
    """Something that happened to the link; ``kind`` is an ``EVENT_*`` constant."""

    kind: str
    port: str
    message: str
    monotonic_s: float


@dataclass(frozen=True)
class SerialReaderStats:
    connected: bool
    connects: int
    reconnects: int
    disconnects: int
    open_failures: int
    bytes_read: int
    callback_errors: int


SerialFactory = Callable[[str, int, float], serial.SerialBase]


def open_serial_port(port: str, baudrate: int, timeout: float) -> serial.SerialBase:
    """Default opener: a device path or any pyserial URL (``loop://``, ``socket://…``)."""
    return serial.serial_for_url(port, baudrate=baudrate, timeout=timeout)


class SerialFrameReader:
    """Background reader of one serial port.

    ``on_data`` gets every chunk of bytes read, ``on_event`` every :class:`SerialEvent`; both
    run in the reader thread (keep them short). The ``connected`` event of a connection is
    delivered before any of its bytes. A callback that raises is logged and counted, and the
    reader carries on.
    """

    def __init__(
        self,
        port: str,
        on_data: Callable[[bytes], None],
        *,
        baudrate: int = DEFAULT_BAUDRATE,
        on_event: Callable[[SerialEvent], None] | None = None,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        read_timeout_s: float = 0.1,
        serial_factory: SerialFactory | None = None,
    ) -> None:
        if not port:
            raise SerialSourceError("serial port is empty; give a device such as /dev/ttyUSB0")
        if baudrate <= 0:
            raise SerialSourceError(f"baudrate = {baudrate}: must be > 0, e.g. 921600")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise SerialSourceError(
                f"backoff {backoff_initial_s}..{backoff_max_s} s: need 0 < initial ≤ max"
            )
        if read_timeout_s <= 0:
            raise SerialSourceError(f"read_timeout_s = {read_timeout_s}: must be > 0")
        self.port = port
        self.baudrate = baudrate
        self._on_data = on_data
        self._on_event = on_event
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._read_timeout = read_timeout_s
        self._factory = serial_factory or open_serial_port
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._serial: serial.SerialBase | None = None
        self._connected = False
        self._connects = 0
        self._disconnects = 0
        self._open_failures = 0
        self._bytes_read = 0
        self._callback_errors = 0

    # ---- life cycle -------------------------------------------------------------------

    def start(self) -> SerialFrameReader:
        if self._thread is not None:
            raise SerialSourceError("reader already started")
        self._thread = threading.Thread(target=self._run, name=f"serial:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread and close the port (idempotent)."""
        self._stop.set()
        port = self._serial
        if port is not None and hasattr(port, "cancel_read"):
            try:
                port.cancel_read()
            except (serial.SerialException, OSError, AttributeError):
                LOG.debug("cancel_read failed", exc_info=True)
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> SerialFrameReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def connected(self) -> bool:
        return self._connected

    def stats(self) -> SerialReaderStats:
        with self._lock:
            return SerialReaderStats(
                connected=self._connected,
                connects=self._connects,
                reconnects=max(0, self._connects - 1),
                disconnects=self._disconnects,
                open_failures=self._open_failures,
                bytes_read=self._bytes_read,
                callback_errors=self._callback_errors,
            )

    # ---- reader thread ----------------------------------------------------------------

    def _run(self) -> None:
        backoff = self._backoff_initial
        failure_reported = False
        while not self._stop.is_set():
            try:
                port = self._factory(self.port, self.baudrate, self._read_timeout)
            except (serial.SerialException, OSError, ValueError) as err:
                with self._lock:
                    self._open_failures += 1
                if not failure_reported:
                    self._emit(EVENT_ERROR, f"cannot open {self.port}: {err}")
                    failure_reported = True
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._backoff_max)
                continue
            failure_reported = False
            backoff = self._backoff_initial
            self._serve(port)
            if not self._stop.is_set():
                self._stop.wait(backoff)
        self._connected = False

    def _serve(self, port: serial.SerialBase) -> None:
        """Read from an open port until it fails or stop is requested; always closes it."""
        self._serial = port
        with self._lock:
            self._connects += 1
            self._connected = True
        self._emit(EVENT_CONNECTED, f"opened {self.port}")
        try:
            while not self._stop.is_set():
                waiting = port.in_waiting
                data = port.read(min(max(waiting, 1), MAX_READ_BYTES))
                if data:
                    self._deliver(data)
        except (serial.SerialException, OSError, ValueError, TypeError) as err:
            # pyserial raises TypeError/ValueError from a port closed under it by stop()
            if not self._stop.is_set():
                self._emit(EVENT_DISCONNECTED, f"{self.port}: {err}")
        finally:
            with self._lock:
                self._connected = False
                if not self._stop.is_set():
                    self._disconnects += 1
            self._serial = None
            try:
                port.close()
            except (serial.SerialException, OSError):
                LOG.debug("closing %s failed", self.port, exc_info=True)

    def _deliver(self, data: bytes) -> None:
        with self._lock:
            self._bytes_read += len(data)
        try:
            self._on_data(data)
        except Exception as err:  # a consumer bug must not kill acquisition
            LOG.exception("data callback failed")
            with self._lock:
                self._callback_errors += 1
            self._emit(EVENT_ERROR, f"data callback failed: {err!r}")

    def _emit(self, kind: str, message: str) -> None:
        event = SerialEvent(
            kind=kind, port=self.port, message=message, monotonic_s=time.monotonic()
        )
        log = LOG.warning if kind in (EVENT_DISCONNECTED, EVENT_ERROR) else LOG.info
        log("%s: %s", kind, message)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                LOG.exception("event callback failed")
