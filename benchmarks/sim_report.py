"""How well a bundle detects each simulated fault: the simulator's per-fault report.

Run from the repository root (:mod:`benchmarks.quality` runs it for ``make bench``)::

    .venv/bin/python -m benchmarks.sim_report --bundle agent/data/default.rapp --out DIR
        [--seed 0] [--quick] [--backend auto|onnxruntime|litert]

For every fault kind of the simulated 6-axis arm (friction, backlash, collision, payload,
ripple, sensor) the report simulates normal runs *with* the nuisances a real cell has
(warm-up drift, payload within spec, a small speed override) and a faulted run with a known
onset and axis, and scores them through the product path:
:class:`agent.pipeline.robot.RobotPipeline` (the daemon's streaming segmenter, program routing,
scorer and alarm state machine) on every
artifact precision the bundle carries. It reports, per fault kind and precision:

- AUROC of Recon, SAP and NAP, and of the latent density and combined scores on bundles that
  carry them: normal windows (from the normal runs) against faulted windows (windows of the
  faulted run that hold labelled samples, i.e. after onset);
- the AUROC of IsolationForest and PCA reconstruction error on the very same windows, fitted
  (``exporter.evaluate.fit_baselines``) on the windows of the normal data the default recipe
  trains the autoencoder on (``scripts/build_default_bundle.sh``: seed 1, 0–3600 s of the
  bundle's program, nuisances on; 600 s in quick mode), in the bundle's normalization and
  features — a bundle trained on other data is compared with baselines fitted on that recipe's
  data, not on its own;
- alarm events as ``rapp-export evaluate`` counts them (``exporter.evaluate.event_metrics``):
  precision and recall of alarm episodes, detection delay, false alarms per hour on the normal
  runs;
- the share of faulted windows whose attribution (``Scores.contributions``) ranks the faulted
  axis first, the share above the threshold, and the delay from onset to the first alarm
  raised by :class:`agent.pipeline.alarms.AlarmTracker` with the bundle's alarm defaults;
- false alarms on the normal runs: windows above threshold and alarms raised.

Output: ``DIR/report.md`` (tables), ``DIR/report.json`` (everything, machine-readable) and PNG
plots: normal vs faulted currents per axis for each fault (``currents_<fault>.png``) and the
score traces with threshold and onset (``score_traces.png``).

Why a simulator report: real labelled faults are rare, and a bundle trained on normal data
only needs evidence that it sees the faults it is meant to see before it ships — the
simulator labels onset and axis exactly. It never imports torch, so it also runs from a
checkout with only the agent's dependencies installed (plus matplotlib for the plots, and
scikit-learn for the baselines: without it the report says so and leaves them out).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.bundle import Bundle, BundleError, load_bundle
from agent.core.errors import AgentError, AgentRuntimeError
from agent.core.errors import exit_code as agent_exit_code
from agent.core.features import FeatureError
from agent.core.recording import Recording
from agent.core.scoring import Scorer, ScoringError, open_scorer
from agent.pipeline.alarms import AlarmEvent, AlarmSettings
from agent.pipeline.robot import PipelineResult, RobotPipeline, ScoredWindow
from agent.sources.base import SampleChunk
from exporter.data import segment_one
from exporter.errors import MissingExtraError
from exporter.evaluate import (
    ScoredFile,
    alarm_episodes,
    event_metrics,
    fault_events,
    fit_baselines,
    window_features,
)
from exporter.metrics import auroc
from firmware_config.channel_map import load_builtin_map
from firmware_config.errors import FirmwareError
from firmware_config.errors import exit_code as firmware_exit_code
from firmware_config.simulator import (
    FAULT_KINDS,
    FaultSpec,
    SimulatedRun,
    SimulationConfig,
    SimulationError,
    Simulator,
    concatenate,
)

PROG = "benchmarks.sim_report"
EXIT_OK = 0
EXIT_USAGE = 2
RAPP_SCORES = ("recon", "sap", "nap")
# Bundles with a latent density (agent.core.density) also score these; older ones do not.
DENSITY_SCORES = ("density", "combined")
BASELINES = ("iforest", "pca")
SCORES = (*RAPP_SCORES, *DENSITY_SCORES)
# The recipe's training data (scripts/build_default_bundle.sh), which the baselines are fitted on.
TRAIN_SEED = 1
EVENT_TOLERANCE_S = 30.0  # an alarm up to 30 s after a fault ends is its alarm (evaluate's default)
PRECISIONS = ("fp32", "int8")
CHUNK_SAMPLES = 1000  # the streaming segmenter gives the same segments for any chunking
SIM_BLOCK = 65_536
ROBOT = "sim"
# Friction builds up over RAMP_S (the simulator default is 60 s): long enough to be a
# developing fault, short enough that the quick report also sees it fully developed.
FRICTION_RAMP_S = 30.0
COLLISION_PERIOD_S = 7.3  # one impulse every 7.3 s: not a multiple of any program's cycle
WARM_START_S = 3000.0  # joints are warm (friction ≈ nominal) after ~3 thermal time constants


@dataclass(frozen=True)
class FaultCase:
    """One fault kind as the report injects it; ``hit_axes`` count as a correct attribution."""

    kind: str
    axis: int
    hit_axes: tuple[int, ...]
    note: str = ""


# Axes chosen so every case is a joint that acts in all three programs; payload acts on every
# axis through the dynamics (the label axis is nominal), so an attribution to any of the
# gravity-loaded axes (J2, J3 and the wrist pitch J5) counts as a hit.
FAULT_CASES: tuple[FaultCase, ...] = (
    FaultCase("friction", 2, (2,), f"ramp {FRICTION_RAMP_S:g} s, severity 1 (2× friction)"),
    FaultCase("backlash", 1, (1,), "dead zone + ring at each torque reversal, severity 1"),
    FaultCase("collision", 3, (3,), f"0.1 s impulse every {COLLISION_PERIOD_S:g} s, severity 1"),
    FaultCase("payload", 2, (2, 3, 5), "workpiece lost (mode loss, severity 1); acts on J2/J3/J5"),
    FaultCase("ripple", 4, (4,), "torque ripple sin(12 q), severity 1"),
    FaultCase("sensor", 6, (6,), "channel stuck at its last reading"),
)
assert tuple(c.kind for c in FAULT_CASES) == FAULT_KINDS, "one case per simulator fault kind"


@dataclass(frozen=True)
class Timing:
    """Run lengths in seconds; ``quick`` keeps the whole report well under 40 s."""

    normal_cold_s: float
    normal_warm_s: float
    fault_run_s: float
    onset_s: float


FULL = Timing(normal_cold_s=600.0, normal_warm_s=300.0, fault_run_s=300.0, onset_s=60.0)
QUICK = Timing(normal_cold_s=180.0, normal_warm_s=90.0, fault_run_s=120.0, onset_s=30.0)
BASELINE_TRAIN_S = {False: 3600.0, True: 600.0}  # by quick


class SimReportError(AgentRuntimeError, RuntimeError):
    """A bundle the simulator cannot feed (channels, sample rate) or a run without windows."""


@dataclass
class RunScores:
    """Every scored window of one simulated run, for one artifact precision."""

    recon: np.ndarray
    sap: np.ndarray
    nap: np.ndarray
    score: np.ndarray
    top_axis: np.ndarray  # 1-based axis of the channel ranked first by the attribution
    end_s: np.ndarray  # simulation time of each window's last sample
    label: np.ndarray  # fault code present in the window (0 = none)
    threshold: float
    raises_s: list[float] = field(default_factory=list)  # window end time of each raise
    raise_axes: list[int] = field(default_factory=list)  # axis each raise names first
    alarm: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # state after window
    spans: list[tuple[int, int]] = field(default_factory=list)  # (start, stop) sample indices
    # density/combined (bundles that carry them) and the baselines, by score name
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray | None:
        if name in RAPP_SCORES:
            return getattr(self, name)
        return self.extra.get(name)


# --------------------------------------------------------------------------- simulation


def simulate_span(config: SimulationConfig, start_s: float, seconds: float) -> SimulatedRun:
    """Samples [start_s, start_s + seconds) of an endless run (the simulator is exact in any
    chunking, so a warm-joint stretch costs only its own samples)."""
    simulator = Simulator(config)
    rate = config.sample_rate_hz
    first, count = round(start_s * rate), round(seconds * rate)
    parts = [
        simulator.chunk(pos, min(SIM_BLOCK, first + count - pos))
        for pos in range(first, first + count, SIM_BLOCK)
    ]
    return concatenate(parts)


def fault_specs(case: FaultCase, timing: Timing) -> tuple[FaultSpec, ...]:
    if case.kind == "collision":
        times = np.arange(timing.onset_s, timing.fault_run_s - 1.0, COLLISION_PERIOD_S)
        return tuple(FaultSpec("collision", case.axis, float(t)) for t in times)
    if case.kind == "friction":
        return (FaultSpec("friction", case.axis, timing.onset_s, ramp_s=FRICTION_RAMP_S),)
    return (FaultSpec(case.kind, case.axis, timing.onset_s),)


def sim_config(
    seed: int, program: int, rate: int, faults: tuple[FaultSpec, ...] = ()
) -> SimulationConfig:
    """Nuisances on (the simulator's defaults): they are normal behaviour the model must pass."""
    return SimulationConfig(
        seed=seed,
        duration_s=None,
        sample_rate_hz=rate,
        schedule=((program, 1),),
        faults=faults,
    )


# --------------------------------------------------------------------------- scoring


def column_index(run: SimulatedRun, bundle: Bundle) -> np.ndarray:
    wanted = bundle.manifest.input.channels
    missing = [c for c in wanted if c not in run.channels]
    if missing:
        raise SimReportError(
            f"bundle {bundle.bundle_id!r} needs channels {missing}; the simulated arm has "
            f"{', '.join(run.channels)} — sim-report only evaluates bundles for that channel map"
        )
    return np.array([run.channels.index(c) for c in wanted], dtype=np.int64)


def alarm_settings(bundle: Bundle) -> AlarmSettings:
    """The bundle's alarm defaults, as `rapp-agent score` and the daemon apply them."""
    return AlarmSettings.from_bundle(bundle.manifest.alarm)


def replay(
    pipeline: RobotPipeline, blocks: Iterable[SimulatedRun], columns: np.ndarray
) -> Iterator[PipelineResult]:
    """Feed consecutive stretches of one simulation to ``pipeline`` in frame-sized chunks,
    as the daemon's source would; one result per chunk. Sample indices (``seq_*`` and the
    windows' ``start``/``stop``) count from the first block's first sample."""
    first = 0
    for block in blocks:
        samples = block.currents[:, columns]
        for lo in range(0, block.n_samples, CHUNK_SAMPLES):
            hi = min(block.n_samples, lo + CHUNK_SAMPLES)
            yield pipeline.process(
                SampleChunk(
                    samples=samples[lo:hi],
                    cycle_start=block.cycle_start[lo:hi],
                    program=block.program_id[lo:hi].astype(np.int64),
                    seq_first=first + lo,
                    seq_last=first + hi - 1,
                    # simulation time stands in for the wall clock
                    wall_time=float(block.time_s[hi - 1]),
                    received_monotonic=time.monotonic(),
                )
            )
        first += block.n_samples


def score_run(scorer: Scorer, run: SimulatedRun, columns: np.ndarray) -> RunScores:
    """Stream a run through a fresh RobotPipeline, exactly as the daemon would see it."""
    bundle = scorer.bundle
    pipeline = RobotPipeline(ROBOT, [scorer], alarm_settings(bundle))
    rate = run.sample_rate_hz
    t0 = float(run.time_s[0])
    windows: list[ScoredWindow] = []
    raises: list[AlarmEvent] = []
    for result in replay(pipeline, [run], columns):
        windows += result.windows
        raises += [e for e in result.events if e.kind == "raise"]
    if not windows:
        raise SimReportError(
            f"no window was scored in {run.n_samples / rate:g} s of simulation (segmentation "
            f"{bundle.manifest.input.segmentation.to_json()}, programs "
            f"{list(bundle.manifest.programs) or 'any'}); the bundle does not fit this arm"
        )
    # Axis of each channel from the simulated arm's own map (the report only feeds that arm).
    axis_of = {c.name: c.axis for c in load_builtin_map().channels}
    extra = {
        name: np.array([getattr(w, name) for w in windows], dtype=np.float64)
        for name in DENSITY_SCORES
        if windows[0].density is not None
    }
    return RunScores(
        recon=np.array([w.recon for w in windows]),
        sap=np.array([w.sap for w in windows]),
        nap=np.array([w.nap for w in windows]),
        score=np.array([w.score for w in windows]),
        top_axis=np.array(
            [axis_of.get(max(w.contributions, key=w.contributions.get), 0) for w in windows]
        ),
        end_s=t0 + np.array([(w.stop - 1) / rate for w in windows]),
        label=np.array([int(run.fault[w.start : w.stop].max()) for w in windows]),
        threshold=windows[0].threshold,
        raises_s=[e.span_end for e in raises],
        raise_axes=[
            axis_of.get(e.contributions[0].channel, 0) if e.contributions else 0 for e in raises
        ],
        alarm=np.array([w.alarm_active for w in windows], dtype=bool),
        spans=[(w.start, w.stop) for w in windows],
        extra=extra,
    )


def as_recording(run: SimulatedRun, columns: np.ndarray, name: str) -> Recording:
    """A simulated run as the recording `rapp-export` would read from its CSV."""
    return Recording(
        path=Path(name),
        channels=tuple(run.channels[c] for c in columns),
        samples=run.currents[:, columns],
        time_s=run.time_s,
        cycle_start=run.cycle_start,
        program_id=run.program_id.astype(np.int64),
        gap_before=None,
        labels=run.fault_labels(),
    )


# --------------------------------------------------------------------------- baselines


def fit_baseline_detectors(
    bundle: Bundle, program: int, rate_hz: int, seconds: float
) -> dict[str, Any] | None:
    """IsolationForest and PCA fitted on the recipe's training windows (TRAIN_SEED, from a
    cold start), in the bundle's normalization and features; None without scikit-learn."""
    run = simulate_span(sim_config(TRAIN_SEED, program, rate_hz), 0.0, seconds)
    recording = as_recording(run, column_index(run, bundle), f"simulator seed {TRAIN_SEED}")
    part = segment_one(bundle.manifest.input, bundle.normalization, recording)
    programs = bundle.manifest.programs
    keep = np.isin(part.program, programs) if programs else np.ones(len(part.program), bool)
    try:
        return fit_baselines(part.features[keep], seed=0)
    except MissingExtraError as err:
        print(f"sim-report: {err}; no baselines", file=sys.stderr)
        return None


def add_baselines(
    bundle: Bundle,
    detectors: dict[str, Any],
    run: SimulatedRun,
    columns: np.ndarray,
    per_precision: dict[str, RunScores],
) -> None:
    """Score the windows each precision scored (the same spans) with the baselines."""
    recording = as_recording(run, columns, "simulated run")
    for scores in per_precision.values():
        rows = [{"start": a, "stop": b} for a, b in scores.spans]
        features = window_features(bundle, recording, rows)
        for name, detector in detectors.items():
            scores.extra[name] = np.asarray(detector(features), dtype=np.float64)


# --------------------------------------------------------------------------- metrics


def _round(value: float, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def false_alarms(scores: RunScores, seconds: float) -> dict[str, Any]:
    """Windows of a normal run at or above the threshold, and alarms the tracker raised."""
    return {
        "seconds": seconds,
        "windows": len(scores.score),
        "above_threshold": _round(float(np.mean(scores.score >= scores.threshold))),
        "alarms_raised": len(scores.raises_s),
        "max_score_over_threshold": _round(float(scores.score.max() / scores.threshold)),
    }


def fault_metrics(
    case: FaultCase, normal: Sequence[RunScores], faulted: RunScores, onset_s: float
) -> dict[str, Any]:
    pos = faulted.label > 0
    if not pos.any():
        raise SimReportError(f"{case.kind}: no scored window holds the fault; run longer")
    out: dict[str, Any] = {"n_faulted": int(pos.sum()), "n_normal": 0}
    for name in (*SCORES, *BASELINES):
        runs = [*normal, faulted]
        if any(r.get(name) is None for r in runs):
            out[f"auroc_{name}"] = None  # a bundle without density, or no scikit-learn
            continue
        neg = np.concatenate([n.get(name) for n in normal])
        out["n_normal"] = len(neg)
        values = np.r_[neg, faulted.get(name)[pos]]
        labels = np.r_[np.zeros(len(neg)), np.ones(int(pos.sum()))]
        out[f"auroc_{name}"] = _round(auroc(values, labels))
    out["attribution_hit"] = _round(float(np.isin(faulted.top_axis[pos], case.hit_axes).mean()), 3)
    # What an operator sees: faulted windows at or above the threshold (the ones alarms are
    # made of), and the axis each raised alarm names first.
    alarm_windows = pos & (faulted.score >= faulted.threshold)
    out["attribution_hit_alarm_windows"] = (
        _round(float(np.isin(faulted.top_axis[alarm_windows], case.hit_axes).mean()), 3)
        if alarm_windows.any()
        else None
    )
    out["n_alarm_windows"] = int(alarm_windows.sum())
    raised = [a for t, a in zip(faulted.raises_s, faulted.raise_axes, strict=True) if t >= onset_s]
    out["alarm_axes"] = [f"J{a}" for a in raised]
    top = np.bincount(faulted.top_axis[pos], minlength=7)[1:]
    out["top_axis_counts"] = {f"J{i + 1}": int(c) for i, c in enumerate(top)}
    out["detected"] = _round(float(np.mean(faulted.score[pos] >= faulted.threshold)), 3)
    after = [t for t in faulted.raises_s if t >= onset_s]
    out["alarm_delay_s"] = _round(after[0] - onset_s, 2) if after else None
    out["alarms_before_onset"] = sum(1 for t in faulted.raises_s if t < onset_s)
    return out


def scored_file(name: str, run: SimulatedRun, columns: np.ndarray, scores: RunScores) -> ScoredFile:
    """A scored run as `rapp-export evaluate` holds a scored recording: its fault events
    (runs of labelled samples) and its alarm episodes (raise → clear, from the per-window
    alarm state the tracker left)."""
    events = fault_events(as_recording(run, columns, name), run.time_s)
    rows = [
        {"alarm": bool(a), "time_end_s": float(t)}
        for a, t in zip(scores.alarm, scores.end_s, strict=True)
    ]
    return ScoredFile(
        path=Path(name),
        group="+".join(sorted({e.label for e in events})) or "normal",
        duration_s=run.n_samples / run.sample_rate_hz,
        anomalous=scores.label > 0,
        scores={},
        features=np.zeros((len(rows), 0)),
        events=events,
        episodes=alarm_episodes(rows, float(run.time_s[-1])),
    )


def alarm_event_metrics(normal: Sequence[ScoredFile], faulted: ScoredFile) -> dict[str, Any]:
    """Event precision/recall, delay and false alarms per hour of the normal runs, counted by
    `rapp-export evaluate`'s rules (``exporter.evaluate.event_metrics``)."""
    m = event_metrics([*normal, faulted], EVENT_TOLERANCE_S)
    delay = m["delay_s"]
    return {
        "events": m["events"],
        "detected": m["detected"],
        "recall": _round(m["recall"], 3) if m["recall"] is not None else None,
        "episodes": m["episodes"],
        "true_episodes": m["true_episodes"],
        "precision": _round(m["precision"], 3) if m["precision"] is not None else None,
        "alarms_per_detected_event": (
            _round(m["alarms_per_detected_event"], 3)
            if m["alarms_per_detected_event"] is not None
            else None
        ),
        "delay_s": None if delay is None else {k: _round(v, 2) for k, v in delay.items()},
        "normal_hours": _round(m["normal_hours"], 4),
        "false_alarms": m["false_alarms"],
        "false_alarms_per_hour": _round(m["false_alarms_per_hour"], 3)
        if m["false_alarms_per_hour"] is not None
        else None,
        "tolerance_s": EVENT_TOLERANCE_S,
    }


# --------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    """pyplot on the file-only Agg backend (no display on a build box or in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cycle_span(run: SimulatedRun, want_label: bool) -> tuple[int, int]:
    """Sample range of the last complete cycle (with a labelled sample when asked)."""
    starts = np.flatnonzero(run.cycle_start)
    spans = list(itertools.pairwise(starts.tolist()))
    for a, b in reversed(spans):
        if not want_label or run.fault[a:b].any():
            return int(a), int(b)
    return (int(spans[-1][0]), int(spans[-1][1])) if spans else (0, run.n_samples)


def plot_currents(
    path: Path, case: FaultCase, faulted: SimulatedRun, normal_twin: SimulatedRun
) -> None:
    """Normal vs faulted currents per axis over one cycle; ``normal_twin`` is the same cycle
    simulated without the fault (same seed, so every nuisance draw is shared and the
    difference is the fault alone)."""
    plt = _pyplot()
    a, b = _cycle_span(faulted, want_label=True)
    t = faulted.time_s[a:b] - faulted.time_s[a]
    fig, axes = plt.subplots(2, 3, figsize=(12, 5.5), sharex=True)
    for j, ax in enumerate(axes.flat):
        ax.plot(t, normal_twin.currents[:, j], lw=0.9, color="tab:blue", label="normal")
        ax.plot(t, faulted.currents[a:b, j], lw=0.9, color="tab:red", alpha=0.8, label="faulted")
        title = faulted.channels[j] + ("  ← fault axis" if j + 1 == case.axis else "")
        ax.set_title(title, fontsize=9, color="tab:red" if j + 1 == case.axis else "black")
        ax.tick_params(labelsize=7)
        if j >= 3:
            ax.set_xlabel("time in cycle [s]", fontsize=8)
        if j % 3 == 0:
            ax.set_ylabel("current [A]", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    cycle_t = faulted.time_s[a]
    fig.suptitle(
        f"{case.kind} on J{case.axis}: cycle at t = {cycle_t:.1f} s ({case.note})", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_traces(
    path: Path, traces: dict[str, dict[str, RunScores]], onset_s: float, score_name: str
) -> None:
    """Score / threshold over time per fault (log scale), both precisions, alarms marked."""
    plt = _pyplot()

    kinds = list(traces)
    fig, axes = plt.subplots(len(kinds), 1, figsize=(10, 2.0 * len(kinds)), sharex=True)
    for ax, kind in zip(np.atleast_1d(axes), kinds, strict=True):
        for precision, style in (("fp32", "-"), ("int8", "--")):
            s = traces[kind].get(precision)
            if s is None:
                continue
            ratio = np.maximum(s.score / s.threshold, 1e-4)
            ax.semilogy(s.end_s, ratio, style, lw=0.9, label=f"{score_name} {precision}")
            for t in s.raises_s:
                ax.plot(t, ratio.max(), "v", color="red", ms=5)
            shade = s.label > 0
            if kind == "collision":
                for t in s.end_s[shade]:
                    ax.axvline(t, color="orange", lw=0.6, alpha=0.5)
        ax.axhline(1.0, color="black", lw=0.8, label="threshold")
        ax.axvline(onset_s, color="grey", ls=":", lw=1.2, label="onset")
        ax.set_ylabel(f"{kind}\nscore/threshold", fontsize=8)
        ax.tick_params(labelsize=7)
    first = np.atleast_1d(axes)[0]
    first.legend(fontsize=7, ncol=4, loc="upper left")
    first.set_title(
        "score traces (red ▼: alarm raised; orange: windows holding a collision)", fontsize=9
    )
    np.atleast_1d(axes)[-1].set_xlabel("simulation time [s]")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --------------------------------------------------------------------------- report text


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _same_windows_table(report: dict[str, Any]) -> list[str]:
    """NAP, density, combined and the baselines per fault: the AUROC on the same windows."""
    precisions = report["precisions"]
    names = [n for n in ("nap", *DENSITY_SCORES) if n in report["scores"]]
    label = {"nap": "NAP", "density": "density", "combined": "combined"}
    head = ["fault", "axis", *(f"{label[n]} {p}" for p in precisions for n in names)]
    baselines = report["baselines"]
    if baselines:
        head += ["IsolationForest", "PCA"]
    lines = [
        "## The same windows: NAP, combined score and baselines (AUROC)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for case in report["faults"]:
        res = case["results"]
        row = [case["kind"], f"J{case['axis']}"]
        row += [_fmt(res[p][f"auroc_{n}"]) for p in precisions for n in names]
        if baselines:
            first = res[precisions[0]]
            row += [_fmt(first["auroc_iforest"]), _fmt(first["auroc_pca"])]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    if baselines:
        lines.append(
            f"IsolationForest and PCA (95 % variance) fitted on {baselines['fitted_on']}; "
            "scored on exactly the windows the bundle scored."
        )
    else:
        lines.append("No baselines: scikit-learn is not installed.")
    if "combined" not in names:
        lines.append(
            "The bundle carries no latent density, so there is no density or combined column."
        )
    return lines


def _events_table(report: dict[str, Any]) -> list[str]:
    """Alarm events per fault and precision, by `rapp-export evaluate`'s rules."""
    head = [
        "fault",
        "precision",
        "events",
        "detected (recall)",
        "alarm episodes (true)",
        "event precision",
        "delay mean / max s",
        "false alarms/h (normal runs)",
    ]
    lines = [
        "## Alarm events (the bundle's alarm score and alarm defaults)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for case in report["faults"]:
        for p in report["precisions"]:
            e = case["results"][p]["events"]
            delay = e["delay_s"]
            lines.append(
                f"| {case['kind']} | {p} | {e['events']} | {e['detected']} ({_fmt(e['recall'], 2)})"
                f" | {e['episodes']} ({e['true_episodes']}) | {_fmt(e['precision'], 2)} | "
                + (f"{delay['mean']:.1f} / {delay['max']:.1f}" if delay else "–")
                + f" | {_fmt(e['false_alarms_per_hour'], 2)} ({e['false_alarms']} in "
                f"{e['normal_hours']:.2f} h) |"
            )
    lines += [
        "",
        "An event is a maximal run of labelled samples (each collision impulse is one); an alarm "
        "episode runs from raise to clear; it is true when it is active within "
        f"[event start, event end + {EVENT_TOLERANCE_S:g} s] of an event of its run; delay = "
        "raise − event start (0 when an alarm was already up). False alarms per hour: episodes "
        "on the normal runs over their hours.",
    ]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    precisions = report["precisions"]
    b = report["bundle"]
    lines = [
        f"# Simulator detection report — bundle `{b['id']}` v{b['version']}",
        "",
        f"Bundle: `{b['path']}` ({b['size_bytes']} bytes, sha256 `{b['sha256'][:16]}…`), "
        f"segmentation `{json.dumps(b['segmentation'])}`, features {b['features']}, "
        f"layers {b['layer_sizes']}, programs {b['programs'] or 'any'}.",
        f"Simulation: program {report['program']}, seed {report['seed']}, "
        f"{'quick' if report['quick'] else 'full'} mode; nuisances on (warm-up drift, payload "
        f"±5 %, speed override ±5 %). Normal: {report['timing']['normal_cold_s']:g} s from a cold "
        f"start + {report['timing']['normal_warm_s']:g} s of warm joints; each faulted run "
        f"{report['timing']['fault_run_s']:g} s with onset at {report['timing']['onset_s']:g} s. "
        f"Scored through `RobotPipeline` (the daemon's segmenter, scorer and alarm tracker); "
        f"alarm score `{report['alarm']['score']}`, EWMA α {report['alarm']['ewma_alpha']}, "
        f"debounce {report['alarm']['debounce_k']} of {report['alarm']['debounce_n']}.",
        "",
        "## AUROC per fault (normal windows vs faulted windows after onset)",
        "",
    ]
    head = ["fault", "axis", "faulted/normal"]
    for p in precisions:
        head += [f"Recon {p}", f"SAP {p}", f"NAP {p}"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in report["faults"]:
        first = case["results"][precisions[0]]
        row = [case["kind"], f"J{case['axis']}", f"{first['n_faulted']}/{first['n_normal']}"]
        for p in precisions:
            r = case["results"][p]
            row += [_fmt(r["auroc_recon"]), _fmt(r["auroc_sap"]), _fmt(r["auroc_nap"])]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *_same_windows_table(report), "", *_events_table(report)]
    lines += ["", "## Attribution and alarms per fault", ""]
    head = ["fault", "axis"]
    head += [f"top axis hit {p}" for p in precisions]
    head += [f"hit in alarm windows {p}" for p in precisions]
    head += [f"detected {p}" for p in precisions]
    head += [f"alarm delay {p} [s]" for p in precisions]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in report["faults"]:
        results = [case["results"][p] for p in precisions]
        row = [case["kind"], f"J{case['axis']}"]
        row += [_fmt(r["attribution_hit"], 2) for r in results]
        row += [
            f"{_fmt(r.get('attribution_hit_alarm_windows'), 2)} ({r.get('n_alarm_windows', 0)})"
            for r in results
        ]
        row += [_fmt(r["detected"], 2) for r in results]
        row += [_fmt(r["alarm_delay_s"], 1) for r in results]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "*top axis hit*: share of faulted windows whose attribution ranks the faulted axis first "
        "(payload: any of J2/J3/J5); *hit in alarm windows*: the same over faulted windows "
        "at or above the threshold (their count in brackets). *detected*: share of faulted "
        "windows with the alarm score ≥ threshold. *alarm delay*: onset → end of the window "
        "that raised the first alarm (– = no alarm in the run).",
        "",
        "## False alarms on normal data (nuisances on)",
        "",
        "| run | precision | seconds | windows | above threshold | alarms raised "
        "| max score/threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for run, per in report["normal"].items():
        for p in precisions:
            r = per[p]
            lines.append(
                f"| {run} | {p} | {r['seconds']:g} | {r['windows']} | "
                f"{_fmt(r['above_threshold'], 4)} | {r['alarms_raised']} | "
                f"{_fmt(r['max_score_over_threshold'], 2)} |"
            )
    lines += ["", "## Notes", ""]
    lines += [f"- {c['kind']}: {c['note']}" for c in report["faults"]]
    lines += [
        "",
        "Plots: " + ", ".join(f"`{p}`" for p in report["plots"]),
        "",
        f"Runtime {report['elapsed_s']:.1f} s.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- command


def run_report(
    bundle_path: Path, out_dir: Path, seed: int = 0, quick: bool = False, backend: str = "auto"
) -> dict[str, Any]:
    """Simulate, score and write the report; returns the report dictionary."""
    started = time.monotonic()
    timing = QUICK if quick else FULL
    data = Path(bundle_path).read_bytes()
    bundle = load_bundle(data)
    manifest = bundle.manifest
    program = min(manifest.programs) if manifest.programs else 1
    rate = manifest.input.sample_rate_hz
    if abs(rate - round(rate)) > 1e-9:
        raise SimReportError(f"bundle sample rate {rate:g} Hz: the simulator needs whole Hz")
    rate_hz = round(rate)
    scorers: dict[str, Scorer] = {}
    for precision in PRECISIONS:
        try:
            scorers[precision] = open_scorer(bundle, backend, precision)
        except ScoringError as err:
            if "no usable backend" not in str(err):
                raise
    if not scorers:
        raise SimReportError(f"{bundle_path}: no artifact of this bundle runs here ({backend})")

    out_dir.mkdir(parents=True, exist_ok=True)
    # Seeds far from the ones build_default_bundle.sh trains (1) and calibrates (2) on.
    normal_runs = {
        "cold start": simulate_span(
            sim_config(seed + 101, program, rate_hz), 0.0, timing.normal_cold_s
        ),
        "warm joints": simulate_span(
            sim_config(seed + 102, program, rate_hz), WARM_START_S, timing.normal_warm_s
        ),
    }
    columns = column_index(next(iter(normal_runs.values())), bundle)
    detectors = fit_baseline_detectors(bundle, program, rate_hz, BASELINE_TRAIN_S[quick])
    normal_scores = {
        name: {p: score_run(s, run, columns) for p, s in scorers.items()}
        for name, run in normal_runs.items()
    }
    normal_files: dict[str, list[ScoredFile]] = {p: [] for p in scorers}
    for name, run in normal_runs.items():
        if detectors:
            add_baselines(bundle, detectors, run, columns, normal_scores[name])
        for p in scorers:
            normal_files[p].append(scored_file(name, run, columns, normal_scores[name][p]))
    faults: list[dict[str, Any]] = []
    traces: dict[str, dict[str, RunScores]] = {}
    plots: list[str] = []
    for i, case in enumerate(FAULT_CASES):
        specs = fault_specs(case, timing)
        config = sim_config(seed + 111 + i, program, rate_hz, specs)
        run = simulate_span(config, 0.0, timing.fault_run_s)
        scored = {p: score_run(s, run, columns) for p, s in scorers.items()}
        if detectors:
            add_baselines(bundle, detectors, run, columns, scored)
        traces[case.kind] = scored
        results = {
            p: fault_metrics(
                case, [normal_scores[n][p] for n in normal_scores], scored[p], timing.onset_s
            )
            | {
                "events": alarm_event_metrics(
                    normal_files[p], scored_file(case.kind, run, columns, scored[p])
                )
            }
            for p in scorers
        }
        faults.append(
            {
                "kind": case.kind,
                "axis": case.axis,
                "hit_axes": list(case.hit_axes),
                "note": case.note,
                "onsets_s": [f.onset_s for f in specs],
                "results": results,
            }
        )
        try:
            a, b = _cycle_span(run, want_label=True)
            twin = simulate_span(
                sim_config(seed + 111 + i, program, rate_hz), a / rate_hz, (b - a) / rate_hz
            )
            name = f"currents_{case.kind}.png"
            plot_currents(out_dir / name, case, run, twin)
            plots.append(name)
        except ImportError:
            pass
    try:
        plot_traces(out_dir / "score_traces.png", traces, timing.onset_s, manifest.alarm.score)
        plots.append("score_traces.png")
    except ImportError:
        print("sim-report: matplotlib is not installed; no plots", file=sys.stderr)

    normal_runs_s = {"cold start": timing.normal_cold_s, "warm joints": timing.normal_warm_s}
    report: dict[str, Any] = {
        "bundle": {
            "path": str(bundle_path),
            "id": manifest.bundle_id,
            "version": manifest.bundle_version,
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "segmentation": manifest.input.segmentation.to_json(),
            "features": list(manifest.input.features),
            "layer_sizes": list(manifest.layer_sizes),
            "programs": list(manifest.programs),
            "artifacts": {p: s.artifact.id for p, s in scorers.items()},
            "thresholds": {p: s.thresholds for p, s in scorers.items()},
        },
        "program": program,
        "seed": seed,
        "quick": quick,
        "timing": timing.__dict__,
        "alarm": manifest.alarm.__dict__,
        "precisions": list(scorers),
        "scores": [
            n for n in SCORES if faults[0]["results"][next(iter(scorers))][f"auroc_{n}"] is not None
        ],
        "baselines": None
        if detectors is None
        else {
            "names": list(BASELINES),
            "fitted_on": f"simulator seed {TRAIN_SEED}, program {program}, 0–"
            f"{BASELINE_TRAIN_S[quick]:g} s from a cold start, nuisances on (the default "
            "recipe's training data), in the bundle's normalization and features",
        },
        "faults": faults,
        "normal": {
            name: {p: false_alarms(s, normal_runs_s[name]) for p, s in per.items()}
            for name, per in normal_scores.items()
        },
        "plots": plots,
    }
    report["elapsed_s"] = round(time.monotonic() - started, 2)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report))
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {PROG}", description=(__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--bundle", required=True, type=Path, help="bundle to evaluate (.rapp)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--seed", type=int, default=0, help="base simulator seed (default 0)")
    p.add_argument("--quick", action="store_true", help="shorter runs (< 40 s; for tests)")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "litert"], default="auto")
    return p


def run(args: argparse.Namespace) -> int:
    """Run the report for parsed arguments; 0 ok, 2 bad input, 1 failure."""
    if args.seed < 0:
        print(f"{PROG}: --seed {args.seed}: must be ≥ 0", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = run_report(args.bundle, args.out, args.seed, args.quick, args.backend)
    except OSError as err:
        print(f"{PROG}: {args.bundle}: {err.strerror or err}", file=sys.stderr)
        return EXIT_USAGE
    except (BundleError, FeatureError, SimulationError, SimReportError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (AgentError, FirmwareError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
        return agent_exit_code(err) if isinstance(err, AgentError) else firmware_exit_code(err)
    print((args.out / "report.md").read_text())
    print(f"sim-report: wrote {args.out}/report.md, report.json and {len(report['plots'])} plots")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
