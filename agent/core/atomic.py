"""Atomic file writes: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _current_umask() -> int:
    # os.umask() can only be read by setting it, which races with other threads creating
    # files; Linux publishes it read-only in /proc.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def _default_mode() -> int:
    # mkstemp creates 0600; a plain open() would honour the umask. Match open() so bundles and
    # reports written atomically are as readable as any other file the user writes.
    return 0o666 & ~_current_umask()


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """temp file in the same directory + fsync + rename + fsync of the directory.

    ``mode`` sets the file's permissions (e.g. 0o600 for private keys); by default they follow
    the umask like ``open()``. The mode is set before any byte is written, so a secret is
    never readable by others, not even for a moment.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        os.fchmod(fd, _default_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
