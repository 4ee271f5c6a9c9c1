"""Detection quality gathered in one place (Quality).

Run from the repository root (``make bench`` runs it with the others)::

    .venv/bin/python -m benchmarks.quality [--quick] [--out benchmarks/results] [--data DIR]

It runs the project's own evaluations, each in its own process — it does not re-implement
them — and collects their results:

- :mod:`benchmarks.cnc_defaults` on the CNC mill tool-wear recordings (MI-F and MI-V,
  experiment-wise split) with the exporter's default flags — model selection, the CLI's
  training and build defaults — and the baselines on the same windows → the quality table's
  CNC rows, ``<out>/cnc_defaults.json`` + ``.md``;
- :mod:`benchmarks.cnc_eval` on the same recordings with the RaPP paper's protocol (one row
  per window; Recon/SAP/NAP AUROC fp32 and int8 next to the paper's AE figures)
  → ``<out>/cnc_quality.json`` + ``.md``. The data lives beside the repository
  (``../shared/data/cnc-mill-tool-wear``), not in it: without it both CNC parts are reported
  as skipped, never faked.
- :mod:`benchmarks.sim_report` on the bundle (``--bundle``, default the shipped
  ``agent/data/default.rapp``): AUROC per simulated fault type of the bundle's scores and of
  IsolationForest/PCA on the same windows, attribution, alarm events (precision, recall, delay,
  false alarms per hour); score-trace plots with thresholds and fault onsets
  → ``<out>/sim_report/``;
- :mod:`benchmarks.sim_healthy` on the same bundle: long healthy runs (5 seeds × 2 h, warm-up
  drift, program changes) counted with the agent's alarm logic, and one fault episode per
  kind → ``<out>/sim_healthy.json`` + ``.md``.

``<out>/quality.json`` and ``<out>/quality.md`` hold the combined tables, headed by the one
quality table of every task (:func:`quality_table`: NAP, combined, IsolationForest and PCA
AUROC on the same windows, event precision/recall, delay, false alarms per hour; default flags
of each evaluation). The digit protocol (:mod:`benchmarks.digits`) writes its own results; its
rows join the table when ``<out>/digits.json`` exists (``SUMMARY.md`` always has them), and
so does :mod:`benchmarks.families`' table of the three model families (``families.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS,
    ROOT,
    BenchmarkError,
    load_average,
    machine_info,
    machine_lines,
    md_table,
    write_json,
    write_text,
)

CNC_DATA = ROOT.parent / "shared" / "data" / "cnc-mill-tool-wear"
SHIPPED_BUNDLE = ROOT / "agent" / "data" / "default.rapp"
SCORES = ("recon", "sap", "nap")
LABEL = {"recon": "Recon", "sap": "SAP", "nap": "NAP", "combined": "combined",
         "iforest": "IsolationForest", "pca": "PCA"}  # fmt: skip
DEFAULTS_SCORES = ("nap", "combined", "iforest", "pca")
# The quality table's AUROC columns: the bundle's NAP and combined score, and the baselines on
# the very same windows.
TABLE_SCORES = ("nap", "combined", "iforest", "pca")
BASELINES = ("iforest", "pca")
# The agent runs int8 by default: the simulator's alarm events are those of the int8 artifact.
EVENT_PRECISION = "int8"


def run_module(module: str, *args: str) -> None:
    """Run ``python -m <module>`` from the repository root with this interpreter; raise with
    its output on failure."""
    cmd = [sys.executable, "-m", module, *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchmarkError(
            f"{module} {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
        )


def run_cnc(out: Path, data: Path, quick: bool) -> dict[str, Any]:
    if not data.is_dir():
        return {"skipped": f"{data} not found (the CNC recordings live beside the repository)"}
    target = out / "cnc_quality.json"
    seeds = "1" if quick else "3"
    args = [
        "--data",
        str(data),
        "--task",
        "all",
        "--seeds",
        seeds,
        "--out",
        str(target),
    ]
    run_module("benchmarks.cnc_eval", *args, *(["--quick"] if quick else []))
    return json.loads(target.read_text())


def run_cnc_defaults(out: Path, data: Path, quick: bool) -> dict[str, Any]:
    if not data.is_dir():
        return {"skipped": f"{data} not found (the CNC recordings live beside the repository)"}
    target = out / "cnc_defaults.json"
    args = ["--data", str(data), "--task", "all", "--out", str(target)]
    run_module("benchmarks.cnc_defaults", *args, *(["--quick"] if quick else []))
    return json.loads(target.read_text())


def reuse_cnc(out: Path, results: Path, name: str = "cnc_quality.json") -> dict[str, Any]:
    """A finished CNC run's results, copied to ``<out>/<name>`` (+ .md)."""
    target = out / name
    text = results.read_text()
    if results.resolve() != target.resolve():
        write_text(target, text)
        report = results.with_suffix(".md")
        if report.exists():
            write_text(target.with_suffix(".md"), report.read_text())
    return json.loads(text)


def run_sim(out: Path, quick: bool, bundle_path: Path = SHIPPED_BUNDLE) -> dict[str, Any]:
    target = out / "sim_report"
    bundle, folder = (os.path.relpath(p, ROOT) for p in (bundle_path, target))
    args = ["--bundle", bundle, "--out", folder, "--seed", "0"]
    run_module("benchmarks.sim_report", *args, *(["--quick"] if quick else []))
    return json.loads((target / "report.json").read_text())


def run_healthy(
    out: Path, quick: bool, bundle_path: Path = SHIPPED_BUNDLE, cache: Path | None = None
) -> dict[str, Any]:
    args = ["--bundle", os.path.relpath(bundle_path, ROOT), "--out", str(out)]
    args += ["--cache", str(cache)] if cache is not None else []
    run_module("benchmarks.sim_healthy", *args, *(["--quick"] if quick else []))
    report = json.loads((out / "sim_healthy.json").read_text())
    return {k: v for k, v in report.items() if k != "machine"}


# --------------------------------------------------------------------------- the quality table


def _auroc(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _events(e: dict[str, Any] | None) -> list[str]:
    """Event precision, recall, mean delay, false alarms per hour (– where not measured)."""
    if not e:
        return ["–", "–", "–", "–"]
    delay = e.get("delay_s")
    return [
        _auroc(e.get("precision")),
        _auroc(e.get("recall")),
        "–" if not delay else f"{delay['mean']:.1f}",
        "–" if e.get("false_alarms_per_hour") is None else f"{e['false_alarms_per_hour']:.2f}",
    ]


def task_aurocs(
    quality: dict[str, Any], digits: dict[str, Any] | None
) -> list[tuple[str, dict[str, float | None], dict[str, Any] | None]]:
    """(task, {score: window AUROC fp32}, alarm events or None) for every task of the table."""
    tasks: list[tuple[str, dict[str, float | None], dict[str, Any] | None]] = []
    # Default flags: the CNC rows come from cnc_defaults; cnc_eval (the paper's protocol)
    # stands in only for results gathered before it existed.
    cnc = quality.get("cnc_defaults") or {}
    if not cnc.get("tasks"):
        cnc = quality["cnc"]
    for task, result in cnc.get("tasks", {}).items():
        fp32 = result["summary"]["window"]["fp32"]
        tasks.append(
            (
                f"CNC {task.upper()}",
                {n: fp32[n]["mean"] if n in fp32 else None for n in TABLE_SCORES},
                None,
            )
        )
    for fault in quality["sim"]["faults"]:
        res = fault["results"]
        events = res.get(EVENT_PRECISION, res["fp32"]).get("events")
        aurocs = {n: res["fp32"].get(f"auroc_{n}") for n in TABLE_SCORES}
        tasks.append((f"simulator {fault['kind']} (J{fault['axis']})", aurocs, events))
    if digits:
        for protocol, summary in digits["summary"].items():
            fp32 = summary["fp32"]
            aurocs = {n: fp32[n]["mean"] if n in fp32 else None for n in TABLE_SCORES}
            tasks.append((f"digits {protocol}", aurocs, None))
    return tasks


def quality_table(quality: dict[str, Any], digits: dict[str, Any] | None) -> list[str]:
    """The one quality table: every task, its AUROCs on the same windows and alarm events."""
    rows = [
        [task, *(_auroc(aurocs[n]) for n in TABLE_SCORES), *_events(events)]
        for task, aurocs, events in task_aurocs(quality, digits)
    ]
    runs = (
        ("healthy", "simulator healthy, {seeds} seeds × {hours} h (drift, program changes)"),
        ("readme_recipe", "README recipe's model, {seeds} seeds × {hours} h healthy (program 1)"),
    )
    for key, title in runs:
        if not quality.get(key):
            continue
        s, plan = quality[key]["summary"], quality[key]["plan"]
        label = title.format(seeds=s["seeds"], hours=f"{plan['seconds'] / 3600:.3g}")
        rows.append(
            [
                label,
                *(["–"] * 7),
                f"{s['false_alarms_per_hour']:.2f} ({s['alarms']} alarms; ≤ "
                f"{s['false_alarms_per_hour_upper_95']:.2f} at 95 %)",
            ]
        )
    lines = md_table(
        [
            "task",
            "NAP",
            "combined",
            "IsolationForest",
            "PCA",
            "event precision",
            "event recall",
            "delay s",
            "false alarms/h",
        ],
        rows,
        "lrrrrrrrr",
    )
    bundle = quality["sim"]["bundle"]
    return [
        *lines,
        "",
        "Window AUROC, fp32, on the very same windows for every column (CNC: mean over seed × "
        "fold runs of `benchmarks.cnc_defaults` — `rapp-export train`/`build` defaults with "
        "model selection, baselines fitted on each fold's training windows; simulator: bundle "
        f"`{bundle['id']}` ({bundle['path']}), baselines fitted on the recipe's training data; "
        "digits: mean over classes, baselines fitted on the normal training images). Alarm "
        f"events: the simulator's {EVENT_PRECISION} artifact through the agent's pipeline and "
        "alarm defaults (false alarms/h on its normal runs; the healthy row: "
        "`benchmarks.sim_healthy`); CNC and digits are scored as windows only (no alarm "
        "replay), so they have none. – = not measured (combined: a bundle without latent "
        "density).",
    ]


def cnc_rows(cnc: dict[str, Any]) -> list[list[str]]:
    rows = []
    for task, result in cnc.get("tasks", {}).items():
        window = result["summary"]["window"]
        paired = window.get("int8_minus_fp32", {})
        for name in SCORES:
            fp32, int8 = window["fp32"][name], window.get("int8", {}).get(name)
            diff = paired.get(name)
            rows.append(
                [
                    task.upper(),
                    LABEL[name],
                    f"{fp32['mean']:.3f} ± {fp32['std']:.3f}",
                    f"{int8['mean']:.3f} ± {int8['std']:.3f} (n={int8['n']})" if int8 else "–",
                    f"{diff['mean']:+.3f} ± {diff['std']:.3f}" if diff else "–",
                    f"{result['paper_ae'][name]:.3f}",
                ]
            )
    return rows


def cnc_defaults_rows(defaults: dict[str, Any]) -> list[list[str]]:
    rows = []
    for task, result in defaults.get("tasks", {}).items():
        fp32, summary = result["summary"]["window"]["fp32"], result["summary"]
        cells = [f"{fp32[n]['mean']:.3f} ± {fp32[n]['std']:.3f}" if n in fp32 else "–"
                 for n in DEFAULTS_SCORES]  # fmt: skip
        wins = f"{summary['combined_beats_iforest_folds']}/{summary['folds']}"
        rows.append([task.upper(), *cells, wins])
    return rows


def sim_rows(sim: dict[str, Any]) -> list[list[str]]:
    rows = []
    for fault in sim["faults"]:
        res = fault["results"]
        cells = [f"{res[p][f'auroc_{n}']:.3f}" for p in ("fp32", "int8") for n in SCORES]
        delay = res["int8"].get("alarm_delay_s")
        rows.append(
            [
                fault["kind"],
                f"J{fault['axis']}",
                *cells,
                f"{res['int8']['detected']:.2f}",
                f"{delay:.1f}" if delay is not None else "–",
            ]
        )
    return rows


def digits_rows(digits: dict[str, Any]) -> list[list[str]]:
    rows = []
    for protocol, summary in digits["summary"].items():
        for precision in ("fp32", "int8"):
            cells = [f"{summary[precision][n]['mean']:.3f}" for n in SCORES]
            rows.append([protocol, precision, *cells])
    return rows


def markdown(
    report: dict[str, Any],
    digits: dict[str, Any] | None = None,
    families: dict[str, Any] | None = None,
) -> str:
    lines = ["# Detection quality", "", *machine_lines(report["machine"])]
    lines += [f"- {'quick smoke run' if report['quick'] else 'full run'}", ""]
    lines += ["## Every task, default flags", "", *quality_table(report, digits), ""]
    defaults = report.get("cnc_defaults") or {}
    if defaults.get("tasks"):
        lines += ["## CNC mill with the exporter's default flags", ""]
        lines += [f"`{defaults['command']}`; details in [cnc_defaults.md](cnc_defaults.md).", ""]
        lines += md_table(
            ["task", *(LABEL.get(n, n) for n in DEFAULTS_SCORES), "combined ≥ IF (folds)"],
            cnc_defaults_rows(defaults),
            "l" + "r" * (len(DEFAULTS_SCORES) + 1),
        )
        lines += [""]
    cnc = report["cnc"]
    lines += ["## CNC mill tool wear, the RaPP paper's protocol (rows as windows)", ""]
    if "skipped" in cnc:
        lines += [f"Skipped: {cnc['skipped']}."]
    else:
        lines += [
            f"`{cnc['command']}` — window-level AUROC, mean ± std over seed × fold runs; "
            "details in [cnc_quality.md](cnc_quality.md).",
            "",
        ]
        lines += md_table(
            ["task", "score", "fp32 AUROC", "int8 AUROC", "int8 − fp32 (paired)", "paper AE"],
            cnc_rows(cnc),
            "llrrrr",
        )
    sim = report["sim"]
    lines += [
        "",
        f"## Simulator, per fault type (bundle `{sim['bundle']['id']}`, {sim['bundle']['path']})",
        "",
        "AUROC of normal vs faulted windows after onset; detected = share of faulted windows "
        "above threshold (int8); delay = onset → alarm (int8). Details and plots: "
        "[sim_report/report.md](sim_report/report.md), "
        "![score traces](sim_report/score_traces.png)",
        "",
    ]
    lines += md_table(
        [
            "fault",
            "axis",
            "Recon fp32",
            "SAP fp32",
            "NAP fp32",
            "Recon int8",
            "SAP int8",
            "NAP int8",
            "detected",
            "delay s",
        ],
        sim_rows(sim),
        "llrrrrrrrr",
    )
    lines += ["", *healthy_lines(report.get("healthy"))]
    if families:
        from benchmarks.families import table as families_table

        lines += ["", "## Model families, the shipped recipe with only `--model` changed", ""]
        lines += [*families_table(families), "", "Details: [families.md](families.md)."]
    lines += ["", "The digit protocol's results are in [digits.md](digits.md)."]
    return "\n".join(lines) + "\n"


def healthy_lines(healthy: dict[str, Any] | None, prefix: str = "") -> list[str]:
    """Long healthy runs and single fault episodes, in brief (details: sim_healthy.md)."""
    if not healthy:
        return []
    s, plan = healthy["summary"], healthy["plan"]
    per_seed = ", ".join(f"{r['seed']}: {r['alarms_raised']}" for r in healthy["runs"])
    lines = [
        f"## Simulator, long healthy runs and single fault episodes (bundle "
        f"`{healthy['bundle']['id']}`, {healthy['precision']})",
        "",
        f"{s['seeds']} seeds × {plan['seconds'] / 3600:.3g} h from a cold start, program changes "
        f"({', '.join(f'{n} × program {p}' for p, n in plan['schedule'])}), alarms per seed "
        f"{per_seed}: {s['alarms']} in {s['hours']:.1f} h, {s['false_alarms_per_hour']:.3f}/h "
        f"(95 % upper bound {s['false_alarms_per_hour_upper_95']:.3f}/h). One fault episode per "
        f"kind and seed: {s['episodes_ok']} of {s['episodes_detected']} detected episodes with "
        "exactly one raise and one clear within 2 debounce windows"
        + (
            f" (worst {s['worst_clear_after_debounce_windows']:.1f})"
            if s["worst_clear_after_debounce_windows"] is not None
            else ""
        )
        + (
            f"; not detected: {', '.join(s['not_detected_kinds'])}"
            if s["not_detected_kinds"]
            else ""
        )
        + f". Details: [sim_healthy.md]({prefix}sim_healthy.md).",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: quick evaluations")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--data", type=Path, default=CNC_DATA, help="cnc-mill-tool-wear folder")
    ap.add_argument("--skip-cnc", action="store_true", help="leave the CNC evaluations out")
    ap.add_argument(
        "--cnc-results",
        type=Path,
        help="use this cnc_eval results JSON instead of running the CNC evaluation again",
    )
    ap.add_argument(
        "--cnc-defaults-results",
        type=Path,
        help="use this cnc_defaults results JSON instead of running it again",
    )
    ap.add_argument(
        "--bundle",
        type=Path,
        default=SHIPPED_BUNDLE,
        help="bundle the simulator parts evaluate (default: the shipped agent/data/default.rapp)",
    )
    ap.add_argument("--cache", type=Path, help="sim_healthy's cache of other programs' bundles")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    info = machine_info()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.skip_cnc:
        cnc: dict[str, Any] = {"skipped": "--skip-cnc given"}
    elif args.cnc_results is not None:
        cnc = reuse_cnc(args.out, args.cnc_results)
    else:
        cnc = run_cnc(args.out, args.data, args.quick)
    if args.skip_cnc:
        defaults: dict[str, Any] = {"skipped": "--skip-cnc given"}
    elif args.cnc_defaults_results is not None:
        defaults = reuse_cnc(args.out, args.cnc_defaults_results, "cnc_defaults.json")
    else:
        defaults = run_cnc_defaults(args.out, args.data, args.quick)
    print(
        f"cnc: {'skipped' if 'skipped' in cnc else 'done'} ({time.perf_counter() - started:.0f} s)"
    )
    sim = run_sim(args.out, args.quick, args.bundle.resolve())
    print(f"sim-report: done ({time.perf_counter() - started:.0f} s)")
    healthy = run_healthy(args.out, args.quick, args.bundle.resolve(), args.cache)
    print(f"sim-healthy: done ({time.perf_counter() - started:.0f} s)")
    info["load_average_at_end"] = load_average()
    report = {
        "quick": args.quick,
        "machine": info,
        "cnc": {k: v for k, v in cnc.items() if k != "tasks"} | {"tasks": cnc.get("tasks", {})},
        "cnc_defaults": defaults,
        "sim": {
            k: sim[k]
            for k in ("bundle", "alarm", "faults", "normal", "quick", "seed", "scores", "baselines")
        },
        "healthy": healthy,
        "elapsed_s": time.perf_counter() - started,
    }
    recipe_path = args.out / "readme_recipe.json"
    if recipe_path.exists():  # benchmarks.readme_recipe, its own step of benchmarks.run
        recipe = json.loads(recipe_path.read_text())
        report["readme_recipe"] = {k: v for k, v in recipe.items() if k != "machine"}
    write_json(args.out / "quality.json", report)
    digits_path = args.out / "digits.json"
    digits = json.loads(digits_path.read_text()) if digits_path.exists() else None
    families_path = args.out / "families.json"
    families = json.loads(families_path.read_text()) if families_path.exists() else None
    text = markdown(report, digits, families)
    write_text(args.out / "quality.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
