"""One contract for every backend × precision (SPEC §7): what the agent relies on.

Tolerances, and why:

- fp32 artifacts must reproduce the PyTorch eager pathway to ``FP32_RTOL`` = 1e-4 of each
  output's largest magnitude — both runtimes are float32 GEMMs with different summation
  order, nothing more (measured ~1e-6).
- the step as the agent opens it (``Scorer.open``: fused into the graph on onnxruntime,
  float32 NAP on LiteRT) must reproduce the float64 numpy reference on normal and faulty
  windows to ``FUSED_RTOL`` (agent.core.scoring): scores relative, attribution relative to
  (|value| + its calibration offset + 1); the ``scorer`` fixture runs every other test on
  both paths.
- int8 artifacts are judged where it matters, on NAP ranking: Spearman ρ between the int8
  NAP (with its own NAP fit, as the bundle ships it) and NAP of the PyTorch fp32 reference
  ≥ ``INT8_MIN_SPEARMAN`` on normal + graded-fault windows, and the AUROC may not fall more
  than ``INT8_MAX_AUROC_DROP`` — the SPEC §11 targets (0.98, 0.005). The int8 artifacts have
  int8 weights and 16-bit activations (exporter.onnx_export, exporter.tflite_export): with
  8-bit activations this session model measured ρ ≈ 0.94–0.95 for both runtimes, because NAP
  whitens directions whose normal variance is comparable to 8-bit rounding; with 16-bit
  activations ρ ≥ 0.99 (benchmarks/results/int8_fidelity.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from agent.core.backends import BackendError, create_backend
from agent.core.bundle.manifest import SCORE_NAMES
from agent.core.rapp import nap_score, pathway_differences, relative_error
from agent.core.scoring import FUSED_RTOL, Scorer, ScoringError, open_scorer, passed_fidelity_gate
from exporter.metrics import auroc, spearman
from tests.support.fixtures.contract import CASES, Case, make_backend, unavailable

FP32_RTOL = 1e-4
INT8_MIN_SPEARMAN = 0.98
INT8_MAX_AUROC_DROP = 0.005
# Same row, different batch size. fp32: summation order only. int8 (16-bit activations):
# onnxruntime runs them on float GEMM kernels that pick a different summation per batch size,
# and a last-bit difference that lands on a 16-bit rounding boundary moves an activation by
# one quantization step — measured ≤ 1.5e-3 relative in NAP on this model (12 of 64 rows).
BATCH_RTOL = {"fp32": 1e-5, "int8": 5e-3}


def _rel_error(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / max(float(np.abs(ref).max()), 1e-12))


def test_bundle_carries_every_case(bundle):
    assert {c.artifact_id for c in CASES} <= set(bundle.artifacts)


def test_golden_canary(scorer):
    worst = scorer.check_canary()
    assert worst <= scorer.artifact.canary_rtol


def test_output_widths_follow_the_manifest(scorer, bundle):
    x = bundle.canary_inputs
    pathway = scorer.backend.run(x)
    sizes = bundle.manifest.layer_sizes
    assert [h.shape for h in pathway.hidden] == [(len(x), s) for s in sizes]
    assert [h.shape for h in pathway.hidden_hat] == [(len(x), s) for s in sizes]
    assert all(h.dtype == np.float32 for h in (*pathway.hidden, *pathway.hidden_hat))


def test_matches_pytorch_reference(case, scorer, bundle, contract):
    x = contract.x
    pathway = scorer.backend.run(x)
    got = [*pathway.hidden[1:], *pathway.hidden_hat]
    ref = contract.reference
    if case.precision == "fp32":
        errors = [_rel_error(g, r) for g, r in zip(got, ref, strict=True)]
        assert max(errors) <= FP32_RTOL, f"per-output relative errors {errors}"
        return
    n = len(bundle.manifest.layer_sizes) - 1
    layers = bundle.manifest.rapp_layers
    diffs = pathway_differences((x, *ref[:n]), tuple(ref[n:]), layers)
    ref_nap = nap_score(diffs, bundle.artifacts[f"{case.format}-fp32"].nap)
    nap = scorer.score(x).nap
    labels = np.r_[np.zeros(len(contract.normal)), np.ones(len(contract.faulty))]
    rho = spearman(nap, ref_nap)
    drop = auroc(ref_nap, labels) - auroc(nap, labels)
    assert rho >= INT8_MIN_SPEARMAN, f"NAP Spearman vs fp32 reference {rho:.4f}"
    assert drop <= INT8_MAX_AUROC_DROP, f"NAP AUROC drop vs fp32 reference {drop:.4f}"


@pytest.mark.parametrize("sizes", [(1, 64, 7, 1), (64, 1, 64)], ids=["1-64-7-1", "64-1-64"])
def test_any_batch_size_gives_the_same_rows(case, scorer, contract, sizes):
    """Batch 1 (live) and 64 (catch-up) interleaved: resizing must not change any row."""
    x = contract.normal[:64]
    rtol = BATCH_RTOL[case.precision]
    whole = scorer.score(x)
    for size in sizes:
        part = scorer.score(x[:size])
        assert part.nap.shape == (size,)
        np.testing.assert_allclose(part.nap, whole.nap[:size], rtol=rtol, atol=1e-6)
    single = np.concatenate([scorer.score(x[i : i + 1]).nap for i in range(len(x))])
    np.testing.assert_allclose(single, whole.nap, rtol=rtol, atol=1e-6)


def test_whole_scoring_step_from_segments(scorer, bundle):
    """Scorer.score_segments (features + inference + NAP) at batch 1 and 64."""
    from agent.core.features import Segment

    rng = np.random.default_rng(0)
    spec = bundle.manifest.input
    samples = rng.normal(size=(64, spec.segmentation.length, spec.n_channels)).astype(np.float32)
    segments = [Segment(samples=s, start=i, stop=i + len(s)) for i, s in enumerate(samples)]
    for batch in (segments[:1], segments):
        scores = scorer.score_segments(batch)
        assert scores.nap.shape == (len(batch),)
        assert scores.contributions.shape == (len(batch), spec.n_channels)
        assert np.isfinite(scores.as_matrix()).all()


FAST_PATH = {"onnxruntime": "fused", "litert": "numpy-float32-nap"}


def test_opened_scorer_takes_the_fast_path(case, bundle):
    scorer = Scorer.open(bundle, bundle.artifacts[case.artifact_id], make_backend(case, bundle))
    assert scorer.path == FAST_PATH[case.backend]


@pytest.mark.parametrize("batch", [1, 64, None], ids=["b1", "b64", "all"])
def test_fast_path_reproduces_the_float64_reference(case, bundle, contract, batch):
    loaded = bundle.artifacts[case.artifact_id]
    backend = make_backend(case, bundle)
    fast, reference = Scorer.open(bundle, loaded, backend), Scorer(bundle, loaded, backend)
    x = contract.x[:batch]
    got, want = fast.score(x), reference.score(x)
    for name in SCORE_NAMES:
        assert relative_error(got.get(name), want.get(name)) <= FUSED_RTOL, name
    offset = fast.step_matrices().offset
    scale = np.abs(want.contributions) + np.abs(offset).max() + 1.0
    assert (np.abs(got.contributions - want.contributions) / scale).max() <= FUSED_RTOL
    assert all(v.dtype == np.float64 for v in (*got.as_matrix().T, got.contributions))


WRONG_SHAPES = {
    "one-feature": lambda dim: (1, 1),
    "too-few": lambda dim: (4, dim - 1),
    "too-many": lambda dim: (4, dim + 1),
    "empty": lambda dim: (0, dim),
    "1-d": lambda dim: (dim,),
    "3-d": lambda dim: (2, 1, dim),
}


@pytest.mark.parametrize("kind", list(WRONG_SHAPES))
def test_rejects_wrong_input_shapes(scorer, bundle, kind):
    dim = bundle.manifest.input.feature_dim
    x = np.zeros(WRONG_SHAPES[kind](dim), np.float32)
    with pytest.raises(BackendError, match=rf"\(batch, {dim}\)|empty batch") as info:
        scorer.backend.run(x)
    assert scorer.backend.name in str(info.value)


def test_scores_stay_finite_on_extreme_inputs(scorer, bundle):
    dim = bundle.manifest.input.feature_dim
    rng = np.random.default_rng(1)
    x = np.stack(
        [
            np.zeros(dim),
            np.full(dim, 50.0),
            np.full(dim, -50.0),
            rng.normal(0, 20, dim),
            bundle.canary_inputs[0] * 100,
        ]
    ).astype(np.float32)
    scores = scorer.score(x)
    assert np.isfinite(scores.as_matrix()).all()
    assert np.isfinite(scores.contributions).all()


def test_input_is_float64_tolerant(scorer, contract):
    """Callers may hand float64 or non-contiguous arrays; the base class converts them."""
    x = contract.normal[:8]
    as64 = scorer.score(x.astype(np.float64)).nap
    strided = scorer.score(np.asfortranarray(x)).nap
    np.testing.assert_allclose(as64, scorer.score(x).nap, rtol=1e-6)
    np.testing.assert_allclose(strided, as64, rtol=1e-6)


def test_two_threads_agree_with_one(case, bundle, contract):
    """Thread count may change float summation order, nothing more; for int8 (16-bit
    activations on float kernels, see BATCH_RTOL) that can move a value by one 16-bit step."""
    x = contract.normal[:64]
    atol = 1e-5 if case.precision == "fp32" else 1e-3
    one = make_backend(case, bundle, threads=1).run(x)
    two = make_backend(case, bundle, threads=2).run(x)
    for a, b in zip(one.hidden_hat, two.hidden_hat, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol)


def test_manifest_names_a_missing_output(case, bundle):
    """A bundle whose io names do not exist in the model is refused at load, not at run."""
    from dataclasses import replace

    from agent.core.bundle.loader import LoadedArtifact

    loaded = bundle.artifacts[case.artifact_id]
    make_backend(case, bundle)  # skip/fail first when the runtime is missing
    spec = replace(loaded.spec, io=replace(loaded.spec.io, x_hat="not_an_output"))
    broken = LoadedArtifact(spec=spec, model=loaded.model, nap=loaded.nap)
    with pytest.raises(BackendError, match="not_an_output"):
        create_backend(broken, bundle, case.backend)


def test_corrupt_model_bytes_raise_backend_error(case, bundle):
    from agent.core.bundle.loader import LoadedArtifact

    loaded = bundle.artifacts[case.artifact_id]
    make_backend(case, bundle)
    broken = LoadedArtifact(spec=loaded.spec, model=b"\x00garbage" * 64, nap=loaded.nap)
    with pytest.raises(BackendError, match=loaded.spec.path):
        create_backend(broken, bundle, case.backend)


def test_backend_refuses_the_other_format(case, bundle):
    other = next(c for c in CASES if c.format != case.format and c.precision == case.precision)
    with pytest.raises(BackendError, match=f"runs {case.format} models"):
        create_backend(bundle.artifacts[other.artifact_id], bundle, case.backend)


# --- open_scorer: automatic choice and missing runtimes ------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_open_scorer_auto_picks_a_working_backend(bundle, precision):
    scorer = open_scorer(bundle, "auto", precision)
    assert scorer.backend.name == "onnxruntime"  # first in AUTO_BACKEND_ORDER
    assert scorer.artifact.precision == precision
    assert np.isfinite(scorer.score(bundle.canary_inputs).nap).all()


@pytest.mark.parametrize("backend", ["auto", "onnxruntime", "litert"])
def test_open_scorer_auto_precision_picks_a_gated_artifact(bundle, backend):
    try:
        scorer = open_scorer(bundle, backend, "auto")
    except ScoringError as err:
        if "install" in str(err):
            unavailable(f"runtime missing: {err}")
        raise
    assert passed_fidelity_gate(bundle.manifest, scorer.artifact)
    if backend != "auto":
        assert scorer.backend.name == backend
    assert scorer.check_canary() <= scorer.artifact.canary_rtol


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_open_scorer_litert_explicitly(bundle, precision):
    try:
        scorer = open_scorer(bundle, "litert", precision)
    except ScoringError as err:
        if "install" in str(err):
            unavailable(f"litert runtime missing: {err}")
        raise
    assert scorer.backend.name == "litert"
    assert scorer.artifact.format == "tflite"


LITERT_MODULES = (
    "ai_edge_litert",
    "ai_edge_litert.interpreter",
    "tflite_runtime",
    "tflite_runtime.interpreter",
)


def _hide(monkeypatch, *modules: str) -> None:
    """Make ``import`` of these modules fail as if they were not installed."""
    for name in modules:
        monkeypatch.setitem(__import__("sys").modules, name, None)


def test_auto_falls_back_to_litert_without_onnxruntime(bundle, monkeypatch):
    make_backend(Case("litert", "tflite", "int8"), bundle)
    _hide(monkeypatch, "onnxruntime")
    scorer = open_scorer(bundle, "auto", "int8")
    assert scorer.backend.name == "litert"


def test_missing_litert_names_the_extra(bundle, monkeypatch):
    _hide(monkeypatch, *LITERT_MODULES)
    loaded = bundle.artifacts["tflite-int8"]
    with pytest.raises(BackendError, match=r"rapp-edge\[litert\]") as info:
        create_backend(loaded, bundle, "litert")
    assert "tflite-runtime" in str(info.value)
    with pytest.raises(ScoringError, match=r"rapp-edge\[litert\]"):
        open_scorer(bundle, "litert", "int8")


def test_no_runtime_at_all_lists_every_reason(bundle, monkeypatch):
    _hide(monkeypatch, "onnxruntime", *LITERT_MODULES)
    with pytest.raises(ScoringError, match="no usable backend") as info:
        open_scorer(bundle, "auto", "fp32")
    assert "onnxruntime" in str(info.value)
    assert "rapp-edge[litert]" in str(info.value)


def test_scorer_wraps_each_backend(bundle):
    """Every case's artifact opens through create_backend with its own backend name."""
    for case in CASES:
        backend = make_backend(case, bundle)
        scorer = Scorer(bundle, bundle.artifacts[case.artifact_id], backend)
        assert scorer.backend.name == case.backend


def test_litert_int8_runs_reproducible_builtin_kernels(bundle):
    """int8 on TFLite's fixed-point kernels (see litert_backend); XNNPACK stays available."""
    int8 = make_backend(Case("litert", "tflite", "int8"), bundle)
    assert int8.kernels == "builtin"
    assert make_backend(Case("litert", "tflite", "fp32"), bundle).kernels == "xnnpack"
    from agent.core.backends.litert_backend import LiteRtBackend

    loaded = bundle.artifacts["tflite-int8"]
    fast = LiteRtBackend(loaded.spec, loaded.model, bundle.manifest.input.feature_dim, 1, "xnnpack")
    x = bundle.canary_inputs
    a, b = int8.run(x), fast.run(x)
    for u, v in zip(a.hidden_hat, b.hidden_hat, strict=True):
        assert np.abs(u - v).max() <= 0.1 * max(float(np.abs(u).max()), 1.0)
    with pytest.raises(BackendError, match="kernels"):
        LiteRtBackend(loaded.spec, loaded.model, bundle.manifest.input.feature_dim, 1, "gpu")
