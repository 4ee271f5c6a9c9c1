"""Safe reading and writing of the bundle tar archive (SPEC §6).

Reading never extracts: members are read into memory after checking that each is a regular
file with a plain relative name (no absolute path, no ``..``, no links or devices) and that
neither a member nor the whole archive is oversized. A bundle is a few MB; the caps keep a
hostile or corrupt archive from filling memory.
"""

from __future__ import annotations

import io
import os
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


def read_archive(
    source: Path | bytes,
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> dict[str, bytes]:
    """Read every member of a bundle archive into memory, refusing anything unsafe."""
    label = "bundle" if isinstance(source, bytes) else str(source)
    try:
        if isinstance(source, bytes):
            handle = tarfile.open(fileobj=io.BytesIO(source), mode="r:*")  # noqa: SIM115 - closed below
        else:
            size = os.path.getsize(source)
            if size > max_total_bytes:
                raise BundleError(
                    f"{label}: {size} bytes exceeds the {max_total_bytes}-byte bundle limit"
                )
            handle = tarfile.open(source, mode="r:*")  # noqa: SIM115 - closed below
    except FileNotFoundError as err:
        raise BundleError(f"{label}: no such file") from err
    except (tarfile.TarError, OSError) as err:
        raise BundleError(f"{label}: not a readable bundle archive ({err})") from err
    files: dict[str, bytes] = {}
    total = 0
    with handle:
        try:
            members = handle.getmembers()
        except (tarfile.TarError, OSError, EOFError) as err:
            raise BundleError(f"{label}: truncated or corrupt archive ({err})") from err
        if len(members) > MAX_MEMBERS:
            raise BundleError(
                f"{label}: {len(members)} members; a bundle holds at most {MAX_MEMBERS}"
            )
        for member in members:
            if member.isdir():
                check_member_name(member.name)
                continue
            name = check_member_name(member.name)
            if member.issym() or member.islnk():
                raise BundleError(
                    f"{label}: member {name!r} is a link; bundles hold regular files only"
                )
            if not member.isfile():
                raise BundleError(f"{label}: member {name!r} is not a regular file")
            if member.size > max_member_bytes:
                raise BundleError(
                    f"{label}: member {name!r} is {member.size} bytes, over the "
                    f"{max_member_bytes}-byte member limit"
                )
            total += member.size
            if total > max_total_bytes:
                raise BundleError(f"{label}: members add up to more than {max_total_bytes} bytes")
            if name in files:
                raise BundleError(f"{label}: member {name!r} appears twice")
            extracted = handle.extractfile(member)
            if extracted is None:
                raise BundleError(f"{label}: member {name!r} cannot be read")
            try:
                data = extracted.read()
            except (tarfile.TarError, OSError, EOFError) as err:
                raise BundleError(f"{label}: member {name!r} is truncated ({err})") from err
            if len(data) != member.size:
                raise BundleError(f"{label}: member {name!r} is truncated")
            files[name] = data
    return files


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
