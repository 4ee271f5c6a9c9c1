"""The README's quick-start recipe, run as written, and the healthy-run check on its model.

Run from the repository root::

    .venv/bin/python -m benchmarks.readme_recipe [--quick] [--out benchmarks/results]
        [--cache DIR] [--seeds 11,12,13,14,15] [--hours 2] [--commands FILE]

**The recipe.** The commands are read from README.md — the ``sh`` block that starts the
quick start with ``rapp-firmware simulate --duration 600 --seed 1`` — so the check follows the
README when it changes. Comments and optional flags in brackets (``[--tflite]``) are left out;
every command runs as written, with the virtualenv's entry points, in a temporary folder. The
bundle it builds is kept in a cache directory (default ``~/.cache/rapp-edge/readme_recipe``)
keyed by the commands and a hash of the code that makes the bundle (exporter, simulator and its
CLI, channel maps, agent core), with what each command printed. ``--commands FILE`` runs another
block of commands in the same format instead (to measure a change to the recipe before it goes
into the README).

**The check** is :mod:`benchmarks.sim_healthy`'s, on that bundle: per seed (none of the
recipe's own seeds) one continuous run from a cold start, nuisances on (warm-up drift, payload
within spec, speed override), streamed through :class:`agent.pipeline.robot.RobotPipeline` with
the bundle's alarm defaults, every raise a false alarm; the target is 0 alarms over ≥ 2 h per
seed for ≥ 5 seeds. The runs keep to the program the recipe trains on (sim_healthy's own
schedule changes programs; the recipe's bundle serves every program, so it would be scored on
programs it never saw). Alarms are also counted by stretch of the run — inside the span of the
training data and after it — because the joints keep warming up long after a short cold-start
recording ends. Then one fault episode per fault kind and seed, as sim_healthy runs it.

Output: ``<out>/readme_recipe.json`` and ``<out>/readme_recipe.md``. ``--quick`` (smoke run,
about 2 min on 2 cores with a cold cache): training gets ``--no-select --epochs 3 --patience 3``,
one seed of 10 min, two fault kinds; its numbers check the harness, not the recipe.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.core.atomic import write_atomic
from agent.core.bundle import load_bundle
from agent.core.errors import AgentRuntimeError
from benchmarks import sim_healthy
from benchmarks.common import (
    RESULTS,
    ROOT,
    BenchmarkError,
    machine_lines,
    md_table,
    report_main,
)
from firmware_config.simulator import SimulationError

PROG = "benchmarks.readme_recipe"
README = ROOT / "README.md"
RECIPE_MARKER = "rapp-firmware simulate --duration 600 --seed 1"
ENTRY_POINTS = ("rapp-firmware", "rapp-export", "rapp-agent")
QUICK_TRAIN_FLAGS = ("--no-select", "--epochs", "3", "--patience", "3")
QUICK_SIMULATE_S = 240.0
# What the bundle is made of besides the commands: sim_healthy's code hash (exporter, simulator,
# agent core) and the simulator CLI with its channel maps, which write the recipe's CSVs.
EXTRA_SOURCES = ("firmware_config/*.py", "firmware_config/maps/*")
RAISES_KEPT = 20  # per seed in the JSON: a failing recipe raises hundreds
OUTPUT_LINES_KEPT = 60
PROGRESS_LINE = re.compile(r"^\S+:\s+\d+%\|")  # a tqdm bar's last frame


@dataclass(frozen=True)
class Check:
    seeds: tuple[int, ...]
    seconds: float
    fault_kinds: tuple[str, ...]


FULL = Check(
    seeds=(11, 12, 13, 14, 15),
    seconds=sim_healthy.TARGET_HOURS * 3600.0,
    fault_kinds=sim_healthy.FULL.fault_kinds,
)
QUICK = Check(seeds=(11,), seconds=600.0, fault_kinds=sim_healthy.QUICK.fault_kinds)


class ReadmeRecipeError(AgentRuntimeError, BenchmarkError):
    """A recipe that cannot be found, run or checked on the simulator."""


# --------------------------------------------------------------------------- the commands


def recipe_commands(text: str, source: str, marker: str | None = RECIPE_MARKER) -> list[list[str]]:
    """The commands of the ``sh`` block holding ``marker`` (of the whole text when ``marker`` is
    None): one argv per line, comments and ``[optional]`` flags left out."""
    if marker is None:
        block = text
    else:
        blocks = re.findall(r"^```(?:sh|bash|console)\n(.*?)^```", text, re.M | re.S)
        found = [b for b in blocks if marker in b]
        if not found:
            raise ReadmeRecipeError(f"{source}: no ```sh block holds {marker!r}")
        block = found[0]
    commands = []
    for number, line in enumerate(block.splitlines(), start=1):
        argv = [t for t in shlex.split(line, comments=True) if not re.fullmatch(r"\[.*\]", t)]
        if not argv:
            continue
        if argv[0] not in ENTRY_POINTS:
            raise ReadmeRecipeError(
                f"{source}: recipe line {number} runs {argv[0]!r}; expected one of "
                f"{', '.join(ENTRY_POINTS)}"
            )
        commands.append(argv)
    if not commands:
        raise ReadmeRecipeError(f"{source}: the recipe holds no commands")
    return commands


def quick_commands(commands: Sequence[Sequence[str]]) -> list[list[str]]:
    """The recipe with short simulations (at most QUICK_SIMULATE_S each) and a short training
    (no model selection, 3 epochs) for the smoke run."""
    out = []
    for argv in commands:
        argv = list(argv)
        if argv[:2] == ["rapp-export", "train"]:
            argv += QUICK_TRAIN_FLAGS
        elif argv[:2] == ["rapp-firmware", "simulate"] and "--duration" in argv:
            i = argv.index("--duration") + 1
            argv[i] = f"{min(float(argv[i]), QUICK_SIMULATE_S):g}"
        out.append(argv)
    return out


def flag_values(argv: Sequence[str], flag: str) -> list[str]:
    """Every value of ``flag`` in ``argv``, a multi-value flag's values up to the next flag."""
    values: list[str] = []
    taking = False
    for token in argv[1:]:
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            taking = name == flag
            if taking and eq:
                values.append(value)
                taking = False
        elif taking:
            values.append(token)
    return values


def _command(commands: Sequence[Sequence[str]], tool: str, sub: str) -> list[str]:
    found = [list(a) for a in commands if list(a[:2]) == [tool, sub]]
    if len(found) != 1:
        raise ReadmeRecipeError(f"the recipe runs `{tool} {sub}` {len(found)} times; expected 1")
    return found[0]


def _simulated(commands: Sequence[Sequence[str]], files: Sequence[str], role: str) -> list[dict]:
    """What the recipe's simulator wrote into ``files``: seed, seconds, program, faults."""
    written = {
        flag_values(a, "--out")[-1]: a
        for a in commands
        if list(a[:2]) == ["rapp-firmware", "simulate"] and flag_values(a, "--out")
    }
    out = []
    for name in files:
        argv = written.get(name)
        if argv is None:
            raise ReadmeRecipeError(
                f"the {role} data {name!r} is not written by `rapp-firmware simulate` in the "
                "recipe: only a simulated recipe can be checked on the simulator"
            )
        programs = flag_values(argv, "--program") or ["1"]
        out.append(
            {
                "file": name,
                "seed": int((flag_values(argv, "--seed") or ["0"])[-1]),
                "seconds": float((flag_values(argv, "--duration") or ["600"])[-1]),
                "programs": programs,
                "faults": flag_values(argv, "--fault"),
                "nuisances": "--no-nuisances" not in argv,
            }
        )
    return out


def recipe_facts(commands: Sequence[Sequence[str]]) -> dict[str, Any]:
    """The bundle file, and the data it is trained and calibrated on."""
    train = _command(commands, "rapp-export", "train")
    build = _command(commands, "rapp-export", "build")
    training = _simulated(commands, flag_values(train, "--data"), "training")
    calibration = _simulated(commands, flag_values(build, "--calibration"), "calibration")
    programs = {p for d in training for p in d["programs"]}
    if len(programs) != 1 or any(":" in p for p in programs):
        raise ReadmeRecipeError(
            f"the recipe trains on programs {sorted(programs)}: the check runs one program"
        )
    if any(d["faults"] for d in training + calibration):
        raise ReadmeRecipeError("the recipe trains or calibrates on a faulted simulation")
    used = {d["seed"] for d in training + calibration}
    simulated = [a for a in commands if a[0] == "rapp-firmware"]
    used |= {int(s) for a in simulated for s in flag_values(a, "--seed")[-1:]}
    return {
        "bundle_file": (flag_values(build, "--out") or ["?"])[-1],
        "program": int(programs.pop()),
        "training": training,
        "calibration": calibration,
        "seeds_used": sorted(used),
    }


# --------------------------------------------------------------------------- running it


def source_fingerprint() -> str:
    digest = hashlib.sha256(sim_healthy.code_fingerprint().encode())
    for pattern in EXTRA_SOURCES:
        for path in sorted(ROOT.glob(pattern)):
            if path.is_file():
                digest.update(path.relative_to(ROOT).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def recipe_key(commands: Sequence[Sequence[str]], fingerprint: str) -> str:
    text = json.dumps({"commands": [list(a) for a in commands], "code": fingerprint})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def entry_point(name: str) -> Path:
    """The virtualenv's console script (beside this interpreter), never one on PATH."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        raise ReadmeRecipeError(
            f"{path}: no such entry point; install the project with its export extra "
            "(pip install -e '.[export]')"
        )
    return path


def printed_lines(text: str) -> list[str]:
    """What a command printed, without progress-bar frames; the last lines only."""
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
    kept = [line for line in lines if line and not PROGRESS_LINE.match(line)]
    return kept[-OUTPUT_LINES_KEPT:]


def run_commands(commands: Sequence[Sequence[str]], work: Path) -> list[dict[str, Any]]:
    """Run each command in ``work``, one thread each; raise on the first that fails."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    steps = []
    for argv in commands:
        started = time.monotonic()
        print(f"readme-recipe: {shlex.join(argv)}", flush=True)
        proc = subprocess.run(
            [str(entry_point(argv[0])), *argv[1:]],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if proc.returncode != 0:
            raise ReadmeRecipeError(
                f"`{shlex.join(argv)}` exited {proc.returncode}:\n{proc.stderr[-3000:]}"
            )
        steps.append(
            {
                "command": shlex.join(argv),
                "seconds": round(time.monotonic() - started, 1),
                "printed": printed_lines(proc.stdout + proc.stderr),
            }
        )
    return steps


def recipe_bundle(
    commands: Sequence[Sequence[str]], bundle_file: str, cache: Path
) -> dict[str, Any]:
    """The recipe's bundle from the cache, or built by running the recipe into it."""
    key = recipe_key(commands, source_fingerprint())
    stem = Path(bundle_file).stem
    path, meta_path = cache / f"{stem}-{key}.rapp", cache / f"{stem}-{key}.json"
    if path.is_file() and meta_path.is_file():
        return {**json.loads(meta_path.read_text()), "path": str(path), "cached": True}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rapp-readme-recipe-") as tmp:
        steps = run_commands(commands, Path(tmp))
        built = Path(tmp) / bundle_file
        if not built.is_file():
            raise ReadmeRecipeError(f"the recipe ran but wrote no bundle {bundle_file!r}")
        cache.mkdir(parents=True, exist_ok=True)
        write_atomic(path, built.read_bytes())
    meta = {"key": key, "seconds": round(time.monotonic() - started, 1), "steps": steps}
    write_atomic(meta_path, (json.dumps(meta, indent=1) + "\n").encode())
    return {**meta, "path": str(path), "cached": False}


# --------------------------------------------------------------------------- the check


def stretch_edges(train_s: float, seconds: float) -> list[float]:
    """Stretches of a healthy run: the training data's span, then to 30 min, 1 h, the end."""
    inner = {e for e in (train_s, 1800.0, 3600.0) if 0.0 < e < seconds}
    return [0.0, *sorted(inner), seconds]


def alarms_by_stretch(runs: Sequence[dict[str, Any]], edges: Sequence[float]) -> list[dict]:
    """Alarms raised in each stretch of the runs (all seeds), with the channels they name."""
    out = []
    for lo, hi in itertools.pairwise(edges):
        raises = [r for run in runs for r in run["raises"] if lo <= r["t_s"] < hi]
        hours = len(runs) * (hi - lo) / 3600.0
        out.append(
            {
                "from_s": lo,
                "to_s": hi,
                "hours": hours,
                "alarms": len(raises),
                "alarms_per_hour": len(raises) / hours if hours else None,
                "top_channels": dict(Counter(r["top_channel"] for r in raises).most_common()),
            }
        )
    return out


def per_seed(run: dict[str, Any], train_s: float) -> dict[str, Any]:
    """One healthy run as this report keeps it: the first raises only."""
    raises = run["raises"]
    return {
        **{k: v for k, v in run.items() if k != "raises"},
        "first_alarm_s": raises[0]["t_s"] if raises else None,
        "alarms_within_training_span": sum(r["t_s"] < train_s for r in raises),
        "raises": raises[:RAISES_KEPT],
        "raises_left_off": max(0, len(raises) - RAISES_KEPT),
    }


def run_check(
    bundle_path: Path, facts: dict[str, Any], check: Check, cache: Path, quick: bool
) -> dict[str, Any]:
    """sim_healthy's check of the bundle on the recipe's program."""
    plan = sim_healthy.Plan(
        seeds=check.seeds,
        seconds=check.seconds,
        schedule=((facts["program"], 1),),
        fault_kinds=check.fault_kinds,
        recipe=sim_healthy.Recipe(),
    )
    report = sim_healthy.run_check(bundle_path, plan, cache, quick=quick)
    if report["program_bundles"]:
        raise ReadmeRecipeError("the check built bundles of other programs; it runs one program")
    train_s = max(d["seconds"] for d in facts["training"])
    stretches = alarms_by_stretch(report["runs"], stretch_edges(train_s, check.seconds))
    report["runs"] = [per_seed(r, train_s) for r in report["runs"]]
    report["alarms_by_stretch"] = stretches
    summary = report["summary"]
    summary["false_alarms_per_hour_upper_95"] = sim_healthy.poisson_upper_rate(
        summary["alarms"], summary["hours"]
    )
    summary["max_score_over_threshold"] = max(
        v for r in report["runs"] for v in r["max_score_over_threshold"].values()
    )
    return {k: v for k, v in report.items() if k not in ("program_bundles", "recipe")}


def bundle_facts(path: Path) -> dict[str, Any]:
    manifest = load_bundle(path.read_bytes()).manifest
    return {
        "bytes": path.stat().st_size,
        "features": list(manifest.input.features),
        "layer_sizes": list(manifest.layer_sizes),
        "thresholds": {a.id: a.thresholds[manifest.alarm.score] for a in manifest.artifacts},
    }


# --------------------------------------------------------------------------- the report


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _data(items: Sequence[dict[str, Any]]) -> str:
    return ", ".join(
        f"seed {d['seed']}, 0–{d['seconds']:g} s of program {'/'.join(d['programs'])}"
        f"{'' if d['nuisances'] else ' (no nuisances)'}"
        for d in items
    )


def recipe_lines(report: dict[str, Any]) -> list[str]:
    r, facts, b = report["recipe"], report["recipe"]["facts"], report["recipe"]["bundle"]
    lines = [
        f"## The recipe ({r['source']}, run as written)",
        "",
        "```sh",
        *r["commands"],
        "```",
        "",
    ]
    if r["quick_flags"]:
        lines += [
            f"Quick run: simulations cut to {QUICK_SIMULATE_S:g} s, `rapp-export train` also "
            f"got `{r['quick_flags']}`.",
            "",
        ]
    thresholds = ", ".join(f"{k} {v:.3f}" for k, v in b["thresholds"].items())
    lines += [
        f"Trained on {_data(facts['training'])}; thresholds calibrated on "
        f"{_data(facts['calibration'])} (both from a cold start). Bundle: features "
        f"{'+'.join(b['features'])}, layers {' → '.join(map(str, b['layer_sizes']))}, "
        f"{b['bytes'] / 1024:.0f} KiB, {report['bundle']['alarm_score']} thresholds {thresholds}; "
        + (
            "taken from the cache."
            if r["cached"]
            else f"built in {r['seconds']:.0f} s ("
            + ", ".join(f"{s['command'].split(' --')[0]} {s['seconds']:.0f} s" for s in r["steps"])
            + ")."
        ),
    ]
    chosen = [line for s in r["steps"] for line in s["printed"] if line.startswith("chose ")]
    lines += [f"`train`: {chosen[0]}" for _ in chosen[:1]]
    return lines


def healthy_lines(report: dict[str, Any]) -> list[str]:
    s, plan, facts = report["summary"], report["plan"], report["recipe"]["facts"]
    train_s = max(d["seconds"] for d in facts["training"])
    lines = [
        f"## Healthy runs: {len(plan['seeds'])} seed(s) × {plan['seconds'] / 3600:.2f} h of "
        f"program {facts['program']}",
        "",
        "From a cold start, nuisances on (warm-up drift, payload within spec, speed override), "
        "the recipe's program only; every alarm is false.",
        "",
    ]
    rows = [
        [
            r["seed"],
            f"{r['hours']:.2f}",
            sum(r["windows"].values()),
            sum(r["above_threshold"].values()),
            f"{max(r['max_score_over_threshold'].values(), default=0.0):.2f}",
            r["alarms_raised"],
            _fmt(r["first_alarm_s"], 1),
            r["alarms_within_training_span"],
        ]
        for r in report["runs"]
    ]
    header = ["seed", "hours", "windows scored", "windows ≥ threshold", "max score/threshold"]
    header += ["alarms", "first alarm at s", f"alarms in 0–{train_s:g} s"]
    lines += md_table(header, rows, "rrrrrrrr")
    lines += [
        "",
        f"**{s['alarms']} alarms in {s['hours']:.1f} h** ({s['seeds']} seed(s)): "
        f"{_fmt(s['false_alarms_per_hour'], 3)} false alarms/h, 95 % upper bound "
        f"{_fmt(s['false_alarms_per_hour_upper_95'], 3)}/h; highest window score "
        f"{s['max_score_over_threshold']:.2f} × threshold. Target (0 alarms over ≥ "
        f"{sim_healthy.TARGET_HOURS:g} h per seed, ≥ {sim_healthy.TARGET_SEEDS} seeds): "
        f"**{'met' if s['target_met'] else 'not met'}**.",
        "",
        f"Alarms by stretch of the run (all seeds; the training data covers 0–{train_s:g} s "
        "of a cold start, the joints warm up with time constants of 300–900 s):",
        "",
    ]
    rows = [
        [
            f"{st['from_s']:g}–{st['to_s']:g} s",
            f"{st['hours']:.2f}",
            st["alarms"],
            _fmt(st["alarms_per_hour"], 1),
            ", ".join(f"{c}: {n}" for c, n in st["top_channels"].items()) or "–",
        ]
        for st in report["alarms_by_stretch"]
    ]
    lines += md_table(["stretch", "hours", "alarms", "alarms/h", "top channel"], rows, "lrrrl")
    return lines


def episode_lines(report: dict[str, Any]) -> list[str]:
    s, episode, a = report["summary"], report["plan"]["episode"], report["alarm"]
    missing = s["not_detected_kinds"]
    lines = [
        f"## One fault episode per kind (warm joints, program {episode['program']})",
        "",
        f"As sim_healthy runs it: {episode['lead_s']:g} s normal from t = {episode['start_s']:g} "
        f"s, the fault for {episode['fault_s']:g} s, {episode['tail_s']:g} s normal; clear "
        f"limit {sim_healthy.CLEAR_LIMIT_DEBOUNCE_WINDOWS} debounce windows "
        f"({max(a['n'], a['clear_windows'])} scored windows each).",
        "",
    ]
    rows = [
        [
            e["kind"],
            f"J{e['axis']}",
            e["seed"],
            e["raises"],
            e["raises_before_onset"],
            e["clears"],
            _fmt(e["delay_s"], 1),
            _fmt(e["clear_after_s"], 1),
            e["verdict"],
        ]
        for e in report["episodes"]
    ]
    header = ["fault", "axis", "seed", "raises", "raises before onset", "clears", "delay s"]
    header += ["clear after s", "verdict"]
    lines += md_table(header, rows, "llrrrrrrl")
    lines += [
        "",
        f"{s['episodes_ok']} of {s['episodes_detected']} detected episodes ok (one raise, one "
        "clear in time)" + (f"; not detected: {', '.join(missing)}" if missing else "") + ".",
    ]
    return lines


def markdown(report: dict[str, Any]) -> str:
    s, b = report["summary"], report["bundle"]
    lines = [
        f"# The README's quick-start recipe on long healthy runs — bundle `{b['id']}`: "
        f"0-false-alarm target {'met' if s['target_met'] else 'not met'}",
        "",
        *machine_lines(report["machine"]),
        f"- {'quick smoke run' if report['quick'] else 'full run'}; {report['elapsed_s']:.0f} s "
        f"(the check {report['check_s']:.0f} s); precision {report['precision']}",
        "",
        *recipe_lines(report),
        "",
        *healthy_lines(report),
        "",
        *episode_lines(report),
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {PROG}", description=(__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    p.add_argument(
        "--cache",
        type=Path,
        default=sim_healthy.DEFAULT_CACHE / "readme_recipe",
        help="where the recipe's bundle is kept (default ~/.cache/rapp-edge/readme_recipe)",
    )
    p.add_argument("--seeds", help="comma-separated simulator seeds (default 11,12,13,14,15)")
    p.add_argument("--hours", type=float, help="simulated hours per seed (default 2)")
    p.add_argument(
        "--commands",
        type=Path,
        help="a file of recipe commands to run instead of the README's (same format)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run (about 2 min)")
    return p


def check_from(args: argparse.Namespace, seeds_used: Sequence[int]) -> Check:
    check = QUICK if args.quick else FULL
    seeds, seconds = check.seeds, check.seconds
    if args.seeds:
        try:
            seeds = tuple(int(s) for s in args.seeds.split(","))
        except ValueError:
            raise SimulationError(f"--seeds {args.seeds!r}: expected e.g. 11,12,13") from None
    if args.hours is not None:
        if not args.hours > 0:
            raise SimulationError(f"--hours {args.hours}: must be > 0")
        seconds = args.hours * 3600.0
    used = sorted(set(seeds) & set(seeds_used))
    if used:
        raise SimulationError(f"--seeds: {used} are the recipe's own simulator seeds")
    return Check(seeds=seeds, seconds=seconds, fault_kinds=check.fault_kinds)


def build_report(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    source_path = args.commands or README
    text = source_path.read_text(encoding="utf-8")
    source = os.path.relpath(source_path, ROOT) if args.commands else "README.md"
    commands = recipe_commands(text, source, None if args.commands else RECIPE_MARKER)
    facts = recipe_facts(commands)
    check = check_from(args, facts["seeds_used"])
    run = quick_commands(commands) if args.quick else commands
    recipe = recipe_bundle(run, facts["bundle_file"], args.cache)
    bundle_path = Path(recipe["path"])
    check_started = time.monotonic()
    report = run_check(bundle_path, facts, check, args.cache, args.quick)
    report["check_s"] = round(time.monotonic() - check_started, 1)
    report["recipe"] = {
        "source": source,
        "commands": [shlex.join(a) for a in commands],
        "quick_flags": shlex.join(QUICK_TRAIN_FLAGS) if args.quick else "",
        "facts": facts,
        "bundle": bundle_facts(bundle_path),
        **recipe,
    }
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return report_main(
        PROG, args.out, "readme_recipe", lambda: build_report(args), markdown, "README.md"
    )


if __name__ == "__main__":
    sys.exit(main())
