"""Operational-AI evaluation on the simulator: changeover, attribution,
dynamic vs fixed threshold.

    python -m benchmarks.ops_eval [--quick] [--bundle-a A.rapp] [--bundle-b B.rapp]

1. **Product changeover.** The arm runs program 1 (bundle A), then switches to program 2 for
   which no model exists. Measured: alarms raised on program 2 (must be none: the agent
   reports unknown program / drift instead), the status drift indicators and
   ``retraining_advised``. Then bundle B (program 2) is added with ``pipeline.install`` (the
   OTA helper tests the over-the-air path to that call): false alarms on normal program 2,
   AUROC per fault type on both programs, and that A is untouched (bundle bytes, route
   object, tracker). Both with program ids in the frames and without (-1: membership).
2. **Attribution**: for every raised alarm (several seeds, both programs), is the axis it
   names first the faulted one (payload: J2/J3/J5)? Also over all faulted windows at or
   above the threshold.
3. **Dynamic vs fixed threshold**: one long timeline per program with a fault episode of
   every kind after a warm-up; precision / recall of alarm raise events against the episodes.

Bundle B is trained here with the exporter's CLI when missing (program 2, the default
bundle's recipe on 3600 s of simulated data; ≈ 1.5 min on 2 cores) and cached under
``/tmp/rapp-ops-eval``. Results: benchmarks/results/ops_eval.md and ops_eval.json.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.bundle import load_bundle
from agent.core.scoring import Scorer, open_scorer
from agent.models import default_bundle_path
from agent.pipeline.alarms import AlarmEvent, AlarmSettings
from agent.pipeline.robot import PipelineOptions, RobotPipeline, ScoredWindow
from agent.pipeline.thresholds import DynamicSettings
from agent.sources.base import SampleChunk
from benchmarks.common import RESULTS, machine_info, machine_lines, md_table, write_json, write_text
from benchmarks.sim_report import (
    COLLISION_PERIOD_S,
    FAULT_CASES,
    FRICTION_RAMP_S,
    FULL,
    QUICK,
    FaultCase,
    Timing,
    fault_specs,
    sim_config,
    simulate_span,
)
from exporter.metrics import auroc
from firmware_config.channel_map import load_builtin_map
from firmware_config.simulator import FaultSpec, SimulatedRun, SimulationConfig

CACHE = Path(os.environ.get("RAPP_OPS_CACHE", "/tmp/rapp-ops-eval"))
CHUNK = 1000
RATE = 1000
ROBOT = "arm1"
EPISODE_S = 60.0  # length of every fault episode on the threshold timeline
GAP_S = 240.0  # normal operation between episodes
WARMUP_S = 600.0  # normal operation before the first episode (dynamic threshold history)
GRACE_S = 30.0  # a raise this long after an episode's end still belongs to it
AXIS_OF = {c.name: c.axis for c in load_builtin_map().channels}


# --------------------------------------------------------------------------- bundle B


TRAIN_RUNS = ((21, 3600), (23, 3600))  # (seed, seconds) of program-2 training runs, cold start
CALIB_RUNS = ((22, 3000), (24, 3000))  # held-out calibration runs: cold start → warm
PIECE_ROWS = 600_000  # CSV rows per file: rapp-export's reader holds a file's rows in memory


def _simulate_csv(bin_dir: Path, seed: int, seconds: int, work: Path, env: dict) -> list[Path]:
    """One continuous program-2 run, split into 600 s CSV pieces (each with the header)."""
    full = work / f"run-{seed}.csv"
    subprocess.run(
        [bin_dir / "rapp-firmware", "simulate", "--seed", str(seed), "--duration", str(seconds),
         "--program", "2", "--out", str(full)],
        check=True, env=env, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    pieces: list[Path] = []
    with open(full) as src:
        header = src.readline()
        out = None
        for i, line in enumerate(src):
            if i % PIECE_ROWS == 0:
                if out is not None:
                    out.close()
                pieces.append(work / f"run-{seed}-{len(pieces):02d}.csv")
                out = open(pieces[-1], "w")  # noqa: SIM115
                out.write(header)
            out.write(line)
        if out is not None:
            out.close()
    full.unlink()
    return pieces


def ensure_bundle_b(path: Path | None) -> Path:
    """The program-2 bundle: ``path`` if given, else the cached one (trained when missing).

    Recipe: the default bundle's (scripts/build_default_bundle.sh) on program 2, with two
    cold-start training runs and two calibration runs (program 2's 6 s cycles give fewer
    windows per second than program 1's 4.4 s, and one cold start left int8 thresholds
    tight on warm-up).
    """
    if path is not None:
        return path
    out = CACHE / "arm1-p2.rapp"
    if out.exists():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    env.setdefault("SOURCE_DATE_EPOCH", "1735689600")
    with tempfile.TemporaryDirectory(prefix="rapp-ops-b-") as tmp:
        work = Path(tmp)
        train = [p for s, n in TRAIN_RUNS for p in _simulate_csv(bin_dir, s, n, work, env)]
        calib = [p for s, n in CALIB_RUNS for p in _simulate_csv(bin_dir, s, n, work, env)]
        print("ops-eval: training bundle B (program 2) …", file=sys.stderr)
        subprocess.run(
            [bin_dir / "rapp-export", "train", "--data", *map(str, train),
             "--channels", "J1,J2,J3,J4,J5,J6", "--units", "A,A,A,A,A,A",
             "--sample-rate", "1000", "--segmentation", "cycle", "--window", "64",
             "--min-cycle", "2200", "--max-cycle", "6600", "--features", "raw",
             "--layers", "2", "--bottleneck", "12", "--epochs", "200", "--patience", "20",
             "--batch-size", "64", "--lr", "1e-3", "--seed", "0",
             "--out", str(work / "model"), "--quiet"],
            check=True, env=env,
        )  # fmt: skip
        subprocess.run(
            [bin_dir / "rapp-export", "build", "--model", str(work / "model"),
             "--calibration", *map(str, calib), "--out", str(work / "b.rapp"),
             "--bundle-id", "arm1-p2", "--bundle-version", "1", "--robot", ROBOT,
             "--program", "2", "--quantile", "0.999", "--calibration-method", "percentile",
             "--min-spearman", "0.9", "--seed", "0"],
            check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        shutil.copy(work / "b.rapp", out.with_suffix(".tmp"))
        out.with_suffix(".tmp").replace(out)
    return out


# --------------------------------------------------------------------------- streaming


@dataclass
class Stream:
    """What a pipeline produced for one simulated run."""

    windows: list[ScoredWindow] = field(default_factory=list)
    events: list[AlarmEvent] = field(default_factory=list)
    t0: float = 0.0

    def ratio(self) -> np.ndarray:
        return np.array([w.score / w.threshold for w in self.windows])

    def end_s(self) -> np.ndarray:
        return np.array([w.window.end for w in self.windows]) - self.t0

    def raises(self) -> list[AlarmEvent]:
        return [e for e in self.events if e.kind == "raise"]


def feed(
    pipeline: RobotPipeline,
    run: SimulatedRun,
    with_ids: bool,
    first: int = 0,
    stop: int | None = None,
) -> Stream:
    """Stream samples [first, stop) of ``run`` through ``pipeline`` in 1000-sample chunks
    (wall time = simulation time)."""
    out = Stream(t0=0.0)
    start = float(run.time_s[0])
    end = run.n_samples if stop is None else stop
    for lo in range(first, end, CHUNK):
        hi = min(end, lo + CHUNK)
        program = (
            run.program_id[lo:hi].astype(np.int64)
            if with_ids
            else np.full(hi - lo, -1, dtype=np.int64)
        )
        result = pipeline.process(
            SampleChunk(
                samples=run.currents[lo:hi],
                cycle_start=run.cycle_start[lo:hi],
                program=program,
                seq_first=lo,
                seq_last=hi - 1,
                wall_time=start + (hi - 1) / RATE,
                received_monotonic=time.monotonic(),
            )
        )
        out.windows += result.windows
        out.events += result.events
    return out


def labels(run: SimulatedRun, stream: Stream) -> np.ndarray:
    return np.array([int(run.fault[w.start : w.stop].max()) for w in stream.windows])


def settings_of(scorer: Scorer) -> AlarmSettings:
    return AlarmSettings.from_bundle(scorer.bundle.manifest.alarm)


# Threshold variants compared on the fault timeline: the calibrated one, the dynamic one with
# the agent's default band, and a dynamic one allowed to drop to half the calibrated value.
THRESHOLD_MODES: dict[str, PipelineOptions] = {
    "fixed": PipelineOptions(threshold="fixed"),
    "dynamic": PipelineOptions(threshold="dynamic"),
    "dynamic floor 0.5": PipelineOptions(threshold="dynamic", dynamic=DynamicSettings(floor=0.5)),
}


def new_pipeline(scorers: Sequence[Scorer], mode: str = "fixed") -> RobotPipeline:
    return RobotPipeline(ROBOT, list(scorers), settings_of(scorers[0]), THRESHOLD_MODES[mode])


def top_axis(channel: str) -> int:
    return AXIS_OF.get(channel, 0)


# --------------------------------------------------------------------------- 1. changeover


def changeover(
    a_path: Path, b_path: Path, precision: str, timing: Timing, with_ids: bool, seed: int
) -> dict[str, Any]:
    """Program 1 → program 2 without B's model, then with it; faults on both.

    One continuous simulated stream: program 1 for ``normal_cold_s``, then program 2 (the
    simulator's schedule switches at a cycle boundary, as a robot would); B is installed
    another ``normal_cold_s`` after the switch, while the stream keeps flowing.
    """
    a_bytes_before = hashlib.sha256(a_path.read_bytes()).hexdigest()
    scorer_a = open_scorer(load_bundle(a_path), "onnxruntime", precision)
    scorer_b = open_scorer(load_bundle(b_path), "onnxruntime", precision)
    pipeline = new_pipeline([scorer_a])
    p1_cycles = round(timing.normal_cold_s / 4.4)  # program 1 cycles take ≈ 4.4 s
    config = SimulationConfig(
        seed=seed + 201,
        duration_s=None,
        sample_rate_hz=RATE,
        schedule=((1, p1_cycles), (2, 1_000_000)),
    )
    run = simulate_span(config, 0.0, 3 * timing.normal_cold_s)
    switch = int(np.flatnonzero(run.program_id == 2)[0])
    install_at = switch + round(timing.normal_cold_s * RATE)
    s_a = feed(pipeline, run, with_ids, 0, switch)
    s_before = feed(pipeline, run, with_ids, switch, install_at)
    drift_before, advised_before = pipeline.drift_summary()
    stats_before = dict(vars(pipeline.stats))

    route_a = pipeline.routes[0]
    tracker_a, threshold_a = route_a.tracker, route_a.current_threshold()
    swap = pipeline.install(scorer_b)
    untouched = (
        swap.replaced is None
        and not swap.superseded
        and pipeline.routes[0] is route_a
        and route_a.tracker is tracker_a
        and route_a.current_threshold() == threshold_a
    )
    s_after = feed(pipeline, run, with_ids, install_at)
    drift_after, advised_after = pipeline.drift_summary()
    a_bytes_after = hashlib.sha256(a_path.read_bytes()).hexdigest()

    faults: dict[str, Any] = {}
    for program, normal in ((1, s_a), (2, s_after)):
        neg = normal.ratio()
        per_case = {}
        for i, case in enumerate(FAULT_CASES):
            run = simulate_span(
                sim_config(seed + 211 + i + 10 * program, program, RATE, fault_specs(case, timing)),
                0.0,
                timing.fault_run_s,
            )
            stream = feed(new_pipeline([scorer_a, scorer_b]), run, with_ids)
            lab = labels(run, stream)
            pos = stream.ratio()[lab > 0]
            raises = [e for e in stream.raises() if e.span_end >= timing.onset_s]
            per_case[case.kind] = {
                "auroc": round(
                    auroc(np.r_[neg, pos], np.r_[np.zeros(neg.size), np.ones(pos.size)]), 4
                )
                if pos.size
                else None,
                "detected": round(float(np.mean(pos >= 1.0)), 3) if pos.size else None,
                "alarms_after_onset": len(raises),
                "alarms_before_onset": len(stream.raises()) - len(raises),
                "models": sorted({w.model.bundle_id for w in stream.windows}),
            }
        faults[f"program {program}"] = per_case
    return {
        "with_program_ids": with_ids,
        "precision": precision,
        "without_b": {
            "program1_windows": len(s_a.windows),
            "program1_alarms": len(s_a.raises()),
            "program2_windows_scored": len(s_before.windows),
            "program2_alarms": len(s_before.raises()),
            "stats": stats_before,
            "drift": drift_before,
            "retraining_advised": advised_before,
        },
        "with_b": {
            "program2_windows": len(s_after.windows),
            "program2_alarms": len(s_after.raises()),
            "program2_above_threshold": round(float(np.mean(s_after.ratio() >= 1.0)), 4),
            "models": sorted({w.model.bundle_id for w in s_after.windows}),
            "drift": drift_after,
            "retraining_advised": advised_after,
        },
        "a_untouched": {
            "bundle_sha256_before": a_bytes_before,
            "bundle_sha256_after": a_bytes_after,
            "bytes_unchanged": a_bytes_before == a_bytes_after,
            "route_tracker_threshold_unchanged": untouched,
        },
        "faults": faults,
    }


# --------------------------------------------------------------------------- 2. attribution


def attribution(
    scorers: dict[int, Scorer], precision: str, timing: Timing, seeds: Sequence[int]
) -> dict[str, Any]:
    """Axis named first by every raised alarm and by faulted windows above the threshold."""
    out: dict[str, Any] = {}
    for case in FAULT_CASES:
        alarms: list[int] = []
        windows: list[int] = []
        for program, scorer in scorers.items():
            for seed in seeds:
                specs = fault_specs(case, timing)
                run = simulate_span(
                    sim_config(seed * 1000 + 300 + program, program, RATE, specs),
                    0.0,
                    timing.fault_run_s,
                )
                stream = feed(new_pipeline([scorer]), run, True)
                lab = labels(run, stream)
                alarms += [
                    top_axis(e.contributions[0].channel)
                    for e in stream.raises()
                    if e.span_end >= timing.onset_s and e.contributions
                ]
                for w, y in zip(stream.windows, lab, strict=True):
                    if y > 0 and w.score >= w.threshold and w.contributions:
                        windows.append(top_axis(max(w.contributions, key=w.contributions.get)))
        hit = case.hit_axes
        out[case.kind] = {
            "axis": f"J{case.axis}",
            "alarms": len(alarms),
            "alarm_hit": round(float(np.isin(alarms, hit).mean()), 3) if alarms else None,
            "alarm_axes": {f"J{a}": alarms.count(a) for a in sorted(set(alarms))},
            "alarm_windows": len(windows),
            "window_hit": round(float(np.isin(windows, hit).mean()), 3) if windows else None,
        }
    return {"precision": precision, "seeds": list(seeds), "faults": out}


# --------------------------------------------------------------------------- 3. thresholds


def episode_specs(case: FaultCase, onset: float) -> tuple[FaultSpec, ...]:
    if case.kind == "collision":
        times = np.arange(onset, onset + EPISODE_S, COLLISION_PERIOD_S)
        return tuple(FaultSpec("collision", case.axis, float(x)) for x in times)
    ramp = {"ramp_s": FRICTION_RAMP_S} if case.kind == "friction" else {}
    return (FaultSpec(case.kind, case.axis, onset, duration_s=EPISODE_S, **ramp),)


def threshold_timeline(
    program: int, seed: int, warmup_s: float
) -> tuple[SimulatedRun, list[tuple[str, float, float]]]:
    episodes, specs = [], []
    for i, case in enumerate(FAULT_CASES):
        onset = warmup_s + i * (EPISODE_S + GAP_S)
        episodes.append((case.kind, onset, onset + EPISODE_S))
        specs += list(episode_specs(case, onset))
    total = episodes[-1][2] + GAP_S
    run = simulate_span(sim_config(seed, program, RATE, tuple(specs)), 0.0, total)
    return run, episodes


def precision_recall(
    stream: Stream, episodes: Sequence[tuple[str, float, float]]
) -> dict[str, Any]:
    raises = [e.span_end - stream.t0 for e in stream.raises()]
    hit_episode: dict[str, bool] = {kind: False for kind, _, _ in episodes}
    true_pos = 0
    for t in raises:
        owner = next((k for k, a, b in episodes if a <= t <= b + GRACE_S), None)
        if owner is not None:
            true_pos += 1
            hit_episode[owner] = True
    n = len(raises)
    return {
        "raises": n,
        "true_raises": true_pos,
        "false_raises": n - true_pos,
        "precision": round(true_pos / n, 3) if n else None,
        "recall": round(sum(hit_episode.values()) / len(episodes), 3),
        "episodes_detected": hit_episode,
    }


def thresholds(scorers: dict[int, Scorer], seeds: Sequence[int], warmup_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for program, scorer in scorers.items():
        for seed in seeds:
            run, episodes = threshold_timeline(program, 5000 + seed * 10 + program, warmup_s)
            row = {}
            for mode in THRESHOLD_MODES:
                pipeline = new_pipeline([scorer], mode)
                stream = feed(pipeline, run, True)
                row[mode] = precision_recall(stream, episodes)
                row[mode]["final_threshold_ratio"] = round(
                    pipeline.routes[0].current_threshold() / pipeline.routes[0].threshold, 3
                )
            out[f"program {program} seed {seed}"] = {
                "seconds": float(run.n_samples / RATE),
                "episodes": [{"kind": k, "onset_s": a, "end_s": b} for k, a, b in episodes],
                **row,
            }
    totals = {}
    for mode in THRESHOLD_MODES:
        rows = [v[mode] for v in out.values()]
        raises = sum(r["raises"] for r in rows)
        tp = sum(r["true_raises"] for r in rows)
        detected = sum(sum(r["episodes_detected"].values()) for r in rows)
        n_ep = sum(len(r["episodes_detected"]) for r in rows)
        totals[mode] = {
            "raises": raises,
            "false_raises": raises - tp,
            "precision": round(tp / raises, 3) if raises else None,
            "recall": round(detected / n_ep, 3),
        }
    return {"runs": out, "total": totals}


# --------------------------------------------------------------------------- report


def _f(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(report: dict[str, Any]) -> str:
    lines = [
        "# Operational AI on the simulator — changeover, attribution, thresholds",
        "",
        f"`python -m benchmarks.ops_eval{' --quick' if report['quick'] else ''}` — "
        f"bundle A `{report['bundles']['a']}` (program 1), bundle B `{report['bundles']['b']}` "
        f"(program 2, trained by this script with the default bundle's recipe). Precision "
        f"{report['precision']} (the agent's default); simulator nuisances on.",
        "",
        *machine_lines(report["machine"]),
        "",
        "## 1. Product changeover (program 1 → program 2)",
        "",
    ]
    head = ["", "program ids", "no program ids (membership)"]
    rows = []
    co = {c["with_program_ids"]: c for c in report["changeover"]}

    def both(get) -> list[str]:
        return [_f(get(co[True])), _f(get(co[False]))]

    rows.append(
        [
            "without B: alarms on normal program 1",
            *both(lambda c: c["without_b"]["program1_alarms"]),
        ]
    )
    rows.append(
        [
            "without B: program-2 windows scored",
            *both(lambda c: c["without_b"]["program2_windows_scored"]),
        ]
    )
    rows.append(
        ["without B: alarms on program 2", *both(lambda c: c["without_b"]["program2_alarms"])]
    )
    rows.append(
        [
            "without B: unknown-program share (status)",
            *both(lambda c: c["without_b"]["drift"]["unknown_program_share"]),
        ]
    )
    rows.append(
        [
            "without B: membership confidence (status)",
            *both(lambda c: c["without_b"]["drift"]["membership_confidence"]),
        ]
    )
    rows.append(
        ["without B: retraining advised", *both(lambda c: c["without_b"]["retraining_advised"])]
    )
    rows.append(["with B: program-2 windows", *both(lambda c: c["with_b"]["program2_windows"])])
    rows.append(
        ["with B: alarms on normal program 2", *both(lambda c: c["with_b"]["program2_alarms"])]
    )
    rows.append(
        [
            "with B: windows above threshold",
            *both(lambda c: c["with_b"]["program2_above_threshold"]),
        ]
    )
    rows.append(["with B: retraining advised", *both(lambda c: c["with_b"]["retraining_advised"])])
    rows.append(["A bundle bytes unchanged", *both(lambda c: c["a_untouched"]["bytes_unchanged"])])
    rows.append(
        [
            "A route, tracker, threshold untouched",
            *both(lambda c: c["a_untouched"]["route_tracker_threshold_unchanged"]),
        ]
    )
    lines += md_table(head, rows)
    lines += [
        "",
        "AUROC per fault type after B was added (normal windows of the same program "
        "vs faulted windows; score / threshold of the model that scored the window):",
        "",
    ]
    head = ["fault"]
    for ids in (True, False):
        tag = "ids" if ids else "no ids"
        head += [f"P1 AUROC ({tag})", f"P2 AUROC ({tag})", f"P1/P2 alarms ({tag})"]
    rows = []
    for case in FAULT_CASES:
        row = [case.kind]
        for ids in (True, False):
            f1 = co[ids]["faults"]["program 1"][case.kind]
            f2 = co[ids]["faults"]["program 2"][case.kind]
            row += [_f(f1["auroc"]), _f(f2["auroc"]),
                    f"{f1['alarms_after_onset']}/{f2['alarms_after_onset']}"]  # fmt: skip
        rows.append(row)
    lines += md_table(head, rows)
    att = report["attribution"]
    lines += [
        "",
        "## 2. Attribution: the faulted axis ranked first",
        "",
        f"Every alarm raised after onset in faulted runs of both programs, seeds {att['seeds']}"
        " (payload counts J2/J3/J5, as in sim-report); and every faulted window at or above "
        "the threshold.",
        "",
    ]
    rows = [
        [k, v["axis"], v["alarms"], _f(v["alarm_hit"]), v["alarm_windows"], _f(v["window_hit"]),
         ", ".join(f"{a}×{n}" for a, n in v["alarm_axes"].items()) or "–"]
        for k, v in att["faults"].items()
    ]  # fmt: skip
    lines += md_table(
        ["fault", "axis", "alarms", "top axis hit (alarms)", "alarm windows",
         "top axis hit (windows)", "axes named by alarms"],
        rows,
    )  # fmt: skip
    th = report["thresholds"]
    lines += [
        "",
        "## 3. Dynamic (Telemanom-style) vs fixed (calibrated 0.999 quantile) threshold",
        "",
        f"Per program and seed one run: {report['warmup_s']:g} s normal warm-up from a cold "
        f"start, then one {EPISODE_S:g} s episode of every fault kind, {GAP_S:g} s apart. A "
        f"raise within an episode or {GRACE_S:g} s after it is a true alarm; recall = share of "
        "episodes with at least one raise.",
        "",
    ]
    rows = []
    for name, run in th["runs"].items():
        for mode in THRESHOLD_MODES:
            r = run[mode]
            missed = [k for k, ok in r["episodes_detected"].items() if not ok]
            rows.append([name, mode, r["raises"], r["false_raises"], _f(r["precision"]),
                         _f(r["recall"]), ", ".join(missed) or "–",
                         _f(r["final_threshold_ratio"])])  # fmt: skip
    lines += md_table(
        ["run", "threshold", "raises", "false", "precision", "recall", "missed episodes",
         "final τ / calibrated τ"],
        rows,
    )  # fmt: skip
    lines += ["", "Total:", ""]
    lines += md_table(
        ["threshold", "raises", "false raises", "precision", "recall"],
        [[m, t["raises"], t["false_raises"], _f(t["precision"]), _f(t["recall"])]
         for m, t in th["total"].items()],
    )  # fmt: skip
    lines += [
        "",
        "## Notes",
        "",
        "- Backlash is not detected by either model (NAP AUROC < 0.5 in sim-report too): a "
        "model limitation, not a threshold one; it is the one missed episode per run.",
        "- The dynamic threshold is refitted on clean windows only and clamped to 0.8–4× the "
        "calibrated one (the agent's default). Allowed to sink to 0.5× (third variant), it "
        "learned the quiet warm-joint scores, raised once on the cold→warm transition, and "
        "that alarm did not clear for ≈ 14 min (program 1 seed 0: raise 572 s, clear 1434 s), "
        "swallowing the friction and collision episodes: why the default floor is 0.8.",
        "- *program-2 windows scored* without B: the last program-1 cycle, which the "
        "segmenter closes when the first program-2 cycle marker arrives (it carries program "
        "1 and is scored by A, as it should be).",
        "",
        f"Runtime {report['elapsed_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ops_eval", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, one seed")
    parser.add_argument("--bundle-a", type=Path, default=default_bundle_path())
    parser.add_argument("--bundle-b", type=Path, default=None)
    parser.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.monotonic()
    info = machine_info()
    b_path = ensure_bundle_b(args.bundle_b)
    timing = QUICK if args.quick else FULL
    seeds = (0,) if args.quick else (0, 1, 2)
    warmup = 300.0 if args.quick else WARMUP_S
    scorers = {
        1: open_scorer(load_bundle(args.bundle_a), "onnxruntime", args.precision),
        2: open_scorer(load_bundle(b_path), "onnxruntime", args.precision),
    }
    report: dict[str, Any] = {
        "quick": args.quick,
        "precision": args.precision,
        "bundles": {"a": str(args.bundle_a), "b": str(b_path)},
        "warmup_s": warmup,
        "timing": timing.__dict__,
        "machine": info,
        "changeover": [
            changeover(args.bundle_a, b_path, args.precision, timing, ids, 0)
            for ids in (True, False)
        ],
        "attribution": attribution(scorers, args.precision, timing, seeds),
        "thresholds": thresholds(scorers, seeds[:2], warmup),
    }
    info["load_average_at_end"] = list(os.getloadavg())
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    suffix = "_quick" if args.quick else ""
    write_json(args.out / f"ops_eval{suffix}.json", report)
    write_text(args.out / f"ops_eval{suffix}.md", render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
