"""Graded synthetic faults for fidelity checks: hard and subtle ones, so AUROC is not 1.0.

An AUROC of exactly 1.0 cannot show an int8 loss, so severities run from barely visible to
obvious. Faults are applied to normalized segments of a fresh recording (not the calibration
one): gain and offset on one axis (a worn gearbox, friction), a vibration, extra noise and a
small lag of one axis against the others.
"""

from __future__ import annotations

import numpy as np

from agent.core.features import FeatureSpec, Normalization, segment_features, segment_recording
from tests.support.synthetic import currents


def _fault(seg: np.ndarray, kind: str, severity: float, axis: int, t: np.ndarray) -> np.ndarray:
    out = seg.copy()
    if kind == "gain":
        out[:, axis] *= 1.0 + 0.4 * severity
    elif kind == "offset":
        out[:, axis] += 0.5 * severity
    elif kind == "vibration":
        out[:, axis] += 0.5 * severity * np.sin(2 * np.pi * 90.0 * t)
    elif kind == "noise":
        rng = np.random.default_rng(int(severity * 1e6) + axis)
        out[:, axis] += 0.3 * severity * rng.standard_normal(len(seg))
    elif kind == "lag":
        out[:, axis] = np.roll(seg[:, axis], max(1, round(4 * severity)))
    return out


FAULT_KINDS = ("gain", "offset", "vibration", "noise", "lag")


def fault_windows(
    spec: FeatureSpec, normalization: Normalization, seed: int = 11, n_samples: int = 16000
) -> tuple[np.ndarray, np.ndarray]:
    """(normal features, faulty features) from one fresh recording of ``n_samples``."""
    seg = segment_recording(spec, normalization, currents(n_samples, seed=seed)).segments
    half = len(seg) // 2
    normal, source = seg[:half], seg[half:]
    rng = np.random.default_rng(seed)
    t = np.arange(seg.shape[1]) / spec.sample_rate_hz
    faulty = np.stack(
        [
            _fault(
                s,
                FAULT_KINDS[i % len(FAULT_KINDS)],
                float(rng.uniform(0.05, 1.0)),
                int(rng.integers(spec.n_channels)),
                t,
            )
            for i, s in enumerate(source)
        ]
    )
    return segment_features(normal, spec.features), segment_features(faulty, spec.features)
