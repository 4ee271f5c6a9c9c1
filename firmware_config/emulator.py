"""Firmware emulator: the simulator's frames written to a serial port as the board would.

The streaming core is independent of the transport: :class:`FrameSource` turns a simulation
into wire bytes (with optional line impairments), and :class:`Emulator` paces them onto a
serial device in real time (``speed=1``), faster, or as fast as the port takes them
(``speed=0``). ``rapp-agent demo`` runs an :class:`Emulator` in a thread; ``stop()`` or the
``stop_event`` ends it within one frame period.

Like a real board, the emulator keeps sampling while the cable is out: in paced mode frames
that fall due while the port is unavailable are lost (the receiver sees a sequence gap), and
the port is reopened with capped exponential backoff. On every (re)connect it sends a
delimiter (so the receiver's first frame is clean) and a HELLO, and repeats the HELLO every
``hello_interval_s``.

``frames_per_message`` frames go out in one write, like a board that fills a DMA buffer
before sending: the receiver then gets them in one read (or one MQTT message, for a bridge
that forwards writes), which is what its batch decoding is built for.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import serial

from firmware_config.channel_map import ChannelMap
from firmware_config.errors import FirmwareInputError
from firmware_config.protocol import FRAME_DELIMITER, Frame, Hello, encode_frame, encode_hello
from firmware_config.simulator import SimulationConfig, Simulator, run_to_frames

LOG = logging.getLogger(__name__)
GARBAGE_MAX_BYTES = 32
BITS_PER_BYTE = 8
DEFAULT_BAUDRATE = 921_600
CHUNK_FRAMES = 100  # frames simulated per step of the source
FIRMWARE_ID = "rapp-emu 0.1.0"
# What `rapp-firmware emulate` and benchmarks/streaming.py send per write/message: beyond ~10
# frames the receiver's cost per frame hardly falls (see the streaming benchmark), while each
# frame waits up to a message's span (100 ms at 10 frames of 10 ms) before it is sent.
DEFAULT_FRAMES_PER_MESSAGE = 10


class EmulatorError(FirmwareInputError):
    """The emulator cannot run as configured."""


@dataclass(frozen=True)
class Impairments:
    """Line faults injected per frame, each with its own probability (0–1).

    ``garbage_rate``: 1–32 random bytes (zeros possible) are sent before the frame — it
    usually costs that frame as well, like real line noise. ``bitflip_rate``: one random bit
    of the frame's wire bytes (not its delimiter) is inverted. ``drop_rate``: the frame is not
    sent at all. Decisions come from ``seed``, so a run is repeatable.
    """

    garbage_rate: float = 0.0
    bitflip_rate: float = 0.0
    drop_rate: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("garbage_rate", "bitflip_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise EmulatorError(f"{name} = {value}: must be a probability in [0, 1]")


@dataclass(frozen=True)
class EmulatorStats:
    frames_generated: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0  # by the drop impairment
    frames_lost: int = 0  # fell due while the port was unavailable, or write failed
    garbage_bursts: int = 0
    bitflips: int = 0
    hellos_sent: int = 0
    bytes_written: int = 0
    connects: int = 0
    write_errors: int = 0


@dataclass(frozen=True)
class Packet:
    """What the line carries for one simulated frame (``wire`` is empty if dropped)."""

    frame: Frame
    wire: bytes
    dropped: bool
    garbage: bool
    bitflip: bool


class FrameSource:
    """Simulation → frames → wire bytes with impairments; an endless or finite iterator."""

    def __init__(
        self,
        simulation: SimulationConfig,
        channel_map: ChannelMap,
        impairments: Impairments | None = None,
    ) -> None:
        if simulation.sample_rate_hz != channel_map.sample_rate_hz:
            raise EmulatorError(
                f"simulation rate {simulation.sample_rate_hz} Hz differs from the channel "
                f"map's sample_rate_hz = {channel_map.sample_rate_hz}"
            )
        self.channel_map = channel_map
        self.simulator = Simulator(simulation, channel_map)
        self.impairments = impairments or Impairments()
        self._rng = np.random.default_rng(self.impairments.seed)

    @property
    def frame_period_s(self) -> float:
        return self.channel_map.samples_per_frame / self.channel_map.sample_rate_hz

    def frames(self) -> Iterator[Frame]:
        """Clean frames, in order; stops at the end of the simulation (whole frames only)."""
        per_frame = self.channel_map.samples_per_frame
        total = self.simulator.n_samples
        usable = None if total is None else total - total % per_frame
        position = 0
        while usable is None or position < usable:
            count = CHUNK_FRAMES * per_frame
            if usable is not None:
                count = min(count, usable - position)
            yield from run_to_frames(self.simulator.chunk(position, count), self.channel_map)
            position += count

    def __iter__(self) -> Iterator[Packet]:
        imp = self.impairments
        rng = self._rng
        for frame in self.frames():
            draws = rng.random(3)
            if draws[0] < imp.drop_rate:
                yield Packet(frame, b"", dropped=True, garbage=False, bitflip=False)
                continue
            wire = bytearray(encode_frame(frame))
            bitflip = bool(draws[1] < imp.bitflip_rate)
            if bitflip:
                position = int(rng.integers(0, len(wire) - 1))
                wire[position] ^= 1 << int(rng.integers(0, BITS_PER_BYTE))
            garbage = bool(draws[2] < imp.garbage_rate)
            if garbage:
                size = int(rng.integers(1, GARBAGE_MAX_BYTES + 1))
                wire[0:0] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
            yield Packet(frame, bytes(wire), dropped=False, garbage=garbage, bitflip=bitflip)

    def hello(self, next_seq: int, timestamp_us: int) -> Hello:
        m = self.channel_map
        return Hello(
            seq=next_seq,
            timestamp_us=timestamp_us,
            schema_hash=m.schema_hash,
            channel_count=m.n_channels,
            sample_rate_hz=m.sample_rate_hz,
            samples_per_frame=m.samples_per_frame,
            firmware=FIRMWARE_ID,
        )


SerialFactory = Callable[[str], serial.SerialBase]


@dataclass
class _Message:
    """Wire bytes collected for one write: frames (and HELLOs) in order."""

    data: bytearray = field(default_factory=bytearray)
    slots: int = 0  # frame periods it covers, dropped frames included
    frames: int = 0
    hellos: int = 0

    def add(self, wire: bytes, *, hello: bool) -> None:
        self.data += wire
        self.hellos += int(hello)
        self.frames += int(not hello)


def open_serial(port: str, baudrate: int = DEFAULT_BAUDRATE) -> serial.SerialBase:
    """Open ``port`` (device path or pyserial URL such as ``loop://``) for writing frames."""
    return serial.serial_for_url(port, baudrate=baudrate, timeout=0.1, write_timeout=1.0)


def run_emulator(
    port: str,
    channel_map: ChannelMap,
    simulation: SimulationConfig,
    *,
    speed: float = 1.0,
    impairments: Impairments | None = None,
    stop_event: threading.Event | None = None,
) -> EmulatorStats:
    """Convenience: stream ``simulation`` to ``port`` in the calling thread until done/stopped."""
    source = FrameSource(simulation, channel_map, impairments)
    return Emulator(port, source, speed=speed, stop_event=stop_event).run()


class Emulator:
    """Streams a :class:`FrameSource` to a serial port; run it in a thread or in the foreground.

    ``speed`` is the pace relative to real time (1.0 = real time, 2.0 = twice as fast,
    0 = as fast as the port accepts). ``frames_per_message`` frames (and any HELLO due
    among them) are written at once, when the last of them is due; the first message after a
    connect may be shorter.
    """

    def __init__(
        self,
        port: str,
        source: FrameSource,
        *,
        speed: float = 1.0,
        frames_per_message: int = 1,
        hello_interval_s: float = 1.0,
        reconnect_initial_s: float = 0.05,
        reconnect_max_s: float = 1.0,
        serial_factory: SerialFactory | None = None,
        stop_event: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0:
            raise EmulatorError(f"speed = {speed}: must be ≥ 0 (0 = as fast as possible)")
        if reconnect_initial_s <= 0 or reconnect_max_s < reconnect_initial_s:
            raise EmulatorError("reconnect delays must satisfy 0 < initial ≤ max")
        if frames_per_message < 1:
            raise EmulatorError(f"frames_per_message = {frames_per_message}: must be ≥ 1")
        self.port = port
        self.source = source
        self.speed = speed
        self.frames_per_message = frames_per_message
        self._message = _Message()
        self._hello_every = max(1, round(hello_interval_s / source.frame_period_s))
        self._backoff_initial = reconnect_initial_s
        self._backoff_max = reconnect_max_s
        self._factory = serial_factory or open_serial
        self._stop = stop_event or threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(EmulatorStats.__dataclass_fields__, 0)
        self._thread: threading.Thread | None = None
        self._port: serial.SerialBase | None = None

    @property
    def stop_event(self) -> threading.Event:
        return self._stop

    @property
    def stats(self) -> EmulatorStats:
        with self._lock:
            return EmulatorStats(**self._counts)

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def start(self) -> threading.Thread:
        """Run in a daemon thread; returns it."""
        if self._thread is not None:
            raise EmulatorError("emulator already started")
        self._thread = threading.Thread(target=self.run, name="rapp-emulator", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> EmulatorStats:
        """Stream until the simulation ends or stop is requested; never raises on I/O errors."""
        period = self.source.frame_period_s
        start = self._clock()
        next_attempt = start
        backoff = self._backoff_initial
        try:
            for index, packet in enumerate(self.source):
                if self._stop.is_set():
                    break
                self._count("frames_generated")
                if self.speed > 0:
                    # a board sends a frame once its last sample is taken
                    delay = start + (index + 1) * period / self.speed - self._clock()
                    if delay > 0 and self._stop.wait(delay):
                        break
                while self._port is None:
                    now = self._clock()
                    if now >= next_attempt and self._connect(packet.frame):
                        backoff = self._backoff_initial
                        break
                    if now >= next_attempt:
                        next_attempt = now + backoff
                        backoff = min(backoff * 2, self._backoff_max)
                    if self.speed > 0:
                        break  # paced: the board keeps sampling; this frame is lost
                    if self._stop.wait(max(0.0, next_attempt - self._clock())):
                        return self.stats
                if self._port is None:
                    self._count("frames_lost")
                    continue
                self._send(packet, index)
            self._flush()
        finally:
            self._close()
        return self.stats

    def _connect(self, next_frame: Frame) -> bool:
        try:
            port = self._factory(self.port)
        except (serial.SerialException, OSError, ValueError) as err:
            LOG.debug("emulator cannot open %s: %s", self.port, err)
            return False
        self._port = port
        self._count("connects")
        LOG.info("emulator connected to %s", self.port)
        return self._write(bytes([FRAME_DELIMITER]) + self._hello_bytes(next_frame), hello=True)

    def _hello_bytes(self, next_frame: Frame) -> bytes:
        return encode_hello(self.source.hello(next_frame.seq, next_frame.timestamp_us))

    def _send(self, packet: Packet, index: int) -> None:
        message = self._message
        if index % self._hello_every == 0 and index:
            message.add(self._hello_bytes(packet.frame), hello=True)
        message.slots += 1
        if packet.dropped:
            self._count("frames_dropped")
        else:
            self._count("garbage_bursts", int(packet.garbage))
            self._count("bitflips", int(packet.bitflip))
            message.add(packet.wire, hello=False)
        if message.slots >= self.frames_per_message:
            self._flush()

    def _flush(self) -> None:
        """Write the message collected so far; its frames are sent or lost together."""
        message, self._message = self._message, _Message()
        if not message.data:
            return
        if self._write(bytes(message.data)):
            self._count("frames_sent", message.frames)
            self._count("hellos_sent", message.hellos)
        else:
            self._count("frames_lost", message.frames)

    def _write(self, data: bytes, *, hello: bool = False) -> bool:
        port = self._port
        if port is None:
            return False
        try:
            port.write(data)
        except (serial.SerialTimeoutException, queue.Full):
            # nobody reading (queue.Full comes from pyserial's loop:// port): the bytes are
            # lost, the port is fine
            self._count("write_errors")
            return False
        except (serial.SerialException, OSError) as err:
            LOG.info("emulator lost %s: %s", self.port, err)
            self._count("write_errors")
            self._close()
            return False
        self._count("bytes_written", len(data))
        if hello:
            self._count("hellos_sent")
        return True

    def _close(self) -> None:
        pending, self._message = self._message, _Message()
        self._count("frames_lost", pending.frames)  # collected for a port that is gone
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                LOG.debug("closing %s failed", self.port, exc_info=True)
