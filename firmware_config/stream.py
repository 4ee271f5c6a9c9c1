"""One framed byte stream (a serial port, MQTT frame payloads) → sample blocks of one robot.

:class:`FrameStream` is the whole receive path of the wire format, in the order it must run:

1. COBS/CRC decoding (:class:`~firmware_config.decoder.FrameDecoder`, bounded to the map's
   largest frame);
2. HELLO handling: a device is reported once per connection, and again only if it changes;
3. the channel-map check: a frame whose schema hash, channel count or samples per frame
   differ from the map is counted in ``schema_mismatches``, reported once per connection and
   never delivered (its samples would be scored as the wrong channels);
4. sequence tracking (:class:`~firmware_config.sequence.SequenceTracker`) over the frames
   that are delivered, so a dropped frame shows up as a gap like a lost one;
5. conversion to physical units (:class:`~firmware_config.blocks.FrameAssembler`).

It never raises on input bytes. Reports go to ``on_notice`` (HELLOs as ``hello``, problems
as ``error``); call :meth:`FrameStream.reset` after a reconnect. Not thread-safe: one stream
per byte source, driven by one thread. :class:`BatchFrameStream` runs the same steps on
everything one read completed at once and returns one :class:`SampleBatch`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from firmware_config.batch_decoder import BatchDecoder, FrameShape
from firmware_config.blocks import FrameAssembler, SampleBatch, SampleBlock
from firmware_config.channel_map import ChannelMap
from firmware_config.decoder import DecoderStats, FrameDecoder
from firmware_config.protocol import Frame, Hello, wire_frame_size_max
from firmware_config.sequence import SequenceStats, SequenceTracker

NOTICE_HELLO = "hello"
NOTICE_ERROR = "error"
FRAME_SLACK_BYTES = 64  # decoder buffer beyond the largest frame of the map


@dataclass(frozen=True)
class StreamNotice:
    """Something worth telling the operator; ``kind`` is :data:`NOTICE_HELLO` or
    :data:`NOTICE_ERROR`."""

    kind: str
    message: str


@dataclass(frozen=True)
class StreamStats:
    """Counters of one stream (a snapshot; every field only ever grows).

    ``decoder.frames_ok`` counts every intact DATA frame; ``frames_delivered`` those that
    matched the channel map and became blocks (``frames_ok - schema_mismatches``).
    """

    decoder: DecoderStats
    sequence: SequenceStats
    schema_mismatches: int = 0
    frames_delivered: int = 0


class StreamReporter:
    """What a stream tells the operator: the device (once per connection and on change) and
    the first frame that does not match the channel map (once per connection)."""

    def __init__(
        self, channel_map: ChannelMap, on_notice: Callable[[StreamNotice], None] | None
    ) -> None:
        self._map = channel_map
        self._on_notice = on_notice
        self.hello: Hello | None = None  # the device of the current connection
        self._mismatch_reported = False

    def reset(self) -> None:
        self.hello = None
        self._mismatch_reported = False

    def on_hello(self, hello: Hello) -> None:
        previous, self.hello = self.hello, hello
        if previous is not None and _identity(previous) == _identity(hello):
            return  # HELLOs repeat every second or so
        m = self._map
        if hello.schema_hash != m.schema_hash:
            self._notify(
                NOTICE_ERROR,
                f"device announces schema {hello.schema_hash:#06x} but channel map "
                f"{m.robot!r} has {m.schema_hash:#06x}; flash matching firmware or use its map",
            )
        else:
            self._notify(
                NOTICE_HELLO,
                f"device {hello.firmware or '(unnamed)'}: schema {hello.schema_hash:#06x}, "
                f"{hello.channel_count} channels, {hello.sample_rate_hz} Hz, "
                f"{hello.samples_per_frame} samples/frame",
            )

    def on_mismatch(self, frame: Frame) -> None:
        if self._mismatch_reported:
            return
        self._mismatch_reported = True
        m = self._map
        self._notify(
            NOTICE_ERROR,
            f"frame seq {frame.seq}: schema {frame.schema_hash:#06x}, "
            f"{frame.n_channels} channels × {frame.n_samples} samples does not match "
            f"channel map {m.robot!r} (schema {m.schema_hash:#06x}, {m.n_channels} × "
            f"{m.samples_per_frame}); frames are dropped until it does",
        )

    def _notify(self, kind: str, message: str) -> None:
        if self._on_notice is not None:
            self._on_notice(StreamNotice(kind, message))


class FrameStream:
    """Feed bytes as they arrive; get back the :class:`SampleBlock` they completed.

    The reference receive path, one object per frame; :class:`BatchFrameStream` is the same
    path for a whole read at once.
    """

    def __init__(
        self, channel_map: ChannelMap, on_notice: Callable[[StreamNotice], None] | None = None
    ) -> None:
        self._map = channel_map
        largest = wire_frame_size_max(channel_map.n_channels, channel_map.samples_per_frame)
        self._decoder = FrameDecoder(max_frame_bytes=largest + FRAME_SLACK_BYTES)
        self._sequence = SequenceTracker()
        self._assembler = FrameAssembler(channel_map)
        self._reporter = StreamReporter(channel_map, on_notice)
        self._hellos_seen = 0
        self._mismatches = 0
        self._delivered = 0

    @property
    def stats(self) -> StreamStats:
        return StreamStats(
            decoder=self._decoder.stats,
            sequence=self._sequence.stats,
            schema_mismatches=self._mismatches,
            frames_delivered=self._delivered,
        )

    @property
    def last_hello(self) -> Hello | None:
        """The HELLO last seen on the current connection."""
        return self._reporter.hello

    def feed(self, data: bytes | bytearray | memoryview) -> list[SampleBlock]:
        frames = self._decoder.feed(data)
        hellos = self._decoder.stats.hellos
        if hellos != self._hellos_seen and self._decoder.last_hello is not None:
            self._hellos_seen = hellos
            self._reporter.on_hello(self._decoder.last_hello)
        blocks = []
        for frame in frames:
            if self._matches_map(frame):
                self._delivered += 1
                step = self._sequence.observe(frame.seq)
                blocks.append(self._assembler.convert(frame, step))
        return blocks

    def reset(self) -> None:
        """The byte stream was interrupted (port reopened): skip the tail of a frame, mark the
        next block as following a gap, and report the device and any mismatch again."""
        self._decoder.resync()
        self._sequence.interrupt()
        self._assembler.reset()
        self._reporter.reset()

    def _matches_map(self, frame: Frame) -> bool:
        m = self._map
        if (
            frame.schema_hash == m.schema_hash
            and frame.n_channels == m.n_channels
            and frame.n_samples == m.samples_per_frame
        ):
            return True
        self._mismatches += 1
        self._reporter.on_mismatch(frame)
        return False


class BatchFrameStream:
    """:class:`FrameStream` for whole reads: each ``feed`` returns one :class:`SampleBatch`.

    Same steps, counters and notices; the frames of the channel map's shape are decoded,
    tracked and converted as arrays (:class:`~firmware_config.batch_decoder.BatchDecoder`,
    :meth:`SequenceTracker.observe_many`, :meth:`FrameAssembler.convert_batch`), so the cost
    per read hardly grows with the frames it holds.
    """

    def __init__(
        self, channel_map: ChannelMap, on_notice: Callable[[StreamNotice], None] | None = None
    ) -> None:
        largest = wire_frame_size_max(channel_map.n_channels, channel_map.samples_per_frame)
        shape = FrameShape(
            channel_map.n_channels, channel_map.samples_per_frame, channel_map.schema_hash
        )
        self._decoder = BatchDecoder(shape, max_frame_bytes=largest + FRAME_SLACK_BYTES)
        self._sequence = SequenceTracker()
        self._assembler = FrameAssembler(channel_map)
        self._reporter = StreamReporter(channel_map, on_notice)
        self._hellos_seen = 0
        self._mismatches = 0
        self._delivered = 0

    @property
    def stats(self) -> StreamStats:
        return StreamStats(
            decoder=self._decoder.stats,
            sequence=self._sequence.stats,
            schema_mismatches=self._mismatches,
            frames_delivered=self._delivered,
        )

    @property
    def last_hello(self) -> Hello | None:
        """The HELLO last seen on the current connection."""
        return self._reporter.hello

    def feed(self, data: bytes | bytearray | memoryview) -> SampleBatch | None:
        """The frames ``data`` completed that match the map, or None if there are none."""
        decoded = self._decoder.feed(data)
        if decoded is None:
            return None
        hellos = self._decoder.hellos
        if hellos != self._hellos_seen and self._decoder.last_hello is not None:
            self._hellos_seen = hellos
            self._reporter.on_hello(self._decoder.last_hello)
        for frame in decoded.foreign:
            self._mismatches += 1
            self._reporter.on_mismatch(frame)
        accepted = decoded.accepted
        if not len(accepted):
            return None
        self._delivered += len(accepted)
        steps = self._sequence.observe_many(accepted["seq"])
        return self._assembler.convert_batch(accepted, steps)

    def reset(self) -> None:
        """As :meth:`FrameStream.reset`."""
        self._decoder.resync()
        self._sequence.interrupt()
        self._assembler.reset()
        self._reporter.reset()


def _identity(hello: Hello) -> tuple[str, int, int, int]:
    return (hello.firmware, hello.schema_hash, hello.channel_count, hello.sample_rate_hz)
