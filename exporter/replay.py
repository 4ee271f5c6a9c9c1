"""The replay buffer: a bounded, representative memory of the data a model was trained on.

Retraining on new field data alone forgets the old regime; retraining on the new data plus a
replay of the old keeps it (experience replay). The buffer holds at most ``limit`` windows
(default :data:`MAX_REPLAY_WINDOWS`) as plain arrays beside the model (``replay.npz``: no
pickle), in physical units, so any later model can normalize them its own way:

- ``segments`` (N × L × C float32): the windows (or resampled cycles);
- ``program`` (N,) int64: the program id of each window (-1: unknown);
- ``generation`` (N,) int64: 0 for the original training data, k for windows that the k-th
  retraining added — where each window came from, kept for reports and later selections.

**Selection rule** (:func:`select_rows`, ``rule="stratified"``, the default): stratified by
program and by time. Each program gets a share of ``limit`` proportional to its windows
(largest remainder, at least one window each); a program's windows, in the order they were
recorded (older generations first), are cut into as many consecutive blocks as its share and
one window is drawn from each block at a seeded random offset. Rare programs, and every
stretch of time (a cold start, a warm spell, each past regime), keep their place in the
memory in proportion to how much of it they were, which a uniform random draw only does on
average; the draw is deterministic for a seed. ``rule="uniform"`` (a plain seeded random
draw) is kept for comparison (``benchmarks/retrain_eval.py`` measures both).

``calibration.npz``, which `retrain` and `merge` leave beside the models they write, has the
same arrays and rule for the held-out normal windows a bundle was calibrated on; there
``generation`` numbers the calibration group (a recording, or the capture a retraining held
out) on each of which the thresholds must hold.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.core.atomic import write_atomic
from agent.core.features import Normalization
from exporter.errors import ExportError, ExportInputError

REPLAY_NAME = "replay.npz"
CALIBRATION_NAME = "calibration.npz"
MAX_REPLAY_WINDOWS = 4096
RULES = ("stratified", "uniform")


@dataclass(frozen=True)
class ReplayBuffer:
    segments: np.ndarray  # (N × L × C) float32, physical units
    program: np.ndarray  # (N,) int64
    generation: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        n = len(self.segments)
        if self.segments.ndim != 3 or len(self.program) != n or len(self.generation) != n:
            raise ExportError(
                f"replay buffer: segments {self.segments.shape}, program {self.program.shape}, "
                f"generation {self.generation.shape} do not describe the same N windows"
            )

    def __len__(self) -> int:
        return len(self.segments)

    @classmethod
    def of(
        cls, segments: np.ndarray, program: np.ndarray | None = None, generation: int = 0
    ) -> ReplayBuffer:
        n = len(segments)
        programs = np.full(n, -1) if program is None else np.asarray(program)
        return cls(
            np.asarray(segments, dtype=np.float32),
            programs.astype(np.int64),
            np.full(n, generation, dtype=np.int64),
        )

    @classmethod
    def from_normalized(
        cls, segments: np.ndarray, normalization: Normalization, program: np.ndarray
    ) -> ReplayBuffer:
        """A buffer of training segments that were normalized with ``normalization``."""
        physical = np.asarray(segments, np.float32) * normalization.std + normalization.mean
        return cls.of(physical, program)

    def take(self, rows: np.ndarray) -> ReplayBuffer:
        return ReplayBuffer(self.segments[rows], self.program[rows], self.generation[rows])

    def join(self, other: ReplayBuffer) -> ReplayBuffer:
        """This buffer followed by ``other`` (the newer windows last)."""
        if len(self) and len(other) and self.segments.shape[1:] != other.segments.shape[1:]:
            raise ExportInputError(
                f"replay windows of shape {self.segments.shape[1:]} and "
                f"{other.segments.shape[1:]} (samples × channels) cannot share a buffer"
            )
        if not len(self):
            return other
        if not len(other):
            return self
        return ReplayBuffer(
            np.concatenate([self.segments, other.segments]),
            np.concatenate([self.program, other.program]),
            np.concatenate([self.generation, other.generation]),
        )

    def normalized(self, normalization: Normalization) -> np.ndarray:
        return normalization.apply(self.segments)

    def bounded(
        self, limit: int = MAX_REPLAY_WINDOWS, seed: int = 0, rule: str = "stratified"
    ) -> ReplayBuffer:
        return self.take(select_rows(self.program, limit, seed, rule))


def _quotas(counts: np.ndarray, limit: int) -> np.ndarray:
    """Per-program shares of ``limit``, proportional to ``counts`` (largest remainder, each
    program at least one window, none more than it has)."""
    if counts.sum() <= limit:
        return counts.copy()
    n_groups = len(counts)
    if limit < n_groups:
        raise ExportInputError(
            f"replay limit {limit} is below the {n_groups} programs it must keep; raise it"
        )
    exact = counts / counts.sum() * (limit - n_groups)
    quota = np.floor(exact).astype(np.int64) + 1
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    quota[order[: limit - int(quota.sum())]] += 1
    return np.minimum(quota, counts)


def select_rows(
    program: np.ndarray, limit: int = MAX_REPLAY_WINDOWS, seed: int = 0, rule: str = "stratified"
) -> np.ndarray:
    """Sorted row indices of at most ``limit`` windows kept by ``rule`` (the module doc)."""
    n = len(program)
    if limit < 1:
        raise ExportInputError(f"replay limit {limit}: keep at least one window")
    if rule not in RULES:
        raise ExportInputError(f"replay rule {rule!r}: choose one of {', '.join(RULES)}")
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if rule == "uniform":
        return np.sort(rng.choice(n, size=limit, replace=False))
    programs, inverse = np.unique(program, return_inverse=True)
    quotas = _quotas(np.bincount(inverse, minlength=len(programs)), limit)
    kept = []
    for group, quota in enumerate(quotas):
        rows = np.flatnonzero(inverse == group)  # recording order
        edges = np.linspace(0, len(rows), quota + 1).astype(np.int64)
        low, high = edges[:-1], np.maximum(edges[1:], edges[:-1] + 1)
        kept.append(rows[low + (rng.random(quota) * (high - low)).astype(np.int64)])
    return np.sort(np.concatenate(kept))


def save_replay(directory: Path, buffer: ReplayBuffer, name: str = REPLAY_NAME) -> Path:
    """Write ``replay.npz`` (or ``name``) into a model directory (atomically, no pickle)."""
    out = Path(directory) / name
    data = io.BytesIO()
    np.savez(
        data,
        segments=np.ascontiguousarray(buffer.segments, dtype=np.float32),
        program=buffer.program.astype(np.int64),
        generation=buffer.generation.astype(np.int64),
    )
    write_atomic(out, data.getvalue())
    return out


def load_replay(directory: Path, name: str = REPLAY_NAME) -> ReplayBuffer:
    """The model directory's replay buffer (or ``name``); an error naming the fix if absent."""
    path = Path(directory) / name
    if not path.exists():
        raise ExportInputError(
            f"{path}: no replay buffer; retrain the model with this version of `rapp-export "
            "train` (it writes one) before `retrain` or `merge`"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            return ReplayBuffer(
                np.asarray(data["segments"], dtype=np.float32),
                np.asarray(data["program"], dtype=np.int64),
                np.asarray(data["generation"], dtype=np.int64),
            )
    except (OSError, ValueError, KeyError) as err:
        raise ExportError(f"{path}: unreadable replay buffer ({err}); train again") from err
