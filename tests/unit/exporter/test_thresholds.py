"""Thresholds for a false-alarm target, holding on every calibration recording."""

from __future__ import annotations

import numpy as np
import pytest

from exporter.errors import ExportInputError
from exporter.thresholds import fit_threshold, per_window_probability, tail_level


def test_the_probability_counts_decision_intervals_not_windows() -> None:
    # 1 per hour, 10 ms windows: one decision per 2.5 s clear hold, not per window.
    assert per_window_probability(1.0, 0.01) == pytest.approx(2.5 / 3600)
    assert per_window_probability(1.0, 10.0) == pytest.approx(10.0 / 3600)


def test_a_bad_target_names_the_flag() -> None:
    with pytest.raises(ExportInputError, match="--false-alarms-per-day"):
        per_window_probability(0.0, 0.1)


def test_empirical_where_resolved_and_bounded_extrapolation_beyond() -> None:
    x = np.random.default_rng(0).exponential(size=100_000)
    assert tail_level(x, 0.01) == pytest.approx(np.quantile(x, 0.99))
    far = tail_level(x[:1000], 1e-9)
    assert x[:1000].max() <= far < 3 * x[:1000].max()


def test_the_worst_recording_sets_the_threshold_and_held_out_shares_are_reported() -> None:
    rng = np.random.default_rng(1)
    quiet, loud = rng.exponential(size=5000), 20.0 + rng.exponential(size=5000)
    scores = np.r_[quiet, loud]
    groups = np.r_[np.zeros(5000), np.ones(5000)]
    fit = fit_threshold(scores, groups, false_alarms_per_hour=1 / 24, window_hop_s=0.1)
    assert fit.threshold >= loud.max()
    # held out, the loud recording exceeds the quiet one's threshold: that is reported
    assert fit.held_out_exceedance[1] > 0.5 and fit.held_out_exceedance[0] == 0.0
