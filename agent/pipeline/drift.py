"""Drift monitoring: is the robot still the robot the model was calibrated on?

Why: a factory has no labelled test set. What the agent can watch without labels is the
distribution of its own scores against the held-out calibration distribution in the bundle,
how often it alarms, and how much of the stream no model claims (unknown programs, low
membership confidence). Together they say "retraining advised" before the operators stop
trusting the alarms.

- :class:`ScoreDrift` keeps a rolling window of one route's scores and compares it with the
  bundle's calibration quantiles: the ratio of rolling to calibration median and p90, and a
  KS-type statistic sup_j |F_roll(q_j) − level_j| evaluated at the calibration quantiles
  q_j (a lower bound of the two-sample KS distance, exact at those points, cheap).
- :class:`RobotDrift` aggregates a robot: worst route drift, alarm rate, unknown-program
  share, membership confidence, and the ``retraining_advised`` flag.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.core.errors import AgentInputError


class DriftError(AgentInputError, ValueError):
    """Invalid drift settings or capture directory; the message names the fix."""


@dataclass(frozen=True)
class DriftSettings:
    """Rolling window length and the limits above which retraining is advised.

    window: recent windows compared with calibration. min_windows: no advice before this many.
    ks_limit: KS-type statistic limit. shift_limit: limit of |log(rolling p50 / calib p50)|.
    alarm_rate_limit: share of recent windows in alarm. unknown_limit: share of recent
    windows no model serves (or with membership below ``min_confidence``).
    """

    window: int = 512
    min_windows: int = 64
    ks_limit: float = 0.5
    shift_limit: float = math.log(2.0)
    alarm_rate_limit: float = 0.2
    unknown_limit: float = 0.2
    min_confidence: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.min_windows <= self.window:
            raise DriftError(
                f"drift min_windows = {self.min_windows}: must be in 1 … window ({self.window})"
            )
        for name in ("ks_limit", "alarm_rate_limit", "unknown_limit", "min_confidence"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise DriftError(f"drift {name} = {value}: must be in (0, 1]")
        if not self.shift_limit > 0:
            raise DriftError(f"drift shift_limit = {self.shift_limit}: must be > 0")


def ks_at_quantiles(
    values: np.ndarray, levels: Sequence[float], quantiles: Sequence[float]
) -> float:
    """sup_j |F_values(q_j) − level_j| over the calibration quantiles (levels ↔ values)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    if v.size == 0:
        return math.nan
    q = np.asarray(quantiles, dtype=np.float64)
    cdf = np.searchsorted(v, q, side="right") / v.size
    return float(np.max(np.abs(cdf - np.asarray(levels, dtype=np.float64))))


class ScoreDrift:
    """Rolling score distribution of one route vs its calibration quantiles."""

    def __init__(
        self, levels: Sequence[float] | None, quantiles: Sequence[float] | None, window: int
    ) -> None:
        self.levels = tuple(levels) if levels else ()
        self.quantiles = tuple(quantiles) if quantiles else ()
        self._scores: collections.deque[float] = collections.deque(maxlen=window)

    def add(self, score: float) -> None:
        if math.isfinite(score):
            self._scores.append(float(score))

    def __len__(self) -> int:
        return len(self._scores)

    def _calib(self, level: float) -> float | None:
        if not self.levels:
            return None
        return float(np.interp(level, self.levels, self.quantiles))

    def summary(self) -> dict[str, float | None]:
        """ks, p50_ratio, p90_ratio (rolling / calibration), windows."""
        out: dict[str, float | None] = {
            "ks": None,
            "p50_ratio": None,
            "p90_ratio": None,
            "windows": float(len(self._scores)),
        }
        if not self._scores:
            return out
        values = np.fromiter(self._scores, dtype=np.float64)
        if self.levels:
            out["ks"] = ks_at_quantiles(values, self.levels, self.quantiles)
            for key, level in (("p50_ratio", 0.5), ("p90_ratio", 0.9)):
                ref = self._calib(level)
                if ref is not None and ref > 0:
                    out[key] = float(np.quantile(values, level)) / ref
        return out


class RobotDrift:
    """Per-robot drift indicators for the status payload.

    Fed by the pipeline thread, read by the MQTT thread (status): every method holds a lock.
    """

    def __init__(self, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        self._lock = threading.Lock()
        n = self.settings.window
        self.routes: dict[str, ScoreDrift] = {}
        self._alarm: collections.deque[bool] = collections.deque(maxlen=n)
        self._unknown: collections.deque[bool] = collections.deque(maxlen=n)
        self._confidence: collections.deque[float] = collections.deque(maxlen=n)
        self.last_unknown_program: int | None = None

    def add_score(
        self,
        bundle_id: str,
        calibration: tuple[Sequence[float], Sequence[float]] | None,
        score: float,
    ) -> None:
        """A clean window's score for route ``bundle_id`` (calibration: levels, quantiles)."""
        levels, quantiles = calibration or (None, None)
        with self._lock:
            drift = self.routes.get(bundle_id)
            if drift is None:
                drift = ScoreDrift(levels, quantiles, self.settings.window)
                self.routes[bundle_id] = drift
            drift.add(score)

    def forget(self, bundle_id: str) -> None:
        """Drop a route's statistics (its bundle was replaced or removed)."""
        with self._lock:
            self.routes.pop(bundle_id, None)

    def reset_membership(self) -> None:
        """A bundle for a new program joined: windows counted as unknown before may not be."""
        with self._lock:
            self._unknown = collections.deque(maxlen=self.settings.window)
            self._alarm = collections.deque(maxlen=self.settings.window)
            self._confidence = collections.deque(maxlen=self.settings.window)
            self.last_unknown_program = None

    def scored(self, alarm_active: bool, confidence: float | None = None) -> None:
        """A window a model scored (confidence: membership confidence when routed by it)."""
        with self._lock:
            self._alarm.append(bool(alarm_active))
            self._unknown.append(False)
            if confidence is not None and math.isfinite(confidence):
                self._confidence.append(float(confidence))

    def unknown(self, program: int, confidence: float | None = None) -> None:
        """A window no model serves (its program is unknown, or no candidate fits)."""
        with self._lock:
            self._alarm.append(False)
            self._unknown.append(True)
            if program >= 0:
                self.last_unknown_program = program
            if confidence is not None and math.isfinite(confidence):
                self._confidence.append(float(confidence))

    def summary(self) -> tuple[dict[str, float | None], bool]:
        """(indicators, retraining_advised)."""
        with self._lock:
            return self._summary()

    def _summary(self) -> tuple[dict[str, float | None], bool]:
        worst, shifted = self._route_drift()
        n = len(self._unknown)
        alarm_rate = _mean(self._alarm)
        unknown_share = _mean(self._unknown)
        confidence = _mean(self._confidence)
        out: dict[str, float | None] = {
            **worst,
            "alarm_rate": alarm_rate,
            "unknown_program_share": unknown_share,
            "membership_confidence": confidence,
            "recent_windows": float(n),
            "last_unknown_program": (
                None if self.last_unknown_program is None else float(self.last_unknown_program)
            ),
        }
        return out, shifted or self._stream_advises(n, alarm_rate, unknown_share, confidence)

    def _route_drift(self) -> tuple[dict[str, float | None], bool]:
        """The indicators of the route whose score distribution moved most (largest KS),
        and whether any route with enough windows moved past a limit."""
        s = self.settings
        worst: dict[str, float | None] = {"ks": None, "p50_ratio": None, "p90_ratio": None}
        shifted = False
        for drift in self.routes.values():
            summary = drift.summary()
            ks = summary["ks"]
            if ks is not None and (worst["ks"] is None or ks > worst["ks"]):
                worst.update({k: summary[k] for k in worst})
            if len(drift) < s.min_windows or not drift.levels:
                continue
            ratio = summary["p50_ratio"]
            too_far = ks is not None and ks > s.ks_limit
            moved = ratio is not None and ratio > 0 and abs(math.log(ratio)) > s.shift_limit
            shifted = shifted or too_far or moved
        return worst, shifted

    def _stream_advises(
        self,
        n: int,
        alarm_rate: float | None,
        unknown_share: float | None,
        confidence: float | None,
    ) -> bool:
        """Too many alarms, unknown programs or unsure memberships among recent windows."""
        s = self.settings
        if n >= s.min_windows and (
            _above(alarm_rate, s.alarm_rate_limit) or _above(unknown_share, s.unknown_limit)
        ):
            return True
        return (
            len(self._confidence) >= s.min_windows
            and confidence is not None
            and confidence < s.min_confidence
        )


def _mean(values: collections.deque) -> float | None:
    return float(np.mean(values)) if values else None


def _above(value: float | None, limit: float) -> bool:
    return value is not None and value > limit
