"""Retraining from the field without forgetting: replay vs plain fine-tuning, on the simulator.

Run from the repository root (minutes; ``--quick`` for a smoke run)::

    .venv/bin/python -m benchmarks.retrain_eval [--quick] [--out benchmarks/results]

**Regimes.** A: program 1 with the nominal 3 kg payload, nuisances on (warm-up drift, ±5 %
payload, ±5 % speed override). B: the same cell after a process change that is now normal —
the payload 10 % (3.3 kg) or 15 % (3.45 kg) heavier, one section each. v1 puts 22 % and 51 %
of B's windows above its threshold (77 % at +20 %: a change that large leaves the agent
almost nothing clean to capture).

**Steps.** v1 is trained on A (seed 1) and built on held-out A (seed 2), its replay buffer
chosen by :mod:`exporter.replay`. Regime B (seed 3) is streamed through the agent's own
pipeline with v1 and the capture on, so the capture holds what a device would capture
(windows that raised no alarm). Then :func:`exporter.retrain.retrain` makes v2 twice, with the
same capture, calibration and settings except the training mix: with replay (``replay_mix``
0.5) and plain fine-tuning on the captured windows alone (``replay_mix`` 0). A third run with
a uniformly drawn replay buffer measures the selection rule.

**Measured** (every bundle streamed through :class:`agent.pipeline.robot.RobotPipeline`,
fp32): the alarm score's window AUROC on each of the simulator's fault kinds injected into
regime A (``benchmarks.sim_report`` cases and timing; negatives: A's normal runs, cold and
warm), and false alarms on fresh normal runs of A and B (windows at or above threshold, alarms
raised per hour), plus the retrain gates. Writes ``retrain.md`` and ``retrain.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.atomic import write_atomic
from agent.core.bundle import Bundle, load_bundle
from agent.core.features import FeatureSpec, Normalization, Segmentation, segment_features
from agent.core.scoring import open_scorer
from agent.pipeline.alarms import AlarmSettings
from agent.pipeline.capture import WindowCapture
from agent.pipeline.options import PipelineOptions
from agent.pipeline.robot import RobotPipeline
from benchmarks.common import (
    RESULTS,
    load_average,
    machine_info,
    machine_lines,
    md_table,
    write_json,
    write_text,
)
from benchmarks.sim_report import (
    FAULT_CASES,
    FULL,
    QUICK,
    WARM_START_S,
    as_recording,
    column_index,
    fault_metrics,
    fault_specs,
    replay,
    score_run,
    sim_config,
    simulate_span,
)
from exporter.build import BuildSettings, build_bundle
from exporter.data import segment_one
from exporter.merge import MAX_DISTANCE, program_distance
from exporter.model import TrainedModel
from exporter.replay import CALIBRATION_NAME, ReplayBuffer, load_replay, save_replay
from exporter.retrain import (
    FineTuneSettings,
    RetrainSettings,
    physical_identity,
    read_captures,
    retrain,
)
from exporter.train import TrainSettings, train_autoencoder
from firmware_config.simulator import SimulatedRun, SimulationConfig

PROGRAM = 1
RATE = 1000
PAYLOAD_A = 3.0
PAYLOADS_B = (3.3, 3.45)
CACHE = Path(os.environ.get("RAPP_RETRAIN_CACHE", "/tmp/rapp-retrain-eval"))
CHANNELS = ("J1", "J2", "J3", "J4", "J5", "J6")


@dataclasses.dataclass(frozen=True)
class Plan:
    train_s: float
    calib_s: float
    capture_s: float
    test_s: float
    epochs: int
    window: int
    hop: int


PLANS = {
    False: Plan(
        train_s=3600, calib_s=2400, capture_s=1800, test_s=900, epochs=60, window=128, hop=128
    ),
    True: Plan(train_s=300, calib_s=200, capture_s=200, test_s=120, epochs=10, window=64, hop=64),
}


def regime(seed: int, payload: float, faults=()) -> SimulationConfig:
    return dataclasses.replace(sim_config(seed, PROGRAM, RATE, tuple(faults)), payload_kg=payload)


def spec_of(plan: Plan) -> FeatureSpec:
    return FeatureSpec(
        channels=CHANNELS,
        units=("A",) * len(CHANNELS),
        sample_rate_hz=float(RATE),
        segmentation=Segmentation(kind="window", length=plan.window, hop=plan.hop),
        features=("raw",),
    )


def windows_of(spec: FeatureSpec, run: SimulatedRun, name: str):
    columns = np.array([run.channels.index(c) for c in spec.channels])
    return segment_one(spec, physical_identity(spec.n_channels), as_recording(run, columns, name))


def cached_v1(
    plan: Plan, cache: Path, log
) -> tuple[TrainedModel, ReplayBuffer, Bundle, np.ndarray]:
    """v1 from ``cache`` when an earlier run of the same plan left it there, else trained."""
    folder = cache / "_".join(f"{v:g}" for v in dataclasses.astuple(plan))
    if (folder / "v1.rapp").exists():
        log(f"v1 from {folder}")
        return (
            TrainedModel.load(folder / "model"),
            load_replay(folder / "model", "all.npz"),
            load_bundle(folder / "v1.rapp"),
            load_replay(folder / "model", CALIBRATION_NAME).segments,
        )
    trained, buffer, data, calib = train_v1(plan, log)
    trained.save(folder / "model")
    save_replay(folder / "model", buffer, "all.npz")
    save_replay(folder / "model", ReplayBuffer.of(calib), CALIBRATION_NAME)
    write_atomic(folder / "v1.rapp", data)
    return trained, buffer, load_bundle(data), calib


def train_v1(plan: Plan, log) -> tuple[TrainedModel, ReplayBuffer, bytes, np.ndarray]:
    spec = spec_of(plan)
    train = windows_of(spec, simulate_span(regime(1, PAYLOAD_A), 0.0, plan.train_s), "A train")
    calib = windows_of(spec, simulate_span(regime(2, PAYLOAD_A), 0.0, plan.calib_s), "A calib")
    norm = Normalization.fit(train.segments.reshape(-1, spec.n_channels))
    x = norm.apply(train.segments).transpose(0, 2, 1).reshape(len(train.segments), -1)
    settings = TrainSettings(n_layers=2, bottleneck=8, epochs=plan.epochs, patience=8, seed=0)
    log(f"training v1 on {len(x)} regime-A windows")
    model, history = train_autoencoder(x, settings, spec=spec)
    trained = TrainedModel(model, spec, norm, history).with_latent_reference(x)
    buffer = ReplayBuffer.of(train.segments, train.program)
    log("building v1")
    built = build_bundle(
        trained,
        norm.apply(calib.segments),
        BuildSettings(bundle_id="arm1", robot="arm1", programs=(PROGRAM,), quantize=False),
        log=lambda m: None,
    )
    return trained, buffer, built.data, calib.segments


def capture_regime_b(bundle: Bundle, plan: Plan, directory: Path, payload: float) -> dict[str, Any]:
    """Stream regime B through the agent's pipeline with v1; the capture keeps clean windows."""
    scorer = open_scorer(bundle, backend="onnxruntime", precision="fp32")
    capture = WindowCapture.open(directory, max_windows=1_000_000)
    pipeline = RobotPipeline(
        "arm1",
        [scorer],
        AlarmSettings.from_bundle(bundle.manifest.alarm),
        PipelineOptions(capture=capture),
    )
    run = simulate_span(regime(3, payload), 0.0, plan.capture_s)
    windows = raised = 0
    for result in replay(pipeline, [run], column_index(run, bundle)):
        windows += len(result.windows)
        raised += sum(e.kind == "raise" for e in result.events)
    pipeline.close()
    return {"windows": windows, "captured": capture.written, "alarms_raised": raised}


def measure(bundle: Bundle, plan: Plan, quick: bool, payload_b: float) -> dict[str, Any]:
    """Fault AUROC on regime A and false alarms on fresh normal A and B runs."""
    timing = QUICK if quick else FULL
    scorer = open_scorer(bundle, backend="onnxruntime", precision="fp32")
    normal = [
        simulate_span(regime(101, PAYLOAD_A), 0.0, timing.normal_cold_s),
        simulate_span(regime(102, PAYLOAD_A), WARM_START_S, timing.normal_warm_s),
    ]
    columns = column_index(normal[0], bundle)
    normal_scores = [score_run(scorer, run, columns) for run in normal]
    out: dict[str, Any] = {"auroc": {}}
    for i, case in enumerate(FAULT_CASES):
        run = simulate_span(
            regime(111 + i, PAYLOAD_A, fault_specs(case, timing)), 0.0, timing.fault_run_s
        )
        metrics = fault_metrics(
            case, normal_scores, score_run(scorer, run, columns), timing.onset_s
        )
        out["auroc"][case.kind] = metrics[f"auroc_{bundle.manifest.alarm.score}"]
    out["auroc_mean"] = float(np.mean(list(out["auroc"].values())))
    for name, payload, seed in (("A", PAYLOAD_A, 201), ("B", payload_b, 202)):
        run = simulate_span(regime(seed, payload), 0.0, plan.test_s)
        scores = score_run(scorer, run, columns)
        out[f"false_alarms_{name}"] = {
            "windows_above": float(np.mean(scores.score >= scores.threshold)),
            "alarms_per_hour": len(scores.raises_s) / (plan.test_s / 3600.0),
        }
    return out


def retrained(
    v1: Bundle, trained: TrainedModel, buffer: ReplayBuffer, calib: np.ndarray, capture: Path,
    mix: float, epochs: int, log,
) -> tuple[Bundle, dict[str, Any]]:  # fmt: skip
    settings = RetrainSettings(
        fine_tune=FineTuneSettings(epochs=epochs, replay_mix=mix), quantize=False, strict=False
    )
    result = retrain(
        v1, trained, buffer, read_captures([capture], 1), ReplayBuffer.of(calib), settings, log=log
    )
    return load_bundle(result.built.data), result.report


def _rows(bundles: dict[str, Any], kinds: Sequence[str]) -> list[list[str]]:
    rows = []
    for name, r in bundles.items():
        m = r["measured"]
        fa = [m["false_alarms_A"], m["false_alarms_B"]]
        rows.append(
            [name, *(f"{m['auroc'][k]:.4f}" for k in kinds), f"{m['auroc_mean']:.4f}"]
            + [f"{f['windows_above']:.4f} / {f['alarms_per_hour']:.0f}" for f in fa]
        )
    return rows


def _drops(bundles: dict[str, Any], kinds: Sequence[str]) -> list[str]:
    v1 = bundles["v1"]["measured"]["auroc"]
    lines = []
    for name, r in bundles.items():
        if name == "v1":
            continue
        got = r["measured"]["auroc"]
        mean = float(np.mean([v1[k] for k in kinds]) - np.mean([got[k] for k in kinds]))
        worst = max(kinds, key=lambda k: v1[k] - got[k])
        gates = ", ".join(f"{g['name']} {'pass' if g['passed'] else 'FAIL'}" for g in r["gates"])
        lines.append(
            f"- {name}: AUROC drop vs v1 {mean:+.4f} (mean), {v1[worst] - got[worst]:+.4f} "
            f"(worst kind, {worst}); gates: {gates}"
        )
    return lines


def render(report: dict[str, Any]) -> str:
    kinds = [c.kind for c in FAULT_CASES]
    plan = report["plan"]
    lines = [
        "# Retraining from the field: replay vs plain fine-tuning",
        "",
        "Generated by `python -m benchmarks.retrain_eval"
        + (" --quick" if report["quick"] else "")
        + "`; see the module docstring for the regimes and steps.",
        "",
        *machine_lines(report["machine"]),
        "",
        f"Regime A: program {PROGRAM}, payload {PAYLOAD_A:g} kg. Windows of {plan['window']} "
        f"samples, hop {plan['hop']}; v1 trained on {plan['train_s']:g} s of A (replay buffer "
        f"{report['replay_windows']} of {report['train_windows']} windows), calibrated on "
        f"{plan['calib_s']:g} s; regime B captured for {plan['capture_s']:g} s through the "
        "agent's pipeline with v1. Cells: AUROC of the alarm score on regime A's faults (window "
        "level); false alarms on fresh normal runs as share of windows at or above threshold / "
        "alarms raised per hour.",
    ]
    for regime_b in report["regimes"]:
        payload = regime_b["payload_b"]
        lines += [
            "",
            f"## Regime B: payload {payload:g} kg ({payload / PAYLOAD_A - 1:+.0%})",
            "",
            f"Capture: {regime_b['capture']}; distance A–B {regime_b['distance_a_b']:.4f}.",
            "",
            *md_table(
                ["bundle", *kinds, "mean", "A false alarms", "B false alarms"],
                _rows(regime_b["bundles"], kinds),
            ),
            "",
            *_drops(regime_b["bundles"], kinds),
        ]
    d = report["distances"]
    lines += [
        "",
        "## Distances (exporter.merge.program_distance, the merge rule)",
        "",
        f"Program 1 replay vs program 1 calibration (another seed): {d['same_program']:.4f}; "
        f"program 1 vs program 2: {d['program_1_vs_2']:.4f}; the merge threshold is "
        f"{MAX_DISTANCE:g}.",
        "",
    ]
    return "\n".join(lines)


def regime_b_report(
    payload: float, plan: Plan, quick: bool, v1_state: tuple, log
) -> dict[str, Any]:
    trained, stratified, uniform, v1, calib = v1_state
    bundles: dict[str, dict[str, Any]] = {}
    log(f"regime B {payload:g} kg: measuring v1")
    bundles["v1"] = {"measured": measure(v1, plan, quick, payload), "gates": []}
    out: dict[str, Any] = {"payload_b": payload}
    with tempfile.TemporaryDirectory() as tmp:
        capture = Path(tmp) / "capture"
        out["capture"] = capture_regime_b(v1, plan, capture, payload)
        log(f"capture of regime B: {out['capture']}")
        out["distance_a_b"] = distance(trained, stratified, read_captures([capture], 1))
        for name, mix, replay_buffer in (
            ("v2 replay (stratified)", 0.5, stratified),
            ("v2 plain fine-tuning", 0.0, stratified),
            ("v2 replay (uniform)", 0.5, uniform),
        ):
            log(f"retraining: {name}")
            bundle, result = retrained(
                v1, trained, replay_buffer, calib, capture, mix, plan.epochs, log
            )
            log(f"measuring {name}")
            bundles[name] = {
                "measured": measure(bundle, plan, quick, payload),
                "gates": result["gates"],
                "report": result,
            }
    out["bundles"] = bundles
    return out


def distance(trained: TrainedModel, a: ReplayBuffer, b: ReplayBuffer) -> float:
    norm, kinds = trained.normalization, trained.spec.features
    return program_distance(
        segment_features(a.normalized(norm), kinds), segment_features(b.normalized(norm), kinds)
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.retrain_eval", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory for retrain.md/.json")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where v1 is kept between runs")
    ap.add_argument("--payload-b", type=float, nargs="+", default=list(PAYLOADS_B),
                    help="regime B's payloads (kg), one section each")  # fmt: skip
    args = ap.parse_args(argv)
    plan = PLANS[args.quick]
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {message}", file=sys.stderr)

    report: dict[str, Any] = {
        "machine": machine_info(),
        "quick": args.quick,
        "plan": dataclasses.asdict(plan),
    }
    trained, buffer, v1, calib = cached_v1(plan, args.cache, log)
    stratified = buffer.bounded(rule="stratified")
    report.update(train_windows=len(buffer), replay_windows=len(stratified))
    state = (trained, stratified, buffer.bounded(rule="uniform"), v1, calib)
    report["regimes"] = [regime_b_report(p, plan, args.quick, state, log) for p in args.payload_b]
    other = windows_of(
        spec_of(plan),
        simulate_span(
            dataclasses.replace(regime(5, PAYLOAD_A), schedule=((2, 1),)), 0.0, plan.calib_s
        ),
        "program 2",
    )
    report["distances"] = {
        "same_program": distance(trained, stratified, ReplayBuffer.of(calib)),
        "program_1_vs_2": distance(trained, stratified, ReplayBuffer.of(other.segments)),
    }
    report["seconds"] = time.monotonic() - started
    report["machine"]["load_average_at_end"] = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "retrain.json", report)
    write_text(args.out / "retrain.md", render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
