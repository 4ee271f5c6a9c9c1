"""Short known gaps are bridged by linear interpolation; longer or unknown ones still skip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.features import (
    MAX_FILLED_SHARE,
    FeatureError,
    FeatureSpec,
    Normalization,
    Segmentation,
    StreamSegmenter,
    default_max_fill,
    interpolate_gap,
)

IDENTITY = Normalization(mean=np.zeros(2, np.float32), std=np.ones(2, np.float32))


def spec(length=16, hop=8, kind="window", rate=1000.0, **kw) -> FeatureSpec:
    return FeatureSpec(
        channels=("a", "b"),
        units=("A", "A"),
        sample_rate_hz=rate,
        segmentation=Segmentation(kind=kind, length=length, hop=hop, **kw),
    )


def ramp(n: int, start: int = 0) -> np.ndarray:
    """A signal linear in time: interpolation across a hole restores it exactly."""
    t = np.arange(start, start + n, dtype=np.float32)
    return np.stack([t, 100.0 - 2.0 * t], axis=1)


def test_interpolation_is_linear_per_channel_between_the_neighbours() -> None:
    got = interpolate_gap(np.array([0.0, 10.0]), np.array([4.0, -10.0]), 3)
    np.testing.assert_allclose(got, [[1.0, 5.0], [2.0, 0.0], [3.0, -5.0]])


def test_default_fill_is_30_ms_of_samples() -> None:
    assert default_max_fill(1000.0) == 30 and default_max_fill(10.0) == 1


def test_a_short_known_gap_keeps_the_windows_and_is_counted() -> None:
    full = ramp(64)
    segmenter = StreamSegmenter(spec(16, 8), IDENTITY, max_fill=4)
    first = segmenter.push(full[:20])
    # samples 20..23 are lost; the chunk after the gap knows it
    second = segmenter.push(full[24:], gap_before=True, missing_samples=4)
    windows = first + second
    assert len(windows) == 7 and segmenter.stats.skipped_gap == 0
    for i, window in enumerate(windows):
        np.testing.assert_allclose(window.samples, full[8 * i : 8 * i + 16], rtol=1e-6)
    assert segmenter.stats.interpolated == 2  # the windows at 8 and 16 hold the hole
    assert segmenter.stats.gaps == 1
    # start/stop count received samples only: the window at stream 16..32 starts at
    # received sample 16 and ends after received sample 27 (= stream 31)
    assert [(w.start, w.stop) for w in windows[1:4]] == [(8, 20), (16, 28), (20, 36)]


def test_a_longer_or_unknown_gap_still_restarts_the_windows() -> None:
    full = ramp(64)
    for missing in (0, 5):  # unknown size, or more than max_fill
        segmenter = StreamSegmenter(spec(16, 8), IDENTITY, max_fill=4)
        segmenter.push(full[:20])
        out = segmenter.push(full[20 + missing :], gap_before=True, missing_samples=missing)
        # the windows at 8 and 16 would straddle it
        assert segmenter.stats.skipped_gap == 2 and segmenter.stats.interpolated == 0
        pushed = 64 - 20 - missing  # windows restart at the first sample after the gap
        assert [w.start for w in out] == list(range(20, 20 + pushed - 16 + 1, 8))


def test_missing_samples_without_the_flag_are_still_a_gap() -> None:
    segmenter = StreamSegmenter(spec(16, 8), IDENTITY, max_fill=0)
    segmenter.push(ramp(20))
    segmenter.push(ramp(40, 24), missing_samples=4)
    assert segmenter.stats.gaps == 1 and segmenter.stats.skipped_gap == 2


def test_a_window_mostly_filled_is_skipped_as_a_gap() -> None:
    length = 16
    limit = int(MAX_FILLED_SHARE * length)  # 4 of 16 may be filled
    segmenter = StreamSegmenter(spec(length, length), IDENTITY, max_fill=limit + 1)
    segmenter.push(ramp(10))
    out = segmenter.push(ramp(30, 10 + limit + 1), gap_before=True, missing_samples=limit + 1)
    # window 0..16 holds 5 filled samples: skipped; the next one (stream 16..32) holds none
    # and starts at received sample 11
    assert segmenter.stats.skipped_gap == 1 and segmenter.stats.interpolated == 0
    assert [w.start for w in out] == [11]


def test_a_gap_inside_a_cycle_keeps_the_cycle() -> None:
    full = ramp(60)
    marks = np.zeros(60, bool)
    marks[[5, 45]] = True
    segmenter = StreamSegmenter(spec(8, 1, kind="cycle", min_samples=3), IDENTITY, max_fill=3)
    out = segmenter.push(full[:20], marks[:20])
    out += segmenter.push(full[23:], marks[23:], gap_before=True, missing_samples=3)
    assert len(out) == 1 and segmenter.stats.interpolated == 1
    np.testing.assert_allclose(out[0].samples, np.linspace(full[5], full[44], 8), rtol=1e-5)
    assert (out[0].start, out[0].stop) == (5, 42)  # received samples: 3 fewer than stream


def test_negative_max_fill_is_refused() -> None:
    with pytest.raises(FeatureError, match="max_fill"):
        StreamSegmenter(spec(), IDENTITY, max_fill=-1)


@settings(max_examples=80, deadline=None)
@given(
    frames=st.integers(20, 80),
    per_frame=st.integers(1, 10),
    lost=st.sets(st.integers(1, 79)),
    length_frames=st.integers(4, 8),
)
def test_isolated_lost_frames_of_a_linear_signal_change_no_window(
    frames: int, per_frame: int, lost: set[int], length_frames: int
) -> None:
    """Lost frames at most one per window: each window is scored and equals the window of
    the complete stream (interpolating a ramp restores it)."""
    spaced: list[int] = []
    for f in sorted(lost):
        if 0 < f < frames - 1 and (not spaced or f - spaced[-1] >= length_frames):
            spaced.append(f)
    lost = set(spaced)
    length = length_frames * per_frame  # ≥ 4 frames: one filled frame stays ≤ 25 %
    full = ramp(frames * per_frame)
    segmenter = StreamSegmenter(spec(length, per_frame), IDENTITY, max_fill=per_frame)
    got = []
    missing = 0
    for f in range(frames):
        if f in lost:
            missing += per_frame
            continue
        chunk = full[f * per_frame : (f + 1) * per_frame]
        got += segmenter.push(chunk, gap_before=missing > 0, missing_samples=missing)
        missing = 0
    expected = range(0, frames * per_frame - length + 1, per_frame)
    assert len(got) == len(expected) and segmenter.stats.skipped_gap == 0
    for window, start in zip(got, expected, strict=True):
        np.testing.assert_allclose(window.samples, full[start : start + length], atol=1e-3)
    starts = [w.start for w in got]
    assert starts == sorted(starts) and all(w.stop > w.start for w in got)
