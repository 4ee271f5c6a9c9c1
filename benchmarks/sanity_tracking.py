"""Does the build-time pseudo-anomaly AUROC track the true AUROC?

The pseudo-anomaly sanity check (:mod:`exporter.sanity`) grades a model on synthetic
anomalies because real ones are not labelled at build time. It is only useful if it ranks
models the way their real detection quality does. This script trains models of different
quality — several training budgets (epochs) and bottleneck widths, up to one as wide as the
input — and for each one measures:

- the pseudo-anomaly AUROC exactly as ``rapp-export build`` does (NAP fitted on one half of
  the held-out normal calibration windows, synthetic anomalies made from the other half);
- the true AUROC of NAP on labelled anomalies the model never saw:
  (a) the simulated 6-axis arm (firmware_config.simulator): normal windows of fresh normal
  runs vs windows holding a labelled fault, pooled over the six fault kinds of
  :mod:`benchmarks.sim_report` (friction, backlash, collision, payload, ripple, sensor);
  (b) the CNC mill data (task MI-V, experiment-wise split of :mod:`benchmarks.cnc_data`,
  fold 0 of seed 0, the default configuration of :mod:`benchmarks.cnc_eval`): test windows
  of held-out normal experiments vs the experiments that failed visual inspection;
- the sanity verdicts (status of every check).

It reports the table and Spearman's rank correlation between the two AUROCs per dataset.
Scoring is the fp32 PyTorch pathway (what the sanity check runs; the ONNX fp32 graph matches
it to ~1e-7), so no bundle is built here.

    python -m benchmarks.sanity_tracking --cnc-data ../shared/data/cnc-mill-tool-wear
    python -m benchmarks.sanity_tracking --quick      # smoke run, < 30 s

Writes ``benchmarks/results/sanity_tracking.{md,json}`` (``--quick``: a temporary directory;
``--out`` to change the stem).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import write_atomic
from agent.core.features import (
    FeatureSpec,
    Normalization,
    Segmentation,
    segment_features,
    segment_recording,
)
from exporter.metrics import auroc, spearman
from exporter.model import TrainedModel
from exporter.sanity import TorchNap, run_sanity_checks
from exporter.train import TrainSettings, train_autoencoder

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "sanity_tracking"
QUICK_OUT = Path(tempfile.gettempdir()) / "sanity_tracking_quick"
SEED = 0


@dataclass(frozen=True)
class Budget:
    epochs: int
    bottleneck: int | None  # None: as wide as the input
    n_layers: int = 3


@dataclass(frozen=True)
class Dataset:
    """Windows of one task: training, calibration (fit / hold halves) and labelled test."""

    name: str
    spec: FeatureSpec
    normalization: Normalization
    train_x: np.ndarray
    calib_fit: np.ndarray  # segments (N × L × C)
    calib_hold: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_group: np.ndarray  # fault kind or experiment per test window (for per-group AUROC)
    train: Callable[[np.ndarray, Budget, int], tuple[Any, dict]]
    note: str


def split_calibration(segments: np.ndarray, block: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved blocks, as ``exporter.build`` splits calibration windows (fit / hold)."""
    block_id = np.arange(len(segments)) // block
    return segments[block_id % 2 == 0], segments[block_id % 2 == 1]


# --------------------------------------------------------------------------- simulator


def simulator_dataset(quick: bool) -> Dataset:
    """Fixed windows of the simulated arm at 250 Hz with nuisances on (sim-report's setup)."""
    from benchmarks.sim_report import FAULT_CASES, QUICK, fault_specs, sim_config, simulate_span

    rate = 250
    spec = FeatureSpec(
        channels=("J1", "J2", "J3", "J4", "J5", "J6"),
        units=("A",) * 6,
        sample_rate_hz=float(rate),
        segmentation=Segmentation(kind="window", length=64, hop=32),
        features=("raw",),
    )
    # Calibration is kept short: the NAP fit (an SVD of windows × pathway width) dominates.
    train_s, calib_s, normal_s = (300.0, 100.0, 120.0) if quick else (600.0, 150.0, 180.0)
    train_run = simulate_span(sim_config(1, 1, rate), 0.0, train_s)
    normalization = Normalization.fit(train_run.currents)

    def windows(run: Any) -> Any:
        return segment_recording(spec, normalization, run.currents, run.cycle_start)

    train_x = windows(train_run).features
    calib_fit, calib_hold = split_calibration(
        windows(simulate_span(sim_config(2, 1, rate), 0.0, calib_s)).segments
    )
    normal = windows(simulate_span(sim_config(101, 1, rate), 0.0, normal_s))
    xs, ys, groups = (
        [normal.features],
        [np.zeros(len(normal.features))],
        ["normal"] * len(normal.features),
    )
    cases = FAULT_CASES[::2] if quick else FAULT_CASES
    for i, case in enumerate(cases):
        run = simulate_span(
            sim_config(111 + i, 1, rate, fault_specs(case, QUICK)), 0.0, QUICK.fault_run_s
        )
        seg = windows(run)
        hit = np.array([run.fault[a:b].max() > 0 for a, b in zip(seg.start, seg.stop, strict=True)])
        xs.append(seg.features[hit])
        ys.append(np.ones(int(hit.sum())))
        groups += [case.kind] * int(hit.sum())

    def train(x: np.ndarray, budget: Budget, seed: int) -> tuple[Any, dict]:
        width = x.shape[1] if budget.bottleneck is None else budget.bottleneck
        settings = TrainSettings(
            n_layers=budget.n_layers,
            bottleneck=width,
            epochs=budget.epochs,
            patience=20,
            seed=seed,
        )
        return train_autoencoder(x, settings)

    return Dataset(
        name="simulator",
        spec=spec,
        normalization=normalization,
        train_x=train_x,
        calib_fit=calib_fit,
        calib_hold=calib_hold,
        test_x=np.concatenate(xs),
        test_y=np.concatenate(ys),
        test_group=np.array(groups),
        train=train,
        note=(
            f"program 1, 250 Hz, windows of 64 samples (hop 32) × 6 channels = 384 inputs; "
            f"train seed 1 ({train_s:g} s), calibration seed 2 ({calib_s:g} s), normal test "
            f"seed 101 ({normal_s:g} s); faults "
            f"{', '.join(c.kind for c in cases)} (sim-report quick timing, seeds 111+)"
        ),
    )


# --------------------------------------------------------------------------- CNC


def cnc_dataset(data_dir: Path, quick: bool) -> Dataset:
    """MI-V, fold 0 of seed 0, experiment-wise; benchmarks.cnc_eval's default config."""
    from benchmarks.cnc_data import (
        experiment_folds,
        load_experiments,
        read_experiments,
        task_labels,
    )
    from benchmarks.cnc_eval import DEFAULT_CONFIG, prepare_fold, train_settings

    config = DEFAULT_CONFIG
    labels = task_labels(read_experiments(data_dir), "mi-v")
    experiments = load_experiments(data_dir, sorted(labels), config.columns)
    split = experiment_folds(labels, config.n_folds, SEED, config.calibration_groups)[0]
    fold = prepare_fold(experiments, split, config)
    train_x = np.concatenate([fold.features[n] for n in split.train])
    if quick:
        train_x = train_x[::4]
    calib = np.concatenate([fold.segments[n] for n in split.calibration])
    calib_fit, calib_hold = split_calibration(calib)
    test = list(split.test)
    test_x = np.concatenate([fold.features[n] for n in test])
    test_y = np.concatenate([np.full(len(fold.features[n]), labels[n], float) for n in test])
    test_group = np.concatenate([np.full(len(fold.features[n]), f"exp{n}") for n in test])

    def train(x: np.ndarray, budget: Budget, seed: int) -> tuple[Any, dict]:
        width = x.shape[1] if budget.bottleneck is None else budget.bottleneck
        from dataclasses import replace

        settings = replace(
            train_settings(config, seed),
            bottleneck=width,
            epochs=budget.epochs,
            n_layers=budget.n_layers,
        )
        return train_autoencoder(x, settings)

    return Dataset(
        name="cnc-mi-v",
        spec=fold.spec,
        normalization=fold.normalization,
        train_x=train_x,
        calib_fit=calib_fit,
        calib_hold=calib_hold,
        test_x=test_x,
        test_y=test_y,
        test_group=test_group,
        train=train,
        note=(
            f"MI-V, seed {SEED} fold 0: train {list(split.train)}, calibration "
            f"{list(split.calibration)}, test normal {list(split.test_normal)}, novel "
            f"{list(split.test_novel)}; rows as windows, '{config.columns}' columns "
            f"({train_x.shape[1]} inputs), batch {config.batch_size}, lr {config.learning_rate}"
            + (" (quick: every 4th training row)" if quick else "")
        ),
    )


# --------------------------------------------------------------------------- measuring


def evaluate_model(data: Dataset, budget: Budget) -> dict[str, Any]:
    t0 = time.perf_counter()
    model, history = data.train(data.train_x, budget, SEED)
    trained = TrainedModel(model, data.spec, data.normalization, history)
    t_train = time.perf_counter() - t0
    nap = TorchNap.fit(trained, segment_features(data.calib_fit, data.spec.features))
    report = run_sanity_checks(trained, data.calib_fit, data.calib_hold, seed=SEED, nap=nap)
    pseudo = report.by_name("pseudo_anomaly")
    scores = nap.score(data.test_x)
    true = auroc(scores, data.test_y)
    normal = data.test_y == 0
    per_group = {
        str(g): auroc(
            np.r_[scores[normal], scores[data.test_group == g]],
            np.r_[np.zeros(int(normal.sum())), np.ones(int((data.test_group == g).sum()))],
        )
        for g in dict.fromkeys(data.test_group[~normal].tolist())
    }
    return {
        "dataset": data.name,
        "epochs": budget.epochs,
        "bottleneck": budget.bottleneck or data.train_x.shape[1],
        "n_layers": budget.n_layers,
        "layer_sizes": list(model.sizes),
        "epochs_run": history["epochs_run"],
        "best_val_loss": history["best_val_loss"],
        "pseudo_auroc": pseudo.value,
        "pseudo_auroc_per_kind": pseudo.details["per_kind"],
        "true_auroc_nap": true,
        "true_auroc_per_group": per_group,
        "sanity_status": report.status,
        "checks": {c.name: {"status": c.status, "value": c.value} for c in report.checks},
        "seconds": {"train": t_train, "total": time.perf_counter() - t0},
    }


def budgets(quick: bool, widths: Sequence[int], epochs: Sequence[int]) -> list[Budget]:
    """Epochs × bottleneck widths of the default 3-layer MLP, plus single-layer models as
    wide as the input (the one architecture here whose NAP detects clearly worse)."""
    if quick:
        return [Budget(1, widths[0]), Budget(10, widths[1]), Budget(10, None, n_layers=1)]
    grid = [Budget(e, w) for w in (*widths, None) for e in epochs]
    return grid + [Budget(e, None, n_layers=1) for e in (3, epochs[-1])]


def correlation(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    pseudo = np.array([r["pseudo_auroc"] for r in rows], dtype=float)
    true = np.array([r["true_auroc_nap"] for r in rows], dtype=float)
    return {"n_models": len(rows), "spearman": spearman(pseudo, true) if len(rows) > 2 else None}


# --------------------------------------------------------------------------- report


def render_markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Does the pseudo-anomaly AUROC track the true AUROC?",
        "",
        f"Command: `{results['command']}`  ",
        f"Runtime: {results['runtime_s']:.0f} s{' (quick smoke run)' if results['quick'] else ''}"
        f" on {results['machine']['cpus']} CPUs, load average (1/5/15 min) at the end "
        f"{results['machine']['load_average_1_5_15']}; torch {results['machine']['torch']}.",
        "",
        "Each row is one model (seed 0). *pseudo AUROC*: NAP on held-out normal calibration "
        "windows vs synthetic anomalies made from them (spike, drift, scaling, channel swap, "
        "time shift, noise), as `rapp-export build` computes it for the `pseudo_anomaly` "
        "sanity check. *true AUROC*: NAP on labelled anomalies never used in training or "
        "calibration. *sanity*: the worst verdict of all checks (U underfit, O overfit, "
        "G gradient norm, I identity, P pseudo-anomaly; lower case = warn, upper = fail).",
        "",
    ]
    for name, ds in results["datasets"].items():
        corr = ds["correlation"]
        rho = "–" if corr["spearman"] is None else f"{corr['spearman']:.3f}"
        lines += [
            f"## {name}",
            "",
            ds["note"],
            "",
            f"Spearman rank correlation, pseudo vs true AUROC over {corr['n_models']} models: "
            f"**{rho}**.",
            "",
            "| layers | epochs | bottleneck | epochs run | best val MSE | pseudo AUROC "
            "| true AUROC | sanity | flags |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ds["models"]:
            lines.append(
                f"| {r['n_layers']} | {r['epochs']} | {r['bottleneck']} | {r['epochs_run']} | "
                f"{r['best_val_loss']:.4f} | {r['pseudo_auroc']:.3f} | "
                f"{r['true_auroc_nap']:.3f} | {r['sanity_status']} | {_flags(r['checks'])} |"
            )
        groups = list(ds["models"][0]["true_auroc_per_group"]) if ds["models"] else []
        kinds = list(ds["models"][0]["pseudo_auroc_per_kind"]) if ds["models"] else []
        lines += [
            "",
            "True AUROC per fault / novel experiment and pseudo AUROC per kind:",
            "",
            "| layers | epochs | bottleneck | "
            + " | ".join(groups)
            + " | "
            + " | ".join(f"p:{k}" for k in kinds)
            + " |",
            "|---|---|---|" + "---|" * (len(groups) + len(kinds)),
        ]
        for r in ds["models"]:
            cells = [f"{r['true_auroc_per_group'][g]:.3f}" for g in groups]
            cells += [_num(r["pseudo_auroc_per_kind"].get(k)) for k in kinds]
            head = f"| {r['n_layers']} | {r['epochs']} | {r['bottleneck']} | "
            lines.append(head + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Reading", "", results["reading"], ""]
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _flags(checks: dict[str, dict[str, Any]]) -> str:
    letters = {"underfit": "u", "overfit": "o", "gradient_norm": "g", "identity": "i"}
    letters["pseudo_anomaly"] = "p"
    out = []
    for name, letter in letters.items():
        status = checks[name]["status"]
        if status == "warn":
            out.append(letter)
        elif status == "fail":
            out.append(letter.upper())
    return "".join(out) or "–"


READING = (
    "A rank correlation near 1 means the build-time pseudo-anomaly AUROC orders models the "
    "way their detection of real anomalies does. What the runs show (seed 0): (1) On the "
    "simulator, within the default 3-layer architecture both AUROCs rise together with the "
    "training budget, and the single-layer model as wide as the input, whose NAP detects "
    "the real faults far worse, also has a clearly lower pseudo AUROC and gets a `p` flag. "
    "(2) On the CNC rows the pseudo AUROC moves little (the synthetic anomalies of one-row "
    "windows are weak: drift does not apply, scaling and channel swap score 0.65-0.8 for "
    "every model), so it ranks models only roughly; every CNC model stays below the 0.9 floor "
    "and is warned, a floor set for multi-sample windows. (3) A single-layer model is linear "
    "up to BatchNorm, and NAP of a linear pathway whitens a linear map of the input, so its "
    "scores do not depend on training: its rows repeat for 3 and 30/100 epochs. (4) The "
    "identity check fails the CNC single-layer 31 → 31 model after 100 epochs (it copies "
    "~99 % of a corruption); its NAP is unaffected for the reason in (3), while its Recon "
    "would be useless. The pseudo AUROC is a screening signal, not an estimate of the true "
    "AUROC: the synthetic anomalies are easier than subtle real faults (backlash is missed "
    "by every simulator model), and two models with close pseudo AUROCs are not ranked "
    "reliably."
)


def machine() -> dict[str, Any]:
    """Where the numbers come from: timings on a shared 2-core box vary with its load."""
    import os
    import platform

    import torch

    return {
        "cpus": os.cpu_count(),
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
    }


def run(cnc_data: Path | None, quick: bool, out: Path, log: Callable[[str], None]) -> dict:
    t0 = time.perf_counter()
    datasets: dict[str, Any] = {}
    plans: list[tuple[Callable[[], Dataset], list[Budget]]] = [
        (lambda: simulator_dataset(quick), budgets(quick, (4, 32), (1, 3, 10, 30)))
    ]
    if cnc_data is not None:
        plan = budgets(quick, (2, 8), (1, 3, 10, 30, 100))
        plans.append((lambda: cnc_dataset(cnc_data, quick), plan))
    for make, plan in plans:
        data = make()
        log(f"{data.name}: {len(data.train_x)} training windows × {data.train_x.shape[1]}")
        rows = []
        for budget in plan:
            row = evaluate_model(data, budget)
            log(
                f"  layers {budget.n_layers} epochs {budget.epochs:>3} bottleneck "
                f"{row['bottleneck']:>4}: pseudo "
                f"{row['pseudo_auroc']:.3f} true {row['true_auroc_nap']:.3f} "
                f"sanity {row['sanity_status']} ({row['seconds']['total']:.1f} s)"
            )
            rows.append(row)
        datasets[data.name] = {"note": data.note, "models": rows, "correlation": correlation(rows)}
        log(f"  Spearman(pseudo, true) = {datasets[data.name]['correlation']['spearman']}")
    command = "python -m benchmarks.sanity_tracking" + (" --quick" if quick else "")
    if cnc_data is not None:
        command += f" --cnc-data {cnc_data}"
    results = {
        "command": command,
        "quick": quick,
        "seed": SEED,
        "machine": machine(),
        "datasets": datasets,
        "reading": READING,
        "runtime_s": time.perf_counter() - t0,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out.with_suffix(".json"), (json.dumps(results, indent=1) + "\n").encode())
    write_atomic(out.with_suffix(".md"), render_markdown(results).encode())
    log(f"wrote {out.with_suffix('.md')} and .json ({results['runtime_s']:.0f} s)")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--cnc-data", type=Path, help="cnc-mill-tool-wear folder (optional)")
    ap.add_argument("--quick", action="store_true", help="fewer models and shorter runs")
    ap.add_argument(
        "--out",
        type=Path,
        help=f"output path stem (default {DEFAULT_OUT.relative_to(ROOT)}; with --quick "
        f"{QUICK_OUT}, so a smoke run never overwrites the results)",
    )
    args = ap.parse_args(argv)
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    run(args.cnc_data, args.quick, out, print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
