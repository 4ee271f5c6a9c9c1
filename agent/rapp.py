"""RaPP novelty scores (Kim et al., ICLR 2020): Recon, SAP and NAP, in vectorized numpy.

Notation (SPEC §3): h_0(x) = x, h_i = g_i(h_{i-1}); x̂ = decoder(encoder(x)); ĥ_i = h_i(x̂);
d_i(x) = ĥ_i − h_i. The pathway model computes every h_i and ĥ_i in one run, so scoring is
pure array work here and identical on the workstation and the edge box.

Public API:

- :func:`pathway_differences` concatenates the selected layers' differences into D (N × M).
- :func:`fit_nap` fits the NAP normalization on a difference matrix of normal data.
- :func:`nap_score`, :func:`sap_score`, :func:`recon_score` score a batch.
- :func:`channel_attribution` splits a window's reconstruction error over input channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FLOAT32_EPS = float(np.finfo(np.float32).eps)


class RappError(ValueError):
    """Raised for inputs that cannot be scored (wrong shapes, non-finite fit data)."""


def default_rtol(n_rows: int, n_cols: int) -> float:
    """Singular-value cut-off relative to s_1: max(N, M) · eps32.

    The pathway runs in float32, so directions whose singular value is below the float32
    noise floor of D carry rounding noise, not signal. A bottleneck without activation makes
    D rank-deficient; dividing by those near-zero singular values is what makes naive NAP
    implementations explode. This is the same rule numpy's ``matrix_rank`` uses, at float32.
    """
    return max(n_rows, n_cols) * FLOAT32_EPS


@dataclass(frozen=True)
class NapParams:
    """A fitted NAP normalization.

    ``mu`` is the column mean of D, ``singular_values`` the retained s_1 … s_k and
    ``projection`` is W = V_k diag(1/s_k), so a batch scores as one GEMM.
    """

    mu: np.ndarray
    projection: np.ndarray
    singular_values: np.ndarray
    rtol: float

    @property
    def k(self) -> int:
        return int(self.singular_values.shape[0])

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def _as_matrix(name: str, values: np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 2:
        raise RappError(f"{name} must be a 2-D array (batch × features), got shape {array.shape}")
    return array


def fit_nap(diffs: np.ndarray, rtol: float | None = None) -> NapParams:
    """Fit NAP on a difference matrix ``diffs`` (N × M) of normal, eval-mode data.

    The SVD runs in float64 on D − μ. Components with s_j ≤ rtol · s_1 are dropped (default
    :func:`default_rtol`). Raises :class:`RappError` when D is empty, non-finite or has no
    component above the cut-off (e.g. all rows identical).
    """
    d = _as_matrix("diffs", diffs).astype(np.float64)
    n_rows, n_cols = d.shape
    if n_rows < 2:
        raise RappError(f"fit_nap needs at least 2 rows of differences, got {n_rows}")
    if not np.isfinite(d).all():
        raise RappError("fit_nap got NaN or inf in the difference matrix; check the model output")
    tol = default_rtol(n_rows, n_cols) if rtol is None else float(rtol)
    if not 0.0 <= tol < 1.0:
        raise RappError(
            f"rtol = {tol}: must be in [0, 1); use e.g. {default_rtol(n_rows, n_cols):g}"
        )
    mu = d.mean(axis=0)
    _, s, vt = np.linalg.svd(d - mu, full_matrices=False)
    if s.size == 0 or s[0] <= 0.0:
        raise RappError("the difference matrix has no variance (all rows equal); cannot fit NAP")
    keep = s > tol * s[0]
    s_k = s[keep]
    projection = vt[keep].T / s_k
    return NapParams(mu=mu, projection=projection, singular_values=s_k, rtol=tol)


def nap_score(diffs: np.ndarray, params: NapParams) -> np.ndarray:
    """NAP(x) = Σ_j ((d(x) − μ)·v_j / s_j)², for every row of ``diffs``: one GEMM."""
    d = _as_matrix("diffs", diffs)
    if d.shape[1] != params.dim:
        raise RappError(
            f"diffs have {d.shape[1]} columns but NAP was fitted on {params.dim}; "
            "the model and rapp.npz do not belong together"
        )
    # float64 keeps the small-s_j directions from losing precision in the GEMM; the arrays
    # are small (M × k), so this costs little next to the inference itself.
    z = (d.astype(np.float64) - params.mu) @ params.projection
    return np.einsum("ij,ij->i", z, z)


def sap_score(diffs: np.ndarray) -> np.ndarray:
    """SAP(x) = Σ_i ‖d_i(x)‖² over the selected layers (a row of D)."""
    d = _as_matrix("diffs", diffs).astype(np.float64)
    return np.einsum("ij,ij->i", d, d)


def recon_score(x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
    """Recon(x) = ‖x̂ − x‖² per row."""
    xs = _as_matrix("x", x)
    xh = _as_matrix("x_hat", x_hat)
    if xs.shape != xh.shape:
        raise RappError(f"x has shape {xs.shape} but x_hat has {xh.shape}")
    err = xh.astype(np.float64) - xs
    return np.einsum("ij,ij->i", err, err)


def pathway_differences(
    hidden: Sequence[np.ndarray],
    hidden_hat: Sequence[np.ndarray],
    layers: Sequence[int],
) -> np.ndarray:
    """Concatenate d_i = ĥ_i − h_i over ``layers`` into D (N × M).

    ``hidden[i]`` is h_i (hidden[0] = x) and ``hidden_hat[i]`` is ĥ_i (hidden_hat[0] = x̂).
    """
    if len(hidden) != len(hidden_hat):
        raise RappError(f"{len(hidden)} h_i but {len(hidden_hat)} ĥ_i; the pathway is incomplete")
    parts = []
    for layer in layers:
        if not 0 <= layer < len(hidden):
            raise RappError(f"layer {layer} is not in the pathway (0 … {len(hidden) - 1})")
        h = _as_matrix(f"h_{layer}", hidden[layer])
        h_hat = _as_matrix(f"ĥ_{layer}", hidden_hat[layer])
        if h.shape != h_hat.shape:
            raise RappError(f"h_{layer} has shape {h.shape} but ĥ_{layer} has {h_hat.shape}")
        parts.append(h_hat - h)
    return np.concatenate(parts, axis=1)


def attribution_weights(
    feature_channel: np.ndarray, scale: np.ndarray, n_channels: int
) -> np.ndarray:
    """Build the F × C matrix used by :func:`channel_attribution`.

    ``feature_channel[f]`` is the input channel feature f was computed from, ``scale[f]`` its
    mean squared reconstruction error on calibration data. Dividing by it keeps a channel
    that is always reconstructed loosely from winning every alarm.
    """
    channels = np.asarray(feature_channel, dtype=np.int64)
    weights = np.zeros((channels.shape[0], n_channels))
    weights[np.arange(channels.shape[0]), channels] = 1.0 / np.maximum(scale, 1e-12)
    return weights


def channel_attribution(x: np.ndarray, x_hat: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each input channel's share of the (calibration-scaled) input-space error.

    Rows sum to 1; ``weights`` comes from :func:`attribution_weights`. One GEMM per batch.
    """
    err = np.square(_as_matrix("x_hat", x_hat).astype(np.float64) - _as_matrix("x", x))
    per_channel = err @ weights
    totals = per_channel.sum(axis=1, keepdims=True)
    uniform = np.full_like(per_channel, 1.0 / per_channel.shape[1])
    return np.divide(per_channel, totals, out=uniform, where=totals > 0)
