"""The CNC mill with the exporter's default flags: what a user who gives only the channels gets.

Run from the repository root (:mod:`benchmarks.quality` runs it for ``make bench``)::

    .venv/bin/python -m benchmarks.cnc_defaults --data ../shared/data/cnc-mill-tool-wear
        [--task mi-f|mi-v|all] [--seeds 1] [--quick] [--out benchmarks/results/cnc_defaults.json]

:mod:`benchmarks.cnc_eval` reproduces the RaPP paper's protocol (one row per window, its own
training recipe); this module is the product path instead, on the same experiment-wise folds
(:func:`benchmarks.cnc_data.experiment_folds`, 5 per seed, ``servo`` columns at 10 Hz):

1. ``rapp-export train``'s defaults: model selection for everything the flags leave open
   (:func:`exporter.selection.select_model` with nothing fixed), then the chosen model trained
   with the CLI's recipe (:class:`exporter.train.TrainSettings` defaults) on the fold's
   training experiments, with the latent reference ``train`` stores;
2. ``rapp-export build``'s defaults on the calibration experiments, one threshold group per
   experiment as the CLI groups files (fp32 only: the table is fp32);
3. every window of the test experiments scored by the agent's scorer (onnxruntime), and
   IsolationForest and PCA (:func:`exporter.evaluate.fit_baselines`) fitted on the very same
   training windows and scored on the very same test windows.

Window-level AUROC per score, mean ± std over seed × fold runs; the results JSON has the
shape of :mod:`benchmarks.cnc_eval`'s summary (``tasks.<task>.summary.window.fp32.<score>``)
so the quality table reads either.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import write_atomic
from agent.core.features import FeatureSpec, Normalization, segment_recording
from agent.core.recording import Recording
from benchmarks.cnc_data import (
    SAMPLE_RATE_HZ,
    TASKS,
    Experiment,
    ExperimentSplit,
    experiment_folds,
    load_experiments,
    read_experiments,
    require_data_dir,
    resolve_columns,
    task_labels,
)
from benchmarks.cnc_eval import _quiet_export, score_experiments
from benchmarks.common import md_table
from exporter.build import BuildSettings, build_bundle
from exporter.data import fit_normalization
from exporter.errors import ExportError
from exporter.evaluate import fit_baselines
from exporter.metrics import auroc
from exporter.model import TrainedModel
from exporter.selection import Fixed, select_model
from exporter.train import TrainSettings, train_autoencoder

PROG = "benchmarks.cnc_defaults"
COLUMNS = "servo"
N_FOLDS = 5
SCORES = ("nap", "combined", "density", "sap", "recon")
BASELINES = ("iforest", "pca")
QUICK_EPOCHS = 3
HEADER = ["task", "NAP", "combined", "density", "IsolationForest", "PCA", "SAP", "Recon"]
HEADER += ["combined ≥ IF (folds)"]


def _recording(n: int, experiment: Experiment) -> Recording:
    return Recording(
        Path(f"experiment_{n:02d}.csv"),
        experiment.channels,
        experiment.samples,
        None,
        None,
        None,
        None,
        None,
    )


def _windows(spec: FeatureSpec, norm: Normalization, experiment: Experiment):
    return segment_recording(spec, norm, experiment.samples)


def run_fold(
    split: ExperimentSplit,
    experiments: Mapping[int, Experiment],
    labels: Mapping[int, bool],
    quick: bool,
) -> dict[str, Any]:
    """Train with selection, build, score one fold; AUROC per score and baseline."""
    t0 = time.perf_counter()
    channels = experiments[split.train[0]].channels
    recordings = [_recording(n, experiments[n]) for n in split.train]
    norm = fit_normalization(recordings)
    base = FeatureSpec(channels, ("",) * len(channels), SAMPLE_RATE_HZ)
    settings = TrainSettings(seed=split.seed * 1000 + split.fold)
    if quick:
        settings = replace(settings, epochs=QUICK_EPOCHS, patience=QUICK_EPOCHS)
    selection = select_model(recordings, base, norm, Fixed(), settings, log=lambda _m: None)
    chosen = selection.chosen
    spec = chosen.spec(base)
    selected_s = time.perf_counter() - t0
    x = np.concatenate([_windows(spec, norm, experiments[n]).features for n in split.train])
    model, history = train_autoencoder(
        x, replace(settings, bottleneck=chosen.bottleneck), spec=spec
    )
    trained = TrainedModel(model, spec, norm, history).with_latent_reference(x, seed=settings.seed)
    calibration = [_windows(spec, norm, experiments[n]).segments for n in split.calibration]
    groups = np.concatenate(
        [np.full(len(c), n) for c, n in zip(calibration, split.calibration, strict=True)]
    )
    with _quiet_export():
        built = build_bundle(
            trained,
            np.concatenate(calibration),
            BuildSettings(bundle_id="cnc", robot="cnc", quantize=False, seed=0),
            calib_groups=groups,
        )
    test = {n: _windows(spec, norm, experiments[n]).features for n in split.test}
    scored = score_experiments(built.data, test, ["fp32"])["fp32"]
    baselines = fit_baselines(x, seed=settings.seed)
    y = np.concatenate([np.full(len(test[n]), labels[n]) for n in split.test])
    aurocs: dict[str, float] = {}
    for name in SCORES:
        if name in scored[split.test[0]]:
            aurocs[name] = auroc(np.concatenate([scored[n][name] for n in split.test]), y)
    for name in BASELINES:
        aurocs[name] = auroc(np.concatenate([baselines[name](test[n]) for n in split.test]), y)
    return {
        "split": split.to_json(),
        "chosen": chosen.to_json(),
        "selection_reason": selection.reason,
        "auroc": aurocs,
        # the build's own normal-data view: each score's AUROC on its synthetic anomalies
        "pseudo_anomaly_auroc": built.report["artifacts"]["onnx-fp32"]["pseudo_anomaly_auroc"],
        "n_train_windows": len(x),
        "n_test_windows": len(y),
        "epochs_run": int(history["epochs_run"]),
        "seconds": {"select": selected_s, "total": time.perf_counter() - t0},
    }


def _mean_std(values: Sequence[float]) -> dict[str, Any]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "n": len(v)}


def summarize(folds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    names = [n for n in (*SCORES, *BASELINES) if all(n in f["auroc"] for f in folds)]
    fp32 = {n: _mean_std([f["auroc"][n] for f in folds]) for n in names}
    wins = sum(f["auroc"].get("combined", 0.0) >= f["auroc"]["iforest"] for f in folds)
    return {"window": {"fp32": fp32}, "combined_beats_iforest_folds": wins, "folds": len(folds)}


def evaluate_task(
    task: str, experiments: Mapping[int, Experiment], infos, seeds: int, quick: bool, log
) -> dict[str, Any]:
    labels = task_labels(infos, task)
    folds = []
    for seed in range(seeds):
        for split in experiment_folds(labels, N_FOLDS, seed):
            if quick and split.fold >= 2:
                continue
            fold = run_fold(split, experiments, labels, quick)
            folds.append(fold)
            cells = " ".join(f"{k} {v:.3f}" for k, v in fold["auroc"].items())
            log(f"  {task} seed {seed} fold {split.fold}: {fold['chosen']} {cells}")
    return {"folds": folds, "summary": summarize(folds)}


def _cell(stat: Mapping[str, Any] | None) -> str:
    return "–" if stat is None else f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def markdown(results: Mapping[str, Any]) -> str:
    names = ("nap", "combined", "density", "iforest", "pca", "sap", "recon")
    rows = []
    for task, result in results["tasks"].items():
        fp32 = result["summary"]["window"]["fp32"]
        cells = [_cell(fp32.get(n)) for n in names]
        s = result["summary"]
        rows.append([task.upper(), *cells, f"{s['combined_beats_iforest_folds']}/{s['folds']}"])
    chosen = sorted(
        {json.dumps(f["chosen"]) for r in results["tasks"].values() for f in r["folds"]}
    )
    lines = [
        "# CNC mill with the exporter's default flags",
        "",
        f"`{results['command']}` — {results['runtime_s']:.0f} s. Window AUROC fp32, mean ± std "
        "over seed × fold runs (experiment-wise, 5 folds per seed); model selection and the "
        "CLI's training and build defaults; IsolationForest and PCA fitted on the very same "
        "training windows, scored on the very same test windows.",
        "",
        *md_table(
            HEADER,
            rows,
            "lrrrrrrrr",
        ),
        "",
        "Chosen per fold: " + "; ".join(chosen),
    ]
    return "\n".join(lines) + "\n"


def _log(message: str) -> None:
    print(message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="cnc-mill-tool-wear folder")
    ap.add_argument("--task", choices=[*TASKS, "all"], default="all")
    ap.add_argument("--seeds", type=int, default=1, help="fold seeds (5 folds each)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 folds, 3 epochs")
    ap.add_argument("--out", type=Path, help="results JSON (a .md is written beside it)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        root = require_data_dir(args.data)
        infos = read_experiments(root)
        experiments = load_experiments(root, sorted(infos), resolve_columns(COLUMNS))
    except ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    names = TASKS if args.task == "all" else (args.task,)
    tasks = {t: evaluate_task(t, experiments, infos, args.seeds, args.quick, _log) for t in names}
    command = f"python -m {PROG} --data {args.data} --task {args.task} --seeds {args.seeds}"
    results = {
        "command": command + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "seeds": args.seeds,
        "columns": COLUMNS,
        "tasks": tasks,
        "runtime_s": time.perf_counter() - t0,
    }
    text = markdown(results)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out, (json.dumps(results, indent=1) + "\n").encode())
        write_atomic(args.out.with_suffix(".md"), text.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
