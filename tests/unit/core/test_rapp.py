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
    fit_nap,
    float32_nap,
    nap_float32_error,
    nap_probes,
    nap_score,
    pathway_differences,
    recon_score,
    sap_score,
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
