"""RaPP paper tasks MI-F / MI-V on the CNC mill data, through the product's own code path.

Run from the repository root (:mod:`benchmarks.quality` runs it for ``make bench``)::

    .venv/bin/python -m benchmarks.cnc_eval --data ../shared/data/cnc-mill-tool-wear
        [--task mi-f|mi-v|all] [--out results.json] [--seeds 3] [--quick] [--tflite]
        [--int8-activations 16|8]

Protocol (experiment-wise; see :func:`benchmarks.cnc_data.experiment_folds`):

1. For each seed, the task's normal experiments are shuffled and dealt into ``n_folds``
   groups. Fold k tests on normal group k, calibrates on group k+1 and trains on the rest;
   every novel experiment is on the test side of every fold and never trains.
2. Per fold: per-channel normalization is fitted on the training experiments, rows are cut
   into windows by :func:`agent.core.features.segment_recording` (default: windows of one row, as
   the paper scored rows), the MLP autoencoder is trained by
   :func:`exporter.train.train_autoencoder` (seed = 1000·seed + fold), and
   :func:`exporter.build.build_bundle` exports fp32 + int8 ONNX and fits NAP and thresholds
   on the calibration experiments.
3. The bundle bytes are loaded with :func:`agent.core.bundle.load_bundle` and the test windows
   scored with :func:`agent.core.scoring.open_scorer` (onnxruntime, fp32 and int8): what a device
   would compute, canary-checked.
4. AUROC per score (Recon / SAP / NAP) and precision on windows (primary), and on the mean
   score per test experiment (secondary); reported as mean ± std over all seed × fold runs.

With ``EvalConfig.tflite`` (``--tflite``) every fold also builds TFLite fp32 + int8 artifacts
into the same bundle and scores them through the LiteRT backend, so TFLite int8 is reported
next to ONNX int8 (AUROC, paired int8 − fp32 and Spearman ρ of NAP int8 vs fp32 on the test
windows, the quality target in the README).

If the int8 fidelity floor of ``build_bundle`` trips, that fold reports fp32 only; the int8
numbers are still measured with the floor lifted and recorded apart, with the fidelity
report, so the quantization can be improved.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import write_atomic
from agent.core.bundle import load_bundle
from agent.core.errors import AgentError, exit_code
from agent.core.features import FeatureSpec, Normalization, Segmentation, segment_recording
from agent.core.scoring import open_scorer
from benchmarks.cnc_data import (
    SAMPLE_RATE_HZ,
    TASKS,
    Experiment,
    ExperimentSplit,
    experiment_folds,
    load_experiments,
    phase_mask,
    read_experiments,
    require_data_dir,
    resolve_columns,
    task_labels,
)
from exporter.build import BuildSettings, ExtraArtifacts, build_bundle
from exporter.evaluate import fit_baselines
from exporter.metrics import auroc, spearman
from exporter.model import ExportError, TrainedModel
from exporter.train import TrainSettings, train_autoencoder

SCORES = ("recon", "sap", "nap", "density", "combined", "iforest", "pca")
# Baselines fitted on the fold's training windows and scored on the very same test windows.
BASELINES = ("iforest", "pca")
PRECISIONS = ("fp32", "int8")
# Kim et al., ICLR 2020, Table (AE rows): AUROC of Recon / SAP / NAP.
PAPER_AE = {
    "mi-f": {"recon": 0.694, "sap": 0.755, "nap": 0.707},
    "mi-v": {"recon": 0.883, "sap": 0.878, "nap": 0.913},
}
FIDELITY_MARK = "int8 fidelity below the floor"
Log = Callable[[str], None]
PROG = "benchmarks.cnc_eval"


@dataclass(frozen=True)
class EvalConfig:
    """Everything that defines one evaluation run (recorded in the results JSON).

    The defaults are the best of the configurations in
    ``benchmarks/results/cnc_experiments.md``: rows as samples (window of one row, as the
    paper), the ``servo`` columns (servo signals without absolute positions, controller
    bookkeeping or dead columns), all phases, 3 encoder layers down to a bottleneck of 8.
    Large batches with a higher learning rate train 300 epochs inside the time budget
    (the whole two-task run in a few minutes on two cores); the validation loss was still
    falling at 100 epochs of batch 512.
    """

    columns: str | tuple[str, ...] = "servo"
    phases: str = "all"
    window: int = 1
    hop: int = 1
    features: tuple[str, ...] = ("raw",)
    n_layers: int = 3
    bottleneck: int = 8
    epochs: int = 300
    patience: int = 30
    batch_size: int = 2048
    learning_rate: float = 1e-2
    weight_decay: float = 0.0
    n_folds: int = 5
    calibration_groups: int = 1
    quantize: bool = True
    int8_activations: int = 16  # exporter.build.BuildSettings.int8_activations
    tflite: bool = False  # also build and score TFLite artifacts (LiteRT backend)

    def quick(self) -> EvalConfig:
        """A smoke run (3 epochs, 3 folds): checks the path end to end; numbers mean little."""
        return replace(self, epochs=3, patience=2, n_folds=3)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["columns"] = list(resolve_columns(self.columns))
        out["column_set"] = self.columns if isinstance(self.columns, str) else "custom"
        out["features"] = list(self.features)
        return out


DEFAULT_CONFIG = EvalConfig()


@dataclass(frozen=True)
class FoldInputs:
    """Windows of one fold, per experiment, in the fold's normalization."""

    spec: FeatureSpec
    normalization: Normalization
    features: Mapping[int, np.ndarray]  # experiment → (N × F)
    segments: Mapping[int, np.ndarray]  # experiment → (N × L × C)


def feature_spec(config: EvalConfig) -> FeatureSpec:
    channels = resolve_columns(config.columns)
    return FeatureSpec(
        channels=channels,
        units=tuple("" for _ in channels),
        sample_rate_hz=SAMPLE_RATE_HZ,
        segmentation=Segmentation(kind="window", length=config.window, hop=config.hop),
        features=config.features,
    )


def _kept_rows(experiment: Experiment, phases: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows passing the phase filter and a gap flag wherever filtered rows were cut out,
    so no window joins two phases that were not adjacent in time."""
    keep = np.flatnonzero(phase_mask(experiment.phase, phases))
    gap = np.zeros(len(keep), dtype=bool)
    gap[1:] = np.diff(keep) != 1
    return experiment.samples[keep], gap


def prepare_fold(
    experiments: Mapping[int, Experiment], split: ExperimentSplit, config: EvalConfig
) -> FoldInputs:
    """Fit normalization on the training experiments only, then window every experiment."""
    spec = feature_spec(config)
    numbers = (*split.train, *split.calibration, *split.test)
    rows = {n: _kept_rows(experiments[n], config.phases) for n in numbers}
    normalization = Normalization.fit(np.concatenate([rows[n][0] for n in split.train]))
    features, segments = {}, {}
    for n, (samples, gap) in rows.items():
        seg = segment_recording(spec, normalization, samples, gap_before=gap)
        if len(seg.features) == 0:
            raise ExportError(
                f"experiment {n} yields no windows of {config.window} rows after the "
                f"{config.phases!r} phase filter; shorten the window"
            )
        features[n], segments[n] = seg.features, seg.segments
    return FoldInputs(spec, normalization, features, segments)


def train_settings(config: EvalConfig, seed: int) -> TrainSettings:
    return TrainSettings(
        n_layers=config.n_layers,
        bottleneck=config.bottleneck,
        epochs=config.epochs,
        patience=config.patience,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        seed=seed,
    )


def train_fold(inputs: FoldInputs, split: ExperimentSplit, config: EvalConfig) -> TrainedModel:
    x = np.concatenate([inputs.features[n] for n in split.train])
    seed = 1000 * split.seed + split.fold
    model, history = train_autoencoder(x, train_settings(config, seed))
    trained = TrainedModel(model, inputs.spec, inputs.normalization, history)
    return trained.with_latent_reference(x, seed=seed)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """torch.onnx warns on every export (deprecations, missing torchvision); thirty folds
    of that would bury the results table. Errors still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def build_fold(
    trained: TrainedModel,
    calib_segments: np.ndarray,
    settings: BuildSettings,
    log: Log,
    extra: ExtraArtifacts | None = None,
    groups: np.ndarray | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """Bundle bytes and the int8 status: ``ok``, ``below_floor`` (floor lifted to measure
    int8 anyway; the fold counts as fp32 only) or ``off``."""
    status: dict[str, Any] = {"int8": "ok" if settings.quantize else "off"}
    try:
        with _quiet_export():
            built = build_bundle(
                trained, calib_segments, settings, extra_artifacts=extra, calib_groups=groups
            )
    except ExportError as err:
        if FIDELITY_MARK not in str(err):
            raise
        log(f"    int8 fidelity floor tripped: {err}")
        lifted = replace(settings, min_spearman=-1.0, max_auroc_drop=1.0)
        with _quiet_export():
            built = build_bundle(
                trained, calib_segments, lifted, extra_artifacts=extra, calib_groups=groups
            )
        status = {"int8": "below_floor", "error": str(err)}
    status["fidelity"] = built.report.get("fidelity", {})
    status["nap_k"] = {a["id"]: a["nap_k"] for a in built.manifest["artifacts"]}
    return built.data, status


def score_experiments(
    bundle_bytes: bytes,
    features: Mapping[int, np.ndarray],
    precisions: Sequence[str],
    backend: str = "onnxruntime",
) -> dict[str, dict[int, dict[str, np.ndarray]]]:
    """precision → experiment → score name → per-window scores, via the agent's scorer."""
    bundle = load_bundle(bundle_bytes)
    out: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    for precision in precisions:
        scorer = open_scorer(bundle, backend, precision)
        out[precision] = {}
        for n, x in features.items():
            scores = scorer.score(x)
            out[precision][n] = {name: scores.get(name) for name in scores.names}
    return out


def baseline_scores(inputs: FoldInputs, split: ExperimentSplit) -> dict[int, dict[str, np.ndarray]]:
    """IsolationForest and PCA, fitted on the fold's training windows, on its test windows."""
    train = np.concatenate([inputs.features[n] for n in split.train])
    baselines = fit_baselines(train, seed=1000 * split.seed + split.fold)
    return {
        n: {name: baselines[name](inputs.features[n]) for name in BASELINES} for n in split.test
    }


def _add_baselines(
    scored: dict[str, dict[int, dict[str, np.ndarray]]],
    baselines: Mapping[int, Mapping[str, np.ndarray]],
) -> None:
    """Baseline scores next to the bundle's (the same under every precision: they do not run
    through the bundle)."""
    for per_precision in scored.values():
        for n, values in baselines.items():
            per_precision[n].update(values)


def fold_metrics(
    scores: Mapping[int, Mapping[str, np.ndarray]], labels: Mapping[int, bool]
) -> dict[str, Any]:
    """Window-level AUROC (primary), experiment-level AUROC on mean scores (secondary)."""
    numbers = sorted(scores)
    y = np.concatenate([np.full(len(scores[n]["nap"]), labels[n]) for n in numbers])
    y_exp = np.array([labels[n] for n in numbers])
    window, experiment, means = {}, {}, {}
    for name in SCORES:
        s = np.concatenate([scores[n][name] for n in numbers])
        window[name] = auroc(s, y)
        m = np.array([float(np.mean(scores[n][name])) for n in numbers])
        experiment[name] = auroc(m, y_exp)
        means[name] = dict(zip(map(str, numbers), m.tolist(), strict=True))
    return {"window": window, "experiment": experiment, "mean_score": means}


def run_fold(
    experiments: Mapping[int, Experiment],
    labels: Mapping[int, bool],
    split: ExperimentSplit,
    config: EvalConfig,
    task: str,
    log: Log,
) -> dict[str, Any]:
    """Train, build, load and score one fold; its metrics and bookkeeping as JSON."""
    t0 = time.perf_counter()
    inputs = prepare_fold(experiments, split, config)
    trained = train_fold(inputs, split, config)
    t_train = time.perf_counter() - t0
    calib = np.concatenate([inputs.segments[n] for n in split.calibration])
    settings = BuildSettings(
        bundle_id=f"cnc-{task}-s{split.seed}-f{split.fold}",
        robot="cnc-mill",
        quantize=config.quantize,
        int8_activations=config.int8_activations,
        seed=split.seed,
        int8_fallback=False,  # measured with the floor lifted instead (build_fold)
    )
    extra = None
    if config.tflite:
        from exporter.tflite_export import tflite_artifacts

        extra = tflite_artifacts(int8=config.quantize, activations=config.int8_activations)
    groups = np.concatenate([np.full(len(inputs.segments[n]), n) for n in split.calibration])
    data, status = build_fold(trained, calib, settings, log, extra, groups)
    precisions = ("fp32", "int8") if config.quantize else ("fp32",)
    test = {n: inputs.features[n] for n in split.test}
    scored = score_experiments(data, test, precisions)
    baselines = baseline_scores(inputs, split)
    _add_baselines(scored, baselines)
    metrics = {p: fold_metrics(scored[p], labels) for p in precisions}
    spearman_nap = {}
    if config.quantize:
        spearman_nap["onnx"] = _nap_spearman(scored)
    if config.tflite:
        lite = score_experiments(data, test, precisions, backend="litert")
        _add_baselines(lite, baselines)
        metrics.update({f"tflite-{p}": fold_metrics(lite[p], labels) for p in precisions})
        if config.quantize:
            spearman_nap["tflite"] = _nap_spearman(lite)
    history = trained.history
    result = {
        "split": split.to_json(),
        "n_windows": {
            "train": int(sum(len(inputs.features[n]) for n in split.train)),
            "calibration": len(calib),
            "test_normal": int(sum(len(test[n]) for n in split.test_normal)),
            "test_novel": int(sum(len(test[n]) for n in split.test_novel)),
        },
        "training": {
            "best_epoch": history["best_epoch"],
            "epochs_run": history["epochs_run"],
            "best_val_loss": history["best_val_loss"],
            "train_loss_at_best": history["train_loss"][history["best_epoch"]],
        },
        "int8_status": status,
        "metrics": metrics,
        "spearman_nap_int8_vs_fp32": spearman_nap,
        "seconds": {"train": t_train, "total": time.perf_counter() - t0},
    }
    nap = {p: metrics[p]["window"]["nap"] for p in precisions}
    log(
        f"  {task} seed {split.seed} fold {split.fold}: test normal {list(split.test_normal)} "
        f"NAP AUROC "
        + " ".join(f"{p} {v:.3f}" for p, v in nap.items())
        + "".join(
            f" tflite-{p} {metrics[f'tflite-{p}']['window']['nap']:.3f}"
            for p in (precisions if config.tflite else ())
        )
        + "".join(f" ρ[{f}] {r:.4f}" for f, r in spearman_nap.items())
        + f" (int8 {status['int8']}, {result['seconds']['total']:.0f} s)"
    )
    return result


def _nap_spearman(scored: Mapping[str, Mapping[int, Mapping[str, np.ndarray]]]) -> float:
    """Spearman ρ of int8 vs fp32 NAP over every test window of a fold."""
    numbers = sorted(scored["fp32"])
    ref = np.concatenate([scored["fp32"][n]["nap"] for n in numbers])
    got = np.concatenate([scored["int8"][n]["nap"] for n in numbers])
    return spearman(got, ref)


def _mean_std(values: Sequence[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": int(arr.size)}


def summarize(folds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """mean ± std over runs per level × precision × score; int8 below the floor is apart."""
    out: dict[str, Any] = {}
    for level in ("window", "experiment"):
        out[level] = {}
        for precision in PRECISIONS:
            runs = [
                f
                for f in folds
                if precision in f["metrics"]
                and (precision == "fp32" or f["int8_status"]["int8"] == "ok")
            ]
            out[level][precision] = {
                name: _mean_std([f["metrics"][precision][level][name] for f in runs])
                for name in SCORES
            }
        out[level]["int8_minus_fp32"] = _paired_delta(folds, level)
        if any("tflite-int8" in f["metrics"] for f in folds):
            for precision in ("tflite-fp32", "tflite-int8"):
                out[level][precision] = {
                    name: _mean_std([f["metrics"][precision][level][name] for f in folds])
                    for name in SCORES
                }
            out[level]["tflite_int8_minus_fp32"] = _paired_delta(folds, level, "tflite-")
    for fmt in ("onnx", "tflite"):
        rhos = [
            f["spearman_nap_int8_vs_fp32"][fmt]
            for f in folds
            if fmt in f.get("spearman_nap_int8_vs_fp32", {})
        ]
        if rhos:
            out[f"spearman_nap_{fmt}"] = {**_mean_std(rhos), "min": float(np.min(rhos))}
    below = [f for f in folds if f["int8_status"]["int8"] == "below_floor"]
    out["int8_below_floor_runs"] = len(below)
    if below:
        out["window"]["int8_below_floor"] = {
            name: _mean_std([f["metrics"]["int8"]["window"][name] for f in below])
            for name in SCORES
        }
    return out


def _paired_delta(
    folds: Sequence[Mapping[str, Any]], level: str, prefix: str = ""
) -> dict[str, Any]:
    """int8 − fp32 AUROC on the same runs, including those below the fidelity floor (their
    int8 was measured with the floor lifted): the like-for-like quantization cost.
    ``prefix`` "tflite-" compares the TFLite pair."""
    i8, f32 = f"{prefix}int8", f"{prefix}fp32"
    runs = [f for f in folds if i8 in f["metrics"]]
    out = {}
    for name in SCORES:
        deltas = [f["metrics"][i8][level][name] - f["metrics"][f32][level][name] for f in runs]
        stat = _mean_std(deltas)
        stat["max_abs"] = float(np.max(np.abs(deltas))) if deltas else None
        out[name] = stat
    return out


def evaluate_task(
    data_dir: Path,
    task: str,
    config: EvalConfig,
    seeds: int,
    log: Log = print,
    experiments: Mapping[int, Experiment] | None = None,
) -> dict[str, Any]:
    """All seed × fold runs of one task, with their summary."""
    labels = task_labels(read_experiments(data_dir), task)
    if experiments is None:
        experiments = load_experiments(data_dir, sorted(labels), config.columns)
    folds = [
        run_fold(experiments, labels, split, config, task, log)
        for seed in range(seeds)
        for split in experiment_folds(labels, config.n_folds, seed, config.calibration_groups)
    ]
    return {
        "normal": [n for n, novel in labels.items() if not novel],
        "novel": [n for n, novel in labels.items() if novel],
        "folds": folds,
        "summary": summarize(folds),
        "paper_ae": PAPER_AE[task],
    }


def _cell(stat: Mapping[str, Any]) -> str:
    if not stat.get("n"):
        return "–"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def results_table(tasks: Mapping[str, Mapping[str, Any]], level: str = "window") -> str:
    """Markdown table: task × score with fp32 and int8 AUROC, the paired int8 − fp32 change
    and (for windows) the paper's AE figure, which the paper measured on rows."""
    paper = level == "window"
    head = "| task | score | fp32 AUROC | int8 AUROC (floor passed) | int8 − fp32 (paired) |"
    lines = [
        head + (" paper AE |" if paper else "") + " runs fp32/int8 |",
        "|---" * (7 if paper else 6) + "|",
    ]
    for task, result in tasks.items():
        summary = result["summary"][level]
        for name in SCORES:
            fp32, int8 = summary["fp32"][name], summary["int8"][name]
            delta = summary["int8_minus_fp32"][name]
            label = "Recon" if name == "recon" else name.upper()
            paper_value = PAPER_AE[task].get(name)
            ref = (f" {paper_value:.3f} |" if paper_value is not None else " – |") if paper else ""
            lines.append(
                f"| {task.upper()} | {label} | {_cell(fp32)} | {_cell(int8)} | "
                f"{_delta(delta)} |{ref} {fp32['n']}/{int8['n']} |"
            )
    return "\n".join(lines)


def _delta(stat: Mapping[str, Any]) -> str:
    if not stat.get("n"):
        return "–"
    return f"{stat['mean']:+.3f} ± {stat['std']:.3f}"


def tflite_table(tasks: Mapping[str, Mapping[str, Any]], level: str = "window") -> str:
    """Markdown: ONNX and TFLite int8 − fp32 (paired) side by side, and NAP Spearman ρ int8
    vs fp32 on the test windows; empty when no run built TFLite artifacts."""
    lines = [
        "| task | score | ONNX fp32 | ONNX int8 − fp32 | TFLite fp32 | TFLite int8 − fp32 |",
        "|---|---|---|---|---|---|",
    ]
    found = False
    for task, result in tasks.items():
        summary = result["summary"][level]
        if "tflite_int8_minus_fp32" not in summary:
            continue
        found = True
        for name in SCORES:
            label = "Recon" if name == "recon" else name.upper()
            lines.append(
                f"| {task.upper()} | {label} | {_cell(summary['fp32'][name])} | "
                f"{_delta(summary['int8_minus_fp32'][name])} | "
                f"{_cell(summary['tflite-fp32'][name])} | "
                f"{_delta(summary['tflite_int8_minus_fp32'][name])} |"
            )
    return "\n".join(lines) if found else ""


def spearman_lines(tasks: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per task and format: NAP Spearman ρ int8 vs fp32 on the test windows."""
    out = []
    for task, result in tasks.items():
        for fmt in ("onnx", "tflite"):
            stat = result["summary"].get(f"spearman_nap_{fmt}")
            if stat:
                out.append(
                    f"- {task.upper()} {fmt}: NAP Spearman ρ int8 vs fp32 on the test windows "
                    f"{stat['mean']:.4f} ± {stat['std']:.4f} (min {stat['min']:.4f}, "
                    f"{stat['n']} runs)"
                )
    return "\n".join(out)


def fold_table(tasks: Mapping[str, Mapping[str, Any]]) -> str:
    """One line per run: which normal experiments were tested and how NAP fared; shows
    how much of the spread comes from the held-out operating points."""
    lines = [
        "| task | seed | fold | test normal | calibration | fp32 NAP | int8 NAP | int8 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task, result in tasks.items():
        for fold in result["folds"]:
            split, metrics = fold["split"], fold["metrics"]
            int8 = metrics.get("int8", {}).get("window", {}).get("nap")
            lines.append(
                f"| {task.upper()} | {split['seed']} | {split['fold']} | "
                f"{', '.join(map(str, split['test_normal']))} | "
                f"{', '.join(map(str, split['calibration']))} | "
                f"{metrics['fp32']['window']['nap']:.3f} | "
                f"{'–' if int8 is None else f'{int8:.3f}'} | {fold['int8_status']['int8']} |"
            )
    return "\n".join(lines)


def fidelity_summary(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """build_bundle's int8 fidelity numbers over every run (NAP Spearman vs fp32 and the
    pseudo-anomaly AUROC drop), for the quantization owner."""
    rho, drop = [], []
    for result in tasks.values():
        for fold in result["folds"]:
            fid = fold["int8_status"].get("fidelity", {}).get("onnx-int8")
            if fid:
                rho.append(fid["spearman_nap"])
                drop.append(fid["pseudo_auroc_drop_nap"])
    if not rho:
        return {"n": 0}
    return {
        "n": len(rho),
        "spearman_nap_mean": float(np.mean(rho)),
        "spearman_nap_min": float(np.min(rho)),
        "pseudo_auroc_drop_mean": float(np.mean(drop)),
        "pseudo_auroc_drop_max": float(np.max(drop)),
    }


def markdown_report(results: Mapping[str, Any]) -> str:
    """The human-readable results file (benchmarks/results/cnc_quality.md)."""
    cfg = results["config"]
    tasks = results["tasks"]
    below = sum(t["summary"]["int8_below_floor_runs"] for t in tasks.values())
    runs = sum(len(t["folds"]) for t in tasks.values())
    fid = fidelity_summary(tasks)
    fid_line = (
        f"int8 fidelity in build_bundle over {fid['n']} runs: NAP Spearman vs fp32 "
        f"{fid['spearman_nap_mean']:.3f} (min {fid['spearman_nap_min']:.3f}), pseudo-anomaly "
        f"AUROC drop {fid['pseudo_auroc_drop_mean']:.3f} (max {fid['pseudo_auroc_drop_max']:.3f})."
        if fid["n"]
        else "No int8 artifacts were built."
    )
    quick = " (quick smoke run: the numbers mean little)" if results["quick"] else ""
    return "\n".join(
        [
            "# RaPP on the CNC mill tool-wear data (MI-F / MI-V)",
            "",
            f"Command: `{results['command']}`  ",
            f"Runtime: {results['runtime_s']:.0f} s; {results['seeds']} seed(s) × "
            f"{cfg['n_folds']} folds per task{quick}. Configurations tried: "
            "`cnc_experiments.md`.",
            "",
            "Window-level AUROC (primary; every test window — here every row — scored), "
            "mean ± std over seed × fold runs:",
            "",
            results_table(tasks, "window"),
            "",
            spearman_lines(tasks),
            "",
            *(
                ["ONNX vs TFLite (window level, paired over every run):", "", table, ""]
                if (table := tflite_table(tasks))
                else []
            ),
            f"{below} of {runs} runs tripped build_bundle's int8 fidelity floor and count as fp32 "
            "only, so the int8 column averages a different (smaller) set of runs than fp32; "
            "compare precisions with the paired column. " + fid_line,
            "",
            "Experiment-level AUROC (secondary; test experiments ranked by mean score):",
            "",
            results_table(tasks, "experiment"),
            "",
            "## Runs",
            "",
            fold_table(tasks),
            "",
            "## Protocol",
            "",
            results["protocol"],
            "",
            "## Configuration",
            "",
            "```json",
            json.dumps({k: v for k, v in cfg.items() if k != "columns"}, indent=1),
            "```",
            "",
            f"Columns ({len(cfg['columns'])}): {', '.join(cfg['columns'])}",
            "",
        ]
    )


PROTOCOL = (
    "Experiment-wise split: for each seed the task's normal experiments are shuffled and "
    "dealt into n_folds groups; fold k tests on normal group k, fits NAP and thresholds on "
    "normal group k+1 (calibration, held out from training) and trains on the remaining "
    "normal groups. All novel experiments are tested in every fold and never train. No "
    "experiment is on two sides of a fold; every normal experiment is tested once per seed. "
    "Normalization is fitted on the training experiments. Each fold trains the MLP "
    "autoencoder (exporter.train), builds a real bundle (exporter.build: ONNX fp32 + int8 "
    "QDQ, NAP fitted per artifact on calibration data), loads it with agent.core.bundle and "
    "scores the test windows with agent.core.scoring.open_scorer(bundle, 'onnxruntime', "
    "precision). Training seed = 1000 * seed + fold. MI-F: all 18 experiments, novel = not "
    "finalized (4, 5, 7, 16). MI-V: the 14 finalized experiments, novel = failed visual "
    "inspection (6, 8, 9, 10). Window-level AUROC pools every test window of a fold; "
    "experiment-level AUROC ranks the test experiments by their mean score. The int8 column "
    "averages only runs whose int8 artifact passed build_bundle's fidelity floor (a run "
    "below it reports fp32 only); 'int8 - fp32 (paired)' compares both precisions on every "
    "run, measuring int8 with the floor lifted where it tripped."
)


def _command(
    data_dir: Path, task: str, out: Path | None, seeds: int, quick: bool, cfg: EvalConfig
) -> str:
    parts = [f"python -m {PROG}", f"--data {data_dir}", f"--task {task}", f"--seeds {seeds}"]
    if cfg.tflite:
        parts.append("--tflite")
    if cfg.int8_activations != DEFAULT_CONFIG.int8_activations:
        parts.append(f"--int8-activations {cfg.int8_activations}")
    if out is not None:
        parts.append(f"--out {out}")
    if quick:
        parts.append("--quick")
    return " ".join(parts)


def write_results(out: Path, results: Mapping[str, Any]) -> Path:
    """Write the JSON to ``out`` and the markdown report beside it (same name, ``.md``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, (json.dumps(results, indent=1) + "\n").encode())
    md = out.with_suffix(".md")
    write_atomic(md, markdown_report(results).encode())
    return md


def run_evaluation(
    data_dir: Path | str,
    task: str,
    out: Path | None,
    seeds: int,
    quick: bool,
    config: EvalConfig | None = None,
    log: Log = print,
) -> int:
    """Run MI-F and/or MI-V, print the table, optionally write
    ``out`` (JSON) and ``out`` with ``.md`` (markdown). Returns the process exit code.

    ``quick`` is a smoke run: one seed, 3 folds, 3 epochs.
    """
    t0 = time.perf_counter()
    root = require_data_dir(data_dir)
    cfg = config or DEFAULT_CONFIG
    if quick:
        cfg, seeds = cfg.quick(), 1
    if seeds < 1:
        raise ExportError(f"--seeds {seeds}: need at least 1")
    names = TASKS if task == "all" else (task,)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise ExportError(f"task {unknown[0]!r}: choose one of {', '.join(TASKS)} or all")
    infos = read_experiments(root)
    experiments = load_experiments(root, sorted(infos), cfg.columns)
    tasks = {}
    for name in names:
        log(f"{name.upper()}: {seeds} seed(s) × {cfg.n_folds} folds")
        tasks[name] = evaluate_task(root, name, cfg, seeds, log, experiments)
    results = {
        "command": _command(Path(data_dir), task, out, seeds, quick, cfg),
        "quick": quick,
        "seeds": seeds,
        "config": cfg.to_json(),
        "protocol": PROTOCOL,
        "tasks": tasks,
        "runtime_s": time.perf_counter() - t0,
    }
    results["int8_fidelity"] = fidelity_summary(tasks)
    log("\nwindow-level AUROC (mean ± std over seed × fold runs)\n" + results_table(tasks))
    log(spearman_lines(tasks))
    if table := tflite_table(tasks):
        log("\nONNX vs TFLite (window level)\n" + table)
    log("\nexperiment-level AUROC (mean score per experiment)\n")
    log(results_table(tasks, "experiment"))
    log(f"\n{results['runtime_s']:.0f} s")
    if out is not None:
        md = write_results(Path(out), results)
        log(f"wrote {out} and {md}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=f"python -m {PROG}", description=(__doc__ or "").split("\n\n")[0]
    )
    ap.add_argument("--data", required=True, type=Path, help="cnc-mill-tool-wear folder")
    ap.add_argument("--task", choices=["mi-f", "mi-v", "all"], default="all")
    ap.add_argument("--out", type=Path, help="write results JSON here")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds to average")
    ap.add_argument("--quick", action="store_true", help="fewer epochs (smoke run)")
    ap.add_argument(
        "--tflite", action="store_true", help="also build and score TFLite fp32/int8 per fold"
    )
    ap.add_argument("--int8-activations", type=int, choices=[16, 8], default=16)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """0 ok; 1 on a failure (missing data included), 2 on bad input, as the agent's CLIs."""
    args = parser().parse_args(argv)
    config = replace(DEFAULT_CONFIG, tflite=args.tflite, int8_activations=args.int8_activations)
    try:
        return run_evaluation(args.data, args.task, args.out, args.seeds, args.quick, config)
    except AgentError as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return exit_code(err)


if __name__ == "__main__":
    sys.exit(main())
