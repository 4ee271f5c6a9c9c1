"""Windowing and features: the streaming segmenter equals the batch definition."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.features import (
    FeatureError,
    FeatureSpec,
    Normalization,
    Segmentation,
    StreamSegmenter,
    segment_features,
    segment_recording,
)


def spec(length=8, hop=4, kind="window", features=("raw",), **kw) -> FeatureSpec:
    return FeatureSpec(
        channels=("a", "b"),
        units=("A", "A"),
        sample_rate_hz=100.0,
        segmentation=Segmentation(kind=kind, length=length, hop=hop, **kw),
        features=features,
    )


IDENTITY = Normalization(mean=np.zeros(2, np.float32), std=np.ones(2, np.float32))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=120),
    length=st.integers(min_value=1, max_value=12),
    hop=st.integers(min_value=1, max_value=12),
    cuts=st.lists(st.integers(min_value=1, max_value=30), max_size=10),
)
def test_stream_equals_sliding_windows_for_any_chunking(n, length, hop, cuts):
    data = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    segmenter = StreamSegmenter(spec(length, hop), IDENTITY)
    got, pos = [], 0
    for size in [*cuts, n]:
        got += segmenter.push(data[pos : pos + size])
        pos = min(n, pos + size)
    starts = list(range(0, n - length + 1, hop))
    assert [s.start for s in got] == starts
    for seg, start in zip(got, starts, strict=True):
        np.testing.assert_array_equal(seg.samples, data[start : start + length])


def test_gap_skips_straddling_windows_and_counts_them():
    data = np.ones((40, 2), np.float32)
    segmenter = StreamSegmenter(spec(8, 4), IDENTITY)
    first = segmenter.push(data[:18])  # windows at 0,4,8 complete; 12 and 16 pending
    second = segmenter.push(data[18:], gap_before=True)
    assert [s.start for s in first] == [0, 4, 8]
    assert segmenter.stats.skipped_gap == 2  # starts 12 and 16 would straddle the gap
    assert [s.start for s in second] == [18, 22, 26, 30]


def test_nan_window_is_skipped_and_counted():
    data = np.ones((16, 2), np.float32)
    data[5, 1] = np.nan
    segmenter = StreamSegmenter(spec(4, 4), IDENTITY)
    out = segmenter.push(data)
    assert [s.start for s in out] == [0, 8, 12]
    assert segmenter.stats.skipped_nan == 1


def test_cycles_are_cut_at_markers_and_resampled():
    data = np.stack([np.arange(30, dtype=np.float32)] * 2, axis=1)
    marks = np.zeros(30, bool)
    marks[[2, 12, 22]] = True
    segmenter = StreamSegmenter(spec(5, 1, kind="cycle", min_samples=3), IDENTITY)
    out = segmenter.push(data[:15], marks[:15]) + segmenter.push(data[15:], marks[15:])
    assert [(s.start, s.stop) for s in out] == [(2, 12), (12, 22)]
    np.testing.assert_allclose(out[0].samples[:, 0], np.linspace(2, 11, 5))


def test_cycle_longer_than_limit_is_dropped_and_counted():
    segmenter = StreamSegmenter(spec(5, 1, kind="cycle", max_samples=10), IDENTITY)
    marks = np.zeros(50, bool)
    marks[[0, 30]] = True
    out = segmenter.push(np.zeros((50, 2), np.float32), marks)
    assert out == []
    assert segmenter.stats.skipped_cycle_length >= 1


def test_features_raw_is_channel_major_and_stats_per_channel():
    seg = np.arange(8, dtype=np.float32).reshape(1, 4, 2)  # samples × channels
    raw = segment_features(seg, ("raw",))
    assert raw.tolist() == [[0, 2, 4, 6, 1, 3, 5, 7]]
    both = segment_features(seg, ("raw", "stats"))
    assert both.shape == (1, 8 + 2 * 4)
    assert (
        spec(4, 4, features=("raw", "stats")).feature_channel().tolist()
        == [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4
    )


def test_normalization_fit_guards_constant_channels():
    data = np.stack([np.arange(10.0), np.full(10, 3.0)], axis=1)
    norm = Normalization.fit(data)
    out = norm.apply(data)
    assert np.isfinite(out).all()
    assert norm.std[1] == 1.0


def test_segment_recording_splits_at_gaps():
    data = np.ones((40, 2), np.float32)
    gaps = np.zeros(40, bool)
    gaps[20] = True
    result = segment_recording(spec(8, 8), IDENTITY, data, gap_before=gaps)
    assert result.start.tolist() == [0, 8, 20, 28]
    assert result.features.shape == (4, 16)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": ()}, "channels is empty"),
        ({"channels": ("a", "a")}, "duplicates"),
        ({"units": ("A",)}, "one per channel"),
        ({"sample_rate_hz": 0.0}, "must be > 0"),
        ({"features": ("fft",)}, "choose one or more"),
    ],
)
def test_feature_spec_errors_name_the_problem(kwargs, message):
    base = {"channels": ("a", "b"), "units": ("A", "A"), "sample_rate_hz": 10.0}
    with pytest.raises(FeatureError, match=message):
        FeatureSpec(**{**base, **kwargs})


def test_segmentation_errors():
    with pytest.raises(FeatureError, match=r"segmentation\.kind"):
        Segmentation(kind="frames")
    with pytest.raises(FeatureError, match=r"segmentation\.hop"):
        Segmentation(hop=0)


def test_push_rejects_wrong_channel_count():
    with pytest.raises(FeatureError, match="expected"):
        StreamSegmenter(spec(), IDENTITY).push(np.zeros((4, 3)))
