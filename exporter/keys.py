"""Ed25519 signing keys for model bundles: generate, load, sign.

- ``keygen(out)`` writes the private key as unencrypted PKCS#8 PEM with mode 0600 (created
  that way, never readable by others even briefly) and ``<out>.pub``: the base64 of the raw
  32-byte public key — exactly what the agent's ``[trust] keys`` accepts (inline or as a path).
- ``sign_bundle(data, key)`` replaces/adds ``manifest.sig`` (Ed25519 over the manifest bytes)
  and re-packs the archive deterministically (sorted names, fixed mtime/owner). Ed25519 is
  deterministic too, so signing the same bundle with the same key gives identical bytes.
- ``sign_command(command, key)`` signs an OTA install command (its canonical bytes, see
  agent/ota/command.py) with the same release key, for ``rapp-export push``.
"""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.core.atomic import write_atomic
from agent.core.bundle.archive import pack_archive, read_archive
from agent.core.bundle.errors import BundleError
from agent.core.bundle.manifest import MANIFEST_NAME, SIGNATURE_NAME
from agent.ota.command import TransferCommand
from exporter.errors import ExportError, ExportInputError


def public_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def keygen(out: Path) -> tuple[Path, Path]:
    """Write a new private key to ``out`` (0600) and its public key to ``out.pub``."""
    out = Path(out)
    if out.exists():
        raise ExportInputError(f"{out}: exists; refusing to overwrite a signing key (choose --out)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(out, pem, mode=0o600)
    pub = out.with_name(out.name + ".pub")
    write_atomic(pub, (public_b64(key) + "\n").encode(), mode=0o644)
    return out, pub


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError as err:
        raise ExportError(f"{path}: no such key file; create it with `rapp-export keygen`") from err
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise ExportError(
            f"{path}: not an unencrypted PEM private key ({err}); use a key from "
            "`rapp-export keygen`"
        ) from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ExportError(f"{path}: not an Ed25519 key; bundles are signed with Ed25519")
    return key


def signer(path: Path):
    """A ``sign(manifest_bytes) -> signature`` callable for ``build_bundle(sign=…)``."""
    key = load_private_key(path)
    return key.sign


def sign_bundle(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """The bundle ``data`` with a fresh ``manifest.sig`` by ``key`` (deterministic)."""
    try:
        files = read_archive(data)
    except BundleError as err:
        raise ExportInputError(f"cannot sign: {err}") from err
    if MANIFEST_NAME not in files:
        raise ExportInputError(f"cannot sign: {MANIFEST_NAME} missing; is this a .rapp bundle?")
    files[SIGNATURE_NAME] = key.sign(files[MANIFEST_NAME])
    return pack_archive(files)


def sign_command(command: TransferCommand, key: Ed25519PrivateKey) -> TransferCommand:
    """``command`` with its Ed25519 signature by ``key`` (agents check it against [trust] keys)."""
    return command.with_signature(key.sign(command.signed_bytes()))
