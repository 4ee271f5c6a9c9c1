"""Serial frame source: a reader thread that turns a serial byte stream into frames.

The acquisition board is a USB-serial device that can vanish at any moment (cable pulled,
board reset, ``/dev/ttyUSB0`` re-enumerated). The reader therefore owns the whole life cycle:
it opens the port, reads whatever arrives, feeds a :class:`~firmware_config.decoder.FrameDecoder`
and hands validated frames to a callback or a bounded queue; when the port fails it reports a
``disconnected`` event, reopens it with capped exponential backoff, and carries on. I/O
problems become :class:`SerialEvent` objects and counters — the thread never dies from them.

The decoder's sequence tracking survives reconnects, so frames lost while the device was gone
show up as ``sequence_gaps``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial

from firmware_config.channel_map import ChannelMap
from firmware_config.decoder import DecoderStats, FrameDecoder
from firmware_config.protocol import MAX_ENCODED_FRAME, Frame, Hello, wire_frame_size_max

LOG = logging.getLogger(__name__)

EVENT_CONNECTED = "connected"
EVENT_DISCONNECTED = "disconnected"
EVENT_ERROR = "error"
EVENT_HELLO = "hello"
EVENT_KINDS = (EVENT_CONNECTED, EVENT_DISCONNECTED, EVENT_ERROR, EVENT_HELLO)
DEFAULT_BAUDRATE = 921_600
MAX_READ_BYTES = 65_536
FRAME_SLACK_BYTES = 64  # decoder buffer beyond the largest frame of the map


class SerialSourceError(Exception):
    """The serial source cannot be set up as configured (bad port name, rate, limits)."""


@dataclass(frozen=True)
class SerialEvent:
    """Something that happened to the link; ``kind`` is one of :data:`EVENT_KINDS`."""

    kind: str
    port: str
    message: str
    monotonic_s: float


@dataclass(frozen=True)
class SerialReaderStats:
    decoder: DecoderStats
    connected: bool
    connects: int
    reconnects: int
    disconnects: int
    open_failures: int
    bytes_read: int
    frames_delivered: int
    frames_dropped: int  # queue full: the oldest frame was dropped
    schema_mismatches: int  # frames not matching the channel map, not delivered
    callback_errors: int


SerialFactory = Callable[[str, int, float], serial.SerialBase]


def open_serial_port(port: str, baudrate: int, timeout: float) -> serial.SerialBase:
    """Default opener: a device path or any pyserial URL (``loop://``, ``socket://…``)."""
    return serial.serial_for_url(port, baudrate=baudrate, timeout=timeout)


class SerialFrameReader:
    """Background reader of one serial port.

    Frames go to ``on_frame`` if given (called in the reader thread; keep it short), else to
    a bounded queue read with :meth:`get_frame`; when the queue is full the oldest frame is
    dropped and counted. Events go to ``on_event`` if given, else to :attr:`events` (also
    bounded). With a ``channel_map``, frames whose schema hash or shape differ from it are
    counted and reported, never delivered.
    """

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = DEFAULT_BAUDRATE,
        channel_map: ChannelMap | None = None,
        on_frame: Callable[[Frame], None] | None = None,
        on_event: Callable[[SerialEvent], None] | None = None,
        queue_size: int = 4096,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        read_timeout_s: float = 0.1,
        serial_factory: SerialFactory | None = None,
    ) -> None:
        if not port:
            raise SerialSourceError("serial port is empty; give a device such as /dev/ttyUSB0")
        if baudrate <= 0:
            raise SerialSourceError(f"baudrate = {baudrate}: must be > 0, e.g. 921600")
        if queue_size < 1:
            raise SerialSourceError(f"queue_size = {queue_size}: must be ≥ 1")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise SerialSourceError(
                f"backoff {backoff_initial_s}..{backoff_max_s} s: need 0 < initial ≤ max"
            )
        if read_timeout_s <= 0:
            raise SerialSourceError(f"read_timeout_s = {read_timeout_s}: must be > 0")
        self.port = port
        self.baudrate = baudrate
        self.channel_map = channel_map
        max_frame = MAX_ENCODED_FRAME
        if channel_map is not None:
            size = wire_frame_size_max(channel_map.n_channels, channel_map.samples_per_frame)
            max_frame = size + FRAME_SLACK_BYTES
        self._decoder = FrameDecoder(max_frame_bytes=max_frame)
        self._on_frame = on_frame
        self._on_event = on_event
        self.frames: queue.Queue[Frame] = queue.Queue(maxsize=queue_size)
        self.events: queue.Queue[SerialEvent] = queue.Queue(maxsize=1024)
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
        self._delivered = 0
        self._dropped = 0
        self._mismatches = 0
        self._callback_errors = 0
        self._hellos_seen = 0
        self._mismatch_reported = False
        self.last_hello: Hello | None = None

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

    # ---- consumer side ----------------------------------------------------------------

    def get_frame(self, timeout: float | None = None) -> Frame | None:
        """Next frame from the queue, or None after ``timeout`` seconds."""
        try:
            return self.frames.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> list[Frame]:
        """All frames queued right now."""
        out = []
        while True:
            try:
                out.append(self.frames.get_nowait())
            except queue.Empty:
                return out

    def stats(self) -> SerialReaderStats:
        with self._lock:
            return SerialReaderStats(
                decoder=self._decoder.stats,
                connected=self._connected,
                connects=self._connects,
                reconnects=max(0, self._connects - 1),
                disconnects=self._disconnects,
                open_failures=self._open_failures,
                bytes_read=self._bytes_read,
                frames_delivered=self._delivered,
                frames_dropped=self._dropped,
                schema_mismatches=self._mismatches,
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
            self._decoder.resync()  # whatever arrives before the first delimiter is a tail
        self._mismatch_reported = False
        self.last_hello = None  # report the device again on every connection
        self._emit(EVENT_CONNECTED, f"opened {self.port}")
        try:
            while not self._stop.is_set():
                waiting = port.in_waiting
                data = port.read(min(max(waiting, 1), MAX_READ_BYTES))
                if data:
                    self._process(data)
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

    def _process(self, data: bytes) -> None:
        with self._lock:
            self._bytes_read += len(data)
            frames = self._decoder.feed(data)
            hellos = self._decoder.stats.hellos
        if hellos != self._hellos_seen:
            self._hellos_seen = hellos
            self._on_hello(self._decoder.last_hello)
        for frame in frames:
            if self._matches_map(frame):
                self._deliver(frame)

    def _on_hello(self, hello: Hello | None) -> None:
        """Report a device once per connection (HELLOs repeat every second or so)."""
        if hello is None:
            return
        previous, self.last_hello = self.last_hello, hello
        identity = (hello.firmware, hello.schema_hash, hello.channel_count, hello.sample_rate_hz)
        if previous is not None and identity == (
            previous.firmware,
            previous.schema_hash,
            previous.channel_count,
            previous.sample_rate_hz,
        ):
            return
        m = self.channel_map
        if m is not None and hello.schema_hash != m.schema_hash:
            self._emit(
                EVENT_ERROR,
                f"device announces schema {hello.schema_hash:#06x} but channel map "
                f"{m.robot!r} has {m.schema_hash:#06x}; flash matching firmware or use its map",
            )
        else:
            self._emit(
                EVENT_HELLO,
                f"device {hello.firmware or '(unnamed)'}: schema {hello.schema_hash:#06x}, "
                f"{hello.channel_count} channels, {hello.sample_rate_hz} Hz, "
                f"{hello.samples_per_frame} samples/frame",
            )

    def _matches_map(self, frame: Frame) -> bool:
        m = self.channel_map
        if m is None:
            return True
        if (
            frame.schema_hash == m.schema_hash
            and frame.n_channels == m.n_channels
            and frame.n_samples == m.samples_per_frame
        ):
            return True
        with self._lock:
            self._mismatches += 1
        if not self._mismatch_reported:
            self._mismatch_reported = True
            self._emit(
                EVENT_ERROR,
                f"frame seq {frame.seq}: schema {frame.schema_hash:#06x}, "
                f"{frame.n_channels} channels × {frame.n_samples} samples does not match "
                f"channel map {m.robot!r} (schema {m.schema_hash:#06x}, {m.n_channels} × "
                f"{m.samples_per_frame}); frames are dropped until it does",
            )
        return False

    def _deliver(self, frame: Frame) -> None:
        if self._on_frame is not None:
            try:
                self._on_frame(frame)
            except Exception as err:  # a consumer bug must not kill acquisition
                LOG.exception("frame callback failed")
                with self._lock:
                    self._callback_errors += 1
                self._emit(EVENT_ERROR, f"frame callback failed: {err!r}")
                return
        else:
            while True:
                try:
                    self.frames.put_nowait(frame)
                    break
                except queue.Full:
                    with contextlib.suppress(queue.Empty):
                        self.frames.get_nowait()
                    with self._lock:
                        self._dropped += 1
        with self._lock:
            self._delivered += 1

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
            return
        try:
            self.events.put_nowait(event)
        except queue.Full:
            try:
                self.events.get_nowait()
                self.events.put_nowait(event)
            except (queue.Empty, queue.Full):
                pass
