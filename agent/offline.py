"""`rapp-agent score`: score a recorded file through the live code path.

The recording is fed in frame-sized chunks through the same :class:`StreamSegmenter` and
:class:`Scorer` the daemon uses, so offline results are what the device would have said.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.atomic import write_atomic
from agent.features import Segment, StreamSegmenter, iter_chunks
from agent.recording import Recording, read_recording
from agent.scoring import Scorer

CHUNK_SAMPLES = 10  # one serial frame's worth at the default map; the live granularity
BATCH = 64

COLUMNS = (
    "window", "start", "stop", "time_start_s", "time_end_s", "program",
    "recon", "sap", "nap", "score", "threshold", "alarm", "top_channel", "label",
)  # fmt: skip


@dataclass(frozen=True)
class ScoredRecording:
    rows: list[dict[str, object]]
    skipped: dict[str, int]


def score_recording(scorer: Scorer, path: Path) -> ScoredRecording:
    manifest = scorer.bundle.manifest
    recording = read_recording(path, manifest.input.channels)
    score_name = manifest.alarm.score
    threshold = scorer.thresholds[score_name]
    channels = manifest.input.channels
    rows: list[dict[str, object]] = []
    segmenter_stats: dict[str, int] = {}
    rate = manifest.input.sample_rate_hz
    for batch in _batches(scorer, recording, segmenter_stats):
        scores = scorer.score_segments(batch)
        chosen = scores.get(score_name)
        top = np.argmax(scores.contributions, axis=1)
        for i, seg in enumerate(batch):
            rows.append(
                {
                    "window": len(rows),
                    "start": seg.start,
                    "stop": seg.stop,
                    "time_start_s": _time(recording, seg.start, rate),
                    "time_end_s": _time(recording, seg.stop - 1, rate),
                    "program": seg.program,
                    "recon": float(scores.recon[i]),
                    "sap": float(scores.sap[i]),
                    "nap": float(scores.nap[i]),
                    "score": float(chosen[i]),
                    "threshold": threshold,
                    "alarm": int(chosen[i] >= threshold),
                    "top_channel": channels[int(top[i])],
                    "label": _label(recording, seg),
                }
            )
    return ScoredRecording(rows=rows, skipped=segmenter_stats)


def _batches(
    scorer: Scorer, recording: Recording, stats_out: dict[str, int]
) -> Iterator[list[Segment]]:
    manifest = scorer.bundle.manifest
    segmenter = StreamSegmenter(manifest.input, scorer.bundle.normalization)
    pending: list[Segment] = []
    gaps = recording.gap_before
    for part in iter_chunks(recording.n_samples, CHUNK_SAMPLES):
        pending += segmenter.push(
            recording.samples[part],
            None if recording.cycle_start is None else recording.cycle_start[part],
            None if recording.program_id is None else recording.program_id[part],
            gap_before=bool(gaps is not None and gaps[part].any()),
        )
        if len(pending) >= BATCH:
            yield pending
            pending = []
    if pending:
        yield pending
    stats_out.update(vars(segmenter.stats))


def _time(recording: Recording, index: int, sample_rate_hz: float) -> float:
    if recording.time_s is not None:
        return float(recording.time_s[index])
    return index / sample_rate_hz


def _label(recording: Recording, seg: Segment) -> str:
    if recording.labels is None:
        return ""
    window = recording.labels[seg.start : seg.stop]
    faulted = window[window != ""]
    return str(faulted[-1]) if faulted.size else ""


def write_scores(path: Path, result: ScoredRecording) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows)
    write_atomic(path, buffer.getvalue().encode())
