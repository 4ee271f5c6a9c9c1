"""The bundle manifest (format v1): parsed into frozen dataclasses, validated field by field.

Every error names ``manifest.json``, the field path and what a valid value looks like, so a
data scientist can fix the exporter call and an engineer can tell a broken bundle at a glance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.core.bundle.errors import BundleError
from agent.core.features import FeatureError, FeatureSpec

FORMAT_NAME = "rapp-bundle"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
ARRAYS_NAME = "rapp.npz"
REPORT_NAME = "report.json"
ARTIFACT_FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8")
SCORE_NAMES = ("recon", "sap", "nap")
# Scores of bundles with a latent density (agent.core.density): optional in thresholds and
# canaries, and then the bundle's default alarm score.
DENSITY_SCORE_NAMES = ("density", "combined")
ALL_SCORE_NAMES = (*SCORE_NAMES, *DENSITY_SCORE_NAMES)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class PathwayIO:
    """Tensor names of the pathway graph: one input, h_1…h_L, x̂ and ĥ_1…ĥ_L."""

    input: str
    hidden: tuple[str, ...]
    x_hat: str
    hidden_hat: tuple[str, ...]


@dataclass(frozen=True)
class ArtifactSpec:
    """One model file of the bundle and the scoring parameters fitted on its own outputs.

    NAP and thresholds are fitted per artifact: int8 rounding adds energy in directions where
    fp32 differences have almost none, so reusing fp32's NAP on int8 would inflate scores.
    """

    id: str
    path: str
    format: str
    precision: str
    sha256: str
    io: PathwayIO
    thresholds: Mapping[str, float]
    nap_k: int
    canary_expected: Mapping[str, tuple[float, ...]]
    canary_rtol: float
    calibration: Mapping[str, Any]

    def array_key(self, name: str) -> str:
        """Key of this artifact's array ``name`` in rapp.npz (e.g. ``onnx-int8.nap_mu``)."""
        return f"{self.id}.{name}"


@dataclass(frozen=True)
class AlarmDefaults:
    """Alarm settings the model was calibrated with; the agent config may override them.

    ``clear_windows`` (consecutive windows below the clear level before an alarm clears) is
    sized from the segmentation by :func:`clear_windows_for` when None: the exporter writes
    the sized value, and the parser sizes it for bundles from before the field.
    """

    score: str = "nap"
    ewma_alpha: float = 0.3
    debounce_k: int = 3
    debounce_n: int = 5
    clear_ratio: float = 0.8
    threshold_quantile: float = 0.999
    clear_windows: int | None = None


# A fault's scores dip while its axis dwells: on the simulator's friction fault, quiet runs of
# up to ~0.5 s inside every 4.4 s cycle made a 5-window clear toggle the alarm 34 times. An
# alarm clears only after this much normal signal (and never after fewer than 5 windows).
# Longer holds also merge the once-per-cycle bursts at a slow fault's onset (double alarms in
# 2 of 7 seeds at 2 s, 1 at 2.5 s, 0 at 5 s) but would join faults 3 s apart into one alarm.
CLEAR_HOLD_S = 2.5
MIN_CLEAR_WINDOWS = 5


def clear_windows_for(spec: FeatureSpec) -> int:
    """Clear windows spanning :data:`CLEAR_HOLD_S` of signal for fixed windows (hop-spaced),
    :data:`MIN_CLEAR_WINDOWS` for robot cycles (each one already lasts seconds)."""
    seg = spec.segmentation
    if seg.kind != "window":
        return MIN_CLEAR_WINDOWS
    hold_samples = round(CLEAR_HOLD_S * spec.sample_rate_hz)
    return max(MIN_CLEAR_WINDOWS, -(-hold_samples // seg.hop))


@dataclass(frozen=True)
class InputStatistics:
    """Optional ``attribution`` field: calibration statistics of the model input.

    ``feature_mean``/``feature_std`` per input feature, ``deviation_mean``/``deviation_std``
    per channel (of Σ_f ((x_f − m_f)/s_f)² over the channel's features). Bundles built
    before this field existed have none; the agent then falls back to error shares.
    """

    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    deviation_mean: tuple[float, ...]
    deviation_std: tuple[float, ...]


@dataclass(frozen=True)
class FidelityGate:
    """Optional ``sanity.fidelity.<artifact id>``: the build's int8-vs-fp32 fidelity gate for
    one artifact — NAP Spearman ρ against its fp32 reference and the pseudo-anomaly AUROC
    drop, each with the floor the build held it to."""

    spearman_nap: float
    floor_spearman: float
    auroc_drop: float
    max_auroc_drop: float

    @property
    def passed(self) -> bool:
        return self.spearman_nap >= self.floor_spearman and self.auroc_drop <= self.max_auroc_drop


@dataclass(frozen=True)
class Manifest:
    raw: Mapping[str, Any]
    bundle_id: str
    bundle_version: str
    created: str
    producer: str
    min_agent_version: str
    robot: str
    programs: tuple[int, ...]
    input: FeatureSpec
    layer_sizes: tuple[int, ...]
    rapp_layers: tuple[int, ...]
    rtol: float | None
    artifacts: tuple[ArtifactSpec, ...]
    alarm: AlarmDefaults
    files: Mapping[str, str]
    attribution: InputStatistics | None = None
    # Fidelity gates by artifact id (absent in bundles without int8 artifacts or older ones).
    fidelity: Mapping[str, FidelityGate] = field(default_factory=dict)

    @property
    def diff_dim(self) -> int:
        """Columns of the difference matrix D for the selected layers."""
        return sum(self.layer_sizes[i] for i in self.rapp_layers)

    def artifact(self, artifact_id: str) -> ArtifactSpec:
        for artifact in self.artifacts:
            if artifact.id == artifact_id:
                return artifact
        known = ", ".join(a.id for a in self.artifacts)
        raise BundleError(f"{MANIFEST_NAME}: no artifact {artifact_id!r}; the bundle has {known}")


def _fail(where: str, message: str) -> BundleError:
    return BundleError(f"{MANIFEST_NAME}: {where} {message}")


def _field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, Mapping):
        raise _fail(where or "top level", f"must be an object, got {type(obj).__name__}")
    path = f"{where}.{key}" if where else key
    if key not in obj:
        raise _fail(path, "is missing")
    value = obj[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise _fail(path, f"= {value!r}: must be of type {names}")
    return value


def _choice(obj: Mapping[str, Any], key: str, choices: tuple[str, ...], where: str) -> str:
    value = _field(obj, key, str, where)
    if value not in choices:
        raise _fail(f"{where}.{key}", f"= {value!r}: must be one of {', '.join(choices)}")
    return value


def _parse_io(obj: Mapping[str, Any], n_layers: int, where: str) -> PathwayIO:
    hidden = tuple(_field(obj, "hidden", list, where))
    hidden_hat = tuple(_field(obj, "hidden_hat", list, where))
    for key, names in (("hidden", hidden), ("hidden_hat", hidden_hat)):
        if len(names) != n_layers or not all(isinstance(n, str) for n in names):
            raise _fail(
                f"{where}.{key}",
                f"must list {n_layers} tensor names (one per encoder layer), got {list(names)}",
            )
    return PathwayIO(
        input=_field(obj, "input", str, where),
        hidden=hidden,
        x_hat=_field(obj, "x_hat", str, where),
        hidden_hat=hidden_hat,
    )


def _parse_scores(obj: Any, where: str) -> dict[str, float]:
    out = {}
    for name in ALL_SCORE_NAMES:
        if name in DENSITY_SCORE_NAMES and name not in obj:
            continue
        value = _field(obj, name, float, where)
        if not value == value or value in (float("inf"), float("-inf")):  # NaN or inf
            raise _fail(f"{where}.{name}", f"= {value!r}: must be a finite number")
        out[name] = value
    return out


def _parse_artifact(obj: Mapping[str, Any], n_layers: int, index: int) -> ArtifactSpec:
    where = f"artifacts[{index}]"
    artifact_id = _field(obj, "id", str, where)
    if not _ID.match(artifact_id):
        raise _fail(f"{where}.id", f"= {artifact_id!r}: use letters, digits, '.', '_' or '-'")
    sha = _field(obj, "sha256", str, where)
    if not _SHA256.match(sha):
        raise _fail(f"{where}.sha256", f"= {sha!r}: must be 64 lowercase hex digits")
    canary = _field(obj, "canary", Mapping, where)
    expected = {
        name: tuple(float(v) for v in _field(canary, name, list, f"{where}.canary"))
        for name in ALL_SCORE_NAMES
        if name in SCORE_NAMES or name in canary
    }
    nap_k = _field(obj, "nap_k", int, where)
    if nap_k < 1:
        raise _fail(f"{where}.nap_k", f"= {nap_k}: must be ≥ 1")
    return ArtifactSpec(
        id=artifact_id,
        path=_field(obj, "path", str, where),
        format=_choice(obj, "format", ARTIFACT_FORMATS, where),
        precision=_choice(obj, "precision", PRECISIONS, where),
        sha256=sha,
        io=_parse_io(_field(obj, "io", Mapping, where), n_layers, f"{where}.io"),
        thresholds=_parse_scores(_field(obj, "thresholds", Mapping, where), f"{where}.thresholds"),
        nap_k=nap_k,
        canary_expected=expected,
        canary_rtol=_field(canary, "rtol", float, f"{where}.canary"),
        calibration=dict(obj.get("calibration", {})),
    )


def _parse_alarm(obj: Mapping[str, Any], spec: FeatureSpec) -> AlarmDefaults:
    where = "alarm"
    clear_windows = clear_windows_for(spec)
    if obj.get("clear_windows") is not None:
        clear_windows = _field(obj, "clear_windows", int, where)
        if clear_windows < 1:
            raise _fail("alarm.clear_windows", f"= {clear_windows}: must be ≥ 1")
    alarm = AlarmDefaults(
        score=_choice(obj, "score", ALL_SCORE_NAMES, where),
        ewma_alpha=_field(obj, "ewma_alpha", float, where),
        debounce_k=_field(obj, "debounce_k", int, where),
        debounce_n=_field(obj, "debounce_n", int, where),
        clear_ratio=_field(obj, "clear_ratio", float, where),
        threshold_quantile=_field(obj, "threshold_quantile", float, where),
        clear_windows=clear_windows,
    )
    if not 0 < alarm.ewma_alpha <= 1:
        raise _fail("alarm.ewma_alpha", f"= {alarm.ewma_alpha}: must be in (0, 1]")
    if not 1 <= alarm.debounce_k <= alarm.debounce_n:
        raise _fail("alarm.debounce_k", f"= {alarm.debounce_k}: must be in 1 … debounce_n")
    if not 0 < alarm.clear_ratio <= 1:
        raise _fail("alarm.clear_ratio", f"= {alarm.clear_ratio}: must be in (0, 1]")
    return alarm


def _float_list(
    obj: Mapping[str, Any], key: str, size: int, where: str, signed: bool = False
) -> tuple[float, ...]:
    values = _field(obj, key, list, where)
    ok = len(values) == size and all(
        isinstance(v, int | float)
        and not isinstance(v, bool)
        and abs(v) < float("inf")
        and (signed or v >= 0)
        for v in values
    )
    if not ok:
        kind = "finite numbers" if signed else "finite numbers ≥ 0"
        raise _fail(f"{where}.{key}", f"must list {size} {kind}; rebuild the bundle")
    return tuple(float(v) for v in values)


def _parse_attribution(obj: Any, n_features: int, n_channels: int) -> InputStatistics | None:
    """The optional ``attribution`` field; absent (older bundles) → None."""
    if obj is None:
        return None
    where = "attribution"
    stats = InputStatistics(
        feature_mean=_float_list(obj, "feature_mean", n_features, where, signed=True),
        feature_std=_float_list(obj, "feature_std", n_features, where),
        deviation_mean=_float_list(obj, "deviation_mean", n_channels, where),
        deviation_std=_float_list(obj, "deviation_std", n_channels, where),
    )
    if min(stats.feature_std) <= 0 or min(stats.deviation_std) <= 0:
        raise _fail(where, "has a spread ≤ 0; rebuild the bundle")
    return stats


_GATE_KEYS = {
    "spearman_nap": "spearman_nap",
    "floor_spearman": "floor_spearman",
    "auroc_drop": "pseudo_auroc_drop_nap",
    "max_auroc_drop": "max_auroc_drop",
}


def _parse_fidelity(sanity: Any) -> dict[str, FidelityGate]:
    """The optional ``sanity.fidelity`` records. Lenient: an entry missing a number is left
    out, so its artifact counts as never having passed (``precision = "auto"`` skips it)."""
    records = sanity.get("fidelity") if isinstance(sanity, Mapping) else None
    if not isinstance(records, Mapping):
        return {}
    gates = {}
    for artifact_id, entry in records.items():
        if not isinstance(entry, Mapping):
            continue
        values = {name: entry.get(key) for name, key in _GATE_KEYS.items()}
        if all(_numbers([v]) and abs(v) < float("inf") for v in values.values()):
            gates[str(artifact_id)] = FidelityGate(**{k: float(v) for k, v in values.items()})
    return gates


def channel_error_stats(
    artifact: ArtifactSpec, n_channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """Mean and spread per channel of the artifact's calibration-scaled reconstruction error
    (optional ``calibration.channel_error``); None when absent or not usable (older bundles)."""
    entry = artifact.calibration.get("channel_error")
    if not isinstance(entry, Mapping):
        return None
    mean, std = entry.get("mean"), entry.get("std")
    if not (isinstance(mean, list) and isinstance(std, list)):
        return None
    if len(mean) != n_channels or len(std) != n_channels:
        return None
    try:
        m, s = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (TypeError, ValueError):
        return None
    if not all(v == v and abs(v) < float("inf") for v in m + s) or min(s) <= 0:
        return None
    return m, s


_LEGACY_QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))


def calibration_quantiles(
    artifact: ArtifactSpec, score: str
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(levels, values) of the held-out calibration distribution of ``score``.

    Reads the optional ``calibration.quantiles`` ({"levels": [...], "<score>": [...]}); older
    bundles fall back to the p50/p90/p99/p999 statistics they always carried. None when
    neither is usable. Lenient on purpose: drift monitoring is advisory.
    """
    table = artifact.calibration.get("quantiles")
    if isinstance(table, Mapping):
        levels, values = table.get("levels"), table.get(score)
        if _numbers(levels) and _numbers(values) and len(levels) == len(values) >= 2:
            return tuple(float(v) for v in levels), tuple(float(v) for v in values)
    stats = artifact.calibration.get(score)
    if isinstance(stats, Mapping):
        pairs = [(q, stats[k]) for k, q in _LEGACY_QUANTILES if isinstance(stats.get(k), float)]
        if len(pairs) >= 2:
            return tuple(q for q, _ in pairs), tuple(float(v) for _, v in pairs)
    return None


def _numbers(values: Any) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    )


def parse_manifest(data: bytes) -> Manifest:
    """Parse and validate manifest.json bytes."""
    raw = _load_manifest_json(data)
    model = _field(raw, "model", Mapping, "")
    sizes = tuple(_field(model, "layer_sizes", list, "model"))
    if len(sizes) < 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise _fail("model.layer_sizes", f"= {list(sizes)}: need input size and ≥ 1 layer size")
    n_layers = len(sizes) - 1
    spec = _parse_input(raw, sizes[0])
    rapp = _field(raw, "rapp", Mapping, "")
    layers = tuple(_field(rapp, "layers", list, "rapp"))
    if not layers or not all(isinstance(i, int) and 0 <= i <= n_layers for i in layers):
        raise _fail("rapp.layers", f"= {list(layers)}: must be indices in 0 … {n_layers}")
    rtol = rapp.get("rtol")
    robot = _field(raw, "robot", Mapping, "")
    return Manifest(
        raw=raw,
        bundle_id=_field(raw, "bundle_id", str, ""),
        bundle_version=_field(raw, "bundle_version", str, ""),
        created=_field(raw, "created", str, ""),
        producer=_field(raw, "producer", str, ""),
        min_agent_version=_field(raw, "min_agent_version", str, ""),
        robot=_field(robot, "id", str, "robot"),
        programs=tuple(int(p) for p in _field(robot, "programs", list, "robot")),
        input=spec,
        layer_sizes=sizes,
        rapp_layers=layers,
        rtol=None if rtol is None else float(rtol),
        artifacts=_parse_artifacts(raw, n_layers),
        alarm=_parse_alarm(_field(raw, "alarm", Mapping, ""), spec),
        files=_parse_files(raw),
        attribution=_parse_attribution(raw.get("attribution"), spec.feature_dim, spec.n_channels),
        fidelity=_parse_fidelity(raw.get("sanity")),
    )


def _load_manifest_json(data: bytes) -> dict[str, Any]:
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise BundleError(f"{MANIFEST_NAME}: not valid UTF-8 JSON ({err})") from err
    if not isinstance(raw, dict):
        raise _fail("top level", "must be a JSON object")
    if raw.get("format") != FORMAT_NAME:
        raise _fail("format", f"= {raw.get('format')!r}: this is not a rapp bundle manifest")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise _fail(
            "format_version",
            f"= {version!r}: unknown format version; this agent reads version {FORMAT_VERSION} "
            "(upgrade the agent or re-export the bundle for it)",
        )
    return raw


def _parse_input(raw: Mapping[str, Any], input_size: int) -> FeatureSpec:
    try:
        spec = FeatureSpec.from_json(_field(raw, "input", Mapping, ""))
    except FeatureError as err:
        raise _fail("input", f"is invalid: {err}") from err
    if spec.feature_dim != input_size:
        raise _fail(
            "model.layer_sizes[0]",
            f"= {input_size} but the input spec yields {spec.feature_dim} features",
        )
    return spec


def _parse_artifacts(raw: Mapping[str, Any], n_layers: int) -> tuple[ArtifactSpec, ...]:
    artifacts_raw = _field(raw, "artifacts", list, "")
    if not artifacts_raw:
        raise _fail("artifacts", "is empty: a bundle needs at least one model file")
    artifacts = tuple(_parse_artifact(a, n_layers, i) for i, a in enumerate(artifacts_raw))
    if len({a.id for a in artifacts}) != len(artifacts):
        raise _fail("artifacts", "has duplicate ids")
    return artifacts


def _parse_files(raw: Mapping[str, Any]) -> dict[str, str]:
    files = _field(raw, "files", Mapping, "")
    for name, sha in files.items():
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise _fail(f"files[{name!r}]", f"= {sha!r}: must be 64 lowercase hex digits")
    return dict(files)
