"""Robot programs and their joint trajectories.

A program is a closed tour of joint-space waypoints starting and ending at a common home pose,
so cycles of different programs can follow each other without a jump. Each move is a
minimum-jerk (quintic) point-to-point segment — zero velocity and acceleration at both ends,
like a real controller's smooth profile — followed by a dwell (gripping, settling, welding).

:class:`Trajectory` lays cycles end to end according to the schedule, applies the per-cycle
speed override, and evaluates q, q̇, q̈ for any sample times, vectorized. Its segment table
grows on demand, so an endless run costs memory per cycle, not per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_config.simulator.config import N_AXES, SimulationConfig
from firmware_config.simulator.noise import STREAM_SPEED, uniform

SPEED_OVERRIDE_SPAN = 0.05  # ±5 % time scaling per cycle
LOOKAHEAD_S = 60.0  # extend the cycle table this far beyond the time asked for

HOME = (0.0, 0.9, -1.6, 0.0, 0.7, 0.0)


@dataclass(frozen=True)
class Move:
    """Go to ``target`` (rad, J1..J6) in ``duration_s``, then wait ``dwell_s``."""

    target: tuple[float, float, float, float, float, float]
    duration_s: float
    dwell_s: float


@dataclass(frozen=True)
class Program:
    program_id: int
    name: str
    moves: tuple[Move, ...]

    @property
    def nominal_cycle_s(self) -> float:
        return sum(m.duration_s + m.dwell_s for m in self.moves)


PROGRAMS: tuple[Program, ...] = (
    Program(
        1,
        "pick_and_place",
        (
            Move((0.6, 0.5, -1.2, 0.3, 0.8, -0.6), 0.9, 0.25),
            Move((0.6, 0.35, -1.0, 0.3, 0.9, -0.6), 0.4, 0.3),
            Move((-0.8, 0.8, -1.5, -0.4, 0.6, 0.9), 1.2, 0.25),
            Move(HOME, 0.8, 0.3),
        ),
    ),
    Program(
        2,
        "palletizing",
        (
            Move((1.4, 0.3, -0.8, 0.5, 0.5, 0.0), 1.3, 0.3),
            Move((1.4, 0.1, -0.5, 0.5, 0.4, 1.2), 0.6, 0.4),
            Move((-1.2, 0.6, -1.3, -0.6, 0.7, -1.0), 1.8, 0.3),
            Move(HOME, 1.0, 0.3),
        ),
    ),
    Program(
        3,
        "deburring",
        (
            Move((0.3, 0.7, -1.5, 0.9, 0.3, 1.2), 1.0, 0.15),
            Move((0.3, 0.7, -1.5, -0.9, 1.1, -1.2), 1.3, 0.15),
            Move((0.5, 0.6, -1.4, 0.8, 0.4, 1.1), 1.2, 0.15),
            Move((0.5, 0.6, -1.4, -0.6, 1.0, -1.0), 1.1, 0.2),
            Move(HOME, 0.8, 0.3),
        ),
    ),
)


def program_by_id(program_id: int) -> Program:
    for program in PROGRAMS:
        if program.program_id == program_id:
            return program
    raise KeyError(program_id)


def quintic(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-jerk profile p(s), p'(s), p''(s) for s in [0, 1]."""
    s2 = s * s
    s3 = s2 * s
    p = s3 * (10.0 - 15.0 * s + 6.0 * s2)
    dp = 30.0 * s2 * (1.0 - 2.0 * s + s2)
    ddp = 60.0 * s * (1.0 - 3.0 * s + 2.0 * s2)
    return p, dp, ddp


@dataclass(frozen=True)
class Motion:
    """Joint state at the requested sample times."""

    q: np.ndarray  # (n, 6) rad
    qd: np.ndarray  # (n, 6) rad/s
    qdd: np.ndarray  # (n, 6) rad/s²
    cycle: np.ndarray  # (n,) int64 cycle index


class Trajectory:
    """Segment table of the scheduled cycles, extended lazily as later times are asked for."""

    def __init__(self, config: SimulationConfig) -> None:
        self._config = config
        pattern: list[int] = []
        for program_id, n_cycles in config.schedule:
            pattern += [program_id] * n_cycles
        self._pattern = tuple(pattern)
        self._seg_t0: list[float] = []
        self._seg_dur: list[float] = []
        self._seg_q0: list[tuple[float, ...]] = []
        self._seg_q1: list[tuple[float, ...]] = []
        self._seg_cycle: list[int] = []
        self._cycle_t0: list[float] = []
        self._cycle_program: list[int] = []
        self._end = 0.0
        self._arrays: dict[str, np.ndarray] = {}

    def ensure(self, t_end: float) -> None:
        """Make sure cycles cover times up to ``t_end`` (inclusive)."""
        grew = False
        if self._end <= t_end:
            t_end += LOOKAHEAD_S  # grow in steps: the arrays are rebuilt once per step
        while self._end <= t_end:
            self._append_cycle()
            grew = True
        if grew or not self._arrays:
            self._arrays = {
                "t0": np.asarray(self._seg_t0),
                "dur": np.asarray(self._seg_dur),
                "q0": np.asarray(self._seg_q0).reshape(-1, N_AXES),
                "dq": (np.asarray(self._seg_q1) - np.asarray(self._seg_q0)).reshape(-1, N_AXES),
                "cycle": np.asarray(self._seg_cycle, dtype=np.int64),
                "cycle_t0": np.asarray(self._cycle_t0),
                "cycle_program": np.asarray(self._cycle_program, dtype=np.uint8),
            }

    def _append_cycle(self) -> None:
        index = len(self._cycle_t0)
        program = program_by_id(self._pattern[index % len(self._pattern)])
        scale = 1.0
        if self._config.speed_override:
            u = float(uniform(self._config.seed, STREAM_SPEED, np.array([index]))[0])
            scale = 1.0 + SPEED_OVERRIDE_SPAN * (2.0 * u - 1.0)
        self._cycle_t0.append(self._end)
        self._cycle_program.append(program.program_id)
        position = HOME
        t = self._end
        for move in program.moves:
            for target, duration in ((move.target, move.duration_s), (move.target, move.dwell_s)):
                self._seg_t0.append(t)
                self._seg_dur.append(duration * scale)
                self._seg_q0.append(position)
                self._seg_q1.append(target)
                self._seg_cycle.append(index)
                position = target
                t += duration * scale
        self._end = t

    @property
    def cycle_t0(self) -> np.ndarray:
        return self._arrays["cycle_t0"]

    @property
    def cycle_program(self) -> np.ndarray:
        return self._arrays["cycle_program"]

    def cycle_of(self, t: np.ndarray) -> np.ndarray:
        """Cycle index containing each time."""
        self.ensure(float(np.max(t)))
        return np.searchsorted(self._arrays["cycle_t0"], t, side="right") - 1

    def motion(self, t: np.ndarray) -> Motion:
        self.ensure(float(np.max(t)))
        a = self._arrays
        seg = np.searchsorted(a["t0"], t, side="right") - 1
        dur = a["dur"][seg]
        s = np.clip((t - a["t0"][seg]) / dur, 0.0, 1.0)
        p, dp, ddp = quintic(s)
        dq = a["dq"][seg]
        q = a["q0"][seg] + dq * p[:, None]
        qd = dq * (dp / dur)[:, None]
        qdd = dq * (ddp / (dur * dur))[:, None]
        return Motion(q=q, qd=qd, qdd=qdd, cycle=a["cycle"][seg])
