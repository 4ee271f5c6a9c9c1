"""The input-space view of the combined score: a window's distance from the principal
subspace of normal input features (a PCA residual), on the same calibrated scale as NAP and
the latent density (agent.core.density).

Why a third view: NAP and the latent density both look through the autoencoder; where a
fault is plain in the inputs but the code absorbs it (simulator backlash and ripple, digit
images) a linear model of the inputs ranks it better, and the soft maximum of the combined
score lets whichever view sees a fault carry it. Why a gate: with few windows for many
features the principal subspace fits its own windows and the residual grows on new normal
ones; such a view ranks new normal windows as anomalous (the CNC mill: 139–277 directions
from 256–556 windows of 1984 features, held-out residuals 0.3–1.5 calibrated spreads above
the fitted ones). The build admits the view only when the held-out windows' median log
residual exceeds the fitted windows' by at most MAX_GAP spreads (:func:`fit_input_residual`);
docs/architecture.md ("Scores") gives the measurements.

    r(x)  = ‖x − m‖² − ‖(x − m) V‖²         (V: F × k orthonormal, k reaching VARIANCE)
    level = exp(min((log r − centre) / spread, MAX_LEVEL))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from agent.core.array_group import array_group
from agent.core.errors import AgentInputError

# Principal directions kept: the fewest that explain this share of the fit windows' variance.
VARIANCE = 0.95
# Admission: the held-out windows' median log residual may exceed the fit windows' by at
# most this share of the calibrated spread (the q99 − median of the held-out windows).
MAX_GAP = 0.1
# At most this many stored basis values (F × k), so the view stays a small GEMV per window.
MAX_BASIS_VALUES = 1 << 18
# Windows used from each half, evenly spread: bounds the SVD's memory on long recordings
# (100,000 windows × 1984 features would be 1.6 GB in float64).
MAX_WINDOWS = 20_000
SCALE_QUANTILE = 0.99
MIN_SPREAD = 1e-6
MAX_LEVEL = 60.0
ARRAY_FIELDS = ("mean", "basis", "scale")


class ResidualError(AgentInputError, ValueError):
    """Input-residual parameters that do not fit the inputs or each other."""


@dataclass(frozen=True)
class InputResidual:
    """Mean ``mean`` (F,), orthonormal basis ``basis`` (F × k), and ``scale`` (2,): the
    calibrated scale's centre and spread of log r."""

    mean: np.ndarray
    basis: np.ndarray
    scale: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def log_residual(self, x: np.ndarray) -> np.ndarray:
        inputs = np.asarray(x, dtype=np.float64)
        if inputs.ndim != 2 or inputs.shape[1] != self.dim:
            raise ResidualError(f"inputs must be (N × {self.dim}), got shape {inputs.shape}")
        centred = inputs - self.mean
        projected = centred @ self.basis
        total = np.einsum("ij,ij->i", centred, centred)
        kept = np.einsum("ij,ij->i", projected, projected)
        return np.log(np.maximum(total - kept, 0.0) + 1e-12)

    def level(self, x: np.ndarray) -> np.ndarray:
        """exp of the calibrated log residual: 1 for a typical normal window, e at the
        calibration's 99th percentile (like the other views of the combined score)."""
        scaled = (self.log_residual(x) - self.scale[0]) / self.scale[1]
        return np.exp(np.minimum(scaled, MAX_LEVEL))

    def level_of_one(self, x: np.ndarray) -> float:
        """:meth:`level` of one window (F,): the live path, with five numpy calls instead of
        a dozen (the per-call overhead, not the arithmetic, is the cost at F × k = 384 × 3)."""
        centred = np.asarray(x, dtype=np.float64).reshape(self.dim) - self.mean
        projected = self._basis_rows @ centred
        residual = max(float(centred @ centred) - float(projected @ projected), 0.0)
        scaled = (math.log(residual + 1e-12) - float(self.scale[0])) / float(self.scale[1])
        return math.exp(min(scaled, MAX_LEVEL))

    @cached_property
    def _basis_rows(self) -> np.ndarray:
        return np.ascontiguousarray(self.basis.T)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.residual_{name}": getattr(self, name) for name in ARRAY_FIELDS}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> InputResidual | None:
        keys = {name: f"{prefix}.residual_{name}" for name in ARRAY_FIELDS}
        group = array_group(arrays, keys, ResidualError)
        if group is None:
            return None
        params = cls(**group)
        params.check()
        return params

    def check(self) -> None:
        f = self.dim
        if self.mean.ndim != 1 or self.basis.ndim != 2 or self.basis.shape[0] != f:
            raise ResidualError(
                f"residual_basis has shape {self.basis.shape}, not ({f} × k) for a mean of {f}"
            )
        if self.scale.shape != (2,) or not self.scale[1] > 0:
            raise ResidualError("residual_scale must be (centre, spread > 0)")
        if not all(np.isfinite(getattr(self, n)).all() for n in ARRAY_FIELDS):
            raise ResidualError("residual parameters contain NaN or inf; rebuild the bundle")


@dataclass(frozen=True)
class ResidualFit:
    """What :func:`fit_input_residual` decided, for the build report."""

    residual: InputResidual | None
    k: int
    gap: float
    reason: str

    def summary(self) -> dict[str, object]:
        return {
            "admitted": self.residual is not None,
            "k": self.k,
            "gap": round(self.gap, 4) if np.isfinite(self.gap) else None,  # JSON has no NaN
            "max_gap": MAX_GAP,
            "reason": self.reason,
        }


def fit_input_residual(fit_x: np.ndarray, hold_x: np.ndarray) -> ResidualFit:
    """The input residual fitted on ``fit_x`` and calibrated on ``hold_x`` (normal
    windows, N × F), or None with the reason when the gate (module docstring) refuses it."""
    fit = _spread_sample(fit_x)
    hold = _spread_sample(hold_x)
    if fit.ndim != 2 or hold.ndim != 2 or fit.shape[1] != hold.shape[1]:
        raise ResidualError(f"fit and held-out inputs differ in shape: {fit.shape}, {hold.shape}")
    if len(fit) < 2 or len(hold) < 2 or not (np.isfinite(fit).all() and np.isfinite(hold).all()):
        return ResidualFit(None, 0, float("nan"), "too few finite windows")
    mean = fit.mean(axis=0)
    _, s, vt = np.linalg.svd(fit - mean, full_matrices=False)
    share = np.cumsum(s**2) / max(float(np.sum(s**2)), 1e-300)
    k = int(np.searchsorted(share, VARIANCE) + 1)
    k = min(k, vt.shape[0])
    n_features = fit.shape[1]
    if k >= n_features:
        return ResidualFit(None, k, float("nan"), "the principal subspace spans every feature")
    probe = InputResidual(mean, np.ascontiguousarray(vt[:k].T), np.array([0.0, 1.0]))
    on_fit, on_hold = probe.log_residual(fit), probe.log_residual(hold)
    median, upper = np.quantile(on_hold, [0.5, SCALE_QUANTILE])
    spread = max(float(upper - median), MIN_SPREAD)
    gap = float((median - np.median(on_fit)) / spread)
    residual = InputResidual(mean, probe.basis, np.array([float(median), spread]))
    if gap > MAX_GAP:
        return ResidualFit(
            None, k, gap, "held-out normal windows lie further off the subspace than its own"
        )
    if n_features * k > MAX_BASIS_VALUES:
        return ResidualFit(
            None, k, gap, f"{n_features} × {k} basis values exceed {MAX_BASIS_VALUES}"
        )
    return ResidualFit(residual, k, gap, "generalizes to held-out normal windows")


def _spread_sample(x: np.ndarray) -> np.ndarray:
    rows = np.asarray(x)
    if len(rows) > MAX_WINDOWS:
        rows = rows[np.linspace(0, len(rows) - 1, MAX_WINDOWS).astype(np.int64)]
    return rows.astype(np.float64)
