"""Fault injection and labels: how each :class:`FaultSpec` changes the arm's currents.

Faults act where they would in a real drive train — friction and payload inside the dynamics,
impulses and ripple as extra motor current, sensor faults on the ADC counts — and every effect
is a pure function of the sample time, so chunked simulation stays exact. Backlash, which
depends on the torque history, has its own module (:mod:`firmware_config.simulator.backlash`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from firmware_config.simulator.config import N_AXES, FaultSpec

FRICTION_GAIN = 1.0  # friction × (1 + gain × severity) when fully developed
COLLISION_GAIN = 0.8
RIPPLE_GAIN = 0.06
RIPPLE_ORDER = 12.0  # ripple periods per radian of joint travel


def active(t: np.ndarray, fault: FaultSpec) -> np.ndarray:
    """Samples inside the fault's labelled interval [onset, end)."""
    return (t >= fault.onset_s) & (t < fault.end_s)


def first_active_index(fault: FaultSpec, sample_rate_hz: int) -> int:
    """Index of the first sample with ``t >= onset`` (same float predicate as :func:`active`)."""
    index = max(0, math.ceil(fault.onset_s * sample_rate_hz))
    while index > 0 and (index - 1) / sample_rate_hz >= fault.onset_s:
        index -= 1
    while index / sample_rate_hz < fault.onset_s:
        index += 1
    return index


def friction_scale(t: np.ndarray, faults: Sequence[FaultSpec]) -> np.ndarray:
    """Per-sample, per-axis friction multiplier (n, 6) from friction faults."""
    scale = np.ones((t.shape[0], N_AXES))
    for fault in faults:
        if fault.kind != "friction":
            continue
        elapsed = t - fault.onset_s
        if fault.ramp_s > 0:
            progress = np.clip(elapsed / fault.ramp_s, 0.0, 1.0)
        else:
            progress = (elapsed >= 0).astype(np.float64)
        progress = np.where(active(t, fault), progress, 0.0)
        scale[:, fault.axis - 1] *= 1.0 + FRICTION_GAIN * fault.severity * progress
    return scale


def payload_scale(t: np.ndarray, faults: Sequence[FaultSpec]) -> np.ndarray:
    """Per-sample payload multiplier (n,) from payload faults (never below zero)."""
    scale = np.ones(t.shape[0])
    for fault in faults:
        if fault.kind != "payload":
            continue
        change = -fault.severity if fault.effective_mode == "loss" else fault.severity
        scale = np.where(active(t, fault), scale * max(0.0, 1.0 + change), scale)
    return scale


def extra_currents(
    t: np.ndarray, q: np.ndarray, faults: Sequence[FaultSpec], rated: np.ndarray
) -> np.ndarray:
    """Motor current added by collision and ripple faults, (n, 6) amps."""
    extra = np.zeros((t.shape[0], N_AXES))
    for fault in faults:
        axis = fault.axis - 1
        amplitude = fault.severity * rated[axis]
        if fault.kind == "collision":
            mask = active(t, fault)
            phase = (t - fault.onset_s) / (fault.end_s - fault.onset_s)
            extra[:, axis] += np.where(mask, COLLISION_GAIN * amplitude * np.sin(np.pi * phase), 0)
        elif fault.kind == "ripple":
            wave = np.sin(RIPPLE_ORDER * q[:, axis])
            extra[:, axis] += np.where(active(t, fault), RIPPLE_GAIN * amplitude * wave, 0.0)
    return extra


def labels(t: np.ndarray, faults: Sequence[FaultSpec]) -> tuple[np.ndarray, np.ndarray]:
    """Fault code (n,) int8 (0 = normal) and labelled axis (n,) int8 (-1 = none).

    Where faults overlap, the most recent onset wins.
    """
    codes = np.zeros(t.shape[0], dtype=np.int8)
    axes = np.full(t.shape[0], -1, dtype=np.int8)
    for fault in sorted(faults, key=lambda f: f.onset_s):
        mask = active(t, fault)
        codes[mask] = fault.code
        axes[mask] = fault.axis
    return codes, axes
