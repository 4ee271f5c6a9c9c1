"""Emulator core without a real port: impairments, pacing modes and port loss."""

from __future__ import annotations

from typing import Any

import pytest
import serial

from firmware_config.channel_map import ChannelMap
from firmware_config.decoder import FrameDecoder
from firmware_config.emulator import (
    Emulator,
    EmulatorError,
    FrameSource,
    Impairments,
    run_emulator,
)
from firmware_config.simulator import SimulationConfig, run_to_frames, simulate


class Sink:
    """A port that stores what is written; it can be told to fail."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.data = bytearray()
        self.writes = 0
        self.fail_after = fail_after

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.fail_after is not None and self.writes > self.fail_after:
            raise serial.SerialException("write failed: [Errno 5] Input/output error")
        self.data += data
        return len(data)

    def close(self) -> None:
        pass


def test_impairments_are_counted_and_only_clean_frames_decode(six_axis_map: ChannelMap) -> None:
    config = SimulationConfig(seed=4, duration_s=20)
    impairments = Impairments(garbage_rate=0.1, bitflip_rate=0.1, drop_rate=0.1, seed=9)
    sink = Sink()
    emulator = Emulator(
        "x", FrameSource(config, six_axis_map, impairments), speed=0, serial_factory=lambda _: sink
    )
    stats = emulator.run()
    assert stats.frames_generated == 2000
    assert stats.frames_sent + stats.frames_dropped == 2000
    assert 150 < stats.frames_dropped < 250 and 150 < stats.bitflips < 250
    assert 150 < stats.garbage_bursts < 250
    decoder = FrameDecoder()
    frames = decoder.feed(bytes(sink.data))
    clean = {f.seq: f for f in run_to_frames(simulate(config), six_axis_map)}
    assert all(f == clean[f.seq] for f in frames)
    assert 1300 < len(frames) < stats.frames_sent
    again = Sink()
    Emulator(
        "x", FrameSource(config, six_axis_map, impairments), speed=0, serial_factory=lambda _: again
    ).run()
    assert again.data == sink.data  # repeatable


def test_paced_emulator_loses_frames_while_the_port_is_gone(six_axis_map: ChannelMap) -> None:
    sinks = [Sink(fail_after=5), Sink()]
    opens: list[Any] = [sinks[0], OSError("gone"), sinks[1]]

    def factory(_: str) -> Any:
        item = opens.pop(0) if opens else serial.SerialException("gone")
        if isinstance(item, Exception):
            raise item
        return item

    emulator = Emulator(
        "x",
        FrameSource(SimulationConfig(duration_s=0.5), six_axis_map),
        speed=20.0,
        reconnect_initial_s=0.001,
        serial_factory=factory,
    )
    stats = emulator.run()
    assert stats.connects == 2 and stats.write_errors == 1
    assert stats.frames_lost >= 1
    assert stats.frames_sent + stats.frames_lost == 50
    frames = FrameDecoder().feed(bytes(sinks[0].data) + bytes(sinks[1].data))
    assert len(frames) == stats.frames_sent


def test_rate_mismatch_and_bad_rates_are_rejected(six_axis_map: ChannelMap) -> None:
    with pytest.raises(EmulatorError, match="differs from the channel map's sample_rate_hz"):
        FrameSource(SimulationConfig(sample_rate_hz=2000), six_axis_map)
    with pytest.raises(EmulatorError, match=r"drop_rate = 1\.5"):
        Impairments(drop_rate=1.5)


def test_loop_port_overflow_is_a_write_error_not_a_crash(six_axis_map: ChannelMap) -> None:
    """pyserial's loop:// raises queue.Full when its 4 KiB buffer is full and nobody reads."""
    source = FrameSource(SimulationConfig(duration_s=0.5), six_axis_map)
    emulator = Emulator(
        "loop://",
        source,
        speed=0,
        serial_factory=lambda url: serial.serial_for_url(url, write_timeout=0.01),
    )
    stats = emulator.run()
    assert stats.frames_generated == 50
    assert stats.write_errors > 0 and stats.frames_sent + stats.frames_lost == 50


def test_run_emulator_convenience(six_axis_map: ChannelMap) -> None:
    stats = run_emulator("loop://", six_axis_map, SimulationConfig(duration_s=0.2), speed=0)
    assert (stats.frames_sent, stats.connects, stats.hellos_sent) == (20, 1, 1)


def test_frames_per_message_writes_several_frames_at_once(six_axis_map: ChannelMap) -> None:
    config = SimulationConfig(seed=4, duration_s=2.05)  # 205 frames: the last message is short
    sink = Sink()
    emulator = Emulator(
        "x",
        FrameSource(config, six_axis_map, Impairments(drop_rate=0.1, seed=1)),
        speed=0,
        frames_per_message=10,
        serial_factory=lambda _: sink,
    )
    stats = emulator.run()
    assert sink.writes == 1 + 21  # the connect's delimiter + HELLO, then 21 messages
    assert stats.frames_sent + stats.frames_dropped == stats.frames_generated == 205
    assert stats.hellos_sent == 3  # on connect, then every 100 frames
    frames = FrameDecoder().feed(bytes(sink.data))
    clean = {f.seq: f for f in run_to_frames(simulate(config), six_axis_map)}
    assert len(frames) == stats.frames_sent and all(f == clean[f.seq] for f in frames)
    with pytest.raises(EmulatorError, match="frames_per_message"):
        Emulator("x", FrameSource(config, six_axis_map), frames_per_message=0)


def test_a_failed_message_loses_all_its_frames(six_axis_map: ChannelMap) -> None:
    config = SimulationConfig(seed=4, duration_s=1.0)
    sink = Sink()
    write = sink.write

    def fourth_write_fails(data: bytes) -> int:
        if sink.writes == 3:  # connect, two messages, then one failed write
            sink.writes += 1
            raise serial.SerialException("write failed: [Errno 5] Input/output error")
        return write(data)

    sink.write = fourth_write_fails  # type: ignore[method-assign]
    emulator = Emulator(
        "x",
        FrameSource(config, six_axis_map),
        speed=0,
        frames_per_message=5,
        reconnect_initial_s=0.01,
        reconnect_max_s=0.01,
        serial_factory=lambda _: sink,
    )
    stats = emulator.run()
    assert stats.write_errors == 1 and stats.connects == 2
    assert stats.frames_lost == 5  # the failed message's frames, no more
    assert stats.frames_sent == 95
