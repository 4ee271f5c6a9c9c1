"""A density score on the autoencoder's latent code, and the combined alarm score.

NAP measures how far a window's reconstruction pathway strays from normal; it says little
about *where* in the normal manifold the window sits. Where normal data is multimodal
(machining phases, program regimes) a fault can move windows into a region that
reconstructs well but is rare. The latent code (the bottleneck activations h_L) is low-
dimensional, so a per-dimension model of it is cheap and well estimated:

- ``histogram``: the negative log-likelihood under one histogram per latent dimension
  (HBOS, Goldstein & Dengel 2012), fitted on held-out normal codes; outside a histogram's
  range the density is one count's and every further bin width adds 1 — bounded growth,
  so one wild window cannot dominate a smoothed score.
- ``gaussian``: log of the squared, per-dimension standardized distance to the mean.

Each component (and log NAP) is put on one calibrated scale, ``(v − median) / (q99 −
median)`` on normal calibration windows: 0 is a typical normal window, 1 the calibration's
99th percentile. The published ``density`` is exp of the mean of the two latent components,
and ``combined`` = exp(calibrated log NAP) + density — exp of a log-sum-exp, a soft maximum,
so a fault that only one view sees is not diluted by the other (bundles whose build admitted
it add a third view to that sum, the input residual of agent.core.residual). Both are
positive like the other scores (density 1 for a typical normal window, e ≈ 2.7 at the
calibration's 99th percentile; combined 2 and ≈ 5.4, plus one per extra view), so
thresholds, ratios and the alarm's log-domain smoothing treat them alike. The rule uses
normal data only; see docs/architecture.md ("Scores") for the measurements behind it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from agent.core.array_group import array_group
from agent.core.errors import AgentInputError
from agent.core.residual import InputResidual, ResidualError

DEFAULT_BINS = 20
# The calibrated scale's upper anchor: 1.0 on it is this quantile of normal windows.
SCALE_QUANTILE = 0.99
# Floor of a calibrated scale's spread, so a component constant on normal data (a dead
# latent unit) cannot divide by zero.
MIN_SPREAD = 1e-6
COMPONENTS = ("nap", "histogram", "gaussian")
# Largest calibrated log level exponentiated: e^60 ≈ 1e26 keeps a wild window's score finite
# (JSON has no inf) and far above any threshold.
MAX_LEVEL = 60.0


class DensityError(AgentInputError, ValueError):
    """Density parameters that do not fit the codes or each other."""


@dataclass(frozen=True)
class LatentDensity:
    """Fitted per-dimension models of the latent code plus the calibrated scales.

    ``low`` / ``width`` (d,) place each dimension's bins, ``log_density`` (d × bins) holds
    their log densities, ``mean`` / ``std`` (d,) the Gaussian view; ``centre`` / ``spread``
    (3,) put log NAP, the histogram NLL and the Gaussian log distance on one scale
    (order :data:`COMPONENTS`).
    """

    low: np.ndarray
    width: np.ndarray
    log_density: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    centre: np.ndarray
    spread: np.ndarray
    residual: InputResidual | None = None  # the combined score's input view, if admitted

    @property
    def dim(self) -> int:
        return int(self.low.shape[0])

    @cached_property
    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The flat log-density table, each dimension's row offset in it, and each
        dimension's smallest log density (the batch path of :func:`raw_components`)."""
        bins = self.log_density.shape[1]
        return (
            np.ascontiguousarray(self.log_density.ravel()),
            np.arange(self.dim, dtype=np.int64) * bins,
            self.log_density.min(axis=1),
        )

    @cached_property
    def rows(self) -> _RowTables:
        """The parameters as Python floats, for the one-window path (:func:`latent_scores`)."""
        floor = self.log_density.min(axis=1)
        per_dim = tuple(
            zip(
                self.low.tolist(),
                self.width.tolist(),
                [tuple(row) for row in self.log_density.tolist()],
                floor.tolist(),
                self.mean.tolist(),
                self.std.tolist(),
                strict=True,
            )
        )
        return _RowTables(
            per_dim=per_dim,
            last_bin=self.log_density.shape[1] - 1,
            centre=tuple(self.centre.tolist()),
            spread=tuple(self.spread.tolist()),
        )

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The parameters as named arrays for a bundle's ``rapp.npz``."""
        out = {f"{prefix}.density_{name}": getattr(self, name) for name in ARRAY_FIELDS}
        if self.residual is not None:
            out.update(self.residual.arrays(prefix))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> LatentDensity | None:
        """The parameters stored by :meth:`arrays`, or None when the bundle has none."""
        keys = {name: f"{prefix}.density_{name}" for name in ARRAY_FIELDS}
        group = array_group(arrays, keys, DensityError)
        if group is None:
            return None
        try:
            residual = InputResidual.from_arrays(arrays, prefix)
        except ResidualError as err:
            raise DensityError(str(err)) from err
        params = cls(**group, residual=residual)
        params.check()
        return params

    def check(self) -> None:
        d = self.dim
        shapes = {
            "low": (d,),
            "width": (d,),
            "mean": (d,),
            "std": (d,),
            "centre": (3,),
            "spread": (3,),
        }
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise DensityError(
                    f"density_{name} has shape {getattr(self, name).shape}, not {shape}"
                )
        if self.log_density.ndim != 2 or self.log_density.shape[0] != d:
            raise DensityError(f"density_log_density has shape {self.log_density.shape}")
        values = [getattr(self, name) for name in ARRAY_FIELDS]
        if not all(np.isfinite(v).all() for v in values):
            raise DensityError("density parameters contain NaN or inf; rebuild the bundle")
        if (self.width <= 0).any() or (self.std <= 0).any() or (self.spread <= 0).any():
            raise DensityError("density widths, deviations and spreads must be > 0")


ARRAY_FIELDS = ("low", "width", "log_density", "mean", "std", "centre", "spread")


@dataclass(frozen=True)
class _RowTables:
    # Per latent dimension: (low, width, log densities, smallest log density, mean, std).
    per_dim: tuple[tuple[float, float, tuple[float, ...], float, float, float], ...]
    last_bin: int
    centre: tuple[float, ...]
    spread: tuple[float, ...]


def _row_components(code: list[float], t: _RowTables) -> tuple[float, float]:
    """:func:`raw_components` of one code with Python floats (for :func:`latent_scores`):
    the same operations in the same order (tests hold the two paths to 1e-12). The live path
    scores one window at a time, right after the runtime has streamed the model's weights
    through the caches, where some twenty numpy calls on 12 numbers cost ~5× this loop."""
    histogram = 0.0
    squares = 0.0
    last = t.last_bin
    for value, (low, width, log_density, floor, mean, std) in zip(code, t.per_dim, strict=True):
        index = math.floor((value - low) / width)
        if index < 0 or index > last:
            histogram -= floor - max(-index, index - last)
        else:
            histogram -= log_density[index]
        standardized = (value - mean) / std
        squares += standardized * standardized
    return histogram, math.log(squares + 1e-12)


def _codes(codes: np.ndarray, dim: int | None = None) -> np.ndarray:
    array = np.asarray(codes)
    if array.ndim != 2 or (dim is not None and array.shape[1] != dim):
        want = f"(N × {dim})" if dim is not None else "(N × d)"
        raise DensityError(f"latent codes must be {want}, got shape {array.shape}")
    return array


def fit_latent_density(codes: np.ndarray, bins: int = DEFAULT_BINS) -> LatentDensity:
    """Histograms and Gaussian statistics of normal latent codes (N × d), with neutral
    scales (:func:`calibrate` sets them)."""
    z = _codes(codes).astype(np.float64)
    if len(z) < 2 or not np.isfinite(z).all():
        raise DensityError(f"need ≥ 2 finite latent codes to fit the density, got {len(z)}")
    low, high = z.min(axis=0), z.max(axis=0)
    width = np.maximum((high - low) / bins, MIN_SPREAD)
    index = np.clip(((z - low) / width).astype(np.int64), 0, bins - 1)
    counts = np.stack([np.bincount(index[:, j], minlength=bins) for j in range(z.shape[1])])
    counts = counts + 1.0  # Laplace smoothing: no bin inside the range has zero density
    log_density = np.log(counts / counts.sum(axis=1, keepdims=True) / width[:, None])
    return LatentDensity(
        low=low,
        width=width,
        log_density=log_density,
        mean=z.mean(axis=0),
        std=np.maximum(z.std(axis=0), MIN_SPREAD),
        centre=np.zeros(3),
        spread=np.ones(3),
    )


def raw_components(codes: np.ndarray, params: LatentDensity) -> tuple[np.ndarray, np.ndarray]:
    """Histogram NLL and Gaussian log distance (uncalibrated) for every code."""
    z = _codes(codes, params.dim)
    bins = params.log_density.shape[1]
    position = (z - params.low) / params.width
    index = np.floor(position)
    outside = np.maximum(-index, index - (bins - 1)).clip(min=0.0)
    index = index.clip(0, bins - 1).astype(np.int64)
    flat, rows, floor = params.tables
    index += rows
    log_p = flat.take(index)
    # Outside the range: the edge bin's smallest density (one count), less 1 per bin width.
    log_p = np.where(outside > 0, floor - outside, log_p)
    histogram = -log_p.sum(axis=1)
    standardized = (z - params.mean) / params.std
    gaussian = np.log(np.einsum("ij,ij->i", standardized, standardized) + 1e-12)
    return histogram, gaussian


def _scaled(values: np.ndarray, params: LatentDensity, component: int) -> np.ndarray:
    return (values - params.centre[component]) / params.spread[component]


def calibrate(nap: np.ndarray, codes: np.ndarray, params: LatentDensity) -> LatentDensity:
    """``params`` with the calibrated scales fitted on normal windows' NAP and codes."""
    histogram, gaussian = raw_components(codes, params)
    centre, spread = [], []
    for values in (_log_nap(nap), histogram, gaussian):
        median, upper = np.quantile(values, [0.5, SCALE_QUANTILE])
        centre.append(median)
        spread.append(max(upper - median, MIN_SPREAD))
    return replace(params, centre=np.array(centre), spread=np.array(spread))


def _log_nap(nap: np.ndarray) -> np.ndarray:
    return np.log(np.asarray(nap, dtype=np.float64) + 1e-12)


def density_score(codes: np.ndarray, params: LatentDensity) -> np.ndarray:
    """exp of the mean of the calibrated histogram and Gaussian components."""
    histogram, gaussian = raw_components(codes, params)
    level = 0.5 * (_scaled(histogram, params, 1) + _scaled(gaussian, params, 2))
    return np.exp(np.minimum(level, MAX_LEVEL))


def combined_score(
    nap: np.ndarray, density: np.ndarray, params: LatentDensity, inputs: np.ndarray | None = None
) -> np.ndarray:
    """NAP on its calibrated scale, exp((log NAP − median) / spread), plus the density (plus
    the input residual's level when the bundle has one): a soft maximum of the views, so a
    fault that only one of them sees is not diluted."""
    combined = np.exp(np.minimum(_scaled(_log_nap(nap), params, 0), MAX_LEVEL)) + density
    if params.residual is not None:
        combined += params.residual.level(_inputs(inputs))
    return combined


def _inputs(inputs: np.ndarray | None) -> np.ndarray:
    if inputs is None:
        raise DensityError("this bundle's combined score has an input view: pass the inputs")
    return inputs


def latent_scores(
    codes: np.ndarray, nap: np.ndarray, params: LatentDensity, inputs: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(density, combined) of every window: :func:`density_score` and
    :func:`combined_score` (``inputs``: the model's input features, needed by bundles with an
    input residual), with one window's latent part in Python floats (the live path)."""
    z = _codes(codes, params.dim)
    if len(z) != 1:
        density = density_score(z, params)
        return density, combined_score(nap, density, params, inputs)
    rows = params.rows
    centre, spread = rows.centre, rows.spread
    histogram, gaussian = _row_components(z[0].tolist(), rows)
    level = 0.5 * ((histogram - centre[1]) / spread[1] + (gaussian - centre[2]) / spread[2])
    density = math.exp(min(level, MAX_LEVEL))
    nap_level = (math.log(float(nap[0]) + 1e-12) - centre[0]) / spread[0]
    both = np.array([density, math.exp(min(nap_level, MAX_LEVEL)) + density])
    if params.residual is not None:
        both[1] += params.residual.level_of_one(_inputs(inputs))
    return both[:1], both[1:]
