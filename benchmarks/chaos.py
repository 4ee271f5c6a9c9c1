"""Chaos figures: kills at random moments, a full state disk, hostile OTA inputs and broken
configs, against a real ``rapp-agent run`` and a real mosquitto on loopback.

Run from the repository root (as root: the disk-full runs mount a tmpfs)::

    .venv/bin/python -m benchmarks.chaos [--quick] [--out benchmarks/results]
                                         [--rounds N] [--only kills,disk,ota,configs]

Four sections (each module's docstring says exactly what it counts):

1. **kills** (:mod:`benchmarks.chaos_kills`) — rounds of agent SIGKILL, broker ``kill -9``
   and both at once; alarm events raised (committed to the outbox), delivered, lost,
   duplicated, and whether any raised alarm is stuck (neither cleared nor active in the
   retained ``alarm/active``);
2. **disk** (:mod:`benchmarks.chaos_disk`) — the state disk (tmpfs) filled while alarms are
   raised, with the broker up, down, and across an agent restart; alarms lost, published
   twice, re-publish loops, the agent's exit status;
3. **ota** (:mod:`benchmarks.chaos_inputs`) — the trust-boundary e2e tests' hostile commands,
   chunks, archives and URLs: inputs × model changed × stalled;
4. **configs** (:mod:`benchmarks.chaos_inputs`) — every broken config of the preflight tests
   through ``run --check`` and ``run``: exit 2 with a message, no traceback.

A full run takes about 10 minutes on 2 cores; ``--quick`` (about 2 minutes) runs fewer
rounds, one disk-full run, ``--check`` only, and leaves the OTA tests out (they are e2e tests
of their own). Results: ``<out>/chaos.json`` and ``<out>/chaos.md``. Exit status 1 when a
section could not run (its error is in the results); the figures themselves are reported,
not asserted — a loss or a stuck alarm is a result, with the ids to reproduce it.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.chaos_disk import RUNS, DiskPlan, run_disk_full
from benchmarks.chaos_inputs import broken_configs, hostile_ota
from benchmarks.chaos_kills import SCENARIOS, KillPlan, run_scenario, split_rounds
from benchmarks.chaos_report import markdown
from benchmarks.chaos_rig import fault_recording
from benchmarks.common import (
    RESULTS,
    BenchmarkError,
    load_average,
    machine_info,
    write_json,
    write_text,
)

SECTIONS = ("kills", "disk", "ota", "configs")


@dataclass(frozen=True)
class Plan:
    rounds: int
    disk_runs: tuple[str, ...]
    disk: DiskPlan
    ota: bool
    configs_run_too: bool


FULL = Plan(60, tuple(r.name for r in RUNS), DiskPlan(), ota=True, configs_run_too=True)
QUICK = Plan(
    10,
    ("broker down while full",),
    DiskPlan(full_s=4.0, events_while_full=3),
    ota=False,
    configs_run_too=False,
)


def _kills(work: Path, plan: Plan, rng: random.Random) -> dict[str, Any]:
    recording = fault_recording(work / "faults.csv")
    kill_plan = KillPlan(rounds=split_rounds(plan.rounds))
    rows = []
    for i, scenario in enumerate(SCENARIOS):
        rows.append(
            _guarded(
                scenario,
                lambda s=scenario, i=i: run_scenario(
                    s, kill_plan.rounds[s], work / f"scenario{i}", recording, rng, kill_plan
                ),
            )
        )
    return {"plan": kill_plan.__dict__, "scenarios": rows}


def _disk(work: Path, plan: Plan) -> dict[str, Any]:
    recording = fault_recording(work / "faults.csv")
    runs = [r for r in RUNS if r.name in plan.disk_runs]
    rows = [
        _guarded(
            run.name,
            lambda run=run, i=i: run_disk_full(work / f"run{i}", recording, run, plan.disk),
        )
        for i, run in enumerate(runs)
    ]
    return {"plan": plan.disk.__dict__, "runs": rows}


def _guarded(name: str, body: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``body()``, or a row naming the error (the other runs still go ahead)."""
    started = time.monotonic()
    print(f"[chaos] {name} …", flush=True)
    try:
        row = body()
    except BenchmarkError as err:
        print(f"[chaos] {name}: FAILED: {err}", flush=True)
        return {"name": name, "error": str(err)[-4000:]}
    print(f"[chaos] {name}: done in {time.monotonic() - started:.0f} s", flush=True)
    return {"name": name, **row}


def run_sections(work: Path, plan: Plan, only: Sequence[str], seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    if "kills" in only:
        (work / "kills").mkdir()
        out["kills"] = _kills(work / "kills", plan, rng)
    if "disk" in only:
        (work / "disk").mkdir()
        out["disk"] = _disk(work / "disk", plan)
    if "ota" in only and plan.ota:
        out["ota"] = _guarded("hostile OTA inputs", lambda: hostile_ota(work / "ota"))
    if "configs" in only:
        out["configs"] = _guarded(
            "broken configs", lambda: broken_configs(work / "configs", plan.configs_run_too)
        )
    return out


def _errors(sections: dict[str, Any]) -> list[str]:
    rows: list[dict[str, Any]] = []
    for value in sections.values():
        rows += value.get("scenarios", []) + value.get("runs", []) + [value]
    return [f"{r.get('name')}: {r['error'][:200]}" for r in rows if "error" in r]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (about 2 minutes)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--rounds", type=int, help="kill rounds over the three scenarios")
    ap.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    ap.add_argument("--seed", type=int, default=13, help="random timing of the kill rounds")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, DBs)")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(only) - set(SECTIONS):
        ap.error(f"--only: unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    plan = QUICK if args.quick else FULL
    if args.rounds is not None:
        plan = Plan(args.rounds, plan.disk_runs, plan.disk, plan.ota, plan.configs_run_too)
    # paho's probe publishes log "not connected" on stderr while a broker is down
    logging.getLogger("paho").setLevel(logging.CRITICAL)
    info = machine_info()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="rapp-chaos-"))
    print(f"[chaos] work folder {work}", flush=True)
    sections = run_sections(work, plan, only, args.seed)
    info["load_average_at_end"] = load_average()
    report = {
        "quick": args.quick,
        "seed": args.seed,
        "sections": only,
        "plan": {
            "rounds": plan.rounds,
            "disk_runs": list(plan.disk_runs),
            "ota": plan.ota,
            "configs_run_too": plan.configs_run_too,
        },
        "machine": info,
        "elapsed_s": round(time.monotonic() - started, 1),
        "work": str(work) if args.keep else None,
        **sections,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "chaos.json", report)
    text = markdown(report)
    write_text(args.out / "chaos.md", text)
    print(text)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    errors = _errors(sections)
    for error in errors:
        print(f"[chaos] could not run: {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
