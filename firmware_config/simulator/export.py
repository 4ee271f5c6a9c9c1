"""Turning simulated samples into what the rest of the system consumes.

- :func:`write_csv` writes the project's *recording CSV format* (``agent/core/recording.py``):
  header ``time_s,<channel…>,cycle_start,program_id,fault,fault_axis``, one row per sample,
  channel values in physical units, ``fault`` empty when normal, ``fault_axis`` 1–6 or empty.
- :func:`run_to_frames` cuts samples into protocol frames, as the acquisition board would.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from firmware_config.channel_map import ChannelMap
from firmware_config.protocol import SEQ_MODULUS, TIMESTAMP_MODULUS, Frame
from firmware_config.simulator.config import FAULT_LABELS, SimulationError
from firmware_config.simulator.core import SimulatedRun

META_COLUMNS = ("cycle_start", "program_id", "fault", "fault_axis")
MAX_DECIMALS = 9
US_PER_S = 1_000_000


def csv_header(channel_map: ChannelMap) -> list[str]:
    return ["time_s", *channel_map.names, *META_COLUMNS]


def _decimals(value: float) -> int:
    """Fewest decimals that print ``value`` exactly (≤ MAX_DECIMALS)."""
    for decimals in range(MAX_DECIMALS + 1):
        scaled = value * 10**decimals
        if math.isclose(scaled, round(scaled), rel_tol=0.0, abs_tol=1e-6):
            return decimals
    return MAX_DECIMALS


def _row_format(channel_map: ChannelMap) -> str:
    """One %-format per row: counts × scale print exactly with the scale's decimals."""
    fields = ["%.6f"]
    for channel in channel_map.channels:
        decimals = max(_decimals(channel.scale), _decimals(channel.offset))
        fields.append(f"%.{decimals}f")
    fields += ["%d", "%d", "%s", "%s"]
    return ",".join(fields) + "\n"


def write_csv(runs: Iterable[SimulatedRun], path: Path | str, channel_map: ChannelMap) -> int:
    """Write consecutive runs (or chunks) as one recording CSV; returns the rows written."""
    row_format = _row_format(channel_map)
    labels = np.asarray(FAULT_LABELS, dtype=object)
    axis_text = np.asarray([""] + [str(a) for a in range(1, 7)], dtype=object)
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerow(csv_header(channel_map))
        for run in runs:
            values = run.raw.astype(np.float64) * channel_map.scales + channel_map.offsets
            columns = [run.time_s.tolist()]
            columns += [values[:, j].tolist() for j in range(values.shape[1])]
            columns += [
                run.cycle_start.astype(np.int8).tolist(),
                run.program_id.tolist(),
                labels[run.fault].tolist(),
                axis_text[np.maximum(run.fault_axis, 0)].tolist(),
            ]
            handle.write("".join([row_format % row for row in zip(*columns, strict=True)]))
            rows += run.n_samples
    return rows


def run_to_frames(run: SimulatedRun, channel_map: ChannelMap) -> list[Frame]:
    """Cut a run into DATA frames of ``channel_map.samples_per_frame`` samples.

    The run must start on a frame boundary and hold whole frames. Frame ``k`` of the stream
    (sample ``k × S`` onwards) gets sequence ``k mod 2**16``; its timestamp is the first
    sample's time in µs (mod 2**32); ``program_id`` is the program at its last sample.
    """
    per_frame = channel_map.samples_per_frame
    if run.start_index % per_frame or run.n_samples % per_frame:
        raise SimulationError(
            f"run of {run.n_samples} samples from index {run.start_index} is not whole "
            f"frames of {per_frame} samples"
        )
    if run.channels != channel_map.names:
        raise SimulationError(f"run channels {run.channels} differ from the map's")
    schema = channel_map.schema_hash
    first_frame = run.start_index // per_frame
    n_frames = run.n_samples // per_frame
    blocks = run.raw.reshape(n_frames, per_frame, -1)
    starts = run.cycle_start.reshape(n_frames, per_frame)
    programs = run.program_id.reshape(n_frames, per_frame)[:, -1].tolist()
    has_start = starts.any(axis=1).tolist()
    start_index = starts.argmax(axis=1).tolist()
    stamps = np.rint(run.time_s[::per_frame] * US_PER_S).astype(np.int64) % TIMESTAMP_MODULUS
    frames = []
    for k in range(n_frames):
        frames.append(
            Frame(
                seq=(first_frame + k) % SEQ_MODULUS,
                timestamp_us=int(stamps[k]),
                cycle_start=has_start[k],
                program_id=int(programs[k]),
                schema_hash=schema,
                samples=blocks[k],
                cycle_start_index=start_index[k] if has_start[k] else 0,
            )
        )
    return frames
