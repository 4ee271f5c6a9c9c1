"""RaPP scoring math against independent slow implementations and hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.rapp import (
    NAP_FLOAT32_RTOL,
    RappError,
    attribution_weights,
    channel_attribution,
    default_rtol,
    error_shares,
    excess_votes,
    fit_nap,
    float32_nap,
    holdout_spread,
    nap_float32_error,
    nap_probes,
    nap_score,
    pathway_differences,
    recon_score,
    sap_score,
    stable_nap,
)

GOLDEN = Path(__file__).parents[2] / "golden" / "rapp_scores.json"


def slow_nap(train: np.ndarray, test: np.ndarray, rtol: float) -> np.ndarray:
    """Mahalanobis-style NAP on the retained subspace, with explicit loops.

    Eigen-decompose the scatter matrix (D−μ)ᵀ(D−μ) = V S² Vᵀ instead of an SVD of D, keep
    eigenvalues with sqrt(λ) > rtol·sqrt(λ_max), and sum ((d−μ)·v_j)² / λ_j term by term.
    """
    mu = [sum(train[i, j] for i in range(len(train))) / len(train) for j in range(train.shape[1])]
    centered = train - np.array(mu)
    scatter = centered.T @ centered
    eigval, eigvec = np.linalg.eigh(scatter)
    s = np.sqrt(np.clip(eigval, 0, None))
    keep = [j for j in range(len(s)) if s[j] > rtol * s.max()]
    out = []
    for row in test:
        total = 0.0
        for j in keep:
            proj = sum((row[m] - mu[m]) * eigvec[m, j] for m in range(len(row)))
            total += proj * proj / eigval[j]
        out.append(total)
    return np.array(out)


def test_nap_matches_slow_implementation():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(12, 12))
    train = rng.normal(size=(200, 12)) @ mixing
    test = rng.normal(size=(30, 12)) @ mixing + rng.normal(size=(30, 12))
    params = fit_nap(train, rtol=1e-6)
    np.testing.assert_allclose(nap_score(test, params), slow_nap(train, test, 1e-6), rtol=1e-6)


def test_nap_rank_deficient_bottleneck_stays_finite_and_stable():
    """Columns that are exact linear copies (a bottleneck without activation) add zero
    singular values; they must be cut, not divided by."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(300, 5))
    train = np.concatenate([base, base @ rng.normal(size=(5, 7))], axis=1).astype(np.float32)
    params = fit_nap(train)
    assert params.k == 5, "only the 5 independent directions may be kept"
    test = train[:20] + np.float32(1e-3) * rng.normal(size=(20, 12)).astype(np.float32)
    scores = nap_score(test, params)
    assert np.isfinite(scores).all()
    # Tiny perturbations give tiny score changes: no blow-up through 1/s_j ≈ 1/eps.
    assert np.max(np.abs(scores - nap_score(train[:20], params))) < 1.0
    assert params.rtol == pytest.approx(default_rtol(300, 12))


def test_sap_and_recon_hand_computed():
    x = np.array([[1.0, 2.0], [0.0, 0.0]])
    x_hat = np.array([[1.5, 1.0], [0.0, 3.0]])
    assert recon_score(x, x_hat).tolist() == [0.25 + 1.0, 9.0]
    h1, h1_hat = np.array([[1.0], [2.0]]), np.array([[3.0], [2.0]])
    diffs = pathway_differences((x, h1), (x_hat, h1_hat), layers=(0, 1))
    assert diffs.tolist() == [[0.5, -1.0, 2.0], [0.0, 3.0, 0.0]]
    assert sap_score(diffs).tolist() == [0.25 + 1.0 + 4.0, 9.0]
    only_hidden = pathway_differences((x, h1), (x_hat, h1_hat), layers=(1,))
    assert sap_score(only_hidden).tolist() == [4.0, 0.0]


def test_nap_batch_is_one_gemm_equivalent_to_rowwise():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(100, 8))
    params = fit_nap(train)
    test = rng.normal(size=(16, 8))
    rowwise = np.array([nap_score(row[None, :], params)[0] for row in test])
    np.testing.assert_allclose(nap_score(test, params), rowwise, rtol=1e-12)


def test_golden_scores_unchanged():
    """Checked-in golden vectors: a change to the scoring math must show up here."""
    golden = json.loads(GOLDEN.read_text())
    train = np.array(golden["train"])
    test = np.array(golden["test"])
    params = fit_nap(train, rtol=golden["rtol"])
    np.testing.assert_allclose(nap_score(test, params), golden["nap"], rtol=1e-9)
    np.testing.assert_allclose(sap_score(test), golden["sap"], rtol=1e-12)


@pytest.mark.parametrize(
    ("diffs", "message"),
    [
        (np.zeros((1, 3)), "at least 2 rows"),
        (np.full((4, 3), np.nan), "NaN or inf"),
        (np.ones((4, 3)), "no variance"),
        (np.ones(3), "2-D array"),
    ],
)
def test_fit_nap_rejects_bad_input(diffs, message):
    with pytest.raises(RappError, match=message):
        fit_nap(diffs)


def test_nap_rejects_wrong_width():
    params = fit_nap(np.random.default_rng(0).normal(size=(10, 4)))
    with pytest.raises(RappError, match="do not belong together"):
        nap_score(np.zeros((2, 5)), params)


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(min_value=3, max_value=40),
    m=st.integers(min_value=1, max_value=12),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_nap_is_nonnegative_and_finite(n, m, seed):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n, m)) * rng.uniform(0.0, 10.0, size=m)
    params = fit_nap(train)
    scores = nap_score(rng.normal(size=(5, m)), params)
    assert np.isfinite(scores).all() and (scores >= 0).all()
    # The training rows' mean score equals k/N·… only loosely; but μ itself scores zero.
    assert nap_score(params.mu[None, :], params)[0] == pytest.approx(0.0, abs=1e-9)


def test_channel_attribution_names_the_faulted_channel():
    # features: 2 channels × 3 samples, channel-major
    x = np.zeros((1, 6))
    x_hat = np.array([[0.1, 0.1, 0.1, 2.0, 2.0, 2.0]])
    weights = attribution_weights(np.array([0, 0, 0, 1, 1, 1]), np.ones(6), 2)
    shares = channel_attribution(x, x_hat, weights)
    assert shares.shape == (1, 2)
    assert shares[0].sum() == pytest.approx(1.0)
    assert shares[0, 1] > 0.99
    # A channel that is always loose on calibration data is down-weighted.
    scaled = attribution_weights(
        np.array([0, 0, 0, 1, 1, 1]), np.array([1, 1, 1, 1e3, 1e3, 1e3]), 2
    )
    assert channel_attribution(x, x_hat, scaled)[0, 0] > 0.5


def test_float32_nap_runs_in_float32_and_returns_float64():
    rng = np.random.default_rng(3)
    train = (rng.normal(size=(300, 10)) @ rng.normal(size=(10, 10))).astype(np.float32)
    params = fit_nap(train)
    fast = float32_nap(params)
    assert fast.projection.dtype == np.float32 and fast.mu.dtype == np.float32
    scores = nap_score(train[:20], fast)
    assert scores.dtype == np.float64
    np.testing.assert_allclose(scores, nap_score(train[:20], params), rtol=NAP_FLOAT32_RTOL)


def test_nap_probes_score_at_the_requested_levels():
    rng = np.random.default_rng(4)
    params = fit_nap(rng.normal(size=(200, 8)) * rng.uniform(0.1, 5.0, 8))
    probes = nap_probes(params, (0.01, 2.0), per_level=5)
    assert probes.shape == (10, 8) and probes.dtype == np.float32
    np.testing.assert_allclose(nap_score(probes, params), [0.01] * 5 + [2.0] * 5, rtol=1e-3)


def test_float32_error_flags_a_mean_float32_cannot_resolve():
    """Differences far from the origin but close to μ: float32 loses d − μ."""
    rng = np.random.default_rng(5)
    train = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12))
    params = fit_nap(train)
    near = nap_probes(params, (1e-3, 1e-2))
    assert nap_float32_error(params, near) <= NAP_FLOAT32_RTOL
    far = fit_nap(train + 1e5)
    assert nap_float32_error(far, nap_probes(far, (1e-3, 1e-2))) > NAP_FLOAT32_RTOL


def test_error_shares_are_channel_attribution():
    per_channel = np.array([[1.0, 3.0], [0.0, 0.0]])
    np.testing.assert_allclose(error_shares(per_channel), [[0.25, 0.75], [0.5, 0.5]])


def _decaying(n: int, m: int, seed: int) -> np.ndarray:
    """Normal-like difference rows: a spectrum decaying over four decades."""
    rng = np.random.default_rng(seed)
    scales = np.logspace(0, -4, m)
    return rng.normal(size=(n, m)) * scales + 3.0


def test_holdout_spread_is_one_on_the_fit_rows():
    d = _decaying(200, 20, 0)
    nap = fit_nap(d)
    np.testing.assert_allclose(holdout_spread(nap, len(d), d), 1.0, rtol=1e-9)


def test_stable_nap_keeps_every_direction_when_the_data_support_them():
    fit, hold = _decaying(4000, 20, 1), _decaying(4000, 20, 2)
    nap = fit_nap(fit)
    assert nap.k >= 15
    assert stable_nap(nap, len(fit), hold).k == nap.k


def test_stable_nap_drops_directions_fitted_to_noise():
    # As many fit rows as columns: the smallest singular values describe these rows only.
    fit, hold = _decaying(60, 80, 3), _decaying(400, 80, 4)
    nap = fit_nap(fit)
    stable = stable_nap(nap, len(fit), hold)
    assert 1 <= stable.k < nap.k
    np.testing.assert_array_equal(stable.projection, nap.projection[:, : stable.k])
    # What was kept holds on new rows: their NAP is near its fit-row level (k / N per row).
    new = _decaying(400, 80, 5)
    per_row_fit = stable.k / len(fit)
    assert nap_score(new, stable).mean() < 3 * per_row_fit
    assert nap_score(new, nap).mean() > 5 * nap.k / len(fit)


@settings(max_examples=15, deadline=None)
@given(st.integers(30, 400), st.integers(0, 1000))
def test_stable_rank_grows_no_faster_than_the_data(n, seed):
    """Kept directions never exceed the rtol rule's and stay below half the fit rows once
    the fit is rank-limited by its rows (the case where the rtol rule followed N − 1)."""
    fit, hold = _decaying(n, 120, seed), _decaying(n, 120, seed + 1)
    nap = fit_nap(fit)
    stable = stable_nap(nap, n, hold)
    assert 1 <= stable.k <= nap.k
    if nap.k == n - 1:
        assert stable.k < 0.75 * n


def test_a_local_deviation_outvotes_an_error_spill():
    """Simulator friction on J3: the error spills onto every channel, most where normal
    error is steadiest; the input deviation stays on J3. Summed z-scores named J6."""
    error = np.array([[88.0, 194.0, 88.0, 200.0, 210.0, 263.0]])
    error[0, 0] = 150.0
    deviation = np.array([[2.0, 2.0, 96.0, 2.0, 2.0, 2.0]])
    assert int(np.argmax(error + deviation)) == 5
    votes = excess_votes(error, deviation)
    assert int(np.argmax(votes)) == 2
    assert votes.sum() < 2.0


def test_excess_votes_are_small_and_continuous_near_normal():
    rng = np.random.default_rng(0)
    tiny = rng.uniform(0, 1e-3, size=(50, 6))
    votes = excess_votes(tiny, tiny[::-1])
    assert votes.max() < 0.01
    nudged = excess_votes(tiny + 1e-9, tiny[::-1])
    assert np.abs(nudged - votes).max() < 1e-8


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_excess_votes_one_row_path_matches_the_batch_path(seed):
    rng = np.random.default_rng(seed)
    e = np.maximum(rng.normal(scale=rng.uniform(0.1, 100), size=(5, 6)), 0.0)
    v = np.maximum(rng.normal(scale=rng.uniform(0.1, 100), size=(5, 6)), 0.0)
    batch = excess_votes(e, v)
    for i in range(len(e)):
        np.testing.assert_allclose(
            excess_votes(e[i : i + 1], v[i : i + 1])[0], batch[i], rtol=1e-12
        )
