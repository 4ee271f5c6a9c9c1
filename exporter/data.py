"""Load recordings for training and calibration, segmented by the agent's own code."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.core.features import FeatureSpec, Normalization, SegmentedRecording, segment_recording
from agent.core.recording import Recording, read_recording
from exporter.model import ExportError


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
    parts = [
        segment_recording(spec, normalization, r.samples, r.cycle_start, r.program_id, r.gap_before)
        for r in recordings
    ]
    if not parts:
        raise ExportError("no recordings to segment")
    stats = parts[0].stats
    for p in parts[1:]:
        for key in vars(stats):
            setattr(stats, key, getattr(stats, key) + getattr(p.stats, key))
    return SegmentedRecording(
        segments=np.concatenate([p.segments for p in parts]),
        features=np.concatenate([p.features for p in parts]),
        start=np.concatenate([p.start for p in parts]),
        stop=np.concatenate([p.stop for p in parts]),
        program=np.concatenate([p.program for p in parts]),
        stats=stats,
    )
