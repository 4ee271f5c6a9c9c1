"""Synthetic anomalies made from normal segments: spikes, drift, scaling, channel
swap, time shift and noise, in normalized units. They verify int8 fidelity where it matters
(ranking anomalies above normal data) and feed the pseudo-anomaly sanity check."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Corruption = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _channel(seg: np.ndarray, rng: np.random.Generator) -> int:
    return int(rng.integers(seg.shape[2]))


def spike(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = seg.copy()
    idx = rng.integers(seg.shape[1], size=seg.shape[0])
    ch = rng.integers(seg.shape[2], size=seg.shape[0])
    out[np.arange(seg.shape[0]), idx, ch] += rng.choice([-6.0, 6.0], size=seg.shape[0])
    return out


def drift(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = seg.copy()
    ramp = np.linspace(0.0, 2.0, seg.shape[1], dtype=np.float32)
    out[:, :, _channel(seg, rng)] += ramp
    return out


def scaling(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = seg.copy()
    out[:, :, _channel(seg, rng)] *= 1.5
    return out


def channel_swap(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if seg.shape[2] < 2:
        return scaling(seg, rng)
    a, b = rng.choice(seg.shape[2], size=2, replace=False)
    out = seg.copy()
    out[:, :, [a, b]] = seg[:, :, [b, a]]
    return out


def time_shift(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if seg.shape[1] < 4:
        return noise(seg, rng)
    return np.roll(seg, seg.shape[1] // 4, axis=1)


def noise(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (seg + rng.normal(0.0, 0.5, size=seg.shape)).astype(np.float32)


CORRUPTIONS: dict[str, Corruption] = {
    "spike": spike,
    "drift": drift,
    "scaling": scaling,
    "channel_swap": channel_swap,
    "time_shift": time_shift,
    "noise": noise,
}


def make_pseudo_anomalies(segments: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """One corrupted copy of ``segments`` (N × L × C) per corruption kind."""
    rng = np.random.default_rng(seed)
    return {name: fn(segments, rng).astype(np.float32) for name, fn in CORRUPTIONS.items()}


# Shifted *normal* data: what a healthy machine drifts into between calibrations. The int8
# gate ranks these too — in distribution int8 can match fp32 (Spearman 0.99) and still rank
# shifted windows unlike it (0.56 measured on a healthy recording of another day).
def gain_drift(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return seg * rng.uniform(0.9, 1.1, size=(len(seg), 1, seg.shape[2]))


def offset_drift(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return seg + rng.uniform(-0.2, 0.2, size=(len(seg), 1, seg.shape[2]))


def sensor_noise(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return seg + rng.normal(0.0, 0.1, size=seg.shape)


def time_warp(seg: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each window played 5 % faster or slower (resampled along time)."""
    length = seg.shape[1]
    if length < 2:
        return sensor_noise(seg, rng)
    grid = np.arange(length, dtype=np.float64)
    out = np.empty_like(seg)
    for i, window in enumerate(seg):
        speed = rng.choice((0.95, 1.05))
        source = np.clip(grid * speed, 0, length - 1)
        for c in range(seg.shape[2]):
            out[i, :, c] = np.interp(source, grid, window[:, c])
    return out


SHIFTS = {
    "gain": gain_drift,
    "offset": offset_drift,
    "noise": sensor_noise,
    "time_warp": time_warp,
}


def make_shifted_normal(segments: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Normal segments under each mild shift of :data:`SHIFTS` (N × L × C each)."""
    rng = np.random.default_rng(seed + 1)
    return {name: fn(segments, rng).astype(np.float32) for name, fn in SHIFTS.items()}
