"""Nonparametric dynamic threshold in the style of Telemanom (Hundman et al., KDD 2018).

Why: the calibrated threshold is one quantile of held-out normal scores, fixed at build time.
A machine's normal score level moves (warm-up, wear, a new fixture); a threshold fitted on
the recent *normal* scores follows it without labels. Telemanom's rule picks, over a range of
z, the threshold ε = μ + zσ of the (smoothed) errors whose removal of everything above it
lowers the mean and spread the most, per anomalous point and (squared) sequence:

    ε = argmax_z (Δμ/μ + Δσ/σ) / (|e_a| + |E_seq|²)

with Δμ = μ(e) − μ({e < ε}), Δσ likewise, e_a = {e ≥ ε} and E_seq the runs of consecutive
e_a. Then anomalous sequences whose maximum does not exceed the next lower maximum (the
highest nominal error last) by a minimum percentage p are pruned back to nominal.

:func:`telemanom_epsilon`, :func:`anomalous_sequences` and :func:`prune_sequences` are the
batch algorithm. :class:`DynamicThreshold` is the online use in the agent: it learns only
from windows the caller says are clean (never from a window that raised an alarm or sat
above the threshold), refits every few windows, and clamps the result to a band around the
calibrated threshold so it can adapt but never run away.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.core.errors import AgentInputError

DEFAULT_Z = tuple(np.arange(2.5, 12.0 + 1e-9, 0.5).tolist())
DEFAULT_MIN_DECREASE = 0.13  # Telemanom's p


class ThresholdError(AgentInputError, ValueError):
    """Invalid dynamic-threshold settings or input; the message names the fix."""


def _errors(values: Sequence[float] | np.ndarray) -> np.ndarray:
    e = np.asarray(values, dtype=np.float64).ravel()
    if e.size == 0:
        raise ThresholdError("no errors to fit a threshold on; give at least one value")
    if not np.isfinite(e).all():
        raise ThresholdError("errors hold NaN or inf; drop non-finite scores before fitting")
    return e


def _no_spread(e: np.ndarray) -> bool:
    """Constant errors: their float std is a few ulps of the mean, not always 0 ([1.35] * 3
    gives 2.2e-16), and treating that as spread would split equal values on rounding noise."""
    return float(e.std()) <= 64 * np.finfo(np.float64).eps * max(float(np.abs(e).max()), 1e-300)


def anomalous_sequences(errors: np.ndarray, epsilon: float) -> list[tuple[int, int]]:
    """Runs [start, stop) of consecutive errors ≥ ``epsilon``."""
    above = np.asarray(errors) >= epsilon
    if not above.any():
        return []
    edges = np.diff(np.r_[0, above.astype(np.int8), 0])
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return list(zip(starts.tolist(), stops.tolist(), strict=True))


def telemanom_epsilon(
    values: Sequence[float] | np.ndarray, z_values: Sequence[float] = DEFAULT_Z
) -> float:
    """Telemanom's ε for a 1-D array of (smoothed) errors.

    When no z separates anything (constant errors, or no candidate leaves values above it),
    ε = μ + max(z)·σ: nothing in ``values`` is anomalous.
    """
    e = _errors(values)
    if not z_values:
        raise ThresholdError("z_values is empty; use e.g. 2.5, 3.0, … 12.0")
    mu, sigma = float(e.mean()), float(e.std())
    fallback = mu + max(z_values) * sigma
    if _no_spread(e):
        return fallback
    best, best_score = fallback, -math.inf
    for z in z_values:
        eps = mu + z * sigma
        below = e[e < eps]
        if below.size == e.size or below.size == 0:
            continue
        d_mu = (mu - below.mean()) / mu if mu != 0 else 0.0
        d_sigma = (sigma - below.std()) / sigma
        n_above = e.size - below.size
        n_seq = len(anomalous_sequences(e, eps))
        score = (d_mu + d_sigma) / (n_above + n_seq**2)
        if score > best_score:
            best, best_score = eps, score
    return best


def prune_sequences(
    values: Sequence[float] | np.ndarray,
    sequences: Sequence[tuple[int, int]],
    epsilon: float,
    min_decrease: float = DEFAULT_MIN_DECREASE,
) -> list[tuple[int, int]]:
    """Telemanom's pruning: keep sequences whose maximum stands out from the next one.

    Maxima of the sequences are sorted descending and the highest nominal error (below ε) is
    appended; with d_i = (m_i − m_{i+1}) / m_i, every sequence up to the last i with
    d_i ≥ ``min_decrease`` stays anomalous, the rest become nominal.
    """
    e = _errors(values)
    if not 0.0 <= min_decrease < 1.0:
        raise ThresholdError(f"min_decrease = {min_decrease}: must be in [0, 1); e.g. 0.13")
    if not sequences:
        return []
    maxima = np.array([e[a:b].max() for a, b in sequences])
    order = np.argsort(-maxima, kind="stable")
    nominal = e[e < epsilon]
    tail = float(nominal.max()) if nominal.size else 0.0
    chain = np.r_[maxima[order], tail]
    with np.errstate(divide="ignore", invalid="ignore"):
        drops = np.where(chain[:-1] > 0, (chain[:-1] - chain[1:]) / chain[:-1], 0.0)
    significant = np.flatnonzero(drops >= min_decrease)
    if significant.size == 0:
        return []
    keep = set(order[: significant.max() + 1].tolist())
    return [seq for i, seq in enumerate(sequences) if i in keep]


@dataclass(frozen=True)
class DynamicSettings:
    """Online dynamic threshold parameters (agent config ``[robots.alarm]``).

    history: clean smoothed scores kept (a ring). min_history: below this the calibrated
    threshold is used. refit_every: windows between refits. floor/ceiling: the dynamic
    threshold stays within [floor, ceiling] × the calibrated one. The default floor is 0.8:
    the calibrated threshold is already a held-out 0.999 quantile, and on the simulator a
    threshold allowed to sink to half of it kept alarms from clearing between faults
    (benchmarks/results/ops_eval.md).
    """

    history: int = 256
    min_history: int = 64
    refit_every: int = 16
    floor: float = 0.8
    ceiling: float = 4.0
    min_decrease: float = DEFAULT_MIN_DECREASE
    z_values: tuple[float, ...] = DEFAULT_Z

    def __post_init__(self) -> None:
        if not 2 <= self.min_history <= self.history:
            raise ThresholdError(
                f"min_history = {self.min_history}: must be in 2 … history ({self.history})"
            )
        if self.refit_every < 1:
            raise ThresholdError(f"refit_every = {self.refit_every}: must be ≥ 1")
        if not 0 < self.floor <= 1 <= self.ceiling:
            raise ThresholdError(
                f"floor = {self.floor}, ceiling = {self.ceiling}: need 0 < floor ≤ 1 ≤ ceiling"
            )
        if not 0 <= self.min_decrease < 1:
            raise ThresholdError(f"min_decrease = {self.min_decrease}: must be in [0, 1)")
        if not self.z_values:
            raise ThresholdError("z_values is empty")


def fit_dynamic(values: np.ndarray, settings: DynamicSettings) -> float:
    """The threshold a new smoothed score must reach to count as anomalous, given ``values``.

    ε from :func:`telemanom_epsilon`; a new point above ε forms the highest sequence, and
    survives pruning only if it exceeds the highest nominal value by ``min_decrease``, so
    the effective threshold is max(ε, nominal max / (1 − p)).
    """
    e = _errors(values)
    if _no_spread(e):  # nothing stands out: every value is nominal
        return float(e.max()) / (1.0 - settings.min_decrease)
    eps = telemanom_epsilon(e, settings.z_values)
    kept = prune_sequences(e, anomalous_sequences(e, eps), eps, settings.min_decrease)
    flagged = np.zeros(e.size, dtype=bool)
    for a, b in kept:
        flagged[a:b] = True
    nominal = e[~flagged & (e < eps)]
    tail = float(nominal.max()) if nominal.size else 0.0
    return max(eps, tail / (1.0 - settings.min_decrease))


class DynamicThreshold:
    """Online threshold for one route: calibrated value until enough clean history exists.

    Call :meth:`current` before feeding a window to the alarm tracker, then :meth:`learn`
    with the window's smoothed score only when the window is clean (no alarm raised or
    active, score below the threshold that was used).
    """

    def __init__(self, calibrated: float, settings: DynamicSettings | None = None) -> None:
        if not (math.isfinite(calibrated) and calibrated > 0):
            raise ThresholdError(f"calibrated threshold {calibrated!r}: must be finite and > 0")
        self.calibrated = float(calibrated)
        self.settings = settings or DynamicSettings()
        self._history: collections.deque[float] = collections.deque(maxlen=self.settings.history)
        self._since_fit = 0
        self._value = self.calibrated
        self.fits = 0

    @property
    def history_size(self) -> int:
        return len(self._history)

    def current(self) -> float:
        return self._value

    def learn(self, smoothed: float) -> None:
        """Add a clean window's smoothed score; refit every ``refit_every`` windows."""
        if not math.isfinite(smoothed):
            return
        self._history.append(float(smoothed))
        self._since_fit += 1
        s = self.settings
        if len(self._history) >= s.min_history and self._since_fit >= s.refit_every:
            self._since_fit = 0
            raw = fit_dynamic(np.fromiter(self._history, dtype=np.float64), s)
            self._value = min(max(raw, s.floor * self.calibrated), s.ceiling * self.calibrated)
            self.fits += 1
