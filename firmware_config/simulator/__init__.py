"""Simulated 6-axis arm: labelled motor currents for tests, training data and the emulator.

Public API::

    from firmware_config.simulator import SimulationConfig, FaultSpec, simulate
    run = simulate(SimulationConfig(seed=1, duration_s=600,
                                    faults=(FaultSpec("friction", axis=2, onset_s=300),)))
    run.currents  # (T, 6) float32 amps, noise and ADC quantization included
"""

from firmware_config.simulator.arm import ArmParameters
from firmware_config.simulator.config import (
    FAULT_KINDS,
    FAULT_LABELS,
    PROGRAM_IDS,
    FaultSpec,
    SimulationConfig,
    SimulationError,
    parse_fault,
    parse_schedule,
)
from firmware_config.simulator.core import SimulatedRun, Simulator, concatenate, simulate
from firmware_config.simulator.export import csv_header, run_to_frames, write_csv
from firmware_config.simulator.programs import PROGRAMS, Program, program_by_id

__all__ = [
    "FAULT_KINDS",
    "FAULT_LABELS",
    "PROGRAMS",
    "PROGRAM_IDS",
    "ArmParameters",
    "FaultSpec",
    "Program",
    "SimulatedRun",
    "SimulationConfig",
    "SimulationError",
    "Simulator",
    "concatenate",
    "csv_header",
    "parse_fault",
    "parse_schedule",
    "program_by_id",
    "run_to_frames",
    "simulate",
    "write_csv",
]
