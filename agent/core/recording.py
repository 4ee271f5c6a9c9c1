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

Spreadsheets in many locales write ``;`` between fields and a decimal comma (``0,25``): the
delimiter is taken from the header row (the most frequent of ``,`` ``;`` and tab) and the
decimal mark from the data (a comma when numbers hold commas and no dots), unless the caller
names them (``delimiter=``, ``decimal=``; what is named wins). Thousands separators are not
supported.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.core.errors import AgentInputError
from agent.core.features import Segmentation

DELIMITERS = (",", ";", "\t")
DECIMALS = (".", ",")
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d*,\d+(?:[eE][+-]?\d+)?\s*$")
_SNIFF_ROWS = 200


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


def sniff_delimiter(header_line: str) -> str:
    """The most frequent of :data:`DELIMITERS` in the header row (``,`` if none occurs)."""
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def sniff_decimal(columns: Sequence[np.ndarray]) -> str:
    """``,`` when the first non-empty cells of ``columns`` hold decimal commas and no dot."""
    cells = [str(v) for col in columns for v in col[:_SNIFF_ROWS] if str(v).strip()]
    if any("." in c for c in cells):
        return "."
    return "," if any(_DECIMAL_COMMA.match(c) for c in cells) else "."


def _check_choice(path: Path, what: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise RecordingError(f"{path}: {what} {value!r} is not supported; use one of {shown}")


def read_columns(path: Path, *, delimiter: str | None = None) -> dict[str, np.ndarray]:
    """Every column of a CSV as a string array, keyed by header name.

    ``delimiter`` None sniffs it from the header row (:func:`sniff_delimiter`).
    """
    _check_choice(path, "delimiter", delimiter, DELIMITERS)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            first = handle.readline()
            sep = delimiter or sniff_delimiter(first)
            handle.seek(0)
            reader = csv.reader(handle, delimiter=sep)
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
            f" (fields separated by {sep!r}){_delimiter_hint(header)}"
        )
    table = np.array(rows, dtype=str).reshape(len(rows), width)
    return {name.strip(): table[:, i] for i, name in enumerate(header)}


def to_float(path: Path, name: str, values: np.ndarray, decimal: str = ".") -> np.ndarray:
    """Numeric column; empty cells become NaN, anything else unparsable is an error."""
    cleaned = np.where(np.char.strip(values) == "", "nan", values)
    if decimal == ",":
        cleaned = np.char.replace(cleaned, ",", ".")
    try:
        return cleaned.astype(np.float64)
    except ValueError as err:
        hint = ""
        if decimal == "." and any("," in str(v) for v in values[:_SNIFF_ROWS]):
            hint = "; it holds decimal commas: pass decimal=','"
        raise RecordingError(f"{path}: column {name!r} is not numeric ({err}){hint}") from err


def _delimiter_hint(header: Sequence[str]) -> str:
    """A hint when the header came out as one column that holds another delimiter."""
    if len(header) != 1:
        return ""
    other = next((d for d in DELIMITERS if d in header[0]), None)
    if other is None:
        return ""
    return f"; the header is one column: are the fields separated by {other!r}? pass delimiter="


def _missing_channels(path: Path, missing: list[str], columns: dict[str, np.ndarray]) -> str:
    message = f"{path}: missing channel column(s) {missing}; the file has {sorted(columns)}"
    return message + _delimiter_hint(list(columns))


def read_recording(
    path: Path | str,
    channels: Sequence[str],
    *,
    delimiter: str | None = None,
    decimal: str | None = None,
) -> Recording:
    """Read ``channels`` (and the optional meta columns) from a recording CSV.

    ``delimiter``/``decimal`` None are sniffed (see the module docstring); named ones win.
    """
    file = Path(path)
    _check_choice(file, "decimal mark", decimal, DECIMALS)
    columns = read_columns(file, delimiter=delimiter)
    missing = [name for name in channels if name not in columns]
    if missing:
        raise RecordingError(_missing_channels(file, missing, columns))
    mark = decimal or sniff_decimal([columns[n] for n in channels])
    samples = np.stack([to_float(file, n, columns[n], mark) for n in channels], axis=1)

    def optional(name: str) -> np.ndarray | None:
        return to_float(file, name, columns[name], mark) if name in columns else None

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


def require_segments(recording: Recording, segmentation: Segmentation) -> None:
    """Refuse a recording too short to give even one segment, naming the file and the fix."""
    n, path = recording.n_samples, recording.path
    if segmentation.kind == "window":
        if n < segmentation.length:
            raise RecordingError(
                f"{path}: {n} samples, shorter than one {segmentation.length}-sample window; "
                "give a longer recording"
            )
        return
    if recording.cycle_start is None:
        raise RecordingError(
            f"{path}: no cycle_start column, but the model cuts robot cycles; record the "
            "cycle markers (1 on the first sample of each cycle)"
        )
    markers = int(np.count_nonzero(recording.cycle_start))
    if markers < 2:
        raise RecordingError(
            f"{path}: {n} samples with {markers} cycle start(s), shorter than one robot "
            "cycle (a cycle runs from one cycle start to the next); give a longer recording"
        )
