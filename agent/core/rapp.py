"""RaPP novelty scores (Kim et al., ICLR 2020): Recon, SAP and NAP, in vectorized numpy.

Notation: h_0(x) = x, h_i = g_i(h_{i-1}); x̂ = decoder(encoder(x)); ĥ_i = h_i(x̂);
d_i(x) = ĥ_i − h_i. The pathway model computes every h_i and ĥ_i in one run, so scoring is
pure array work here and identical on the workstation and the edge box.

Public API:

- :func:`pathway_differences` concatenates the selected layers' differences into D (N × M).
- :func:`fit_nap` fits the NAP normalization on a difference matrix of normal data;
  :func:`stable_nap` keeps only the directions that hold on held-out normal rows.
- :func:`nap_score`, :func:`sap_score`, :func:`recon_score` score a batch; NAP in float64
  (the reference) or, where :func:`nap_float32_error` allows, float32 (:func:`float32_nap`).
- :func:`channel_attribution` splits a window's reconstruction error over input channels
  (legacy shares, for bundles without attribution statistics).
- :class:`ChannelStandardizer` / :func:`fit_channel_standardizer`: per-channel excess of
  reconstruction error and input deviation over their calibration statistics — what an alarm
  names as "the axis".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.core.errors import AgentInputError

FLOAT32_EPS = float(np.finfo(np.float32).eps)


class RappError(AgentInputError, ValueError):
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


# A whitened direction whose spread on held-out normal rows exceeds its spread on the fit
# rows by more than this factor is estimation noise, not structure of normal data (see
# :func:`stable_nap`); a running median over this many directions smooths the ratios.
STABLE_SPREAD_RATIO = 3.0
STABLE_SMOOTHING = 9


def holdout_spread(params: NapParams, fit_rows: int, holdout: np.ndarray) -> np.ndarray:
    """Per kept direction: mean square of the held-out rows' whitened projections over that
    of the ``fit_rows`` fit rows (1 for a direction the fit estimated well).

    On the fit rows the whitened projections are the left singular vectors, so each
    direction's mean square there is exactly 1 / fit_rows.
    """
    d = _as_matrix("holdout", holdout).astype(np.float64)
    if d.shape[1] != params.dim or len(d) == 0:
        raise RappError(f"holdout has shape {d.shape}; need rows of {params.dim} differences")
    z = (d - params.mu) @ params.projection
    return np.einsum("ij,ij->j", z, z) / len(d) * fit_rows


def stable_nap(
    params: NapParams,
    fit_rows: int,
    holdout: np.ndarray,
    max_ratio: float = STABLE_SPREAD_RATIO,
    smoothing: int = STABLE_SMOOTHING,
) -> NapParams:
    """``params`` cut to the leading directions whose held-out spread stays within
    ``max_ratio`` of the fit's (:func:`holdout_spread`, running median of ``smoothing``).

    The float32 noise floor (``rtol``) bounds the rank from below in precision only; with few
    fit rows the smallest kept singular values are estimation noise (their directions are
    fitted to exactly those rows), and dividing by them makes every new normal window look
    novel. This cut depends on what the data support, so the number of kept directions grows
    with the calibration set only as far as the new directions hold on held-out rows.
    """
    ratio = holdout_spread(params, fit_rows, holdout)
    half = smoothing // 2
    padded = np.pad(ratio, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    over = np.flatnonzero(np.median(windows, axis=1) > max_ratio)
    k = max(int(over[0]) if over.size else params.k, 1)
    return NapParams(
        mu=params.mu,
        projection=np.ascontiguousarray(params.projection[:, :k]),
        singular_values=params.singular_values[:k],
        rtol=params.rtol,
    )


def nap_score(diffs: np.ndarray, params: NapParams) -> np.ndarray:
    """NAP(x) = Σ_j ((d(x) − μ)·v_j / s_j)², for every row of ``diffs``: one GEMM.

    Computed in the precision of ``params.projection``: float64 (as fitted and loaded) is
    the reference; float32 params (:func:`float32_nap`) halve the memory the GEMM reads,
    and :func:`nap_float32_error` says whether a bundle's spectrum allows that. The scores
    are float64 either way.
    """
    d = _as_matrix("diffs", diffs)
    if d.shape[1] != params.dim:
        raise RappError(
            f"diffs have {d.shape[1]} columns but NAP was fitted on {params.dim}; "
            "the model and rapp.npz do not belong together"
        )
    dtype = np.float32 if params.projection.dtype == np.float32 else np.float64
    z = (d.astype(dtype, copy=False) - params.mu) @ params.projection
    return np.einsum("ij,ij->i", z, z).astype(np.float64, copy=False)


# Largest relative error of float32 NAP against the float64 reference that the scorer
# accepts (checked per bundle at load, :func:`nap_float32_error`). Thresholds sit at a
# calibration quantile and the canary tolerance is 1e-3, so 1e-5 cannot move an alarm
# decision except for a score within 0.001 % of its threshold; measured on the shipped
# model: ≤ 1e-6.
NAP_FLOAT32_RTOL = 1e-5


def float32_nap(params: NapParams) -> NapParams:
    """``params`` with μ and W in float32 (NAP then runs as a float32 GEMM)."""
    return NapParams(
        mu=params.mu.astype(np.float32),
        projection=params.projection.astype(np.float32),
        singular_values=params.singular_values,
        rtol=params.rtol,
    )


def nap_probes(params: NapParams, levels: Sequence[float], per_level: int = 8) -> np.ndarray:
    """float32 difference rows whose float64 NAP is each of ``levels`` (``per_level`` random
    directions each): d = μ + r·diag(s²)·Wᵀ has projection z = r, so NAP = ‖r‖².

    Small levels — windows close to the calibration mean — are where float32 loses most
    (the rounding of μ against a small d − μ), so callers pass the low calibration scores.
    """
    rng = np.random.default_rng(0)
    rows = []
    for level in levels:
        r = rng.normal(size=(per_level, params.k))
        r *= np.sqrt(max(float(level), 0.0) / np.einsum("ij,ij->i", r, r))[:, None]
        rows.append(params.mu + (r * np.square(params.singular_values)) @ params.projection.T)
    return np.concatenate(rows).astype(np.float32)


def relative_error(got: np.ndarray, ref: np.ndarray) -> float:
    """max |got − ref| / |ref| over the rows (a zero reference counts as 1e-30)."""
    ref = np.asarray(ref, dtype=np.float64)
    return float((np.abs(np.asarray(got) - ref) / np.maximum(np.abs(ref), 1e-30)).max())


def nap_float32_error(params: NapParams, diffs: np.ndarray) -> float:
    """Largest relative error of float32 NAP against float64 on ``diffs``."""
    return relative_error(nap_score(diffs, float32_nap(params)), nap_score(diffs, params))


def sap_score(diffs: np.ndarray) -> np.ndarray:
    """SAP(x) = Σ_i ‖d_i(x)‖² over the selected layers (a row of D)."""
    d = _as_matrix("diffs", diffs).astype(np.float64, copy=False)
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
    return error_shares(err @ weights)


def error_shares(per_channel: np.ndarray) -> np.ndarray:
    """Rows of per-channel errors (N × C) as shares summing to 1 (uniform for a zero row)."""
    totals = per_channel.sum(axis=1, keepdims=True)
    uniform = np.full_like(per_channel, 1.0 / per_channel.shape[1])
    return np.divide(per_channel, totals, out=uniform, where=totals > 0)


# --------------------------------------------------------------------------- attribution v2
#
# Why standardize: an autoencoder's fp32 reconstruction of an off-manifold window goes wrong
# on *every* channel (the linear bottleneck extrapolates), so raw error shares often name a
# healthy axis (simulator: payload 2 %, friction 11 % top-axis hits). Two per-channel signals,
# each standardized by its own spread on held-out normal windows, fix that:
#   - e_c: calibration-scaled reconstruction error of channel c (what the model could not
#     explain), and
#   - v_c: deviation of channel c's input from the calibration mean of each feature (for
#     cycle segmentation a feature is one phase of the cycle, so this is "the current of axis c
#     left its normal cycle profile"), which stays local to the faulted axis even when the
#     reconstruction goes wrong everywhere.
# Each signal casts one vote over the channels: channel c gets e⁺_c / (1 + Σ e⁺) +
# v⁺_c / (1 + Σ v⁺), with e⁺ = max(0, z(e)) and v⁺ = max(0, z(v)) in calibration standard
# deviations (:func:`excess_votes`). Adding the two z-scores instead let the error term decide:
# its spill over every channel scores highest where the normal error is steadiest (simulator
# friction on J3 was named J6 in 96 % of its windows; the deviation term alone was right).
# The 1 in each denominator (one standard deviation) keeps the votes continuous near normal
# windows, where a share of noise would jump between 0 and 1; for a fault (excess ≫ 1) they
# are the shares. A row sums to < 2.


@dataclass(frozen=True)
class ChannelStandardizer:
    """Calibration statistics for :func:`channel_excess` (see the comment above).

    ``feature_mean``/``feature_std`` (F,) are the calibration mean and spread of every input
    feature; ``deviation_*`` (C,) and ``error_*`` (C,) the mean and spread of the per-channel
    input deviation and calibration-scaled reconstruction error over calibration windows.
    """

    feature_mean: np.ndarray
    feature_std: np.ndarray
    deviation_mean: np.ndarray
    deviation_std: np.ndarray
    error_mean: np.ndarray
    error_std: np.ndarray


def _channel_sums(values: np.ndarray, feature_channel: np.ndarray, n_channels: int) -> np.ndarray:
    onehot = np.zeros((feature_channel.shape[0], n_channels))
    onehot[np.arange(feature_channel.shape[0]), feature_channel] = 1.0
    return values @ onehot


def channel_error(x: np.ndarray, x_hat: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-channel calibration-scaled squared reconstruction error (N × C)."""
    err = np.square(_as_matrix("x_hat", x_hat).astype(np.float64) - _as_matrix("x", x))
    return err @ weights


def channel_deviation(
    x: np.ndarray, feature_mean: np.ndarray, feature_std: np.ndarray, feature_channel: np.ndarray
) -> np.ndarray:
    """Per-channel Σ_f ((x_f − m_f) / s_f)² over the channel's features (N × C)."""
    z = (_as_matrix("x", x).astype(np.float64) - feature_mean) / feature_std
    channels = np.asarray(feature_channel, dtype=np.int64)
    return _channel_sums(np.square(z), channels, int(channels.max()) + 1)


def fit_channel_standardizer(
    x: np.ndarray, x_hat: np.ndarray, weights: np.ndarray, feature_channel: np.ndarray
) -> ChannelStandardizer:
    """Fit the statistics on held-out normal windows (x, x̂ of one artifact)."""
    xs = _as_matrix("x", x).astype(np.float64)
    if xs.shape[0] < 2 or not np.isfinite(xs).all():
        raise RappError("fit_channel_standardizer needs ≥ 2 finite calibration windows")
    mean = xs.mean(axis=0)
    # A floor keeps a feature that never moved in calibration (a constant phase) from
    # turning rounding noise into a huge deviation.
    std = np.maximum(xs.std(axis=0), 1e-3 * max(float(xs.std()), 1e-12))
    dev = channel_deviation(xs, mean, std, feature_channel)
    err = channel_error(xs, x_hat, weights)
    return ChannelStandardizer(
        feature_mean=mean,
        feature_std=std,
        deviation_mean=dev.mean(axis=0),
        deviation_std=np.maximum(dev.std(axis=0), 1e-12),
        error_mean=err.mean(axis=0),
        error_std=np.maximum(err.std(axis=0), 1e-12),
    )


def excess_votes(error_excess: np.ndarray, deviation_excess: np.ndarray) -> np.ndarray:
    """e⁺_c / (1 + Σ e⁺) + v⁺_c / (1 + Σ v⁺) per row, from the non-negative excesses (N × C)
    (see the comment above :class:`ChannelStandardizer`)."""
    e = _as_matrix("error_excess", error_excess)
    v = _as_matrix("deviation_excess", deviation_excess)
    if len(e) == 1:
        # The live path: one window, a dozen numbers; Python floats beat ten numpy calls.
        er, vr = e[0].tolist(), v[0].tolist()
        se, sv = 1.0 + sum(er), 1.0 + sum(vr)
        return np.array([[a / se + b / sv for a, b in zip(er, vr, strict=True)]])
    return e / (1.0 + e.sum(axis=1, keepdims=True)) + v / (1.0 + v.sum(axis=1, keepdims=True))


def channel_excess(
    x: np.ndarray,
    x_hat: np.ndarray,
    weights: np.ndarray,
    feature_channel: np.ndarray,
    stats: ChannelStandardizer,
) -> np.ndarray:
    """Per channel (N × C): its votes from the error and the deviation excess
    (:func:`excess_votes`); the largest names the axis."""
    err = (channel_error(x, x_hat, weights) - stats.error_mean) / stats.error_std
    dev = channel_deviation(x, stats.feature_mean, stats.feature_std, feature_channel)
    dev = (dev - stats.deviation_mean) / stats.deviation_std
    return excess_votes(np.maximum(err, 0.0), np.maximum(dev, 0.0))
