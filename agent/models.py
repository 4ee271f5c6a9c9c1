"""Load a robot's bundles, check them against its input, and warm them up (canary)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from agent.core.bundle import Bundle, BundleError, TrustPolicy, load_bundle
from agent.core.errors import AgentInputError, ConfigError
from agent.core.scoring import Scorer, ScoringError, open_scorer

log = logging.getLogger(__name__)
DEFAULT_BUNDLE = "default"


class ModelLoadError(AgentInputError, RuntimeError):
    """A configured bundle that cannot serve: invalid, untrusted, incompatible, failed canary."""


@dataclass(frozen=True)
class ScorerSettings:
    """How this device runs models (agent config ``[agent]``): backend, precision, threads.

    ``precision = "auto"`` picks, per bundle at load, the fastest artifact on this device among
    those whose fidelity gate the manifest records as passed (``agent.core.scoring``).
    """

    backend: str = "auto"
    precision: str = "int8"  # "int8", "fp32" or "auto"
    threads: int = 1

    def open(self, bundle: Bundle) -> Scorer:
        """A warmed-up, canary-checked scorer for ``bundle`` on this device."""
        return open_scorer(bundle, self.backend, self.precision, self.threads)


def default_bundle_path() -> Path:
    """The shipped simulator-trained bundle (agent/data/default.rapp)."""
    return Path(str(resources.files("agent") / "data" / "default.rapp"))


def trust_policy(keys: Sequence[str], allow_unsigned: bool) -> TrustPolicy:
    """The trust policy from ``[trust]``: each key is base64 text or a (resolved) .pub path."""
    raw_keys = []
    for i, entry in enumerate(keys):
        text = entry
        path = Path(entry)
        if path.is_absolute():
            if not path.is_file():
                raise ConfigError(
                    f"trust.keys[{i}] = {entry!r}: no such file; give the .pub file written by "
                    "`rapp-export keygen` (or the base64 key itself)"
                )
            try:
                text = path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError) as err:
                raise ConfigError(f"trust.keys[{i}] = {entry!r}: cannot read ({err})") from err
        if "PRIVATE KEY" in text:
            raise ConfigError(
                f"trust.keys[{i}] = {entry!r}: this is a private key; give the device only the "
                "public .pub file and keep the private key on the release workstation"
            )
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ConfigError(
                f"trust.keys[{i}] = {entry!r}: not a base64 Ed25519 public key or a file "
                "holding one; use the .pub file written by `rapp-export keygen`"
            ) from err
        if len(raw) != 32:
            raise ConfigError(f"trust.keys[{i}]: decodes to {len(raw)} bytes; Ed25519 keys are 32")
        raw_keys.append(raw)
    return TrustPolicy(trusted_keys=tuple(raw_keys), allow_unsigned=allow_unsigned)


def bundle_path(entry: str) -> Path:
    """A configured bundle entry (an absolute path, or ``default``) as a file path."""
    return default_bundle_path() if entry == DEFAULT_BUNDLE else Path(entry)


def column_selection(source_channels: Sequence[str], bundle: Bundle) -> np.ndarray:
    """Indices of the bundle's channels in the source's column order."""
    wanted = bundle.manifest.input.channels
    missing = [c for c in wanted if c not in source_channels]
    if missing:
        raise ModelLoadError(
            f"bundle {bundle.bundle_id!r} needs channels {missing} that the source does not "
            f"deliver ({', '.join(source_channels)}); use a bundle trained on this channel map"
        )
    return np.array([list(source_channels).index(c) for c in wanted], dtype=np.int64)


CacheKey = tuple[str, TrustPolicy, ScorerSettings]  # bundle sha256, trust, how it runs


class ScorerCache:
    """Scorers opened while the agent starts, shared by every robot that serves the same bundle.

    Keyed by the bundle file's sha256, the trust policy and the scorer settings: a scorer
    holds only the model and its constants, so robots can share it; what is per robot (the
    segmenter, smoothing, alarm tracker, drift) lives in each robot's pipeline. Pass one
    cache to every :func:`load_robot_scorers` call of a start; it is not a global.
    """

    def __init__(self) -> None:
        self._scorers: dict[CacheKey, Scorer] = {}

    def __len__(self) -> int:
        return len(self._scorers)

    @staticmethod
    def key(path: Path, policy: TrustPolicy, settings: ScorerSettings) -> CacheKey | None:
        """The cache key of the bundle at ``path``; None if the file cannot be read (the
        load then reports why)."""
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None
        return (digest, policy, settings)

    def get(self, key: CacheKey | None) -> Scorer | None:
        return self._scorers.get(key) if key is not None else None

    def put(self, key: CacheKey | None, scorer: Scorer) -> None:
        if key is not None:
            self._scorers[key] = scorer


def load_robot_scorers(
    entries: Sequence[str],
    policy: TrustPolicy,
    source_rate_hz: float | None,
    settings: ScorerSettings,
    cache: ScorerCache | None = None,
) -> list[Scorer]:
    """A warmed-up scorer per bundle entry; with ``cache``, shared with other robots."""
    scorers = []
    for entry in entries:
        path = bundle_path(entry)
        key = cache.key(path, policy, settings) if cache is not None else None
        scorer = cache.get(key) if cache is not None else None
        if scorer is None:
            scorer = _open_scorer(path, policy, source_rate_hz, settings)
            if cache is not None:
                cache.put(key, scorer)
        else:
            _check_rate(path, scorer.bundle, source_rate_hz)
            log.info("sharing the scorer of %s (%s)", scorer.bundle.bundle_id, path)
        scorers.append(scorer)
    return scorers


def _open_scorer(
    path: Path, policy: TrustPolicy, source_rate_hz: float | None, settings: ScorerSettings
) -> Scorer:
    try:
        bundle = load_bundle(path, policy)
        _check_rate(path, bundle, source_rate_hz)
        scorer = settings.open(bundle)
    except (BundleError, ScoringError) as err:
        text = str(err)
        raise ModelLoadError(text if text.startswith(str(path)) else f"{path}: {text}") from err
    for warning in bundle.warnings:
        log.warning("%s: %s", path, warning)
    log.info(
        "loaded %s v%s (%s on %s, canary ok)",
        bundle.bundle_id,
        bundle.manifest.bundle_version,
        scorer.artifact.id,
        scorer.backend.name,
    )
    return scorer


def _check_rate(path: Path, bundle: Bundle, source_rate_hz: float | None) -> None:
    rate = bundle.manifest.input.sample_rate_hz
    if source_rate_hz is not None and abs(rate - source_rate_hz) > 1e-6 * rate:
        raise ModelLoadError(
            f"{path}: bundle expects {rate:g} Hz but the source samples at "
            f"{source_rate_hz:g} Hz; retrain for this rate or fix the channel map"
        )
