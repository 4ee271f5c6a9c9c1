"""Model bundle (format v1): reading, validation and loading, shared by agent and exporter."""

from agent.core.bundle.errors import BundleError
from agent.core.bundle.loader import (
    Bundle,
    Limits,
    LoadedArtifact,
    TrustPolicy,
    load_bundle,
    load_bundle_files,
    select_artifact,
    sha256_hex,
)
from agent.core.bundle.manifest import ArtifactSpec, Manifest, PathwayIO

__all__ = [
    "ArtifactSpec",
    "Bundle",
    "BundleError",
    "Limits",
    "LoadedArtifact",
    "Manifest",
    "PathwayIO",
    "TrustPolicy",
    "load_bundle",
    "load_bundle_files",
    "select_artifact",
    "sha256_hex",
]
