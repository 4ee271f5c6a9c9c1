"""End to end over a real pty pair: emulator → socat → pyserial reader → decoder.

socat plays the USB cable: stopping it unplugs both ends, restarting it at the same link
paths plugs them back in. These tests need socat and fail (not skip) without it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np

from agent.sources.serial_reader import (
    EVENT_CONNECTED,
    EVENT_DISCONNECTED,
    SerialEvent,
    SerialFrameReader,
)
from firmware_config.channel_map import ChannelMap
from firmware_config.emulator import Emulator, FrameSource, Impairments
from firmware_config.protocol import Frame
from firmware_config.simulator import SimulationConfig, run_to_frames, simulate
from tests.support.fixtures.tools import SocatPair


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def start_reader(
    pair: SocatPair, channel_map: ChannelMap, events: list[SerialEvent]
) -> SerialFrameReader:
    reader = SerialFrameReader(
        pair.host,
        channel_map=channel_map,
        on_event=events.append,
        backoff_initial_s=0.02,
        backoff_max_s=0.2,
        queue_size=100_000,
    )
    reader.start()
    wait_until(lambda: reader.connected, 5, "reader to open the pty")
    return reader


def test_real_time_stream_without_loss(pty_pair: SocatPair, six_axis_map: ChannelMap) -> None:
    config = SimulationConfig(seed=11, duration_s=3.0, faults=())
    expected = run_to_frames(simulate(config), six_axis_map)
    events: list[SerialEvent] = []
    reader = start_reader(pty_pair, six_axis_map, events)
    emulator = Emulator(pty_pair.device, FrameSource(config, six_axis_map), speed=1.0)
    started = time.monotonic()
    try:
        emulator.start().join(timeout=15)
        elapsed = time.monotonic() - started
        wait_until(lambda: reader.stats().frames_delivered == len(expected), 5, "all frames")
    finally:
        emulator.stop()
        reader.stop()
    received = reader.drain()
    assert 2.8 <= elapsed <= 6.0, f"3 s of data took {elapsed:.2f} s: not real-time paced"
    assert received == expected  # 300 frames × 10 samples × 6 channels, bit-exact
    stats = reader.stats()
    decoder = stats.decoder
    assert (decoder.frames_ok, decoder.sequence_gaps, decoder.rejected) == (300, 0, 0)
    assert decoder.hellos >= 3
    assert emulator.stats.frames_sent == 300
    assert [e.kind for e in events][:1] == [EVENT_CONNECTED]


def test_unplug_and_replug(pty_pair: SocatPair, six_axis_map: ChannelMap) -> None:
    config = SimulationConfig(seed=12, duration_s=5.0)
    expected = {f.seq: f for f in run_to_frames(simulate(config), six_axis_map)}
    events: list[SerialEvent] = []
    reader = start_reader(pty_pair, six_axis_map, events)
    emulator = Emulator(
        pty_pair.device,
        FrameSource(config, six_axis_map),
        speed=1.0,
        reconnect_initial_s=0.02,
        reconnect_max_s=0.1,
    )
    thread = emulator.start()
    try:
        wait_until(lambda: reader.stats().frames_delivered >= 50, 5, "frames before unplug")
        pty_pair.stop()  # cable out
        wait_until(lambda: not reader.connected, 5, "reader to notice the unplug")
        time.sleep(0.5)
        pty_pair.start()  # cable back in, same device paths
        wait_until(lambda: reader.stats().reconnects >= 1, 5, "reader to reconnect")
        thread.join(timeout=15)
        assert not thread.is_alive()
        time.sleep(0.3)
    finally:
        emulator.stop()
        reader.stop()
    frames: list[Frame] = reader.drain()
    seqs = [f.seq for f in frames]
    jumps = np.diff(seqs)
    assert (jumps >= 1).all()
    missing = int((jumps - 1).sum())
    stats = reader.stats()
    assert stats.reconnects >= 1 and stats.disconnects >= 1
    assert stats.decoder.sequence_gaps == missing > 0
    assert stats.decoder.gap_events >= 1
    assert seqs[-1] == 499  # the stream resumed and ran to the end
    assert all(f == expected[f.seq] for f in frames)  # nothing damaged got through
    kinds = [e.kind for e in events]
    first_disconnect = kinds.index(EVENT_DISCONNECTED)
    assert EVENT_CONNECTED in kinds[first_disconnect:]
    assert emulator.stats.frames_lost > 0 and emulator.stats.connects >= 2


def test_impaired_line_via_cli(pty_pair: SocatPair, six_axis_map: ChannelMap) -> None:
    """`rapp-firmware emulate` with garbage, bit flips and drops: only clean frames arrive."""
    config = SimulationConfig(seed=3, duration_s=4.0)
    expected = {f.seq: f for f in run_to_frames(simulate(config), six_axis_map)}
    events: list[SerialEvent] = []
    reader = start_reader(pty_pair, six_axis_map, events)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "firmware_config.cli",
                "emulate",
                "--port",
                pty_pair.device,
                "--duration",
                "4",
                "--seed",
                "3",
                "--speed",
                "4",
                "--garbage",
                "0.05",
                "--bitflip",
                "0.05",
                "--drop",
                "0.05",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        wait_until(lambda: reader.stats().decoder.frames_ok > 300, 5, "frames")
        time.sleep(0.2)
    finally:
        reader.stop()
    frames = reader.drain()
    decoder = reader.stats().decoder
    assert all(f == expected[f.seq] for f in frames)
    assert decoder.crc_errors + decoder.malformed > 0
    assert decoder.sequence_gaps > 0
    assert decoder.frames_ok == len(frames) < 400
    assert "emulator finished" in result.stderr


def test_emulator_stops_promptly_from_another_thread(
    pty_pair: SocatPair, six_axis_map: ChannelMap
) -> None:
    stop = threading.Event()
    emulator = Emulator(
        pty_pair.device,
        FrameSource(SimulationConfig(duration_s=None), six_axis_map, Impairments()),
        stop_event=stop,
    )
    thread = emulator.start()
    time.sleep(0.3)
    stop.set()
    thread.join(timeout=1.0)
    assert not thread.is_alive()
    assert emulator.stats.frames_sent > 10
