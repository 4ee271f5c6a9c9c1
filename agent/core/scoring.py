"""From segments to RaPP scores: features → backend pathway → Recon/SAP/NAP + attribution.

This is the scoring step both the live agent and ``rapp-agent score`` run, and the exporter
uses to calibrate thresholds and golden canaries — one implementation.

Two paths compute it. The numpy path (``agent.core.rapp``) is the reference, and serves
backends that cannot fuse (LiteRT); its NAP runs in float32 where the bundle's spectrum
allows (:func:`agent.core.rapp.nap_float32_error` ≤ ``NAP_FLOAT32_RTOL`` on probe rows, else
float64). The fused path runs the whole step inside the runtime in one call
(:mod:`agent.core.backends.fusion`; onnxruntime). :meth:`Scorer.open` picks per bundle at
load: fused only if float32 NAP passed and the fused scores match the float64 reference on
the golden canary inputs within ``FUSED_RTOL`` (1e-5) — recon/SAP/NAP relative, each
attribution value relative to (|value| + its calibration offset + 1) — else the numpy path.
Measured on the shipped bundle: ≤ 1e-6 for both checks (tests/contract holds every test
artifact to the same tolerance on normal and faulty windows).

``precision = "auto"`` (:func:`open_scorer`) opens every artifact whose fidelity gate the
manifest records as passed (fp32 always), and keeps the one whose batch-1 step is fastest on
this device (CPU time over a few interleaved runs).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.core.backends import Backend, BackendError, backend_class, create_backend
from agent.core.backends.fusion import FusedStep, StepMatrices, step_matrices
from agent.core.bundle.loader import Bundle, LoadedArtifact, select_artifact
from agent.core.bundle.manifest import (
    ALL_SCORE_NAMES,
    SCORE_NAMES,
    ArtifactSpec,
    Manifest,
    calibration_quantiles,
    channel_error_stats,
)
from agent.core.density import LatentDensity, latent_scores
from agent.core.errors import AgentRuntimeError
from agent.core.features import Segment, segment_features
from agent.core.rapp import (
    NAP_FLOAT32_RTOL,
    ChannelStandardizer,
    NapParams,
    attribution_weights,
    channel_attribution,
    channel_excess,
    error_shares,
    excess_votes,
    float32_nap,
    nap_float32_error,
    nap_probes,
    nap_score,
    pathway_differences,
    recon_score,
    relative_error,
    sap_score,
)

AUTO_BACKEND_ORDER = ("onnxruntime", "litert")
# The fused step does everything in float32, so it is held to float32 NAP's tolerance.
FUSED_RTOL = NAP_FLOAT32_RTOL


class ScoringError(AgentRuntimeError, RuntimeError):
    """A model that cannot score: failed canary, non-finite output, no usable backend."""


@dataclass(frozen=True)
class Scores:
    recon: np.ndarray
    sap: np.ndarray
    nap: np.ndarray
    # (N × C) per-channel contribution: votes of the calibration-standardized excess of
    # reconstruction error and of input deviation (agent.core.rapp.channel_excess), or for
    # bundles without those statistics the channel shares of the calibration-scaled
    # input-space error.
    contributions: np.ndarray
    # Bundles with a latent density (agent.core.density) only; None otherwise.
    density: np.ndarray | None = None
    combined: np.ndarray | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The scores this bundle computes, in :data:`ALL_SCORE_NAMES` order."""
        return SCORE_NAMES if self.density is None else ALL_SCORE_NAMES

    def get(self, name: str) -> np.ndarray:
        if name not in self.names:
            raise ScoringError(f"score {name!r}: choose one of {', '.join(self.names)}")
        return getattr(self, name)

    def as_matrix(self) -> np.ndarray:
        return np.stack([self.recon, self.sap, self.nap], axis=1)


class Scorer:
    """Scores feature vectors with one artifact of a bundle on one backend.

    Constructed directly it runs the numpy reference (float64 NAP unless ``nap`` says
    otherwise); :meth:`open` picks the fastest path that reproduces it.
    """

    def __init__(
        self,
        bundle: Bundle,
        loaded: LoadedArtifact,
        backend: Backend,
        nap: NapParams | None = None,
        fused: FusedStep | None = None,
    ) -> None:
        self.bundle = bundle
        self.artifact = loaded.spec
        self.backend = backend
        self._nap = loaded.nap if nap is None else nap
        self._density = loaded.density
        self._fused = fused
        self._layers = bundle.manifest.rapp_layers
        spec = bundle.manifest.input
        self._weights = attribution_weights(
            spec.feature_channel(), bundle.recon_scale, spec.n_channels
        )
        self.thresholds = dict(loaded.spec.thresholds)
        self._feature_channel = spec.feature_channel()
        self._standardizer = _standardizer(bundle, loaded.spec, spec.n_channels)

    @classmethod
    def open(
        cls, bundle: Bundle, loaded: LoadedArtifact, backend: Backend, fuse: bool = True
    ) -> Scorer:
        """The fastest scorer that reproduces the float64 reference (see the module doc)."""
        reference = cls(bundle, loaded, backend)
        error = nap_float32_error(loaded.nap, _nap_check_rows(bundle, loaded, backend))
        if error > NAP_FLOAT32_RTOL:
            return reference
        numpy32 = cls(bundle, loaded, backend, nap=float32_nap(loaded.nap))
        fused = _fuse(backend, numpy32.step_matrices()) if fuse else None
        if fused is None:
            return numpy32
        candidate = cls(bundle, loaded, backend, nap=numpy32._nap, fused=fused)
        x = bundle.canary_inputs
        offset = candidate.step_matrices().offset
        try:
            error = _fused_error(candidate.score(x), reference.score(x), offset)
        except BackendError:
            return numpy32
        return candidate if error <= FUSED_RTOL else numpy32

    @property
    def path(self) -> str:
        """Which implementation scores: "fused", "numpy-float32-nap" or "numpy-float64-nap"."""
        if self._fused is not None:
            return "fused"
        return f"numpy-{'float32' if self._nap.projection.dtype == np.float32 else 'float64'}-nap"

    def step_matrices(self) -> StepMatrices:
        """This scorer's step as the constants a runtime fuses into its graph."""
        widths = self.bundle.manifest.layer_sizes
        return step_matrices(
            self._layers,
            widths,
            self._nap,
            self._weights,
            self._feature_channel,
            self._standardizer,
            latent=self._density is not None,
        )

    def _contributions(self, x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
        if self._standardizer is None:
            return channel_attribution(x, x_hat, self._weights)
        return channel_excess(x, x_hat, self._weights, self._feature_channel, self._standardizer)

    def score(self, features: np.ndarray) -> Scores:
        if self._fused is not None:
            return self._score_fused(features)
        pathway = self.backend.run(features)
        values = pathway_scores(
            pathway.hidden, pathway.hidden_hat, self._layers, self._nap, self._density
        )
        return Scores(
            contributions=self._contributions(pathway.x, pathway.x_hat),
            **values,
        )

    def _score_fused(self, features: np.ndarray) -> Scores:
        out = self._fused.run(features)  # type: ignore[union-attr]  # a fresh float64 array
        # Column views of it: after the run every further numpy call costs ~1 µs (the step
        # has just streamed its weights through the caches), so no copies here.
        n_channels = self.bundle.manifest.input.n_channels
        attribution = n_channels * (1 if self._standardizer is None else 2)
        if out.shape[1] != 3 + attribution + (0 if self._density is None else self._density.dim):
            raise BackendError(f"the fused step returned {out.shape[1]} columns per window")
        if self._standardizer is None:
            contributions = error_shares(out[:, 3 : 3 + n_channels])
        else:
            middle = 3 + n_channels
            contributions = excess_votes(out[:, 3:middle], out[:, middle : middle + n_channels])
        nap = out[:, 2]
        density = combined = None
        if self._density is not None:
            density, combined = latent_scores(
                out[:, 3 + attribution :], nap, self._density, features
            )
        return Scores(out[:, 0], out[:, 1], nap, contributions, density, combined)

    def score_segments(self, segments: Sequence[Segment]) -> Scores:
        stacked = np.stack([s.samples for s in segments])
        return self.score(segment_features(stacked, self.bundle.manifest.input.features))

    def check_canary(self) -> float:
        """Run the golden canary (doubles as the warm-up inference); return the worst error.

        Each score must match the bundle's expectation for this artifact within
        ``canary.rtol`` relative to the larger of |expected| and the calibration median,
        so near-zero expectations do not demand impossible precision.
        """
        got = self.score(self.bundle.canary_inputs)
        worst = 0.0
        for name in got.names:
            expected = np.asarray(self.artifact.canary_expected[name])
            values = got.get(name)
            if not np.isfinite(values).all():
                raise ScoringError(f"canary: {name} scores are not finite on {self.backend.name}")
            floor = float(self.artifact.calibration.get(name, {}).get("p50", 0.0)) or 1e-12
            rel = np.abs(values - expected) / np.maximum(np.abs(expected), floor)
            worst = max(worst, float(rel.max()))
        if worst > self.artifact.canary_rtol:
            raise ScoringError(
                f"canary: scores of artifact {self.artifact.id!r} on {self.backend.name} differ "
                f"from the bundle's golden values by {worst:.3g} (tolerance "
                f"{self.artifact.canary_rtol:g}); this runtime does not reproduce the model"
            )
        return worst


def pathway_scores(
    hidden: Sequence[np.ndarray],
    hidden_hat: Sequence[np.ndarray],
    layers: Sequence[int],
    nap: NapParams,
    density: LatentDensity | None = None,
) -> dict[str, np.ndarray]:
    """Recon, SAP, NAP (and density, combined for bundles with a latent density) of a
    pathway run, on the numpy path: what :meth:`Scorer.score` computes and the exporter
    calibrates on."""
    diffs = pathway_differences(tuple(hidden), tuple(hidden_hat), layers)
    if nap.projection.dtype != np.float32:
        # One float64 copy of D shared by SAP and NAP (each would otherwise cast its own).
        diffs = diffs.astype(np.float64)
    values = {
        "recon": recon_score(hidden[0], hidden_hat[0]),
        "sap": sap_score(diffs),
        "nap": nap_score(diffs, nap),
    }
    if density is not None:
        values["density"], values["combined"] = latent_scores(
            hidden[-1], values["nap"], density, hidden[0]
        )
    return values


def _standardizer(
    bundle: Bundle, artifact: ArtifactSpec, n_channels: int
) -> ChannelStandardizer | None:
    """Attribution statistics from the manifest, or None for bundles built without them."""
    inputs = bundle.manifest.attribution
    errors = channel_error_stats(artifact, n_channels)
    if inputs is None or errors is None:
        return None
    return ChannelStandardizer(
        feature_mean=np.asarray(inputs.feature_mean),
        feature_std=np.asarray(inputs.feature_std),
        deviation_mean=np.asarray(inputs.deviation_mean),
        deviation_std=np.asarray(inputs.deviation_std),
        error_mean=np.asarray(errors[0]),
        error_std=np.asarray(errors[1]),
    )


def _nap_check_rows(bundle: Bundle, loaded: LoadedArtifact, backend: Backend) -> np.ndarray:
    """Difference rows to check float32 NAP on: the canary's, and probes at the lowest and
    the median calibration NAP (where float32 loses most, :func:`agent.core.rapp.nap_probes`)."""
    pathway = backend.run(bundle.canary_inputs)
    rows = [pathway_differences(pathway.hidden, pathway.hidden_hat, bundle.manifest.rapp_layers)]
    quantiles = calibration_quantiles(loaded.spec, "nap")
    if quantiles is not None:
        levels, values = np.asarray(quantiles[0]), np.asarray(quantiles[1])
        low = (float(values.min()), float(values[np.argmin(np.abs(levels - 0.5))]))
        rows.append(nap_probes(loaded.nap, low))
    return np.concatenate(rows)


def _fuse(backend: Backend, step: StepMatrices) -> FusedStep | None:
    """The backend's fused step, or None where it cannot build one (numpy path instead)."""
    try:
        return backend.fuse(step)
    except BackendError:
        return None


def _fused_error(got: Scores, ref: Scores, offset: np.ndarray) -> float:
    """Worst error of fused scores against the reference, in units of the tolerance's scale
    (see the module docstring)."""
    worst = max(relative_error(got.get(name), ref.get(name)) for name in ref.names)
    # float32 cancels against the calibration offsets; a vote moves by at most its
    # excess's error, so the largest offset bounds the scale of the attribution's error.
    scale = np.abs(ref.contributions) + float(np.abs(offset).max()) + 1.0
    return max(worst, float((np.abs(got.contributions - ref.contributions) / scale).max()))


def passed_fidelity_gate(manifest: Manifest, artifact: ArtifactSpec) -> bool:
    """fp32 artifacts are the reference; others need a passed gate recorded in the manifest."""
    if artifact.precision == "fp32":
        return True
    gate = manifest.fidelity.get(artifact.id)
    return gate is not None and gate.passed


def step_seconds(
    scorers: Sequence[Scorer], x: np.ndarray, rounds: int = 5, calls: int = 10
) -> list[float]:
    """Median CPU seconds per ``score(x)`` of each scorer, interleaved round by round so a
    busy neighbour slows every candidate alike; the first round is a warm-up."""
    per_round: list[list[float]] = [[] for _ in scorers]
    for round_index in range(rounds + 1):
        for scorer, seconds in zip(scorers, per_round, strict=True):
            start = time.thread_time()
            for _ in range(calls):
                scorer.score(x)
            if round_index:
                seconds.append((time.thread_time() - start) / calls)
    return [float(np.median(seconds)) for seconds in per_round]


def _gated_candidates(bundle: Bundle, names: Sequence[str], threads: int, errors: list[str]):
    """Canary-checked scorers of every artifact of ``names``' formats that passed its gate."""
    for name in names:
        try:
            formats = backend_class(name).formats
        except BackendError as err:
            errors.append(f"{name}: {err}")
            continue
        for loaded in bundle.artifacts.values():
            spec = loaded.spec
            if spec.format not in formats:
                continue
            if not passed_fidelity_gate(bundle.manifest, spec):
                errors.append(f"{name}/{spec.id}: no passed fidelity gate in the manifest")
                continue
            try:
                scorer = Scorer.open(bundle, loaded, create_backend(loaded, bundle, name, threads))
                scorer.check_canary()
            except (BackendError, ScoringError, ValueError, ImportError) as err:
                errors.append(f"{name}/{spec.id}: {err}")
                continue
            yield scorer


def _fastest_scorer(bundle: Bundle, names: Sequence[str], threads: int) -> Scorer:
    errors: list[str] = []
    scorers = list(_gated_candidates(bundle, names, threads, errors))
    if not scorers:
        raise ScoringError("precision = auto: no usable artifact — " + "; ".join(errors))
    seconds = step_seconds(scorers, bundle.canary_inputs[:1])
    return scorers[int(np.argmin(seconds))]


def open_scorer(
    bundle: Bundle, backend: str = "auto", precision: str = "int8", threads: int = 1
) -> Scorer:
    """Pick an artifact and backend for ``bundle`` and return a warmed-up, canary-checked scorer.

    ``backend="auto"`` takes the first runtime in :data:`AUTO_BACKEND_ORDER` that is installed
    and has a matching artifact at ``precision``. ``precision="auto"`` times every artifact
    that passed its fidelity gate, on every runtime ``backend`` allows, and keeps the fastest;
    an artifact whose canary fails there is skipped (named in the error if none is left).
    ``precision="int8"`` on a bundle that carries no int8 artifact at all (a model family the
    quantizer cannot handle; the build notes why) serves its fp32 artifact: the bundle is
    complete as built, and refusing it would turn a model choice into an outage.
    """
    names = AUTO_BACKEND_ORDER if backend == "auto" else (backend,)
    if precision == "int8" and all(a.spec.precision != "int8" for a in bundle.artifacts.values()):
        precision = "fp32"
    if precision == "auto":
        return _fastest_scorer(bundle, names, threads)
    errors = []
    for name in names:
        try:
            cls = backend_class(name)
            loaded = select_artifact(bundle, cls.formats, precision)
            scorer = Scorer.open(bundle, loaded, create_backend(loaded, bundle, name, threads))
        except (BackendError, ValueError, ImportError) as err:
            errors.append(f"{name}: {err}")
            continue
        scorer.check_canary()
        return scorer
    raise ScoringError("no usable backend for this bundle — " + "; ".join(errors))
