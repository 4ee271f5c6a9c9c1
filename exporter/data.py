"""Load recordings for training and calibration, segmented by the agent's own code.

A recording that cannot give a single segment (shorter than one window or cycle, or every
segment skipped) is refused with its name, so a wrong file is named rather than lost in a
total ("only 2 calibration windows") or a numpy traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.core.features import FeatureSpec, Normalization, SegmentedRecording, segment_recording
from agent.core.recording import Recording, RecordingError, read_recording, require_segments
from exporter.errors import ExportError


def load_recordings(paths: Sequence[Path | str], channels: Sequence[str]) -> list[Recording]:
    if not paths:
        raise ExportError("no data files given; pass --data FILE.csv [FILE.csv …]")
    return [read_recording(p, channels) for p in paths]


def fit_normalization(recordings: Sequence[Recording]) -> Normalization:
    return Normalization.fit(np.concatenate([r.samples for r in recordings]))


def segment_all(
    spec: FeatureSpec, normalization: Normalization, recordings: Sequence[Recording]
) -> SegmentedRecording:
    """Segments of several recordings; no window crosses from one file into the next."""
    return segment_grouped(spec, normalization, recordings)[0]


def segment_grouped(
    spec: FeatureSpec, normalization: Normalization, recordings: Sequence[Recording]
) -> tuple[SegmentedRecording, np.ndarray]:
    """:func:`segment_all` and, per segment, the index of the recording it came from."""
    parts = [segment_one(spec, normalization, r) for r in recordings]
    if not parts:
        raise ExportError("no recordings to segment")
    stats = parts[0].stats
    for p in parts[1:]:
        for key in vars(stats):
            setattr(stats, key, getattr(stats, key) + getattr(p.stats, key))
    groups = np.concatenate([np.full(len(p.features), i) for i, p in enumerate(parts)])
    return SegmentedRecording(
        segments=np.concatenate([p.segments for p in parts]),
        features=np.concatenate([p.features for p in parts]),
        start=np.concatenate([p.start for p in parts]),
        stop=np.concatenate([p.stop for p in parts]),
        program=np.concatenate([p.program for p in parts]),
        stats=stats,
    ), groups


def segment_one(
    spec: FeatureSpec, normalization: Normalization, recording: Recording
) -> SegmentedRecording:
    """Segments of one recording; one that gives none is an error naming the file."""
    require_segments(recording, spec.segmentation)
    part = segment_recording(
        spec,
        normalization,
        recording.samples,
        recording.cycle_start,
        recording.program_id,
        recording.gap_before,
    )
    if not len(part.features):
        what = "window" if spec.segmentation.kind == "window" else "cycle"
        skipped = ", ".join(
            f"{key} {value}" for key, value in vars(part.stats).items() if value and key != "gaps"
        )
        raise RecordingError(
            f"{recording.path}: {recording.n_samples} samples but no {what} can be scored "
            f"({skipped or 'none complete'}); give a longer recording without gaps or NaN"
        )
    return part
