"""What to simulate: run length, program schedule, nuisances and labelled faults.

Severity is dimensionless; 1.0 means "clearly visible to a good detector but far from a
breakdown". Per kind (``axis`` is the joint the label names, 1–6):

- ``friction``  reducer wear: Coulomb + viscous friction of the axis grow linearly from onset
  to ``1 + severity`` times normal over ``ramp_s`` seconds, then stay there.
- ``backlash``  lost motion in the reducer: each time the axis' torque changes sign, a dead zone
  (the current drops to zero while the gap is crossed, 25–60 ms) then an impact that rings at
  the drive train's first mode (``0.3 × severity`` of the axis' rated current, 12–30 Hz,
  damping ratio 0.1); an axis whose torque never changes sign (gravity-loaded J2, J3, J5 in
  the programs) shows nothing. See :mod:`firmware_config.simulator.backlash`.
- ``collision`` a half-sine current impulse (``0.8 × severity`` of rated current) lasting
  ``duration_s`` (default 0.1 s); only the impulse is labelled.
- ``payload``   the payload changes at onset: ``mode="loss"`` (default) removes ``severity``
  of it (1.0 = workpiece dropped), ``mode="gain"`` adds ``severity`` of it. It acts on every
  axis through the dynamics (J2 and J3 most); ``axis`` only sets the label.
- ``ripple``    position-dependent torque ripple (bearing/commutation):
  ``0.06 × severity × rated × sin(12 q)`` on the axis.
- ``sensor``    the axis' channel is ``mode="stuck"`` (default, holds the last reading) or
  ``mode="dropout"`` (reads 0 counts). Severity is ignored.

Nuisances (on by default, they are *normal* behaviour, not faults): joints warming up from
cold (friction drops with a first-order thermal time constant), payload varying within spec
per cycle (±5 %), and a per-cycle speed override (±5 % time scaling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from firmware_config.errors import FirmwareInputError

FAULT_KINDS = ("friction", "backlash", "collision", "payload", "ripple", "sensor")
FAULT_LABELS = ("", *FAULT_KINDS)  # index = fault code in SimulatedRun.fault; 0 = normal
N_AXES = 6
PROGRAM_IDS = (1, 2, 3)
DEFAULT_COLLISION_S = 0.1
DEFAULT_RAMP_S = 60.0
MODES = {"sensor": ("stuck", "dropout"), "payload": ("loss", "gain")}
MAX_SEVERITY = 10.0


class SimulationError(FirmwareInputError):
    """A simulation request that cannot be run; the message says what to change."""


@dataclass(frozen=True)
class FaultSpec:
    """One labelled fault; see the module docstring for what each kind does."""

    kind: str
    axis: int
    onset_s: float
    severity: float = 1.0
    duration_s: float | None = None
    ramp_s: float = DEFAULT_RAMP_S
    mode: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise SimulationError(
                f"fault kind {self.kind!r}: unknown; choose one of {', '.join(FAULT_KINDS)}"
            )
        if isinstance(self.axis, bool) or not isinstance(self.axis, int):
            raise SimulationError(f"fault axis {self.axis!r}: must be an integer 1–{N_AXES}")
        if not 1 <= self.axis <= N_AXES:
            raise SimulationError(f"fault axis {self.axis}: must be 1–{N_AXES} (J1–J{N_AXES})")
        if not math.isfinite(self.onset_s) or self.onset_s < 0:
            raise SimulationError(f"fault onset {self.onset_s}: must be ≥ 0 seconds")
        if not math.isfinite(self.severity) or not 0 < self.severity <= MAX_SEVERITY:
            raise SimulationError(
                f"fault severity {self.severity}: must be in (0, {MAX_SEVERITY}]; 1.0 is typical"
            )
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise SimulationError(f"fault duration {self.duration_s}: must be > 0 seconds")
        if not math.isfinite(self.ramp_s) or self.ramp_s < 0:
            raise SimulationError(f"fault ramp {self.ramp_s}: must be ≥ 0 seconds")
        if self.kind in MODES:
            if self.mode not in ("", *MODES[self.kind]):
                raise SimulationError(
                    f"fault mode {self.mode!r} for {self.kind}: choose "
                    f"{' or '.join(MODES[self.kind])}"
                )
        elif self.mode:
            raise SimulationError(f"fault mode {self.mode!r}: {self.kind} takes no mode")

    @property
    def effective_mode(self) -> str:
        return self.mode or MODES.get(self.kind, ("",))[0]

    @property
    def end_s(self) -> float:
        """End of the labelled interval (inf when the fault persists)."""
        duration = self.duration_s
        if duration is None and self.kind == "collision":
            duration = DEFAULT_COLLISION_S
        return math.inf if duration is None else self.onset_s + duration

    @property
    def code(self) -> int:
        return FAULT_LABELS.index(self.kind)


@dataclass(frozen=True)
class SimulationConfig:
    """A deterministic simulation: the same config gives the same bytes, in any chunking.

    ``schedule`` is a list of ``(program_id, n_cycles)`` repeated until the run ends, e.g.
    ``((1, 10), (2, 10))`` alternates ten cycles of program 1 and ten of program 2.
    ``duration_s = None`` makes an endless run (use :meth:`Simulator.chunks`).
    """

    seed: int = 0
    duration_s: float | None = 600.0
    sample_rate_hz: int = 1000
    schedule: tuple[tuple[int, int], ...] = ((1, 1),)
    faults: tuple[FaultSpec, ...] = ()
    warmup: bool = True
    payload_variation: bool = True
    speed_override: bool = True
    noise: bool = True
    payload_kg: float = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise SimulationError(f"seed {self.seed!r}: must be an integer ≥ 0")
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise SimulationError(f"duration {self.duration_s}: must be > 0 seconds (or None)")
        if isinstance(self.sample_rate_hz, bool) or not isinstance(self.sample_rate_hz, int):
            raise SimulationError(f"sample rate {self.sample_rate_hz!r}: must be an integer Hz")
        if not 10 <= self.sample_rate_hz <= 100_000:
            raise SimulationError(f"sample rate {self.sample_rate_hz} Hz: must be 10–100000")
        if not self.schedule:
            raise SimulationError("schedule is empty; give at least one (program_id, n_cycles)")
        for program, cycles in self.schedule:
            if program not in PROGRAM_IDS:
                raise SimulationError(
                    f"program {program!r}: unknown; the simulated arm runs programs "
                    f"{', '.join(map(str, PROGRAM_IDS))}"
                )
            if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
                raise SimulationError(f"program {program}: n_cycles {cycles!r} must be ≥ 1")
        for fault in self.faults:
            if not isinstance(fault, FaultSpec):
                raise SimulationError(f"faults must be FaultSpec, got {type(fault).__name__}")
        if not math.isfinite(self.payload_kg) or not 0 <= self.payload_kg <= 20:
            raise SimulationError(f"payload {self.payload_kg} kg: must be 0–20 kg")

    @property
    def n_samples(self) -> int | None:
        if self.duration_s is None:
            return None
        return round(self.duration_s * self.sample_rate_hz)


def parse_fault(text: str) -> FaultSpec:
    """Parse ``KIND:AXIS[:key=value...]``, e.g. ``friction:J2:onset=60:severity=1.0``.

    Keys: ``onset`` (s, default 0), ``severity``, ``duration`` (s), ``ramp`` (s), ``mode``.
    """
    parts = [part.strip() for part in text.split(":")]
    if len(parts) < 2:
        raise SimulationError(
            f"fault {text!r}: expected KIND:AXIS[:key=value...], e.g. friction:J2:onset=60"
        )
    kind, axis_text, *options = parts
    axis_digits = axis_text[1:] if axis_text[:1] in ("J", "j") else axis_text
    if not axis_digits.isdigit():
        raise SimulationError(f"fault {text!r}: axis {axis_text!r} must be J1–J6 or 1–6")
    values: dict[str, str] = {}
    keys = {"onset", "severity", "duration", "ramp", "mode"}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key not in keys:
            raise SimulationError(
                f"fault {text!r}: option {option!r} must be key=value with key in "
                f"{', '.join(sorted(keys))}"
            )
        values[key] = value

    def number(key: str, default: float) -> float:
        if key not in values:
            return default
        try:
            return float(values[key])
        except ValueError:
            raise SimulationError(
                f"fault {text!r}: {key}={values[key]!r} is not a number"
            ) from None

    return FaultSpec(
        kind=kind,
        axis=int(axis_digits),
        onset_s=number("onset", 0.0),
        severity=number("severity", 1.0),
        duration_s=number("duration", math.nan) if "duration" in values else None,
        ramp_s=number("ramp", DEFAULT_RAMP_S),
        mode=values.get("mode", ""),
    )


def parse_schedule(items: list[str]) -> tuple[tuple[int, int], ...]:
    """Parse ``ID[:N_CYCLES]`` items (CLI ``--program``) into a schedule."""
    schedule = []
    for item in items:
        program, _, cycles = item.partition(":")
        try:
            schedule.append((int(program), int(cycles) if cycles else 1))
        except ValueError:
            raise SimulationError(
                f"program {item!r}: expected ID or ID:N_CYCLES, e.g. 2 or 2:10"
            ) from None
    return tuple(schedule)
