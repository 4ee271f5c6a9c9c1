"""The Source contract, checked the same way for every kind on real inputs.

serial over a socat pty fed by the firmware emulator, MQTT frames and MQTT JSON through a real
mosquitto, a replay of a small CSV, the built-in simulator. Every kind must: put chunks of
the right shape and dtype into its ChunkQueue once started; report counters in ``status()``
that are non-negative ints and grow; flag a gap with ``gap_before``; and return promptly from
``stop()``, however often it is called. Tools (socat, mosquitto) are required, not optional.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from agent.sources.base import ChunkQueue, SampleChunk, Source
from agent.sources.mqtt_source import MqttSource
from agent.sources.replay_source import ReplaySource
from agent.sources.serial_source import SerialSource
from agent.sources.simulator_source import SimulatorSource
from firmware_config.channel_map import ChannelMap
from firmware_config.emulator import Emulator, FrameSource, Impairments
from firmware_config.protocol import encode_frame
from firmware_config.simulator import SimulationConfig
from tests.support.broker import MosquittoBroker

KINDS = ("serial", "mqtt-frames", "mqtt-frames-batched", "mqtt-json", "replay", "simulator")
FRAMES_PER_MESSAGE = {"frames": 1, "frames-batched": 10}  # frames in one MQTT payload
TOPIC = "contract/source"
SKIP_EVERY = 25  # the MQTT feeders leave out every 25th sequence number: a gap


@dataclass
class Case:
    """One source under test, the queue it fills, and what to tear down afterwards."""

    source: Source
    queue: ChunkQueue
    n_channels: int
    gap_by_overflow: bool = False  # the simulator never loses data: only the queue can
    cleanup: list[Callable[[], None]] = field(default_factory=list)


class Subscriber:
    """A plain MQTT client whose ``subscribe`` is what the daemon's link hands a source."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="contract-sub")
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()

    def subscribe(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        self._client.message_callback_add(topic, lambda _c, _u, m: handler(m.topic, m.payload))
        self._client.subscribe(topic, qos=0)
        assert self._subscribed.wait(5), "no SUBACK from mosquitto"

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class Feeder:
    """Publishes payloads at ~200/s until closed; ``payload(k)`` builds the k-th one."""

    def __init__(self, broker: MosquittoBroker, payload: Callable[[int], bytes]) -> None:
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="contract-pub")
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self._payload = payload
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(0.005):
            k += 1
            payload = self._payload(k)  # built even when skipped, so the numbering moves on
            if k % SKIP_EVERY:
                self._client.publish(TOPIC, payload, qos=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.disconnect()
        self._client.loop_stop()


def serial_case(request: pytest.FixtureRequest, channel_map: ChannelMap) -> Case:
    pair = request.getfixturevalue("pty_pair")
    queue = ChunkQueue(100_000)
    source = SerialSource(pair.host, 921_600, channel_map, queue)
    impaired = FrameSource(
        SimulationConfig(seed=5, duration_s=None), channel_map, Impairments(drop_rate=0.1, seed=2)
    )
    emulator = Emulator(pair.device, impaired, speed=2.0)
    thread = emulator.start()

    def stop_emulator() -> None:
        emulator.stop_event.set()
        thread.join(5)

    return Case(source, queue, channel_map.n_channels, cleanup=[stop_emulator])


def mqtt_case(request: pytest.FixtureRequest, channel_map: ChannelMap, payload: str) -> Case:
    broker = request.getfixturevalue("broker")
    subscriber = Subscriber(broker)
    queue = ChunkQueue(100_000)
    kind = "json" if payload == "json" else "frames"
    source = MqttSource(TOPIC, kind, channel_map, queue, subscriber.subscribe)
    if kind == "frames":
        frames = FrameSource(SimulationConfig(seed=6, duration_s=None), channel_map).frames()
        per_message = FRAMES_PER_MESSAGE[payload]

        def build(k: int) -> bytes:
            return b"".join(encode_frame(next(frames)) for _ in range(per_message))
    else:
        row = [0.25] * channel_map.n_channels

        def build(k: int) -> bytes:
            return json.dumps({"samples": [row] * 10, "seq": k, "program": 1}).encode()

    case = Case(source, queue, channel_map.n_channels, cleanup=[subscriber.close])
    case.cleanup.insert(0, Feeder(broker, build).close)
    return case


def replay_case(tmp_path: Path) -> Case:
    channels = ("J1", "J2")
    rows = ["J1,J2,seq,cycle_start"]
    for i in range(300):
        seq = i if i < 150 else i + 7  # seven samples missing in the middle
        rows.append(f"{np.sin(i / 10):.4f},{np.cos(i / 10):.4f},{seq},{int(i % 100 == 0)}")
    path = tmp_path / "small.csv"
    path.write_text("\n".join(rows) + "\n")
    queue = ChunkQueue(100_000)
    return Case(ReplaySource.open(path, channels, 1000.0, queue, loop=True), queue, 2)


def simulator_case(channel_map: ChannelMap) -> Case:
    queue = ChunkQueue(50)  # small: left undrained, it overflows and the next chunk is a gap
    source = SimulatorSource(channel_map, queue, seed=4, speed=4.0)
    return Case(source, queue, channel_map.n_channels, gap_by_overflow=True)


@pytest.fixture(params=KINDS)
def case(
    request: pytest.FixtureRequest, six_axis_map: ChannelMap, tmp_path: Path
) -> Iterator[Case]:
    kind = request.param
    if kind == "serial":
        built = serial_case(request, six_axis_map)
    elif kind.startswith("mqtt"):
        built = mqtt_case(request, six_axis_map, kind.removeprefix("mqtt-"))
    elif kind == "replay":
        built = replay_case(tmp_path)
    else:
        built = simulator_case(six_axis_map)
    try:
        yield built
    finally:
        built.source.stop()
        for action in built.cleanup:
            action()


def drain(queue: ChunkQueue) -> list[SampleChunk]:
    out = []
    while (chunk := queue.get(0)) is not None:
        out.append(chunk)
    return out


def collect(
    case: Case, until: Callable[[list[SampleChunk]], bool], timeout: float = 15.0
) -> list[SampleChunk]:
    chunks: list[SampleChunk] = []
    deadline = time.monotonic() + timeout
    while not until(chunks):
        assert time.monotonic() < deadline, f"condition not reached with {len(chunks)} chunks"
        chunks += drain(case.queue)
        time.sleep(0.01)
    return chunks


def test_chunks_of_the_right_shape_land_in_the_queue(case: Case) -> None:
    case.source.start()
    chunks = collect(case, lambda c: len(c) >= 20)
    for chunk in chunks:
        n = chunk.n
        assert n >= 1
        assert chunk.samples.shape == (n, case.n_channels)
        assert chunk.samples.dtype == np.float32
        assert chunk.cycle_start.shape == (n,) and chunk.cycle_start.dtype == bool
        assert chunk.program.shape == (n,) and np.issubdtype(chunk.program.dtype, np.integer)
        assert isinstance(chunk.gap_before, bool)
        assert chunk.seq_first <= chunk.seq_last
        assert chunk.wall_time > 0 and chunk.received_monotonic > 0
    assert len(case.source.channels) == case.n_channels


def test_counters_are_non_negative_ints_and_grow(case: Case) -> None:
    case.source.start()
    collect(case, lambda c: len(c) >= 5)
    before = case.source.status()
    collect(case, lambda c: len(c) >= 20)
    after = case.source.status()
    assert after.counters, "a source reports counters"
    for counters in (before.counters, after.counters):
        assert all(type(v) is int and v >= 0 for v in counters.values()), counters
    assert all(after.counters[k] >= v for k, v in before.counters.items()), "counters only grow"
    assert sum(after.counters.values()) > sum(before.counters.values())
    assert after.kind == case.source.kind


def test_a_gap_is_flagged_with_gap_before(case: Case) -> None:
    case.source.start()
    if case.gap_by_overflow:
        deadline = time.monotonic() + 15
        while not case.queue.stats.dropped:
            assert time.monotonic() < deadline, "the queue never overflowed"
            time.sleep(0.01)
    first = 0 if case.gap_by_overflow else 1  # a fresh start is no gap
    chunks = collect(case, lambda c: any(x.gap_before for x in c[first:]))
    assert case.gap_by_overflow or not chunks[0].gap_before
    if not case.gap_by_overflow:
        counters = case.source.status().counters
        assert counters.get("sequence_gaps", 0) >= 1 or case.source.kind == "replay"


def test_stop_returns_promptly_and_is_idempotent(case: Case) -> None:
    case.source.start()
    collect(case, lambda c: len(c) >= 3)
    for _ in range(2):
        started = time.monotonic()
        case.source.stop()
        assert time.monotonic() - started < 1.0
