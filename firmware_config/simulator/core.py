"""The simulator: schedule → trajectory → dynamics → faults → noise → ADC counts.

Every per-sample quantity is a pure function of the sample index (noise comes from a
counter-based hash, per-cycle draws from the cycle index), so :meth:`Simulator.chunk` gives
bit-identical samples however a run is split — :func:`simulate` itself works in blocks to
bound memory, and the emulator streams an endless run chunk by chunk.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from firmware_config.channel_map import ChannelMap, load_builtin_map
from firmware_config.simulator.arm import ArmParameters, joint_torques, motor_currents
from firmware_config.simulator.backlash import GapCrossings, backlash_currents, backlash_faults
from firmware_config.simulator.config import (
    FAULT_LABELS,
    N_AXES,
    FaultSpec,
    SimulationConfig,
    SimulationError,
)
from firmware_config.simulator.faults import (
    extra_currents,
    first_active_index,
    friction_scale,
    labels,
    payload_scale,
)
from firmware_config.simulator.noise import STREAM_NOISE, STREAM_PAYLOAD, normal, uniform
from firmware_config.simulator.programs import Motion, Trajectory

PAYLOAD_VARIATION_SPAN = 0.05  # ±5 % per cycle, within spec
COLD_FRICTION_FACTOR = 1.5  # friction of a cold joint relative to a warm one
THERMAL_TIME_CONSTANT_S = (900.0, 700.0, 600.0, 400.0, 400.0, 300.0)
BLOCK_SAMPLES = 65_536  # simulate() works in blocks of this many samples


@dataclass(frozen=True, eq=False)
class SimulatedRun:
    """A stretch of simulated samples; columns are in channel-map order.

    ``raw`` holds the ADC counts a board would send, ``currents`` the same in amps
    (``channel_map.to_physical(raw)``), so noise and quantization are already in.
    """

    start_index: int
    sample_rate_hz: int
    channels: tuple[str, ...]
    time_s: np.ndarray  # (T,) float64
    raw: np.ndarray  # (T, C) int16
    currents: np.ndarray  # (T, C) float32, amps
    cycle_start: np.ndarray  # (T,) bool
    program_id: np.ndarray  # (T,) uint8
    fault: np.ndarray  # (T,) int8 code, index into FAULT_LABELS
    fault_axis: np.ndarray  # (T,) int8, 1–6 or -1

    @property
    def n_samples(self) -> int:
        return int(self.time_s.shape[0])

    @property
    def labels(self) -> tuple[str, ...]:
        """Vocabulary of :attr:`fault` codes: code i means ``labels[i]`` ("" = normal)."""
        return FAULT_LABELS

    def fault_labels(self) -> np.ndarray:
        """Fault label per sample as strings ("" = normal)."""
        return np.asarray(FAULT_LABELS, dtype=object)[self.fault].astype(str)


def concatenate(runs: list[SimulatedRun]) -> SimulatedRun:
    """Join consecutive chunks into one run."""
    if not runs:
        raise SimulationError("nothing to concatenate")
    first = runs[0]
    return SimulatedRun(
        start_index=first.start_index,
        sample_rate_hz=first.sample_rate_hz,
        channels=first.channels,
        time_s=np.concatenate([r.time_s for r in runs]),
        raw=np.concatenate([r.raw for r in runs]),
        currents=np.concatenate([r.currents for r in runs]),
        cycle_start=np.concatenate([r.cycle_start for r in runs]),
        program_id=np.concatenate([r.program_id for r in runs]),
        fault=np.concatenate([r.fault for r in runs]),
        fault_axis=np.concatenate([r.fault_axis for r in runs]),
    )


class Simulator:
    """Deterministic sample source for one :class:`SimulationConfig` and channel map.

    The channel map must have one channel on each axis 1–6; its scales quantize the currents.
    """

    def __init__(
        self,
        config: SimulationConfig,
        channel_map: ChannelMap | None = None,
        arm: ArmParameters | None = None,
    ) -> None:
        self.config = config
        self.channel_map = channel_map if channel_map is not None else load_builtin_map()
        self.arm = arm if arm is not None else ArmParameters()
        axes = [c.axis for c in self.channel_map.channels]
        if sorted(axes) != list(range(1, N_AXES + 1)):
            raise SimulationError(
                f"channel map {self.channel_map.robot!r} has axes {axes}; the simulated arm "
                f"needs exactly one channel on each axis 1–{N_AXES}"
            )
        self._joint_of_column = np.asarray(axes) - 1
        self._trajectory = Trajectory(config)
        self._rated = self.arm.rated
        self._sigma = self._rated * self.arm.noise_fraction
        self._torque_constant = np.asarray(self.arm.torque_constant)
        self._crossings = GapCrossings(
            self._torques_at, config.sample_rate_hz, self._rated * self._torque_constant
        )

    @property
    def n_samples(self) -> int | None:
        return self.config.n_samples

    def chunk(self, start: int, count: int) -> SimulatedRun:
        """Samples ``start`` … ``start + count - 1`` (the run is endless if duration is None)."""
        if start < 0 or count < 1:
            raise SimulationError(f"chunk({start}, {count}): need start ≥ 0 and count ≥ 1")
        return self._chunk(start, count, self.config.faults)

    def chunks(self, size: int, start: int = 0) -> Iterator[SimulatedRun]:
        """Consecutive chunks of ``size`` samples until the run ends (forever if endless)."""
        total = self.n_samples
        position = start
        while total is None or position < total:
            count = size if total is None else min(size, total - position)
            yield self.chunk(position, count)
            position += count

    def _chunk(self, start: int, count: int, faults: tuple[FaultSpec, ...]) -> SimulatedRun:
        fs = self.config.sample_rate_hz
        index = np.arange(start, start + count, dtype=np.int64)
        t = index / fs
        joint_amps = self._joint_currents(t, index, faults)
        raw = self.channel_map.to_raw(joint_amps[:, self._joint_of_column])
        self._apply_sensor_faults(raw, t, start, faults)

        traj = self._trajectory
        # cycle of each sample, plus the one before the chunk to spot a boundary at index 0
        cycles = traj.cycle_of(np.concatenate([[(start - 1) / fs], t]))
        cycle_start = cycles[1:] != cycles[:-1]
        if start == 0:
            cycle_start[0] = True
        codes, axes = labels(t, faults)
        return SimulatedRun(
            start_index=start,
            sample_rate_hz=fs,
            channels=self.channel_map.names,
            time_s=t,
            raw=raw,
            currents=self.channel_map.to_physical(raw),
            cycle_start=cycle_start,
            program_id=traj.cycle_program[cycles[1:]],
            fault=codes,
            fault_axis=axes,
        )

    def _joint_currents(
        self, t: np.ndarray, index: np.ndarray, faults: tuple[FaultSpec, ...]
    ) -> np.ndarray:
        cfg = self.config
        motion, torques = self._dynamics(t, faults)
        amps = motor_currents(self.arm, torques)
        amps += extra_currents(t, motion.q, faults, self._rated)
        if backlash_faults(faults):
            amps += backlash_currents(
                index,
                torques,
                faults,
                self._crossings,
                self._torque_constant,
                self._rated,
                cfg.sample_rate_hz,
            )
        if cfg.noise:
            cells = (index[:, None] * N_AXES + np.arange(N_AXES)).astype(np.uint64)
            amps += normal(cfg.seed, STREAM_NOISE, cells) * self._sigma
        return amps

    def _dynamics(self, t: np.ndarray, faults: tuple[FaultSpec, ...]) -> tuple[Motion, np.ndarray]:
        """Joint motion and torques (n, 6) at sample times ``t``: nuisances and faults that act
        inside the dynamics (payload, friction) included, no sensor noise."""
        cfg = self.config
        motion = self._trajectory.motion(t)
        payload = np.full(t.shape[0], cfg.payload_kg)
        if cfg.payload_variation:
            u = uniform(cfg.seed, STREAM_PAYLOAD, motion.cycle)
            payload *= 1.0 + PAYLOAD_VARIATION_SPAN * (2.0 * u - 1.0)
        payload *= payload_scale(t, faults)
        friction = friction_scale(t, faults)
        if cfg.warmup:
            decay = np.exp(-t[:, None] / np.asarray(THERMAL_TIME_CONSTANT_S))
            friction *= np.exp(math.log(COLD_FRICTION_FACTOR) * decay)
        return motion, joint_torques(self.arm, motion.q, motion.qd, motion.qdd, payload, friction)

    def _torques_at(self, t: np.ndarray, faults: tuple[FaultSpec, ...]) -> np.ndarray:
        return self._dynamics(t, faults)[1]

    def _apply_sensor_faults(
        self, raw: np.ndarray, t: np.ndarray, start: int, faults: tuple[FaultSpec, ...]
    ) -> None:
        fs = self.config.sample_rate_hz
        for fault in faults:
            if fault.kind != "sensor":
                continue
            mask = (t >= fault.onset_s) & (t < fault.end_s)
            if not mask.any():
                continue
            column = int(np.flatnonzero(self._joint_of_column == fault.axis - 1)[0])
            if fault.effective_mode == "dropout":
                value = 0
            else:
                # hold the last reading before onset, itself affected only by earlier faults
                reference = max(first_active_index(fault, fs) - 1, 0)
                earlier = tuple(f for f in faults if f.onset_s < fault.onset_s)
                value = int(self._chunk(reference, 1, earlier).raw[0, column])
            raw[mask, column] = value


def simulate(config: SimulationConfig, channel_map: ChannelMap | None = None) -> SimulatedRun:
    """The whole run described by ``config`` (which needs a finite ``duration_s``)."""
    simulator = Simulator(config, channel_map)
    if simulator.n_samples is None:
        raise SimulationError("duration_s is None (endless); use Simulator.chunks() instead")
    return concatenate(list(simulator.chunks(BLOCK_SAMPLES)))
