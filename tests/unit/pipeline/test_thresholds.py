"""Telemanom-style dynamic threshold: the batch algorithm and its online use."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agent.pipeline.thresholds import (
    DEFAULT_Z,
    DynamicSettings,
    DynamicThreshold,
    ThresholdError,
    anomalous_sequences,
    fit_dynamic,
    prune_sequences,
    telemanom_epsilon,
)

finite = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)


def test_epsilon_separates_a_burst_from_noise():
    rng = np.random.default_rng(0)
    e = np.abs(rng.normal(1.0, 0.1, 500))
    e[200:205] = 5.0
    eps = telemanom_epsilon(e)
    assert e[:200].max() < eps <= 5.0
    assert anomalous_sequences(e, eps) == [(200, 205)]


def test_epsilon_of_constant_errors_flags_nothing():
    e = np.full(50, 2.0)
    assert telemanom_epsilon(e) == pytest.approx(2.0)  # μ + z·0
    assert anomalous_sequences(e, telemanom_epsilon(e) + 1e-12) == []


def test_criterion_penalizes_many_sequences():
    # Same points above, but scattered into many sequences: the criterion prefers a higher ε
    # that leaves fewer sequences.
    rng = np.random.default_rng(1)
    e = np.abs(rng.normal(1.0, 0.05, 400))
    scattered = e.copy()
    scattered[::40] = 1.6
    scattered[100] = 6.0
    eps = telemanom_epsilon(scattered)
    assert 1.6 < eps <= 6.0


def test_pruning_drops_a_sequence_that_barely_exceeds_the_nominal_tail():
    e = np.array([1.0, 1.0, 3.0, 1.0, 10.0, 1.0, 2.95, 1.0])
    seqs = [(2, 3), (4, 5)]
    # eps between 2.95 and 3: maxima 10, 3 and nominal max 2.95: 3 → 2.95 is < 13 %.
    kept = prune_sequences(e, seqs, 2.97, min_decrease=0.13)
    assert kept == [(4, 5)]


def test_pruning_keeps_everything_above_a_clear_drop():
    e = np.array([1.0, 8.0, 1.0, 6.0, 1.0])
    kept = prune_sequences(e, [(1, 2), (3, 4)], 2.0, min_decrease=0.13)
    assert kept == [(1, 2), (3, 4)]


def test_bad_inputs_name_the_fix():
    with pytest.raises(ThresholdError, match="non-finite"):
        telemanom_epsilon([1.0, float("nan")])
    with pytest.raises(ThresholdError, match="at least one"):
        telemanom_epsilon([])
    with pytest.raises(ThresholdError, match="min_decrease"):
        prune_sequences([1.0, 2.0], [(1, 2)], 1.5, min_decrease=1.5)
    with pytest.raises(ThresholdError, match="min_history"):
        DynamicSettings(history=10, min_history=20)
    with pytest.raises(ThresholdError, match="floor"):
        DynamicSettings(floor=2.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=200))
def test_epsilon_is_one_of_the_candidates(values):
    e = np.asarray(values)
    eps = telemanom_epsilon(e)
    candidates = [e.mean() + z * e.std() for z in DEFAULT_Z]
    assert min(abs(eps - c) for c in candidates) <= 1e-9 * max(1.0, abs(eps))


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=200), st.floats(0.0, 0.9))
def test_pruned_sequences_are_a_subset_above_epsilon(values, p):
    e = np.asarray(values)
    eps = telemanom_epsilon(e)
    seqs = anomalous_sequences(e, eps)
    kept = prune_sequences(e, seqs, eps, p)
    assert set(kept) <= set(seqs)
    for a, b in seqs:
        assert (e[a:b] >= eps).all()
        assert a == 0 or e[a - 1] < eps
        assert b == len(e) or e[b] < eps


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=2, max_size=200), st.floats(0.01, 1e3))
@example([135.0, 135.0, 135.0], 0.01)  # std of the scaled copy is 2.2e-16, not 0
def test_fit_is_scale_equivariant(values, scale):
    e = np.asarray(values)
    s = DynamicSettings(min_history=2)
    assert fit_dynamic(e * scale, s) == pytest.approx(fit_dynamic(e, s) * scale, rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=2, max_size=200))
def test_fit_is_above_every_unflagged_value(values):
    e = np.asarray(values)
    s = DynamicSettings(min_history=2)
    threshold = fit_dynamic(e, s)
    eps = telemanom_epsilon(e, s.z_values)
    assert threshold >= eps
    assert threshold >= e[e < eps].max(initial=0.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(finite, min_size=0, max_size=300), st.floats(0.1, 100.0))
def test_online_threshold_stays_in_its_band(values, calibrated):
    s = DynamicSettings(history=64, min_history=8, refit_every=4, floor=0.5, ceiling=3.0)
    dyn = DynamicThreshold(calibrated, s)
    for v in values:
        dyn.learn(v)
        assert 0.5 * calibrated <= dyn.current() <= 3.0 * calibrated


def test_online_threshold_uses_calibration_until_history_is_long_enough():
    dyn = DynamicThreshold(10.0, DynamicSettings(history=32, min_history=16, refit_every=1))
    for _ in range(15):
        dyn.learn(1.0)
    assert dyn.current() == 10.0 and dyn.fits == 0
    dyn.learn(float("nan"))  # ignored
    assert dyn.history_size == 15
    dyn.learn(1.0)
    assert dyn.fits == 1 and dyn.current() == pytest.approx(8.0)  # floor 0.8 × 10


def test_online_threshold_follows_the_normal_level_both_ways():
    rng = np.random.default_rng(3)
    # up: above the calibrated 1.0; down: to the floor (0.8 × calibrated), not below
    for level, low, high in ((0.95, 1.0001, 4.0), (0.2, 0.8, 0.8)):
        dyn = DynamicThreshold(1.0, DynamicSettings(history=128, min_history=32, refit_every=8))
        for v in np.abs(rng.normal(level, 0.05 * level, 400)):
            if v < dyn.current():  # the caller only feeds clean windows
                dyn.learn(float(v))
        assert low <= dyn.current() <= high, level


def test_online_threshold_never_learns_what_it_is_not_given():
    # Everything above the calibrated threshold (a fault from the start): nothing is clean,
    # so nothing is learned and the calibrated threshold stays.
    dyn = DynamicThreshold(1.0, DynamicSettings(history=64, min_history=8, refit_every=1))
    for v in np.linspace(2.0, 3.0, 100):
        if v < dyn.current():
            dyn.learn(float(v))
    assert dyn.current() == 1.0 and dyn.history_size == 0
