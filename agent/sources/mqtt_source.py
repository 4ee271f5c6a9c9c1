"""MQTT source: binary frames (the serial wire format) or JSON samples on a topic.

JSON payload: ``{"samples": [[c0, c1, …], …], "seq": 17, "cycle_start": [0, 1, …]?,
"program": 2?}`` — samples in physical units, one row per sample, channel-map order.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import numpy as np

from agent.sources.base import ChunkQueue, SampleChunk, Source, SourceStatus
from agent.sources.frames import FrameChunker
from firmware_config.channel_map import ChannelMap
from firmware_config.decoder import FrameDecoder

Subscribe = Callable[[str, Callable[[str, bytes], None]], None]


class MqttSource(Source):
    kind = "mqtt"

    def __init__(
        self,
        topic: str,
        payload: str,
        channel_map: ChannelMap,
        queue: ChunkQueue,
        subscribe: Subscribe,
    ) -> None:
        super().__init__(channel_map.names, queue)
        self._topic = topic
        self._payload = payload
        self._subscribe = subscribe
        self._assembler = FrameChunker(channel_map)
        self._decoder = FrameDecoder()
        self._bad_json = 0
        self._messages = 0
        self._last_seq: int | None = None
        self._json_gaps = 0
        self._last_error = ""

    def start(self) -> None:
        self._subscribe(self._topic, self._on_message)

    def stop(self) -> None:
        """Nothing to close: the subscription dies with the MQTT link."""

    def _on_message(self, topic: str, data: bytes) -> None:
        self._messages += 1
        if self._payload == "frames":
            for frame in self._decoder.feed(data):
                self.queue.put(self._assembler.chunk(frame))
            return
        try:
            chunk = self._parse_json(data)
        except (ValueError, TypeError, KeyError) as err:
            self._bad_json += 1
            self._last_error = f"bad JSON payload on {topic}: {err}"
            return
        self.queue.put(chunk)

    def _parse_json(self, data: bytes) -> SampleChunk:
        doc = json.loads(data)
        samples = np.asarray(doc["samples"], dtype=np.float32)
        if samples.ndim != 2 or samples.shape[1] != len(self.channels):
            raise ValueError(
                f"samples has shape {samples.shape}; need rows of {len(self.channels)} values "
                f"({', '.join(self.channels)})"
            )
        n = samples.shape[0]
        seq = int(doc.get("seq", (self._last_seq or 0) + 1))
        gap = self._last_seq is not None and seq != self._last_seq + 1
        self._json_gaps += int(gap)
        self._last_seq = seq
        cycle = np.asarray(doc.get("cycle_start", np.zeros(n)), dtype=bool)
        if cycle.shape != (n,):
            raise ValueError(f"cycle_start has {cycle.shape[0]} entries for {n} samples")
        return SampleChunk(
            samples=samples,
            cycle_start=cycle,
            program=np.full(n, int(doc.get("program", -1)), dtype=np.int64),
            seq_first=seq,
            seq_last=seq,
            wall_time=time.time(),
            received_monotonic=time.monotonic(),
            gap_before=gap,
        )

    def status(self) -> SourceStatus:
        dec = self._decoder.stats
        return SourceStatus(
            kind=self.kind,
            connected=True,
            counters={
                "messages": self._messages,
                "frames_ok": dec.frames_ok,
                "crc_errors": dec.crc_errors,
                "sequence_gaps": self._assembler.gaps + self._json_gaps,
                "resyncs": dec.resyncs,
                "bad_json": self._bad_json,
                "queue_dropped": self.queue.stats.dropped,
            },
            last_event=self._last_error,
        )
