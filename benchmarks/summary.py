"""SUMMARY.md from the results files: speed and quality targets vs measured figures, tables.

Run by :mod:`benchmarks.run` after the benchmarks (or alone, to re-render)::

    .venv/bin/python -m benchmarks.summary [--out benchmarks/results] [--readme README.md]

Every number here is read from ``<out>/*.json``; nothing is typed by hand. With ``--readme``
the same tables replace the block between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``
in the README, so the README always shows the latest results files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine_lines, md_table, write_text

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
PAPER_NAP = {"mi-v": 0.913, "mi-f": 0.707}
SCORES = ("recon", "sap", "nap")


def _load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / name
    return json.loads(path.read_text()) if path.exists() else None


def _impl(model: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in model["results"] if r["implementation"] == name)


def _fmt(x: float, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


# --- targets --------------------------------------------------------------------------------


def scoring_targets(speed: dict[str, Any]) -> list[list[str]]:
    rows = []
    for model in speed["models"]:
        for impl in ("onnxruntime int8", "litert int8"):
            r = _impl(model, impl)
            inf, sc = r["inference"]["speedup_b1_vs_torch"], r["scoring"]["speedup_b1_vs_torch"]
            gap = "met" if inf >= 10 else f"{10 / inf:.1f}× short"
            rows.append(
                [
                    f"int8 ≥ 10× faster than PyTorch eager per window ({model['model']}, {impl})",
                    f"inference b1 {inf:.1f}×, whole step b1 {sc:.1f}×",
                    gap,
                ]
            )
        r = _impl(model, "onnxruntime fp32")
        pct = r["inference"]["batch64"]["pct_of_peak"]
        rows.append(
            [
                f"within a small factor of the one-core GEMM peak ({model['model']}, ort fp32 b64)",
                f"{pct:.0f} % of {speed['peak']['gflops']:.0f} GFLOP/s",
                f"factor {100 / pct:.1f}" if pct < 100 else "at peak",
            ]
        )
    return rows


def streaming_targets(stream: dict[str, Any]) -> list[list[str]]:
    rows = []
    lat = stream["latency"]
    per_robot = [f"{r['robots']}: {r['cpu_pct_per_robot']:.2f} %" for r in lat]
    worst = max(r["cpu_pct_per_robot"] for r in lat)
    rows.append(
        [
            "CPU well under 5 % of one core per robot (6 ch × 1 kHz, MQTT frames)",
            "; ".join(per_robot),
            "met" if worst < 5 else f"{worst / 5:.1f}× over",
        ]
    )
    sim = [f"{r['robots']}: {r['cpu_pct_per_robot']:.2f} %" for r in stream["cost"]]
    rows.append(
        [
            "… same, simulator source (physics simulated inside the agent)",
            "; ".join(sim),
            "met" if max(r["cpu_pct_per_robot"] for r in stream["cost"]) < 5 else "over",
        ]
    )
    p99 = [(r["robots"], r["frame_to_alarm_ms"]["p99"]) for r in lat]
    worst_p99 = max(v for _, v in p99)
    rows.append(
        [
            "p99 frame-to-alarm latency < 20 ms",
            "; ".join(
                f"{n} robot(s): p50 {r['frame_to_alarm_ms']['p50']:.1f}, p99 {v:.1f} ms "
                f"(n={r['frame_to_alarm_ms']['n']})"
                for (n, v), r in zip(p99, lat, strict=True)
            ),
            "met" if worst_p99 < 20 else f"{worst_p99 - 20:.1f} ms over",
        ]
    )
    rss = max(r["rss_peak_mb"] for r in [*stream["cost"], *lat])
    rows.append(
        [
            "RSS < 150 MB",
            f"peak {rss:.0f} MB (largest over all runs, up to 16 robots)",
            "met" if rss < 150 else f"{rss - 150:.0f} MB over",
        ]
    )
    rows.append(["report the maximum sustained ingest rate", ingest_text(stream), "reported"])
    return rows


def ingest_text(stream: dict[str, Any]) -> str:
    ingest = stream["ingest"]
    peak = ingest["unpaced"]
    text = (
        f"unpaced peak {peak['samples_per_s']:,.0f} samples/s "
        f"≈ {peak['robot_equivalents']:.0f} robots"
    )
    sustained = ingest.get("sustained")
    if sustained:
        return (
            f"{sustained['samples_per_s']:,.0f} samples/s ≈ "
            f"{sustained['robot_equivalents']:.0f} robots sustained without loss ({text})"
        )
    if "steps" in ingest:
        return f"{text}; no paced run kept up, sustained is lower"
    return text


def quality_targets(quality: dict[str, Any], digits: dict[str, Any] | None) -> list[list[str]]:
    rows = []
    cnc = quality["cnc"]
    diffs = []
    if cnc.get("tasks"):
        for task, result in cnc["tasks"].items():
            paired = result["summary"]["window"].get("int8_minus_fp32", {})
            diffs += [
                f"CNC {task.upper()} {n} {paired[n]['mean']:+.3f}" for n in SCORES if n in paired
            ]
    sim_gap = max(
        abs(f["results"]["fp32"][f"auroc_{n}"] - f["results"]["int8"][f"auroc_{n}"])
        for f in quality["sim"]["faults"]
        for n in SCORES
    )
    diffs.append(f"simulator max |Δ| {sim_gap:.3f}")
    if digits:
        for protocol, s in digits["summary"].items():
            diffs.append(f"digits {protocol} max |Δ| {s['int8_minus_fp32_max_abs']:.3f}")
    worst = _worst_diff(cnc, sim_gap, digits)
    rows.append(
        [
            "int8 AUROC within 0.005 of fp32",
            "; ".join(diffs),
            "met" if worst <= 0.005 else f"worst |Δ| {worst:.3f} ({worst / 0.005:.1f}× the bound)",
        ]
    )
    orders = []
    if digits:
        for protocol, s in digits["summary"].items():
            m = {n: s["fp32"][n]["mean"] for n in SCORES}
            ok = m["nap"] >= m["sap"] >= m["recon"]
            orders.append((f"digits {protocol}", m, ok))
    sim_means = {
        n: sum(f["results"]["fp32"][f"auroc_{n}"] for f in quality["sim"]["faults"])
        / len(quality["sim"]["faults"])
        for n in SCORES
    }
    orders.append(
        ("simulator mean", sim_means, sim_means["nap"] >= sim_means["sap"] >= sim_means["recon"])
    )
    rows.append(
        [
            "NAP ≥ SAP ≥ Recon on the standard tasks (fp32)",
            "; ".join(
                f"{name}: {m['nap']:.3f} / {m['sap']:.3f} / {m['recon']:.3f}"
                for name, m, _ in orders
            ),
            ", ".join(f"{name} {'holds' if ok else 'violated'}" for name, _, ok in orders),
        ]
    )
    if cnc.get("tasks"):
        for task, paper in PAPER_NAP.items():
            window = cnc["tasks"][task]["summary"]["window"]
            fp32 = window["fp32"]["nap"]["mean"]
            int8 = window.get("int8", {}).get("nap", {}).get("mean", float("nan"))
            rows.append(
                [
                    f"CNC {task.upper()} AE-NAP ≥ paper {paper}",
                    f"fp32 {fp32:.3f}, int8 {_fmt(int8, 3)}",
                    "met" if fp32 >= paper else f"{paper - fp32:.3f} short (fp32)",
                ]
            )
    else:
        rows.append(
            ["CNC AE-NAP ≥ paper (MI-V 0.913, MI-F 0.707)", cnc.get("skipped", "–"), "not run"]
        )
    rows.append(_combined_vs_baselines(quality, digits))
    rows += _healthy_targets(quality.get("healthy"))
    if quality.get("readme_recipe"):
        rows.append(_readme_recipe_target(quality["readme_recipe"]))
    return rows


def _readme_recipe_target(recipe: dict[str, Any]) -> list[str]:
    """The README recipe's model on benchmarks.readme_recipe's healthy runs."""
    s = recipe["summary"]
    return [
        "the README recipe's model passes the 0-false-alarm check",
        f"{s['alarms']} alarms over {s['seeds']} × {recipe['plan']['seconds'] / 3600:.3g} h: "
        f"{s['false_alarms_per_hour']:.3f}/h (95 % upper bound "
        f"{s['false_alarms_per_hour_upper_95']:.3f}/h)",
        "met" if s["target_met"] else f"{s['alarms']} alarm(s)",
    ]


def _combined_vs_baselines(quality: dict[str, Any], digits: dict[str, Any] | None) -> list[str]:
    """The combined score against the best of IsolationForest and PCA on the same windows, on
    every task of the quality table."""
    from benchmarks.quality import BASELINES, task_aurocs

    label = {"iforest": "IsolationForest", "pca": "PCA"}

    short, met, missing = [], 0, []
    for task, aurocs, _ in task_aurocs(quality, digits):
        baselines = {n: aurocs[n] for n in BASELINES if aurocs.get(n) is not None}
        if aurocs.get("combined") is None or not baselines:
            missing.append(task)
            continue
        best = max(baselines, key=baselines.__getitem__)
        gap = aurocs["combined"] - baselines[best]
        if gap >= 0:
            met += 1
        else:
            short.append(
                (gap, f"{task} {aurocs['combined']:.3f} vs {label[best]} {baselines[best]:.3f}")
            )
    measured = [f"≥ on {met} of {met + len(short)} tasks"]
    if short:
        measured.append("short on " + "; ".join(text for _, text in sorted(short)))
    if missing:
        measured.append("not measured: " + ", ".join(missing))
    if short:
        gap_text = f"{len(short)} task(s) short, worst by {-min(g for g, _ in short):.3f}"
    else:
        gap_text = "met" if met and not missing else "incomplete"
    return [
        "combined ≥ best baseline (IsolationForest, PCA) on every task (window AUROC, fp32)",
        "; ".join(measured),
        gap_text,
    ]


def _healthy_targets(healthy: dict[str, Any] | None) -> list[list[str]]:
    """0 alarms on long healthy runs; one raise and one clear per fault episode."""
    if not healthy:
        return [["0 alarms over ≥ 2 h × ≥ 5 healthy seeds", "not run", "–"]]
    s, plan = healthy["summary"], healthy["plan"]
    hours = plan["seconds"] / 3600
    per_seed = ", ".join(f"{r['seed']}: {r['alarms_raised']}" for r in healthy["runs"])
    if s["target_met"]:
        gap = "met"
    elif s["alarms"]:
        gap = f"{s['alarms']} alarm(s)"
    else:
        gap = f"too short: {s['seeds']} seeds × {hours:.3g} h"
    rows = [
        [
            "0 alarms over ≥ 2 h × ≥ 5 healthy seeds (warm-up drift, program changes)",
            f"alarms per seed {per_seed} over {s['seeds']} × {hours:.3g} h: "
            f"{s['false_alarms_per_hour']:.3f}/h, 95 % upper bound "
            f"{s['false_alarms_per_hour_upper_95']:.3f}/h",
            gap,
        ]
    ]
    worst = s["worst_clear_after_debounce_windows"]
    measured = (
        f"{s['episodes_ok']} of {s['episodes_detected']} detected episodes ok"
        + (f" (worst clear {worst:.1f} debounce windows)" if worst is not None else "")
        + (f"; not ok: {'; '.join(s['episodes_not_ok'])}" if s["episodes_not_ok"] else "")
        + (
            f"; not detected: {', '.join(s['not_detected_kinds'])}"
            if s["not_detected_kinds"]
            else ""
        )
    )
    rows.append(
        [
            "one fault episode → exactly one raise and one clear; cleared within 2 debounce "
            "windows",
            measured,
            "met"
            if s["episodes_target_met"] and not s["not_detected_kinds"]
            else (
                "met where detected"
                if s["episodes_target_met"]
                else f"{len(s['episodes_not_ok'])} not ok"
            ),
        ]
    )
    return rows


def _worst_diff(cnc: dict[str, Any], sim_gap: float, digits: dict[str, Any] | None) -> float:
    worst = sim_gap
    for result in cnc.get("tasks", {}).values():
        paired = result["summary"]["window"].get("int8_minus_fp32", {})
        worst = max([worst, *(abs(paired[n]["mean"]) for n in SCORES if n in paired)])
    if digits:
        worst = max([worst, *(s["int8_minus_fp32_max_abs"] for s in digits["summary"].values())])
    return worst


# --- main tables ----------------------------------------------------------------------------


def performance_tables(speed: dict[str, Any], stream: dict[str, Any], prefix: str) -> list[str]:
    lines = []
    for model in speed["models"]:
        lines += [
            f"**Scoring, {model['model']} model {model['layer_sizes']}** "
            "(µs; windows/s; one thread)",
            "",
        ]
        rows = []
        for r in model["results"]:
            inf, sc = r["inference"], r["scoring"]
            rows.append(
                [
                    r["implementation"],
                    f"{inf['batch1']['p50_us']:.0f}",
                    f"{sc['batch1']['p50_us']:.0f}",
                    f"{sc['batch1']['p99_us']:.0f}",
                    f"{sc['batch64']['windows_per_s']:,.0f}",
                    f"{inf['batch64']['pct_of_peak']:.0f}",
                    f"{inf['speedup_b1_vs_torch']:.1f}",
                ]
            )
        lines += md_table(
            [
                "implementation",
                "infer b1 p50",
                "score b1 p50",
                "score b1 p99",
                "score b64 win/s",
                "% GEMM peak (infer b64)",
                "× torch (infer b1)",
            ],
            rows,
        )
        lines += [""]
    lines += ["**Streaming** (real `rapp-agent run`, local mosquitto)", ""]
    rows = []
    for r in stream["latency"]:
        lat = r["frame_to_alarm_ms"]
        rows.append(
            [
                r["robots"],
                "MQTT frames",
                f"{r['cpu_pct_one_core']:.1f}",
                f"{r['rss_peak_mb']:.0f}",
                f"{lat['p50']:.1f}",
                f"{lat['p99']:.1f}",
                lat["n"],
            ]
        )
    for r in stream["cost"]:
        rows.append(
            [
                r["robots"],
                "simulator",
                f"{r['cpu_pct_one_core']:.1f}",
                f"{r['rss_peak_mb']:.0f}",
                "–",
                "–",
                "–",
            ]
        )
    lines += md_table(
        [
            "robots",
            "source",
            "CPU % of one core",
            "RSS peak MB",
            "frame→alarm p50 ms",
            "p99 ms",
            "alarms",
        ],
        rows,
        "llrrrrr",
    )
    lines += [
        "",
        f"Maximum ingest in one agent process (robots at 6 ch × 1 kHz): {ingest_text(stream)}.",
        "",
        f"Plots: [scoring latency]({prefix}plots/scoring_latency.png), "
        f"[frame-to-alarm latency]({prefix}plots/streaming_latency.png).",
    ]
    return lines


def quality_tables(
    quality: dict[str, Any],
    digits: dict[str, Any] | None,
    prefix: str,
    families: dict[str, Any] | None = None,
) -> list[str]:
    from benchmarks.quality import (
        DEFAULTS_SCORES,
        LABEL,
        cnc_defaults_rows,
        cnc_rows,
        digits_rows,
        healthy_lines,
        quality_table,
        sim_rows,
    )

    lines = [
        "**Every task, default flags** (NAP, combined score and baselines on the same windows; "
        "alarm events)",
        "",
        *quality_table(quality, digits),
        "",
    ]
    defaults = quality.get("cnc_defaults") or {}
    if defaults.get("tasks"):
        lines += [
            "**CNC mill with the exporter's default flags** (model selection, CLI training and "
            "build defaults; window AUROC fp32, mean ± std over folds)",
            "",
            *md_table(
                ["task", *(LABEL.get(n, n) for n in DEFAULTS_SCORES), "combined ≥ IF (folds)"],
                cnc_defaults_rows(defaults),
                "l" + "r" * (len(DEFAULTS_SCORES) + 1),
            ),
            "",
        ]
    cnc = quality["cnc"]
    lines += [
        "**CNC mill tool wear, the RaPP paper's protocol** (rows as windows, the benchmark's "
        "training recipe; real servo currents, experiment-wise split, window AUROC)",
        "",
    ]
    if cnc.get("tasks"):
        lines += md_table(
            ["task", "score", "fp32", "int8", "int8 − fp32 (paired)", "paper AE (MI-F/MI-V)"],
            cnc_rows(cnc),
            "llrrrr",
        )
    else:
        lines += [f"Skipped: {cnc.get('skipped')}."]
    sim_bundle = quality["sim"]["bundle"]
    lines += [
        "",
        f"**Simulator, per fault type** (bundle `{sim_bundle['id']}`, {sim_bundle['path']}; AUROC)",
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
            "detected (int8)",
            "alarm delay s",
        ],
        sim_rows(quality["sim"]),
        "llrrrrrrrr",
    )
    if quality.get("healthy"):
        lines += ["", *healthy_lines(quality["healthy"], prefix)[2:]]
    if families:
        from benchmarks.families import table as families_table

        lines += [
            "",
            "**Model families** (the shipped recipe with only `--model` changed; AUROC of the "
            "alarm score per simulated fault, healthy false alarms, scoring cost)",
            "",
            *families_table(families),
        ]
    if digits:
        lines += [
            "",
            "**RaPP digit protocol on scikit-learn 8×8 digits** (mean AUROC over classes)",
            "",
        ]
        lines += md_table(
            ["protocol", "precision", "Recon", "SAP", "NAP"],
            digits_rows(digits),
            "llrrr",
        )
    lines += [
        "",
        "Plots: [score traces with thresholds and fault onsets]"
        f"({prefix}sim_report/score_traces.png); "
        f"details: [CNC defaults]({prefix}cnc_defaults.md), [families]({prefix}families.md), "
        f"[CNC paper protocol]"
        f"({prefix}cnc_quality.md), [simulator]({prefix}sim_report/report.md), "
        f"[digits]({prefix}digits.md).",
    ]
    return lines


def render(out: Path, prefix: str = "") -> tuple[str, str, str]:
    """(SUMMARY.md text, README performance block, README quality block)."""
    speed, stream = _load(out, "scoring_speed.json"), _load(out, "streaming.json")
    quality, digits = _load(out, "quality.json"), _load(out, "digits.json")
    missing = [
        n
        for n, d in (("scoring_speed", speed), ("streaming", stream), ("quality", quality))
        if d is None
    ]
    if missing:
        raise SystemExit(f"results missing in {out}: {', '.join(missing)}; run benchmarks.run")
    assert speed and stream and quality
    targets = scoring_targets(speed) + streaming_targets(stream) + quality_targets(quality, digits)
    targets.append(
        [
            "Reliability (no alarm lost, no crash on any byte stream, bad bundles rejected)",
            "checked by the test suite (tests/unit, tests/e2e), not by these benchmarks",
            "–",
        ]
    )
    quick = any(d.get("quick") for d in (speed, stream, quality))
    head = [
        "# Benchmark summary",
        "",
        "Generated by `make bench` (`python -m benchmarks.run`) from the JSON files in this "
        "folder; do not edit by hand."
        + (" **Quick smoke run: these numbers are not the published ones.**" if quick else ""),
        "",
        *machine_lines(speed["machine"]),
        "",
        "## Targets: measured figure and gap",
        "",
        *md_table(["target", "measured", "gap"], targets, "lll"),
    ]
    perf = performance_tables(speed, stream, prefix)
    families = _load(out, "families.json")
    qual = quality_tables(quality, digits, prefix, families)
    summary = (
        "\n".join(
            [
                *head,
                "",
                "## Performance",
                "",
                *performance_tables(speed, stream, ""),
                "",
                "## Detection quality",
                "",
                *quality_tables(quality, digits, "", families),
            ]
        )
        + "\n"
    )
    machine = speed["machine"]
    stamp = (
        f"Measured {machine['date']} on {machine['cpu']} ({machine['cores']} cores), load "
        f"average {machine['load_average_at_start']}; the targets with measured "
        f"figures and gaps are in [SUMMARY.md]({prefix}SUMMARY.md)."
    )
    return summary, "\n".join([stamp, "", *perf]), "\n".join(qual)


def update_readme(readme: Path, perf: str, qual: str) -> None:
    """Replace the generated block in the README (between the bench markers)."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no {BEGIN} … {END} block to update")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    block = (
        f"{BEGIN}\n<!-- generated by `make bench` (benchmarks/summary.py) from "
        "benchmarks/results/*.json; edits here are overwritten -->\n\n"
        f"## Performance\n\n{perf}\n\n## Detection quality\n\n{qual}\n{END}"
    )
    write_text(readme, head + block + tail)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--readme", type=Path, help="README to update (between the bench markers)")
    args = ap.parse_args(argv)
    summary, _, _ = render(args.out)
    write_text(args.out / "SUMMARY.md", summary)
    if args.readme is not None:
        prefix = Path(*args.out.resolve().relative_to(args.readme.resolve().parent).parts)
        _, perf, qual = render(args.out, f"{prefix.as_posix()}/")
        update_readme(args.readme, perf, qual)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
