"""``precision = "auto"``: the fastest artifact whose fidelity gate the manifest records as
passed, timed on this device (agent.core.scoring.open_scorer)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from agent.core import scoring
from agent.core.bundle.loader import load_bundle
from agent.core.bundle.manifest import FidelityGate, parse_manifest
from agent.core.scoring import ScoringError, open_scorer, passed_fidelity_gate, step_seconds
from agent.models import ScorerSettings

PASSED = FidelityGate(spearman_nap=0.99, floor_spearman=0.98, auroc_drop=0.0, max_auroc_drop=0.005)
FAILED = replace(PASSED, spearman_nap=0.95)


@pytest.fixture(scope="module")
def bundle(built_bundle):
    return load_bundle(built_bundle.data)


def _with_gates(bundle, gates):
    return replace(bundle, manifest=replace(bundle.manifest, fidelity=gates))


def test_build_records_the_gate_the_agent_reads(bundle):
    gate = bundle.manifest.fidelity["onnx-int8"]
    assert gate.passed and gate.floor_spearman > 0
    assert "onnx-fp32" not in bundle.manifest.fidelity


def test_gate_decides_eligibility(bundle):
    fp32 = bundle.artifacts["onnx-fp32"].spec
    int8 = bundle.artifacts["onnx-int8"].spec
    assert passed_fidelity_gate(_with_gates(bundle, {}).manifest, fp32)
    assert passed_fidelity_gate(_with_gates(bundle, {"onnx-int8": PASSED}).manifest, int8)
    assert not passed_fidelity_gate(_with_gates(bundle, {"onnx-int8": FAILED}).manifest, int8)
    assert not passed_fidelity_gate(_with_gates(bundle, {}).manifest, int8)


def test_malformed_gate_records_are_left_out(built_bundle):
    raw = dict(built_bundle.manifest)
    raw["sanity"] = {
        **raw["sanity"],
        "fidelity": {"onnx-int8": {"spearman_nap": "high"}, "other": None},
    }
    parsed = parse_manifest(json.dumps(raw).encode())
    assert parsed.fidelity == {}


@pytest.mark.parametrize(
    ("fast", "seconds"), [("onnx-int8", [2.0, 1.0]), ("onnx-fp32", [1.0, 2.0])]
)
def test_auto_keeps_the_fastest(bundle, monkeypatch, fast, seconds):
    timed = []

    def fake(scorers, x):
        timed.append([s.artifact.id for s in scorers])
        return seconds

    monkeypatch.setattr(scoring, "step_seconds", fake)
    scorer = open_scorer(bundle, "onnxruntime", "auto")
    assert timed == [["onnx-fp32", "onnx-int8"]]
    assert scorer.artifact.id == fast


def test_auto_never_times_an_artifact_that_failed_its_gate(bundle, monkeypatch):
    timed = []
    monkeypatch.setattr(
        scoring, "step_seconds", lambda scorers, x: timed.append(scorers) or [1.0] * len(scorers)
    )
    scorer = open_scorer(_with_gates(bundle, {"onnx-int8": FAILED}), "onnxruntime", "auto")
    assert scorer.artifact.id == "onnx-fp32"
    assert [s.artifact.id for s in timed[0]] == ["onnx-fp32"]


def test_auto_with_nothing_usable_names_every_reason(bundle, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(ScoringError, match="precision = auto") as info:
        open_scorer(_with_gates(bundle, {"onnx-int8": FAILED}), "onnxruntime", "auto")
    assert "onnx-int8: no passed fidelity gate" in str(info.value)
    assert "onnx-fp32" in str(info.value)


def test_step_seconds_times_every_candidate(bundle):
    scorer = open_scorer(bundle, "onnxruntime", "fp32")
    seconds = step_seconds([scorer, scorer], bundle.canary_inputs[:1], rounds=2, calls=3)
    assert len(seconds) == 2 and all(0 < s < 1 for s in seconds)


def test_scorer_settings_pass_auto_through(bundle):
    scorer = ScorerSettings(backend="onnxruntime", precision="auto").open(bundle)
    assert passed_fidelity_gate(bundle.manifest, scorer.artifact)
    assert scorer.path == "fused"
