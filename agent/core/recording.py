"""Recorded current files: the CSV format both `rapp-export train` and `rapp-agent score` read.

Format: UTF-8 CSV with a header row and one row per sample. One column per channel, named
as the channel (e.g. ``J1`` … ``J6`` or ``X1_CurrentFeedback``), values in physical units.
Optional columns the tools understand when present:

- ``time_s``       sample time in seconds (float)
- ``cycle_start``  1 on the first sample of a robot cycle, else 0
- ``program_id``   robot program number (int)
- ``seq``          sample or frame sequence number; a jump marks a gap
- ``fault``        label for evaluation (empty = normal); never used for training
- ``fault_axis``   axis of the labelled fault (empty = none)

Other columns are ignored unless named as channels. Empty cells in a channel column read as
NaN; windows holding them are skipped and counted, not scored.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.core.errors import AgentInputError


class RecordingError(AgentInputError, ValueError):
    """A recording that cannot be read as the documented CSV format."""


@dataclass(frozen=True)
class Recording:
    path: Path
    channels: tuple[str, ...]
    samples: np.ndarray  # (T × C) float32
    time_s: np.ndarray | None
    cycle_start: np.ndarray | None
    program_id: np.ndarray | None
    gap_before: np.ndarray | None
    labels: np.ndarray | None

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[0])


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """Every column of a CSV as a string array, keyed by header name."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise RecordingError(f"{path}: empty file; expected a header row of column names")
            rows = list(reader)
    except OSError as err:
        raise RecordingError(f"{path}: cannot read ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise RecordingError(
            f"{path}: not a UTF-8 text CSV ({err.reason} at byte {err.start}); "
            "give the recording as CSV text"
        ) from err
    except csv.Error as err:
        raise RecordingError(f"{path}: not a readable CSV ({err})") from err
    width = len(header)
    bad = next((i for i, row in enumerate(rows) if len(row) != width), None)
    if bad is not None:
        raise RecordingError(
            f"{path}: line {bad + 2} has {len(rows[bad])} fields but the header has {width}"
        )
    table = np.array(rows, dtype=str).reshape(len(rows), width)
    return {name.strip(): table[:, i] for i, name in enumerate(header)}


def to_float(path: Path, name: str, values: np.ndarray) -> np.ndarray:
    """Numeric column; empty cells become NaN, anything else unparsable is an error."""
    cleaned = np.where(np.char.strip(values) == "", "nan", values)
    try:
        return cleaned.astype(np.float64)
    except ValueError as err:
        raise RecordingError(f"{path}: column {name!r} is not numeric ({err})") from err


def read_recording(path: Path | str, channels: Sequence[str]) -> Recording:
    """Read ``channels`` (and the optional meta columns) from a recording CSV."""
    file = Path(path)
    columns = read_columns(file)
    missing = [name for name in channels if name not in columns]
    if missing:
        raise RecordingError(
            f"{file}: missing channel column(s) {missing}; the file has {sorted(columns)}"
        )
    samples = np.stack([to_float(file, n, columns[n]) for n in channels], axis=1)

    def optional(name: str) -> np.ndarray | None:
        return to_float(file, name, columns[name]) if name in columns else None

    seq = optional("seq")
    gap = None
    if seq is not None and seq.size:
        gap = np.zeros(seq.shape[0], dtype=bool)
        gap[1:] = np.diff(seq) != 1
    cycle = optional("cycle_start")
    program = optional("program_id")
    return Recording(
        path=file,
        channels=tuple(channels),
        samples=samples.astype(np.float32),
        time_s=optional("time_s"),
        cycle_start=None if cycle is None else np.nan_to_num(cycle) > 0,
        program_id=None if program is None else np.nan_to_num(program, nan=-1).astype(np.int64),
        gap_before=gap,
        labels=columns.get("fault"),
    )
