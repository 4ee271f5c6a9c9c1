"""Drift to retrain and back: the agent's own loop on a slowly drifting simulated cell.

Run from the repository root (minutes; ``--quick`` for a smoke run)::

    .venv/bin/python -m benchmarks.drift_loop [--quick] [--out benchmarks/results]

**Drift.** Program 1 of the simulated arm, nuisances on. The cell runs at the nominal 3 kg
payload for a while, then the payload creeps up linearly to 3.45 kg (+15 %, in small steps)
and stays there: a process change that is now normal, slow enough that the agent sees every
stage of it. A step to +15 % leaves v1 almost nothing clean to capture (see
:mod:`benchmarks.retrain_eval`); a slow change does not.

**Loop.** v1 is :mod:`benchmarks.retrain_eval`'s v1 (trained on regime A, built on held-out
A; cached between runs). The whole drift is streamed through the agent's pipeline with the
capture on (a rolling buffer of clean windows, as ``[robots.drift] capture_dir`` keeps it),
and the drift monitor is read as the status payload reads it. When "retraining advised" is on
and at least ``min_capture`` windows were captured since the last install, the operator's
step is taken: :func:`exporter.retrain.retrain` on the capture (strict gates, signed) makes
the next version, and the pipeline installs it, as an OTA push would. The loop goes on until
the drift is over and the advice stays off.

**Measured** on fresh runs (other seeds), every version streamed through
:class:`agent.pipeline.robot.RobotPipeline`, fp32: false alarms on the post-drift cell
(payload 3.45 kg) before (v1) and after (the last version), and the calibrated rate (v1 on
regime A); windows at or above threshold and alarms raised per hour. The headline runs start
with warm joints, the state the drift stream reaches the new payload in; cold-start runs
(:func:`benchmarks.retrain_eval.measure`) are listed too. The fault AUROC on regime A
(``benchmarks.sim_report`` cases) shows what the loop cost the detector. Writes
``drift_loop.md``, ``drift_loop.json`` and ``plots/drift_loop.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.core.bundle import Bundle, TrustPolicy, load_bundle
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
from benchmarks.retrain_eval import CACHE, PAYLOAD_A, PLANS, Plan, cached_v1, measure, regime
from benchmarks.sim_report import (
    FAULT_CASES,
    WARM_START_S,
    column_index,
    replay,
    score_run,
    simulate_span,
)
from exporter.model import TrainedModel
from exporter.replay import ReplayBuffer
from exporter.retrain import FineTuneSettings, RetrainSettings, read_captures, retrain
from firmware_config.simulator import SimulatedRun

PAYLOAD_END = 3.45
DRIFT_SEED = 4
FRESH_SEEDS = {"A": 301, "end": 302}
FRESH_S = {False: 1800.0, True: 300.0}  # by quick
ROBOT = "arm1"
BIN_S = 10.0  # the trace is kept in bins of this many seconds


@dataclasses.dataclass(frozen=True)
class Drift:
    lead_s: float  # nominal payload before the drift starts
    ramp_s: float  # payload creeping from PAYLOAD_A to PAYLOAD_END
    hold_s: float  # at PAYLOAD_END
    step_s: float  # the payload changes in steps this long
    check_s: float  # how often the advice is read (the status interval of a device)
    min_capture: int  # windows captured since the last install before a retrain
    capture_windows: int  # the rolling capture's bound (capture_max_windows)
    max_rounds: int

    @property
    def seconds(self) -> float:
        return self.lead_s + self.ramp_s + self.hold_s

    def payload_at(self, t: float) -> float:
        progress = np.clip((t - self.lead_s) / self.ramp_s, 0.0, 1.0)
        return float(PAYLOAD_A + (PAYLOAD_END - PAYLOAD_A) * progress)


DRIFTS = {
    False: Drift(
        lead_s=600, ramp_s=3600, hold_s=3600, step_s=30, check_s=10, min_capture=1500,
        capture_windows=4096, max_rounds=8,
    ),
    True: Drift(
        lead_s=120, ramp_s=600, hold_s=300, step_s=15, check_s=5, min_capture=600,
        capture_windows=2048, max_rounds=4,
    ),
}  # fmt: skip


def drift_blocks(drift: Drift) -> Iterator[SimulatedRun]:
    """The drifting cell: consecutive stretches of one endless run, each at its payload."""
    n = int(np.ceil(drift.seconds / drift.step_s))
    for k in range(n):
        start = k * drift.step_s
        seconds = min(drift.step_s, drift.seconds - start)
        payload = drift.payload_at(start + seconds / 2)
        yield simulate_span(regime(DRIFT_SEED, payload), start, seconds)


@dataclasses.dataclass
class Served:
    """The served version and what its next retrain starts from (its model directory)."""

    bundle: Bundle
    trained: TrainedModel
    replay: ReplayBuffer
    calibration: ReplayBuffer


@dataclasses.dataclass
class Trace:
    """Per window: time, score / threshold, version served; events on the side."""

    t: list[float] = dataclasses.field(default_factory=list)
    ratio: list[float] = dataclasses.field(default_factory=list)
    version: list[str] = dataclasses.field(default_factory=list)
    raises: list[float] = dataclasses.field(default_factory=list)
    advised: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    installs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    refused: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    checks: list[tuple[float, bool]] = dataclasses.field(default_factory=list)  # t, advised

    def binned(self, drift: Drift) -> list[dict[str, Any]]:
        t, ratio = np.asarray(self.t), np.asarray(self.ratio)
        rows = []
        for lo in np.arange(0.0, drift.seconds, BIN_S):
            inside = (t >= lo) & (t < lo + BIN_S)
            if not inside.any():
                continue
            r = ratio[inside]
            rows.append(
                {
                    "t": float(lo + BIN_S / 2),
                    "payload_kg": drift.payload_at(lo + BIN_S / 2),
                    "ratio_p50": float(np.median(r)),
                    "ratio_p90": float(np.quantile(r, 0.9)),
                    "above": float(np.mean(r >= 1.0)),
                    "version": self.version[int(np.flatnonzero(inside)[-1])],
                }
            )
        return rows


class DriftLoop:
    """Streams the drift through one pipeline; retrains and installs when advised."""

    def __init__(
        self, v1: Served, drift: Drift, plan: Plan, capture: WindowCapture, log: Callable
    ) -> None:
        self.served = v1
        self.drift = drift
        self.plan = plan
        self.capture = capture
        self.log = log
        self.key = Ed25519PrivateKey.generate()
        self.policy = TrustPolicy(
            trusted_keys=(self.key.public_key().public_bytes_raw(),), allow_unsigned=False
        )
        self.pipeline = RobotPipeline(
            ROBOT,
            [self._scorer(v1.bundle)],
            AlarmSettings.from_bundle(v1.bundle.manifest.alarm),
            PipelineOptions(capture=capture),
        )
        self.trace = Trace()
        self.installed: list[Bundle] = []
        self.rounds = 0
        self._scored_since_install = 0
        self._captured_at_install = 0
        self._advised = False

    @staticmethod
    def _scorer(bundle: Bundle):
        return open_scorer(bundle, backend="onnxruntime", precision="fp32")

    def run(self) -> Trace:
        rate = float(self.pipeline.spec.sample_rate_hz)
        every = max(1, round(self.drift.check_s * rate / 1000))  # chunks of 1000 samples
        blocks = drift_blocks(self.drift)
        first = next(blocks)
        columns = column_index(first, self.served.bundle)

        def all_blocks() -> Iterator[SimulatedRun]:
            yield first
            yield from blocks

        for i, result in enumerate(replay(self.pipeline, all_blocks(), columns)):
            version = self.served.bundle.manifest.bundle_version
            for w in result.windows:
                self.trace.t.append(w.stop / rate)
                self.trace.ratio.append(w.score / w.threshold)
                self.trace.version.append(version)
            self.trace.raises += [e.span_end for e in result.events if e.kind == "raise"]
            self._scored_since_install += len(result.windows)
            if (i + 1) % every == 0:
                self._check((i + 1) * 1000 / rate)
        self.pipeline.close()
        return self.trace

    def _check(self, now_s: float) -> None:
        """Read the advice as a status message would; retrain when it is on."""
        settle = self.pipeline.drift.settings.window
        if self._scored_since_install < settle:
            return  # the monitor still holds windows the previous version scored
        indicators, advised = self.pipeline.drift_summary()
        self.trace.checks.append((now_s, advised))
        if advised and not self._advised:
            version = self.served.bundle.manifest.bundle_version
            self.trace.advised.append({"t": now_s, "version": version, **indicators})
            self.log(f"t = {now_s:.0f} s: retraining advised on v{version} ({indicators})")
        self._advised = advised
        new = self.capture.written - self._captured_at_install
        if advised and new >= self.drift.min_capture and self.rounds < self.drift.max_rounds:
            self._retrain(now_s)

    def _retrain(self, now_s: float) -> None:
        self.capture.flush()
        served = self.served
        settings = RetrainSettings(
            fine_tune=FineTuneSettings(epochs=self.plan.epochs, replay_mix=0.5),
            quantize=False,
            strict=False,  # gates recorded; a failed one is not installed (as the CLI refuses)
        )
        self.rounds += 1
        started = time.monotonic()
        result = retrain(
            served.bundle,
            served.trained,
            served.replay,
            read_captures([self.capture.directory], self.rounds),
            served.calibration,
            settings,
            sign=self.key.sign,
        )
        failed = [g.name for g in result.gates if not g.passed]
        record = {
            "t": now_s,
            "from_version": result.report["from_version"],
            "version": result.report["version"],
            "capture": result.report["capture"],
            "gates": result.report["gates"],
            "seconds": time.monotonic() - started,
        }
        self._captured_at_install = self.capture.written
        if failed:
            self.trace.refused.append(record)
            self.log(f"t = {now_s:.0f} s: retrain refused by {failed}; serving on")
            return
        bundle = load_bundle(result.built.data, self.policy)  # signed by the release key
        self.pipeline.install(self._scorer(bundle))
        self.trace.checks.append((now_s, False))  # the monitor starts afresh on the new one
        self.served = Served(bundle, result.trained, result.replay, result.calibration)
        self.installed.append(bundle)
        self._scored_since_install = 0
        self._advised = False
        self.trace.installs.append(record)
        self.log(
            f"t = {now_s:.0f} s: v{record['version']} installed (capture "
            f"{record['capture']}, {record['seconds']:.0f} s to retrain)"
        )


def false_alarms(bundle: Bundle, payload: float, seed: int, seconds: float) -> dict[str, float]:
    """Windows at or above threshold and alarms raised per hour on a fresh warm run."""
    scorer = open_scorer(bundle, backend="onnxruntime", precision="fp32")
    run = simulate_span(regime(seed, payload), WARM_START_S, seconds)
    scores = score_run(scorer, run, column_index(run, bundle))
    return {
        "windows_above": float(np.mean(scores.score >= scores.threshold)),
        "alarms_per_hour": len(scores.raises_s) / (seconds / 3600.0),
    }


def measured(bundle: Bundle, plan: Plan, quick: bool) -> dict[str, Any]:
    """Warm fresh runs at both ends of the drift, plus retrain_eval's cold-start runs and
    fault AUROC (its ``false_alarms_B`` is the post-drift payload from a cold start)."""
    out = measure(bundle, plan, quick, PAYLOAD_END)
    for name, payload in (("A", PAYLOAD_A), ("end", PAYLOAD_END)):
        out[f"warm_{name}"] = false_alarms(bundle, payload, FRESH_SEEDS[name], FRESH_S[quick])
    return out


def version_rates(trace: Trace) -> list[dict[str, Any]]:
    """Windows above threshold and alarms per hour in the drift stream while each version
    served, over its last stretch (after the drift monitor settled on it)."""
    t, ratio, version = np.asarray(trace.t), np.asarray(trace.ratio), np.asarray(trace.version)
    raises = np.asarray(trace.raises)
    rows = []
    for v in dict.fromkeys(trace.version):
        inside = np.flatnonzero(version == v)
        lo, hi = float(t[inside[0]]), float(t[inside[-1]])
        rows.append(
            {
                "version": v,
                "from_s": lo,
                "to_s": hi,
                "windows_above": float(np.mean(ratio[inside] >= 1.0)),
                "alarms_per_hour": float(np.sum((raises >= lo) & (raises <= hi)))
                / max(hi - lo, 1.0)
                * 3600,
            }
        )
    return rows


def phase_rates(trace: Trace, drift: Drift) -> list[dict[str, Any]]:
    """Windows above threshold and alarms per hour in each stretch of the drift stream."""
    edges = [0.0, drift.lead_s, drift.lead_s + drift.ramp_s, drift.seconds]
    installs = [i["t"] for i in trace.installs]
    t, ratio = np.asarray(trace.t), np.asarray(trace.ratio)
    raises = np.asarray(trace.raises)
    rows = []
    for name, lo, hi in zip(("lead", "ramp", "hold"), edges, edges[1:], strict=False):
        inside = (t >= lo) & (t < hi)
        rows.append(
            {
                "phase": name,
                "from_s": lo,
                "to_s": hi,
                "windows_above": float(np.mean(ratio[inside] >= 1.0)) if inside.any() else None,
                "alarms_per_hour": float(np.sum((raises >= lo) & (raises < hi)) / (hi - lo) * 3600),
                "installs": sum(lo <= x < hi for x in installs),
            }
        )
    return rows


def plot(path: Path, trace: Trace, drift: Drift) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = trace.binned(drift)
    t = np.array([r["t"] for r in rows])
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(11, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    stride = max(1, len(trace.t) // 20000)
    ax.semilogy(
        trace.t[::stride], np.maximum(trace.ratio[::stride], 1e-3), ".", ms=1, color="tab:blue",
        alpha=0.25, label="window score / threshold",
    )  # fmt: skip
    ax.semilogy(t, [r["ratio_p90"] for r in rows], color="tab:blue", lw=1.2, label="p90 (10 s)")
    ax.axhline(1.0, color="black", lw=0.9, label="threshold")
    edge = ax.get_xaxis_transform()  # x in data, y in axes fraction
    ax.plot(
        trace.raises, [0.95] * len(trace.raises), "v", color="red", ms=4, transform=edge,
        label="alarm raised",
    )  # fmt: skip
    for (t0, on), (t1, _) in zip(trace.checks, trace.checks[1:], strict=False):
        if on:
            ax.axvspan(t0, t1, color="orange", alpha=0.25, lw=0)
    ax.plot(
        [a["t"] for a in trace.advised], [0.88] * len(trace.advised), "^", color="darkorange",
        ms=7, transform=edge, label="retraining advised (shaded: while on)",
    )  # fmt: skip
    for k, i in enumerate(trace.installs):
        ax.axvline(i["t"], color="green", lw=1.5, label="new version installed" * (k == 0))
        ax.text(i["t"], 0.03, f" v{i['version']}", color="green", fontsize=8, transform=edge)
    ax.set_ylabel("score / threshold")
    ax.legend(fontsize=7, loc="upper left", ncol=3)
    ax.set_title("drift → retraining advised → retrain → install (payload creeping up 15 %)")
    ax2.plot(t, [r["payload_kg"] for r in rows], color="tab:brown")
    ax2.set_ylabel("payload [kg]")
    ax2.set_xlabel("time [s]")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fa(m: dict[str, Any], name: str) -> str:
    f = m[name]
    return f"{f['windows_above']:.4f} / {f['alarms_per_hour']:.0f}"


def render(report: dict[str, Any]) -> str:
    d, plan = report["drift"], report["plan"]
    kinds = [c.kind for c in FAULT_CASES]
    s = report["summary"]
    lines = [
        "# Drift → retraining advised → retrain → install, on the simulator",
        "",
        "Generated by `python -m benchmarks.drift_loop"
        + (" --quick" if report["quick"] else "")
        + "`; see the module docstring for the drift and the loop.",
        "",
        *machine_lines(report["machine"]),
        "",
        f"Drift: {d['lead_s']:g} s at {PAYLOAD_A:g} kg, then the payload creeps to "
        f"{PAYLOAD_END:g} kg over {d['ramp_s']:g} s (steps of {d['step_s']:g} s) and stays "
        f"{d['hold_s']:g} s. Windows of {plan['window']} samples at 1 kHz; advice read every "
        f"{d['check_s']:g} s; a retrain needs ≥ {d['min_capture']} windows captured since the "
        f"last install (rolling capture of {d['capture_windows']}).",
        "",
        "## Result",
        "",
        "- false alarms per hour on the post-drift cell (fresh warm run): "
        f"**{s['before_per_hour']:.0f} (v1) → "
        f"{s['after_per_hour']:.0f} (v{s['final_version']})**; calibrated rate (v1 on regime A): "
        f"{s['calibrated_per_hour']:.0f} per hour",
        f"- windows at or above threshold: {s['before_above']:.2%} → {s['after_above']:.2%} "
        f"(calibrated {s['calibrated_above']:.2%})",
        f"- rounds (retrain → install): {s['rounds']}; retraining advised first at "
        f"t = {s['first_advised_s']} s (payload {s['first_advised_kg']} kg)",
        "",
        *_notes(report),
        "",
        "![drift loop](plots/drift_loop.png)",
        "",
        "## Events",
        "",
    ]
    events = [
        (a["t"], 0, f"retraining advised on v{a['version']} (ks {a['ks']:.2f}, p50 ratio "
         f"{a['p50_ratio']:.2f}, alarm rate {a['alarm_rate']:.2f})")
        for a in report["advised"]
    ] + [
        (i["t"], 1, f"v{i['version']} installed: {i['capture']['windows']} captured windows "
         f"({i['capture']['teach']} teach), gates "
         + ", ".join(f"{g['name']} {'pass' if g['passed'] else 'FAIL'}" for g in i["gates"])
         + f", {i['seconds']:.0f} s to retrain")
        for i in report["installs"]
    ] + [
        (r["t"], 1, f"retrain to v{r['version']} refused: "
         + ", ".join(g["name"] for g in r["gates"] if not g["passed"]))
        for r in report["refused"]
    ]  # fmt: skip
    lines += md_table(
        ["t [s]", "payload [kg]", "event"],
        [[f"{t:.0f}", f"{_payload(d, t):.3f}", text] for t, _, text in sorted(events)],
        align="rrl",
    )
    lines += ["", "## In the drift stream", ""]
    lines += md_table(
        ["stretch", "from–to [s]", "windows above", "alarms / h", "installs"],
        [
            [p["phase"], f"{p['from_s']:g}–{p['to_s']:g}", f"{p['windows_above']:.4f}",
             f"{p['alarms_per_hour']:.0f}", p["installs"]]
            for p in report["phases"]
        ],
    )  # fmt: skip
    lines += ["", "While each version served (drift stream):", ""]
    lines += md_table(
        ["version", "from–to [s]", "windows above", "alarms / h"],
        [
            [f"v{r['version']}", f"{r['from_s']:.0f}–{r['to_s']:.0f}", f"{r['windows_above']:.4f}",
             f"{r['alarms_per_hour']:.0f}"]
            for r in report["by_version"]
        ],
    )  # fmt: skip
    fresh = FRESH_S[report["quick"]]
    lines += [
        "",
        "## Fresh runs",
        "",
        f"Other seeds, every version streamed through the pipeline. Warm: {fresh:g} s from "
        f"t = {WARM_START_S:g} s (joints warm, as in the drift stream's later stretches). Cold: "
        f"{plan['test_s']:g} s from a cold start, which the drift stream showed only at the "
        "nominal payload — a cold arm with the new payload is a state none of the versions has "
        "seen. Cells: windows at or above threshold / alarms raised per hour; AUROC of the alarm "
        "score on regime A's faults.",
        "",
    ]
    lines += md_table(
        ["version", "A warm", "post-drift warm", "A cold", "post-drift cold", *kinds, "mean"],
        [
            [f"v{v}", _fa(m, "warm_A"), _fa(m, "warm_end"), _fa(m, "false_alarms_A"),
             _fa(m, "false_alarms_B"), *(f"{m['auroc'][k]:.4f}" for k in kinds),
             f"{m['auroc_mean']:.4f}"]
            for v, m in report["measured"].items()
        ],
    )  # fmt: skip
    lines.append("")
    return "\n".join(lines)


def _notes(report: dict[str, Any]) -> list[str]:
    """What the numbers say about the loop's end state."""
    last = report["by_version"][-1]
    s = report["summary"]
    quiet = [a for a in report["advised"] if a["t"] > last["from_s"]]
    lines = [
        f"- v{last['version']} served the last {last['to_s'] - last['from_s']:.0f} s of the "
        f"drift stream with {last['windows_above']:.2%} of its windows at or above threshold "
        f"and {last['alarms_per_hour']:.0f} alarms per hour; retraining was "
        + ("advised again" if quiet else "not advised again")
        + " in that time.",
    ]
    if s["after_above"] > 2 * max(s["calibrated_above"], 0.001):
        lines.append(
            f"- The alarm rate is back, the window rate is not ({s['after_above']:.2%} vs "
            f"{s['calibrated_above']:.2%}): the alarm's debounce (k of n smoothed windows) "
            "absorbs isolated windows above threshold. Those windows never teach: the capture "
            "keeps only windows below threshold, and the drift monitor sees only their scores, "
            "so the cycle phases the served version scores above threshold are missing from "
            "every retrain, and the advice goes off before they are learnt."
        )
    return lines


def _payload(d: dict[str, Any], t: float) -> float:
    return Drift(**d).payload_at(t)


def summary(report: dict[str, Any]) -> dict[str, Any]:
    measured = report["measured"]
    first, last = measured["1"], measured[list(measured)[-1]]
    advised = report["advised"]
    drift = Drift(**report["drift"])
    return {
        "before_per_hour": first["warm_end"]["alarms_per_hour"],
        "after_per_hour": last["warm_end"]["alarms_per_hour"],
        "calibrated_per_hour": first["warm_A"]["alarms_per_hour"],
        "before_above": first["warm_end"]["windows_above"],
        "after_above": last["warm_end"]["windows_above"],
        "calibrated_above": first["warm_A"]["windows_above"],
        "final_version": list(measured)[-1],
        "rounds": len(report["installs"]),
        "first_advised_s": round(advised[0]["t"]) if advised else None,
        "first_advised_kg": round(drift.payload_at(advised[0]["t"]), 3) if advised else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.drift_loop", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="directory for drift_loop.md/.json")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where v1 is kept between runs")
    args = ap.parse_args(argv)
    plan, drift = PLANS[args.quick], DRIFTS[args.quick]
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {message}", file=sys.stderr)

    report: dict[str, Any] = {
        "machine": machine_info(),
        "quick": args.quick,
        "plan": dataclasses.asdict(plan),
        "drift": dataclasses.asdict(drift),
        "payload_end": PAYLOAD_END,
    }
    trained, buffer, v1, calib = cached_v1(plan, args.cache, log)
    served = Served(v1, trained, buffer.bounded(rule="stratified"), ReplayBuffer.of(calib))
    bundles = {"1": v1}
    with tempfile.TemporaryDirectory() as tmp:
        capture = WindowCapture.open(Path(tmp) / "capture", max_windows=drift.capture_windows)
        loop = DriftLoop(served, drift, plan, capture, log)
        log(f"streaming {drift.seconds:g} s of drift through the pipeline")
        trace = loop.run()
        report["captured"] = capture.written
    report["advised"] = trace.advised
    report["installs"] = trace.installs
    report["refused"] = trace.refused
    report["phases"] = phase_rates(trace, drift)
    report["by_version"] = version_rates(trace)
    report["trace"] = trace.binned(drift)
    for record, bundle in zip(trace.installs, loop.installed, strict=True):
        bundles[record["version"]] = bundle
    report["measured"] = {}
    for version, bundle in bundles.items():
        log(f"measuring v{version} on fresh runs")
        report["measured"][version] = measured(bundle, plan, args.quick)
    report["summary"] = summary(report)
    report["seconds"] = time.monotonic() - started
    report["machine"]["load_average_at_end"] = load_average()
    args.out.mkdir(parents=True, exist_ok=True)
    plot(args.out / "plots" / "drift_loop.png", trace, drift)
    write_json(args.out / "drift_loop.json", report)
    write_text(args.out / "drift_loop.md", render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
