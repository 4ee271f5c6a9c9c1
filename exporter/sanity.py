"""Export-time sanity checks: is this model fit to ship, judged without labels?

A bundle is built from normal data only, so nothing downstream tells the user that the model
is under-trained, over-fitted, numerically unstable or — the classic autoencoder failure —
an identity map that reconstructs anything it is shown. Each check here answers one of those
questions from the training history and held-out normal (calibration) windows:

- ``underfit``: the validation curve was still falling steeply when training stopped.
- ``overfit``: validation loss far above training loss at the kept epoch, or validation
  rising while training loss falls.
- ``gradient_norm``: exploding (non-finite or spiking) or vanishing per-epoch gradient norms.
- ``identity``: corrupted windows (noise, spikes, whole-window scaling) must not be
  reconstructed as well as normal ones: the share of each corruption the model copies to
  its output (an identity map copies all of it).
- ``pseudo_anomaly``: synthetic anomalies (:mod:`exporter.pseudo_anomalies`) scored with NAP
  (the default alarm score) against held-out normal windows: AUROC per kind and overall.

Every check gives a name, value, floor or ceiling (past it: ``warn``), ``fail_at`` (past
it: ``fail``), ``pass`` / ``warn`` / ``fail`` and a message saying what to do.
:func:`enforce` turns failures into :class:`SanityError` (``rapp-export build --strict``);
otherwise they are recorded as warnings.

Scores are computed with the PyTorch pathway in eval mode, BatchNorm folded exactly as
exported (:class:`exporter.model.PathwayModule`), so the checks run before any export work
and do not depend on the artifacts (the fp32 ONNX graph matches it to ~1e-7).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from agent.core.features import segment_features
from agent.core.rapp import NapParams, fit_nap, nap_score, pathway_differences, recon_score
from exporter.errors import ExportError
from exporter.metrics import auroc
from exporter.model import PathwayModule, TrainedModel
from exporter.pseudo_anomalies import make_pseudo_anomalies, noise, spike

PASS, WARN, FAIL = "pass", "warn", "fail"
_SEVERITY = {PASS: 0, WARN: 1, FAIL: 2}
BATCH = 4096


class SanityError(ExportError):
    """A strict build refused: at least one sanity check failed (the message says which)."""


@dataclass(frozen=True)
class SanityLimits:
    """Floors and ceilings of the checks (documented in the README, "Sanity checks").

    Chosen on synthetic currents, the simulator and the CNC data
    (``benchmarks/sanity_tracking.py``): a converged model clears them with room; a model
    trained for one epoch or with a bottleneck as wide as its input does not.
    """

    min_epochs: int = 5  # fewer epochs than this, run to the limit, cannot have converged
    # Relative drop of the validation loss over the last ``tail_fraction`` of the epochs.
    tail_fraction: float = 0.1
    still_falling_warn: float = 0.05
    still_falling_fail: float = 0.25
    # Validation / training loss at the kept (best) epoch.
    overfit_warn: float = 2.0
    overfit_fail: float = 5.0
    # Largest batch gradient norm of an epoch / lowest epoch-mean norm seen up to it.
    grad_spike_warn: float = 1e2
    grad_spike_fail: float = 1e4
    # Last-epoch mean gradient norm / first-epoch mean gradient norm.
    grad_vanish_warn: float = 1e-4
    # Share of a corruption copied to the output (identity-function test; identity = 1).
    identity_warn: float = 0.5
    identity_fail: float = 0.8
    # NAP AUROC, normal vs all pseudo-anomalies pooled; and per kind (warn only).
    pseudo_auroc_warn: float = 0.9
    pseudo_auroc_fail: float = 0.75
    pseudo_kind_warn: float = 0.6


@dataclass(frozen=True)
class SanityCheck:
    """One check's verdict; ``floor`` for higher-is-better values, ``ceiling`` otherwise
    (crossing it warns) and ``fail_at`` the bound whose crossing fails."""

    name: str
    value: float | None
    status: str
    message: str
    floor: float | None = None
    ceiling: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    fail_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _finite_or_none(self.value),
            "floor": self.floor,
            "ceiling": self.ceiling,
            "fail_at": self.fail_at,
            "status": self.status,
            "message": self.message,
            "details": dict(self.details),
        }

    def line(self) -> str:
        value = "–" if self.value is None else f"{self.value:.4g}"
        bound = ""
        if self.floor is not None:
            bound = f" (floor {self.floor:g})"
        elif self.ceiling is not None:
            bound = f" (ceiling {self.ceiling:g})"
        return f"{self.status.upper():<4} {self.name:<15} {value}{bound}: {self.message}"


@dataclass(frozen=True)
class SanityReport:
    checks: tuple[SanityCheck, ...]

    @property
    def status(self) -> str:
        return max((c.status for c in self.checks), key=_SEVERITY.__getitem__, default=PASS)

    def failures(self) -> list[SanityCheck]:
        return [c for c in self.checks if c.status == FAIL]

    def by_name(self, name: str) -> SanityCheck:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """Everything, for report.json."""
        return {"status": self.status, "checks": [c.to_json() for c in self.checks]}

    def summary_json(self) -> dict[str, Any]:
        """Verdicts without details, for the manifest (``sanity.status`` / ``sanity.checks``)."""
        checks = []
        for c in self.checks:
            entry = c.to_json()
            del entry["details"]
            checks.append(entry)
        return {"status": self.status, "checks": checks}

    def lines(self) -> list[str]:
        return [c.line() for c in self.checks]


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _grade_floor(value: float, warn: float, fail: float) -> str:
    """Higher is better: below ``fail`` fails, below ``warn`` warns (NaN fails)."""
    if not math.isfinite(value) or value < fail:
        return FAIL
    return WARN if value < warn else PASS


def _grade_ceiling(value: float, warn: float, fail: float) -> str:
    """Lower is better: above ``fail`` fails, above ``warn`` warns (NaN fails)."""
    if not math.isfinite(value) or value > fail:
        return FAIL
    return WARN if value > warn else PASS


# --------------------------------------------------------------------------- training curve


def _curve(history: Mapping[str, Any], key: str) -> np.ndarray:
    return np.asarray(history.get(key) or [], dtype=np.float64)


def check_underfit(history: Mapping[str, Any], limits: SanityLimits) -> SanityCheck:
    """Was training stopped while the validation loss was still falling steeply?

    Value: how much lower the best validation loss is than the best one before the last
    ``tail_fraction`` of the epochs (at least 2 epochs), relative. A run that reached its
    epoch limit with a large value was still learning; one that early stopping ended has
    flattened by construction and passes unless the value is extreme. A run to the limit
    with fewer than ``min_epochs`` epochs fails outright.
    """
    val = _curve(history, "val_loss")
    name, warn, fail = "underfit", limits.still_falling_warn, limits.still_falling_fail
    if val.size == 0:
        return SanityCheck(
            name, None, WARN, "no training curve in the model (trained by an older rapp-export); "
            "retrain to record one", ceiling=warn
        )  # fmt: skip
    run = int(history.get("epochs_run", val.size))
    limit = int((history.get("settings") or {}).get("epochs", run))
    stopped_early = run < limit
    tail = max(2, math.ceil(limits.tail_fraction * val.size))
    details = {"epochs_run": run, "epoch_limit": limit, "stopped_early": stopped_early}
    if val.size <= tail:
        drop = float("nan")
    else:
        start = float(np.min(val[: val.size - tail]))
        drop = (start - float(np.min(val))) / start if start > 0 else 0.0
    details["tail_epochs"] = tail
    if not stopped_early and run < limits.min_epochs:
        return SanityCheck(
            name, _finite_or_none(drop), FAIL,
            f"only {run} epoch(s) of training: the model cannot have converged; train longer "
            "(raise --epochs; early stopping ends training once validation loss flattens)",
            ceiling=warn, details=details, fail_at=fail,
        )  # fmt: skip
    if not math.isfinite(drop):
        drop = 0.0
    status = PASS if stopped_early and drop <= fail else _grade_ceiling(drop, warn, fail)
    if status == PASS:
        message = (
            "validation loss flattened; early stopping ended training"
            if stopped_early
            else "validation loss flat at the epoch limit"
        )
    else:
        message = (
            f"validation loss still fell {drop:.0%} over the last {tail} epochs: under-trained; "
            "train longer (--epochs) or with a higher learning rate"
        )
    return SanityCheck(name, drop, status, message, ceiling=warn, details=details, fail_at=fail)


def check_overfit(history: Mapping[str, Any], limits: SanityLimits) -> SanityCheck:
    """Validation vs training loss at the kept epoch, and the curve after it.

    Training loss is averaged over the epoch in train mode, validation loss measured in eval
    mode at its end, so early in training val < train is normal; a ratio well above 1 means
    the model learned the training windows rather than the process.
    """
    train, val = _curve(history, "train_loss"), _curve(history, "val_loss")
    name, warn, fail = "overfit", limits.overfit_warn, limits.overfit_fail
    if train.size == 0 or val.size != train.size:
        return SanityCheck(
            name, None, WARN, "no training curve in the model; retrain to record one",
            ceiling=warn,
        )  # fmt: skip
    best = int(history.get("best_epoch", int(np.argmin(val))))
    best = min(max(best, 0), val.size - 1)
    ratio = float(val[best] / train[best]) if train[best] > 0 else float("inf")
    # After the kept epoch: did validation rise while training kept falling?
    after_val = float(val[-1] / val[best]) if val[best] > 0 else 1.0
    after_train = float(train[-1] / train[best]) if train[best] > 0 else 1.0
    diverging = val.size - 1 > best and after_val > 1.1 and after_train < 0.95
    details = {
        "best_epoch": best,
        "val_over_train_at_best": ratio,
        "val_rise_after_best": after_val,
        "train_change_after_best": after_train,
        "diverging_after_best": diverging,
    }
    status = _grade_ceiling(ratio, warn, fail)
    if status != PASS:
        message = (
            f"validation loss {ratio:.2g}× the training loss at the kept epoch: over-fitted; "
            "record more normal data, use a smaller model or add weight decay"
        )
    elif diverging:
        message = (
            f"validation loss rose {after_val - 1:.0%} after epoch {best} while training loss "
            "fell; early stopping kept the best epoch (more data would help)"
        )
    else:
        message = "validation loss tracks training loss"
    return SanityCheck(name, ratio, status, message, ceiling=warn, details=details, fail_at=fail)


def check_gradient_norm(history: Mapping[str, Any], limits: SanityLimits) -> SanityCheck:
    """Exploding (non-finite, or a spike far above the norm training had settled to) or
    vanishing gradients.

    Value: max over epochs e of grad_norm_max[e] / min(grad_norm[0 … e]). Comparing with the
    lowest mean *so far* keeps the normal decay of gradients during convergence from
    looking like a spike, while a burst after training has settled stands out.
    """
    mean = _curve(history, "grad_norm")
    peak = _curve(history, "grad_norm_max")
    name = "gradient_norm"
    if mean.size == 0:
        return SanityCheck(
            name, None, WARN, "no gradient-norm history in the model (trained by an older "
            "rapp-export); retrain to record it", ceiling=limits.grad_spike_warn,
        )  # fmt: skip
    if peak.size != mean.size:  # older models recorded only the per-epoch mean
        peak = mean
    typical = float(np.median(mean))
    details: dict[str, Any] = {
        "first_mean": float(mean[0]),
        "last_mean": float(mean[-1]),
        "median_mean": typical,
        "peak_max": float(np.max(peak)) if np.isfinite(peak).all() else None,
    }
    if not (np.isfinite(mean).all() and np.isfinite(peak).all()):
        return SanityCheck(
            name, None, FAIL, "non-finite gradient norm during training: exploding gradients; "
            "lower the learning rate and check the data for outliers",
            ceiling=limits.grad_spike_warn, details=details,
        )  # fmt: skip
    floor_so_far = np.minimum.accumulate(mean)
    settled = floor_so_far > 0  # an all-zero gradient is vanishing, judged below
    ratios = peak[settled] / floor_so_far[settled]
    spike_ratio = float(np.max(ratios)) if ratios.size else 1.0
    vanish = float(mean[-1] / mean[0]) if mean[0] > 0 else 0.0
    details["spike_ratio"] = spike_ratio
    details["last_over_first"] = vanish
    status = _grade_ceiling(spike_ratio, limits.grad_spike_warn, limits.grad_spike_fail)
    if status != PASS:
        message = (
            f"gradient norm spiked to {spike_ratio:.3g}× its settled value: exploding "
            "gradients; lower the learning rate or clean outliers from the training data"
        )
    elif vanish < limits.grad_vanish_warn:
        status = WARN
        message = (
            f"gradient norm fell to {vanish:.2g}× its first-epoch value: vanishing gradients; "
            "check the data scale and raise the learning rate"
        )
    else:
        message = "gradient norms stayed in a healthy range"
    return SanityCheck(
        name,
        spike_ratio,
        status,
        message,
        ceiling=limits.grad_spike_warn,
        details=details,
        fail_at=limits.grad_spike_fail,
    )


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Pathway:
    hidden: tuple[np.ndarray, ...]  # h_0 = x, h_1 … h_L
    hidden_hat: tuple[np.ndarray, ...]  # ĥ_0 = x̂, ĥ_1 … ĥ_L


def torch_pathway(trained: TrainedModel, x: np.ndarray) -> Pathway:
    """The exported pathway (BatchNorm folded, eval mode) run in PyTorch, batched."""
    module = PathwayModule(trained.model).eval()
    n_layers = trained.n_layers
    parts: list[tuple[np.ndarray, ...]] = []
    with torch.no_grad():
        for lo in range(0, len(x), BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(x[lo : lo + BATCH], dtype=np.float32))
            parts.append(tuple(t.numpy() for t in module(batch)))
    outs = tuple(np.concatenate([p[j] for p in parts]) for j in range(2 * n_layers + 1))
    x32 = np.asarray(x, dtype=np.float32)
    return Pathway((x32, *outs[:n_layers]), (outs[n_layers], *outs[n_layers + 1 :]))


def scale_window(segments: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every channel of the window scaled by 1.5 (normalized units). Only up: shrinking a
    window shrinks its error too, which says nothing about copying."""
    del rng  # deterministic; the signature matches the other corruptions
    return (segments * 1.5).astype(np.float32)


IDENTITY_CORRUPTIONS = {"noise": noise, "spike": spike, "scale_window": scale_window}


def _safe_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    if not np.isfinite(scores).all():
        scores = np.nan_to_num(scores, nan=np.inf, posinf=np.inf)
    return auroc(scores, labels)


def _two_class_auroc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    labels = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return _safe_auroc(np.r_[normal, anomalous], labels)


def check_identity(
    trained: TrainedModel, hold_segments: np.ndarray, limits: SanityLimits, seed: int
) -> SanityCheck:
    """Corrupted windows must not be reconstructed as well as normal ones.

    Value: the share of a corruption that the model copies to its output, ‖x̂(x′) − x̂(x)‖² /
    ‖x′ − x‖² per window (median), median over the corruptions. An identity map copies all
    of it (≈ 1); an autoencoder that learned the normal data projects most of an off-manifold
    corruption away (≈ bottleneck / input width for noise). Unlike the reconstruction-error
    AUROC (recorded too), it does not depend on how well normal windows reconstruct.
    The median over corruptions tolerates one that legitimately looks normal (a scaled short
    window of a slow signal is another plausible window).
    """
    kinds = trained.spec.features
    rng = np.random.default_rng(seed + 17)
    normal_x = segment_features(hold_segments, kinds)
    normal_hat = torch_pathway(trained, normal_x).hidden_hat[0]
    normal_err = recon_score(normal_x, normal_hat)
    per_kind: dict[str, dict[str, float]] = {}
    for kind, corrupt in IDENTITY_CORRUPTIONS.items():
        bad_x = segment_features(corrupt(hold_segments, rng), kinds)
        bad_hat = torch_pathway(trained, bad_x).hidden_hat[0]
        err = recon_score(bad_x, bad_hat)
        moved = np.einsum("ij,ij->i", bad_x - normal_x, bad_x - normal_x).astype(np.float64)
        copied = np.einsum("ij,ij->i", bad_hat - normal_hat, bad_hat - normal_hat)
        per_kind[kind] = {
            "pass_through": float(np.median(copied / np.maximum(moved, 1e-12))),
            "auroc_recon": _two_class_auroc(normal_err, err),
            "median_error_ratio": float(np.median(err) / max(np.median(normal_err), 1e-12)),
        }
    value = float(np.median([v["pass_through"] for v in per_kind.values()]))
    status = _grade_ceiling(value, limits.identity_warn, limits.identity_fail)
    if status == PASS:
        message = "corruptions are not copied to the output: no identity map"
    else:
        message = (
            f"the model copies {value:.0%} of a corruption to its output: close to an identity "
            "map, so anomalies reconstruct as well as normal data; use a smaller bottleneck "
            f"(--bottleneck, now {trained.model.sizes[-1]} for {trained.model.sizes[0]} inputs)"
        )
    return SanityCheck(
        "identity",
        value,
        status,
        message,
        ceiling=limits.identity_warn,
        details={"per_corruption": per_kind},
        fail_at=limits.identity_fail,
    )


@dataclass(frozen=True)
class TorchNap:
    """NAP fitted on normal feature vectors through the PyTorch pathway (fp32, eval mode)."""

    trained: TrainedModel
    layers: tuple[int, ...]
    params: NapParams

    @classmethod
    def fit(
        cls,
        trained: TrainedModel,
        features: np.ndarray,
        layers: Sequence[int] | None = None,
        rtol: float | None = None,
    ) -> TorchNap:
        chosen = tuple(range(trained.n_layers + 1)) if layers is None else tuple(layers)
        p = torch_pathway(trained, features)
        diffs = pathway_differences(p.hidden, p.hidden_hat, chosen)
        return cls(trained, chosen, fit_nap(diffs, rtol))

    def score(self, features: np.ndarray) -> np.ndarray:
        p = torch_pathway(self.trained, features)
        return nap_score(pathway_differences(p.hidden, p.hidden_hat, self.layers), self.params)


def check_pseudo_anomalies(
    trained: TrainedModel,
    fit_segments: np.ndarray,
    hold_segments: np.ndarray,
    limits: SanityLimits,
    layers: Sequence[int] | None = None,
    rtol: float | None = None,
    seed: int = 0,
    nap: TorchNap | None = None,
) -> SanityCheck:
    """NAP AUROC, held-out normal vs each synthetic anomaly; NAP fitted on ``fit_segments``.

    Kinds that leave the windows unchanged (drift on one-sample windows) are not applicable.
    A kind below ``pseudo_kind_warn`` only warns: some are invisible by construction (a time
    shift of a fixed window of a periodic signal is just another phase); the pooled AUROC
    over all kinds is graded against the floor.
    """
    kinds = trained.spec.features
    if nap is None:
        nap = TorchNap.fit(trained, segment_features(fit_segments, kinds), layers, rtol)
    score = nap.score
    normal_x = segment_features(hold_segments, kinds)
    normal = score(normal_x)
    per_kind: dict[str, float | None] = {}
    skipped: dict[str, str] = {}
    pooled: list[np.ndarray] = []
    for kind, segs in make_pseudo_anomalies(hold_segments, seed=seed).items():
        x = segment_features(segs, kinds)
        if np.allclose(x, normal_x, rtol=0.0, atol=1e-6):
            per_kind[kind] = None
            skipped[kind] = "leaves these windows unchanged (too short for this corruption)"
            continue
        s = score(x)
        per_kind[kind] = _two_class_auroc(normal, s)
        pooled.append(s)
    if not pooled:
        raise ExportError("no pseudo-anomaly kind changes these windows; check the segmentation")
    bad = np.concatenate(pooled)
    value = _two_class_auroc(normal, bad)
    status = _grade_floor(value, limits.pseudo_auroc_warn, limits.pseudo_auroc_fail)
    weak = sorted(k for k, v in per_kind.items() if v is not None and v < limits.pseudo_kind_warn)
    if status != PASS:
        message = (
            f"NAP separates synthetic anomalies from held-out normal windows poorly (AUROC "
            f"{value:.3f}): train longer, use a smaller bottleneck, or record more normal data"
        )
    elif weak:
        status = WARN
        message = (
            f"pseudo-anomaly kinds {', '.join(weak)} score below AUROC "
            f"{limits.pseudo_kind_warn:g}: the model is blind to them (expected for a "
            "time shift of fixed windows of a periodic signal; otherwise train longer)"
        )
    else:
        message = "NAP ranks synthetic anomalies above held-out normal windows"
    return SanityCheck(
        "pseudo_anomaly",
        value,
        status,
        message,
        floor=limits.pseudo_auroc_warn,
        details={
            "score": "nap",
            "per_kind": per_kind,
            "kind_floor": limits.pseudo_kind_warn,
            "not_applicable": skipped,
            "nap_k": nap.params.k,
            "n_normal": len(normal),
        },
        fail_at=limits.pseudo_auroc_fail,
    )


# --------------------------------------------------------------------------- entry points


def run_sanity_checks(
    trained: TrainedModel,
    fit_segments: np.ndarray,
    hold_segments: np.ndarray,
    *,
    layers: Sequence[int] | None = None,
    rtol: float | None = None,
    seed: int = 0,
    limits: SanityLimits | None = None,
    nap: TorchNap | None = None,
) -> SanityReport:
    """All checks on a trained model; ``fit_segments`` fit NAP, ``hold_segments`` are scored.

    Both are held-out normal segments (N × L × C, normalized), never the training set.
    ``nap`` reuses a NAP already fitted on ``fit_segments`` (it is the costly part).
    """
    limits = limits or SanityLimits()
    history = trained.history or {}
    return SanityReport(
        (
            check_underfit(history, limits),
            check_overfit(history, limits),
            check_gradient_norm(history, limits),
            check_identity(trained, hold_segments, limits, seed),
            check_pseudo_anomalies(
                trained, fit_segments, hold_segments, limits, layers, rtol, seed, nap
            ),
        )
    )


def enforce(report: SanityReport, strict: bool) -> None:
    """Raise :class:`SanityError` naming every failed check when ``strict``."""
    failed = report.failures()
    if strict and failed:
        lines = "; ".join(f"{c.name}: {c.message}" for c in failed)
        raise SanityError(
            f"--strict: {len(failed)} sanity check(s) failed, no bundle written — {lines}"
        )
