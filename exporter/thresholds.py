"""Alarm thresholds for a target false-alarm rate that hold on every calibration recording.

One quantile of one pooled calibration set does not transfer: healthy recordings of the
same machine differ in level, and a 0.999 quantile of a few thousand windows is itself a
noisy estimate. Here the threshold is chosen per score as follows:

1. The target rate (false alarms per hour of operation, e.g. 1 per 24 h; opt-in with
   ``rapp-export build --false-alarms-per-day``) becomes an exceedance probability per
   decision interval, ``p = rate · max(hop, 2.5 s) / 3600`` (an alarm cannot raise, clear
   and raise again faster than its clear hold), applied per window — conservative, since an
   alarm needs several windows over the threshold (debounce).
2. For each calibration recording (group), the score level exceeded with probability ``p``:
   empirical when the recording has ≥ 1/p windows, else extrapolated with a generalized
   Pareto tail fitted above the recording's 90th percentile (peaks over threshold, method of
   moments, shape clipped to [−0.5, 0.5]) — the extreme-value step SPOT (Siffer et al., KDD
   2017) uses for streaming thresholds — but never more than one decade beyond the sample
   (p ≥ 0.1 / windows): a tail fitted on thousands of windows says little about 1e-7.
3. The threshold is the largest of those levels, so it holds on the worst recording
   (leave-one-recording-out: each recording's exceedance is then reported against the
   threshold fitted on the *others*, the expected rate on a new healthy recording).

With one group only, the recording is cut into :data:`MIN_GROUPS` contiguous blocks so the
worst-block rule still guards against level changes within it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from exporter.errors import ExportInputError

TAIL_QUANTILE = 0.9
MIN_TAIL_POINTS = 10
MIN_GROUPS = 4
SHAPE_LIMIT = 0.5
# An alarm raised and cleared takes at least the clear hold (agent.core.bundle.manifest
# CLEAR_HOLD_S, 2.5 s): over-threshold windows closer than that are one decision, not many.
DECISION_INTERVAL_S = 2.5
EXTRAPOLATION_DECADES = 0.1


@dataclass(frozen=True)
class ThresholdFit:
    threshold: float
    per_window_probability: float
    # Leave-one-group-out: share of each group's windows above the threshold fitted on the
    # other groups, and the false alarms per hour that share implies.
    held_out_exceedance: tuple[float, ...]
    held_out_windows_per_hour: float

    def to_json(self) -> dict[str, object]:
        return {
            "threshold": self.threshold,
            "per_window_probability": self.per_window_probability,
            "held_out_exceedance": [float(f"{v:.6g}") for v in self.held_out_exceedance],
            "held_out_windows_over_per_hour": float(f"{self.held_out_windows_per_hour:.6g}"),
        }


def per_window_probability(false_alarms_per_hour: float, window_hop_s: float) -> float:
    """Exceedance probability per decision interval (see the module docstring)."""
    if false_alarms_per_hour <= 0 or window_hop_s <= 0:
        raise ExportInputError(
            f"false-alarm target {false_alarms_per_hour}/h with windows every {window_hop_s} s: "
            "both must be > 0 (e.g. --false-alarms-per-day 1)"
        )
    interval_s = max(window_hop_s, DECISION_INTERVAL_S)
    return min(false_alarms_per_hour * interval_s / 3600.0, 0.5)


def tail_level(values: np.ndarray, probability: float) -> float:
    """The level ``values`` exceed with ``probability``: empirical where the sample resolves
    it, else a generalized Pareto extrapolation of the upper tail."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if len(x) == 0:
        raise ExportInputError("a calibration group has no windows")
    if probability * len(x) >= 1.0:
        return float(np.quantile(x, 1.0 - probability))
    # Extrapolate at most one decade beyond what the sample resolves.
    probability = max(probability, EXTRAPOLATION_DECADES / len(x))
    u = float(np.quantile(x, TAIL_QUANTILE))
    excess = x[x > u] - u
    if len(excess) < MIN_TAIL_POINTS or excess.std() == 0:
        return float(x[-1])
    mean, var = float(excess.mean()), float(excess.var())
    # Method of moments for the GPD: ξ = (1 − m²/v)/2, σ = m (m²/v + 1)/2.
    ratio = mean * mean / var
    shape = float(np.clip(0.5 * (1.0 - ratio), -SHAPE_LIMIT, SHAPE_LIMIT))
    scale = 0.5 * mean * (ratio + 1.0)
    zeta = len(excess) / len(x)
    if abs(shape) < 1e-6:
        level = u + scale * np.log(zeta / probability)
    else:
        level = u + scale / shape * ((probability / zeta) ** (-shape) - 1.0)
    return float(max(level, x[-1]))


def _groups(n: int, groups: np.ndarray | None) -> list[np.ndarray]:
    if groups is not None and len(np.unique(groups)) >= 2:
        return [np.flatnonzero(groups == g) for g in np.unique(groups)]
    return [block for block in np.array_split(np.arange(n), MIN_GROUPS) if len(block)]


def fit_threshold(
    scores: np.ndarray,
    groups: np.ndarray | None,
    false_alarms_per_hour: float,
    window_hop_s: float,
) -> ThresholdFit:
    """Threshold of one score over calibration windows labelled by recording ``groups``."""
    p = per_window_probability(false_alarms_per_hour, window_hop_s)
    parts = [scores[idx] for idx in _groups(len(scores), groups)]
    levels = [tail_level(part, p) for part in parts]
    held_out = []
    for i, part in enumerate(parts):
        others = max(level for j, level in enumerate(levels) if j != i)
        held_out.append(float(np.mean(part > others)))
    # A held-out exceedance share q means q · 3600 / hop windows an hour over the threshold;
    # every alarm needs at least one, so this bounds the false alarms an hour from above.
    expected = max(held_out) * 3600.0 / window_hop_s
    return ThresholdFit(max(levels), p, tuple(held_out), expected)


def fit_thresholds(
    held: Mapping[str, np.ndarray],
    groups: np.ndarray | None,
    false_alarms_per_hour: float,
    window_hop_s: float,
) -> dict[str, ThresholdFit]:
    return {
        name: fit_threshold(values, groups, false_alarms_per_hour, window_hop_s)
        for name, values in held.items()
    }
