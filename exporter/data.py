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


# Steps of ``time_s`` within this relative distance of the median step count as regular; a
# recording needs this share of them regular. Longer steps are gaps (lost frames), fine if few.
STEP_TOLERANCE = 0.1
REGULAR_SHARE = 0.9
# Files whose rates differ by more than this (relative) cannot share one model.
RATE_AGREEMENT = 0.01


def recording_rate(recording: Recording) -> float | None:
    """Samples per second from ``time_s`` (1 / median step), None without a usable column."""
    t = recording.time_s
    if t is None or t.size < 2:
        return None
    path = recording.path
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise RecordingError(
            f"{path}: time_s is empty or not a number on line {bad[0] + 2}; fix the column, "
            "drop it, or pass --sample-rate"
        )
    steps = np.diff(t)
    back = np.flatnonzero(steps <= 0)
    if back.size:
        i = int(back[0])
        raise RecordingError(
            f"{path}: time_s does not increase on line {i + 3} ({t[i]:g} → {t[i + 1]:g} s); "
            "give samples in time order without repeats, or pass --sample-rate"
        )
    step = float(np.median(steps))
    regular = float(np.mean(np.abs(steps - step) <= STEP_TOLERANCE * step))
    if regular < REGULAR_SHARE:
        raise RecordingError(
            f"{path}: time_s is irregular: only {regular:.0%} of its steps are within "
            f"{STEP_TOLERANCE:.0%} of the median {step:g} s; resample the recording to a fixed "
            "rate or pass --sample-rate"
        )
    return float(f"{1.0 / step:.6g}")


def sample_rate_from_time(recordings: Sequence[Recording]) -> tuple[float, Path] | None:
    """The sample rate the recordings' ``time_s`` columns agree on, and the first file that
    gave it; None when none has the column."""
    found: tuple[float, Path] | None = None
    for recording in recordings:
        rate = recording_rate(recording)
        if rate is None:
            continue
        if found is None:
            found = (rate, recording.path)
        elif abs(rate - found[0]) > RATE_AGREEMENT * found[0]:
            raise RecordingError(
                f"{recording.path}: time_s gives {rate:g} Hz but {found[1]} gives "
                f"{found[0]:g} Hz; train one model per sample rate, or pass --sample-rate"
            )
    return found


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
