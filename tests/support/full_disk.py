"""A real filesystem that fills up: a small tmpfs mounted for one test (root only).

Tests that need it fail — never skip — where tmpfs cannot be mounted, so CI (root on a fresh
machine) always runs them.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FullDisk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._filler = root / ".filler"

    def fill(self) -> None:
        """Take every free byte (ENOSPC for the next write of anyone)."""
        # unbuffered: a buffered file would raise ENOSPC again when it is closed
        with open(self._filler, "ab", buffering=0) as handle:
            block = b"\0" * 65536
            while block:
                try:
                    handle.write(block)
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    block = block[: len(block) // 2]

    def free(self) -> None:
        self._filler.unlink(missing_ok=True)


@contextmanager
def mounted_tmpfs(path: Path, size: str = "4m") -> Iterator[FullDisk]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"cannot mount a tmpfs at {path} ({done.stderr.strip()}); the disk-full tests need "
            "root (CI runs as root)"
        )
    try:
        yield FullDisk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
