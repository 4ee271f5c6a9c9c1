"""The fused scoring step (agent.core.backends.fusion, onnx_step, onnxruntime's FusedStep)
against the float64 numpy reference in agent.core.rapp, and the scorer's choice of path."""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from agent.core.backends import BackendError, create_backend
from agent.core.backends.fusion import FusedStep, StepMatrices, step_matrices
from agent.core.backends.onnx_step import OUTPUT, PREFIX, append_step
from agent.core.backends.onnxruntime_backend import BOUND_BATCH_SIZES
from agent.core.bundle.loader import LoadedArtifact, load_bundle
from agent.core.bundle.manifest import SCORE_NAMES
from agent.core.rapp import (
    NapParams,
    attribution_weights,
    channel_attribution,
    channel_excess,
    error_shares,
    excess_votes,
    fit_channel_standardizer,
    fit_nap,
    nap_score,
    pathway_differences,
    recon_score,
    relative_error,
    sap_score,
)
from agent.core.scoring import FUSED_RTOL, Scorer, open_scorer
from agent.models import default_bundle_path

# --- the algebra, in numpy: the matrices reproduce the reference ------------------------------


def _evaluate(step: StepMatrices, hidden, hidden_hat) -> np.ndarray:
    """The documented fused algebra (agent.core.backends.fusion) in float64 numpy."""
    d = np.concatenate([hidden_hat[i] - hidden[i] for i in step.layers], axis=1)
    blocks = [d]
    if step.separate_recon:
        blocks.append(hidden_hat[0] - hidden[0])
    if step.feature_mean is not None:
        blocks.append(hidden[0] - step.feature_mean)
    blocks.append((d - step.nap_mean) @ step.nap_projection.astype(np.float64))
    r = np.concatenate(blocks, axis=1)
    return np.maximum(np.square(r) @ step.reduce - step.offset, 0.0)


def _random_pathway(rng, widths, n):
    hidden = [rng.normal(size=(n, w)) for w in widths]
    hidden_hat = [h + rng.normal(scale=0.1, size=h.shape) for h in hidden]
    return hidden, hidden_hat


@pytest.mark.parametrize("layers", [(0, 1, 2), (1, 2), (2, 0)], ids=["all", "no-0", "2-0"])
@pytest.mark.parametrize("standardized", [True, False], ids=["standardized", "shares"])
def test_step_matrices_reproduce_the_reference(layers, standardized):
    rng = np.random.default_rng(0)
    widths, n_channels = (6, 4, 2), 3
    channel = np.array([0, 0, 1, 1, 2, 2])
    hidden, hidden_hat = _random_pathway(rng, widths, 200)
    weights = attribution_weights(channel, rng.uniform(0.5, 2.0, 6), n_channels)
    nap = fit_nap(pathway_differences(hidden, hidden_hat, layers))
    stats = fit_channel_standardizer(hidden[0], hidden_hat[0], weights, channel)
    step = step_matrices(layers, widths, nap, weights, channel, stats if standardized else None)
    test_h, test_hh = _random_pathway(rng, widths, 20)
    got = _evaluate(step, test_h, test_hh)
    diffs = pathway_differences(test_h, test_hh, layers)
    ref = [recon_score(test_h[0], test_hh[0]), sap_score(diffs), nap_score(diffs, nap)]
    for column, expected in enumerate(ref):
        np.testing.assert_allclose(got[:, column], expected, rtol=1e-5)
    if standardized:
        expected = channel_excess(test_h[0], test_hh[0], weights, channel, stats)
        votes = excess_votes(got[:, 3 : 3 + n_channels], got[:, 3 + n_channels :])
        np.testing.assert_allclose(votes, expected, rtol=1e-4, atol=1e-4)
    else:
        expected = channel_attribution(test_h[0], test_hh[0], weights)
        np.testing.assert_allclose(error_shares(got[:, 3:]), expected, rtol=1e-5)


# --- the ONNX graph --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(built_bundle):
    return load_bundle(built_bundle.data)


def _scorers(bundle, artifact_id: str = "onnx-fp32"):
    loaded = bundle.artifacts[artifact_id]
    backend = create_backend(loaded, bundle, "onnxruntime")
    return Scorer.open(bundle, loaded, backend), Scorer(bundle, loaded, backend)


def _windows(bundle, n: int = 96, seed: int = 0) -> np.ndarray:
    """Canary windows, and noisy and scaled variants of them (normal to clearly anomalous)."""
    rng = np.random.default_rng(seed)
    base = bundle.canary_inputs[rng.integers(0, len(bundle.canary_inputs), n)]
    scale = rng.choice([0.0, 0.05, 0.5], size=(n, 1))
    return (base + scale * rng.normal(size=base.shape)).astype(np.float32)


def _assert_matches(fast: Scorer, reference: Scorer, x: np.ndarray) -> None:
    got, want = fast.score(x), reference.score(x)
    for name in SCORE_NAMES:
        assert relative_error(got.get(name), want.get(name)) <= FUSED_RTOL, name
    offset = fast.step_matrices().offset
    scale = np.abs(want.contributions) + np.abs(offset).max() + 1.0
    assert (np.abs(got.contributions - want.contributions) / scale).max() <= FUSED_RTOL


def test_extended_model_is_valid_onnx_with_the_step_appended(bundle):
    fast, _ = _scorers(bundle)
    loaded = bundle.artifacts["onnx-fp32"]
    step = fast.step_matrices()
    original = onnx.load_from_string(loaded.model)
    extended = onnx.load_from_string(append_step(loaded.model, loaded.spec.io, step))
    onnx.checker.check_model(extended)
    graph = extended.graph
    assert [n.name for n in graph.node[: len(original.graph.node)]] == [
        n.name for n in original.graph.node
    ]
    assert [o.name for o in graph.output] == [*(o.name for o in original.graph.output), OUTPUT]
    arrays = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    blocks = [arrays[f"{PREFIX}reduce_{i}"] for i in range(len(step.blocks))]
    np.testing.assert_array_equal(np.concatenate(blocks), step.reduce)
    np.testing.assert_array_equal(arrays[PREFIX + "nap_projection"], step.nap_projection)


@pytest.mark.parametrize("artifact_id", ["onnx-fp32", "onnx-int8"])
def test_fused_scores_match_the_float64_reference(bundle, artifact_id):
    fast, reference = _scorers(bundle, artifact_id)
    assert fast.path == "fused"
    _assert_matches(fast, reference, _windows(bundle))
    assert fast.check_canary() <= fast.artifact.canary_rtol


def test_bundle_without_attribution_statistics_fuses_error_shares(bundle):
    legacy = replace(bundle, manifest=replace(bundle.manifest, attribution=None))
    fast, reference = _scorers(legacy)
    assert fast.path == "fused" and fast.step_matrices().feature_mean is None
    _assert_matches(fast, reference, _windows(legacy))
    np.testing.assert_allclose(fast.score(legacy.canary_inputs).contributions.sum(axis=1), 1.0)


def _with_layers(bundle, layers: tuple[int, ...]):
    """The bundle with NAP refitted on a subset of the pathway's layers."""
    loaded = bundle.artifacts["onnx-fp32"]
    pathway = create_backend(loaded, bundle, "onnxruntime").run(_windows(bundle, 1600, seed=1))
    nap = fit_nap(pathway_differences(pathway.hidden, pathway.hidden_hat, layers))
    spec = replace(loaded.spec, nap_k=nap.k)
    artifacts = {"onnx-fp32": LoadedArtifact(spec, loaded.model, nap)}
    manifest = replace(bundle.manifest, rapp_layers=layers, artifacts=(spec,))
    return replace(bundle, manifest=manifest, artifacts=artifacts)


@pytest.mark.parametrize("layers", [(1, 2), (2, 0, 1)], ids=["without-x", "reordered"])
def test_layer_selections_fuse(bundle, layers):
    variant = _with_layers(bundle, layers)
    fast, reference = _scorers(variant)
    assert fast.path == "fused"
    assert fast.step_matrices().separate_recon == (0 not in layers)
    _assert_matches(fast, reference, _windows(variant))


def test_every_batch_size_and_no_aliasing_between_calls(bundle):
    fast, reference = _scorers(bundle)
    x = _windows(bundle)
    first = fast.score(x[:3])
    kept = first.as_matrix().copy(), first.contributions.copy()
    for n in range(1, BOUND_BATCH_SIZES + 4):  # more sizes than stay bound
        _assert_matches(fast, reference, x[:n])
    np.testing.assert_array_equal(first.as_matrix(), kept[0])
    np.testing.assert_array_equal(first.contributions, kept[1])
    _assert_matches(fast, reference, x[:3])  # after its binding was evicted


def test_concurrent_calls_get_their_own_scores(bundle):
    fast, _ = _scorers(bundle)
    inputs = [_windows(bundle, 4, seed=s) for s in range(4)]
    expected = [fast.score(x).nap for x in inputs]
    failures = []

    def worker(i: int) -> None:
        for _ in range(200):
            if not np.array_equal(fast.score(inputs[i]).nap, expected[i]):
                failures.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_fused_step_rejects_bad_input_like_the_backend(bundle):
    fast, _ = _scorers(bundle)
    dim = bundle.manifest.input.feature_dim
    for shape in [(0, dim), (2, dim + 1), (dim,)]:
        with pytest.raises(BackendError, match=rf"\(batch, {dim}\)|empty batch"):
            fast.score(np.zeros(shape, np.float32))
    np.testing.assert_allclose(
        fast.score(bundle.canary_inputs.astype(np.float64)).nap,
        fast.score(bundle.canary_inputs).nap,
    )


# --- choice of path --------------------------------------------------------------------------


class _WrongStep(FusedStep):
    def run(self, x: np.ndarray) -> np.ndarray:
        return np.ones((len(x), 9))


class _FailingStep(FusedStep):
    def run(self, x: np.ndarray) -> np.ndarray:
        raise BackendError("the runtime failed")


@pytest.mark.parametrize("step", [_WrongStep(), _FailingStep()], ids=["wrong", "failing"])
def test_a_step_that_misses_the_reference_is_not_used(bundle, monkeypatch, step):
    loaded = bundle.artifacts["onnx-fp32"]
    backend = create_backend(loaded, bundle, "onnxruntime")
    monkeypatch.setattr(backend, "fuse", lambda matrices: step)
    scorer = Scorer.open(bundle, loaded, backend)
    assert scorer.path == "numpy-float32-nap"
    assert scorer.check_canary() <= loaded.spec.canary_rtol


def test_a_runtime_that_cannot_build_the_step_falls_back_to_numpy(bundle, monkeypatch):
    loaded = bundle.artifacts["onnx-fp32"]
    backend = create_backend(loaded, bundle, "onnxruntime")

    def broken(step):
        raise BackendError("no")

    monkeypatch.setattr(backend, "fuse", broken)
    assert Scorer.open(bundle, loaded, backend).path == "numpy-float32-nap"
    assert Scorer.open(bundle, loaded, backend, fuse=False).path == "numpy-float32-nap"


def test_a_spectrum_float32_cannot_resolve_keeps_float64(bundle):
    """μ far from the origin: float32 rounding of d and μ swamps d − μ for normal windows."""
    loaded = bundle.artifacts["onnx-fp32"]
    far = replace(loaded.nap, mu=loaded.nap.mu + 1e4)
    shifted = LoadedArtifact(loaded.spec, loaded.model, far)
    backend = create_backend(shifted, bundle, "onnxruntime")
    scorer = Scorer.open(bundle, shifted, backend)
    assert scorer.path == "numpy-float64-nap"
    x = _windows(bundle, 8)
    np.testing.assert_array_equal(
        scorer.score(x).nap, Scorer(bundle, shifted, backend).score(x).nap
    )


def test_shipped_default_bundle_fuses_and_keeps_its_numpy_path():
    """The shipped bundle predates fusion: both paths serve it and pass its canary."""
    shipped = load_bundle(default_bundle_path().read_bytes())
    for precision in ("fp32", "int8"):
        fused = open_scorer(shipped, "onnxruntime", precision)
        assert fused.path == "fused"
        loaded = shipped.artifacts[fused.artifact.id]
        numpy_path = Scorer(shipped, loaded, fused.backend)
        assert numpy_path.check_canary() <= loaded.spec.canary_rtol
        _assert_matches(fused, numpy_path, _windows(shipped))


def test_nap_params_dtype_is_what_scores(bundle):
    """Scorer(nap=float32 params) runs float32 NAP and still returns float64 scores."""
    fast, reference = _scorers(bundle)
    numpy32 = Scorer(bundle, bundle.artifacts["onnx-fp32"], fast.backend, nap=fast._nap)
    assert isinstance(numpy32._nap, NapParams) and numpy32.path == "numpy-float32-nap"
    scores = numpy32.score(bundle.canary_inputs)
    assert scores.nap.dtype == np.float64
    assert relative_error(scores.nap, reference.score(bundle.canary_inputs).nap) <= FUSED_RTOL
