"""The whole scoring step as a few float32 matrices, for runtimes that run it in their graph.

Everything after the pathway — differences, Recon, SAP, NAP and the channel attribution —
folds into one concatenation, one GEMM and one affine map (see docs/architecture.md):

    D  = [d_l for l in layers]                           differences ĥ_l − h_l   (N × M)
    z  = (D − μ) W                                       NAP projection          (N × k)
    R  = [D | x̂ − x (if layer 0 is not in D) | x − m (standardized attribution) | z]
    Y  = max(0, (R ⊙ R) · reduce − offset)               (N × (3 + A))
    out = [Y | h_L] for bundles with a latent density, else Y

(the latent code h_L rides along so the density score, agent.core.density, is computed from
the same run.)

(R is never materialized: each block's squares go through its own rows of ``reduce``, each
GEMM adding onto the last — on the shipped model that beat one concatenation by ~5 %.)

``reduce`` sums the squares into the columns :data:`SCORE_COLUMNS` (recon, sap, nap) and the
A attribution columns. For bundles with attribution statistics A = 2C: the calibration-scaled
reconstruction error per channel, then the input deviation per channel, each divided by its
calibration spread with the calibration mean folded into ``offset``, so max(0, ·) gives the
excesses e⁺ and v⁺ that the scorer turns into votes (``agent.core.rapp.excess_votes``) —
exactly ``agent.core.rapp.channel_excess``. Bundles without those statistics get A = C
per-channel errors (``offset`` 0), which the scorer turns into shares
(``agent.core.rapp.error_shares``). The score columns are sums of squares, so the final
max(0, ·) leaves them alone.

Only the subtraction D − μ precedes the projection: folding μ into a bias (D·W − μ·W) would
cancel catastrophically in float32 when windows sit close to the calibration mean.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.core.rapp import ChannelStandardizer, NapParams

SCORE_COLUMNS = ("recon", "sap", "nap")


@dataclass(frozen=True)
class StepMatrices:
    """The constants of the fused step (module docstring); every array is float32."""

    layers: tuple[int, ...]  # pathway layers whose differences form D, in order
    separate_recon: bool  # layer 0 is not in ``layers``: R carries x̂ − x as its own block
    nap_mean: np.ndarray  # μ (M,)
    nap_projection: np.ndarray  # W (M × k)
    feature_mean: np.ndarray | None  # m (F,) for standardized attribution, else None
    reduce: np.ndarray  # (rows of R) × (3 + A), A = 2C with attribution statistics, else C
    offset: np.ndarray  # (3 + A,)
    blocks: tuple[int, ...]  # widths of R's blocks, in order: M, [F,] [F,] k
    latent_width: int = 0  # width of h_L appended to the output (0: none)

    def block_rows(self) -> list[slice]:
        """The rows of ``reduce`` that belong to each block of R."""
        ends = np.cumsum(self.blocks)
        return [
            slice(int(end - width), int(end)) for end, width in zip(ends, self.blocks, strict=True)
        ]

    @property
    def width(self) -> int:
        """Columns of the step's output: recon, sap, nap, the attribution, then h_L."""
        return int(self.reduce.shape[1]) + self.latent_width

    @property
    def attribution_width(self) -> int:
        return int(self.reduce.shape[1]) - len(SCORE_COLUMNS)


def step_matrices(
    layers: Sequence[int],
    widths: Sequence[int],
    nap: NapParams,
    weights: np.ndarray,
    feature_channel: np.ndarray,
    standardizer: ChannelStandardizer | None,
    latent: bool = False,
) -> StepMatrices:
    """Fold the scoring step's parameters into :class:`StepMatrices`.

    ``widths[i]`` is the width of pathway layer i (widths[0] = F), ``weights`` the F × C
    matrix of :func:`agent.core.rapp.attribution_weights`.
    """
    n_features, n_channels = weights.shape
    offsets = np.cumsum([0, *(widths[i] for i in layers)])
    m, k = int(offsets[-1]), nap.k
    separate_recon = 0 not in layers
    error_row = m if separate_recon else int(offsets[list(layers).index(0)])
    deviation_row = m + (n_features if separate_recon else 0)
    blocks = (
        m,
        *((n_features,) if separate_recon else ()),
        *((n_features,) if standardizer is not None else ()),
        k,
    )
    rows = sum(blocks)
    n_columns = 3 + n_channels * (1 if standardizer is None else 2)
    reduce = np.zeros((rows, n_columns))
    offset = np.zeros(n_columns)
    errors = slice(error_row, error_row + n_features)
    error_columns = slice(3, 3 + n_channels)
    reduce[:m, 1] = 1.0  # sap: every difference
    reduce[errors, 0] = 1.0  # recon: x̂ − x
    reduce[rows - k :, 2] = 1.0  # nap: every projection
    reduce[errors, error_columns] = weights
    if standardizer is not None:
        s = standardizer
        deviation_columns = slice(3 + n_channels, 3 + 2 * n_channels)
        reduce[errors, error_columns] /= s.error_std
        onehot = np.zeros((n_features, n_channels))
        onehot[np.arange(n_features), np.asarray(feature_channel, dtype=np.int64)] = 1.0
        scale = onehot / np.square(s.feature_std)[:, None] / s.deviation_std
        reduce[deviation_row : deviation_row + n_features, deviation_columns] = scale
        offset[error_columns] = s.error_mean / s.error_std
        offset[deviation_columns] = s.deviation_mean / s.deviation_std
    return StepMatrices(
        layers=tuple(layers),
        separate_recon=separate_recon,
        nap_mean=nap.mu.astype(np.float32),
        nap_projection=nap.projection.astype(np.float32),
        feature_mean=None if standardizer is None else standardizer.feature_mean.astype(np.float32),
        reduce=reduce.astype(np.float32),
        offset=offset.astype(np.float32),
        blocks=blocks,
        latent_width=int(widths[-1]) if latent else 0,
    )


class FusedStep(ABC):
    """The scoring step run inside a runtime (from :meth:`Backend.fuse`)."""

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Feature vectors (N × F) → a new float64 array (N × width): columns recon, sap,
        nap, the per-channel attribution of :class:`StepMatrices` and h_L if requested."""
