"""Serial acquisition board source: port reader thread → framed input → sample chunks."""

from __future__ import annotations

from agent.sources.base import ChunkQueue, Source, SourceError, SourceStatus
from agent.sources.framed import FramedInput
from agent.sources.serial_reader import (
    EVENT_CONNECTED,
    SerialEvent,
    SerialFactory,
    SerialFrameReader,
    SerialSourceError,
)
from firmware_config.channel_map import ChannelMap


class SerialSource(Source):
    kind = "serial"

    def __init__(
        self,
        port: str,
        baudrate: int,
        channel_map: ChannelMap,
        queue: ChunkQueue,
        *,
        serial_factory: SerialFactory | None = None,
    ) -> None:
        super().__init__(channel_map.names, queue)
        self._last_event = ""
        self._framed = FramedInput(channel_map, queue, on_notice=self._note)
        try:
            self._reader = SerialFrameReader(
                port,
                self._framed.feed,
                baudrate=baudrate,
                on_event=self._on_event,
                serial_factory=serial_factory,
            )
        except SerialSourceError as err:
            raise SourceError(f"serial source: {err}") from err

    def _on_event(self, event: SerialEvent) -> None:
        # Runs in the reader thread, like the framed input's feed, so neither needs a lock.
        self._note(f"{event.kind}: {event.message}")
        if event.kind == EVENT_CONNECTED:
            self._framed.reset()

    def _note(self, text: str) -> None:
        self._last_event = text

    def start(self) -> None:
        self._reader.start()

    def stop(self) -> None:
        self._reader.stop()

    def status(self) -> SourceStatus:
        stats = self._reader.stats()
        return SourceStatus(
            kind=self.kind,
            connected=stats.connected,
            counters={
                **self._framed.counters(),
                "reconnects": stats.reconnects,
                "open_failures": stats.open_failures,
                "bytes_read": stats.bytes_read,
                "queue_dropped": self.queue.stats.dropped,
            },
            last_event=self._last_event,
        )
