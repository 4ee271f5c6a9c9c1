"""Serial acquisition board source: reader thread → frames → sample chunks."""

from __future__ import annotations

from agent.sources.base import ChunkQueue, Source, SourceError, SourceStatus
from agent.sources.frames import FrameChunker
from agent.sources.serial_reader import (
    EVENT_CONNECTED,
    SerialEvent,
    SerialFrameReader,
    SerialSourceError,
)
from firmware_config.channel_map import ChannelMap
from firmware_config.protocol import Frame


class SerialSource(Source):
    kind = "serial"

    def __init__(
        self, port: str, baudrate: int, channel_map: ChannelMap, queue: ChunkQueue
    ) -> None:
        super().__init__(channel_map.names, queue)
        self._assembler = FrameChunker(channel_map)
        self._last_event = ""
        try:
            self._reader = SerialFrameReader(
                port,
                baudrate=baudrate,
                channel_map=channel_map,
                on_frame=self._on_frame,
                on_event=self._on_event,
            )
        except SerialSourceError as err:
            raise SourceError(f"serial source: {err}") from err

    def _on_frame(self, frame: Frame) -> None:
        self.queue.put(self._assembler.chunk(frame))

    def _on_event(self, event: SerialEvent) -> None:
        # Runs in the reader thread, like _on_frame, so the assembler needs no lock.
        self._last_event = f"{event.kind}: {event.message}"
        if event.kind == EVENT_CONNECTED:
            self._assembler.reset()

    def start(self) -> None:
        self._reader.start()

    def stop(self) -> None:
        self._reader.stop()

    def status(self) -> SourceStatus:
        stats = self._reader.stats()
        dec = stats.decoder
        return SourceStatus(
            kind=self.kind,
            connected=stats.connected,
            counters={
                "frames_ok": dec.frames_ok,
                "crc_errors": dec.crc_errors,
                "sequence_gaps": self._assembler.gaps,
                "missing_frames": self._assembler.missing_frames,
                "resyncs": dec.resyncs,
                "oversize": dec.oversize,
                "reconnects": stats.reconnects,
                "schema_mismatches": stats.schema_mismatches,
                "queue_dropped": self.queue.stats.dropped,
            },
            last_event=self._last_event,
        )
