"""Serial port reader against scripted fake ports: reconnects, events, callbacks.

The reader only hands on bytes; :class:`Line` wires it to a FrameStream the way
SerialSource wires it to the framed input (reset on every ``connected`` event), so the
frame-level assertions run on the real receive path.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import serial

from agent.sources.serial_reader import (
    EVENT_CONNECTED,
    EVENT_DISCONNECTED,
    EVENT_ERROR,
    SerialEvent,
    SerialFrameReader,
    SerialSourceError,
)
from firmware_config.blocks import SampleBlock
from firmware_config.channel_map import ChannelMap, load_builtin_map
from firmware_config.protocol import Frame, Hello, encode_frame, encode_hello
from firmware_config.stream import NOTICE_HELLO, FrameStream, StreamNotice


class FakePort:
    """Serves scripted reads; an exception in the script is raised by read()."""

    def __init__(self, script: list[bytes | Exception]) -> None:
        self.script = list(script)
        self.closed = False

    @property
    def in_waiting(self) -> int:
        return 0

    def read(self, size: int = 1) -> bytes:
        if not self.script:
            time.sleep(0.01)
            return b""
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.closed = True


def factory(opens: list[FakePort | Exception]) -> Callable[[str, int, float], Any]:
    attempts = iter(opens)

    def open_port(port: str, baudrate: int, timeout: float) -> Any:
        item = next(attempts, serial.SerialException("no such device"))
        if isinstance(item, Exception):
            raise item
        return item

    return open_port


class Line:
    """Reader → FrameStream, recording blocks, reader events and stream notices in order."""

    def __init__(self, channel_map: ChannelMap | None = None, **reader_options: Any) -> None:
        self.stream = FrameStream(channel_map or load_builtin_map(), on_notice=self._notice)
        self.blocks: list[SampleBlock] = []
        self.log: list[tuple[str, str]] = []  # (kind, message) of events and notices
        self.connected = threading.Event()
        self.reader = SerialFrameReader(
            reader_options.pop("port", "x"),
            self._data,
            on_event=self._event,
            **reader_options,
        )

    def _data(self, data: bytes) -> None:
        self.blocks += self.stream.feed(data)

    def _event(self, event: SerialEvent) -> None:
        self.log.append((event.kind, event.message))
        if event.kind == EVENT_CONNECTED:
            self.stream.reset()
            self.connected.set()

    def _notice(self, notice: StreamNotice) -> None:
        self.log.append((notice.kind, notice.message))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.log]

    def __enter__(self) -> Line:
        self.reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.stop()


def frame(seq: int, schema: int, n_samples: int = 10) -> Frame:
    return Frame(seq, seq * 10_000, False, 1, schema, np.full((n_samples, 6), seq, np.int16))


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_reconnects_with_backoff_and_counts_the_gap(six_axis_map: ChannelMap) -> None:
    h = six_axis_map.schema_hash
    first = FakePort(
        [
            b"\0" + encode_frame(frame(0, h)) + encode_frame(frame(1, h))[:30],
            serial.SerialException("device disconnected"),
        ]
    )
    second = FakePort([encode_frame(frame(1, h))[30:] + encode_frame(frame(5, h))])
    line = Line(
        six_axis_map,
        port="/dev/fake",
        backoff_initial_s=0.01,
        backoff_max_s=0.04,
        serial_factory=factory([first, OSError("gone"), OSError("gone"), second]),
    )
    with line:
        wait_for(lambda: line.stream.stats.decoder.frames_ok == 2)
    reader = line.reader
    assert [b.seq for b in line.blocks] == [0, 5]
    stats = reader.stats()
    assert stats.reconnects == 1 and stats.disconnects == 1 and stats.open_failures == 2
    assert line.stream.stats.sequence.missing_frames == 4
    assert line.blocks[1].gap_before and line.blocks[1].missing_frames == 4
    # the tail after the reconnect was skipped, not failed
    assert line.stream.stats.decoder.crc_errors == 0
    assert line.kinds() == [EVENT_CONNECTED, EVENT_DISCONNECTED, EVENT_ERROR, EVENT_CONNECTED]
    assert first.closed and second.closed
    assert not reader.running


def test_bytes_before_the_first_delimiter_are_skipped_quietly() -> None:
    """A port opened mid-stream starts inside a frame: that tail is no error."""
    h = load_builtin_map().schema_hash
    wire = encode_frame(frame(0, h))
    port = FakePort([wire[40:] + encode_frame(frame(1, h))])
    line = Line(serial_factory=factory([port]))
    with line:
        wait_for(lambda: len(line.blocks) == 1)
    stats = line.stream.stats.decoder
    assert (stats.rejected, stats.resyncs, stats.bytes_discarded) == (0, 1, len(wire) - 41)


def test_schema_mismatch_is_reported_once_and_not_delivered(six_axis_map: ChannelMap) -> None:
    other = (six_axis_map.schema_hash + 1) & 0xFFFF
    good = encode_frame(frame(2, six_axis_map.schema_hash))
    hello = encode_hello(Hello(0, 0, other, 6, 1000, 10, "old fw")) * 3  # repeated: one event
    port = FakePort(
        [b"\0" + hello + encode_frame(frame(0, other)) + encode_frame(frame(1, other)) + good]
    )
    line = Line(six_axis_map, serial_factory=factory([port]))
    with line:
        wait_for(lambda: len(line.blocks) == 1)
    assert [b.seq for b in line.blocks] == [2]
    assert line.stream.stats.schema_mismatches == 2
    errors = [message for kind, message in line.log if kind == EVENT_ERROR]
    assert len(errors) == 2
    assert "device announces schema" in errors[0] and "flash matching firmware" in errors[0]
    assert "does not match channel map 'six_axis_arm'" in errors[1]


def test_hello_event_and_callback_delivery(six_axis_map: ChannelMap) -> None:
    h = six_axis_map.schema_hash
    port = FakePort(
        [b"\0" + encode_hello(Hello(0, 0, h, 6, 1000, 10, "fw 2")) + encode_frame(frame(0, h))]
    )
    line = Line(six_axis_map, serial_factory=factory([port]))
    with line:
        wait_for(lambda: len(line.blocks) == 1)
    assert line.kinds()[:2] == [EVENT_CONNECTED, NOTICE_HELLO]
    assert "fw 2" in line.log[1][1]
    hello = line.stream.last_hello
    assert hello is not None and hello.firmware == "fw 2"
    assert line.reader.stats().bytes_read > 0


def test_callback_errors_do_not_stop_the_reader() -> None:
    h = load_builtin_map().schema_hash
    seen: list[bytes] = []
    events: list[SerialEvent] = []

    def flaky(data: bytes) -> None:
        seen.append(data)
        if len(seen) == 1:
            raise RuntimeError("consumer bug")

    port = FakePort([b"\0" + encode_frame(frame(0, h)), encode_frame(frame(1, h))])
    reader = SerialFrameReader("x", flaky, on_event=events.append, serial_factory=factory([port]))
    with reader:
        wait_for(lambda: len(seen) == 2)
    assert reader.stats().callback_errors == 1
    assert any("consumer bug" in e.message for e in events)


def test_garbage_and_unexpected_errors_never_kill_the_thread() -> None:
    rng = np.random.default_rng(1)
    port = FakePort([rng.bytes(5000), OSError(5, "Input/output error")])
    line = Line(backoff_initial_s=0.01, backoff_max_s=0.02, serial_factory=factory([port]))
    reader = line.reader
    reader.start()
    wait_for(lambda: reader.stats().open_failures >= 3)
    assert reader.running
    reader.stop()
    assert not reader.running
    assert reader.stats().bytes_read == 5000


def test_stop_is_prompt_while_waiting_in_backoff() -> None:
    reader = SerialFrameReader(
        "x", lambda _: None, backoff_initial_s=30, backoff_max_s=30, serial_factory=factory([])
    )
    reader.start()
    wait_for(lambda: reader.stats().open_failures == 1)
    started = time.monotonic()
    reader.stop()
    assert time.monotonic() - started < 1.0
    reader.stop()  # idempotent


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": ""}, "serial port is empty"),
        ({"baudrate": 0}, "baudrate = 0"),
        ({"backoff_initial_s": 2.0, "backoff_max_s": 1.0}, "need 0 < initial ≤ max"),
        ({"read_timeout_s": 0}, "read_timeout_s = 0"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    arguments = {"port": "/dev/ttyUSB0", "on_data": lambda _: None} | kwargs
    with pytest.raises(SerialSourceError, match=message):
        SerialFrameReader(**arguments)


def test_loop_url_works_end_to_end(six_axis_map: ChannelMap) -> None:
    """pyserial's loop:// port: what is written is read back, through the real read path."""
    h = six_axis_map.schema_hash
    loop = serial.serial_for_url("loop://", timeout=0.05)
    line = Line(six_axis_map, port="loop://", serial_factory=lambda *_: loop)
    with line:
        assert line.connected.wait(5)
        loop.write(b"\x00" + encode_frame(frame(0, h)) + encode_frame(frame(1, h)))
        wait_for(lambda: len(line.blocks) == 2)
    assert [b.seq for b in line.blocks] == [0, 1]
