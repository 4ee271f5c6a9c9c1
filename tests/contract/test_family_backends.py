"""The backend contract (tests/contract/test_backends.py) on the temporal model families.

Each family is trained briefly on the synthetic currents, built into a bundle by the real
exporter, loaded by the agent and run through the contract's per-artifact tests, imported
below: the fixtures ``case``, ``contract`` and ``bundle`` are overridden in this module, so
the imported tests run against each family's artifacts — the agent has no per-family code,
so it must pass them unchanged. conv1d ships all four artifacts (ONNX and TFLite, fp32 and
int8 behind the fidelity gate); lstm ships ONNX fp32 only (no QDQ kernel for LSTM, no
TFLite rebuild: exporter.onnx_export, exporter.families_tf).

Training is tiny (a few epochs on 750 windows) to keep CI time down; the contract checks
that what the exporter built is what the agent computes, not detection quality.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from tests.contract.test_backends import (  # noqa: F401  (collected here, on the families)
    test_any_batch_size_gives_the_same_rows,
    test_corrupt_model_bytes_raise_backend_error,
    test_fast_path_reproduces_the_float64_reference,
    test_golden_canary,
    test_input_is_float64_tolerant,
    test_manifest_names_a_missing_output,
    test_matches_pytorch_reference,
    test_opened_scorer_takes_the_fast_path,
    test_output_widths_follow_the_manifest,
    test_rejects_wrong_input_shapes,
    test_scores_stay_finite_on_extreme_inputs,
    test_two_threads_agree_with_one,
    test_whole_scoring_step_from_segments,
)
from tests.support.faults import fault_windows
from tests.support.fixtures.contract import Case, Contract
from tests.support.synthetic import CHANNELS, currents

WINDOW, HOP = 32, 32
ONNX_FP32 = Case("onnxruntime", "onnx", "fp32")
ONNX_INT8 = Case("onnxruntime", "onnx", "int8")
TFLITE_FP32 = Case("litert", "tflite", "fp32")
TFLITE_INT8 = Case("litert", "tflite", "int8")
FAMILY_ARTIFACTS = {
    "conv1d": (ONNX_FP32, ONNX_INT8, TFLITE_FP32, TFLITE_INT8),
    "lstm": (ONNX_FP32,),
}
# (family, n_layers): two conv blocks exercise the decoder's BatchNorm blocks and crops; one
# LSTM layer keeps the dynamo export (it traces an LSTM step by step) to seconds.
LAYERS = {"conv1d": 3, "lstm": 2}
EPOCHS = 4


@dataclass
class FamilyBuilds:
    """Each family's contract, built on first use and kept for the module."""

    built: dict[str, Contract] = field(default_factory=dict)
    logs: dict[str, list[str]] = field(default_factory=dict)

    def get(self, family: str) -> Contract:
        if family not in self.built:
            self.built[family] = self._build(family)
        return self.built[family]

    def _build(self, family: str) -> Contract:
        import torch

        from agent.core.features import FeatureSpec, Normalization, Segmentation
        from agent.core.features import segment_recording as segment
        from exporter.build import BuildSettings, build_bundle
        from exporter.model import PathwayModule, TrainedModel
        from exporter.tflite_export import tflite_candidates
        from exporter.train import TrainSettings, train_autoencoder

        spec = FeatureSpec(
            channels=CHANNELS,
            units=("A",) * len(CHANNELS),
            sample_rate_hz=1000.0,
            segmentation=Segmentation(kind="window", length=WINDOW, hop=HOP),
            features=("raw",),
        )
        samples = currents(24000, seed=1)
        norm = Normalization.fit(samples)
        settings = TrainSettings(
            n_layers=LAYERS[family], bottleneck=6, epochs=EPOCHS, seed=0, model=family
        )
        x = segment(spec, norm, samples).features
        model, history = train_autoencoder(x, settings, spec=spec)
        trained = TrainedModel(model, spec, norm, history)
        calibration = segment(spec, norm, currents(16000, seed=2)).segments
        tflite = any(c.format == "tflite" for c in FAMILY_ARTIFACTS[family])
        log: list[str] = self.logs.setdefault(family, [])
        built = build_bundle(
            trained,
            calibration,
            # lstm: int8 is not offered (onnx_export.int8_unsupported_reason)
            BuildSettings(bundle_id=f"contract-{family}", robot="r1", quantize=family != "lstm"),
            extra_artifacts=tflite_candidates if tflite else None,
            log=log.append,
        )
        normal, faulty = fault_windows(spec, norm, seed=11)
        with torch.no_grad():
            module = PathwayModule(model.eval()).eval()
            ref = tuple(t.numpy() for t in module(torch.from_numpy(np.r_[normal, faulty])))
        return Contract(built.data, None, built.report, normal, faulty, ref)


@pytest.fixture(scope="module")
def family_builds() -> FamilyBuilds:
    return FamilyBuilds()


FAMILY_CASES = [(f, c) for f, cases in FAMILY_ARTIFACTS.items() for c in cases]


@pytest.fixture(params=FAMILY_CASES, ids=[f"{f}-{c}" for f, c in FAMILY_CASES])
def family_case(request: pytest.FixtureRequest) -> tuple[str, Case]:
    return request.param


@pytest.fixture
def case(family_case: tuple[str, Case]) -> Case:
    return family_case[1]


@pytest.fixture
def contract(family_case: tuple[str, Case], family_builds: FamilyBuilds) -> Contract:
    return family_builds.get(family_case[0])


@pytest.fixture
def bundle(contract: Contract):
    from agent.core.bundle.loader import load_bundle

    return load_bundle(contract.data)


@pytest.mark.parametrize("family", list(FAMILY_ARTIFACTS))
def test_each_family_ships_its_artifacts(family, family_builds):
    from agent.core.bundle.loader import load_bundle

    contract = family_builds.get(family)
    bundle = load_bundle(contract.data)
    want = {c.artifact_id for c in FAMILY_ARTIFACTS[family]}
    assert set(bundle.artifacts) == want, contract.report["fidelity"]
    assert all(gate["passed"] for gate in contract.report["fidelity"].values())
    n_layers = LAYERS[family]
    assert len(bundle.manifest.layer_sizes) == n_layers + 1
    assert bundle.manifest.layer_sizes[0] == WINDOW * len(CHANNELS)
    assert bundle.manifest.layer_sizes[-1] == 6


def test_int8_request_serves_fp32_when_the_bundle_has_no_int8(family_builds):
    """The agent's default precision is int8; an lstm bundle (fp32 only, as built) must still
    load — the daemon's config and `rapp-agent score` would otherwise refuse a valid bundle."""
    from agent.core.bundle.loader import load_bundle
    from agent.core.scoring import open_scorer

    bundle = load_bundle(family_builds.get("lstm").data)
    scorer = open_scorer(bundle, "onnxruntime", "int8")
    assert scorer.artifact.precision == "fp32"
