"""Two bundles of the session's synthetic model, one per 'program', for archive tests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agent.bundle import load_bundle
from agent.bundle.archive import pack_archive, read_archive
from agent.scoring import open_scorer


def _bundle(trained_model, calibration_segments, bundle_id: str, programs: tuple[int, ...]):
    from exporter.build import BuildSettings, build_bundle

    built = build_bundle(
        trained_model,
        calibration_segments,
        BuildSettings(bundle_id=bundle_id, robot="r1", programs=programs, quantize=False),
    )
    return built.data


def _relabel(data: bytes, bundle_id: str, programs: tuple[int, ...]) -> bytes:
    """The same (unsigned) bundle under another id and program list: only the manifest
    changes, and the manifest is not among the hashed files."""
    files = dict(read_archive(data))
    manifest = json.loads(files["manifest.json"])
    manifest["bundle_id"] = bundle_id
    manifest["robot"]["programs"] = list(programs)
    files["manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    return pack_archive(files)


@pytest.fixture(scope="session")
def program_bundles(trained_model, calibration_segments) -> dict[int, bytes]:
    """Bundle bytes serving program 1 ("p1") and program 2 ("p2"), fp32 only (fast)."""
    p1 = _bundle(trained_model, calibration_segments, "p1", (1,))
    return {1: p1, 2: _relabel(p1, "p2", (2,))}


@pytest.fixture
def scorers(program_bundles):
    """Fresh fp32 scorers for programs 1 and 2."""
    return {
        p: open_scorer(load_bundle(data), "onnxruntime", "fp32")
        for p, data in program_bundles.items()
    }


def ripple(x: np.ndarray, axis: int = 1, amplitude: float = 3.0) -> np.ndarray:
    """The daemon tests' fault: a 40 Hz ripple on one axis."""
    t = np.arange(len(x)) / 1000.0
    y = x.copy()
    y[:, axis] += amplitude * np.sin(2 * np.pi * 40.0 * t)
    return y
