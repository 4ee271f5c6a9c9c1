"""One real bundle with every artifact kind (ONNX and TFLite, fp32 and int8) per session.

Build mode (default): reuse the session's trained model and calibration segments from
``tests/conftest.py`` (synthetic currents through the real trainer), add
``tflite_candidates`` as ``extra_artifacts`` — so the contract runs against what
``rapp-export build --tflite`` ships — and compute the PyTorch eager reference outputs.

Fixture mode (``RAPP_CONTRACT_FIXTURE=DIR``): load ``DIR/contract.rapp`` and
``DIR/reference.npz`` instead, so the contract can run in a runtime-only venv without torch
or TensorFlow (e.g. tflite-runtime with numpy < 2, as on armv7 boxes). A build-mode run with
``RAPP_CONTRACT_SAVE=DIR`` writes that directory.

A missing runtime or TensorFlow fails the suite under CI (``CI`` set) and skips only on a
developer machine where ``CI`` is unset — a green CI must mean every backend ran.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.backends.faults import fault_windows

FIXTURE_ENV = "RAPP_CONTRACT_FIXTURE"
SAVE_ENV = "RAPP_CONTRACT_SAVE"
BUNDLE_FILE = "contract.rapp"
REFERENCE_FILE = "reference.npz"


@dataclass(frozen=True)
class Case:
    """One backend × precision of the contract."""

    backend: str
    format: str
    precision: str

    @property
    def artifact_id(self) -> str:
        return f"{self.format}-{self.precision}"

    def __str__(self) -> str:
        return f"{self.backend}-{self.precision}"


CASES = (
    Case("onnxruntime", "onnx", "fp32"),
    Case("onnxruntime", "onnx", "int8"),
    Case("litert", "tflite", "fp32"),
    Case("litert", "tflite", "int8"),
)


def unavailable(reason: str) -> None:
    """Fail under CI, skip locally: a missing runtime must never turn CI green silently."""
    if "CI" in os.environ:
        pytest.fail(f"{reason} — CI={os.environ['CI']!r}: a missing runtime fails the suite")
    pytest.skip(f"{reason} (skipped because CI is unset; CI fails instead)")


@dataclass(frozen=True)
class Contract:
    """The bundle under test, fresh test windows and the PyTorch reference on them."""

    data: bytes | None  # bundle bytes; None when TFLite artifacts could not be built
    error: str | None  # why not
    report: dict | None
    normal: np.ndarray  # (n × F) normal windows, not from calibration
    faulty: np.ndarray  # (m × F) graded synthetic faults
    reference: tuple[np.ndarray, ...]  # PyTorch h_1…h_L, x̂, ĥ_1…ĥ_L on [normal; faulty]

    @property
    def x(self) -> np.ndarray:
        return np.concatenate([self.normal, self.faulty])


def _build(request: pytest.FixtureRequest) -> Contract:
    import torch

    from exporter.build import BuildSettings, build_bundle
    from exporter.model import ExportError, PathwayModule
    from exporter.tflite_export import tflite_candidates

    trained = request.getfixturevalue("trained_model")
    calibration = request.getfixturevalue("calibration_segments")
    normal, faulty = fault_windows(trained.spec, trained.normalization, seed=11)
    with torch.no_grad():
        module = PathwayModule(trained.model.eval()).eval()
        ref = tuple(t.numpy() for t in module(torch.from_numpy(np.concatenate([normal, faulty]))))
    settings = BuildSettings(bundle_id="contract", robot="r1")
    try:
        built = build_bundle(trained, calibration, settings, extra_artifacts=tflite_candidates)
    except ExportError as err:
        if "install" not in str(err):
            raise
        return Contract(None, str(err), None, normal, faulty, ref)
    return Contract(built.data, None, built.report, normal, faulty, ref)


def _save(contract: Contract, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if contract.data is not None:
        (directory / BUNDLE_FILE).write_bytes(contract.data)
    arrays = {f"ref_{i}": r for i, r in enumerate(contract.reference)}
    np.savez(directory / REFERENCE_FILE, normal=contract.normal, faulty=contract.faulty, **arrays)


def _load(directory: Path) -> Contract:
    with np.load(directory / REFERENCE_FILE, allow_pickle=False) as npz:
        n_ref = sum(1 for k in npz.files if k.startswith("ref_"))
        ref = tuple(npz[f"ref_{i}"] for i in range(n_ref))
        normal, faulty = npz["normal"], npz["faulty"]
    return Contract((directory / BUNDLE_FILE).read_bytes(), None, None, normal, faulty, ref)


@pytest.fixture(scope="session")
def contract(request: pytest.FixtureRequest) -> Contract:
    if os.environ.get(FIXTURE_ENV):
        return _load(Path(os.environ[FIXTURE_ENV]))
    built = _build(request)
    if os.environ.get(SAVE_ENV):
        _save(built, Path(os.environ[SAVE_ENV]))
    return built


@pytest.fixture(scope="session")
def bundle(contract: Contract):
    from agent.bundle.loader import load_bundle

    if contract.data is None:
        unavailable(f"cannot build the TFLite artifacts: {contract.error}")
    return load_bundle(contract.data)


def make_backend(case: Case, bundle, threads: int = 1):
    """The case's backend on its artifact, or fail/skip when the runtime is missing."""
    from agent.backends import BackendError, create_backend

    loaded = bundle.artifacts[case.artifact_id]
    try:
        return create_backend(loaded, bundle, case.backend, threads)
    except BackendError as err:
        if "install" in str(err):
            unavailable(f"{case.backend} runtime missing: {err}")
        raise


@pytest.fixture(params=CASES, ids=str)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


@pytest.fixture
def scorer(case: Case, bundle):
    from agent.scoring import Scorer

    return Scorer(bundle, bundle.artifacts[case.artifact_id], make_backend(case, bundle))
