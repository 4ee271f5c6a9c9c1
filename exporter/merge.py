"""`rapp-export merge`: one model for several programs whose normal data are close.

A robot's archive gets one bundle per program; without merging it only grows. ``merge``
takes members — each a bundle and the model directory it was built from — and, when their
programs' normal data are close, trains one model on all of them and builds one bundle that
serves every member's programs, to replace them.

**Data.** Per program: the member's replay buffer (:mod:`exporter.replay`; windows without a
program id belong to a member serving a single program) plus, optionally, windows the agent
captured for that program. Each program's windows are split into blocks: 70 % teach, 30 %
are held out to calibrate and check the merged bundle.

**Distance** (:func:`program_distance`): the maximum mean discrepancy between two programs'
windows, on the feature vectors the merged model reads (raw or stats features, standardized
with the pooled normalization), with a Gaussian kernel whose squared bandwidth is the median
squared distance between the pooled windows (the median heuristic), unbiased estimate, at
most :data:`DISTANCE_ROWS` windows per program spread evenly over time; reported as
``sqrt(max(MMD², 0))`` (0 = the same distribution, at most √2). Programs of different members
are merged only when every such pair is at most ``max_distance`` apart (default
:data:`MAX_DISTANCE`). Measured on simulator windows (``benchmarks/results/retrain.md``):
another seed of the same program 0.00, the same program with a 10 % heavier payload ≈ 0.1,
programs 1 and 2 of the simulated arm ≈ 0.32.

**Model and bundle.** The merged model is trained from scratch (the first member's training
settings, normalization refitted on the pooled windows) and built with the first member's
recipe, serving the union of the programs; its id is ``bundle_id`` (default: the first
member's), its version the next after the member of that id (else "1").

**Gates.** For every program, the merged bundle's share of that program's held-out windows at
or above its threshold may exceed the share of the member that served it by at most
``max_false_alarm_increase`` (``exporter.retrain.GateLimits``); and the build's sanity checks
must not fail. A failed gate raises :class:`~exporter.retrain.RetrainGateError`; nothing is
written.

**On the device.** Pushed like any bundle, the merged bundle supersedes the members whose
programs it serves (``agent/pipeline/routes.py``): they stop scoring at its swap, serve again
if it is rolled back, and leave the agent's model store (pointer entry and file) when it is
committed; a bundle that shares only some of its programs is refused. Members still listed in
the agent's config are not served once the merged bundle is installed (a warning at start).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.core.bundle import Bundle
from agent.core.bundle import load_bundle as load_bundle_bytes
from agent.core.features import Normalization, segment_features
from exporter.build import BuildSettings, ExtraArtifacts, build_bundle
from exporter.errors import ExportInputError
from exporter.model import TrainedModel
from exporter.replay import MAX_REPLAY_WINDOWS, ReplayBuffer
from exporter.retrain import (
    MIN_CAPTURE_WINDOWS,
    Gate,
    GateLimits,
    RetrainGateError,
    RetrainResult,
    RetrainSettings,
    check_shape,
    false_alarm_gate,
    next_version,
    raise_failed,
    recipe_of,
    sanity_gate,
)
from exporter.train import TrainSettings, split_validation, train_autoencoder

DISTANCE_ROWS = 512
MAX_DISTANCE = 0.15


@dataclass(frozen=True)
class Member:
    """One bundle of the archive and the model directory it was built from."""

    bundle: Bundle
    trained: TrainedModel
    replay: ReplayBuffer

    @property
    def programs(self) -> tuple[int, ...]:
        return tuple(self.bundle.manifest.programs)


@dataclass(frozen=True)
class MergeSettings:
    bundle_id: str | None = None
    max_distance: float = MAX_DISTANCE
    gates: GateLimits = field(default_factory=GateLimits)
    holdout_fraction: float = 0.3
    epochs: int | None = None  # None: the first member's
    replay_limit: int = MAX_REPLAY_WINDOWS
    quantize: bool | None = None  # None: as the first member
    seed: int = 0


def check_members(members: Sequence[Member]) -> None:
    if len(members) < 2:
        raise ExportInputError("merge needs at least two members (--member BUNDLE MODEL_DIR)")
    first = members[0].bundle.manifest
    seen: dict[int, str] = {}
    for member in members:
        manifest = member.bundle.manifest
        if manifest.input != first.input or member.trained.spec != first.input:
            raise ExportInputError(
                f"bundle {manifest.bundle_id!r}: its input spec (channels, segmentation, "
                f"features) differs from {first.bundle_id!r}'s; only one robot's bundles merge"
            )
        if not member.programs:
            raise ExportInputError(
                f"bundle {manifest.bundle_id!r} serves every program; merge joins bundles "
                "built with --program"
            )
        for program in member.programs:
            if program in seen:
                raise ExportInputError(
                    f"program {program} is served by both {seen[program]!r} and "
                    f"{manifest.bundle_id!r}; give each program's bundle once"
                )
            seen[program] = manifest.bundle_id
        check_shape(member.replay, member.trained, f"{manifest.bundle_id} replay")


def program_windows(
    members: Sequence[Member], captures: ReplayBuffer | None
) -> dict[int, ReplayBuffer]:
    """Each program's normal windows: its member's replay buffer, then captured windows."""
    out: dict[int, ReplayBuffer] = {}
    for member in members:
        replay = member.replay
        program = replay.program
        if len(member.programs) == 1:
            program = np.where(program < 0, member.programs[0], program)
        for p in member.programs:
            out[p] = replay.take(np.flatnonzero(program == p))
    if captures is not None:
        for p in out:
            out[p] = out[p].join(captures.take(np.flatnonzero(captures.program == p)))
    for p, windows in out.items():
        if len(windows) < MIN_CAPTURE_WINDOWS:
            raise ExportInputError(
                f"program {p}: only {len(windows)} windows in its replay buffer and capture; "
                f"merge needs at least {MIN_CAPTURE_WINDOWS} per program"
            )
    return out


def _even_rows(n: int, limit: int) -> np.ndarray:
    return np.arange(n) if n <= limit else np.linspace(0, n - 1, limit).astype(np.int64)


def program_distance(a: np.ndarray, b: np.ndarray, limit: int = DISTANCE_ROWS) -> float:
    """The distance of the module doc between two sets of feature vectors (N × F)."""
    a = np.asarray(a, np.float64)[_even_rows(len(a), limit)]
    b = np.asarray(b, np.float64)[_even_rows(len(b), limit)]
    z = np.concatenate([a, b])
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    off = ~np.eye(len(z), dtype=bool)
    bandwidth = float(np.median(d2[off])) or 1.0
    k = np.exp(-d2 / bandwidth)
    na = len(a)
    kaa, kbb, kab = k[:na, :na], k[na:, na:], k[:na, na:]
    within_a = (kaa.sum() - np.trace(kaa)) / max(na * (na - 1), 1)
    within_b = (kbb.sum() - np.trace(kbb)) / max(len(b) * (len(b) - 1), 1)
    return float(np.sqrt(max(within_a + within_b - 2.0 * kab.mean(), 0.0)))


def pooled_normalization(windows: Mapping[int, ReplayBuffer]) -> Normalization:
    samples = np.concatenate(
        [w.segments.reshape(-1, w.segments.shape[-1]) for w in windows.values()]
    )
    return Normalization.fit(samples)


def distances(
    members: Sequence[Member], features: Mapping[int, np.ndarray]
) -> list[dict[str, Any]]:
    """The distance of every pair of programs served by different members."""
    owner = {p: i for i, m in enumerate(members) for p in m.programs}
    programs = sorted(features)
    return [
        {"programs": [p, q], "distance": program_distance(features[p], features[q])}
        for i, p in enumerate(programs)
        for q in programs[i + 1 :]
        if owner[p] != owner[q]
    ]


def _train_settings(member: Member, settings: MergeSettings) -> TrainSettings:
    """The member's architecture, and its training settings unless it was fine-tuned (a
    retrained model's history holds its fine-tuning settings: the defaults serve then)."""
    history = member.trained.history
    known = {f.name for f in dataclasses.fields(TrainSettings)}
    saved = {} if history.get("warm_start") else dict(history.get("settings") or {})
    saved = {k: v for k, v in saved.items() if k in known}
    model = member.trained.model
    saved.update(model=model.family, n_layers=len(model.sizes) - 1, bottleneck=model.sizes[-1])
    saved["seed"] = settings.seed
    if settings.epochs is not None:
        saved["epochs"] = settings.epochs
    return TrainSettings(**saved)


def merge(
    members: Sequence[Member],
    settings: MergeSettings,
    captures: ReplayBuffer | None = None,
    *,
    extra_artifacts: ExtraArtifacts | None = None,
    sign: Callable[[bytes], bytes] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> RetrainResult:
    """One bundle for every member's programs (the module doc)."""
    check_members(members)
    spec = members[0].trained.spec
    windows = program_windows(members, captures)
    norm = pooled_normalization(windows)
    features = {p: segment_features(w.normalized(norm), spec.features) for p, w in windows.items()}
    pairs = distances(members, features)
    for pair in pairs:
        first, second = pair["programs"]
        log(f"  programs {first} and {second}: distance {pair['distance']:.4f}")
    far = [d for d in pairs if d["distance"] > settings.max_distance]
    if far:
        worst = max(far, key=lambda d: d["distance"])
        raise RetrainGateError(
            f"merge refused, no bundle written — programs {worst['programs'][0]} and "
            f"{worst['programs'][1]} are {worst['distance']:.3f} apart (MMD of their normal "
            f"windows), above --max-distance {settings.max_distance:g}: their normal data are "
            "not close enough for one model; keep their bundles apart"
        )
    programs = sorted(windows)
    teach, hold, teach_parts = {}, {}, []
    for p in programs:
        t, h = split_validation(len(windows[p]), settings.holdout_fraction, settings.seed)
        teach[p], hold[p] = windows[p].take(t), windows[p].take(h)
        teach_parts.append(features[p][t])
    teach_x = np.concatenate(teach_parts)
    train_settings = _train_settings(members[0], settings)
    log(f"training one {train_settings.model} model on {len(teach_x)} windows of {programs}")
    model, history = train_autoencoder(teach_x, train_settings, spec=spec)
    trained = TrainedModel(model, spec, norm, history).with_latent_reference(
        teach_x, seed=settings.seed
    )
    calibration = _grouped(hold, programs)
    recipe = _merged_recipe(members, settings, programs)
    log(f"building {recipe.bundle_id} version {recipe.bundle_version} for programs {programs}")
    built = build_bundle(
        trained,
        calibration.normalized(norm),
        recipe,
        extra_artifacts=extra_artifacts,
        sign=sign,
        log=log,
        calib_groups=calibration.generation,
    )
    merged = load_bundle_bytes(built.data)
    served_by = {p: m.bundle for m in members for p in m.programs}
    gates: list[Gate] = [
        false_alarm_gate(
            f"program_{p}",
            served_by[p],
            merged,
            hold[p].segments,
            settings.gates.max_false_alarm_increase,
        )
        for p in programs
    ]
    gates.append(sanity_gate(built))
    for gate in gates:
        log(gate.line())
    raise_failed(gates, "merge")
    replay = _grouped(teach, programs, keep_generation=True).bounded(
        settings.replay_limit, settings.seed
    )
    report = {
        "bundle_id": recipe.bundle_id,
        "version": recipe.bundle_version,
        "programs": programs,
        "replaces": [
            {"bundle_id": m.bundle.bundle_id, "version": m.bundle.manifest.bundle_version}
            for m in members
        ],
        "distances": pairs,
        "max_distance": settings.max_distance,
        "windows": {str(p): {"teach": len(teach[p]), "held_out": len(hold[p])} for p in programs},
        "gates": [g.to_json() for g in gates],
    }
    return RetrainResult(
        built, trained, replay, calibration.bounded(settings.replay_limit * 2, settings.seed),
        gates, report,
    )  # fmt: skip


def _grouped(
    parts: Mapping[int, ReplayBuffer], programs: Sequence[int], keep_generation: bool = False
) -> ReplayBuffer:
    """The parts, program by program, one calibration group per program."""
    out = ReplayBuffer.of(np.zeros((0, *parts[programs[0]].segments.shape[1:]), np.float32))
    for group, p in enumerate(programs):
        part = parts[p]
        part = dataclasses.replace(part, program=np.full(len(part), p, dtype=np.int64))
        if not keep_generation:
            part = dataclasses.replace(part, generation=np.full(len(part), group, dtype=np.int64))
        out = out.join(part)
    return out


def _merged_recipe(
    members: Sequence[Member], settings: MergeSettings, programs: Sequence[int]
) -> BuildSettings:
    first = members[0].bundle
    bundle_id = settings.bundle_id or first.bundle_id
    same = [m.bundle for m in members if m.bundle.bundle_id == bundle_id]
    recipe = recipe_of(first, RetrainSettings(quantize=settings.quantize, seed=settings.seed))
    version = next_version(same[0].manifest.bundle_version) if same else "1"
    return dataclasses.replace(
        recipe, bundle_id=bundle_id, bundle_version=version, programs=tuple(programs)
    )
