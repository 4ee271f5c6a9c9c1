"""Scoring speed per backend and precision vs a PyTorch eager baseline.

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

For each, on one thread, per backend × precision (and kernel set, for LiteRT):

- **inference**: the bare runtime call on the pathway (``session.run`` / the TFLite signature
  runner; ``model.pathway`` for torch);
- **step**: the whole scoring step on feature vectors, as :func:`agent.core.scoring.open_scorer`
  opens it (``Scorer.open``: fused into the ONNX graph where the runtime can, else the numpy
  path with float32 NAP where the bundle allows); rows marked "numpy reference" run the
  float64 numpy path instead. For torch: the eager pathway and NAP as torch ops (float64, as
  in the research code);

at batch 1 (latency) and batch 64 (throughput). Every timed operation of a model runs
interleaved with the others, round by round, and is timed per call in CPU time of the
calling thread (``time.thread_time_ns``): on a shared box a neighbour then slows no row more
than another, and ratios within one run compare like with like. Wall-clock p99 is reported
beside it. FLOPs per window count the GEMMs — pathway (2·in·out per layer per pass: encoder
twice, decoder once) plus NAP (2·M·k) — and the FLOP bound of a row is the windows/s this
machine's one-core GEMM peaks (numpy sgemm, and dgemm for float64 NAP) would allow.

The default model also gets the fusion options measured side by side (numpy path, a second
small step graph after the pathway, the step appended to the pathway graph with and without
IOBinding) and a breakdown of the numpy step into its parts.

Results: ``<out>/scoring_speed.json``, ``<out>/scoring_speed.md`` and the batch-1 latency
histogram ``<out>/plots/scoring_latency.png``. ``--quick`` is the CI smoke run (fewer
repetitions, briefer training, same code paths). Nothing here asserts a speed: a shared box is
too noisy for that, so the numbers are reported with the load average.
"""

from __future__ import annotations

import os

# One core, set before numpy/torch load their thread pools: the agent runs single-threaded.
# (Plain os.environ statements: ruff allows them among the imports.)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    RESULTS,
    ROOT,
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
    rounds: int  # timing rounds; every operation of a model runs once per round, interleaved
    calls_1: int  # batch-1 calls per operation per round
    calls_64: int  # batch-64 calls per operation per round
    warmup: int
    sim_calib_s: float  # simulated seconds of program-1 cycles for the default's LiteRT rebuild


FULL = Effort(train_samples=60_000, calib_samples=60_000, epochs=10, rounds=10, calls_1=150,
              calls_64=20, warmup=50, sim_calib_s=900.0)  # fmt: skip
QUICK = Effort(train_samples=12_000, calib_samples=12_000, epochs=1, rounds=3, calls_1=50,
               calls_64=10, warmup=10, sim_calib_s=360.0)  # fmt: skip


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


def gemm_peak(quick: bool, dtype: Any = np.float32) -> dict[str, Any]:
    """Best GEMM rate of one core (numpy BLAS, one thread) in ``dtype``, GFLOP/s.

    Best of many short runs, so a neighbour process stealing the core for a while lowers
    the estimate less; :func:`main` measures again after the set-up and keeps the higher one.
    """
    try:
        from threadpoolctl import threadpool_limits

        limiter: Any = threadpool_limits(limits=1)
    except ImportError:  # the env vars above already asked for one thread
        limiter = None
    n = 1024
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(5 if quick else 30):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    if limiter is not None:
        limiter.unregister()
    return {"n": n, "dtype": np.dtype(dtype).name, "seconds": best, "gflops": 2 * n**3 / best / 1e9}


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
    # Initializer names follow the exported module: "encoder.0.weight" from older exports,
    # "model.encoder.0.0.weight" (the wrapped autoencoder's own names) from newer ones.
    weights = {
        i.name.removeprefix("model."): numpy_helper.to_array(i).copy() for i in graph.initializer
    }
    model = MlpAutoencoder(list(bundle.manifest.layer_sizes))
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear):
                key = name
                if f"{name}.weight" not in weights and name.endswith(".0"):
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


def flop_bound(pathway_flops: int, nap_flops: int, peaks: dict[str, float], nap_float64: bool):
    """Windows/s if the pathway ran at the float32 GEMM peak and NAP at its own dtype's."""
    nap_peak = peaks["float64"] if nap_float64 else peaks["float32"]
    return 1.0 / (pathway_flops / (peaks["float32"] * 1e9) + nap_flops / (nap_peak * 1e9))


# --- timing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One timed operation: ``fn(i)``, called ``calls`` times in every round."""

    key: str
    fn: Callable[[int], Any]
    calls: int


def run_interleaved(ops: Sequence[Op], rounds: int, warmup: int) -> dict[str, dict[str, Any]]:
    """Per-call CPU and wall seconds of every op, all ops taking turns round by round."""
    for op in ops:
        for i in range(warmup):
            op.fn(i)
    cpu: dict[str, list[int]] = {op.key: [] for op in ops}
    wall: dict[str, list[int]] = {op.key: [] for op in ops}
    cpu_clock, wall_clock = time.thread_time_ns, time.perf_counter_ns
    for _ in range(rounds):
        for op in ops:
            fn, c, w = op.fn, cpu[op.key], wall[op.key]
            for i in range(op.calls):
                w0 = wall_clock()
                c0 = cpu_clock()
                fn(i)
                c1 = cpu_clock()
                w1 = wall_clock()
                c.append(c1 - c0)
                w.append(w1 - w0)
    return {k: {"cpu": np.array(cpu[k]) / 1e9, "wall": np.array(wall[k]) / 1e9} for k in cpu}


def _batch1(t: dict[str, np.ndarray]) -> dict[str, float]:
    return {
        "p50_us": float(np.median(t["cpu"]) * 1e6),
        "p99_us": float(np.percentile(t["wall"], 99) * 1e6),
        "wall_p50_us": float(np.median(t["wall"]) * 1e6),
    }


def _batch64(t: dict[str, np.ndarray], flops: int) -> dict[str, float]:
    per_batch = float(np.median(t["cpu"]))
    return {
        "batch_p50_us": per_batch * 1e6,
        "windows_per_s": BATCH / per_batch,
        "us_per_window": per_batch / BATCH * 1e6,
        "gflops": flops * BATCH / per_batch / 1e9,
    }


def _ops(prefix: str, fns: dict[str, Callable[[np.ndarray], Any]], x: np.ndarray, effort: Effort):
    """b1 (rotating over the 64 windows) and b64 ops for each named function of features."""
    rows_1 = [x[i : i + 1] for i in range(BATCH)]
    ops = []
    for name, fn in fns.items():
        ops.append(Op(f"{prefix}|{name}|1", lambda i, f=fn: f(rows_1[i % BATCH]), effort.calls_1))
        ops.append(Op(f"{prefix}|{name}|64", lambda i, f=fn: f(x), effort.calls_64))
    return ops


# --- implementations ------------------------------------------------------------------------


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

    def infer(self, x: np.ndarray) -> tuple:
        with self.torch.no_grad():
            return self.model.pathway(self.torch.from_numpy(x))

    def score(self, x: np.ndarray) -> np.ndarray:
        """Pathway and NAP on feature vectors, float64 NAP as the research code has it."""
        torch = self.torch
        features = torch.from_numpy(x)
        with torch.no_grad():
            out = self.model.pathway(features)
            n = len(out) // 2
            hidden, hidden_hat = (features, *out[:n]), out[n:]
            d = torch.cat([hidden_hat[i] - hidden[i] for i in self.layers], dim=1)
            z = (d.double() - self.mu) @ self.w
            return (z * z).sum(dim=1).numpy()


@dataclass(frozen=True)
class Impl:
    """One row: the bare runtime call on the pathway and the whole step, on features."""

    name: str
    path: str
    infer: Callable[[np.ndarray], Any]
    score: Callable[[np.ndarray], Any]
    nap_k: int
    nap_float64: bool


def _bare(backend: Any) -> Callable[[np.ndarray], Any]:
    """The runtime's own call on the pathway, without the Backend wrapper."""
    if backend.name == "onnxruntime":
        session, names, feed = backend._session, backend._outputs, backend._input
        return lambda x: session.run(names, {feed: x})
    runner, feed = backend._runner, backend._input
    return lambda x: runner(**{feed: x})


def _scorer_impl(name: str, scorer: Any, path_note: str = "") -> Impl:
    return Impl(
        name,
        scorer.path + path_note,
        _bare(scorer.backend),
        scorer.score,
        scorer._nap.k,
        scorer._nap.projection.dtype == np.float64,
    )


LITERT_KERNELS = (
    ("fp32", "xnnpack"),
    ("fp32", "builtin"),
    ("int8", "builtin"),
    ("int8", "xnnpack"),
)


def implementations(setup: Setup) -> list[Impl]:
    """PyTorch eager first (the baseline), then every backend × precision as the agent opens
    it, the numpy reference path on onnxruntime, and LiteRT on both kernel sets.

    The agent runs TFLite fp32 on XNNPACK and int8 on the built-in kernels (see
    agent/core/backends/litert_backend.py); the other two LiteRT rows are for comparison, and
    "litert int8 xnnpack" does not reproduce the bundle's int8 canary, so it is not checked.
    """
    from agent.core.backends import create_backend
    from agent.core.backends.litert_backend import LiteRtBackend
    from agent.core.scoring import Scorer

    base = TorchBaseline(setup.trained, setup.onnx_bundle)
    nap = setup.onnx_bundle.artifacts["onnx-fp32"].nap
    impls = [Impl("pytorch-eager fp32", "eager, float64 NAP", base.infer, base.score, nap.k, True)]
    bundle = setup.onnx_bundle
    for precision in ("fp32", "int8"):
        loaded = bundle.artifacts[f"onnx-{precision}"]
        backend = create_backend(loaded, bundle, "onnxruntime", threads=1)
        opened = Scorer.open(bundle, loaded, backend)
        opened.check_canary()
        impls.append(_scorer_impl(f"onnxruntime {precision}", opened))
        reference = Scorer(bundle, loaded, backend)
        impls.append(_scorer_impl(f"onnxruntime {precision} numpy reference", reference))
    bundle = setup.tflite_bundle
    feature_dim = bundle.manifest.input.feature_dim
    for precision, kernels in LITERT_KERNELS:
        loaded = bundle.artifacts[f"tflite-{precision}"]
        backend = LiteRtBackend(loaded.spec, loaded.model, feature_dim, 1, kernels=kernels)
        default = LiteRtBackend.default_kernels(precision) == kernels
        scorer = Scorer.open(bundle, loaded, backend)
        if default:
            scorer.check_canary()
        name = f"litert {precision}" + ("" if default else f" {kernels}")
        impls.append(_scorer_impl(name, scorer, f" ({kernels})"))
    return impls


def _row(impl: Impl, t: dict[str, Any], model: dict[str, Any], peaks: dict[str, float]) -> dict:
    flops = model["gemm_flops_per_window"]
    nap_flops = 2 * model["nap_dim"] * impl.nap_k
    key = f"main|{impl.name}"
    row: dict[str, Any] = {
        "implementation": impl.name,
        "path": impl.path,
        "nap_k": impl.nap_k,
        "nap_dtype": "float64" if impl.nap_float64 else "float32",
        "inference": {
            "batch1": _batch1(t[f"{key}|inference|1"]),
            "batch64": _batch64(t[f"{key}|inference|64"], flops),
        },
        "scoring": {
            "batch1": _batch1(t[f"{key}|scoring|1"]),
            "batch64": _batch64(t[f"{key}|scoring|64"], flops + nap_flops),
        },
    }
    inference, scoring = row["inference"], row["scoring"]
    inference["batch64"]["pct_of_peak"] = 100 * inference["batch64"]["gflops"] / peaks["float32"]
    b1_gflops = flops / (inference["batch1"]["p50_us"] * 1e-6) / 1e9
    inference["batch1"]["gflops"] = b1_gflops
    inference["batch1"]["pct_of_peak"] = 100 * b1_gflops / peaks["float32"]
    bound = flop_bound(flops, nap_flops, peaks, impl.nap_float64)
    row["flop_bound_windows_per_s"] = bound
    scoring["batch64"]["pct_of_flop_bound"] = 100 * scoring["batch64"]["windows_per_s"] / bound
    row["step_over_inference_b1"] = scoring["batch1"]["p50_us"] / inference["batch1"]["p50_us"]
    return row


def _with_speedups(results: list[dict[str, Any]]) -> None:
    baseline = results[0]
    for row in results:
        for step in ("inference", "scoring"):
            row[step]["speedup_b1_vs_torch"] = (
                baseline[step]["batch1"]["p50_us"] / row[step]["batch1"]["p50_us"]
            )
            row[step]["speedup_b64_vs_torch"] = (
                row[step]["batch64"]["windows_per_s"] / baseline[step]["batch64"]["windows_per_s"]
            )


# --- fusion options and breakdown (default model) -------------------------------------------


def _step_graph(loaded: Any, step: Any) -> Any:
    """The step alone as a second ONNX graph taking the pathway outputs as inputs."""
    import onnx
    from onnx import TensorProto, helper

    from agent.core.backends.onnx_step import append_step
    from agent.core.backends.onnxruntime_backend import _session

    io = loaded.spec.io
    pathway = onnx.load_from_string(loaded.model).graph
    inputs = [helper.make_tensor_value_info(io.input, TensorProto.FLOAT, ["batch", None])]
    inputs += [
        helper.make_tensor_value_info(o.name, TensorProto.FLOAT, ["batch", None])
        for o in pathway.output
    ]
    graph = helper.make_graph([], "step", inputs, [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return _session(append_step(model.SerializeToString(), io, step), 1, "step graph")


def fusion_options(setup: Setup, x: np.ndarray, effort: Effort) -> list[dict[str, Any]]:
    """Where the step runs, measured side by side (CPU µs per call, b1 and b64)."""
    from agent.core.backends import create_backend
    from agent.core.backends.onnx_step import OUTPUT
    from agent.core.scoring import Scorer

    bundle = setup.onnx_bundle
    fns: dict[str, Callable[[np.ndarray], Any]] = {}
    for precision in ("fp32", "int8"):
        loaded = bundle.artifacts[f"onnx-{precision}"]
        backend = create_backend(loaded, bundle, "onnxruntime", threads=1)
        opened = Scorer.open(bundle, loaded, backend)
        if opened.path != "fused":
            raise RuntimeError(f"onnx-{precision} did not fuse ({opened.path})")
        second = _step_graph(loaded, opened.step_matrices())
        names, feed, session = backend._outputs, backend._input, backend._session
        fused_session = opened._fused._session

        def two_graphs(v: np.ndarray, s=session, n=names, f=feed, g=second) -> Any:
            return g.run([OUTPUT], {f: v, **dict(zip(n, s.run(n, {f: v}), strict=True))})

        options = {
            "bare pathway session.run": _bare(backend),
            "numpy path, float64 NAP (reference)": Scorer(bundle, loaded, backend).score,
            "numpy path, float32 NAP": Scorer(bundle, loaded, backend, nap=opened._nap).score,
            "(b) pathway run + second step graph": two_graphs,
            "(a/b') one graph, session.run": lambda v, s=fused_session, f=feed: s.run(
                [OUTPUT], {f: v}
            ),
            "(a/b') one graph, IOBinding (FusedStep.run)": opened._fused.run,
            "Scorer.score as shipped (IOBinding + Scores)": opened.score,
        }
        fns.update({f"{precision}|{k}": fn for k, fn in options.items()})
    t = run_interleaved(_ops("fusion", fns, x, effort), effort.rounds, effort.warmup)
    rows = []
    for key in fns:
        precision, option = key.split("|", 1)
        rows.append(
            {
                "precision": precision,
                "option": option,
                "b1_us": float(np.median(t[f"fusion|{key}|1"]["cpu"]) * 1e6),
                "b64_us": float(np.median(t[f"fusion|{key}|64"]["cpu"]) * 1e6),
            }
        )
    return rows


def _step_parts(scorer: Any, segs: list[Any], nap32: Any) -> dict[str, Callable[[int], Any]]:
    """One closure per part of the numpy step on ``segs``, on precomputed inputs."""
    from agent.core.features import segment_features
    from agent.core.rapp import nap_score, pathway_differences, recon_score, sap_score

    kinds = scorer.bundle.manifest.input.features
    nap, layers = scorer._nap, scorer._layers
    x = segment_features(np.stack([s.samples for s in segs]), kinds)
    p = scorer.backend.run(x)
    d32 = pathway_differences(p.hidden, p.hidden_hat, layers)
    d64 = d32.astype(np.float64)
    return {
        "features": lambda i: segment_features(np.stack([q.samples for q in segs]), kinds),
        "inference": lambda i: scorer.backend.run(x),
        "differences": lambda i: pathway_differences(p.hidden, p.hidden_hat, layers),
        "nap float64": lambda i: nap_score(d64, nap),
        "nap float32": lambda i: nap_score(d32, nap32),
        "sap": lambda i: sap_score(d64),
        "recon": lambda i: recon_score(p.x, p.x_hat),
        "attribution": lambda i: scorer._contributions(p.x, p.x_hat),
        "numpy step": lambda i: scorer.score(x),
    }


def breakdown(setup: Setup, segments: list[Any], effort: Effort) -> list[dict[str, Any]]:
    """Median CPU µs of each part of the numpy reference step (onnxruntime), b1 and b64."""
    from agent.core.backends import create_backend
    from agent.core.rapp import float32_nap
    from agent.core.scoring import Scorer

    bundle = setup.onnx_bundle
    ops, meta = [], []
    for precision in ("fp32", "int8"):
        loaded = bundle.artifacts[f"onnx-{precision}"]
        scorer = Scorer(bundle, loaded, create_backend(loaded, bundle, "onnxruntime", threads=1))
        for n in (1, BATCH):
            parts = _step_parts(scorer, segments[:n], float32_nap(loaded.nap))
            calls = effort.calls_1 if n == 1 else effort.calls_64
            ops += [Op(f"{precision}|{n}|{name}", fn, calls) for name, fn in parts.items()]
            meta.append((precision, n, list(parts), loaded.nap.k))
    t = run_interleaved(ops, effort.rounds, effort.warmup)
    return [
        {
            "precision": precision,
            "batch": n,
            "nap_k": k,
            "us": {p: float(np.median(t[f"{precision}|{n}|{p}"]["cpu"]) * 1e6) for p in parts},
        }
        for precision, n, parts, k in meta
    ]


KERNELS = ("builtin", "xnnpack")


def litert_kernels(setup: Setup, x: np.ndarray, effort: Effort) -> list[dict[str, Any]]:
    """Bare LiteRT inference on the built-in kernels and on XNNPACK: fp32, the default int8
    (16-bit activations) and int8 with 8-bit activations (``--int8-activations 8``)."""
    from agent.core.backends.litert_backend import LiteRtBackend
    from exporter.tflite_export import export_pathway_tflite

    bundle = setup.tflite_bundle
    spec = bundle.artifacts["tflite-int8"].spec
    models = {
        "fp32": bundle.artifacts["tflite-fp32"].model,
        "int8, 16-bit activations (default)": bundle.artifacts["tflite-int8"].model,
        "int8, 8-bit activations": export_pathway_tflite(
            setup.trained.model, x.shape[1], x, activations=8
        ),
    }
    fns, differences = {}, {}
    for name, model in models.items():
        backends = {k: LiteRtBackend(spec, model, x.shape[1], 1, kernels=k) for k in KERNELS}
        for kernels, backend in backends.items():
            fns[f"{name}|{kernels}"] = _bare(backend)
        outputs = [b.run(x) for b in backends.values()]
        differences[name] = max(
            float(np.abs(u - v).max())
            for u, v in zip(outputs[0].hidden_hat, outputs[1].hidden_hat, strict=True)
        )
    t = run_interleaved(_ops("kernels", fns, x, effort), effort.rounds, effort.warmup)

    def us(name: str, kernels: str, n: int) -> float:
        return float(np.median(t[f"kernels|{name}|{kernels}|{n}"]["cpu"]) * 1e6)

    return [
        {
            "model": name,
            **{f"{k}_b{n}_us": us(name, k, n) for k in KERNELS for n in (1, BATCH)},
            "max_abs_output_difference": differences[name],
        }
        for name in models
    ]


# --- one model ------------------------------------------------------------------------------


def bench_model(
    setup: Setup, effort: Effort, peaks: dict[str, float], log: Callable[[str], None]
) -> dict:
    """Every implementation of ``setup`` at batch 1 and 64, interleaved."""
    import torch

    from agent.core.features import Segment, segment_features

    torch.set_num_threads(1)
    bundle = setup.onnx_bundle
    sizes = list(bundle.manifest.layer_sizes)
    samples = np.ascontiguousarray(setup.segments[:BATCH])
    segments = [Segment(samples=s, start=i, stop=i + len(s)) for i, s in enumerate(samples)]
    x = segment_features(samples, bundle.manifest.input.features)
    nap = {p: bundle.artifacts[f"onnx-{p}"].nap for p in ("fp32", "int8")}
    model: dict[str, Any] = {
        "model": setup.name,
        "description": setup.description,
        "layer_sizes": sizes,
        "feature_dim": sizes[0],
        "gemm_flops_per_window": gemm_flops(sizes),
        "nap_dim": nap["fp32"].dim,
        "nap_k": {p: v.k for p, v in nap.items()},
        "nap_flops_per_window": {p: 2 * v.dim * v.k for p, v in nap.items()},
    }
    impls = implementations(setup)
    fns = {}
    for impl in impls:
        fns[f"{impl.name}|inference"] = impl.infer
        fns[f"{impl.name}|scoring"] = impl.score
    t = run_interleaved(_ops("main", fns, x, effort), effort.rounds, effort.warmup)
    results = [_row(impl, t, model, peaks) for impl in impls]
    _with_speedups(results)
    for row in results:
        log(
            f"  {row['implementation']:<36} infer b1 {row['inference']['batch1']['p50_us']:7.1f} "
            f"µs  step b1 {row['scoring']['batch1']['p50_us']:7.1f} µs  "
            f"(×{row['step_over_inference_b1']:.2f})  step b64 "
            f"{row['scoring']['batch64']['windows_per_s']:9.0f} win/s"
        )
    model["flop_bound_windows_per_s"] = {
        dtype: flop_bound(
            model["gemm_flops_per_window"],
            model["nap_flops_per_window"]["fp32"],
            peaks,
            dtype == "float64",
        )
        for dtype in ("float32", "float64")
    }
    model["results"] = results
    model["score_b1_latency_us"] = {
        impl.name: (t[f"main|{impl.name}|scoring|1"]["wall"] * 1e6).round(2).tolist()
        for impl in impls
    }
    default = setup.name == "default"
    model["fusion_options"] = fusion_options(setup, x, effort) if default else []
    model["breakdown"] = breakdown(setup, segments, effort) if default else []
    model["litert_kernels"] = litert_kernels(setup, x, effort) if default else []
    return model


# --- report ---------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    peaks = report["peaks"]
    lines = [
        "# Scoring speed",
        "",
        *machine_lines(report["machine"]),
        f"- GEMM peak, one core: float32 {peaks['float32']:.1f} GFLOP/s, float64 "
        f"{peaks['float64']:.1f} GFLOP/s (numpy sgemm/dgemm n={report['peak']['n']}); one "
        f"thread everywhere; {'quick smoke run' if report['quick'] else 'full run'}",
        "",
        "Inference = the bare runtime call on the pathway (`session.run`, TFLite signature "
        "runner; torch: `model.pathway`). Step = the whole scoring step on feature vectors "
        "(`Scorer.score` as `open_scorer` opens it; the path column says fused or numpy, and "
        "NAP's precision); features from segments are not included (see the breakdown). "
        "b1 = batch 1, CPU µs per call (median; p99 is wall clock), b64 = batch 64 windows/s "
        "(CPU time). FLOP bound = windows/s at the GEMM peak for the pathway plus NAP at its "
        "precision (int8 rows count their multiply-adds the same way). × torch = speed-up "
        "over PyTorch eager (pathway + float64 NAP). All rows of a model ran interleaved.",
    ]
    for model in report["models"]:
        bound = model["flop_bound_windows_per_s"]
        lines += [
            "",
            f"## {model['model']}: layers {model['layer_sizes']}",
            "",
            f"{model['description'][0].upper()}{model['description'][1:]}.",
            "",
            f"FLOPs per window: pathway {model['gemm_flops_per_window']:,}, NAP "
            f"{model['nap_flops_per_window']['fp32']:,} (M={model['nap_dim']} × "
            f"k={model['nap_k']['fp32']} fp32 / {model['nap_k']['int8']} int8). FLOP bound "
            f"{bound['float32']:,.0f} windows/s with float32 NAP, {bound['float64']:,.0f} "
            "with float64 NAP.",
            "",
            *scoring_table(model),
        ]
        if model["fusion_options"]:
            lines += ["", "Where the step runs (onnxruntime, CPU µs per call):", ""]
            lines += fusion_table(model["fusion_options"])
        if model["litert_kernels"]:
            lines += ["", "LiteRT kernels, bare inference (CPU µs per call):", ""]
            lines += kernels_table(model["litert_kernels"])
        if model["breakdown"]:
            lines += ["", "The numpy reference step in parts (onnxruntime, CPU µs per call):", ""]
            lines += breakdown_table(model["breakdown"])
    lines += ["", "![b1 latency](plots/scoring_latency.png)"]
    return "\n".join(lines) + "\n"


def scoring_table(model: dict[str, Any]) -> list[str]:
    lines = [
        "| backend precision | step path | inference b1 | step b1 | step / inference "
        "| step b1 p99 wall | step b64 win/s | % FLOP bound | × torch b1 | × torch b64 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in model["results"]:
        inf, sc = row["inference"], row["scoring"]
        lines.append(
            f"| {row['implementation']} | {row['path']} | {inf['batch1']['p50_us']:.1f} | "
            f"{sc['batch1']['p50_us']:.1f} | {row['step_over_inference_b1']:.2f} | "
            f"{sc['batch1']['p99_us']:.1f} | {sc['batch64']['windows_per_s']:,.0f} | "
            f"{sc['batch64']['pct_of_flop_bound']:.0f} | {sc['speedup_b1_vs_torch']:.1f} | "
            f"{sc['speedup_b64_vs_torch']:.1f} |"
        )
    return lines


def fusion_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| precision | option | b1 µs | b64 µs |", "|---|---|---:|---:|"]
    lines += [
        f"| {r['precision']} | {r['option']} | {r['b1_us']:.1f} | {r['b64_us']:.1f} |" for r in rows
    ]
    return lines


def kernels_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| artifact | built-in b1 | XNNPACK b1 | built-in / XNNPACK b1 | built-in b64 "
        "| XNNPACK b64 | built-in / XNNPACK b64 | max abs output difference |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b1, x1 = r["builtin_b1_us"], r["xnnpack_b1_us"]
        b64, x64 = r["builtin_b64_us"], r["xnnpack_b64_us"]
        lines.append(
            f"| {r['model']} | {b1:.1f} | {x1:.1f} | {b1 / x1:.2f} | {b64:.1f} | {x64:.1f} | "
            f"{b64 / x64:.2f} | {r['max_abs_output_difference']:.2g} |"
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
        ax.set_xlabel("whole scoring step, batch 1, wall clock [µs] (≤ p99.5)")
        ax.set_ylabel("calls")
        ax.set_title(f"{model['model']} model {model['layer_sizes']}")
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _peaks(quick: bool) -> dict[str, dict[str, Any]]:
    return {dtype: gemm_peak(quick, getattr(np, dtype)) for dtype in ("float32", "float64")}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: few repetitions")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    effort = QUICK if args.quick else FULL
    started = time.perf_counter()
    info = machine_info()
    start_peaks = _peaks(args.quick)
    peaks = {k: v["gflops"] for k, v in start_peaks.items()}
    print(
        f"{info['cpu']}, {info['cores']} cores; one-core GEMM peak float32 "
        f"{peaks['float32']:.1f}, float64 {peaks['float64']:.1f} GFLOP/s"
    )
    setups = (
        ("default", lambda: setup_default(effort, print)),
        ("large", lambda: setup_large(effort)),
    )
    built = []
    for name, make in setups:
        t0 = time.perf_counter()
        built.append(make())
        print(f"model {name}: set up in {time.perf_counter() - t0:.1f} s")
    # The peak again, then the models: a disturbed start must not skew the bounds.
    end_peaks = _peaks(args.quick)
    peaks = {k: max(peaks[k], v["gflops"]) for k, v in end_peaks.items()}
    models = [bench_model(setup, effort, peaks, print) for setup in built]
    info["load_average_at_end"] = load_average()
    best = max(start_peaks["float32"], end_peaks["float32"], key=lambda p: p["gflops"])
    report = {"quick": args.quick, "machine": info, "peak": best, "peaks": peaks}
    report["models"] = models
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
