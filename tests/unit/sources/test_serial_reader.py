"""Serial reader against scripted fake ports: reconnects, events, queue, schema checks."""

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
    EVENT_HELLO,
    SerialEvent,
    SerialFrameReader,
    SerialSourceError,
)
from firmware_config.channel_map import ChannelMap
from firmware_config.protocol import Frame, Hello, encode_frame, encode_hello


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


def frame(seq: int, schema: int, n_samples: int = 10) -> Frame:
    return Frame(seq, seq * 10_000, False, 1, schema, np.full((n_samples, 6), seq, np.int16))


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def events_of(reader: SerialFrameReader) -> list[SerialEvent]:
    out = []
    while not reader.events.empty():
        out.append(reader.events.get_nowait())
    return out


def test_reconnects_with_backoff_and_counts_the_gap(six_axis_map: ChannelMap) -> None:
    h = six_axis_map.schema_hash
    first = FakePort(
        [
            b"\0" + encode_frame(frame(0, h)) + encode_frame(frame(1, h))[:30],
            serial.SerialException("device disconnected"),
        ]
    )
    second = FakePort([encode_frame(frame(1, h))[30:] + encode_frame(frame(5, h))])
    reader = SerialFrameReader(
        "/dev/fake",
        channel_map=six_axis_map,
        backoff_initial_s=0.01,
        backoff_max_s=0.04,
        serial_factory=factory([first, OSError("gone"), OSError("gone"), second]),
    )
    with reader:
        wait_for(lambda: reader.stats().decoder.frames_ok == 2)
    frames = reader.drain()
    assert [f.seq for f in frames] == [0, 5]
    stats = reader.stats()
    assert stats.reconnects == 1 and stats.disconnects == 1 and stats.open_failures == 2
    assert stats.decoder.sequence_gaps == 4
    assert stats.decoder.crc_errors == 0  # the tail after the reconnect was skipped, not failed
    kinds = [e.kind for e in events_of(reader)]
    assert kinds == [EVENT_CONNECTED, EVENT_DISCONNECTED, EVENT_ERROR, EVENT_CONNECTED]
    assert first.closed and second.closed
    assert not reader.running


def test_bytes_before_the_first_delimiter_are_skipped_quietly() -> None:
    """A port opened mid-stream starts inside a frame: that tail is no error."""
    wire = encode_frame(frame(0, 7))
    port = FakePort([wire[40:] + encode_frame(frame(1, 7))])
    reader = SerialFrameReader("x", serial_factory=factory([port]))
    with reader:
        wait_for(lambda: reader.stats().frames_delivered == 1)
    stats = reader.stats().decoder
    assert (stats.rejected, stats.resyncs, stats.bytes_discarded) == (0, 1, len(wire) - 41)


def test_schema_mismatch_is_reported_once_and_not_delivered(six_axis_map: ChannelMap) -> None:
    other = (six_axis_map.schema_hash + 1) & 0xFFFF
    good = encode_frame(frame(2, six_axis_map.schema_hash))
    hello = encode_hello(Hello(0, 0, other, 6, 1000, 10, "old fw")) * 3  # repeated: one event
    port = FakePort(
        [b"\0" + hello + encode_frame(frame(0, other)) + encode_frame(frame(1, other)) + good]
    )
    reader = SerialFrameReader("x", channel_map=six_axis_map, serial_factory=factory([port]))
    with reader:
        wait_for(lambda: reader.stats().frames_delivered == 1)
    assert [f.seq for f in reader.drain()] == [2]
    assert reader.stats().schema_mismatches == 2
    errors = [e.message for e in events_of(reader) if e.kind == EVENT_ERROR]
    assert len(errors) == 2
    assert "device announces schema" in errors[0] and "flash matching firmware" in errors[0]
    assert "does not match channel map 'six_axis_arm'" in errors[1]


def test_hello_event_and_callback_delivery(six_axis_map: ChannelMap) -> None:
    h = six_axis_map.schema_hash
    got: list[Frame] = []
    events: list[SerialEvent] = []
    port = FakePort(
        [b"\0" + encode_hello(Hello(0, 0, h, 6, 1000, 10, "fw 2")) + encode_frame(frame(0, h))]
    )
    reader = SerialFrameReader(
        "x",
        channel_map=six_axis_map,
        on_frame=got.append,
        on_event=events.append,
        serial_factory=factory([port]),
    )
    with reader:
        wait_for(lambda: len(got) == 1)
    assert [e.kind for e in events][:2] == [EVENT_CONNECTED, EVENT_HELLO]
    assert "fw 2" in events[1].message
    assert reader.last_hello is not None and reader.last_hello.firmware == "fw 2"
    assert reader.frames.empty()


def test_callback_errors_do_not_stop_the_reader(six_axis_map: ChannelMap) -> None:
    h = six_axis_map.schema_hash
    seen: list[int] = []

    def flaky(f: Frame) -> None:
        seen.append(f.seq)
        if f.seq == 0:
            raise RuntimeError("consumer bug")

    port = FakePort([b"\0" + encode_frame(frame(0, h)), encode_frame(frame(1, h))])
    reader = SerialFrameReader("x", on_frame=flaky, serial_factory=factory([port]))
    with reader:
        wait_for(lambda: len(seen) == 2)
    assert reader.stats().callback_errors == 1
    assert any("consumer bug" in e.message for e in events_of(reader))


def test_full_queue_drops_the_oldest() -> None:
    port = FakePort([b"\0" + b"".join(encode_frame(frame(s, 7)) for s in range(10))])
    reader = SerialFrameReader("x", queue_size=4, serial_factory=factory([port]))
    with reader:
        wait_for(lambda: reader.stats().decoder.frames_ok == 10)
    assert [f.seq for f in reader.drain()] == [6, 7, 8, 9]
    assert reader.stats().frames_dropped == 6


def test_garbage_and_unexpected_errors_never_kill_the_thread() -> None:
    rng = np.random.default_rng(1)
    port = FakePort([rng.bytes(5000), OSError(5, "Input/output error")])
    reader = SerialFrameReader(
        "x", backoff_initial_s=0.01, backoff_max_s=0.02, serial_factory=factory([port])
    )
    reader.start()
    wait_for(lambda: reader.stats().open_failures >= 3)
    assert reader.running
    reader.stop()
    assert not reader.running
    assert reader.stats().bytes_read == 5000


def test_stop_is_prompt_while_waiting_in_backoff() -> None:
    reader = SerialFrameReader(
        "x", backoff_initial_s=30, backoff_max_s=30, serial_factory=factory([])
    )
    reader.start()
    wait_for(lambda: reader.stats().open_failures == 1)
    started = time.monotonic()
    reader.stop()
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": ""}, "serial port is empty"),
        ({"baudrate": 0}, "baudrate = 0"),
        ({"queue_size": 0}, "queue_size = 0"),
        ({"backoff_initial_s": 2.0, "backoff_max_s": 1.0}, "need 0 < initial ≤ max"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any], message: str) -> None:
    arguments = {"port": "/dev/ttyUSB0"} | kwargs
    with pytest.raises(SerialSourceError, match=message):
        SerialFrameReader(**arguments)


def test_loop_url_works_end_to_end(six_axis_map: ChannelMap) -> None:
    """pyserial's loop:// port: what is written is read back, through the real read path."""
    h = six_axis_map.schema_hash
    loop = serial.serial_for_url("loop://", timeout=0.05)
    reader = SerialFrameReader("loop://", serial_factory=lambda *_: loop)
    ready = threading.Event()
    reader._on_event = lambda e: ready.set() if e.kind == EVENT_CONNECTED else None
    with reader:
        assert ready.wait(5)
        loop.write(b"\x00" + encode_frame(frame(0, h)) + encode_frame(frame(1, h)))
        wait_for(lambda: reader.stats().frames_delivered == 2)
    assert [f.seq for f in reader.drain()] == [0, 1]
