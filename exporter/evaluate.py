"""`rapp-export evaluate`: how a bundle does on labelled recordings, the way a device runs it.

Input: a bundle and recordings in the README's CSV format whose ``fault`` column labels the
faulted samples (empty = normal), several files; optionally the held-out normal recordings
the bundle was calibrated on (``calibration``), which fit the baselines.

**Windows.** Every recording goes through the live code path
(:func:`agent.offline.score_recording`: frame-sized chunks → streaming segmenter → scorer →
alarm tracker). A window is anomalous when any of its samples carries a fault label. Reported:
the AUROC of Recon, SAP and NAP and of two classic detectors on the very same windows —
IsolationForest and PCA reconstruction error (components for 95 % of the variance), both
fitted on the calibration windows, on the features the autoencoder sees (the bundle's
normalization and feature kinds).

**Events.** A fault event is a maximal run of samples with the same label in one recording; an
alarm episode runs from the window that raised to the one that cleared (or the recording's
end). An episode is *true* when it is active somewhere in [event start, event end +
tolerance] of an event of its recording, else a false alarm; an event is *detected* when a
true episode overlaps it that way, with delay = raise − event start (0 when an alarm was
already up). Precision = true episodes / episodes; recall = detected events / events; false
alarms per hour = episodes on recordings without any fault label / their hours; alarms per
detected event above 1 means an alarm toggled while its fault lasted.

**Groups.** Recordings are grouped by the fault kinds they hold (``label``, default: e.g.
"friction", "normal"), by their directory (``dir``) or not at all (``none``); every group is
also scored against the windows of the normal recordings, so a group of faulted files alone
still has negatives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.core.bundle import Bundle, load_bundle
from agent.core.features import segment_recording
from agent.core.recording import Recording, read_recording, require_segments
from agent.core.scoring import open_scorer
from agent.offline import score_recording
from exporter.data import segment_one
from exporter.errors import ExportError, ExportInputError, MissingExtraError
from exporter.metrics import auroc

RAPP_SCORES = ("recon", "sap", "nap", "density", "combined")
BASELINES = ("iforest", "pca")
GROUPINGS = ("label", "dir", "none")
NORMAL = "normal"
PCA_VARIANCE = 0.95
IFOREST_TREES = 200


@dataclass(frozen=True)
class EvalSettings:
    data: tuple[Path, ...]
    calibration: tuple[Path, ...] = ()
    group_by: str = "label"
    tolerance_s: float = 30.0
    backend: str = "auto"
    precision: str = "int8"
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.data:
            raise ExportInputError("no recordings to evaluate; pass --data FILE.csv [FILE.csv …]")
        if self.group_by not in GROUPINGS:
            raise ExportInputError(
                f"group_by = {self.group_by!r}: choose one of {', '.join(GROUPINGS)}"
            )
        if not (math.isfinite(self.tolerance_s) and self.tolerance_s >= 0):
            raise ExportInputError(f"tolerance = {self.tolerance_s}: must be ≥ 0 seconds")


@dataclass(frozen=True)
class Interval:
    """A fault event (``label``) or an alarm episode (``label`` "alarm"), in seconds."""

    label: str
    start: float
    end: float
    open: bool = False  # an episode still active when the recording ended


@dataclass
class ScoredFile:
    path: Path
    group: str
    duration_s: float
    anomalous: np.ndarray  # (W,) bool, per window
    scores: dict[str, np.ndarray]  # name → (W,)
    features: np.ndarray  # (W × F), for the baselines
    events: list[Interval]
    episodes: list[Interval]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def normal(self) -> bool:
        return not self.events


# -- reading and scoring -------------------------------------------------------------------


def sample_times(recording: Recording, sample_rate_hz: float) -> np.ndarray:
    if recording.time_s is not None and np.isfinite(recording.time_s).all():
        return np.asarray(recording.time_s, dtype=np.float64)
    return np.arange(recording.n_samples) / sample_rate_hz


def fault_events(recording: Recording, times: np.ndarray) -> list[Interval]:
    """Maximal runs of samples that carry the same non-empty fault label."""
    if recording.labels is None:
        return []
    labels = np.char.strip(np.asarray(recording.labels, dtype=str))
    events: list[Interval] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            if labels[start]:
                events.append(
                    Interval(str(labels[start]), float(times[start]), float(times[i - 1]))
                )
            start = i
    return events


def alarm_episodes(rows: Sequence[dict[str, Any]], end_s: float) -> list[Interval]:
    """Raise-to-clear spans from the live path's per-window alarm flags."""
    episodes: list[Interval] = []
    raised: float | None = None
    for row in rows:
        active, t = bool(row["alarm"]), float(row["time_end_s"])
        if active and raised is None:
            raised = t
        elif not active and raised is not None:
            episodes.append(Interval("alarm", raised, t))
            raised = None
    if raised is not None:
        episodes.append(Interval("alarm", raised, end_s, open=True))
    return episodes


def group_of(path: Path, events: list[Interval], group_by: str) -> str:
    if group_by == "dir":
        return path.parent.name or "."
    if group_by == "none":
        return "all"
    return "+".join(sorted({e.label for e in events})) or NORMAL


def window_features(bundle: Bundle, recording: Recording, rows: Sequence[dict[str, Any]]):
    """Features of the windows the live path scored, matched by their sample span."""
    spec = bundle.manifest.input
    segmented = segment_recording(
        spec,
        bundle.normalization,
        recording.samples,
        recording.cycle_start,
        recording.program_id,
        recording.gap_before,
    )
    spans = zip(segmented.start, segmented.stop, strict=True)
    index = {(int(a), int(b)): i for i, (a, b) in enumerate(spans)}
    try:
        picks = [index[(int(r["start"]), int(r["stop"]))] for r in rows]
    except KeyError as err:
        raise ExportError(
            f"{recording.path}: the live path scored window {err.args[0]} that the batch "
            "segmenter does not produce; the two segmenters disagree"
        ) from err
    return segmented.features[picks]


def score_file(
    bundle: Bundle,
    scorer,
    path: Path,
    settings: EvalSettings,
    progress: Callable[[int, int], None] | None = None,
) -> ScoredFile:
    spec = bundle.manifest.input
    recording = read_recording(path, spec.channels)
    require_segments(recording, spec.segmentation)
    result = score_recording(scorer, path, progress=progress)
    times = sample_times(recording, spec.sample_rate_hz)
    events = fault_events(recording, times)
    duration = recording.n_samples / spec.sample_rate_hz
    rows = result.rows
    return ScoredFile(
        path=path,
        group=group_of(path, events, settings.group_by),
        duration_s=duration,
        anomalous=np.array([bool(r["label"]) for r in rows], dtype=bool),
        scores={
            name: np.array([float(r[name]) for r in rows])
            for name in RAPP_SCORES
            if not rows or rows[0].get(name) is not None
        },
        features=window_features(bundle, recording, rows),
        events=events,
        episodes=alarm_episodes(rows, float(times[-1]) if len(times) else 0.0),
        skipped=dict(result.skipped),
    )


# -- baselines ------------------------------------------------------------------------------


def calibration_features(bundle: Bundle, paths: Sequence[Path]) -> np.ndarray:
    """Features of the calibration windows of the programs the bundle serves."""
    spec = bundle.manifest.input
    parts = []
    for path in paths:
        part = segment_one(spec, bundle.normalization, read_recording(path, spec.channels))
        keep = (
            np.isin(part.program, bundle.manifest.programs)
            if bundle.manifest.programs
            else np.ones(len(part.program), dtype=bool)
        )
        parts.append(part.features[keep])
    features = np.concatenate(parts) if parts else np.empty((0, spec.feature_dim))
    if len(features) < 2:
        raise ExportInputError(
            f"{len(features)} calibration windows of the bundle's programs; the baselines need "
            "more (pass the held-out normal recordings the bundle was built with)"
        )
    return features


def fit_baselines(train: np.ndarray, seed: int):
    """Score functions (higher = more anomalous) of IsolationForest and PCA, fitted on
    ``train``."""
    try:
        from sklearn.decomposition import PCA
        from sklearn.ensemble import IsolationForest
    except ModuleNotFoundError as err:
        raise MissingExtraError(
            "`rapp-export evaluate` needs scikit-learn for its baselines; install the "
            "exporter with: pip install 'rapp-edge[export]'"
        ) from err
    forest = IsolationForest(n_estimators=IFOREST_TREES, random_state=seed).fit(train)
    pca = PCA(n_components=PCA_VARIANCE, svd_solver="full", random_state=seed).fit(train)

    def pca_error(x: np.ndarray) -> np.ndarray:
        return np.square(x - pca.inverse_transform(pca.transform(x))).sum(axis=1)

    return {"iforest": lambda x: -forest.score_samples(x), "pca": pca_error}


# -- metrics --------------------------------------------------------------------------------


def _auroc_or_none(scores: np.ndarray, labels: np.ndarray) -> float | None:
    if labels.all() or not labels.any():
        return None
    return auroc(scores, labels)


def window_metrics(files: Sequence[ScoredFile], names: Sequence[str]) -> dict[str, Any]:
    labels = np.concatenate([f.anomalous for f in files]) if files else np.zeros(0, bool)
    return {
        "windows": int(labels.size),
        "anomalous": int(labels.sum()),
        "auroc": {
            name: _auroc_or_none(np.concatenate([f.scores[name] for f in files]), labels)
            for name in names
        },
    }


def _overlaps(episode: Interval, event: Interval, tolerance_s: float) -> bool:
    return episode.start <= event.end + tolerance_s and episode.end >= event.start


def event_metrics(files: Sequence[ScoredFile], tolerance_s: float) -> dict[str, Any]:
    events = detected = episodes = true_episodes = 0
    delays: list[float] = []
    normal_hours = false_alarms = 0.0
    for f in files:
        events += len(f.events)
        episodes += len(f.episodes)
        true_episodes += sum(
            any(_overlaps(ep, ev, tolerance_s) for ev in f.events) for ep in f.episodes
        )
        for ev in f.events:
            hits = [ep for ep in f.episodes if _overlaps(ep, ev, tolerance_s)]
            if hits:
                detected += 1
                delays.append(max(0.0, min(ep.start for ep in hits) - ev.start))
        if f.normal:
            normal_hours += f.duration_s / 3600.0
            false_alarms += len(f.episodes)
    return {
        "events": events,
        "detected": detected,
        "recall": detected / events if events else None,
        "episodes": episodes,
        "true_episodes": true_episodes,
        "precision": true_episodes / episodes if episodes else None,
        # > 1 means the alarm toggled during a fault (one fault, several raises)
        "alarms_per_detected_event": true_episodes / detected if detected else None,
        "delay_s": _summary(delays),
        "normal_hours": normal_hours,
        "false_alarms": int(false_alarms),
        "false_alarms_per_hour": false_alarms / normal_hours if normal_hours else None,
    }


def _summary(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "median": float(np.median(v)), "max": float(v.max())}


# -- the report -----------------------------------------------------------------------------


def evaluate(
    bundle_path: Path,
    settings: EvalSettings,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Score ``settings.data`` with the bundle; the report as a JSON-ready dict.
    ``progress(samples_done, samples_total)`` follows each file in turn (for a bar)."""
    bundle = load_bundle(bundle_path)
    scorer = open_scorer(bundle, settings.backend, settings.precision)
    files = [score_file(bundle, scorer, Path(p), settings, progress) for p in settings.data]
    names = [name for name in RAPP_SCORES if all(name in f.scores for f in files)]
    if settings.calibration:
        baselines = fit_baselines(calibration_features(bundle, settings.calibration), settings.seed)
        for f in files:
            for name, score in baselines.items():
                f.scores[name] = score(f.features) if len(f.features) else np.zeros(0)
        names += list(BASELINES)
    normal = [f for f in files if f.normal]
    groups = sorted({f.group for f in files})
    per_group = {g: [f for f in files if f.group == g] for g in groups}
    manifest = bundle.manifest
    return {
        "bundle": {
            "path": str(bundle_path),
            "bundle_id": manifest.bundle_id,
            "version": manifest.bundle_version,
            "artifact": scorer.artifact.id,
            "alarm_score": manifest.alarm.score,
            "threshold": float(scorer.thresholds[manifest.alarm.score]),
        },
        "settings": {
            "tolerance_s": settings.tolerance_s,
            "group_by": settings.group_by,
            "calibration": [str(p) for p in settings.calibration],
            "baselines": "fitted on the calibration windows" if settings.calibration else None,
            "seed": settings.seed,
        },
        "windows": {
            "all": window_metrics(files, names),
            "groups": {
                g: window_metrics(_with_normal(members, normal), names)
                for g, members in per_group.items()
            },
        },
        "events": {
            "all": event_metrics(files, settings.tolerance_s),
            "groups": {
                g: event_metrics(members, settings.tolerance_s) for g, members in per_group.items()
            },
        },
        "recordings": [_recording_json(f) for f in files],
    }


def _with_normal(members: list[ScoredFile], normal: list[ScoredFile]) -> list[ScoredFile]:
    return members + [f for f in normal if f not in members]


def _recording_json(f: ScoredFile) -> dict[str, Any]:
    return {
        "path": str(f.path),
        "group": f.group,
        "duration_s": f.duration_s,
        "windows": int(f.anomalous.size),
        "anomalous_windows": int(f.anomalous.sum()),
        "events": [vars(e) for e in f.events],
        "episodes": [vars(e) for e in f.episodes],
        "skipped": f.skipped,
    }


def _cell(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    """The report as two plain-text tables (windows, then alarm events)."""
    b = report["bundle"]
    names = list(report["windows"]["all"]["auroc"])
    lines = [
        f"bundle {b['bundle_id']} v{b['version']} ({b['artifact']}; alarms on "
        f"{b['alarm_score']} ≥ {b['threshold']:.4g}); tolerance "
        f"{report['settings']['tolerance_s']:g} s",
        "",
        f"{'window AUROC':<22}{'windows':>9}{'anomal.':>9}" + "".join(f"{n:>9}" for n in names),
    ]
    groups = {"all": report["windows"]["all"], **report["windows"]["groups"]}
    for group, m in groups.items():
        lines.append(
            f"{group:<22}{m['windows']:>9}{m['anomalous']:>9}"
            + "".join(f"{_cell(m['auroc'][n]):>9}" for n in names)
        )
    lines += [
        "",
        f"{'alarm events':<22}{'events':>7}{'detect':>7}{'recall':>8}{'alarms':>7}"
        f"{'precis.':>8}{'per ev.':>8}{'delay s':>9}{'FA/h':>8}",
    ]
    events = {"all": report["events"]["all"], **report["events"]["groups"]}
    for group, m in events.items():
        delay = m["delay_s"]["median"] if m["delay_s"] else None
        lines.append(
            f"{group:<22}{m['events']:>7}{m['detected']:>7}{_cell(m['recall'], 2):>8}"
            f"{m['episodes']:>7}{_cell(m['precision'], 2):>8}"
            f"{_cell(m['alarms_per_detected_event'], 1):>8}{_cell(delay, 1):>9}"
            f"{_cell(m['false_alarms_per_hour'], 2):>8}"
        )
    lines.append(
        "(per ev.: alarms per detected fault; delay: median seconds from fault onset to raise;"
        " FA/h: false alarms per hour on normal recordings)"
    )
    return "\n".join(lines)
