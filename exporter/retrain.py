"""`rapp-export retrain`: a new, checked bundle from the windows the agent captured.

Input: the bundle the agent serves, the model directory it was built from (weights and the
replay buffer of its training data, :mod:`exporter.replay`), the agent's capture directories
(``[robots.drift] capture_dir``: windows that raised no alarm, with their program id) and the
old calibration data (the recordings the bundle was built with, or the ``calibration.npz`` a
previous retrain left in the model directory).

**Recipe.** Captured windows of the bundle's programs are split into blocks (time order): 70 %
teach, 30 % are held out. The model is warm-started from the old weights and fine-tuned on
the teaching windows mixed with the replay buffer — every epoch is all teaching windows plus
as many replay windows again, drawn afresh (``replay_mix`` = 0.5: half of what the model sees
is old data; 0 is plain fine-tuning), early-stopped on the same mix of held-out blocks of
both. The bundle is then built with the old bundle's recipe (id, robot, programs, alarm
settings, threshold rule, NAP rank rule, precisions) on the old calibration windows plus the
held-out capture windows, with the sanity checks strict, as the next version.

**Gates** (all scored with the fp32 artifacts, window by window, on the alarm score):

1. *capture*: the agent captures only windows below the threshold, so at most
   ``max_capture_alarm_share`` (5 %) of the captured windows may score at or above the current
   bundle's threshold; more means the capture holds faults or another machine's data, and
   retraining stops before any training;
2. *old calibration*: the new bundle's share of old calibration windows at or above its
   threshold may exceed the old bundle's share by at most ``max_false_alarm_increase``
   (0.005, i.e. 0.5 percentage points);
3. *new fit*: the new bundle's mean reconstruction error (Recon) on the held-out capture
   windows must be below the old bundle's by at least ``min_fit_gain`` (relative; 0 = lower);
4. *sanity*: the build's sanity checks (``exporter.sanity``) must not fail.

A failed gate raises :class:`RetrainGateError` naming every failure; nothing is written. The
new model directory holds the fine-tuned weights, a new replay buffer (the old one and the
teaching windows, bounded by the same rule) and ``calibration.npz`` (the calibration windows
the new bundle was built on), so the next retrain needs only the new capture.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from agent.core.bundle import Bundle, load_bundle
from agent.core.features import Normalization, segment_features
from agent.core.scoring import open_scorer
from agent.pipeline.capture import load_capture
from exporter.build import BuildSettings, BuiltBundle, ExtraArtifacts, build_bundle
from exporter.data import load_recordings, segment_grouped
from exporter.errors import ExportError, ExportInputError
from exporter.model import Autoencoder, TrainedModel
from exporter.replay import (
    CALIBRATION_NAME,
    MAX_REPLAY_WINDOWS,
    ReplayBuffer,
    load_replay,
    save_replay,
)
from exporter.train import EarlyStopping, seed_everything, split_validation, train_epoch

MIN_CAPTURE_WINDOWS = 32
SCORE_BATCH = 1024


class RetrainGateError(ExportError):
    """A retrained (or merged) model failed a gate against the bundle it would replace."""


@dataclass(frozen=True)
class FineTuneSettings:
    epochs: int = 100
    patience: int = 10
    batch_size: int = 128
    learning_rate: float = 5e-4
    # Share of replay windows in what the model sees per epoch (0: plain fine-tuning).
    replay_mix: float = 0.5
    validation_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.replay_mix < 1.0:
            raise ExportInputError(f"replay mix {self.replay_mix}: must be in [0, 1)")


@dataclass(frozen=True)
class GateLimits:
    max_capture_alarm_share: float = 0.05
    max_false_alarm_increase: float = 0.005
    min_fit_gain: float = 0.0


@dataclass(frozen=True)
class RetrainSettings:
    fine_tune: FineTuneSettings = field(default_factory=FineTuneSettings)
    gates: GateLimits = field(default_factory=GateLimits)
    holdout_fraction: float = 0.3
    replay_limit: int = MAX_REPLAY_WINDOWS
    replay_rule: str = "stratified"
    quantize: bool | None = None  # None: as the old bundle
    seed: int = 0
    # False: gates and sanity checks are recorded, not enforced (benchmarks measure what a
    # refused model would have done); `rapp-export retrain` is always strict.
    strict: bool = True


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    message: str
    values: dict[str, float]

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "message": self.message, **self.values}


@dataclass
class RetrainResult:
    built: BuiltBundle
    trained: TrainedModel
    replay: ReplayBuffer
    calibration: ReplayBuffer
    gates: list[Gate]
    report: dict[str, Any]

    def save_model(self, directory: Path) -> None:
        """The new model directory: weights, replay buffer and calibration windows."""
        self.trained.save(directory)
        save_replay(directory, self.replay)
        save_replay(directory, self.calibration, CALIBRATION_NAME)


# --------------------------------------------------------------------------- inputs


def physical_identity(n_channels: int) -> Normalization:
    return Normalization(np.zeros(n_channels, np.float32), np.ones(n_channels, np.float32))


def read_captures(directories: Sequence[Path], generation: int) -> ReplayBuffer:
    """Every window of the agent's capture directories, oldest first, as one buffer."""
    parts = []
    for folder in directories:
        if not Path(folder).is_dir():
            raise ExportInputError(
                f"{folder}: no such capture directory ([robots.drift] capture_dir)"
            )
        samples, programs = load_capture(folder)
        if len(samples):
            parts.append(ReplayBuffer.of(samples, programs, generation))
    if not parts:
        names = ", ".join(str(d) for d in directories)
        raise ExportInputError(f"{names}: no captured windows (normal-*.npz) to retrain on")
    out = parts[0]
    for part in parts[1:]:
        out = out.join(part)
    return out


def read_calibration(paths: Sequence[Path], model_dir: Path, trained: TrainedModel) -> ReplayBuffer:
    """The old calibration windows in physical units, with their recording as ``generation``:
    from ``paths`` (recordings), else the model directory's ``calibration.npz``."""
    if not paths:
        if not (Path(model_dir) / CALIBRATION_NAME).exists():
            raise ExportInputError(
                f"{model_dir}: no {CALIBRATION_NAME}; pass --calibration with the held-out "
                "normal recordings the current bundle was built with"
            )
        return load_replay(model_dir, CALIBRATION_NAME)
    spec = trained.spec
    recordings = load_recordings(paths, spec.channels)
    segmented, groups = segment_grouped(spec, physical_identity(spec.n_channels), recordings)
    buffer = ReplayBuffer.of(segmented.segments, segmented.program)
    return replace(buffer, generation=np.asarray(groups, dtype=np.int64))


def serving(buffer: ReplayBuffer, programs: Sequence[int]) -> ReplayBuffer:
    """The windows of ``programs`` (all of them for a bundle serving any program); windows
    without a program id are kept (the agent routed them to this bundle by membership)."""
    if not programs:
        return buffer
    return buffer.take(np.flatnonzero(np.isin(buffer.program, [*programs, -1])))


def check_shape(buffer: ReplayBuffer, trained: TrainedModel, what: str) -> None:
    spec = trained.spec
    want = (spec.segmentation.length, spec.n_channels)
    if buffer.segments.shape[1:] != want:
        raise ExportInputError(
            f"{what}: windows of {buffer.segments.shape[1:]} (samples × channels) but the "
            f"model reads {want} ({spec.segmentation.kind} of {want[0]}, channels "
            f"{','.join(spec.channels)}); capture with the agent serving this bundle"
        )


def next_version(version: str) -> str:
    """The version after ``version``: its last number plus one ("3" → "4", "1.2" → "1.3",
    "v7" → "v8"), which the agents' version order (numbers per dot) ranks above it."""
    runs = list(re.finditer(r"\d+", version))
    if not runs:
        return f"{version}.1" if version else "1"
    last = runs[-1]
    return f"{version[: last.start()]}{int(last[0]) + 1}{version[last.end() :]}"


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class BundleScores:
    score: np.ndarray  # the alarm score
    recon: np.ndarray
    threshold: float

    def alarm_share(self) -> float:
        return float(np.mean(self.score >= self.threshold)) if len(self.score) else 0.0


def score_windows(bundle: Bundle, segments: np.ndarray) -> BundleScores:
    """Alarm score and Recon of physical-unit windows through the fp32 artifact, as the
    agent computes them (its normalization, features, backend and RaPP code)."""
    scorer = open_scorer(bundle, backend="onnxruntime", precision="fp32")
    spec = bundle.manifest.input
    name = bundle.manifest.alarm.score
    score, recon = [], []
    for lo in range(0, len(segments), SCORE_BATCH):
        normalized = bundle.normalization.apply(segments[lo : lo + SCORE_BATCH])
        scores = scorer.score(segment_features(normalized, spec.features))
        score.append(scores.get(name))
        recon.append(scores.recon)
    empty = np.zeros(0)
    return BundleScores(
        np.concatenate(score) if score else empty,
        np.concatenate(recon) if recon else empty,
        float(scorer.thresholds[name]),
    )


# --------------------------------------------------------------------------- fine-tuning


def _mix_loss(model: nn.Module, parts: Sequence[torch.Tensor], weights: Sequence[float]) -> float:
    loss_fn = nn.MSELoss()
    with torch.no_grad():
        return sum(
            w * float(loss_fn(model(x), x)) for x, w in zip(parts, weights, strict=True) if len(x)
        )


def fine_tune(
    model: Autoencoder,
    new_x: np.ndarray,
    replay_x: np.ndarray,
    settings: FineTuneSettings,
    progress: Callable[[int, float, float], None] | None = None,
) -> tuple[Autoencoder, dict[str, Any]]:
    """Warm-started training on ``new_x`` mixed with ``replay_x`` (see the module doc); a
    copy of ``model`` with the best validation weights, and the history the sanity checks
    read (same keys as :func:`exporter.train.train_autoencoder`)."""
    seed_everything(settings.seed)
    mix = settings.replay_mix if len(replay_x) else 0.0
    new = torch.from_numpy(np.ascontiguousarray(new_x, dtype=np.float32))
    old = torch.from_numpy(np.ascontiguousarray(replay_x, dtype=np.float32))
    new_fit, new_val = split_validation(len(new), settings.validation_fraction, settings.seed)
    if mix > 0:
        old_fit, old_val = split_validation(len(old), settings.validation_fraction, settings.seed)
    else:
        old_fit = old_val = np.zeros(0, dtype=np.int64)
    x_new, x_old = new[new_fit], old[old_fit]
    val_parts, val_weights = (new[new_val], old[old_val]), (1.0 - mix, mix)
    per_epoch = round(len(x_new) * mix / (1.0 - mix)) if mix > 0 else 0
    model = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    generator = torch.Generator().manual_seed(settings.seed)
    model.eval()
    start_val = _mix_loss(model, val_parts, val_weights)
    history: dict[str, Any] = {
        "train_loss": [],
        "val_loss": [],
        "grad_norm": [],
        "grad_norm_max": [],
    }
    stopping = EarlyStopping(
        history, settings.patience, copy.deepcopy(model.state_dict()), start_val
    )
    for epoch in range(settings.epochs):
        drawn = torch.randint(len(x_old), (per_epoch,), generator=generator) if per_epoch else None
        x = x_new if drawn is None else torch.cat([x_new, x_old[drawn]])
        order = torch.randperm(len(x), generator=generator)
        train, norms = train_epoch(model, x, order, settings.batch_size, optimizer)
        val = _mix_loss(model, val_parts, val_weights)
        if stopping.end_epoch(model, epoch, train, val, norms, progress):
            break
    best_state, best_val, best_epoch = stopping.best_state, stopping.best_val, stopping.best_epoch
    model.load_state_dict(best_state)
    model.eval()
    history.update(
        best_epoch=max(best_epoch, 0),
        best_val_loss=best_val,
        start_val_loss=start_val,
        epochs_run=len(history["train_loss"]),
        n_train=len(x_new) + len(x_old),
        n_val=len(new_val) + len(old_val),
        warm_start=True,
        replay_mix=mix,
        settings=settings.__dict__,
    )
    return model, history


# --------------------------------------------------------------------------- the recipe


def recipe_of(bundle: Bundle, settings: RetrainSettings) -> BuildSettings:
    """The old bundle's build settings, with the next version."""
    manifest = bundle.manifest
    raw = manifest.raw
    first = manifest.artifacts[0].calibration
    thresholds = first.get("thresholds") or {}
    fidelity = (raw.get("sanity") or {}).get("fidelity") or {}
    int8 = any(a.precision == "int8" for a in manifest.artifacts) or bool(fidelity)
    activations = next((f.get("int8_activations") for f in fidelity.values()), None) or 16
    return BuildSettings(
        bundle_id=manifest.bundle_id,
        bundle_version=next_version(manifest.bundle_version),
        robot=manifest.robot,
        programs=tuple(manifest.programs),
        layers=tuple(manifest.rapp_layers),
        rtol=manifest.rtol,
        nap_stable=(first.get("nap_rank") or {}).get("rule", "stable") == "stable",
        alarm=manifest.alarm,
        quantize=int8 if settings.quantize is None else settings.quantize,
        int8_activations=int(activations),
        seed=settings.seed,
        strict=settings.strict,
        density=any(a.density is not None for a in bundle.artifacts.values()),
        false_alarms_per_day=thresholds.get("false_alarms_per_day")
        if thresholds.get("rule") == "false_alarm_rate"
        else None,
    )


def capture_gate(old: Bundle, capture: ReplayBuffer, limits: GateLimits) -> Gate:
    share = score_windows(old, capture.segments).alarm_share()
    limit = limits.max_capture_alarm_share
    passed = share <= limit
    message = (
        f"{share:.1%} of {len(capture)} captured windows score at or above the current "
        f"bundle's threshold (at most {limit:.1%})"
    )
    if not passed:
        message += (
            "; the agent captures only windows that raised no alarm, so this capture holds "
            "faulty windows or another machine's or program's data — check the capture "
            "directory; nothing was trained"
        )
    return Gate("capture", passed, message, {"alarm_share": share, "limit": limit})


def false_alarm_gate(
    name: str, old: Bundle, new: Bundle, segments: np.ndarray, increase: float
) -> Gate:
    before = score_windows(old, segments).alarm_share()
    after = score_windows(new, segments).alarm_share()
    passed = after <= before + increase
    message = (
        f"{after:.2%} of {len(segments)} windows at or above threshold (current bundle "
        f"{before:.2%}; at most {increase:.2%} more)"
    )
    if not passed:
        message += "; the new bundle would raise more false alarms on data the current one passes"
    return Gate(name, passed, message, {"before": before, "after": after, "limit": increase})


def fit_gate(old: Bundle, new: Bundle, segments: np.ndarray, min_gain: float) -> Gate:
    before = float(score_windows(old, segments).recon.mean())
    after = float(score_windows(new, segments).recon.mean())
    gain = 1.0 - after / before if before > 0 else 0.0
    passed = gain > min_gain if min_gain == 0 else gain >= min_gain
    message = (
        f"mean Recon on {len(segments)} held-out captured windows {after:.4g} vs {before:.4g} "
        f"({gain:+.1%}; needs more than {min_gain:.0%})"
    )
    if not passed:
        message += "; the new model does not fit the field data better — keep the current bundle"
    return Gate("new_fit", passed, message, {"before": before, "after": after, "gain": gain})


def sanity_gate(built: BuiltBundle) -> Gate:
    sanity = built.report["sanity"]
    bad = [c["name"] for c in sanity["checks"] if c["status"] == "fail"]
    return Gate(
        "sanity",
        not bad,
        f"status {sanity['status']}" + (f"; failed: {', '.join(bad)}" if bad else ""),
        {},
    )


def raise_failed(gates: Sequence[Gate], what: str) -> None:
    failed = [g for g in gates if not g.passed]
    if failed:
        lines = "; ".join(f"{g.name}: {g.message}" for g in failed)
        raise RetrainGateError(f"{what} refused, no bundle written — {lines}")


def split_capture(capture: ReplayBuffer, settings: RetrainSettings) -> tuple[np.ndarray, ...]:
    if len(capture) < MIN_CAPTURE_WINDOWS:
        raise ExportInputError(
            f"only {len(capture)} captured windows of the bundle's programs; let the agent "
            f"capture at least {MIN_CAPTURE_WINDOWS} (better ≥ 1000) before retraining"
        )
    return split_validation(len(capture), settings.holdout_fraction, settings.seed)


def retrain(
    old: Bundle,
    trained: TrainedModel,
    replay: ReplayBuffer,
    capture: ReplayBuffer,
    calibration: ReplayBuffer,
    settings: RetrainSettings,
    *,
    extra_artifacts: ExtraArtifacts | None = None,
    sign: Callable[[bytes], bytes] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> RetrainResult:
    """The next version of ``old`` from the captured windows (the module doc)."""
    if old.manifest.input != trained.spec:
        raise ExportInputError(
            f"bundle {old.bundle_id!r} and the model directory have different input specs; "
            "pass the model directory the bundle was built from"
        )
    capture = serving(capture, old.manifest.programs)
    for buffer, what in ((capture, "capture"), (replay, "replay"), (calibration, "calibration")):
        check_shape(buffer, trained, what)
    teach_rows, hold_rows = split_capture(capture, settings)
    gates = [capture_gate(old, capture, settings.gates)]
    log(gates[0].line())
    if settings.strict:
        raise_failed(gates, "retrain")

    norm = trained.normalization
    teach, hold = capture.take(teach_rows), capture.take(hold_rows)
    features = trained.spec.features
    new_x = segment_features(teach.normalized(norm), features)
    replay_x = segment_features(replay.normalized(norm), features)
    mix = settings.fine_tune.replay_mix
    log(f"fine-tuning on {len(teach)} captured + {len(replay)} replay windows (mix {mix:g})")
    model, history = fine_tune(trained.model, new_x, replay_x, settings.fine_tune)
    log(f"  validation MSE {history['start_val_loss']:.5g} → {history['best_val_loss']:.5g}")
    new_trained = TrainedModel(model, trained.spec, norm, history).with_latent_reference(
        np.concatenate([new_x, replay_x]), seed=settings.seed
    )
    generation = int(replay.generation.max(initial=0)) + 1
    group = int(calibration.generation.max(initial=-1)) + 1
    new_calibration = calibration.join(replace(hold, generation=np.full(len(hold), group)))
    recipe = recipe_of(old, settings)
    log(f"building {recipe.bundle_id} version {recipe.bundle_version}")
    built = build_bundle(
        new_trained,
        new_calibration.normalized(norm),
        recipe,
        extra_artifacts=extra_artifacts,
        sign=sign,
        log=log,
        calib_groups=new_calibration.generation,
    )
    new = load_bundle(built.data)
    limits = settings.gates
    gates += [
        false_alarm_gate(
            "old_calibration", old, new, calibration.segments, limits.max_false_alarm_increase
        ),
        fit_gate(old, new, hold.segments, limits.min_fit_gain),
        sanity_gate(built),
    ]
    for gate in gates[1:]:
        log(gate.line())
    if settings.strict:
        raise_failed(gates, "retrain")
    teach = replace(teach, generation=np.full(len(teach), generation, dtype=np.int64))
    new_replay = replay.join(teach).bounded(
        settings.replay_limit, settings.seed, settings.replay_rule
    )
    report = {
        "bundle_id": recipe.bundle_id,
        "from_version": old.manifest.bundle_version,
        "version": recipe.bundle_version,
        "capture": {"windows": len(capture), "teach": len(teach), "held_out": len(hold)},
        "replay": {"windows": len(replay), "next": len(new_replay), "rule": settings.replay_rule},
        "fine_tune": {
            k: history[k] for k in ("start_val_loss", "best_val_loss", "epochs_run", "replay_mix")
        },
        "gates": [g.to_json() for g in gates],
    }
    return RetrainResult(
        built,
        new_trained,
        new_replay,
        new_calibration.bounded(settings.replay_limit * 2, settings.seed),
        gates,
        report,
    )
