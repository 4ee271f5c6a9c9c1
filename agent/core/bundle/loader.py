"""Load a model bundle, validating everything before any of it is used.

Order matters: the archive is read safely, the manifest signature is checked against the
trusted keys, then every file's sha256 against the manifest, and only then are arrays parsed
(``allow_pickle=False``) and shapes checked against the declared model. A failure names the
file and what is wrong; nothing half-loaded escapes.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent import __version__
from agent.core.bundle.archive import (
    DEFAULT_MAX_MEMBER_BYTES,
    DEFAULT_MAX_TOTAL_BYTES,
    read_archive,
)
from agent.core.bundle.errors import BundleError
from agent.core.bundle.manifest import (
    ARRAYS_NAME,
    MANIFEST_NAME,
    REPORT_NAME,
    SIGNATURE_NAME,
    ArtifactSpec,
    Manifest,
    parse_manifest,
)
from agent.core.density import DensityError, LatentDensity
from agent.core.features import Normalization
from agent.core.rapp import NapParams


@dataclass(frozen=True)
class TrustPolicy:
    """Which signatures a bundle needs. Keys are raw 32-byte Ed25519 public keys."""

    trusted_keys: tuple[bytes, ...] = ()
    allow_unsigned: bool = True


@dataclass(frozen=True)
class Limits:
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES


@dataclass(frozen=True)
class LoadedArtifact:
    spec: ArtifactSpec
    model: bytes
    nap: NapParams
    density: LatentDensity | None = None


@dataclass(frozen=True)
class Bundle:
    manifest: Manifest
    normalization: Normalization
    recon_scale: np.ndarray  # (F,) mean squared error per feature on calibration data
    canary_inputs: np.ndarray  # (n × F) float32
    artifacts: Mapping[str, LoadedArtifact]
    report: Mapping[str, Any]
    signed_by: bytes | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def trusted_signer(message: bytes, signature: bytes, policy: TrustPolicy) -> bytes | None:
    """The trusted key whose Ed25519 ``signature`` over ``message`` verifies; None if none
    does (a detached signature, e.g. of an OTA command)."""
    for key in policy.trusted_keys:
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
        except (InvalidSignature, ValueError):
            continue
        return key
    return None


def verify_signature(
    manifest_bytes: bytes, signature: bytes | None, policy: TrustPolicy
) -> bytes | None:
    """Return the key that signed the manifest, None for an allowed unsigned bundle."""
    if signature is None:
        if policy.allow_unsigned:
            return None
        raise BundleError(
            f"{SIGNATURE_NAME}: missing; this agent only accepts signed bundles "
            "(sign with `rapp-export sign`, or set allow_unsigned = true in the agent config)"
        )
    if not policy.trusted_keys:
        if policy.allow_unsigned:
            return None
        raise BundleError(f"{SIGNATURE_NAME}: no trusted keys configured to verify it against")
    for key in policy.trusted_keys:
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(signature, manifest_bytes)
        except (InvalidSignature, ValueError):
            continue
        return key
    raise BundleError(
        f"{SIGNATURE_NAME}: signature does not verify against any trusted key "
        "(tampered manifest, or signed with a key this agent does not trust)"
    )


def _load_arrays(data: bytes) -> dict[str, np.ndarray]:
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise BundleError(f"{ARRAYS_NAME}: not a readable numpy .npz archive ({err})") from err
    arrays = {}
    with archive:
        for name in archive.files:
            try:
                array = archive[name]
            except ValueError as err:
                raise BundleError(
                    f"{ARRAYS_NAME}: array {name!r} needs pickle (object dtype); bundles hold "
                    "plain numeric arrays only — re-export it"
                ) from err
            except (OSError, zipfile.BadZipFile, EOFError) as err:
                raise BundleError(f"{ARRAYS_NAME}: array {name!r} is corrupt ({err})") from err
            if array.dtype.kind not in "fiub":
                raise BundleError(
                    f"{ARRAYS_NAME}: array {name!r} has dtype {array.dtype}; numeric only"
                )
            arrays[name] = array
    return arrays


def _array(arrays: Mapping[str, np.ndarray], key: str, shape: tuple[int | None, ...]) -> np.ndarray:
    if key not in arrays:
        raise BundleError(f"{ARRAYS_NAME}: array {key!r} is missing")
    array = arrays[key]
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=True)
    ):
        pretty = tuple("?" if s is None else s for s in shape)
        raise BundleError(
            f"{ARRAYS_NAME}: array {key!r} has shape {array.shape}, expected {pretty}"
        )
    if not np.isfinite(array).all():
        raise BundleError(f"{ARRAYS_NAME}: array {key!r} holds NaN or inf")
    return array


def _check_files(manifest: Manifest, files: Mapping[str, bytes]) -> None:
    declared = set(manifest.files)
    for name, sha in manifest.files.items():
        if name not in files:
            raise BundleError(f"{name}: listed in {MANIFEST_NAME} but missing from the bundle")
        actual = sha256_hex(files[name])
        if actual != sha:
            raise BundleError(
                f"{name}: sha256 mismatch (manifest {sha[:12]}…, file {actual[:12]}…); "
                "the bundle is corrupt or was tampered with"
            )
    extra = set(files) - declared - {MANIFEST_NAME, SIGNATURE_NAME}
    if extra:
        raise BundleError(f"{sorted(extra)[0]}: in the bundle but not listed in {MANIFEST_NAME}")
    for required in (ARRAYS_NAME, REPORT_NAME):
        if required not in declared:
            raise BundleError(f"{required}: missing from the bundle")
    for artifact in manifest.artifacts:
        if artifact.path not in declared:
            raise BundleError(f"{artifact.path}: model file of artifact {artifact.id!r} is missing")
        if manifest.files[artifact.path] != artifact.sha256:
            raise BundleError(
                f"{artifact.path}: artifacts[].sha256 disagrees with files[] in {MANIFEST_NAME}"
            )


def load_bundle_files(
    files: Mapping[str, bytes], policy: TrustPolicy | None = None, label: str = "bundle"
) -> Bundle:
    """Validate and load a bundle from its member files (see :func:`load_bundle`)."""
    trust = policy or TrustPolicy()
    if MANIFEST_NAME not in files:
        raise BundleError(f"{MANIFEST_NAME}: missing from {label}; is this a .rapp bundle?")
    manifest_bytes = files[MANIFEST_NAME]
    signer = verify_signature(manifest_bytes, files.get(SIGNATURE_NAME), trust)
    manifest = parse_manifest(manifest_bytes)
    _check_files(manifest, files)
    if _version_tuple(manifest.min_agent_version) > _version_tuple(__version__):
        raise BundleError(
            f"{MANIFEST_NAME}: min_agent_version = {manifest.min_agent_version} but this agent "
            f"is {__version__}; upgrade the agent first"
        )
    arrays = _load_arrays(files[ARRAYS_NAME])
    spec = manifest.input
    n_ch, n_feat, m = spec.n_channels, spec.feature_dim, manifest.diff_dim
    normalization = Normalization(
        mean=_array(arrays, "norm_mean", (n_ch,)).astype(np.float32),
        std=_array(arrays, "norm_std", (n_ch,)).astype(np.float32),
    )
    if (normalization.std <= 0).any():
        raise BundleError(f"{ARRAYS_NAME}: array 'norm_std' has values ≤ 0")
    loaded = {}
    for artifact in manifest.artifacts:
        k = artifact.nap_k
        s = _array(arrays, artifact.array_key("nap_s"), (k,))
        if (s <= 0).any():
            raise BundleError(
                f"{ARRAYS_NAME}: array {artifact.array_key('nap_s')!r} has values ≤ 0"
            )
        nap = NapParams(
            mu=_array(arrays, artifact.array_key("nap_mu"), (m,)).astype(np.float64),
            projection=_array(arrays, artifact.array_key("nap_w"), (m, k)).astype(np.float64),
            singular_values=s.astype(np.float64),
            rtol=manifest.rtol if manifest.rtol is not None else 0.0,
        )
        try:
            density = LatentDensity.from_arrays(arrays, artifact.id)
        except DensityError as err:
            raise BundleError(f"{ARRAYS_NAME}: {err}") from err
        residual = density.residual if density is not None else None
        if residual is not None and residual.dim != n_feat:
            raise BundleError(
                f"{ARRAYS_NAME}: {artifact.id}.residual_mean has {residual.dim} values, the "
                f"input has {n_feat} features; rebuild the bundle"
            )
        has_density = density is not None
        declared = {"density", "combined"}
        for what, names in (
            ("thresholds", artifact.thresholds),
            ("canary", artifact.canary_expected),
        ):
            if has_density != declared.issubset(names):
                raise BundleError(
                    f"{MANIFEST_NAME}: artifacts[{artifact.id}] has density "
                    f"{f'arrays but no {what}' if has_density else f'{what} but no arrays'}"
                    "; rebuild the bundle"
                )
        loaded[artifact.id] = LoadedArtifact(artifact, files[artifact.path], nap, density)
    canary = _array(arrays, "canary_x", (None, n_feat)).astype(np.float32)
    for artifact in manifest.artifacts:
        for name, values in artifact.canary_expected.items():
            if len(values) != canary.shape[0]:
                raise BundleError(
                    f"{MANIFEST_NAME}: artifacts[{artifact.id}].canary.{name} has {len(values)} "
                    f"scores for {canary.shape[0]} canary inputs"
                )
    try:
        report = json.loads(files[REPORT_NAME].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"{REPORT_NAME}: not valid UTF-8 JSON ({err})") from err
    warnings = ()
    if signer is None:
        warnings = ("bundle is not signed (or no trusted keys configured); accepted by policy",)
    return Bundle(
        manifest=manifest,
        normalization=normalization,
        recon_scale=_array(arrays, "recon_scale", (n_feat,)).astype(np.float64),
        canary_inputs=canary,
        artifacts=loaded,
        report=report,
        signed_by=signer,
        warnings=warnings,
    )


def load_bundle(
    source: Path | str | bytes,
    policy: TrustPolicy | None = None,
    limits: Limits | None = None,
) -> Bundle:
    """Read, verify and load a ``.rapp`` bundle from a path or bytes.

    Raises :class:`BundleError` naming the file inside the bundle and the problem.
    """
    lim = limits or Limits()
    src: Path | bytes = source if isinstance(source, bytes) else Path(source)
    files = read_archive(src, lim.max_member_bytes, lim.max_total_bytes)
    label = "bundle" if isinstance(src, bytes) else str(src)
    return load_bundle_files(files, policy, label)


def select_artifact(bundle: Bundle, formats: Sequence[str], precision: str) -> LoadedArtifact:
    """The bundle's artifact of the first of ``formats`` with ``precision``."""
    for fmt in formats:
        for loaded in bundle.artifacts.values():
            if loaded.spec.format == fmt and loaded.spec.precision == precision:
                return loaded
    have = ", ".join(f"{a.spec.format}/{a.spec.precision}" for a in bundle.artifacts.values())
    raise BundleError(
        f"{MANIFEST_NAME}: no {'/'.join(formats)} artifact at {precision} precision; "
        f"the bundle has {have}"
    )
