"""Bundle loading: a good bundle loads; every malformed one is refused with a precise message."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from agent.core.bundle import BundleError, Limits, TrustPolicy, load_bundle, sha256_hex
from agent.core.bundle.archive import pack_archive, read_archive
from agent.core.scoring import open_scorer


def files_of(built) -> dict[str, bytes]:
    return read_archive(built.data)


def repack(files: dict[str, bytes], manifest: dict | None = None) -> bytes:
    """Rebuild an archive; with ``manifest`` given, re-hash files so only the intended defect
    remains."""
    out = dict(files)
    if manifest is not None:
        manifest["files"] = {
            name: sha256_hex(data)
            for name, data in out.items()
            if name not in ("manifest.json", "manifest.sig")
        }
        for artifact in manifest["artifacts"]:
            artifact["sha256"] = manifest["files"][artifact["path"]]
        out["manifest.json"] = json.dumps(manifest).encode()
    return pack_archive(out)


def raw_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def test_good_bundle_loads_and_every_artifact_passes_its_canary(built_bundle):
    bundle = load_bundle(built_bundle.data)
    assert set(bundle.artifacts) == {"onnx-fp32", "onnx-int8"}
    for precision in ("fp32", "int8"):
        scorer = open_scorer(bundle, "onnxruntime", precision)
        assert scorer.check_canary() < 1e-6  # same machine, same runtime: bit-for-bit
    assert bundle.manifest.input.channels == ("J1", "J2", "J3", "J4", "J5", "J6")


def test_missing_file(built_bundle):
    files = files_of(built_bundle)
    del files["rapp.npz"]
    with pytest.raises(BundleError, match=r"^rapp\.npz: listed in manifest\.json but missing"):
        load_bundle(repack(files))


def test_missing_manifest(built_bundle):
    files = files_of(built_bundle)
    del files["manifest.json"]
    with pytest.raises(BundleError, match=r"manifest\.json: missing from bundle"):
        load_bundle(repack(files))


def test_hash_mismatch_names_the_file(built_bundle):
    files = files_of(built_bundle)
    files["model.int8.onnx"] = files["model.int8.onnx"][:-1] + b"\x00"
    with pytest.raises(BundleError, match=r"^model\.int8\.onnx: sha256 mismatch"):
        load_bundle(repack(files))


def test_unlisted_file_is_refused(built_bundle):
    files = files_of(built_bundle)
    files["extra.bin"] = b"surprise"
    with pytest.raises(BundleError, match=r"^extra\.bin: in the bundle but not listed"):
        load_bundle(repack(files))


def test_wrong_array_shape(built_bundle):
    files = files_of(built_bundle)
    with np.load(io.BytesIO(files["rapp.npz"]), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["norm_mean"] = np.zeros(5, np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    files["rapp.npz"] = buffer.getvalue()
    manifest = json.loads(files["manifest.json"])
    with pytest.raises(
        BundleError, match=r"rapp\.npz: array 'norm_mean' has shape \(5,\), expected \(6,\)"
    ):
        load_bundle(repack(files, manifest))


def test_pickled_array_is_refused(built_bundle):
    files = files_of(built_bundle)
    buffer = io.BytesIO()
    np.savez(buffer, norm_mean=np.array([{"evil": 1}], dtype=object))
    files["rapp.npz"] = buffer.getvalue()
    manifest = json.loads(files["manifest.json"])
    with pytest.raises(BundleError, match=r"rapp\.npz: array 'norm_mean' needs pickle"):
        load_bundle(repack(files, manifest))


def test_unknown_format_version(built_bundle):
    files = files_of(built_bundle)
    manifest = json.loads(files["manifest.json"])
    manifest["format_version"] = 99
    with pytest.raises(BundleError, match=r"manifest\.json: format_version = 99: unknown format"):
        load_bundle(repack(files, manifest))


def test_manifest_field_errors_name_the_field(built_bundle):
    files = files_of(built_bundle)
    manifest = json.loads(files["manifest.json"])
    manifest["artifacts"][1]["precision"] = "int4"
    with pytest.raises(BundleError, match=r"artifacts\[1\]\.precision = 'int4': must be one of"):
        load_bundle(repack(files, manifest))


def test_invalid_json_manifest(built_bundle):
    files = files_of(built_bundle)
    files["manifest.json"] = b"{not json"
    with pytest.raises(BundleError, match=r"manifest\.json: not valid UTF-8 JSON"):
        load_bundle(repack(files))


def test_newer_min_agent_version_is_refused(built_bundle):
    files = files_of(built_bundle)
    manifest = json.loads(files["manifest.json"])
    manifest["min_agent_version"] = "99.0"
    with pytest.raises(BundleError, match="upgrade the agent"):
        load_bundle(repack(files, manifest))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil.txt", "path traversal"),
        ("a/../../evil", "path traversal"),
        ("/etc/passwd", "absolute path"),
    ],
)
def test_unsafe_member_names(built_bundle, name, message):
    info = tarfile.TarInfo(name)
    info.size = 4
    with pytest.raises(BundleError, match=message):
        load_bundle(raw_tar([(info, b"evil")]))


def test_symlink_member(built_bundle):
    info = tarfile.TarInfo("model.fp32.onnx")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    with pytest.raises(BundleError, match="is a link"):
        load_bundle(raw_tar([(info, b"")]))


def test_oversized_member(built_bundle):
    with pytest.raises(BundleError, match="member limit"):
        load_bundle(built_bundle.data, limits=Limits(max_member_bytes=1024))


def test_truncated_archive(built_bundle):
    with pytest.raises(BundleError, match=r"truncated|not a readable|corrupt"):
        load_bundle(built_bundle.data[: len(built_bundle.data) // 2])


def test_not_a_bundle(tmp_path):
    path = tmp_path / "x.rapp"
    path.write_bytes(b"hello")
    with pytest.raises(BundleError, match=r"x\.rapp: not a readable bundle archive"):
        load_bundle(path)
    with pytest.raises(BundleError, match="no such file"):
        load_bundle(tmp_path / "missing.rapp")


def _public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def test_signature_policy(built_bundle):
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    files = files_of(built_bundle)
    strict = TrustPolicy(trusted_keys=(_public(key),), allow_unsigned=False)
    with pytest.raises(BundleError, match=r"manifest\.sig: missing"):
        load_bundle(built_bundle.data, strict)
    signed = dict(files, **{"manifest.sig": key.sign(files["manifest.json"])})
    assert load_bundle(repack(signed), strict).signed_by == _public(key)
    wrong = dict(files, **{"manifest.sig": other.sign(files["manifest.json"])})
    with pytest.raises(BundleError, match="does not verify against any trusted key"):
        load_bundle(repack(wrong), strict)
    tampered_manifest = files["manifest.json"].replace(b'"r1"', b'"r2"')
    tampered = dict(signed, **{"manifest.json": tampered_manifest})
    with pytest.raises(BundleError, match="does not verify"):
        load_bundle(repack(tampered), strict)
