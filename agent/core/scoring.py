"""From segments to RaPP scores: features → backend pathway → Recon/SAP/NAP + attribution.

This is the scoring step both the live agent and ``rapp-agent score`` run, and the exporter
uses to calibrate thresholds and golden canaries — one implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.core.backends import Backend, BackendError, backend_class, create_backend
from agent.core.bundle.loader import Bundle, LoadedArtifact, select_artifact
from agent.core.bundle.manifest import SCORE_NAMES, ArtifactSpec, channel_error_stats
from agent.core.features import Segment, segment_features
from agent.core.rapp import (
    ChannelStandardizer,
    attribution_weights,
    channel_attribution,
    channel_excess,
    nap_score,
    pathway_differences,
    recon_score,
    sap_score,
)

AUTO_BACKEND_ORDER = ("onnxruntime", "litert")


class ScoringError(RuntimeError):
    """A model that cannot score: failed canary, non-finite output, no usable backend."""


@dataclass(frozen=True)
class Scores:
    recon: np.ndarray
    sap: np.ndarray
    nap: np.ndarray
    # (N × C) per-channel contribution: calibration-standardized excess of reconstruction
    # error and input deviation (agent.core.rapp.channel_excess), or for bundles without those
    # statistics the channel shares of the calibration-scaled input-space error.
    contributions: np.ndarray

    def get(self, name: str) -> np.ndarray:
        if name not in SCORE_NAMES:
            raise ScoringError(f"score {name!r}: choose one of {', '.join(SCORE_NAMES)}")
        return getattr(self, name)

    def as_matrix(self) -> np.ndarray:
        return np.stack([self.recon, self.sap, self.nap], axis=1)


class Scorer:
    """Scores feature vectors with one artifact of a bundle on one backend."""

    def __init__(self, bundle: Bundle, loaded: LoadedArtifact, backend: Backend) -> None:
        self.bundle = bundle
        self.artifact = loaded.spec
        self.backend = backend
        self._nap = loaded.nap
        self._layers = bundle.manifest.rapp_layers
        spec = bundle.manifest.input
        self._weights = attribution_weights(
            spec.feature_channel(), bundle.recon_scale, spec.n_channels
        )
        self.thresholds = dict(loaded.spec.thresholds)
        self._feature_channel = spec.feature_channel()
        self._standardizer = _standardizer(bundle, loaded.spec, spec.n_channels)

    def _contributions(self, x: np.ndarray, x_hat: np.ndarray) -> np.ndarray:
        if self._standardizer is None:
            return channel_attribution(x, x_hat, self._weights)
        return channel_excess(x, x_hat, self._weights, self._feature_channel, self._standardizer)

    def score(self, features: np.ndarray) -> Scores:
        pathway = self.backend.run(features)
        # One float64 copy of D shared by SAP and NAP (each would otherwise cast its own).
        diffs = pathway_differences(pathway.hidden, pathway.hidden_hat, self._layers).astype(
            np.float64
        )
        return Scores(
            recon=recon_score(pathway.x, pathway.x_hat),
            sap=sap_score(diffs),
            nap=nap_score(diffs, self._nap),
            contributions=self._contributions(pathway.x, pathway.x_hat),
        )

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
        for name in SCORE_NAMES:
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


def open_scorer(
    bundle: Bundle, backend: str = "auto", precision: str = "int8", threads: int = 1
) -> Scorer:
    """Pick an artifact and backend for ``bundle`` and return a warmed-up, canary-checked scorer.

    ``backend="auto"`` takes the first runtime in :data:`AUTO_BACKEND_ORDER` that is installed
    and has a matching artifact at ``precision``.
    """
    names = AUTO_BACKEND_ORDER if backend == "auto" else (backend,)
    errors = []
    for name in names:
        try:
            cls = backend_class(name)
            loaded = select_artifact(bundle, cls.formats, precision)
            scorer = Scorer(bundle, loaded, create_backend(loaded, bundle, name, threads))
        except (BackendError, ValueError, ImportError) as err:
            errors.append(f"{name}: {err}")
            continue
        scorer.check_canary()
        return scorer
    raise ScoringError("no usable backend for this bundle — " + "; ".join(errors))
