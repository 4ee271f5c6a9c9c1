"""JSON sample payloads (the MQTT source's ``payload = "json"``) → :class:`SampleChunk`.

Payload: ``{"samples": [[c0, c1, …], …], "seq": 17, "cycle_start": [0, 1, …]?,
"program": 2?}`` — samples in physical units, one row per sample, channel-map order. ``seq``
numbers the payloads (it never wraps); without it a payload is taken to follow the previous
one. Gaps are judged by :class:`~firmware_config.sequence.SequenceTracker`, as for frames.

Whatever arrives, :meth:`JsonSamplesInput.feed` never raises: a payload that is not valid
JSON, has the wrong shape, or holds numbers that do not fit (1e400, 10**23 as a sequence
number, NaN, values beyond float32) is counted in ``bad_json`` and dropped whole.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from agent.core.clock import PROCESS_CLOCK
from agent.sources.base import ChunkQueue, SampleChunk
from firmware_config.sequence import SequenceTracker

NO_PROGRAM = -1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)
# everything json and numpy raise on a hostile document (RecursionError: absurd nesting)
PAYLOAD_ERRORS = (ValueError, TypeError, KeyError, OverflowError, RecursionError)


class JsonSamplesInput:
    """Feed one payload at a time; valid ones go to ``queue`` as one chunk each."""

    def __init__(self, channels: tuple[str, ...], queue: ChunkQueue) -> None:
        self._channels = channels
        self._queue = queue
        self._sequence = SequenceTracker(modulus=None)
        self._ok = 0
        self._bad = 0

    def feed(self, data: bytes) -> str | None:
        """Queue the payload's samples; return why it was rejected, or None."""
        try:
            chunk = self._parse(data)
        except PAYLOAD_ERRORS as err:
            self._bad += 1
            return f"{type(err).__name__}: {err}"
        self._ok += 1
        self._queue.put(chunk)
        return None

    def counters(self) -> dict[str, int]:
        """``frames_ok`` counts accepted payloads; sequence counters as for frames."""
        sequence = self._sequence.stats
        return {
            "frames_ok": self._ok,
            "bad_json": self._bad,
            "sequence_gaps": sequence.gap_events,
            "missing_frames": sequence.missing_frames,
            "out_of_order": sequence.out_of_order,
        }

    def _parse(self, data: bytes) -> SampleChunk:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise TypeError(f"payload is a JSON {type(doc).__name__}; need an object")
        samples = self._samples(doc["samples"])
        n = samples.shape[0]
        expected = self._sequence.expected
        seq = _integer(doc, "seq", 1 if expected is None else expected)
        program = _integer(doc, "program", NO_PROGRAM)
        cycle = np.asarray(doc.get("cycle_start", np.zeros(n)), dtype=bool)
        if cycle.shape != (n,):
            raise ValueError(f"cycle_start has shape {cycle.shape}; need {n} entries")
        step = self._sequence.observe(seq)  # only once the payload is known to be valid
        return SampleChunk(
            samples=samples,
            cycle_start=cycle,
            program=np.full(n, program, dtype=np.int64),
            seq_first=seq,
            seq_last=seq,
            wall_time=PROCESS_CLOCK.now(),
            received_monotonic=time.monotonic(),
            gap_before=step.discontinuous,
        )

    def _samples(self, value: Any) -> np.ndarray:
        values = np.asarray(value, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(self._channels):
            raise ValueError(
                f"samples has shape {values.shape}; need rows of {len(self._channels)} values "
                f"({', '.join(self._channels)})"
            )
        if not np.isfinite(values).all() or np.abs(values).max() > FLOAT32_MAX:
            raise ValueError("samples must be finite numbers within the float32 range")
        return values.astype(np.float32)


def _integer(doc: dict[str, Any], key: str, default: int) -> int:
    value = int(doc.get(key, default))
    if not INT64_MIN <= value <= INT64_MAX:
        raise OverflowError(f"{key} = {value}: does not fit 64 bits")
    return value
