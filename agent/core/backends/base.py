"""The small interface every inference runtime implements (one module per runtime)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from agent.core.backends.fusion import FusedStep, StepMatrices
from agent.core.bundle.manifest import ArtifactSpec
from agent.core.errors import AgentRuntimeError


class BackendError(AgentRuntimeError, RuntimeError):
    """An inference runtime that is missing, cannot load a model or fails to run it."""


@dataclass(frozen=True)
class Pathway:
    """One run of the projection pathway.

    ``hidden[i]`` is h_i(x) with hidden[0] = x; ``hidden_hat[i]`` is ĥ_i = h_i(x̂) with
    hidden_hat[0] = x̂. Every array is (batch × width) float32.
    """

    hidden: tuple[np.ndarray, ...]
    hidden_hat: tuple[np.ndarray, ...]

    @property
    def x(self) -> np.ndarray:
        return self.hidden[0]

    @property
    def x_hat(self) -> np.ndarray:
        return self.hidden_hat[0]


class Backend(ABC):
    """Runs a bundle artifact. Implementations validate input shape and map output names."""

    name: str = "abstract"
    formats: tuple[str, ...] = ()

    def __init__(self, artifact: ArtifactSpec, model: bytes, feature_dim: int, threads: int = 1):
        self.artifact = artifact
        self.feature_dim = feature_dim
        self.threads = threads

    def run(self, x: np.ndarray) -> Pathway:
        return self._run(np.ascontiguousarray(self.check_input(x), dtype=np.float32))

    def check_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as an array, if it is a non-empty (batch × feature_dim) batch."""
        batch = np.asarray(x)
        if batch.ndim != 2 or batch.shape[1] != self.feature_dim:
            raise BackendError(
                f"{self.name}: input has shape {batch.shape}; the model takes "
                f"(batch, {self.feature_dim}) float32 feature vectors"
            )
        if batch.shape[0] == 0:
            raise BackendError(f"{self.name}: empty batch")
        return batch

    def fuse(self, step: StepMatrices) -> FusedStep | None:
        """The whole scoring step in this runtime, or None where it cannot run it (the
        scorer then computes the step in numpy)."""
        return None

    @abstractmethod
    def _run(self, batch: np.ndarray) -> Pathway:
        """Run a validated (batch × feature_dim) float32 array."""
