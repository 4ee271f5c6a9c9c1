"""Model selection from normal data: window, hop, feature set and bottleneck.

`rapp-export train` runs this for every dimension its flags leave open (fixed windows only).
No labels are involved. The recordings are cut into blocks of consecutive samples and a
seeded draw deals :data:`FIT_SHARE` of the samples to a *fit* role, :data:`HELD_SHARE` to a
*held-out* role and the rest to training — the same blocks for every candidate, so all are
judged on the very same stretches of signal.

**Grid**, sized for the channels and the recording length:

- *window*: not graded — :data:`DEFAULT_WINDOW` samples, or less where the recordings are
  short (:func:`window_for`: every recording still gives :data:`WINDOWS_PER_RECORDING`
  windows and the block split below has enough blocks). The
  pseudo-anomalies below are local (a spike on one sample, noise, a ramp), so they rank
  one-sample windows highest; on the CNC mill (10 Hz) grading the window chose 1–4 rows and
  lost to the fixed 64 on every fold of both tasks (see docs/architecture.md, "Model
  selection"), because real novelty there needs seconds of context.
- *hop*: half the window, shortened (down to 1) where the recordings would give fewer than
  :data:`TARGET_WINDOWS` training windows: overlapping windows of scarce data are more
  training examples for free. Not searched: it sets how many windows are scored, hardly what
  one window looks like.
- *features*: the raw samples, and the raw samples plus per-channel statistics (windows of
  ≥ 2 samples; the temporal model families read raw windows only).
- *bottleneck*: stage 1 trains each feature set with :data:`DEFAULT_BOTTLENECK` (at most a
  quarter of the input width); stage 2 tries half and double the winner's (at most half the
  input width).

That is at most 2 + 2 = 4 candidates. Each trains briefly — at most
:data:`CANDIDATE_EPOCHS` epochs, patience :data:`CANDIDATE_PATIENCE`, on at most
:data:`CANDIDATE_WINDOWS` windows, the user's other settings — and only the winner is then
trained fully, on all the data, by the caller.

**Criterion**: the pseudo-anomaly AUROC of :mod:`exporter.sanity` — held-out normal windows
against the synthetic anomalies of :mod:`exporter.pseudo_anomalies` made from them, scored
with NAP fitted the way the build fits it (on one half of the fit blocks, cut to the
directions that hold on the other half) — averaged over the corruption kinds that change the
windows of every candidate (a ramp over one sample changes nothing), so all candidates sit
the same test. Candidates within :data:`TIE` of the best count as equal and the cheapest to
score (model parameters × windows per second) wins: a bigger model must earn its cost.
Recorded, not used to choose: the share of held-out windows above the 0.99 quantile of the
fit blocks' threshold half (≈ 0.01 when a threshold transfers to new normal data), NAP's
kept directions and the validation MSE.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from agent.core.errors import AgentError
from agent.core.features import (
    FeatureSpec,
    Normalization,
    Segmentation,
    segment_features,
    segment_recording,
)
from agent.core.rapp import pathway_differences, stable_nap
from agent.core.recording import Recording
from exporter.errors import ExportInputError
from exporter.model import TrainedModel
from exporter.sanity import SanityLimits, TorchNap, check_pseudo_anomalies, torch_pathway
from exporter.train import TrainSettings, train_autoencoder

DEFAULT_WINDOW = 64
WINDOWS_PER_RECORDING = 8
TARGET_WINDOWS = 2048
FEATURE_SETS: tuple[tuple[str, ...], ...] = (("raw",), ("raw", "stats"))
DEFAULT_BOTTLENECK = 8
CANDIDATE_EPOCHS = 30
CANDIDATE_PATIENCE = 5
CANDIDATE_WINDOWS = 4096
EVAL_WINDOWS = 4096  # fit and held-out windows per candidate (evenly spread)
FIT_SHARE = 0.2
HELD_SHARE = 0.2
BLOCKS_PER_RECORDING = 20
MIN_BLOCK_WINDOWS = 16  # a block spans at least this many of the longest candidate windows
MIN_BLOCKS = 5
TIE = 0.005
EXCEEDANCE_QUANTILE = 0.99
CRITERION = (
    "pseudo-anomaly AUROC of NAP (exporter.sanity; NAP fitted as the build does) on held-out "
    "normal blocks, mean over the corruption kinds that change every candidate's windows; "
    f"candidates within {TIE:g} of the best are tied and the cheapest to score wins"
)
SELECTION_JSON = "selection.json"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Candidate:
    window: int
    hop: int
    features: tuple[str, ...]
    bottleneck: int

    def spec(self, base: FeatureSpec) -> FeatureSpec:
        return replace(
            base,
            segmentation=Segmentation(kind="window", length=self.window, hop=self.hop),
            features=self.features,
        )

    def label(self) -> str:
        return (
            f"window {self.window}, hop {self.hop}, features {'+'.join(self.features)}, "
            f"bottleneck {self.bottleneck}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "hop": self.hop,
            "features": list(self.features),
            "bottleneck": self.bottleneck,
        }


# What `rapp-export train` used before it chose: still what --no-select (and cycles) get.
FIXED_DEFAULTS = Candidate(window=64, hop=32, features=("raw",), bottleneck=8)


@dataclass(frozen=True)
class Fixed:
    """The dimensions the user's flags fixed (None: selection chooses)."""

    window: int | None = None
    hop: int | None = None
    features: tuple[str, ...] | None = None
    bottleneck: int | None = None

    @property
    def everything(self) -> bool:
        return None not in (self.window, self.hop, self.features, self.bottleneck)

    def or_defaults(self) -> Candidate:
        """The flags, and :data:`FIXED_DEFAULTS` where none was given."""
        d = FIXED_DEFAULTS
        return Candidate(
            self.window or d.window,
            self.hop or d.hop,
            self.features or d.features,
            self.bottleneck or d.bottleneck,
        )

    def to_json(self) -> dict[str, Any]:
        given = {k: v for k, v in vars(self).items() if v is not None}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in given.items()}


@dataclass
class Outcome:
    """One candidate's grades; ``criterion`` None when it could not be trained or judged."""

    candidate: Candidate
    stage: int
    criterion: float | None = None
    pooled_auroc: float | None = None
    per_kind: dict[str, float | None] = field(default_factory=dict)
    exceedance: float | None = None
    nap_k: int | None = None
    val_mse: float | None = None
    epochs_run: int = 0
    train_windows: int = 0
    cost: float = math.inf
    seconds: float = 0.0
    reason: str = ""
    chosen: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            **self.candidate.to_json(),
            "stage": self.stage,
            "criterion": self.criterion,
            "pseudo_auroc_pooled": self.pooled_auroc,
            "pseudo_auroc_per_kind": self.per_kind,
            "heldout_over_q99": self.exceedance,
            "nap_k": self.nap_k,
            "val_mse": self.val_mse,
            "epochs_run": self.epochs_run,
            "train_windows": self.train_windows,
            "cost_mparams_per_s": None if math.isinf(self.cost) else self.cost,
            "seconds": self.seconds,
            "chosen": self.chosen,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Selection:
    chosen: Candidate
    outcomes: tuple[Outcome, ...]
    reason: str
    sample_rate_hz: float
    fixed: Fixed
    kinds: tuple[str, ...]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.to_json(),
            "reason": self.reason,
            "criterion": CRITERION,
            "criterion_kinds": list(self.kinds),
            "sample_rate_hz": self.sample_rate_hz,
            "fixed_by_flags": self.fixed.to_json(),
            "budget": {
                "candidate_epochs": CANDIDATE_EPOCHS,
                "candidate_patience": CANDIDATE_PATIENCE,
                "candidate_windows": CANDIDATE_WINDOWS,
                "fit_share": FIT_SHARE,
                "held_share": HELD_SHARE,
            },
            "candidates": [o.to_json() for o in self.outcomes],
            "seconds": self.seconds,
        }

    def table(self) -> list[str]:
        """One line per candidate, the chosen one marked with *."""
        lines = [
            f"{'#':>3} {'window':>6} {'hop':>4} {'features':<9} {'bneck':>5} {'criterion':>9} "
            f"{'pooled':>6} {'>q99':>5} {'NAP k':>5} {'val MSE':>8} {'cost':>7} {'s':>4}  reason"
        ]
        for i, o in enumerate(self.outcomes, 1):
            c = o.candidate
            lines.append(
                f"{i:>2}{'*' if o.chosen else ' '} {c.window:>6} {c.hop:>4} "
                f"{'+'.join(c.features):<9} {c.bottleneck:>5} {_fmt(o.criterion, '.4f'):>9} "
                f"{_fmt(o.pooled_auroc, '.3f'):>6} {_fmt(o.exceedance, '.3f'):>5} "
                f"{_fmt(o.nap_k, 'd'):>5} {_fmt(o.val_mse, '.3g'):>8} "
                f"{_fmt(None if math.isinf(o.cost) else o.cost, '.3g'):>7} "
                f"{o.seconds:>4.0f}  {o.reason}"
            )
        return lines


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


# ------------------------------------------------------------------------------ the grid


def feature_dim(window: int, features: Sequence[str], n_channels: int) -> int:
    return sum(window if kind == "raw" else 4 for kind in features) * n_channels


def window_for(shortest: int, total: int) -> int:
    """:data:`DEFAULT_WINDOW`, or the largest power of two that leaves every recording
    :data:`WINDOWS_PER_RECORDING` windows and the block split :data:`MIN_BLOCKS` blocks of
    :data:`MIN_BLOCK_WINDOWS` windows, when that is shorter (never below 1)."""
    longest = min(shortest / WINDOWS_PER_RECORDING, total / (MIN_BLOCKS * MIN_BLOCK_WINDOWS))
    top = 2 ** math.floor(math.log2(longest)) if longest >= 1 else 1
    return int(min(DEFAULT_WINDOW, top))


def hop_for(window: int, usable_samples: int) -> int:
    """Half the window, or less where that gives fewer than TARGET_WINDOWS windows."""
    return max(1, min(window // 2, usable_samples // TARGET_WINDOWS))


def feature_options(window: int, family: str) -> list[tuple[str, ...]]:
    # A one-sample window's statistics repeat the sample (std 0): nothing to add.
    if window < 2 or family != "mlp":
        return [FEATURE_SETS[0]]
    return list(FEATURE_SETS)


def stage_one_bottleneck(dim: int) -> int:
    return max(1, min(DEFAULT_BOTTLENECK, dim // 4))


def neighbour_bottlenecks(bottleneck: int, dim: int) -> list[int]:
    top = max(1, dim // 2)
    return sorted({b for b in (bottleneck // 2, bottleneck * 2) if 1 <= b <= top} - {bottleneck})


def usable_samples(recordings: Sequence[Recording], window: int) -> int:
    return sum(max(0, r.n_samples - window + 1) for r in recordings)


def first_stage(
    recordings: Sequence[Recording], base: FeatureSpec, fixed: Fixed, family: str
) -> list[Candidate]:
    sizes = [r.n_samples for r in recordings]
    w = fixed.window or window_for(min(sizes), sum(sizes))
    hop = fixed.hop or hop_for(w, usable_samples(recordings, w))
    out = []
    for feats in [fixed.features] if fixed.features else feature_options(w, family):
        dim = feature_dim(w, feats, base.n_channels)
        out.append(Candidate(w, hop, feats, fixed.bottleneck or stage_one_bottleneck(dim)))
    return out


# ------------------------------------------------------------------------------ blocks


@dataclass(frozen=True)
class Block:
    recording: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Split:
    """Blocks per role: ``train``, ``fit`` (NAP and its threshold) and ``held`` (scored)."""

    train: tuple[Block, ...]
    fit: tuple[Block, ...]
    held: tuple[Block, ...]


def cut_blocks(recordings: Sequence[Recording], min_block: int) -> list[Block]:
    blocks = []
    for i, r in enumerate(recordings):
        size = max(min_block, math.ceil(r.n_samples / BLOCKS_PER_RECORDING))
        blocks += [Block(i, lo, min(lo + size, r.n_samples)) for lo in range(0, r.n_samples, size)]
    return blocks


def split_blocks(recordings: Sequence[Recording], min_block: int, seed: int) -> Split:
    """Deal the blocks to the roles in a seeded order, by their share of the samples."""
    blocks = cut_blocks(recordings, min_block)
    if len(blocks) < MIN_BLOCKS:
        total = sum(r.n_samples for r in recordings)
        raise ExportInputError(
            f"{total} samples are too few to choose a model (it needs {MIN_BLOCKS} blocks of "
            f"{min_block} samples); record more normal data or give --window, --hop, "
            "--features and --bottleneck (or --no-select)"
        )
    total = sum(b.size for b in blocks)
    roles: dict[str, list[Block]] = {"fit": [], "held": [], "train": []}
    taken = 0
    for idx in np.random.default_rng(seed).permutation(len(blocks)):
        b = blocks[int(idx)]
        if not roles["fit"] or taken < FIT_SHARE * total:
            role = "fit"
        elif not roles["held"] or taken < (FIT_SHARE + HELD_SHARE) * total:
            role = "held"
        else:
            role = "train"
        roles[role].append(b)
        taken += b.size
    if not roles["train"]:  # only with very few blocks: keep one for training
        roles["train"].append(roles["fit"].pop())
    ordered = {k: tuple(sorted(v, key=lambda b: (b.recording, b.start))) for k, v in roles.items()}
    return Split(**ordered)


def block_segments(
    spec: FeatureSpec,
    normalization: Normalization,
    recordings: Sequence[Recording],
    blocks: Sequence[Block],
) -> np.ndarray:
    """Normalized segments (N × L × C) of the blocks, each block windowed on its own by the
    agent's segmenter (gaps and NaN handled as everywhere)."""
    parts = []
    for b in blocks:
        r = recordings[b.recording]
        cut = slice(b.start, b.stop)
        parts.append(
            segment_recording(
                spec,
                normalization,
                r.samples[cut],
                None,
                None if r.program_id is None else r.program_id[cut],
                None if r.gap_before is None else r.gap_before[cut],
            ).segments
        )
    return np.concatenate(parts)


def evenly(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` indices spread evenly over range(n) (all of them if n ≤ limit)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


# ------------------------------------------------------------------------------ judging


@dataclass(frozen=True)
class Context:
    base: FeatureSpec
    normalization: Normalization
    recordings: tuple[Recording, ...]
    split: Split
    settings: TrainSettings


def candidate_settings(settings: TrainSettings, candidate: Candidate) -> TrainSettings:
    return replace(
        settings,
        bottleneck=candidate.bottleneck,
        epochs=min(settings.epochs, CANDIDATE_EPOCHS),
        patience=min(settings.patience, CANDIDATE_PATIENCE),
    )


def train_candidate(ctx: Context, candidate: Candidate) -> tuple[TrainedModel, dict]:
    spec = candidate.spec(ctx.base)
    segs = block_segments(spec, ctx.normalization, ctx.recordings, ctx.split.train)
    x = segment_features(segs[evenly(len(segs), CANDIDATE_WINDOWS)], spec.features)
    model, history = train_autoencoder(x, candidate_settings(ctx.settings, candidate), spec=spec)
    return TrainedModel(model, spec, ctx.normalization, history), history


def eval_segments(ctx: Context, candidate: Candidate, blocks: Sequence[Block]) -> np.ndarray:
    # A quarter-window hop: more windows from the same stretch of signal than training's.
    dense = replace(candidate, hop=max(1, candidate.window // 4))
    segs = block_segments(dense.spec(ctx.base), ctx.normalization, ctx.recordings, blocks)
    return segs[evenly(len(segs), EVAL_WINDOWS)]


def interleaved_halves(n: int, block: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Alternate runs of ``block`` rows (single rows when there are few), as the build
    splits its calibration windows."""
    block_id = np.arange(n) // (block if n >= 4 * block else 1)
    return np.flatnonzero(block_id % 2 == 0), np.flatnonzero(block_id % 2 == 1)


def build_like_nap(trained: TrainedModel, segments: np.ndarray) -> tuple[TorchNap, np.ndarray]:
    """NAP fitted the way the build fits it on calibration windows: on one half, cut to the
    directions that hold on the other (agent.core.rapp.stable_nap); and that other half's
    features, on which the build sets its thresholds."""
    x = segment_features(segments, trained.spec.features)
    first, second = interleaved_halves(len(x))
    plain = TorchNap.fit(trained, x[first])
    p = torch_pathway(trained, x[second])
    params = stable_nap(
        plain.params, len(first), pathway_differences(p.hidden, p.hidden_hat, plain.layers)
    )
    return TorchNap(trained, plain.layers, params), x[second]


def judge(ctx: Context, candidate: Candidate, trained: TrainedModel, seed: int) -> dict[str, Any]:
    """Pseudo-anomaly AUROC per kind and pooled, and the held-out exceedance of one model."""
    fit = eval_segments(ctx, candidate, ctx.split.fit)
    held = eval_segments(ctx, candidate, ctx.split.held)
    nap, threshold_rows = build_like_nap(trained, fit)
    check = check_pseudo_anomalies(trained, fit, held, SanityLimits(), seed=seed, nap=nap)
    level = float(np.quantile(nap.score(threshold_rows), EXCEEDANCE_QUANTILE))
    held_scores = nap.score(segment_features(held, trained.spec.features))
    return {
        "pooled": float(check.value) if check.value is not None else None,
        "per_kind": dict(check.details["per_kind"]),
        "exceedance": float(np.mean(held_scores > level)),
        "nap_k": int(nap.params.k),
    }


def run_candidate(ctx: Context, candidate: Candidate, stage: int) -> Outcome:
    """Train and judge one candidate; a failure is recorded as its reason, not raised."""
    t0 = time.perf_counter()
    outcome = Outcome(candidate, stage)
    try:
        trained, history = train_candidate(ctx, candidate)
        grades = judge(ctx, candidate, trained, ctx.settings.seed)
    except (AgentError, ValueError, np.linalg.LinAlgError) as err:
        outcome.reason = f"not judged: {err}"
        outcome.seconds = time.perf_counter() - t0
        return outcome
    outcome.pooled_auroc = grades["pooled"]
    outcome.per_kind = grades["per_kind"]
    outcome.exceedance = grades["exceedance"]
    outcome.nap_k = grades["nap_k"]
    outcome.val_mse = float(history["best_val_loss"])
    outcome.epochs_run = int(history["epochs_run"])
    outcome.train_windows = int(history["n_train"] + history["n_val"])
    n_params = sum(p.numel() for p in trained.model.parameters())
    outcome.cost = n_params * ctx.base.sample_rate_hz / candidate.hop / 1e6
    outcome.seconds = time.perf_counter() - t0
    return outcome


# ------------------------------------------------------------------------------ choosing


def common_kinds(outcomes: Sequence[Outcome]) -> tuple[str, ...]:
    """Corruption kinds that changed the windows of every judged candidate."""
    judged = [o for o in outcomes if o.per_kind]
    if not judged:
        return ()
    return tuple(
        k for k in judged[0].per_kind if all(o.per_kind.get(k) is not None for o in judged)
    )


def grade(outcomes: Sequence[Outcome]) -> tuple[str, ...]:
    """Set every judged candidate's criterion; returns the kinds it averages."""
    kinds = common_kinds(outcomes)
    for o in outcomes:
        if not o.per_kind:
            continue
        values = [o.per_kind[k] for k in kinds]
        o.criterion = float(np.mean(values)) if values else o.pooled_auroc
    return kinds


def pick(outcomes: Sequence[Outcome]) -> tuple[int, str]:
    """Index of the winner and why; every judged outcome's reason is set."""
    judged = [i for i, o in enumerate(outcomes) if o.criterion is not None]
    if not judged:
        why = "; ".join(sorted({o.reason for o in outcomes}))
        raise ExportInputError(f"no candidate model could be judged ({why})")
    best = max(judged, key=lambda i: (outcomes[i].criterion, -i))
    top = outcomes[best].criterion
    tied = [i for i in judged if outcomes[i].criterion >= top - TIE]
    winner = min(tied, key=lambda i: (outcomes[i].cost, i))
    for i in judged:
        o = outcomes[i]
        if i == winner:
            o.reason = "chosen"
        elif i in tied:
            o.reason = f"tied, {o.cost / outcomes[winner].cost:.2f}× the cost"
        else:
            o.reason = f"{o.criterion - top:+.4f} below the best"
    if winner == best:
        why = f"highest criterion ({top:.4f})"
        if len(tied) > 1:
            why += f", and the cheapest of the {len(tied)} within {TIE:g} of it"
    else:
        why = (
            f"criterion {outcomes[winner].criterion:.4f}, within {TIE:g} of the best "
            f"(#{best + 1}, {top:.4f}), and the cheapest of those {len(tied)}"
        )
    return winner, why


def select_model(
    recordings: Sequence[Recording],
    base: FeatureSpec,
    normalization: Normalization,
    fixed: Fixed,
    settings: TrainSettings,
    log: Log = print,
) -> Selection:
    """Train and grade the grid's candidates; the winner, why, and every candidate's grades.

    ``base`` gives channels, units and the sample rate; ``settings`` the training recipe
    (its bottleneck is ignored, its epochs and patience capped for the candidates).
    """
    t0 = time.perf_counter()
    recs = tuple(recordings)
    stage1 = first_stage(recs, base, fixed, settings.model)
    longest = max(c.window for c in stage1)
    split = split_blocks(recs, MIN_BLOCK_WINDOWS * longest, settings.seed)
    ctx = Context(base, normalization, recs, split, settings)
    outcomes: list[Outcome] = []

    def run(candidates: Sequence[Candidate], stage: int) -> None:
        for c in candidates:
            o = run_candidate(ctx, c, stage)
            outcomes.append(o)
            result = o.reason or f"pseudo-anomaly AUROC {_fmt(o.pooled_auroc, '.4f')}"
            log(f"  candidate {len(outcomes)}: {c.label()}: {result} ({o.seconds:.0f} s)")

    run(stage1, 1)
    if fixed.bottleneck is None:
        grade(outcomes)
        w = outcomes[pick(outcomes)[0]].candidate
        dim = feature_dim(w.window, w.features, base.n_channels)
        run([replace(w, bottleneck=b) for b in neighbour_bottlenecks(w.bottleneck, dim)], 2)
    kinds = grade(outcomes)
    winner, why = pick(outcomes)
    outcomes[winner].chosen = True
    return Selection(
        chosen=outcomes[winner].candidate,
        outcomes=tuple(outcomes),
        reason=why,
        sample_rate_hz=base.sample_rate_hz,
        fixed=fixed,
        kinds=kinds,
        seconds=time.perf_counter() - t0,
    )
