"""End to end over a real pty pair: emulator → socat → pyserial reader → FrameStream.

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
from firmware_config.blocks import SampleBlock
from firmware_config.channel_map import ChannelMap
from firmware_config.emulator import Emulator, FrameSource, Impairments
from firmware_config.protocol import Frame
from firmware_config.simulator import SimulationConfig, run_to_frames, simulate
from firmware_config.stream import FrameStream
from tests.support.fixtures.tools import SocatPair


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


class Receiver:
    """The reader wired to a FrameStream as SerialSource wires it (reset on connect)."""

    def __init__(self, pair: SocatPair, channel_map: ChannelMap) -> None:
        self.map = channel_map
        self.stream = FrameStream(channel_map)
        self.blocks: list[SampleBlock] = []
        self.events: list[SerialEvent] = []
        self.reader = SerialFrameReader(
            pair.host,
            self._data,
            on_event=self._event,
            backoff_initial_s=0.02,
            backoff_max_s=0.2,
        )

    def _data(self, data: bytes) -> None:
        self.blocks += self.stream.feed(data)

    def _event(self, event: SerialEvent) -> None:
        self.events.append(event)
        if event.kind == EVENT_CONNECTED:
            self.stream.reset()

    def start(self) -> Receiver:
        self.reader.start()
        wait_until(lambda: self.reader.connected, 5, "reader to open the pty")
        return self

    def is_frame(self, block: SampleBlock, frame: Frame) -> bool:
        """The block carries exactly this frame (converted to physical units)."""
        return (
            block.seq == frame.seq
            and block.timestamp_us == frame.timestamp_us
            and np.array_equal(block.cycle_start, frame.cycle_mask())
            and np.array_equal(block.samples, self.map.to_physical(frame.samples))
        )


def test_real_time_stream_without_loss(pty_pair: SocatPair, six_axis_map: ChannelMap) -> None:
    config = SimulationConfig(seed=11, duration_s=3.0, faults=())
    expected = run_to_frames(simulate(config), six_axis_map)
    rx = Receiver(pty_pair, six_axis_map).start()
    emulator = Emulator(pty_pair.device, FrameSource(config, six_axis_map), speed=1.0)
    started = time.monotonic()
    try:
        emulator.start().join(timeout=15)
        elapsed = time.monotonic() - started
        wait_until(lambda: len(rx.blocks) == len(expected), 5, "all frames")
    finally:
        emulator.stop()
        rx.reader.stop()
    received = rx.blocks
    assert 2.8 <= elapsed <= 6.0, f"3 s of data took {elapsed:.2f} s: not real-time paced"
    # 300 frames × 10 samples × 6 channels, bit-exact
    assert len(received) == len(expected)
    assert all(rx.is_frame(b, f) for b, f in zip(received, expected, strict=True))
    stats = rx.stream.stats
    decoder = stats.decoder
    assert (decoder.frames_ok, stats.sequence.missing_frames, decoder.rejected) == (300, 0, 0)
    assert decoder.hellos >= 3
    assert emulator.stats.frames_sent == 300
    assert [e.kind for e in rx.events][:1] == [EVENT_CONNECTED]


def test_unplug_and_replug(pty_pair: SocatPair, six_axis_map: ChannelMap) -> None:
    config = SimulationConfig(seed=12, duration_s=5.0)
    expected = {f.seq: f for f in run_to_frames(simulate(config), six_axis_map)}
    rx = Receiver(pty_pair, six_axis_map).start()
    reader = rx.reader
    emulator = Emulator(
        pty_pair.device,
        FrameSource(config, six_axis_map),
        speed=1.0,
        reconnect_initial_s=0.02,
        reconnect_max_s=0.1,
    )
    thread = emulator.start()
    try:
        wait_until(lambda: len(rx.blocks) >= 50, 5, "frames before unplug")
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
    blocks = rx.blocks
    seqs = [b.seq for b in blocks]
    jumps = np.diff(seqs)
    assert (jumps >= 1).all()
    missing = int((jumps - 1).sum())
    stats = reader.stats()
    assert stats.reconnects >= 1 and stats.disconnects >= 1
    sequence = rx.stream.stats.sequence
    assert sequence.missing_frames == missing > 0
    assert sequence.gap_events >= 1
    assert seqs[-1] == 499  # the stream resumed and ran to the end
    assert all(rx.is_frame(b, expected[b.seq]) for b in blocks)  # nothing damaged got through
    kinds = [e.kind for e in rx.events]
    first_disconnect = kinds.index(EVENT_DISCONNECTED)
    assert EVENT_CONNECTED in kinds[first_disconnect:]
    assert emulator.stats.frames_lost > 0 and emulator.stats.connects >= 2


def test_impaired_line_via_cli(pty_pair: SocatPair, six_axis_map: ChannelMap) -> None:
    """`rapp-firmware emulate` with garbage, bit flips and drops: only clean frames arrive."""
    config = SimulationConfig(seed=3, duration_s=4.0)
    expected = {f.seq: f for f in run_to_frames(simulate(config), six_axis_map)}
    rx = Receiver(pty_pair, six_axis_map).start()
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
        wait_until(lambda: rx.stream.stats.decoder.frames_ok > 300, 5, "frames")
        time.sleep(0.2)
    finally:
        rx.reader.stop()
    blocks = rx.blocks
    stats = rx.stream.stats
    decoder = stats.decoder
    assert all(rx.is_frame(b, expected[b.seq]) for b in blocks)
    assert decoder.crc_errors + decoder.malformed > 0
    assert stats.sequence.missing_frames > 0
    assert decoder.frames_ok == len(blocks) < 400
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


def test_batched_writes_arrive_as_few_chunks_with_every_sample(
    pty_pair: SocatPair, six_axis_map: ChannelMap
) -> None:
    """Ten frames per write through SerialSource's batch stage: the same samples, bit-exact,
    in far fewer chunks than frames, and the cycle marks where the frames put them."""
    from agent.sources.base import ChunkQueue
    from agent.sources.serial_source import SerialSource

    config = SimulationConfig(seed=13, duration_s=3.0)
    expected = run_to_frames(simulate(config), six_axis_map)
    queue = ChunkQueue(10_000)
    source = SerialSource(pty_pair.host, 921_600, six_axis_map, queue)
    source.start()
    wait_until(lambda: source.status().connected, 5, "source to open the pty")
    emulator = Emulator(
        pty_pair.device, FrameSource(config, six_axis_map), speed=2.0, frames_per_message=10
    )
    chunks = []
    try:
        emulator.start().join(timeout=15)
        deadline = time.monotonic() + 5
        while sum(c.n for c in chunks) < 3000 and time.monotonic() < deadline:
            while (chunk := queue.get(0.05)) is not None:
                chunks.append(chunk)
    finally:
        emulator.stop()
        source.stop()
    samples = np.concatenate([c.samples for c in chunks])
    want = np.concatenate([six_axis_map.to_physical(f.samples) for f in expected])
    np.testing.assert_array_equal(samples, want)
    marks = np.concatenate([c.cycle_start for c in chunks])
    np.testing.assert_array_equal(marks, np.concatenate([f.cycle_mask() for f in expected]))
    assert len(chunks) <= 300 / 5, f"{len(chunks)} chunks for 300 frames written 10 at a time"
    assert not any(c.gap_before for c in chunks[1:])
    assert (chunks[0].seq_first, chunks[-1].seq_last) == (1, 300)
    counters = source.status().counters
    assert (counters["frames_ok"], counters["sequence_gaps"], counters["crc_errors"]) == (300, 0, 0)
