"""Alarms an operator would see on long healthy simulator runs, and on one fault episode.

Run from the repository root (:mod:`benchmarks.quality` runs it for ``make bench``)::

    .venv/bin/python -m benchmarks.sim_healthy [--bundle agent/data/default.rapp]
        [--out benchmarks/results] [--seeds 11,12,13,14,15] [--hours 2]
        [--schedule 1:30,2:20,3:20] [--cache DIR] [--precision int8] [--quick]

**Healthy runs.** Per seed (none of them the recipe's training seed 1 or calibration seed 2)
one continuous run from a cold start — the warm-up drift of the joints, payload and speed
override nuisances on — whose program changes by the schedule (default 30 cycles of program
1, 20 of program 2, 20 of program 3, repeated: a change every 2–2.5 min). It streams through
one :class:`agent.pipeline.robot.RobotPipeline` holding the robot's model archive, exactly as
the daemon would: each window goes to the bundle serving its program, each route's
:class:`agent.pipeline.alarms.AlarmTracker` decides with the first bundle's alarm defaults
(the daemon's rule). A program no bundle serves is never scored (the archive counts it as
unknown), so for a schedule with programs the bundle under test does not serve, a bundle per
missing program is built with the default recipe (``scripts/build_default_bundle.sh``: seed 1
0–3600 s for training, seed 2 0–2400 s for calibration, the same training and build flags) and
the bundle's own input spec and layer sizes (one robot's bundles must share the input spec),
and kept in a cache directory keyed by what they are made of (the bundle's spec, the program,
the recipe and a hash of the exporter, simulator and agent-core code). Every alarm raised
counts as false: the report gives alarms per seed, false alarms per hour and the 95 % upper
bound of the rate (Poisson; 0 alarms in T hours bound it at 3.0 / T).

**One fault episode.** Per fault kind and seed a run on warm joints of the bundle's program:
120 s normal, the fault for 60 s as :mod:`benchmarks.sim_report` injects it (a collision: a
0.1 s impulse every 7.3 s; and, as its own case, one lone impulse), 180 s normal. Counted:
raises and clears, the delay to the raise, and how long the alarm stays after the fault ended,
in *debounce windows* (the alarm's hold: ``debounce_n`` scored windows, or the bundle's clear
windows where they are more, as for fixed windows) — the windows that
start after the fault's last sample, up to the one that cleared. The target: exactly one raise
and one clear, and the clear within 2 debounce windows.

Output: ``<out>/sim_healthy.json`` and ``<out>/sim_healthy.md``. ``--quick`` (CI smoke, well
under 2 min on 2 cores with a cold cache): one seed, 10 min, programs 1 and 2 (the program-2
bundle trained 5 epochs on 300 s), two fault kinds; its numbers check the harness, not the
model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.bundle import Bundle, load_bundle
from agent.core.errors import AgentRuntimeError
from agent.core.scoring import Scorer, open_scorer
from agent.pipeline.alarms import AlarmEvent, AlarmSettings
from agent.pipeline.robot import RobotPipeline, ScoredWindow
from benchmarks.common import (
    RESULTS,
    ROOT,
    BenchmarkError,
    machine_lines,
    md_table,
    report_main,
)
from benchmarks.sim_report import (
    COLLISION_PERIOD_S,
    FAULT_CASES,
    FRICTION_RAMP_S,
    ROBOT,
    SIM_BLOCK,
    TRAIN_SEED,
    WARM_START_S,
    FaultCase,
    column_index,
    replay,
    sim_config,
    simulate_span,
)
from firmware_config.channel_map import load_builtin_map
from firmware_config.simulator import FaultSpec, SimulationConfig, SimulationError, Simulator
from firmware_config.simulator.config import parse_schedule
from firmware_config.simulator.export import write_csv

PROG = "benchmarks.sim_healthy"
SHIPPED_BUNDLE = ROOT / "agent" / "data" / "default.rapp"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rapp-edge"
CALIBRATION_SEED = 2  # the recipe's held-out calibration run
CONFIDENCE = 0.95
CLEAR_LIMIT_DEBOUNCE_WINDOWS = 2
TARGET_HOURS, TARGET_SEEDS = 2.0, 5
CODE_FOLDERS = ("exporter", "firmware_config/simulator", "agent/core")


@dataclass(frozen=True)
class Recipe:
    """The default recipe's data and flags (scripts/build_default_bundle.sh), for the bundles of
    the programs the bundle under test does not serve."""

    train_s: float = 3600.0
    calibration_s: float = 2400.0
    piece_s: float = 600.0  # CSV pieces (rapp-export holds a file's rows as Python strings)
    epochs: int = 200
    patience: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0


@dataclass(frozen=True)
class Plan:
    seeds: tuple[int, ...]
    seconds: float
    schedule: tuple[tuple[int, int], ...]
    fault_kinds: tuple[str, ...]
    recipe: Recipe
    lead_s: float = 120.0
    episode_s: float = 60.0
    tail_s: float = 180.0


FULL = Plan(
    seeds=(11, 12, 13, 14, 15),
    seconds=TARGET_HOURS * 3600.0,
    schedule=((1, 30), (2, 20), (3, 20)),
    fault_kinds=tuple(c.kind for c in FAULT_CASES),  # the collision both ways
    recipe=Recipe(),
)
QUICK = Plan(
    seeds=(11,),
    seconds=600.0,
    schedule=((1, 10), (2, 10)),
    fault_kinds=("collision", "payload"),
    recipe=Recipe(train_s=300.0, calibration_s=200.0, piece_s=300.0, epochs=5, patience=5),
)


ONE_IMPULSE = "one 0.1 s impulse"
# Every simulated fault kind as sim_report injects it (a collision: an impulse every 7.3 s),
# and a lone collision impulse besides: a fault that one window alone holds.
EPISODE_CASES = (
    *FAULT_CASES,
    FaultCase("collision", 3, (3,), ONE_IMPULSE),
)


class SimHealthyError(AgentRuntimeError, BenchmarkError):
    """A bundle the simulator cannot feed, or a program bundle that cannot join its archive."""


# --------------------------------------------------------------------------- statistics


def poisson_upper_rate(count: int, hours: float, confidence: float = CONFIDENCE) -> float:
    """One-sided upper confidence bound of an event rate per hour after ``count`` events in
    ``hours``: the λ with P(N ≤ count | λ) = 1 − confidence, over ``hours``."""

    def cdf(lam: float) -> float:
        # In logs: e^-λ underflows above ~745 alarms, and the bound would fall below the count.
        if lam <= 0.0:
            return 1.0
        logs = [i * math.log(lam) - lam - math.lgamma(i + 1) for i in range(count + 1)]
        top = max(logs)
        return math.exp(top) * math.fsum(math.exp(v - top) for v in logs)

    lo, hi = 0.0, count + 10.0 + 10.0 * math.sqrt(count + 1)
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) > 1 - confidence else (lo, mid)
    return hi / hours


# --------------------------------------------------------------------------- the archive


def code_fingerprint() -> str:
    """Hash of the code a program bundle is made with (exporter, simulator, agent core): a
    cached bundle from other code would be compared with a bundle it was not built like."""
    digest = hashlib.sha256()
    for folder in CODE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _recipe_key(bundle: Bundle, program: int, recipe: Recipe, code: str) -> str:
    """What a program bundle is made of: the recipe, the program, the code and what it takes
    from the bundle under test (a rebuilt bundle with the same spec reuses the cached ones)."""
    m = bundle.manifest
    made_of = {
        "code": code,
        "program": program,
        "recipe": asdict(recipe),
        "input": m.raw.get("input"),
        "layer_sizes": list(m.layer_sizes),
        "alarm": [m.alarm.score, m.alarm.threshold_quantile],
        "id": [m.bundle_id, m.bundle_version, m.robot],
        "producer": m.producer,
    }
    text = json.dumps(made_of, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_pieces(seed: int, program: int, seconds: float, piece_s: float, folder: Path) -> list:
    """One continuous run from a cold start, as CSV pieces of ``piece_s``."""
    config = sim_config(seed, program, 1000)
    channel_map = load_builtin_map()
    paths = []
    for i, start in enumerate(np.arange(0.0, seconds, piece_s)):
        path = folder / f"seed{seed}-{i:02d}.csv"
        write_csv(
            [simulate_span(config, float(start), min(piece_s, seconds - start))], path, channel_map
        )
        paths.append(str(path))
    return paths


def run_exporter(*args: str) -> None:
    cmd = [sys.executable, "-m", "exporter.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise SimHealthyError(
            f"rapp-export {args[0]} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        )


def train_args(bundle: Bundle, recipe: Recipe) -> list[str]:
    """`rapp-export train` flags: the bundle's input spec and layers, the recipe's training."""
    m = bundle.manifest
    spec, seg = m.input, m.input.segmentation
    args = [
        "--channels",
        ",".join(spec.channels),
        "--units",
        ",".join(spec.units),
        "--sample-rate",
        f"{spec.sample_rate_hz:g}",
        "--segmentation",
        seg.kind,
        "--window",
        str(seg.length),
        "--features",
        ",".join(spec.features),
        "--layers",
        str(len(m.layer_sizes) - 1),
        "--bottleneck",
        str(m.layer_sizes[-1]),
        "--epochs",
        str(recipe.epochs),
        "--patience",
        str(recipe.patience),
        "--batch-size",
        str(recipe.batch_size),
        "--lr",
        f"{recipe.lr:g}",
        "--seed",
        str(recipe.seed),
        "--quiet",
    ]
    if seg.kind == "window":
        return [*args, "--hop", str(seg.hop)]
    return [*args, "--min-cycle", str(seg.min_samples), "--max-cycle", str(seg.max_samples)]


def build_program_bundle(bundle: Bundle, program: int, recipe: Recipe, target: Path) -> None:
    """Train and build the bundle of ``program`` with the recipe into ``target``."""
    m = bundle.manifest
    if m.input.sample_rate_hz != 1000:
        raise SimHealthyError(
            f"bundle sample rate {m.input.sample_rate_hz:g} Hz: the recipe is 1 kHz"
        )
    with tempfile.TemporaryDirectory(prefix="rapp-sim-healthy-") as tmp:
        work = Path(tmp)
        (work / "train").mkdir()
        (work / "calib").mkdir()
        train = write_pieces(TRAIN_SEED, program, recipe.train_s, recipe.piece_s, work / "train")
        calib = write_pieces(
            CALIBRATION_SEED, program, recipe.calibration_s, recipe.piece_s, work / "calib"
        )
        run_exporter(
            "train", "--data", *train, *train_args(bundle, recipe), "--out", str(work / "m")
        )
        out = work / "program.rapp"
        run_exporter(
            "build",
            "--model",
            str(work / "m"),
            "--calibration",
            *calib,
            "--out",
            str(out),
            "--bundle-id",
            f"{m.bundle_id}-program{program}",
            "--bundle-version",
            m.bundle_version,
            "--robot",
            m.robot,
            "--program",
            str(program),
            "--quantile",
            f"{m.alarm.threshold_quantile:g}",
            "--alarm-score",
            m.alarm.score,
            "--seed",
            str(recipe.seed),
            "--quiet",
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_target = target.with_suffix(".tmp")
        tmp_target.write_bytes(out.read_bytes())
        tmp_target.replace(target)


def program_bundles(
    bundle: Bundle, schedule: Sequence[tuple[int, int]], recipe: Recipe, cache: Path
) -> dict[int, dict[str, Any]]:
    """Bundles for the scheduled programs the bundle under test does not serve (none when it
    serves every program), built once and cached; program → {path, cached, seconds}."""
    served = set(bundle.manifest.programs)
    if not served:
        return {}
    out: dict[int, dict[str, Any]] = {}
    code = code_fingerprint()
    for program in sorted({p for p, _ in schedule} - served):
        path = cache / f"program{program}-{_recipe_key(bundle, program, recipe, code)}.rapp"
        started, cached = time.monotonic(), path.is_file()
        if not cached:
            print(f"sim-healthy: building the program-{program} bundle into {path}", flush=True)
            build_program_bundle(bundle, program, recipe, path)
        other = load_bundle(path.read_bytes())
        if other.manifest.input != bundle.manifest.input:
            raise SimHealthyError(
                f"{path}: its input spec differs from the bundle's; one robot's bundles must "
                "share channels and segmentation (delete the cached file to rebuild)"
            )
        out[program] = {
            "path": str(path),
            "bundle": other,
            "cached": cached,
            "seconds": round(time.monotonic() - started, 1),
            "layer_sizes": list(other.manifest.layer_sizes),
        }
    return out


# --------------------------------------------------------------------------- healthy runs


def program_blocks(config: SimulationConfig, start_s: float, seconds: float) -> Iterator:
    """A run as consecutive SIM_BLOCK-sample stretches (never held in memory at once)."""
    simulator = Simulator(config)
    rate = config.sample_rate_hz
    first, count = round(start_s * rate), round(seconds * rate)
    for pos in range(first, first + count, SIM_BLOCK):
        yield simulator.chunk(pos, min(SIM_BLOCK, first + count - pos))


@dataclass
class Tally:
    """What one healthy run showed, window by window."""

    windows: Counter
    above: Counter
    max_ratio: dict[int, float]
    raises: list[dict[str, Any]]
    clears: int = 0
    program_changes: int = 0

    def add_window(self, w: ScoredWindow) -> None:
        ratio = w.score / w.threshold
        self.windows[w.program] += 1
        self.above[w.program] += int(ratio >= 1.0)
        self.max_ratio[w.program] = max(self.max_ratio.get(w.program, 0.0), ratio)

    def add_event(self, e: AlarmEvent) -> None:
        if e.kind == "clear":
            self.clears += 1
            return
        self.raises.append(
            {
                "t_s": round(e.span_end, 2),
                "program": e.program,
                "bundle": e.model.bundle_id,
                "severity": e.severity,
                "ratio": round(e.ratio, 3),
                "top_channel": e.contributions[0].channel if e.contributions else None,
            }
        )


def healthy_run(
    scorers: Sequence[Scorer], seed: int, plan: Plan, rate_hz: int, columns: np.ndarray
) -> dict[str, Any]:
    """One long healthy run through the robot's archive; every raise is a false alarm."""
    config = SimulationConfig(
        seed=seed, duration_s=None, sample_rate_hz=rate_hz, schedule=plan.schedule
    )
    settings = AlarmSettings.from_bundle(scorers[0].bundle.manifest.alarm)
    pipeline = RobotPipeline(ROBOT, list(scorers), settings)
    tally = Tally(Counter(), Counter(), {}, [])
    last_program = -1

    def blocks() -> Iterator:
        nonlocal last_program
        for block in program_blocks(config, 0.0, plan.seconds):
            programs = block.program_id.astype(np.int64)
            tally.program_changes += int(np.count_nonzero(np.diff(programs)))
            tally.program_changes += int(last_program >= 0 and programs[0] != last_program)
            last_program = int(programs[-1])
            yield block

    started = time.monotonic()
    for result in replay(pipeline, blocks(), columns):
        for w in result.windows:
            tally.add_window(w)
        for e in result.events:
            tally.add_event(e)
    skipped = vars(pipeline.segmenter.stats)
    return {
        "seed": seed,
        "hours": plan.seconds / 3600.0,
        "program_changes": tally.program_changes,
        "windows": {str(p): n for p, n in sorted(tally.windows.items())},
        "above_threshold": {str(p): n for p, n in sorted(tally.above.items())},
        "max_score_over_threshold": {
            str(p): round(v, 3) for p, v in sorted(tally.max_ratio.items())
        },
        "not_scored": {
            "unknown_program": pipeline.stats.unknown_program,
            "cycle_length": skipped["skipped_cycle_length"],
            "gap": skipped["skipped_gap"],
            "nan": skipped["skipped_nan"],
        },
        "alarms_raised": len(tally.raises),
        "alarms_cleared": tally.clears,
        "raises": tally.raises,
        "seconds": round(time.monotonic() - started, 1),
    }


# --------------------------------------------------------------------------- fault episodes


def episode_faults(case: FaultCase, onset_s: float, episode_s: float) -> tuple[FaultSpec, ...]:
    """The fault of one episode as sim_report injects it, lasting ``episode_s``."""
    if case.kind == "collision":
        if case.note == ONE_IMPULSE:
            return (FaultSpec("collision", case.axis, onset_s),)
        times = np.arange(onset_s, onset_s + episode_s, COLLISION_PERIOD_S)
        return tuple(FaultSpec("collision", case.axis, float(t)) for t in times)
    if case.kind == "friction":
        return (
            FaultSpec("friction", case.axis, onset_s, duration_s=episode_s, ramp_s=FRICTION_RAMP_S),
        )
    return (FaultSpec(case.kind, case.axis, onset_s, duration_s=episode_s),)


def fault_episode(
    scorers: Sequence[Scorer],
    case: FaultCase,
    seed: int,
    program: int,
    plan: Plan,
    rate_hz: int,
    columns: np.ndarray,
) -> dict[str, Any]:
    """One fault episode on warm joints: raises, clears and the clear's delay."""
    onset = WARM_START_S + plan.lead_s
    faults = episode_faults(case, onset, plan.episode_s)
    config = sim_config(seed, program, rate_hz, faults)
    settings = AlarmSettings.from_bundle(scorers[0].bundle.manifest.alarm)
    pipeline = RobotPipeline(ROBOT, list(scorers), settings)
    seconds = plan.lead_s + plan.episode_s + plan.tail_s
    windows: list[ScoredWindow] = []
    events: list[AlarmEvent] = []
    for result in replay(pipeline, program_blocks(config, WARM_START_S, seconds), columns):
        windows += result.windows
        events += result.events
    end = max(f.end_s for f in faults)
    return {
        "kind": case.kind + (" (one impulse)" if case.note == ONE_IMPULSE else ""),
        "axis": case.axis,
        "seed": seed,
        "onset_s": onset,
        "end_s": round(end, 3),
        # A debounce window spans the alarm's hold: ``n`` windows, or its clear windows where
        # they are more (a fixed-window bundle holds ~2.5 s, many hop-spaced windows).
        **episode_outcome(windows, events, onset, end, max(settings.n, settings.clear_windows)),
    }


def episode_outcome(
    windows: Sequence[ScoredWindow],
    events: Sequence[AlarmEvent],
    onset_s: float,
    end_s: float,
    debounce_n: int,
) -> dict[str, Any]:
    """Raises, clears, delay, and the clear after the fault's end in windows and debounce
    windows (counting the windows that start after its last sample, up to the clearing one)."""
    raises = [e for e in events if e.kind == "raise"]
    clears = [e for e in events if e.kind == "clear"]
    after = [w for w in windows if w.window.start >= end_s]  # windows without a faulted sample
    final = next((c for c in clears if c.span_end >= end_s), None)
    clear_windows = None if final is None else sum(w.window.end <= final.span_end for w in after)
    out: dict[str, Any] = {
        "raises": len(raises),
        "clears": len(clears),
        "raises_before_onset": sum(e.span_end < onset_s for e in raises),
        "delay_s": round(raises[0].span_end - onset_s, 2) if raises else None,
        "clear_after_s": None if final is None else round(final.span_end - end_s, 2),
        "clear_after_windows": clear_windows,
        "clear_after_debounce_windows": None,
        "still_raised_at_end": bool(windows and windows[-1].alarm_active),
    }
    if clear_windows is not None:
        out["clear_after_debounce_windows"] = clear_windows / debounce_n
    if not raises:
        out["verdict"] = "not detected"
    elif len(raises) == 1 and len(clears) == 1 and clear_windows is not None:
        limit = CLEAR_LIMIT_DEBOUNCE_WINDOWS * debounce_n
        out["verdict"] = "ok" if clear_windows <= limit else "clears late"
    else:
        out["verdict"] = f"{len(raises)} raises, {len(clears)} clears"
    return out


# --------------------------------------------------------------------------- the report


def summarize(runs: Sequence[dict[str, Any]], episodes: Sequence[dict[str, Any]]) -> dict:
    hours = sum(r["hours"] for r in runs)
    alarms = sum(r["alarms_raised"] for r in runs)
    detected = [e for e in episodes if e["verdict"] != "not detected"]
    return {
        "seeds": len(runs),
        "hours": hours,
        "alarms": alarms,
        "alarms_per_seed": [r["alarms_raised"] for r in runs],
        "false_alarms_per_hour": alarms / hours if hours else None,
        "false_alarms_per_hour_upper_95": poisson_upper_rate(alarms, hours) if hours else None,
        "target_met": alarms == 0
        and len(runs) >= TARGET_SEEDS
        and min(r["hours"] for r in runs) >= TARGET_HOURS,
        "episodes": len(episodes),
        "episodes_detected": len(detected),
        "episodes_ok": sum(e["verdict"] == "ok" for e in episodes),
        # one raise, one clear within the limit, for every episode that raised at all
        "episodes_target_met": bool(detected) and all(e["verdict"] == "ok" for e in detected),
        "episodes_not_ok": [
            f"{e['kind']} seed {e['seed']}: {e['verdict']}"
            for e in detected
            if e["verdict"] != "ok"
        ],
        "not_detected_kinds": sorted({e["kind"] for e in episodes} - {e["kind"] for e in detected}),
        "worst_clear_after_debounce_windows": max(
            (
                e["clear_after_debounce_windows"]
                for e in detected
                if e["clear_after_debounce_windows"] is not None
            ),
            default=None,
        ),
    }


def run_check(
    bundle_path: Path,
    plan: Plan,
    cache: Path,
    precision: str = "int8",
    backend: str = "auto",
    quick: bool = False,
) -> dict[str, Any]:
    started = time.monotonic()
    data = Path(bundle_path).read_bytes()
    bundle = load_bundle(data)
    manifest = bundle.manifest
    rate = manifest.input.sample_rate_hz
    if abs(rate - round(rate)) > 1e-9:
        raise SimHealthyError(f"bundle sample rate {rate:g} Hz: the simulator needs whole Hz")
    rate_hz = round(rate)
    extra = program_bundles(bundle, plan.schedule, plan.recipe, cache)
    scorers = [
        open_scorer(b, backend, precision) for b in (bundle, *(e["bundle"] for e in extra.values()))
    ]
    probe = next(program_blocks(sim_config(0, 1, rate_hz), 0.0, 0.01))
    columns = column_index(probe, bundle)
    runs = []
    for seed in plan.seeds:
        runs.append(healthy_run(scorers, seed, plan, rate_hz, columns))
        r = runs[-1]
        print(
            f"sim-healthy: seed {seed}: {r['hours']:.2f} h, {r['program_changes']} program "
            f"changes, windows {r['windows']}, alarms {r['alarms_raised']} ({r['seconds']:.0f} s)",
            flush=True,
        )
    program = min(manifest.programs) if manifest.programs else 1
    cases = [c for c in EPISODE_CASES if c.kind in plan.fault_kinds]
    episodes = [
        fault_episode(scorers, case, seed, program, plan, rate_hz, columns)
        for case in cases
        for seed in plan.seeds
    ]
    settings = AlarmSettings.from_bundle(manifest.alarm)
    report = {
        "bundle": {
            "path": str(bundle_path),
            "id": manifest.bundle_id,
            "version": manifest.bundle_version,
            "sha256": hashlib.sha256(data).hexdigest(),
            "programs": list(manifest.programs),
            "alarm_score": manifest.alarm.score,
            "segmentation": manifest.input.segmentation.to_json(),
        },
        "program_bundles": {
            str(p): {k: v for k, v in e.items() if k != "bundle"} for p, e in extra.items()
        },
        "recipe": asdict(plan.recipe),
        "precision": precision,
        "alarm": asdict(settings),
        "quick": quick,
        "plan": {
            "seeds": list(plan.seeds),
            "seconds": plan.seconds,
            "schedule": [list(s) for s in plan.schedule],
            "episode": {
                "lead_s": plan.lead_s,
                "fault_s": plan.episode_s,
                "tail_s": plan.tail_s,
                "start_s": WARM_START_S,
                "program": program,
            },
        },
        "runs": runs,
        "episodes": episodes,
        "summary": summarize(runs, episodes),
    }
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return report


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    b, s, plan = report["bundle"], report["summary"], report["plan"]
    extra = report["program_bundles"]
    archive = f"`{b['id']}` (programs {b['programs'] or 'any'})" + "".join(
        f", program {p}: `{e['path']}` ({'cached' if e['cached'] else 'built'})"
        for p, e in extra.items()
    )
    schedule = ", ".join(f"{n} cycles of program {p}" for p, n in plan["schedule"])
    a = report["alarm"]
    lines = [
        f"# Healthy runs and single fault episodes — bundle `{b['id']}` v{b['version']}",
        "",
        *machine_lines(report["machine"]),
        f"- {'quick smoke run' if report['quick'] else 'full run'}; {report['elapsed_s']:.0f} s",
        "",
        f"Archive: {archive}. "
        + (
            "Bundles of the other programs: the default recipe (scripts/build_default_bundle.sh: "
            "training seed 1, calibration seed 2, "
            f"{report['recipe']['epochs']} epochs max) with this bundle's input spec and layers. "
            if extra
            else ""
        )
        + f"Precision {report['precision']}, alarm score `{b['alarm_score']}`, EWMA α "
        f"{a['alpha']}, debounce {a['k']} of {a['n']}, clear below {a['clear_ratio']} × "
        f"threshold for {a['clear_windows']} windows.",
        "",
        f"## Healthy runs: {len(plan['seeds'])} seeds × {plan['seconds'] / 3600:.2f} h",
        "",
        f"From a cold start (warm-up drift), nuisances on, schedule {schedule}, repeated. "
        "Every alarm is false.",
        "",
    ]
    rows = []
    for r in report["runs"]:
        ns = r["not_scored"]
        rows.append(
            [
                r["seed"],
                f"{r['hours']:.2f}",
                r["program_changes"],
                " / ".join(f"{p}: {n}" for p, n in r["windows"].items()),
                f"{ns['cycle_length']} / {ns['unknown_program']}",
                " / ".join(f"{p}: {n}" for p, n in r["above_threshold"].items()),
                " / ".join(f"{p}: {v:.2f}" for p, v in r["max_score_over_threshold"].items()),
                r["alarms_raised"],
            ]
        )
    lines += md_table(
        [
            "seed",
            "hours",
            "program changes",
            "windows scored (by program)",
            "not scored: cycle length / unknown program",
            "windows ≥ threshold",
            "max score/threshold",
            "alarms",
        ],
        rows,
        "rrrlrllr",
    )
    lines += [
        "",
        f"**{s['alarms']} alarms in {s['hours']:.1f} h** ({s['seeds']} seeds): "
        f"{_fmt(s['false_alarms_per_hour'], 3)} false alarms/h, 95 % upper bound "
        f"{_fmt(s['false_alarms_per_hour_upper_95'], 3)}/h. Target (0 alarms over ≥ "
        f"{TARGET_HOURS:g} h per seed, ≥ {TARGET_SEEDS} seeds): "
        f"{'met' if s['target_met'] else 'not met'}.",
        "",
        f"## One fault episode (warm joints, program {plan['episode']['program']})",
        "",
        f"{plan['episode']['lead_s']:g} s normal, the fault for {plan['episode']['fault_s']:g} s "
        f"(collision: a 0.1 s impulse every {COLLISION_PERIOD_S:g} s; and once a single "
        f"impulse), {plan['episode']['tail_s']:g} s normal. *Clear after*: "
        "windows that start after the fault's last sample, up to the one that cleared, and in "
        f"debounce windows ({max(a['n'], a['clear_windows'])} scored windows each); limit "
        f"{CLEAR_LIMIT_DEBOUNCE_WINDOWS} debounce windows.",
        "",
    ]
    rows = [
        [
            e["kind"],
            f"J{e['axis']}",
            e["seed"],
            e["raises"],
            e["clears"],
            _fmt(e["delay_s"], 1),
            _fmt(e["clear_after_s"], 1),
            "–"
            if e["clear_after_windows"] is None
            else f"{e['clear_after_windows']} ({e['clear_after_debounce_windows']:.1f})",
            e["verdict"],
        ]
        for e in report["episodes"]
    ]
    lines += md_table(
        [
            "fault",
            "axis",
            "seed",
            "raises",
            "clears",
            "delay s",
            "clear after s",
            "clear after windows (debounce windows)",
            "verdict",
        ],
        rows,
        "llrrrrrrl",
    )
    lines += [
        "",
        f"{s['episodes_ok']} of {s['episodes_detected']} detected episodes ok"
        + (f"; not ok: {'; '.join(s['episodes_not_ok'])}" if s["episodes_not_ok"] else "")
        + (
            f"; not detected: {', '.join(s['not_detected_kinds'])}"
            if s["not_detected_kinds"]
            else ""
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {PROG}", description=(__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--bundle", type=Path, default=SHIPPED_BUNDLE, help="bundle under test")
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument("--seeds", help="comma-separated simulator seeds (default 11,12,13,14,15)")
    p.add_argument("--hours", type=float, help="simulated hours per seed (default 2)")
    p.add_argument("--schedule", help="PROGRAM:CYCLES,… repeated (default 1:30,2:20,3:20)")
    p.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE / "sim_healthy",
        help="where the other programs' bundles are kept (default ~/.cache/rapp-edge/sim_healthy)",
    )
    p.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    p.add_argument("--backend", choices=["auto", "onnxruntime", "litert"], default="auto")
    p.add_argument("--quick", action="store_true", help="CI smoke run (< 2 min)")
    return p


def plan_from(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.seeds:
        try:
            changes["seeds"] = tuple(int(s) for s in args.seeds.split(","))
        except ValueError:
            raise SimulationError(f"--seeds {args.seeds!r}: expected e.g. 11,12,13") from None
    if args.hours is not None:
        if not args.hours > 0:
            raise SimulationError(f"--hours {args.hours}: must be > 0")
        changes["seconds"] = args.hours * 3600.0
    if args.schedule:
        changes["schedule"] = parse_schedule(args.schedule.split(","))
        SimulationConfig(schedule=changes["schedule"])  # checks the program ids
    used = {TRAIN_SEED, CALIBRATION_SEED} & set(changes.get("seeds", ()))
    if used:
        raise SimulationError(f"--seeds: {sorted(used)} trained or calibrated the bundle")
    return Plan(**{**plan.__dict__, **changes})


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def work() -> dict[str, Any]:
        plan = plan_from(args)
        return run_check(args.bundle, plan, args.cache, args.precision, args.backend, args.quick)

    return report_main(PROG, args.out, "sim_healthy", work, markdown, str(args.bundle))


if __name__ == "__main__":
    sys.exit(main())
