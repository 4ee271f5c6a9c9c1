"""The input residual view of the combined score: fit, gate, storage, scoring."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agent.core.density import (
    LatentDensity,
    calibrate,
    combined_score,
    density_score,
    fit_latent_density,
    latent_scores,
)
from agent.core.residual import (
    MAX_GAP,
    InputResidual,
    ResidualError,
    fit_input_residual,
)


def _low_rank(n: int, seed: int, features: int = 40, rank: int = 4) -> np.ndarray:
    """Normal inputs near a ``rank``-dimensional subspace shared by every seed."""
    basis = np.random.default_rng(99).normal(size=(rank, features))
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, rank)) @ basis + 0.05 * rng.normal(size=(n, features))


def test_a_subspace_that_generalizes_is_admitted_and_scores_off_subspace_windows_high():
    fit = fit_input_residual(_low_rank(2000, 1), _low_rank(2000, 2))
    assert fit.residual is not None and fit.k == 4 and abs(fit.gap) < MAX_GAP
    normal = fit.residual.level(_low_rank(500, 3))
    assert 0.8 < np.median(normal) < 1.25, "1 for a typical normal window"
    off = _low_rank(50, 4) + np.random.default_rng(5).normal(size=(50, 40))
    assert (fit.residual.level(off) > np.quantile(normal, 0.999)).all()


def test_a_subspace_fitted_on_too_few_windows_is_refused_with_its_gap():
    """Fewer windows than features: the basis fits its own windows and not new ones."""
    rng = np.random.default_rng(0)
    fit = fit_input_residual(rng.normal(size=(60, 200)), rng.normal(size=(300, 200)))
    assert fit.residual is None and fit.gap > MAX_GAP
    assert fit.summary()["admitted"] is False and "further off" in fit.reason


def test_arrays_round_trip_inside_the_density_and_a_wrong_width_is_named():
    fit = fit_input_residual(_low_rank(1000, 1), _low_rank(1000, 2))
    codes = np.random.default_rng(0).normal(size=(1000, 3))
    nap = np.random.default_rng(1).chisquare(5, size=1000)
    params = dataclasses.replace(
        calibrate(nap, codes, fit_latent_density(codes)), residual=fit.residual
    )
    back = LatentDensity.from_arrays(params.arrays("a"), "a")
    assert back is not None and back.residual is not None
    x = _low_rank(20, 7)
    np.testing.assert_allclose(back.residual.level(x), fit.residual.level(x))
    with pytest.raises(ResidualError, match=r"N × 40"):
        fit.residual.level(np.zeros((2, 39)))
    arrays = params.arrays("a")
    del arrays["a.residual_scale"]
    with pytest.raises(ValueError, match="residual_scale"):
        LatentDensity.from_arrays(arrays, "a")


def test_combined_adds_the_residual_level_on_both_the_batch_and_one_window_paths():
    fit = fit_input_residual(_low_rank(1000, 1), _low_rank(1000, 2))
    rng = np.random.default_rng(3)
    codes, nap = rng.normal(size=(1000, 3)), rng.chisquare(5, size=1000)
    plain = calibrate(nap, codes, fit_latent_density(codes))
    params = dataclasses.replace(plain, residual=fit.residual)
    x = np.r_[_low_rank(30, 8), rng.normal(size=(5, 40))]
    z, n = codes[: len(x)], nap[: len(x)]
    _, combined = latent_scores(z, n, params, x)
    assert isinstance(fit.residual, InputResidual)
    want = combined_score(n, density_score(z, plain), plain) + fit.residual.level(x)
    np.testing.assert_allclose(combined, want, rtol=1e-12)
    for i in range(len(x)):
        one = latent_scores(z[i : i + 1], n[i : i + 1], params, x[i : i + 1])[1]
        np.testing.assert_allclose(one, combined[i : i + 1], rtol=1e-10)  # GEMV vs GEMM
    with pytest.raises(ValueError, match="pass the inputs"):
        latent_scores(z, n, params)


def test_the_shipped_bundle_scores_its_input_view_the_same_on_fused_and_numpy_paths():
    """The default bundle's build admitted the view: both scorer paths and its canary agree."""
    from agent.core.backends import create_backend
    from agent.core.bundle import load_bundle
    from agent.core.scoring import Scorer
    from agent.models import default_bundle_path

    bundle = load_bundle(default_bundle_path())
    loaded = bundle.artifacts["onnx-fp32"]
    assert loaded.density is not None and loaded.density.residual is not None
    assert bundle.report["input_residual"]["admitted"] is True
    fused = Scorer.open(bundle, loaded, create_backend(loaded, bundle, "onnxruntime"))
    reference = Scorer(bundle, loaded, create_backend(loaded, bundle, "onnxruntime"))
    assert fused.path == "fused"
    x = bundle.canary_inputs
    np.testing.assert_allclose(fused.score(x).combined, reference.score(x).combined, rtol=1e-4)
    one = np.concatenate([fused.score(x[i : i + 1]).combined for i in range(len(x))])
    np.testing.assert_allclose(one, reference.score(x).combined, rtol=1e-4)
    assert fused.check_canary() <= loaded.spec.canary_rtol
