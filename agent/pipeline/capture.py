"""Optional bounded on-disk capture of recent normal windows, the raw material for retraining.

``.npz`` files (numpy arrays only, no pickle), bounded by a window count and a disk budget,
written atomically. Only windows the pipeline calls clean (scored below threshold, no alarm
raised or active) are captured, each with its program id: `rapp-export retrain` reads them.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np

from agent.core.atomic import write_atomic
from agent.pipeline.drift import DriftError

log = logging.getLogger(__name__)

_CAPTURE_NAME = re.compile(r"^normal-(\d{10})\.npz$")
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# A file's arrays may take at most this share of the budget, so trimming whole files (oldest
# first) can always bring the directory under it and still keep the newest file.
FILE_SHARE_OF_BUDGET = 0.5


class WindowCapture:
    """Bounded on-disk capture of recent normal windows for retraining.

    Windows are buffered and written ``per_file`` at a time as ``normal-<n>.npz`` holding
    ``samples`` (N × L × C, physical units), ``start`` and ``program``; the oldest files are
    deleted once more than ``max_windows`` windows, or more than ``max_bytes`` bytes, are on
    disk (files are sized on the first window so that one takes at most half the budget).
    Writes are atomic, so a reader (or a crash) never sees half a file.
    """

    def __init__(
        self,
        directory: Path,
        max_windows: int,
        next_counter: int = 0,
        per_file: int = 64,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if max_windows < 1 or per_file < 1 or max_bytes < 1:
            raise DriftError(
                f"capture max_windows = {max_windows}, per_file = {per_file}, max_bytes = "
                f"{max_bytes}: all must be ≥ 1"
            )
        self.directory = Path(directory)
        self.max_windows = max_windows
        self.max_bytes = max_bytes
        self.per_file = min(per_file, max_windows)
        self._sized = False
        self.too_large = 0  # windows dropped because one alone exceeds the budget
        self._pending: list[tuple[np.ndarray, int, int]] = []
        self._counter = next_counter
        self.written = 0
        self.failed = 0  # windows lost to write errors

    @classmethod
    def open(
        cls,
        directory: Path | str,
        max_windows: int,
        per_file: int = 64,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> WindowCapture:
        """Create the directory if needed and continue numbering after the files in it."""
        folder = Path(directory)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            existing = sorted(p.name for p in folder.iterdir() if _CAPTURE_NAME.match(p.name))
        except OSError as err:
            raise DriftError(
                f"capture directory {folder}: {err.strerror or err}; create it or "
                "point capture_dir at a writable directory"
            ) from err
        match = _CAPTURE_NAME.match(existing[-1]) if existing else None
        counter = int(match[1]) + 1 if match else 0
        return cls(folder, max_windows, counter, per_file, max_bytes)

    def _files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if _CAPTURE_NAME.match(p.name))

    def add(self, samples: np.ndarray, start: int, program: int) -> None:
        window = np.asarray(samples, dtype=np.float32)
        window_bytes = window.nbytes + 16  # + start and program
        if window_bytes > self.max_bytes * FILE_SHARE_OF_BUDGET:
            self.too_large += 1
            return
        if not self._sized:
            fit = int(self.max_bytes * FILE_SHARE_OF_BUDGET // window_bytes)
            self.per_file = max(1, min(self.per_file, fit))
            self._sized = True
        self._pending.append((window, start, program))
        if len(self._pending) >= self.per_file:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        shapes = {s.shape for s, _, _ in self._pending}
        if len(shapes) != 1:  # cannot happen with one input spec; keep the newest shape
            newest = self._pending[-1][0].shape
            self._pending = [p for p in self._pending if p[0].shape == newest]
        buffer = io.BytesIO()
        np.savez(
            buffer,
            samples=np.stack([s for s, _, _ in self._pending]),
            start=np.array([a for _, a, _ in self._pending], dtype=np.int64),
            program=np.array([p for _, _, p in self._pending], dtype=np.int64),
        )
        try:
            write_atomic(self.directory / f"normal-{self._counter:010d}.npz", buffer.getvalue())
            self._trim()
        except OSError as err:
            # A full or failing disk costs this batch of windows, never the agent.
            self.failed += len(self._pending)
            if self.failed == len(self._pending):
                log.error("capture %s: cannot write (%s); windows are dropped", self.directory, err)
            self._pending = []
            return
        self._counter += 1
        self.written += len(self._pending)
        self._pending = []

    def _trim(self) -> None:
        files = self._files()
        keep = max(1, self.max_windows // self.per_file)
        stale = files[: max(0, len(files) - keep)]
        kept = files[len(stale) :]
        total = sum(p.stat().st_size for p in kept)
        while len(kept) > 1 and total > self.max_bytes:
            total -= kept[0].stat().st_size
            stale.append(kept.pop(0))
        for old in stale:
            old.unlink(missing_ok=True)


def load_capture(directory: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """All captured windows (N × L × C) and their programs, oldest first (no pickle)."""
    files = sorted(p for p in Path(directory).iterdir() if _CAPTURE_NAME.match(p.name))
    samples, programs = [], []
    for path in files:
        with np.load(path, allow_pickle=False) as data:
            samples.append(data["samples"])
            programs.append(data["program"])
    if not samples:
        return np.empty((0, 0, 0), dtype=np.float32), np.empty(0, dtype=np.int64)
    return np.concatenate(samples), np.concatenate(programs)
