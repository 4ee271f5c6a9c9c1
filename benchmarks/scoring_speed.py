"""Scoring speed per backend and precision vs a PyTorch eager baseline (SPEC §11, issue #8).

Run from the repository root (``make bench`` runs it with the others)::

    .venv/bin/python -m benchmarks.scoring_speed [--quick] [--out benchmarks/results]

Two models:

- **default** — the bundle the agent ships, ``agent/data/default.rapp`` (robot cycles resampled
  to 64 points × 6 channels → 384 inputs, MLP 384 → 198 → 12). Its own ONNX fp32/int8 files
  are timed as shipped. The bundle carries no TFLite files, so the LiteRT rows come from a
  bundle rebuilt through ``exporter.build.build_bundle`` with the *same weights* (read from the
  shipped ONNX graph) and simulated calibration cycles; the PyTorch baseline is the paper's
  eager ``MlpAutoencoder`` holding those weights (BatchNorm as identity layers).
- **large** — 6 channels × 256-sample windows → 1536 inputs, 3 layers, bottleneck 8, trained
  briefly on synthetic currents and built with all four artifacts.

For each, on one thread:

- **inference**: the projection pathway alone (``Backend.run``; ``model.pathway`` for torch);
- **scoring**: the whole step the agent runs per window — features from segments, pathway,
  Recon/SAP/NAP and channel attribution (``Scorer.score_segments``); for torch, the same
  numpy features, the eager pathway and NAP as torch ops (the research-code baseline);

at batch 1 (latency p50/p99 over many calls) and batch 64 (throughput), plus a breakdown of
the scoring step into its parts for the shipped model. FLOPs per window count the GEMMs
(2·in·out per layer per pass: encoder twice, decoder once); efficiency is measured against
this machine's single-core float32 GEMM peak (a large numpy sgemm with BLAS on one thread).

Results: ``<out>/scoring_speed.json``, ``<out>/scoring_speed.md`` and the batch-1 latency
histogram ``<out>/plots/scoring_latency.png``. ``--quick`` is the CI smoke run (fewer
repetitions, briefer training, same code paths). Nothing here asserts a speed: a shared box is
too noisy for that, so the numbers are reported with the load average.
"""

from __future__ import annotations

import os

# One core, set before numpy/torch load their thread pools: the agent runs single-threaded.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import itertools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.common import (  # noqa: E402
    RESULTS,
    load_average,
    machine_info,
    machine_lines,
    write_json,
    write_text,
)

CHANNELS = ("J1", "J2", "J3", "J4", "J5", "J6")
BATCH = 64
SHIPPED_BUNDLE = ROOT / "agent" / "data" / "default.rapp"


@dataclass(frozen=True)
class ModelSize:
    name: str
    window: int
    n_layers: int = 3
    bottleneck: int = 8


LARGE = ModelSize("large", 256)


@dataclass(frozen=True)
class Effort:
    """How long to train and how many timed calls; --quick shrinks all of it."""

    train_samples: int
    calib_samples: int
    epochs: int
    reps_1: int
    reps_64: int
    warmup: int
    sim_calib_s: float  # simulated seconds of program-1 cycles for the default's LiteRT rebuild


FULL = Effort(train_samples=60_000, calib_samples=60_000, epochs=10, reps_1=1500, reps_64=200,
              warmup=50, sim_calib_s=900.0)  # fmt: skip
QUICK = Effort(train_samples=12_000, calib_samples=12_000, epochs=1, reps_1=150, reps_64=30,
               warmup=10, sim_calib_s=360.0)  # fmt: skip


# --- synthetic currents (self-contained: benchmarks do not import tests) -------------------


def currents(n: int, seed: int) -> np.ndarray:
    """Six periodic joint-current-like channels with noise (the speed does not depend on it)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 1000.0
    amp = np.array([4.0, 8.0, 6.0, 0.4, 0.3, 0.2])
    phase = rng.uniform(0, 2 * np.pi)
    base = np.stack(
        [a * np.sin(2 * np.pi * 0.8 * t * (1 + 0.1 * k) + phase + k) for k, a in enumerate(amp)],
        axis=1,
    )
    base += 0.3 * amp * np.sign(np.cos(2 * np.pi * 0.8 * t + phase))[:, None]
    return (base + 0.02 * amp * rng.normal(size=base.shape)).astype(np.float32)


# --- machine facts and peak -----------------------------------------------------------------


def sgemm_peak(quick: bool) -> dict[str, Any]:
    """Best float32 GEMM rate of one core (numpy BLAS, one thread), GFLOP/s.

    Best of many short runs, so a neighbour process stealing the core for a while lowers
    the estimate less; :func:`main` measures again at the end and keeps the higher one.
    """
    try:
        from threadpoolctl import threadpool_limits

        limiter: Any = threadpool_limits(limits=1)
    except ImportError:  # the env vars above already asked for one thread
        limiter = None
    n = 1024
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(5 if quick else 30):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    if limiter is not None:
        limiter.unregister()
    return {"n": n, "seconds": best, "gflops": 2 * n**3 / best / 1e9}


# --- models and bundles ---------------------------------------------------------------------


def build_model(size: ModelSize, effort: Effort) -> tuple[Any, Any, np.ndarray]:
    """Train briefly on synthetic currents and build a bundle with all four artifacts.

    Fidelity gates are relaxed: this measures speed, and a briefly trained model is no guide
    to int8 quality (exporter.fidelity measures that).
    """
    from agent.core.bundle.loader import load_bundle
    from agent.core.features import FeatureSpec, Normalization, Segmentation, segment_recording
    from exporter.build import BuildSettings, build_bundle
    from exporter.model import TrainedModel
    from exporter.tflite_export import tflite_candidates
    from exporter.train import TrainSettings, train_autoencoder

    spec = FeatureSpec(
        channels=CHANNELS,
        units=("A",) * len(CHANNELS),
        sample_rate_hz=1000.0,
        segmentation=Segmentation(kind="window", length=size.window, hop=size.window // 2),
        features=("raw",),
    )
    train = currents(effort.train_samples, seed=1)
    norm = Normalization.fit(train)
    features = segment_recording(spec, norm, train).features
    model, history = train_autoencoder(
        features,
        TrainSettings(
            n_layers=size.n_layers,
            bottleneck=size.bottleneck,
            epochs=effort.epochs,
            patience=effort.epochs,
            seed=0,
        ),
    )
    trained = TrainedModel(model, spec, norm, history)
    calib = segment_recording(spec, norm, currents(effort.calib_samples, seed=2)).segments
    settings = BuildSettings(
        bundle_id=f"bench-{size.name}", min_spearman=-1.0, max_auroc_drop=1.0, seed=0
    )
    built = build_bundle(trained, calib, settings, extra_artifacts=tflite_candidates)
    return trained, load_bundle(built.data), calib


@dataclass
class Setup:
    """A model under test: torch weights, the bundle timed for ONNX, the one for TFLite."""

    name: str
    description: str
    trained: Any
    onnx_bundle: Any
    tflite_bundle: Any
    segments: np.ndarray  # (≥ 64 × L × C) normalized calibration segments


def setup_large(effort: Effort) -> Setup:
    trained, bundle, calib = build_model(LARGE, effort)
    return Setup(
        LARGE.name,
        f"{len(CHANNELS)} channels × {LARGE.window}-sample windows, trained briefly on synthetic "
        "currents; all four artifacts from one build",
        trained,
        bundle,
        bundle,
        calib,
    )


def _torch_from_onnx(bundle: Any) -> Any:
    """The paper's eager MlpAutoencoder holding the shipped ONNX graph's (BN-folded) weights.

    BatchNorm layers stay in the module as identity (running mean 0, variance 1 − eps), so
    the eager baseline runs the same layer sequence as the research code.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    from exporter.model import MlpAutoencoder

    graph = onnx.load_from_string(bundle.artifacts["onnx-fp32"].model).graph
    weights = {i.name: numpy_helper.to_array(i).copy() for i in graph.initializer}
    model = MlpAutoencoder(list(bundle.manifest.layer_sizes))
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                key = name
                if name.endswith(".0") and f"{name[:-2]}.weight" in weights:
                    key = name[:-2]  # encoder.0.0 (Linear inside a block) → encoder.0
                module.weight.copy_(torch.from_numpy(weights[f"{key}.weight"]))
                module.bias.copy_(torch.from_numpy(weights[f"{key}.bias"]))
            elif isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.zero_()
                module.running_var.fill_(1.0 - module.eps)
                module.weight.fill_(1.0)
                module.bias.zero_()
    return model.eval()


def simulated_cycles(bundle: Any, seconds: float, seed: int = 2) -> np.ndarray:
    """Normalized program-1 cycles from the firmware simulator, cut with the bundle's spec."""
    from agent.core.features import segment_recording
    from firmware_config.channel_map import load_builtin_map
    from firmware_config.simulator import SimulationConfig, Simulator, concatenate

    channel_map = load_builtin_map()
    config = SimulationConfig(
        seed=seed,
        duration_s=seconds,
        sample_rate_hz=int(channel_map.sample_rate_hz),
        schedule=((1, 1),),
    )
    run = concatenate(list(Simulator(config, channel_map).chunks(60_000)))
    spec = bundle.manifest.input
    return segment_recording(
        spec, bundle.normalization, run.currents, cycle_start=run.cycle_start
    ).segments


def setup_default(effort: Effort, log: Callable[[str], None]) -> Setup:
    """The shipped bundle; LiteRT artifacts rebuilt from its weights (it ships ONNX only)."""
    from agent.core.bundle.loader import load_bundle
    from exporter.build import BuildSettings, build_bundle
    from exporter.model import TrainedModel
    from exporter.tflite_export import tflite_candidates

    shipped = load_bundle(SHIPPED_BUNDLE.read_bytes())
    manifest = shipped.manifest
    model = _torch_from_onnx(shipped)
    trained = TrainedModel(model, manifest.input, shipped.normalization, {})
    calib = simulated_cycles(shipped, effort.sim_calib_s)
    if len(calib) < BATCH:
        raise RuntimeError(f"{len(calib)} simulated cycles; need ≥ {BATCH}: raise sim_calib_s")
    log(f"  {len(calib)} simulated program-1 cycles for the LiteRT rebuild")
    settings = BuildSettings(
        bundle_id="default-litert",
        programs=tuple(manifest.programs),
        calibration_method="percentile",
        min_spearman=-1.0,
        max_auroc_drop=1.0,
        seed=0,
    )
    rebuilt = build_bundle(trained, calib, settings, extra_artifacts=tflite_candidates)
    seg = manifest.input.segmentation
    return Setup(
        "default",
        f"the shipped agent/data/default.rapp: robot cycles resampled to {seg.length} points × "
        f"{manifest.input.n_channels} channels; ONNX rows time the shipped files, LiteRT rows a "
        "rebuild with the same weights",
        trained,
        shipped,
        load_bundle(rebuilt.data),
        calib,
    )


def gemm_flops(sizes: Sequence[int]) -> int:
    """FLOPs of one window through the pathway: encoder twice, decoder once."""
    encoder = sum(2 * a * b for a, b in itertools.pairwise(sizes))
    return 3 * encoder


# --- timing ---------------------------------------------------------------------------------


def time_calls(fn: Callable[[int], Any], reps: int, warmup: int) -> np.ndarray:
    """Seconds per call of ``fn(i)`` for i in 0…reps−1, after ``warmup`` untimed calls."""
    for i in range(warmup):
        fn(i)
    out = np.empty(reps)
    clock = time.perf_counter
    for i in range(reps):
        start = clock()
        fn(i)
        out[i] = clock() - start
    return out


class TorchBaseline:
    """The research code: eager MlpAutoencoder (BatchNorm unfolded) + NAP as torch ops."""

    def __init__(self, trained: Any, bundle: Any) -> None:
        import torch

        self.torch = torch
        self.model = trained.model.eval()
        nap = bundle.artifacts["onnx-fp32"].nap
        self.mu = torch.from_numpy(nap.mu)
        self.w = torch.from_numpy(nap.projection)
        self.layers = bundle.manifest.rapp_layers
        self.kinds = bundle.manifest.input.features

    def infer(self, x: np.ndarray) -> tuple:
        with self.torch.no_grad():
            return self.model.pathway(self.torch.from_numpy(x))

    def score_segments(self, samples: np.ndarray) -> np.ndarray:
        from agent.core.features import segment_features

        torch = self.torch
        x = torch.from_numpy(segment_features(samples, self.kinds))
        with torch.no_grad():
            out = self.model.pathway(x)
            n = len(out) // 2
            hidden, hidden_hat = (x, *out[:n]), out[n:]
            d = torch.cat([hidden_hat[i] - hidden[i] for i in self.layers], dim=1)
            z = (d.double() - self.mu) @ self.w
            return (z * z).sum(dim=1).numpy()


def _stats_1(seconds: np.ndarray) -> dict[str, float]:
    return {
        "p50_us": float(np.percentile(seconds, 50) * 1e6),
        "p99_us": float(np.percentile(seconds, 99) * 1e6),
    }


def _stats_64(seconds: np.ndarray, flops: int) -> dict[str, float]:
    per_batch = float(np.median(seconds))
    return {
        "batch_p50_us": per_batch * 1e6,
        "windows_per_s": BATCH / per_batch,
        "us_per_window": per_batch / BATCH * 1e6,
        "gflops": flops * BATCH / per_batch / 1e9,
    }


@dataclass(frozen=True)
class Impl:
    """One implementation under test: pathway on features, whole step on a segment batch."""

    name: str
    infer: Callable[[np.ndarray], Any]
    score: Callable[[Any], Any]


def measure(
    impl: Impl, batch: Any, effort: Effort, flops: int, peak: float
) -> tuple[dict[str, Any], np.ndarray]:
    """Batch-1 latency and batch-64 throughput of ``impl``, inference alone and whole step.

    Returns the row and the batch-1 whole-step seconds (for the latency histogram).

    ``batch`` holds the same 64 windows as features, as the implementation's segment input,
    and as 64 single-window inputs of each kind.
    """
    x, whole, rows_1, whole_1 = batch
    inf_1 = time_calls(lambda i: impl.infer(rows_1[i % BATCH]), effort.reps_1, effort.warmup)
    inf_64 = time_calls(lambda i: impl.infer(x), effort.reps_64, effort.warmup)
    sc_1 = time_calls(lambda i: impl.score(whole_1[i % BATCH]), effort.reps_1, effort.warmup)
    sc_64 = time_calls(lambda i: impl.score(whole), effort.reps_64, effort.warmup)
    row: dict[str, Any] = {
        "implementation": impl.name,
        "inference": {"batch1": _stats_1(inf_1), "batch64": _stats_64(inf_64, flops)},
        "scoring": {"batch1": _stats_1(sc_1), "batch64": _stats_64(sc_64, flops)},
    }
    inference = row["inference"]
    inference["batch64"]["pct_of_peak"] = 100 * inference["batch64"]["gflops"] / peak
    b1_gflops = flops / (inference["batch1"]["p50_us"] * 1e-6) / 1e9
    inference["batch1"]["gflops"] = b1_gflops
    inference["batch1"]["pct_of_peak"] = 100 * b1_gflops / peak
    return row, sc_1


def implementations(setup: Setup) -> list[Impl]:
    """PyTorch eager first (the baseline), then every backend × precision via Scorer.

    One extra row, "litert int8 xnnpack", runs the int8 TFLite file on the XNNPACK delegate
    instead of the built-in kernels the agent uses (see agent/core/backends/litert_backend.py):
    faster, but its scores differ from the bundle's golden canary, so it is not what ships.
    """
    from agent.core.backends import create_backend
    from agent.core.backends.litert_backend import LiteRtBackend
    from agent.core.scoring import Scorer

    base = TorchBaseline(setup.trained, setup.onnx_bundle)
    impls = [Impl("pytorch-eager fp32", base.infer, base.score_segments)]
    for backend, fmt, bundle in (
        ("onnxruntime", "onnx", setup.onnx_bundle),
        ("litert", "tflite", setup.tflite_bundle),
    ):
        for precision in ("fp32", "int8"):
            loaded = bundle.artifacts[f"{fmt}-{precision}"]
            scorer = Scorer(bundle, loaded, create_backend(loaded, bundle, backend, threads=1))
            scorer.check_canary()
            impls.append(Impl(f"{backend} {precision}", scorer.backend.run, scorer.score_segments))
    bundle = setup.tflite_bundle
    loaded = bundle.artifacts["tflite-int8"]
    fast = LiteRtBackend(
        loaded.spec, loaded.model, bundle.manifest.input.feature_dim, 1, kernels="xnnpack"
    )
    scorer = Scorer(bundle, loaded, fast)
    impls.append(Impl("litert int8 xnnpack", fast.run, scorer.score_segments))
    return impls


def _step_parts(scorer: Any, segs: list[Any]) -> dict[str, Callable[[int], Any]]:
    """One closure per part of ``scorer.score_segments(segs)``, on precomputed inputs."""
    from agent.core.features import segment_features
    from agent.core.rapp import (
        channel_attribution,
        nap_score,
        pathway_differences,
        recon_score,
        sap_score,
    )

    kinds = scorer.bundle.manifest.input.features
    nap, layers, weights = scorer._nap, scorer._layers, scorer._weights
    x = segment_features(np.stack([s.samples for s in segs]), kinds)
    p = scorer.backend.run(x)
    d64 = pathway_differences(p.hidden, p.hidden_hat, layers).astype(np.float64)
    return {
        "features": lambda i: segment_features(np.stack([q.samples for q in segs]), kinds),
        "inference": lambda i: scorer.backend.run(x),
        "differences": lambda i: pathway_differences(p.hidden, p.hidden_hat, layers),
        "nap (float64 GEMM)": lambda i: nap_score(d64, nap),
        "sap": lambda i: sap_score(d64),
        "recon": lambda i: recon_score(p.x, p.x_hat),
        "attribution": lambda i: channel_attribution(p.x, p.x_hat, weights),
        "whole step": lambda i: scorer.score_segments(segs),
    }


def breakdown(setup: Setup, segments: list[Any], effort: Effort) -> list[dict[str, Any]]:
    """Median µs of each part of ``Scorer.score_segments`` (onnxruntime), batch 1 and 64.

    Makes our own code's share of the step visible next to the inference.
    """
    from agent.core.scoring import open_scorer

    rows = []
    for precision in ("fp32", "int8"):
        scorer = open_scorer(setup.onnx_bundle, "onnxruntime", precision)
        for n in (1, BATCH):
            reps = effort.reps_1 if n == 1 else effort.reps_64
            timings = {
                name: float(np.median(time_calls(fn, reps, effort.warmup)) * 1e6)
                for name, fn in _step_parts(scorer, segments[:n]).items()
            }
            rows.append({"precision": precision, "batch": n, "us": timings, "nap_k": scorer._nap.k})
    return rows


def bench_model(setup: Setup, effort: Effort, peak: float, log: Callable[[str], None]) -> dict:
    """Every implementation of ``setup`` at batch 1 and 64; b1 scoring samples kept for plots."""
    import torch

    from agent.core.features import Segment, segment_features

    torch.set_num_threads(1)
    bundle = setup.onnx_bundle
    sizes = list(bundle.manifest.layer_sizes)
    flops = gemm_flops(sizes)
    samples = np.ascontiguousarray(setup.segments[:BATCH])
    segments = [Segment(samples=s, start=i, stop=i + len(s)) for i, s in enumerate(samples)]
    x = segment_features(samples, bundle.manifest.input.features)
    rows_1 = [x[i : i + 1] for i in range(BATCH)]

    results = []
    latency_us: dict[str, list[float]] = {}
    for impl in implementations(setup):
        if impl.name.startswith("pytorch"):  # the research code scores sample arrays
            batch = (x, samples, rows_1, [samples[i : i + 1] for i in range(BATCH)])
        else:
            batch = (x, segments, rows_1, [[s] for s in segments])
        row, score_1 = measure(impl, batch, effort, flops, peak)
        results.append(row)
        latency_us[impl.name] = (score_1 * 1e6).round(2).tolist()
        log(
            f"  {impl.name:<20} infer b1 p50 {row['inference']['batch1']['p50_us']:8.1f} µs   "
            f"score b1 p50 {row['scoring']['batch1']['p50_us']:8.1f} µs   "
            f"score b64 {row['scoring']['batch64']['windows_per_s']:9.0f} win/s"
        )
    baseline = results[0]
    for row in results:
        for step in ("inference", "scoring"):
            row[step]["speedup_b1_vs_torch"] = (
                baseline[step]["batch1"]["p50_us"] / row[step]["batch1"]["p50_us"]
            )
            row[step]["speedup_b64_vs_torch"] = (
                row[step]["batch64"]["windows_per_s"] / baseline[step]["batch64"]["windows_per_s"]
            )
    nap = {p: bundle.artifacts[f"onnx-{p}"].nap for p in ("fp32", "int8")}
    parts = breakdown(setup, segments, effort) if setup.name == "default" else []
    return {
        "model": setup.name,
        "description": setup.description,
        "layer_sizes": sizes,
        "feature_dim": sizes[0],
        "gemm_flops_per_window": flops,
        "nap_dim": nap["fp32"].dim,
        "nap_k": {p: v.k for p, v in nap.items()},
        "nap_flops_per_window": {p: 2 * v.dim * v.k for p, v in nap.items()},
        "results": results,
        "breakdown": parts,
        "score_b1_latency_us": latency_us,
    }


# --- report ---------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Scoring speed",
        "",
        *machine_lines(report["machine"]),
        f"- float32 GEMM peak, one core: {report['peak']['gflops']:.1f} GFLOP/s "
        f"(numpy sgemm n={report['peak']['n']}); one thread everywhere; "
        f"{'quick smoke run' if report['quick'] else 'full run'}",
        "",
        "Inference = pathway only; scoring = features + pathway + Recon/SAP/NAP + attribution "
        "(`Scorer.score_segments`). b1 = batch 1 latency (µs), b64 = batch 64 throughput "
        "(windows/s). % peak = inference GFLOP/s at b64 over the one-core float32 sgemm peak "
        "(int8 rows count their integer multiply-adds the same way, so they can exceed 100 %). "
        "× torch = speed-up over PyTorch eager (b1 latency, b64 throughput). "
        "`litert int8 xnnpack` is for comparison only: the agent runs TFLite int8 on the "
        "built-in kernels, whose scores reproduce the bundle's golden canary.",
    ]
    for model in report["models"]:
        lines += [
            "",
            f"## {model['model']}: layers {model['layer_sizes']}",
            "",
            f"{model['description'][0].upper()}{model['description'][1:]}.",
            "",
            f"GEMM FLOPs per window {model['gemm_flops_per_window']:,} (+ NAP projection "
            f"M={model['nap_dim']} × k={model['nap_k']['fp32']} fp32 / "
            f"{model['nap_k']['int8']} int8 in float64)",
            "",
            *scoring_table(model),
        ]
        if model["breakdown"]:
            lines += ["", "Where the scoring step's time goes (onnxruntime, median µs per call):"]
            lines += [""]
            lines += breakdown_table(model["breakdown"])
    lines += ["", "![b1 latency](plots/scoring_latency.png)"]
    return "\n".join(lines) + "\n"


def scoring_table(model: dict[str, Any]) -> list[str]:
    lines = [
        "| implementation | infer b1 p50 | infer b1 p99 | score b1 p50 | score b1 p99 "
        "| infer b64 win/s | score b64 win/s | infer GFLOP/s b64 | % peak "
        "| × torch infer b1 | × torch score b1 | × torch score b64 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in model["results"]:
        inf, sc = row["inference"], row["scoring"]
        lines.append(
            f"| {row['implementation']} | {inf['batch1']['p50_us']:.1f} | "
            f"{inf['batch1']['p99_us']:.1f} | {sc['batch1']['p50_us']:.1f} | "
            f"{sc['batch1']['p99_us']:.1f} | {inf['batch64']['windows_per_s']:,.0f} | "
            f"{sc['batch64']['windows_per_s']:,.0f} | {inf['batch64']['gflops']:.2f} | "
            f"{inf['batch64']['pct_of_peak']:.1f} | {inf['speedup_b1_vs_torch']:.1f} | "
            f"{sc['speedup_b1_vs_torch']:.1f} | {sc['speedup_b64_vs_torch']:.1f} |"
        )
    return lines


def breakdown_table(rows: list[dict[str, Any]]) -> list[str]:
    parts = list(rows[0]["us"])
    lines = [
        "| precision | batch | " + " | ".join(parts) + " |",
        "|---|---:|" + "---:|" * len(parts),
    ]
    for row in rows:
        cells = " | ".join(f"{row['us'][p]:.1f}" for p in parts)
        lines.append(f"| {row['precision']} | {row['batch']} | {cells} |")
    return lines


def plot_latency(report: dict[str, Any], path: Path) -> None:
    """Histogram of batch-1 whole-step latency per implementation, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for name, values in model["score_b1_latency_us"].items():
            v = np.asarray(values)
            hi = np.percentile(v, 99.5)
            ax.hist(v[v <= hi], bins=60, histtype="step", label=name, linewidth=1.2)
        ax.set_xscale("log")
        ax.set_xlabel("whole scoring step, batch 1 [µs] (≤ p99.5)")
        ax.set_ylabel("calls")
        ax.set_title(f"{model['model']} model {model['layer_sizes']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: few repetitions")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    effort = QUICK if args.quick else FULL
    started = time.perf_counter()
    info = machine_info()
    peak = sgemm_peak(args.quick)
    print(f"{info['cpu']}, {info['cores']} cores; one-core sgemm peak {peak['gflops']:.1f} GFLOP/s")
    models = []
    for name, make in (
        ("default", lambda: setup_default(effort, print)),
        ("large", lambda: setup_large(effort)),
    ):
        t0 = time.perf_counter()
        setup = make()
        print(f"model {name}: set up in {time.perf_counter() - t0:.1f} s")
        models.append(bench_model(setup, effort, peak["gflops"], print))
    again = sgemm_peak(args.quick)
    if again["gflops"] > peak["gflops"]:  # the start was disturbed: rescale the % columns
        for model in models:
            for row in model["results"]:
                for batch in ("batch1", "batch64"):
                    row["inference"][batch]["pct_of_peak"] *= peak["gflops"] / again["gflops"]
        peak = again
    info["load_average_at_end"] = load_average()
    report = {"quick": args.quick, "machine": info, "peak": peak, "models": models}
    report["elapsed_s"] = time.perf_counter() - started
    plot_latency(report, args.out / "plots" / "scoring_latency.png")
    write_json(args.out / "scoring_speed.json", report)
    table = markdown(report)
    write_text(args.out / "scoring_speed.md", table)
    print(table)
    print(f"wrote {args.out / 'scoring_speed.json'} and .md in {report['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
