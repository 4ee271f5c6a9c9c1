"""Cheap membership prediction for the model archive.

A robot may carry one bundle per program. When the frames carry the program id the pipeline
routes by it; when they do not (program -1, e.g. JSON over MQTT) it must guess which models
the window belongs to *before* running them, and notice when it belongs to none (a program
nobody trained a model for), which otherwise scores as an endless "fault".

The guess uses the input statistics a bundle already carries for attribution
(``manifest.attribution``): per feature, the calibration mean and spread of the normalized
input. For each channel, the window's deviation Σ_f ((x_f − m_f)/s_f)² is divided by its
calibration mean, so a normal window of the model's program gives ratios near 1 on every
channel. The membership distance is a low order statistic of those ratios (the 2nd smallest
of 6 channels): a fault moves a few axes, another program moves them all. On the simulator,
normal windows give 1–6, faulted windows ≤ 12, windows of another program ≥ 70 (see
benchmarks/results/ops_eval.md); the default limit is 25.

Bundles without those statistics are always candidates and report no confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.core.bundle import Bundle
from agent.core.errors import AgentInputError
from agent.core.features import segment_features
from agent.core.rapp import channel_deviation


class MembershipError(AgentInputError, ValueError):
    """Invalid membership settings; the message names the fix."""


@dataclass(frozen=True)
class MembershipSettings:
    """max_distance: windows farther than this from every model are "unknown program".
    max_candidates: at most this many nearest models score a window."""

    max_distance: float = 25.0
    max_candidates: int = 2

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_distance) and self.max_distance > 1):
            raise MembershipError(
                f"membership max_distance = {self.max_distance}: must be > 1 (e.g. 25)"
            )
        if self.max_candidates < 1:
            raise MembershipError(f"membership max_candidates = {self.max_candidates}: ≥ 1")


class MembershipModel:
    """Distance of raw windows (physical units) to one bundle's calibration inputs."""

    def __init__(self, bundle: Bundle) -> None:
        stats = bundle.manifest.attribution
        if stats is None:
            raise MembershipError(
                f"bundle {bundle.bundle_id!r} has no attribution statistics; rebuild it with "
                "this exporter to enable membership prediction"
            )
        spec = bundle.manifest.input
        self._spec = spec
        self._norm = bundle.normalization
        self._mean = np.asarray(stats.feature_mean)
        self._std = np.asarray(stats.feature_std)
        self._dev = np.maximum(np.asarray(stats.deviation_mean), 1e-12)
        self._channels = spec.feature_channel()
        self._order = max(0, (spec.n_channels - 1) // 4)

    @classmethod
    def of(cls, bundle: Bundle) -> MembershipModel | None:
        """The model, or None for bundles built without input statistics."""
        return cls(bundle) if bundle.manifest.attribution is not None else None

    def distance(self, raw: np.ndarray) -> np.ndarray:
        """Membership distance of windows ``raw`` (N × L × C, physical units); ~1 = member."""
        x = segment_features(self._norm.apply(raw), self._spec.features)
        ratio = channel_deviation(x, self._mean, self._std, self._channels) / self._dev
        # Two-sided: a channel far quieter than calibration is as foreign as a louder one.
        log_ratio = np.abs(np.log(np.maximum(ratio, 1e-12)))
        return np.exp(np.sort(log_ratio, axis=1)[:, self._order])


def confidence(distances: Sequence[float], max_distance: float) -> float:
    """Membership confidence in [0, 1] from the sorted distances to the candidate models.

    (1 − d₁/limit) × (1 − d₁/d₂): near 1 when the window sits well inside one model and far
    from the next, 0 when it is at the limit or equally close to two models.
    """
    if not distances:
        return 0.0
    d1 = float(distances[0])
    inside = max(0.0, 1.0 - d1 / max_distance)
    if len(distances) < 2:
        return inside
    d2 = float(distances[1])
    margin = max(0.0, 1.0 - d1 / d2) if d2 > 0 else 0.0
    return inside * margin


def select_candidates(
    distance: np.ndarray, settings: MembershipSettings
) -> list[tuple[list[int], float | None]]:
    """For each window (row of ``distance``, windows × models; NaN = the model has no
    statistics) the models that should score it, and the membership confidence.

    The nearest models within ``max_distance`` (at most ``max_candidates``) are candidates;
    a model without statistics cannot be ruled out, so it is always one. An empty candidate
    list means no model is near: the window is unknown.
    """
    out: list[tuple[list[int], float | None]] = []
    for row in np.asarray(distance, dtype=np.float64):
        known = np.flatnonzero(np.isfinite(row))
        unknown_stats = np.flatnonzero(~np.isfinite(row)).tolist()
        by_distance = known[np.argsort(row[known], kind="stable")]
        near = [int(r) for r in by_distance if row[r] <= settings.max_distance]
        conf = confidence(row[by_distance].tolist(), settings.max_distance) if known.size else None
        out.append((near[: settings.max_candidates] + unknown_stats, conf))
    return out
