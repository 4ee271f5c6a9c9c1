"""The framed-input stage and the JSON payload stage, as the MQTT source drives them."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import numpy as np
import pytest

from agent.sources.base import ChunkQueue, SampleChunk
from agent.sources.framed import FramedInput
from agent.sources.mqtt_source import MqttSource
from firmware_config.channel_map import ChannelMap
from firmware_config.protocol import Frame, encode_frame

Handler = Callable[[str, bytes], None]


def frame(seq: int, schema: int, channels: int = 6) -> Frame:
    return Frame(seq, seq * 10_000, False, 2, schema, np.full((10, channels), seq % 1000, np.int16))


def drain(queue: ChunkQueue) -> list[SampleChunk]:
    out = []
    while (chunk := queue.get(0)) is not None:
        out.append(chunk)
    return out


class FakeBroker:
    """Stands in for MqttLink.subscribe: remembers the handler so tests can deliver."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}

    def subscribe(self, topic: str, handler: Handler) -> None:
        self.handlers[topic] = handler

    def deliver(self, topic: str, payload: bytes) -> None:
        self.handlers[topic](topic, payload)


def mqtt_source(channel_map: ChannelMap, payload: str) -> tuple[MqttSource, FakeBroker]:
    broker = FakeBroker()
    source = MqttSource("t", payload, channel_map, ChunkQueue(10_000), broker.subscribe)
    source.start()
    return source, broker


def feed_wraparound_gap_and_reconnect(framed: FramedInput, schema: int) -> None:
    framed.feed(b"".join(encode_frame(frame(s, schema)) for s in (65534, 65535, 0, 3)))
    framed.reset()  # reconnect: the next chunk follows a gap even without missing frames
    framed.feed(b"\0" + encode_frame(frame(4, schema)))


def test_framed_input_numbers_chunks_and_flags_gaps(six_axis_map: ChannelMap) -> None:
    """The reference path: one chunk per frame."""
    queue = ChunkQueue(100)
    framed = FramedInput(six_axis_map, queue, batched=False)
    feed_wraparound_gap_and_reconnect(framed, six_axis_map.schema_hash)
    chunks = drain(queue)
    assert [c.seq_first for c in chunks] == [1, 2, 3, 6, 7]
    assert [c.gap_before for c in chunks] == [False, False, False, True, True]
    assert chunks[0].samples.shape == (10, 6) and chunks[0].samples.dtype == np.float32
    assert chunks[0].program.tolist() == [2] * 10
    assert_counters_of_wraparound_gap_and_reconnect(framed)


def test_batched_framed_input_makes_one_chunk_per_contiguous_run(six_axis_map: ChannelMap) -> None:
    """Batched: the frames one feed completed share a chunk until a gap starts a new one."""
    queue = ChunkQueue(100)
    framed = FramedInput(six_axis_map, queue)
    feed_wraparound_gap_and_reconnect(framed, six_axis_map.schema_hash)
    chunks = drain(queue)
    assert [(c.seq_first, c.seq_last) for c in chunks] == [(1, 3), (6, 6), (7, 7)]
    assert [c.gap_before for c in chunks] == [False, True, True]
    assert [c.n for c in chunks] == [30, 10, 10]
    assert chunks[0].samples.dtype == np.float32
    assert chunks[0].program.tolist() == [2] * 30
    np.testing.assert_array_equal(
        chunks[0].samples[10:20],
        six_axis_map.to_physical(frame(65535, six_axis_map.schema_hash).samples),
    )
    assert_counters_of_wraparound_gap_and_reconnect(framed)


def assert_counters_of_wraparound_gap_and_reconnect(framed: FramedInput) -> None:
    counters = framed.counters()
    assert counters["frames_ok"] == 5
    assert counters["sequence_gaps"] == 2 and counters["missing_frames"] == 2
    assert all(isinstance(v, int) and v >= 0 for v in counters.values())


def test_mqtt_message_of_several_frames_is_one_chunk_and_a_gap_inside_splits_it(
    six_axis_map: ChannelMap,
) -> None:
    source, broker = mqtt_source(six_axis_map, "frames")
    h = six_axis_map.schema_hash
    broker.deliver("t", b"".join(encode_frame(frame(s, h)) for s in range(10)))
    broker.deliver("t", b"".join(encode_frame(frame(s, h)) for s in (10, 11, 12, 15, 16)))
    chunks = drain(source.queue)
    assert [(c.seq_first, c.seq_last, c.n) for c in chunks] == [
        (1, 10, 100),
        (11, 13, 30),
        (16, 17, 20),
    ]
    assert [c.gap_before for c in chunks] == [False, False, True]
    counters = source.status().counters
    assert (counters["messages"], counters["frames_ok"], counters["missing_frames"]) == (2, 15, 2)
    assert counters["sequence_gaps"] == 1


def test_a_frame_split_across_two_messages_is_joined(six_axis_map: ChannelMap) -> None:
    source, broker = mqtt_source(six_axis_map, "frames")
    wire = b"".join(encode_frame(frame(s, six_axis_map.schema_hash)) for s in range(3))
    broker.deliver("t", wire[:200])
    broker.deliver("t", wire[200:])
    chunks = drain(source.queue)
    assert [(c.seq_first, c.seq_last, c.gap_before) for c in chunks] == [
        (1, 1, False),
        (2, 3, False),
    ]
    assert source.status().counters["frames_ok"] == 3


def test_a_cycle_start_inside_a_batch_keeps_its_sample_and_program(
    six_axis_map: ChannelMap,
) -> None:
    queue = ChunkQueue(10)
    framed = FramedInput(six_axis_map, queue)
    h = six_axis_map.schema_hash
    counts = np.zeros((10, 6), np.int16)
    frames = [
        Frame(0, 0, False, 4, h, counts),
        Frame(1, 0, True, 5, h, counts, cycle_start_index=3),
        Frame(2, 0, False, 5, h, counts),
    ]
    framed.feed(b"".join(encode_frame(f) for f in frames))
    (chunk,) = drain(queue)
    assert np.flatnonzero(chunk.cycle_start).tolist() == [13]
    assert chunk.program.tolist() == [4] * 13 + [5] * 17


def test_a_window_ending_inside_a_batched_chunk_names_its_own_frame(
    six_axis_map: ChannelMap,
) -> None:
    from agent.pipeline.spans import SpanIndex

    queue = ChunkQueue(10)
    framed = FramedInput(six_axis_map, queue)
    framed.feed(b"".join(encode_frame(frame(s, six_axis_map.schema_hash)) for s in range(10)))
    spans = SpanIndex(1000.0, 10_000)
    spans.add(drain(queue)[0])
    window = spans.window(15, 47)  # samples of frames 2 … 5 (agent numbering from 1)
    assert (window.seq_first, window.seq_last) == (2, 5)


def test_mqtt_frames_with_a_wrong_schema_are_counted_not_scored(six_axis_map: ChannelMap) -> None:
    source, broker = mqtt_source(six_axis_map, "frames")
    other = (six_axis_map.schema_hash + 1) & 0xFFFF
    for seq in range(3000):
        broker.deliver("t", encode_frame(frame(seq, other)))
    status = source.status()
    assert status.counters["frames_ok"] == 0
    assert status.counters["schema_mismatches"] == 3000
    assert "does not match channel map" in status.last_event
    assert len(source.queue) == 0


def test_mqtt_three_channel_frames_move_a_counter_without_tracebacks(
    six_axis_map: ChannelMap, caplog: pytest.LogCaptureFixture
) -> None:
    source, broker = mqtt_source(six_axis_map, "frames")
    with caplog.at_level(logging.DEBUG):
        for seq in range(500):
            broker.deliver("t", encode_frame(frame(seq, six_axis_map.schema_hash, channels=3)))
    assert source.status().counters["schema_mismatches"] == 500
    assert not any(r.exc_info for r in caplog.records)
    assert len(caplog.records) == 1  # reported once, as a warning


def test_mqtt_json_good_payloads_and_gaps(six_axis_map: ChannelMap) -> None:
    source, broker = mqtt_source(six_axis_map, "json")
    row = [0.5] * 6
    broker.deliver("t", json.dumps({"samples": [row, row], "seq": 4, "program": 3}).encode())
    broker.deliver("t", json.dumps({"samples": [row], "cycle_start": [1]}).encode())
    broker.deliver("t", json.dumps({"samples": [row], "seq": 9}).encode())
    chunks = drain(source.queue)
    assert [c.seq_first for c in chunks] == [4, 5, 9]
    assert [c.gap_before for c in chunks] == [False, False, True]
    assert chunks[0].program.tolist() == [3, 3] and chunks[1].cycle_start.tolist() == [True]
    assert chunks[0].samples.dtype == np.float32
    counters = source.status().counters
    assert (counters["frames_ok"], counters["bad_json"]) == (3, 0)
    assert (counters["sequence_gaps"], counters["missing_frames"]) == (1, 3)


BAD_PAYLOADS = [
    b"{not json",
    b"\xff\xfe",
    b"[1, 2]",
    b'"samples"',
    b"{}",
    b'{"samples": 5}',
    b'{"samples": [[1, 2]]}',
    b'{"samples": [[1, 2, 3, 4, 5, 6], [1]]}',
    b'{"samples": [["a", 1, 1, 1, 1, 1]]}',
    b'{"samples": [[{}, 1, 1, 1, 1, 1]]}',
    b'{"samples": [[1e400, 1, 1, 1, 1, 1]]}',
    b'{"samples": [[NaN, 1, 1, 1, 1, 1]]}',
    b'{"samples": [[-Infinity, 1, 1, 1, 1, 1]]}',
    b'{"samples": [[1e39, 1, 1, 1, 1, 1]]}',
    b'{"samples": [[' + b"1" * 400 + b", 1, 1, 1, 1, 1]]}",
    b'{"samples": [[1, 1, 1, 1, 1, 1]], "seq": 100000000000000000000000}',
    b'{"samples": [[1, 1, 1, 1, 1, 1]], "seq": 1e400}',
    b'{"samples": [[1, 1, 1, 1, 1, 1]], "seq": NaN}',
    b'{"samples": [[1, 1, 1, 1, 1, 1]], "seq": "x"}',
    b'{"samples": [[1, 1, 1, 1, 1, 1]], "seq": [1]}',
    b'{"samples": [[1, 1, 1, 1, 1, 1]], "program": 100000000000000000000000}',
    b'{"samples": [[1, 1, 1, 1, 1, 1]], "cycle_start": 5}',
    b'{"samples": [[1, 1, 1, 1, 1, 1]], "cycle_start": [1, 0]}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"samples": ' + b"[" * 50 + b"1" + b"]" * 50 + b"}",
]


@pytest.mark.parametrize("payload", BAD_PAYLOADS, ids=range(len(BAD_PAYLOADS)))
def test_mqtt_json_bad_payloads_are_counted_never_raised(
    six_axis_map: ChannelMap, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    source, broker = mqtt_source(six_axis_map, "json")
    with caplog.at_level(logging.DEBUG):
        broker.deliver("t", payload)
    status = source.status()
    assert status.counters["bad_json"] == 1 and status.counters["frames_ok"] == 0
    assert status.last_event.startswith("bad payload on t: ")
    assert len(source.queue) == 0
    assert not any(r.exc_info for r in caplog.records)
    # a bad payload does not move the sequence: the next good one is no gap
    broker.deliver("t", b'{"samples": [[1, 1, 1, 1, 1, 1]], "seq": 1}')
    broker.deliver("t", b'{"samples": [[1, 1, 1, 1, 1, 1]]}')
    assert [c.gap_before for c in drain(source.queue)] == [False, False]
