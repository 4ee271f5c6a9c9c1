"""Scoring speed per backend and precision vs a PyTorch eager baseline (SPEC §11, issue #8).

Run from the repository root::

    .venv/bin/python benchmarks/scoring_speed.py [--quick] [--out benchmarks/results]

For two model sizes — the default (6 channels × 64 samples → 384 raw features, 3 layers,
bottleneck 8) and a larger one (6 × 256 → 1536) — it builds a real bundle through
``exporter.build.build_bundle`` (ONNX fp32/int8 + TFLite fp32/int8) and times, on one thread:

- **inference**: the projection pathway alone (``Backend.run``; ``model.pathway`` for torch);
- **scoring**: the whole step the agent runs per window — features from segments, pathway,
  Recon/SAP/NAP and channel attribution (``Scorer.score_segments``); for torch, the same
  numpy features, the eager pathway and NAP as torch ops (the research-code baseline);

at batch 1 (latency p50/p99 over many calls) and batch 64 (throughput). FLOPs per window
count the GEMMs (2·in·out per layer per pass: encoder twice, decoder once); efficiency is
measured against this machine's single-core float32 GEMM peak (a large numpy sgemm with
BLAS limited to one thread).

Results: ``<out>/scoring_speed.json`` and ``<out>/scoring_speed.md``. ``--quick`` is the CI
smoke run (< 60 s, fewer repetitions, same code paths). Nothing here asserts a speed: a
shared CI box is too noisy for that, so the numbers are reported, with the load average.
"""

from __future__ import annotations

import os

# One core, set before numpy/torch load their thread pools: the agent runs single-threaded.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(ROOT))

CHANNELS = ("J1", "J2", "J3", "J4", "J5", "J6")
BATCH = 64


@dataclass(frozen=True)
class ModelSize:
    name: str
    window: int
    n_layers: int = 3
    bottleneck: int = 8


SIZES = (ModelSize("default", 64), ModelSize("large", 256))


@dataclass(frozen=True)
class Effort:
    """How long to train and how many timed calls; --quick shrinks all of it."""

    train_samples: int
    calib_samples: int
    epochs: int
    reps_1: int
    reps_64: int
    warmup: int


FULL = Effort(train_samples=60_000, calib_samples=60_000, epochs=10, reps_1=2000, reps_64=300,
              warmup=50)  # fmt: skip
QUICK = Effort(train_samples=12_000, calib_samples=12_000, epochs=1, reps_1=150, reps_64=30,
               warmup=10)  # fmt: skip


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


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": {
            name: _version(name)
            for name in ("numpy", "onnxruntime", "ai-edge-litert", "torch", "tensorflow")
        },
        "load_average_at_start": [round(x, 2) for x in load],
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


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
    from agent.bundle.loader import load_bundle
    from agent.features import FeatureSpec, Normalization, Segmentation, segment_recording
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
        from agent.features import segment_features

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


def measure(impl: Impl, batch: Any, effort: Effort, flops: int, peak: float) -> dict[str, Any]:
    """Batch-1 latency and batch-64 throughput of ``impl``, inference alone and whole step.

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
    return row


def implementations(trained: Any, bundle: Any) -> list[Impl]:
    """PyTorch eager first (the baseline), then every backend × precision via Scorer.

    One extra row, "litert int8 xnnpack", runs the int8 TFLite file on the XNNPACK delegate
    instead of the built-in kernels the agent uses (see agent/backends/litert_backend.py):
    faster, but its scores differ from the bundle's golden canary, so it is not what ships.
    """
    from agent.backends import create_backend
    from agent.backends.litert_backend import LiteRtBackend
    from agent.scoring import Scorer

    base = TorchBaseline(trained, bundle)
    impls = [Impl("pytorch-eager fp32", base.infer, base.score_segments)]
    for backend, fmt in (("onnxruntime", "onnx"), ("litert", "tflite")):
        for precision in ("fp32", "int8"):
            loaded = bundle.artifacts[f"{fmt}-{precision}"]
            scorer = Scorer(bundle, loaded, create_backend(loaded, bundle, backend, threads=1))
            scorer.check_canary()
            impls.append(Impl(f"{backend} {precision}", scorer.backend.run, scorer.score_segments))
    loaded = bundle.artifacts["tflite-int8"]
    fast = LiteRtBackend(
        loaded.spec, loaded.model, bundle.manifest.input.feature_dim, 1, kernels="xnnpack"
    )
    scorer = Scorer(bundle, loaded, fast)
    impls.append(Impl("litert int8 xnnpack", fast.run, scorer.score_segments))
    return impls


def bench_model(size: ModelSize, effort: Effort, peak: float, log: Callable[[str], None]) -> dict:
    import torch

    from agent.features import Segment, segment_features

    torch.set_num_threads(1)
    started = time.perf_counter()
    trained, bundle, calib = build_model(size, effort)
    log(f"  built the {size.name} bundle in {time.perf_counter() - started:.1f} s")
    sizes = list(bundle.manifest.layer_sizes)
    flops = gemm_flops(sizes)
    samples = np.ascontiguousarray(calib[:BATCH])
    segments = [Segment(samples=s, start=i, stop=i + len(s)) for i, s in enumerate(samples)]
    x = segment_features(samples, bundle.manifest.input.features)
    rows_1 = [x[i : i + 1] for i in range(BATCH)]

    results = []
    for impl in implementations(trained, bundle):
        if impl.name.startswith("pytorch"):  # the research code scores sample arrays
            batch = (x, samples, rows_1, [samples[i : i + 1] for i in range(BATCH)])
        else:
            batch = (x, segments, rows_1, [[s] for s in segments])
        row = measure(impl, batch, effort, flops, peak)
        results.append(row)
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
    nap = bundle.artifacts["onnx-fp32"].nap
    return {
        "model": size.name,
        "layer_sizes": sizes,
        "feature_dim": sizes[0],
        "window": f"{len(CHANNELS)} channels x {size.window} samples",
        "gemm_flops_per_window": flops,
        "nap_flops_per_window": 2 * nap.dim * nap.k,
        "nap_dim": nap.dim,
        "nap_k": nap.k,
        "results": results,
    }


# --- report ---------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = [
        "# Scoring speed",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores, {m['machine']}); one thread everywhere",
        f"- Python {m['python']}; {versions}",
        f"- float32 GEMM peak, one core: {report['peak']['gflops']:.1f} GFLOP/s "
        f"(numpy sgemm n={report['peak']['n']})",
        f"- load average at start / end: {m['load_average_at_start']} / "
        f"{m.get('load_average_at_end')} "
        f"({'quick smoke run' if report['quick'] else 'full run'}, {m['date']})",
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
            f"## {model['model']}: {model['window']} → layers {model['layer_sizes']}",
            "",
            f"GEMM FLOPs per window {model['gemm_flops_per_window']:,} (+ NAP "
            f"{model['nap_flops_per_window']:,}: M={model['nap_dim']}, k={model['nap_k']})",
            "",
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
                f"{sc['speedup_b1_vs_torch']:.1f} | "
                f"{sc['speedup_b64_vs_torch']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: < 60 s, few repetitions")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    effort = QUICK if args.quick else FULL
    started = time.perf_counter()
    info = machine_info()
    peak = sgemm_peak(args.quick)
    print(f"{info['cpu']}, {info['cores']} cores; one-core sgemm peak {peak['gflops']:.1f} GFLOP/s")
    models = []
    for size in SIZES:
        print(f"model {size.name} ({size.window} samples × {len(CHANNELS)} channels):")
        models.append(bench_model(size, effort, peak["gflops"], print))
    again = sgemm_peak(args.quick)
    if again["gflops"] > peak["gflops"]:  # the start was disturbed: rescale the % columns
        for model in models:
            for row in model["results"]:
                for batch in ("batch1", "batch64"):
                    row["inference"][batch]["pct_of_peak"] *= peak["gflops"] / again["gflops"]
        peak = again
    info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {"quick": args.quick, "machine": info, "peak": peak, "models": models}
    report["elapsed_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scoring_speed.json").write_text(json.dumps(report, indent=1) + "\n")
    table = markdown(report)
    (args.out / "scoring_speed.md").write_text(table)
    print()
    print(table)
    print(f"wrote {args.out / 'scoring_speed.json'} and .md in {report['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
