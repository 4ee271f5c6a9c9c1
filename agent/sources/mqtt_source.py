"""MQTT source: binary frames (the serial wire format) or JSON samples on a topic.

Frames go through the same :class:`~agent.sources.framed.FramedInput` as the serial port
(channel-map check included). A frames payload is a piece of the serial byte stream, so it
may carry any number of 0x00-delimited frames (a gateway that batches 10 per message costs
the agent a tenth of the per-message work) and may even split one; what a message completes
is queued as one chunk. JSON payloads go through
:class:`~agent.sources.json_samples.JsonSamplesInput`. The handler runs on the MQTT network
thread and never raises: whatever a payload holds ends up in a counter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agent.sources.base import ChunkQueue, Source, SourceStatus
from agent.sources.framed import FramedInput
from agent.sources.json_samples import JsonSamplesInput
from firmware_config.channel_map import ChannelMap

Subscribe = Callable[[str, Callable[[str, bytes], None]], None]


class PayloadInput(Protocol):
    """What turns one message payload into chunks: frames or JSON samples."""

    def feed(self, data: bytes) -> str | None:
        """Queue the payload's chunks; return why it was rejected whole, or None."""

    def counters(self) -> dict[str, int]: ...


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
        self._subscribe = subscribe
        self._messages = 0
        self._last_event = ""
        self._input: PayloadInput
        if payload == "json":
            self._input = JsonSamplesInput(channel_map.names, queue)
        else:
            self._input = FramedInput(channel_map, queue, on_notice=self._note)

    def start(self) -> None:
        self._subscribe(self._topic, self._on_message)

    def stop(self) -> None:
        """Nothing to close: the subscription dies with the MQTT link."""

    def _on_message(self, topic: str, data: bytes) -> None:
        self._messages += 1
        problem = self._input.feed(data)
        if problem is not None:
            self._note(f"bad payload on {topic}: {problem}")

    def _note(self, text: str) -> None:
        self._last_event = text

    def status(self) -> SourceStatus:
        return SourceStatus(
            kind=self.kind,
            connected=True,
            counters={
                "messages": self._messages,
                **self._input.counters(),
                "queue_dropped": self.queue.stats.dropped,
            },
            last_event=self._last_event,
        )
