"""One command for every benchmark and evaluation: ``make bench`` / ``make bench-quick``.

::

    .venv/bin/python -m benchmarks.run [--quick] [--out benchmarks/results] [--skip-cnc]
                                       [--bundle agent/data/default.rapp] [--readme README.md]

Runs, each in its own process (so each sets its own thread limits and frees its memory):

1. :mod:`benchmarks.scoring_speed` — per-window latency/throughput vs PyTorch eager, FLOPs,
   % of the one-core GEMM peak, for the shipped default model and a larger one;
2. :mod:`benchmarks.streaming` — the real agent daemon at 1/4/16 robots: CPU, RSS,
   frame-to-alarm latency, maximum ingest;
3. :mod:`benchmarks.digits` — the RaPP paper's digit protocol on scikit-learn's 8×8 digits;
4. :mod:`benchmarks.quality` — :mod:`benchmarks.cnc_defaults` (CNC MI-F/MI-V with the
   exporter's default flags), :mod:`benchmarks.cnc_eval` (the paper's protocol),
   :mod:`benchmarks.sim_report` (simulator per fault type, baselines on the same windows, alarm
   events) and :mod:`benchmarks.sim_healthy` (5 seeds × 2 h healthy runs with drift and program
   changes, one fault episode per kind) on ``--bundle`` (default: the shipped bundle), gathered
   with the digits into one quality table;
   :mod:`benchmarks.families` (mlp, conv1d, lstm side by side with the shipped recipe; full
   run only — its own smoke test is ``tests/bench/test_families_smoke.py``) joins that table;
   :mod:`benchmarks.drift_loop` (drift → retraining advised → retrain → install on the
   simulator; full run only, ~10 min — CI runs the reduced loop, tests/e2e/test_drift_loop.py)
   and :mod:`benchmarks.readme_recipe` (the README's recipe as written, then the healthy-run
   check on its model; full run only) join it too;
5. :mod:`benchmarks.summary` — ``SUMMARY.md`` (speed and quality targets: measured figure, gap)
   and, with ``--readme``, the README's Performance and Detection quality sections.

The full run takes about an hour on 2 idle cores (the CNC defaults ~25 min, families ~11
min with a cold cache, the drift loop ~10 min). ``--quick`` is the CI smoke run: every
harness on small settings (the CNC evaluation on MI-V only, one seed, quick training), the
speed-insensitive parts in parallel; it checks the harness works and asserts no speed. Exit
status 1 if any part failed (the others still run and the summary shows what exists).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import RESULTS, ROOT


def command(module: str, out: Path, quick: bool, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        f"benchmarks.{module}",
        "--out",
        str(out),
        *(["--quick"] if quick else []),
        *extra,
    ]


def run_steps(steps: list[tuple[str, list[str]]], logs: Path, parallel: bool) -> dict[str, int]:
    """Run the step commands (all at once if ``parallel``); return exit codes by step name."""
    procs: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    codes: dict[str, int] = {}
    for name, cmd in steps:
        log = (logs / f"{name}.log").open("wb")
        print(f"[bench] {name}: {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        procs[name] = (proc, time.perf_counter())
        if not parallel:
            codes[name] = _finish(name, *procs[name], logs)
    for name, (proc, started) in procs.items():
        if name not in codes:
            codes[name] = _finish(name, proc, started, logs)
    return codes


def _finish(name: str, proc: subprocess.Popen[bytes], started: float, logs: Path) -> int:
    code = proc.wait()
    status = "ok" if code == 0 else f"FAILED (exit {code}); see {logs / (name + '.log')}"
    print(f"[bench] {name}: {status} in {time.perf_counter() - started:.0f} s", flush=True)
    if code != 0:
        print((logs / f"{name}.log").read_text(errors="replace")[-3000:], flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI smoke run (< 2 min on 2 cores)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--skip-cnc", action="store_true", help="leave the CNC evaluation out")
    ap.add_argument("--readme", type=Path, help="also update this README's results sections")
    ap.add_argument(
        "--cnc-results",
        type=Path,
        help="reuse a finished cnc_eval results JSON (benchmarks.quality)",
    )
    ap.add_argument(
        "--cnc-defaults-results",
        type=Path,
        help="reuse a finished cnc_defaults results JSON (benchmarks.quality)",
    )
    ap.add_argument(
        "--bundle", type=Path, help="bundle the simulator evaluations use (default: the shipped)"
    )
    args = ap.parse_args(argv)
    out = args.out.resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    quality_args = ["--skip-cnc"] if args.skip_cnc else []
    if args.cnc_results is not None:
        quality_args += ["--cnc-results", str(args.cnc_results.resolve())]
    if args.cnc_defaults_results is not None:
        quality_args += ["--cnc-defaults-results", str(args.cnc_defaults_results.resolve())]
    if args.bundle is not None:
        quality_args += ["--bundle", str(args.bundle.resolve())]
    if args.quick:
        # Nothing timed matters in a smoke run: run the harnesses side by side.
        codes = run_steps(
            [
                ("scoring_speed", command("scoring_speed", out, True)),
                ("streaming", command("streaming", out, True)),
                ("digits", command("digits", out, True)),
                ("quality", command("quality", out, True, *quality_args)),
            ],
            logs,
            parallel=True,
        )
    else:
        # One at a time: each timed benchmark gets the machine to itself (apart from others'
        # load, which every results file states).
        codes = run_steps(
            [
                ("scoring_speed", command("scoring_speed", out, False)),
                ("streaming", command("streaming", out, False)),
                ("digits", command("digits", out, False)),
                ("families", command("families", out, False)),
                ("drift_loop", command("drift_loop", out, False)),
                ("readme_recipe", command("readme_recipe", out, False)),
                ("quality", command("quality", out, False, *quality_args)),
            ],
            logs,
            parallel=False,
        )
    summary = [sys.executable, "-m", "benchmarks.summary", "--out", str(out)]
    if args.readme is not None:
        summary += ["--readme", str(args.readme.resolve())]
    codes |= run_steps([("summary", summary)], logs, False)
    failed = [name for name, code in codes.items() if code != 0]
    elapsed = time.perf_counter() - started
    print(
        f"[bench] {'FAILED: ' + ', '.join(failed) if failed else 'all ok'} in {elapsed:.0f} s; "
        f"results in {out}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
