"""Small deterministic current-like recordings for tests (the real data is not in a clone)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CHANNELS = ("J1", "J2", "J3", "J4", "J5", "J6")


def currents(n: int, seed: int, fault_from: int | None = None, fault_axis: int = 1) -> np.ndarray:
    """Six periodic 'joint currents' (shoulder/elbow large, wrists small) plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 1000.0
    amp = np.array([4.0, 8.0, 6.0, 0.4, 0.3, 0.2])
    phase = rng.uniform(0, 2 * np.pi)
    base = np.stack(
        [a * np.sin(2 * np.pi * 0.8 * t * (1 + 0.1 * k) + phase + k) for k, a in enumerate(amp)],
        axis=1,
    )
    base += 0.3 * amp * np.sign(np.cos(2 * np.pi * 0.8 * t + phase))[:, None]
    x = base + 0.02 * amp * rng.normal(size=base.shape)
    if fault_from is not None:
        # torque ripple on one axis: visible within a short window, unlike a slow gain change
        x[fault_from:, fault_axis] += 3.0 * np.sin(2 * np.pi * 40.0 * t[fault_from:])
    return x.astype(np.float32)


def write_csv(path: Path, x: np.ndarray, labels: np.ndarray | None = None) -> Path:
    t = np.arange(len(x)) / 1000.0
    with open(path, "w") as handle:
        handle.write("time_s," + ",".join(CHANNELS) + ",fault\n")
        for i in range(len(x)):
            label = "" if labels is None else labels[i]
            handle.write(f"{t[i]:.3f}," + ",".join(f"{v:.5f}" for v in x[i]) + f",{label}\n")
    return path
