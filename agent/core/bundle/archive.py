"""Safe reading and writing of the bundle tar archive.

A bundle is a plain (uncompressed) tar of a few MB. Reading never extracts and never
decompresses: a compressed archive is refused by its magic bytes before tarfile sees it, so
no decompression bomb can cost CPU or memory, and the uncompressed size of every member is
bounded by the file's own size (compression ratio 1). The archive is read as a stream, one
member at a time, and every cap is enforced while reading — the member count at each header,
each member's size before its data is read, the running total — so a hostile archive with
millions of members or a huge declared size fails at the first member past a cap, having
held no more than that. Each member must be a regular file with a plain relative name (no
absolute path, no ``..``, no links, devices or FIFOs) and appear once.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from agent.core.bundle.errors import BundleError

DEFAULT_MAX_MEMBER_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_TOTAL_BYTES = 256 * 1024 * 1024
MAX_MEMBERS = 256


def check_member_name(name: str) -> str:
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith(("/", "\\")) or ":" in path.parts[0]:
        raise BundleError(
            f"archive member {name!r}: absolute path; bundles hold relative names only"
        )
    if any(part == ".." for part in path.parts) or "\\" in name:
        raise BundleError(f"archive member {name!r}: path traversal ('..'); refusing the bundle")
    normalized = str(path)
    if normalized in ("", "."):
        raise BundleError(f"archive member {name!r}: empty name")
    return normalized


COMPRESSED_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}


def read_archive(
    source: Path | bytes,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> dict[str, bytes]:
    """Read every member of a bundle archive into memory, refusing anything unsafe."""
    label = "bundle" if isinstance(source, bytes) else str(source)
    data = source if isinstance(source, bytes) else _read_capped(source, max_total_bytes)
    if len(data) > max_total_bytes:
        raise BundleError(f"{label}: {len(data)} bytes exceeds the {max_total_bytes}-byte limit")
    for magic, kind in COMPRESSED_MAGIC.items():
        if data.startswith(magic):
            raise BundleError(
                f"{label}: a {kind}-compressed archive; bundles are plain tar files "
                "(rapp-export build writes them) and are never decompressed"
            )
    files: dict[str, bytes] = {}
    try:
        # "r|": a stream, so members are seen one at a time and nothing is indexed up front
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as stream:
            for count, member in enumerate(stream, start=1):
                if count > MAX_MEMBERS:
                    raise BundleError(f"{label}: more than {MAX_MEMBERS} members")
                _take(stream, member, files, label, max_member_bytes, max_total_bytes)
    except (tarfile.TarError, OSError, EOFError) as err:
        raise BundleError(f"{label}: not a readable bundle archive ({err})") from err
    return files


def _read_capped(path: Path, max_total_bytes: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_total_bytes + 1)
    except FileNotFoundError as err:
        raise BundleError(f"{path}: no such file") from err
    except OSError as err:
        raise BundleError(f"{path}: cannot read ({err.strerror or err})") from err
    if len(data) > max_total_bytes:
        raise BundleError(f"{path}: larger than the {max_total_bytes}-byte bundle limit")
    return data


def _take(
    stream: tarfile.TarFile,
    member: tarfile.TarInfo,
    files: dict[str, bytes],
    label: str,
    max_member_bytes: int,
    max_total_bytes: int,
) -> None:
    """Check one member's header, then read its data into ``files``."""
    name = check_member_name(member.name)
    if member.isdir():
        return
    if member.issym() or member.islnk():
        raise BundleError(f"{label}: member {name!r} is a link; bundles hold regular files only")
    if not member.isfile():
        raise BundleError(f"{label}: member {name!r} is not a regular file")
    if member.size > max_member_bytes:
        raise BundleError(
            f"{label}: member {name!r} is {member.size} bytes, over the "
            f"{max_member_bytes}-byte member limit"
        )
    if sum(len(v) for v in files.values()) + member.size > max_total_bytes:
        raise BundleError(f"{label}: members add up to more than {max_total_bytes} bytes")
    if name in files:
        raise BundleError(f"{label}: member {name!r} appears twice")
    extracted = stream.extractfile(member)
    if extracted is None:
        raise BundleError(f"{label}: member {name!r} cannot be read")
    data = extracted.read(member.size + 1)
    if len(data) != member.size:
        raise BundleError(f"{label}: member {name!r} is truncated")
    files[name] = data


def pack_archive(files: Mapping[str, bytes]) -> bytes:
    """A deterministic tar (sorted names, fixed mtime/owner) so equal inputs give equal bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(check_member_name(name))
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
