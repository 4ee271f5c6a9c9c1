"""Latent density and combined score: fit, storage, scoring on both scorer paths."""

from __future__ import annotations

import numpy as np
import pytest

from agent.core.backends import create_backend
from agent.core.density import (
    DensityError,
    LatentDensity,
    calibrate,
    combined_score,
    density_score,
    fit_latent_density,
)
from agent.core.scoring import Scorer


def _fitted(seed: int = 0) -> tuple[LatentDensity, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.normal(size=(4000, 5))
    nap = rng.chisquare(5, size=4000)
    return calibrate(nap, codes, fit_latent_density(codes)), codes


def test_typical_codes_score_near_one_and_outliers_higher() -> None:
    params, codes = _fitted()
    typical = density_score(codes, params)
    assert 0.7 < np.median(typical) < 1.3
    far = density_score(codes[:10] + 8.0, params)
    assert (far > np.quantile(typical, 0.999)).all()


def test_outside_the_histogram_range_grows_bounded_not_infinite() -> None:
    params, _ = _fitted()
    wild = density_score(np.full((1, 5), 1e6), params)
    assert np.isfinite(wild).all() and (wild > 1e20).all()


def test_combined_is_a_soft_maximum_of_its_two_views() -> None:
    params, codes = _fitted()
    nap = np.full(len(codes), 5.0)
    dens = density_score(codes, params)
    combined = combined_score(nap, dens, params)
    assert (combined > dens).all()
    louder = combined_score(nap * 100, dens, params)
    assert (louder > combined).all()


def test_arrays_round_trip_and_a_missing_one_is_named() -> None:
    params, codes = _fitted()
    arrays = params.arrays("onnx-fp32")
    back = LatentDensity.from_arrays(arrays, "onnx-fp32")
    assert back is not None
    np.testing.assert_allclose(density_score(codes, back), density_score(codes, params))
    assert LatentDensity.from_arrays({}, "onnx-fp32") is None
    del arrays["onnx-fp32.density_spread"]
    with pytest.raises(DensityError, match="density_spread"):
        LatentDensity.from_arrays(arrays, "onnx-fp32")


def test_codes_of_the_wrong_width_are_refused() -> None:
    params, _ = _fitted()
    with pytest.raises(DensityError, match="N × 5"):
        density_score(np.zeros((3, 4)), params)


def test_the_bundle_scores_density_the_same_on_fused_and_numpy_paths(bundle) -> None:
    loaded = bundle.artifacts["onnx-fp32"]
    assert loaded.density is not None and "combined" in loaded.spec.thresholds
    fused = Scorer.open(bundle, loaded, create_backend(loaded, bundle, "onnxruntime"))
    reference = Scorer(bundle, loaded, create_backend(loaded, bundle, "onnxruntime"))
    assert fused.path == "fused"
    x = bundle.canary_inputs
    got, want = fused.score(x), reference.score(x)
    assert got.names == ("recon", "sap", "nap", "density", "combined")
    np.testing.assert_allclose(got.density, want.density, rtol=1e-4)
    np.testing.assert_allclose(got.combined, want.combined, rtol=1e-4)
    assert fused.check_canary() <= loaded.spec.canary_rtol


def test_the_one_window_path_equals_the_batch_path() -> None:
    """The live path computes one window in Python floats; it must match numpy's batch."""
    from agent.core.density import latent_scores

    params, codes = _fitted(3)
    rng = np.random.default_rng(4)
    probes = np.r_[codes[:50], rng.normal(scale=4.0, size=(50, 5)), np.full((1, 5), 1e3)]
    nap = rng.chisquare(5, size=len(probes))
    batch_density, batch_combined = latent_scores(probes, nap, params)
    for i in range(len(probes)):
        density, combined = latent_scores(probes[i : i + 1], nap[i : i + 1], params)
        np.testing.assert_allclose(density, batch_density[i : i + 1], rtol=1e-12)
        np.testing.assert_allclose(combined, batch_combined[i : i + 1], rtol=1e-12)


def test_a_bundle_with_density_arrays_but_no_density_canary_is_refused(built_bundle) -> None:
    """A manifest that drops the density canary (but keeps the arrays) cannot reach a
    scorer that would look the canary up: the loader names the mismatch."""
    import json

    from agent.core.bundle import load_bundle
    from agent.core.bundle.archive import pack_archive, read_archive
    from agent.core.bundle.errors import BundleError
    from agent.core.bundle.manifest import MANIFEST_NAME

    files = dict(read_archive(built_bundle.data))
    manifest = json.loads(files[MANIFEST_NAME])
    for artifact in manifest["artifacts"]:
        del artifact["canary"]["density"], artifact["canary"]["combined"]
    files[MANIFEST_NAME] = json.dumps(manifest).encode()
    with pytest.raises(BundleError, match="arrays but no canary"):
        load_bundle(pack_archive(files))
