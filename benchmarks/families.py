"""The three autoencoder families (mlp, conv1d, lstm) side by side, with default settings.

Run from the repository root::

    .venv/bin/python -m benchmarks.families [--quick] [--out benchmarks/results] [--cache DIR]

**Bundles.** One per family, built with the shipped default recipe
(``scripts/build_default_bundle.sh``: simulator program 1, nuisances on, training seed 1
0–3600 s, calibration seed 2 0–2400 s; robot cycles resampled to 64 samples, raw features,
2 layers, bottleneck 12; its training and build flags), changing only ``--model``. The flags
come from the shipped bundle's manifest and the recipe (:func:`benchmarks.sim_healthy.train_args`),
the bundles are kept in a cache directory keyed by the recipe, the family, the exact
``rapp-export`` arguments and a hash of the exporter, simulator and agent-core code, so a
cached bundle from other code or flags is never reused.

**Quality, on the very same windows.** The simulated runs are made once and every family's
bundle scores them through :class:`agent.pipeline.robot.RobotPipeline` (the daemon's
segmenter, scorer and alarm tracker, each bundle's alarm defaults); the report checks that
every family scored the same windows. Per fault kind (:data:`benchmarks.sim_report.FAULT_CASES`
on sim_report's runs): window AUROC of NAP, of the alarm score and of the combined score
(normal windows of the normal runs vs faulted windows after onset). False alarms: long healthy
runs of program 1 from a cold start (warm-up drift, payload and speed-override nuisances; the
seeds of :mod:`benchmarks.sim_healthy`), every raise is false; the 95 % upper bound is
Poisson's.

**Scoring cost.** The scorer's whole step (:meth:`agent.core.scoring.Scorer.score` on feature
vectors, as :func:`agent.core.scoring.open_scorer` opens it with the agent's default precision,
int8, which serves fp32 where a bundle has no int8 artifact; and fp32 for every family) at
batch 1 and batch 64, all families interleaved round by round in one run and timed in CPU time
of the calling thread (:func:`benchmarks.scoring_speed.run_interleaved`): on the shared box
the ratios to mlp compare like with like, the µs depend on the load.

Output: ``<out>/families.json`` and ``<out>/families.md`` (one table: a row per family).
A full run takes ~11 min with a cold cache (the three builds: ~3–4 min each on the shared
2 cores) and ~2 min with a warm one. ``--quick`` is the CI smoke run (300 s of training data,
5 epochs, the sim_report quick runs, one 10 min healthy run; ~1.5–2.5 min with a cold cache,
by the load): its numbers check the harness, not the families.
"""

from __future__ import annotations

import os

# One core, before numpy and onnxruntime make their thread pools: the agent scores on one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import hashlib
import importlib.util
import itertools
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.bundle import Bundle, load_bundle
from agent.core.errors import AgentRuntimeError
from agent.core.features import segment_features
from agent.core.scoring import Scorer, open_scorer
from agent.pipeline.alarms import AlarmSettings
from agent.pipeline.robot import RobotPipeline
from benchmarks import sim_report
from benchmarks.common import (
    RESULTS,
    BenchmarkError,
    machine_lines,
    md_table,
    report_main,
)
from benchmarks.scoring_speed import BATCH, Op, run_interleaved, simulated_cycles
from benchmarks.sim_healthy import (
    CALIBRATION_SEED,
    DEFAULT_CACHE,
    SHIPPED_BUNDLE,
    Recipe,
    Tally,
    code_fingerprint,
    poisson_upper_rate,
    program_blocks,
    run_exporter,
    train_args,
    write_pieces,
)
from benchmarks.sim_report import (
    FAULT_CASES,
    ROBOT,
    TRAIN_SEED,
    WARM_START_S,
    RunScores,
    Timing,
    column_index,
    fault_metrics,
    fault_specs,
    replay,
    score_run,
    sim_config,
    simulate_span,
)

PROG = "benchmarks.families"
FAMILIES = ("mlp", "conv1d", "lstm")
PROGRAM = 1  # the recipe's program
RATE_HZ = 1000
SEED = 0  # sim_report's base seed: its normal and fault runs
FLAG_NOTE = (
    "every flag of the recipe applies to all three families: conv1d and lstm need --features "
    "raw, which the recipe uses; --layers 2 is two pathway states for each (mlp: one hidden "
    "layer of 198 + the code; conv1d: one Conv1d block of 16 channels, time-pooled, + the "
    "code; lstm: one LSTM of 32 units, flattened over the 64 samples, + the code), "
    "--bottleneck 12 is the code's width for each. The build's int8 step does not apply to "
    "lstm: onnxruntime's QDQ quantization cannot quantize LSTM ops, so its bundle is fp32 only "
    "(the exporter notes it) and the agent's default precision int8 serves its fp32 artifact."
)


@dataclass(frozen=True)
class Effort:
    """Timing rounds of the scoring cost; every step runs ``calls_*`` times in each round."""

    rounds: int
    calls_1: int
    calls_64: int
    warmup: int


@dataclass(frozen=True)
class Plan:
    recipe: Recipe
    timing: Timing  # sim_report's normal and fault runs
    healthy_seeds: tuple[int, ...]
    healthy_s: float  # seconds per healthy seed
    effort: Effort
    timing_cycles_s: float  # simulated seconds whose cycles are the timed windows


FULL = Plan(
    recipe=Recipe(),
    timing=sim_report.FULL,
    healthy_seeds=(11, 12, 13, 14, 15),
    healthy_s=2 * 3600.0,
    effort=Effort(rounds=10, calls_1=150, calls_64=20, warmup=50),
    timing_cycles_s=360.0,
)
QUICK = Plan(
    recipe=Recipe(train_s=300.0, calibration_s=200.0, piece_s=300.0, epochs=5, patience=5),
    timing=sim_report.QUICK,
    healthy_seeds=(11,),
    healthy_s=600.0,
    effort=Effort(rounds=3, calls_1=40, calls_64=5, warmup=10),
    timing_cycles_s=360.0,
)


class FamiliesError(AgentRuntimeError, BenchmarkError):
    """A family's bundle the report cannot compare (other windows, no scorer)."""


# --------------------------------------------------------------------------- the bundles


def recipe_args(shipped: Bundle, family: str, recipe: Recipe) -> dict[str, list[str]]:
    """`rapp-export train` and `build` flags: the recipe's, with ``--model family``."""
    m = shipped.manifest
    build = [
        "--bundle-id",
        f"default-{family}",
        "--bundle-version",
        m.bundle_version,
        "--robot",
        m.robot,
        "--program",
        str(PROGRAM),
        "--quantile",
        f"{m.alarm.threshold_quantile:g}",
        "--seed",
        str(recipe.seed),
        "--quiet",
    ]
    return {"train": [*train_args(shipped, recipe), "--model", family], "build": build}


def cache_key(family: str, recipe: Recipe, args: dict[str, list[str]], code: str) -> str:
    made_of = {"code": code, "family": family, "recipe": asdict(recipe), "args": args}
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]


def build_family_bundle(recipe: Recipe, args: dict[str, list[str]], target: Path) -> None:
    """Simulate the recipe's data, train and build into ``target`` (written atomically)."""
    with tempfile.TemporaryDirectory(prefix="rapp-families-") as tmp:
        work = Path(tmp)
        (work / "train").mkdir()
        (work / "calib").mkdir()
        train = write_pieces(TRAIN_SEED, PROGRAM, recipe.train_s, recipe.piece_s, work / "train")
        calib = write_pieces(
            CALIBRATION_SEED, PROGRAM, recipe.calibration_s, recipe.piece_s, work / "calib"
        )
        run_exporter("train", "--data", *train, *args["train"], "--out", str(work / "m"))
        out = work / "family.rapp"
        run_exporter(
            "build", "--model", str(work / "m"), "--calibration", *calib, "--out", str(out),
            *args["build"],
        )  # fmt: skip
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_target = target.with_suffix(".tmp")
        tmp_target.write_bytes(out.read_bytes())
        tmp_target.replace(target)


def family_bundles(shipped: Bundle, recipe: Recipe, cache: Path) -> dict[str, dict[str, Any]]:
    """family → {path, bundle, size_bytes, cached, build_s, args}, built once and cached."""
    code = code_fingerprint()
    out: dict[str, dict[str, Any]] = {}
    for family in FAMILIES:
        args = recipe_args(shipped, family, recipe)
        path = cache / f"{family}-{cache_key(family, recipe, args, code)}.rapp"
        started, cached = time.monotonic(), path.is_file()
        if not cached:
            print(f"families: building the {family} bundle into {path}", flush=True)
            build_family_bundle(recipe, args, path)
        data = path.read_bytes()
        bundle = load_bundle(data)
        if bundle.manifest.input != shipped.manifest.input:
            raise FamiliesError(f"{path}: its input spec differs from the recipe's")
        out[family] = {
            "path": str(path),
            "bundle": bundle,
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "cached": cached,
            "build_s": None if cached else round(time.monotonic() - started, 1),
            "args": args,
        }
    return out


def artifacts_info(bundle: Bundle, scorer: Scorer) -> dict[str, Any]:
    """What the bundle carries and serves: the int8 gate's verdict, why int8 is missing where
    it is, and whether the exporter can make TFLite artifacts of this family."""
    from exporter.families_tf import UNSUPPORTED
    from exporter.onnx_export import int8_unsupported_reason

    manifest = bundle.manifest
    family = manifest.raw["model"]["family"]
    fidelity = manifest.raw.get("sanity", {}).get("fidelity", {})
    int8: dict[str, Any] = {"in_bundle": "onnx-int8" in bundle.artifacts}
    gate = fidelity.get("onnx-int8")
    if gate is not None:
        int8 |= {"gate_passed": bool(gate["passed"]), "spearman_nap": gate["spearman_nap"]}
    elif "onnx-fp32" in bundle.artifacts:
        int8["not_built"] = int8_unsupported_reason(bundle.artifacts["onnx-fp32"].model)
    return {
        "in_bundle": sorted(bundle.artifacts),
        "served": scorer.artifact.id,
        "backend": scorer.backend.name,
        "path": scorer.path,
        "int8": int8,
        "tflite": {
            "in_bundle": any(a.spec.format == "tflite" for a in bundle.artifacts.values()),
            "exporter_supports": family not in UNSUPPORTED,
            "unsupported_reason": UNSUPPORTED.get(family),
            "tensorflow_installed": importlib.util.find_spec("tensorflow") is not None,
        },
        "layer_sizes": list(manifest.layer_sizes),
        "nap_k": {aid: a.nap.k for aid, a in bundle.artifacts.items()},
        "nap_dim": bundle.artifacts["onnx-fp32"].nap.dim,
    }


# --------------------------------------------------------------------------- quality


def _same_windows(per_family: dict[str, RunScores], run: str) -> None:
    spans = {f: s.spans for f, s in per_family.items()}
    first = next(iter(spans.values()))
    if any(s != first for s in spans.values()):
        counts = {f: len(s) for f, s in spans.items()}
        raise FamiliesError(f"{run}: the families scored different windows ({counts})")


def fault_quality(
    scorers: dict[str, Scorer], timing: Timing, columns: np.ndarray
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """sim_report's runs, simulated once and scored by every family: per family and fault
    kind the AUROCs, share detected and alarm delay; and the window counts."""
    cold = sim_config(SEED + 101, PROGRAM, RATE_HZ)
    warm = sim_config(SEED + 102, PROGRAM, RATE_HZ)
    normal_runs = {
        "cold start": simulate_span(cold, 0.0, timing.normal_cold_s),
        "warm joints": simulate_span(warm, WARM_START_S, timing.normal_warm_s),
    }
    normal: dict[str, list[RunScores]] = {f: [] for f in scorers}
    windows: dict[str, int] = {}
    for name, run in normal_runs.items():
        scored = {f: score_run(s, run, columns) for f, s in scorers.items()}
        _same_windows(scored, name)
        windows[name] = len(next(iter(scored.values())).spans)
        for f, s in scored.items():
            normal[f].append(s)
    out: dict[str, dict[str, Any]] = {f: {} for f in scorers}
    for i, case in enumerate(FAULT_CASES):
        config = sim_config(SEED + 111 + i, PROGRAM, RATE_HZ, fault_specs(case, timing))
        run = simulate_span(config, 0.0, timing.fault_run_s)
        scored = {f: score_run(s, run, columns) for f, s in scorers.items()}
        _same_windows(scored, case.kind)
        for f, s in scored.items():
            m = fault_metrics(case, normal[f], s, timing.onset_s)
            alarm = scorers[f].bundle.manifest.alarm.score
            out[f][case.kind] = {
                "axis": case.axis,
                "n_faulted": m["n_faulted"],
                "n_normal": m["n_normal"],
                "auroc_nap": m["auroc_nap"],
                "auroc_combined": m["auroc_combined"],
                "auroc_alarm_score": m[f"auroc_{alarm}"],
                "detected": m["detected"],
                "alarm_delay_s": m["alarm_delay_s"],
                # fault runs start cold: an alarm raised before onset and still up has no delay
                "alarms_before_onset": m["alarms_before_onset"],
                "attribution_hit": m["attribution_hit"],
            }
        windows[case.kind] = len(next(iter(scored.values())).spans)
    raises = {f: sum(len(s.raises_s) for s in runs) for f, runs in normal.items()}
    return out, {"windows": windows, "normal_run_raises": raises}


def healthy_runs(
    scorers: dict[str, Scorer], seeds: Sequence[int], seconds: float, columns: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Healthy program-1 runs from a cold start, each simulated once and streamed through one
    pipeline per family in lockstep; every raise is a false alarm."""
    out: dict[str, dict[str, Any]] = {
        f: {"seeds": [], "hours": 0.0, "windows": 0, "above_threshold": 0, "alarms": 0}
        for f in scorers
    }
    for seed in seeds:
        started = time.monotonic()
        pipelines = {
            f: RobotPipeline(ROBOT, [s], AlarmSettings.from_bundle(s.bundle.manifest.alarm))
            for f, s in scorers.items()
        }
        tallies = {f: Tally(Counter(), Counter(), {}, []) for f in scorers}
        # tee + zip: each block is simulated once and every pipeline gets it; the replays
        # advance chunk by chunk together, so tee holds about one block.
        blocks = itertools.tee(
            program_blocks(sim_config(seed, PROGRAM, RATE_HZ), 0.0, seconds), len(pipelines)
        )
        streams = [replay(p, b, columns) for p, b in zip(pipelines.values(), blocks, strict=True)]
        for results in zip(*streams, strict=True):
            for f, result in zip(pipelines, results, strict=True):
                for w in result.windows:
                    tallies[f].add_window(w)
                for e in result.events:
                    tallies[f].add_event(e)
        counts = {f: sum(t.windows.values()) for f, t in tallies.items()}
        if len(set(counts.values())) != 1:
            raise FamiliesError(f"healthy seed {seed}: the families scored {counts} windows")
        for f, t in tallies.items():
            r = out[f]
            r["seeds"].append({"seed": seed, "alarms": len(t.raises), "raises": t.raises})
            r["hours"] += seconds / 3600.0
            r["windows"] += sum(t.windows.values())
            r["above_threshold"] += sum(t.above.values())
            r["alarms"] += len(t.raises)
            r["max_score_over_threshold"] = round(
                max(r.get("max_score_over_threshold", 0.0), *t.max_ratio.values()), 3
            )
        print(
            f"families: healthy seed {seed}: {seconds / 3600:.2f} h, windows "
            f"{next(iter(counts.values()))}, alarms "
            + ", ".join(f"{f} {len(t.raises)}" for f, t in tallies.items())
            + f" ({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    for r in out.values():
        r["false_alarms_per_hour"] = r["alarms"] / r["hours"]
        r["false_alarms_per_hour_upper_95"] = poisson_upper_rate(r["alarms"], r["hours"])
    return out


# --------------------------------------------------------------------------- scoring cost


def scoring_cost(
    scorers: dict[str, dict[str, Scorer]], plan: Plan
) -> dict[str, dict[str, dict[str, float]]]:
    """family → precision → b1/b64 µs per window (median CPU time), every step interleaved."""
    ops = []
    for family, by_precision in scorers.items():
        any_scorer = next(iter(by_precision.values()))
        segments = simulated_cycles(any_scorer.bundle, plan.timing_cycles_s, seed=SEED + 101)
        if len(segments) < BATCH:
            raise FamiliesError(f"{len(segments)} timing cycles; need ≥ {BATCH}")
        x = segment_features(
            np.ascontiguousarray(segments[:BATCH]), any_scorer.bundle.manifest.input.features
        )
        rows = [x[i : i + 1] for i in range(BATCH)]
        calls = plan.effort
        for precision, s in by_precision.items():
            key = f"{family}|{precision}"
            ops.append(Op(f"{key}|1", lambda i, f=s.score, r=rows: f(r[i % BATCH]), calls.calls_1))
            ops.append(Op(f"{key}|64", lambda i, f=s.score, v=x: f(v), calls.calls_64))
    t = run_interleaved(ops, plan.effort.rounds, plan.effort.warmup)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for family, by_precision in scorers.items():
        out[family] = {}
        for precision in by_precision:
            key = f"{family}|{precision}"
            out[family][precision] = {
                "b1_us": float(np.median(t[f"{key}|1"]["cpu"]) * 1e6),
                "b1_wall_p99_us": float(np.percentile(t[f"{key}|1"]["wall"], 99) * 1e6),
                "b64_us_per_window": float(np.median(t[f"{key}|64"]["cpu"]) / BATCH * 1e6),
            }
    for family in out:
        for precision, row in out[family].items():
            base = out["mlp"][precision]
            row["b1_ratio_to_mlp"] = row["b1_us"] / base["b1_us"]
            row["b64_ratio_to_mlp"] = row["b64_us_per_window"] / base["b64_us_per_window"]
    return out


# --------------------------------------------------------------------------- the report


def run_families(plan: Plan, cache: Path, quick: bool) -> dict[str, Any]:
    started = time.monotonic()
    shipped = load_bundle(SHIPPED_BUNDLE.read_bytes())
    built = family_bundles(shipped, plan.recipe, cache)
    default = {f: open_scorer(b["bundle"], "auto", "int8") for f, b in built.items()}
    fp32 = {f: open_scorer(b["bundle"], "auto", "fp32") for f, b in built.items()}
    probe = simulate_span(sim_config(0, PROGRAM, RATE_HZ), 0.0, 0.01)
    columns = column_index(probe, shipped)
    faults, fault_windows = fault_quality(default, plan.timing, columns)
    print("families: fault runs scored", flush=True)
    healthy = healthy_runs(default, plan.healthy_seeds, plan.healthy_s, columns)
    cost = scoring_cost({f: {"default": default[f], "fp32": fp32[f]} for f in FAMILIES}, plan)
    families = {}
    for f in FAMILIES:
        per_kind = faults[f]
        families[f] = {
            "bundle": {k: v for k, v in built[f].items() if k != "bundle"},
            "alarm_score": built[f]["bundle"].manifest.alarm.score,
            "artifacts": artifacts_info(built[f]["bundle"], default[f]),
            "faults": per_kind,
            "mean_auroc": {
                name: _mean([k[f"auroc_{name}"] for k in per_kind.values()])
                for name in ("nap", "combined", "alarm_score")
            },
            "healthy": healthy[f],
            "scoring": cost[f],
        }
    return {
        "quick": quick,
        "recipe": asdict(plan.recipe),
        "flags": FLAG_NOTE,
        "plan": {
            "program": PROGRAM,
            "timing": asdict(plan.timing),
            "healthy_seeds": list(plan.healthy_seeds),
            "healthy_hours_per_seed": plan.healthy_s / 3600.0,
            "scoring_rounds": plan.effort.rounds,
            "scoring_calls": {"b1": plan.effort.calls_1, "b64": plan.effort.calls_64},
        },
        "same_windows": fault_windows,
        "families": families,
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _mean(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else round(float(np.mean(values)), 4)


def _auroc(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _artifacts_cell(a: dict[str, Any]) -> str:
    int8 = a["int8"]
    if int8.get("gate_passed"):
        q = f"int8 passed the gate (ρ {int8['spearman_nap']:.3f})"
    elif "gate_passed" in int8:
        q = f"int8 failed the gate (ρ {int8['spearman_nap']:.3f}), left out"
    else:
        q = "no int8 (LSTM ops not quantizable)" if int8.get("not_built") else "no int8"
    t = a["tflite"]
    tflite = "TFLite exportable" if t["exporter_supports"] else "no TFLite export"
    return f"{', '.join(a['in_bundle'])}; {q}; serves {a['served']}; {tflite}"


def table(report: dict[str, Any]) -> list[str]:
    """The families table (markdown lines): a row per family. For benchmarks.quality."""
    kinds = [c.kind for c in FAULT_CASES]
    head = [
        "family",
        *kinds,
        "mean",
        "mean combined",
        "false alarms/h (95 % upper)",
        "step b1 µs (× mlp)",
        "step b64 µs/window (× mlp)",
        "bundle MB",
        "artifacts",
    ]
    rows = []
    for f, r in report["families"].items():
        s, h = r["scoring"]["default"], r["healthy"]
        rows.append(
            [
                f,
                *(_auroc(r["faults"][k]["auroc_alarm_score"]) for k in kinds),
                _auroc(r["mean_auroc"]["alarm_score"]),
                _auroc(r["mean_auroc"]["combined"]),
                f"{h['false_alarms_per_hour']:.2f} ({h['false_alarms_per_hour_upper_95']:.2f})",
                f"{s['b1_us']:.0f} (×{s['b1_ratio_to_mlp']:.2f})",
                f"{s['b64_us_per_window']:.1f} (×{s['b64_ratio_to_mlp']:.2f})",
                f"{r['bundle']['size_bytes'] / 1e6:.1f}",
                _artifacts_cell(r["artifacts"]),
            ]
        )
    return md_table(head, rows, "l" + "r" * (len(head) - 2) + "l")


def markdown(report: dict[str, Any]) -> str:
    fam = report["families"]
    plan, recipe = report["plan"], report["recipe"]
    timing = plan["timing"]
    score = {r["alarm_score"] for r in fam.values()}
    hours = next(iter(fam.values()))["healthy"]["hours"]
    lines = [
        "# Model families side by side — default settings",
        "",
        *machine_lines(report["machine"]),
        f"- {'quick smoke run' if report['quick'] else 'full run'}; {report['elapsed_s']:.0f} s",
        "",
        "Each family's bundle: the shipped recipe (scripts/build_default_bundle.sh: simulator "
        f"program {plan['program']}, nuisances on, training seed 1 0–{recipe['train_s']:g} s, "
        f"calibration seed 2 0–{recipe['calibration_s']:g} s, cycles resampled to 64 samples, "
        f"raw, 2 layers, bottleneck 12, ≤ {recipe['epochs']} epochs) with only `--model` "
        f"changed. Alarm score `{'/'.join(sorted(score))}`; scored through `RobotPipeline` with "
        "each bundle's alarm defaults, the very same windows for every family.",
        "",
        *table(report),
        "",
        f"Per-kind AUROC: the alarm score, normal windows ({timing['normal_cold_s']:g} s cold "
        f"start + {timing['normal_warm_s']:g} s warm joints) vs faulted windows after onset "
        f"(one {timing['fault_run_s']:g} s run per kind, onset {timing['onset_s']:g} s; "
        "benchmarks.sim_report's cases); *mean combined*: the mean over the six kinds of the "
        "combined score (NAP + latent density). False alarms: alarms raised on "
        f"{len(plan['healthy_seeds'])} healthy program-{plan['program']} runs × "
        f"{plan['healthy_hours_per_seed']:g} h ({hours:g} h per family) from a cold start "
        "(warm-up drift, payload and speed-override nuisances), 95 % upper bound (Poisson) "
        "in brackets. Scoring cost: the scorer's whole step on feature vectors at the agent's "
        "default precision (int8; fp32 where a bundle has no int8), median CPU time of "
        f"{plan['scoring_rounds']} interleaved rounds, ratio to mlp in brackets (the box is "
        "shared: the ratios are the comparable figure).",
        "",
        *_raise_lines(fam),
        "fp32 step for every family (µs b1 / µs per window b64): "
        + "; ".join(
            f"{f} {r['scoring']['fp32']['b1_us']:.0f} / "
            f"{r['scoring']['fp32']['b64_us_per_window']:.1f}"
            for f, r in fam.items()
        )
        + ".",
        "",
        f"Flags: {report['flags']}",
        "",
    ]
    return "\n".join(lines)


def _raise_lines(fam: dict[str, Any]) -> list[str]:
    """When the false alarms came: the healthy runs' raises, and the cold-start fault runs
    that raised before the fault's onset, per family that raised any."""
    parts = []
    for f, r in fam.items():
        raises = [(s["seed"], x["t_s"]) for s in r["healthy"]["seeds"] for x in s["raises"]]
        early = sum(k["alarms_before_onset"] > 0 for k in r["faults"].values())
        text = []
        if raises:
            at = ", ".join(f"{t:g} s (seed {seed})" for seed, t in raises)
            text.append(f"healthy runs at {at} after the cold start")
        if early:
            text.append(f"{early} of {len(r['faults'])} fault runs (cold start) before onset")
        if text:
            parts.append(f"{f}: " + "; ".join(text))
    if not parts:
        return []
    return ["False alarms: " + " — ".join(parts) + ".", ""]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {PROG}", description=(__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE / "families",
        help="where the families' bundles are kept (default ~/.cache/rapp-edge/families)",
    )
    p.add_argument("--quick", action="store_true", help="CI smoke run (≲ 2 min)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return report_main(
        PROG,
        args.out,
        "families",
        lambda: run_families(QUICK if args.quick else FULL, args.cache, args.quick),
        markdown,
    )


if __name__ == "__main__":
    sys.exit(main())
