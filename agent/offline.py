"""`rapp-agent score`: score a recorded file through the live code path.

The recording is cut into frame-sized chunks exactly as the replay source does and fed to
the daemon's :class:`RobotPipeline` (streaming segmenter → scorer → alarm state machine), so
offline scores and alarm states are what the device would have produced.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.core.atomic import write_atomic
from agent.core.recording import Recording, read_recording
from agent.core.scoring import Scorer
from agent.pipeline.alarms import AlarmSettings
from agent.pipeline.robot import RobotPipeline, ScoredWindow
from agent.sources.base import ChunkQueue
from agent.sources.replay_source import ReplaySource

COLUMNS = (
    "window", "start", "stop", "time_start_s", "time_end_s", "program",
    "recon", "sap", "nap", "density", "combined", "score", "threshold", "above", "smoothed",
    "alarm", "top_channel", "label",
)  # fmt: skip


@dataclass(frozen=True)
class ScoredRecording:
    rows: list[dict[str, object]]
    skipped: dict[str, int]
    alarms_raised: int


def score_recording(
    scorer: Scorer,
    path: Path,
    robot: str = "offline",
    progress: Callable[[int, int], None] | None = None,
) -> ScoredRecording:
    """``progress(samples_done, samples_total)`` is called after every chunk (for a bar)."""
    manifest = scorer.bundle.manifest
    spec = manifest.input
    recording = read_recording(path, spec.channels)
    defaults = manifest.alarm
    pipeline = RobotPipeline(
        robot,
        [scorer],
        AlarmSettings.from_bundle(defaults),
    )
    source = ReplaySource.from_recording(recording, spec.sample_rate_hz, ChunkQueue(1))
    rows: list[dict[str, object]] = []
    raised = done = 0
    while (chunk := source.next_chunk()) is not None:
        result = pipeline.process(chunk)
        raised += sum(1 for e in result.events if e.kind == "raise")
        rows += [_row(len(rows) + i, w, recording, spec) for i, w in enumerate(result.windows)]
        done += len(chunk.samples)
        if progress is not None:
            progress(done, recording.n_samples)
    skipped = {**vars(pipeline.segmenter.stats), "unrouted": pipeline.stats.unrouted}
    return ScoredRecording(rows=rows, skipped=skipped, alarms_raised=raised)


def not_scored(counters: Mapping[str, int]) -> str:
    """The segmenter's counters (``SegmenterStats`` plus ``unrouted``) in words, e.g. "not
    scored: 3 spanning a gap"; ``segments`` counts every window cut, scored or not."""
    reasons = [
        (counters.get("skipped_gap", 0), "spanning a gap"),
        (counters.get("skipped_nan", 0), "holding NaN"),
        (counters.get("skipped_cycle_length", 0), "of a cycle too short or too long"),
        (counters.get("unrouted", 0), "of a program no bundle serves"),
    ]
    shown = [f"{n} {why}" for n, why in reasons if n]
    text = f"not scored: {', '.join(shown)}" if shown else "every window scored"
    if counters.get("interpolated"):
        text += f"; {counters['interpolated']} scored across a filled gap"
    return text


def _row(index: int, w: ScoredWindow, recording: Recording, spec) -> dict[str, object]:
    rate = spec.sample_rate_hz
    top = max(w.contributions, key=w.contributions.__getitem__)
    return {
        "window": index,
        "start": w.start,
        "stop": w.stop,
        "time_start_s": _time(recording, w.start, rate),
        "time_end_s": _time(recording, w.stop - 1, rate),
        "program": w.program,
        "recon": w.recon,
        "sap": w.sap,
        "nap": w.nap,
        "density": w.density,
        "combined": w.combined,
        "score": w.score,
        "threshold": w.threshold,
        "above": int(w.score >= w.threshold),
        "smoothed": w.smoothed,
        "alarm": int(w.alarm_active),
        "top_channel": top,
        "label": _label(recording, w.start, w.stop),
    }


def _time(recording: Recording, index: int, sample_rate_hz: float) -> float:
    if recording.time_s is not None:
        return float(recording.time_s[index])
    return index / sample_rate_hz


def _label(recording: Recording, start: int, stop: int) -> str:
    if recording.labels is None:
        return ""
    window = recording.labels[start:stop]
    faulted = window[window != ""]
    return str(faulted[-1]) if faulted.size else ""


def write_scores(path: Path, result: ScoredRecording) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows)
    write_atomic(path, buffer.getvalue().encode())
