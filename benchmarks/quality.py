"""Detection quality gathered in one place (Quality).

Run from the repository root (``make bench`` runs it with the others)::

    .venv/bin/python -m benchmarks.quality [--quick] [--out benchmarks/results] [--data DIR]

It runs the project's own evaluations, each in its own process — it does not re-implement
them — and collects their results:

- :mod:`benchmarks.cnc_eval` on the CNC mill tool-wear recordings (MI-F and MI-V,
  experiment-wise split; Recon/SAP/NAP AUROC fp32 and int8 next to the RaPP paper's AE
  figures) → ``<out>/cnc_quality.json`` + ``.md``. The data lives beside the repository
  (``../shared/data/cnc-mill-tool-wear``), not in it: without it this part is reported as
  skipped, never faked.
- :mod:`benchmarks.sim_report` on the shipped default bundle (AUROC per simulated fault type,
  attribution, alarm delays, false alarms; score-trace plots with thresholds and fault onsets)
  → ``<out>/sim_report/``.
``<out>/quality.json`` and ``<out>/quality.md`` hold the combined tables; the digit protocol
(:mod:`benchmarks.digits`) writes its own, and ``SUMMARY.md`` shows all three.
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
LABEL = {"recon": "Recon", "sap": "SAP", "nap": "NAP"}


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


def run_sim(out: Path, quick: bool) -> dict[str, Any]:
    target = out / "sim_report"
    bundle, folder = (os.path.relpath(p, ROOT) for p in (SHIPPED_BUNDLE, target))
    args = ["--bundle", bundle, "--out", folder, "--seed", "0"]
    run_module("benchmarks.sim_report", *args, *(["--quick"] if quick else []))
    return json.loads((target / "report.json").read_text())


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


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Detection quality", "", *machine_lines(report["machine"])]
    lines += [f"- {'quick smoke run' if report['quick'] else 'full run'}", ""]
    cnc = report["cnc"]
    lines += ["## CNC mill tool wear (real servo data, experiment-wise split)", ""]
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
        f"## Simulator, per fault type (shipped bundle `{sim['bundle']['id']}`)",
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
    lines += ["", "The digit protocol's results are in [digits.md](digits.md)."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run: quick evaluations")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--data", type=Path, default=CNC_DATA, help="cnc-mill-tool-wear folder")
    ap.add_argument("--skip-cnc", action="store_true", help="leave the CNC evaluation out")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    info = machine_info()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.skip_cnc:
        cnc: dict[str, Any] = {"skipped": "--skip-cnc given"}
    else:
        cnc = run_cnc(args.out, args.data, args.quick)
    print(
        f"cnc: {'skipped' if 'skipped' in cnc else 'done'} ({time.perf_counter() - started:.0f} s)"
    )
    sim = run_sim(args.out, args.quick)
    print(f"sim-report: done ({time.perf_counter() - started:.0f} s)")
    info["load_average_at_end"] = load_average()
    report = {
        "quick": args.quick,
        "machine": info,
        "cnc": {k: v for k, v in cnc.items() if k != "tasks"} | {"tasks": cnc.get("tasks", {})},
        "sim": {k: sim[k] for k in ("bundle", "alarm", "faults", "normal", "quick", "seed")},
        "elapsed_s": time.perf_counter() - started,
    }
    write_json(args.out / "quality.json", report)
    text = markdown(report)
    write_text(args.out / "quality.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
