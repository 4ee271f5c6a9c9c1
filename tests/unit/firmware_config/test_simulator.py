"""Simulator: determinism, realistic magnitudes, cycles, programs and every fault kind."""

from __future__ import annotations

import csv
import hashlib
import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_config.channel_map import ChannelMap
from firmware_config.cli import main as firmware_main
from firmware_config.simulator import (
    FAULT_KINDS,
    FAULT_LABELS,
    PROGRAMS,
    FaultSpec,
    SimulatedRun,
    SimulationConfig,
    SimulationError,
    Simulator,
    concatenate,
    parse_fault,
    parse_schedule,
    program_by_id,
    run_to_frames,
    simulate,
    write_csv,
)
from firmware_config.simulator.arm import ArmParameters

RATED = ArmParameters().rated


def rms(values: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(values.astype(np.float64) ** 2, axis=0))


def cycle_grid(values: np.ndarray, cycle_start: np.ndarray, length: int) -> np.ndarray:
    """Each whole cycle of one channel on ``length`` points (linear point sampling over the
    cycle's span, as the agent's cycle segmentation resamples), (n_cycles, length)."""
    starts = np.flatnonzero(cycle_start)
    grid = np.linspace(0.0, 1.0, length)
    return np.stack(
        [
            np.interp(grid, np.linspace(0.0, 1.0, b - a), values[a:b].astype(np.float64))
            for a, b in itertools.pairwise(starts.tolist())
        ]
    )


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    config = SimulationConfig(seed=5, duration_s=20)
    a, b = simulate(config), simulate(config)
    assert np.array_equal(a.raw, b.raw)
    assert np.array_equal(a.cycle_start, b.cycle_start)
    c = simulate(SimulationConfig(seed=6, duration_s=20))
    assert not np.array_equal(a.raw, c.raw)


def test_chunking_does_not_change_a_single_sample() -> None:
    faults = (
        FaultSpec("backlash", 2, 3.0),
        FaultSpec("backlash", 1, 2.5),
        FaultSpec("sensor", 4, 7.3),
        FaultSpec("friction", 3, 2.0, ramp_s=5),
    )
    config = SimulationConfig(seed=3, duration_s=12, schedule=((1, 1), (3, 1)), faults=faults)
    whole = simulate(config)
    simulator = Simulator(config)
    sizes = [1, 999, 4321, 17, 2662, 4000]
    parts, position = [], 0
    for size in sizes:
        parts.append(simulator.chunk(position, size))
        position += size
    joined = concatenate(parts)
    for field in ("raw", "cycle_start", "program_id", "fault", "fault_axis", "time_s"):
        assert np.array_equal(getattr(joined, field), getattr(whole, field)), field


def test_shapes_types_and_units(six_axis_map: ChannelMap) -> None:
    run = simulate(SimulationConfig(duration_s=5))
    assert run.n_samples == 5000
    assert run.channels == six_axis_map.names
    assert run.time_s.dtype == np.float64 and run.time_s[1] == pytest.approx(0.001)
    assert run.currents.dtype == np.float32 and run.currents.shape == (5000, 6)
    assert run.raw.dtype == np.int16
    assert run.cycle_start.dtype == bool
    assert run.program_id.dtype == np.uint8
    assert run.fault.dtype == np.int8 and run.fault_axis.dtype == np.int8
    assert np.array_equal(run.currents, six_axis_map.to_physical(run.raw))  # quantized


def test_ten_minutes_simulate_fast() -> None:
    """CPU time of this process, so a busy CI machine does not make the test flaky."""
    config = SimulationConfig(seed=1, duration_s=600, faults=(FaultSpec("ripple", 2, 100.0),))
    start = time.process_time()
    run = simulate(config)
    used = time.process_time() - start
    assert run.n_samples == 600_000
    assert used < 2.0, f"10 min at 1 kHz × 6 channels took {used:.2f} s of CPU"


@pytest.mark.parametrize("program", [1, 2, 3])
def test_shoulder_and_elbow_dominate_the_wrists(program: int) -> None:
    run = simulate(SimulationConfig(seed=2, duration_s=60, schedule=((program, 1),)))
    level = rms(run.currents)
    ratio = level[1:3].mean() / level[3:].mean()
    assert 10 <= ratio <= 30, f"program {program}: ratio {ratio:.1f}, rms {level.round(2)}"
    assert level[1:3].min() > 4 * level[3:].max()
    peak = np.abs(run.currents).max(axis=0)
    assert 12 <= peak[1] <= 26  # shoulder up to ~20 A
    assert (peak[3:] >= 0.3).all() and (peak[3:] <= 2.6).all()  # wrists ~0.5–2 A


def test_cycles_are_marked_and_programs_follow_the_schedule() -> None:
    config = SimulationConfig(seed=4, duration_s=90, schedule=((1, 2), (2, 1), (3, 1)))
    run = simulate(config)
    starts = np.flatnonzero(run.cycle_start)
    assert starts[0] == 0
    programs = [int(run.program_id[i]) for i in starts]
    assert programs[:8] == [1, 1, 2, 3, 1, 1, 2, 3]
    lengths = np.diff(starts) / 1000.0
    for program, length in zip(programs, lengths, strict=False):
        nominal = program_by_id(program).nominal_cycle_s
        assert 0.94 * nominal <= length <= 1.06 * nominal  # speed override ±5 %
    for a, b in itertools.pairwise(starts):  # one program per cycle
        assert len(set(run.program_id[a:b].tolist())) == 1


def test_three_programs_differ() -> None:
    assert len(PROGRAMS) >= 3
    assert [p.program_id for p in PROGRAMS][:3] == [1, 2, 3]
    profiles = []
    for program in (1, 2, 3):
        run = simulate(
            SimulationConfig(seed=0, duration_s=12, schedule=((program, 1),), speed_override=False)
        )
        first = np.flatnonzero(run.cycle_start)
        assert (run.program_id == program).all()
        profiles.append((first[1] - first[0], rms(run.currents)))
    lengths = [p[0] for p in profiles]
    assert len(set(lengths)) == 3
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(profiles[i][1] - profiles[j][1]).max() > 0.2


def test_warmup_makes_friction_drop_over_time() -> None:
    run = simulate(SimulationConfig(seed=1, duration_s=600, schedule=((1, 1),)))
    early = rms(run.currents[:60_000])[0]
    late = rms(run.currents[-60_000:])[0]
    assert early > 1.03 * late  # base axis is friction/inertia dominated
    steady = simulate(SimulationConfig(seed=1, duration_s=600, schedule=((1, 1),), warmup=False))
    assert rms(steady.currents[:60_000])[0] < early


def test_nuisances_vary_cycles_but_can_be_turned_off() -> None:
    def cycle_lengths(config: SimulationConfig) -> set[int]:
        return set(np.diff(np.flatnonzero(simulate(config).cycle_start)).tolist())

    assert len(cycle_lengths(SimulationConfig(seed=1, duration_s=40))) > 3
    calm = SimulationConfig(seed=1, duration_s=40, speed_override=False, payload_variation=False)
    nominal = round(program_by_id(1).nominal_cycle_s * 1000)
    assert cycle_lengths(calm) <= {nominal - 1, nominal, nominal + 1}  # rounding to samples


ONSET = 20.0
# Backlash shows only where the joint torque changes sign (the gravity-loaded J2/J5 never do:
# test_backlash_is_invisible_where_the_torque_never_reverses), so its cases are J1 and J6.
FAULT_CASES = [
    (kind, axis) for kind in FAULT_KINDS for axis in ((1, 6) if kind == "backlash" else (2, 5))
]


@pytest.mark.parametrize(("kind", "axis"), FAULT_CASES)
def test_each_fault_changes_its_axis_after_onset_only(kind: str, axis: int) -> None:
    base = SimulationConfig(seed=9, duration_s=45, schedule=((1, 1), (3, 1)))
    fault = FaultSpec(kind, axis, ONSET, ramp_s=10)
    faulty = SimulationConfig(seed=9, duration_s=45, schedule=((1, 1), (3, 1)), faults=(fault,))
    normal, run = simulate(base), simulate(faulty)
    onset = int(ONSET * 1000)
    column = axis - 1
    assert np.array_equal(run.raw[:onset], normal.raw[:onset]), "changed before onset"
    diff = run.currents[onset:].astype(np.float64) - normal.currents[onset:]
    if kind == "payload":
        assert rms(diff)[1] > 0.3 and rms(diff)[2] > 0.3  # shoulder and elbow carry it
    else:
        others = [c for c in range(6) if c != column]
        assert np.array_equal(run.raw[:, others], normal.raw[:, others]), "other axes changed"
    effect = np.abs(diff[:, column]).max()
    assert effect > 0.05 * RATED[column], f"{kind} on J{axis}: max change {effect:.3f} A"
    if kind == "sensor":
        assert np.ptp(run.raw[onset:, column]) == 0  # stuck: one value
        assert run.raw[onset, column] == normal.raw[onset - 1, column]
    labelled = run.fault != 0
    end = onset + 100 if kind == "collision" else run.n_samples
    assert not labelled[:onset].any()
    assert labelled[onset:end].all()
    assert not labelled[end:].any()
    assert (run.fault[labelled] == FAULT_LABELS.index(kind)).all()
    assert (run.fault_axis[labelled] == axis).all()
    assert (run.fault_axis[~labelled] == -1).all()
    assert set(run.fault_labels()[labelled]) == {kind}


def test_sensor_dropout_reads_zero_and_friction_grows() -> None:
    config = SimulationConfig(
        seed=1,
        duration_s=40,
        faults=(
            FaultSpec("sensor", 6, 10.0, mode="dropout", duration_s=5),
            FaultSpec("friction", 1, 10.0, severity=2.0, ramp_s=20),
        ),
    )
    run = simulate(config)
    assert (run.raw[10_000:15_000, 5] == 0).all()
    assert (run.raw[15_000:, 5] != 0).any()
    normal = simulate(SimulationConfig(seed=1, duration_s=40))
    growth = np.abs(run.currents[:, 0] - normal.currents[:, 0])
    assert growth[12_000:16_000].mean() < growth[30_000:34_000].mean()


# sha256 of `rapp-firmware simulate` CSVs: fault-free output is what the shipped default model
# (scripts/build_default_bundle.sh) and every golden figure were made from, so it must not move.
GOLDEN_CSV_SHA256 = {
    ("--seed", "1", "--duration", "60"): (
        "ed2304eee1dc212c61d17d47a0e5ef1305d0aa9e1afa6321d9e5c98047a659a8"
    ),
    ("--seed", "1", "--duration", "60", "--program", "3"): (
        "b9a481c19be622a9b4317ed221a6cd2064be71128368eae728aa6dcd53a4dfc0"
    ),
    ("--seed", "3", "--duration", "30", "--no-nuisances"): (
        "69b40b1f87e47822d82da8ba2374b8b44f14a1355e055c5f5861fcde064aecfd"
    ),
}


@pytest.mark.parametrize("args", list(GOLDEN_CSV_SHA256))
def test_fault_free_output_is_bit_identical_to_the_golden_hash(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    out = tmp_path / "run.csv"
    assert firmware_main(["simulate", *args, "--out", str(out), "-q"]) == 0
    assert hashlib.sha256(out.read_bytes()).hexdigest() == GOLDEN_CSV_SHA256[args]


def backlash_twins(
    seed: int, axis: int, severity: float = 1.0, noise: bool = True
) -> tuple[SimulatedRun, SimulatedRun]:
    """A normal 120 s run and the same run with backlash on ``axis`` from t = 0 (nuisances on)."""
    fault = FaultSpec("backlash", axis, 0.0, severity=severity)
    normal = simulate(SimulationConfig(seed=seed, duration_s=120, noise=noise))
    return normal, simulate(
        SimulationConfig(seed=seed, duration_s=120, noise=noise, faults=(fault,))
    )


def test_backlash_transient_at_torque_reversals_exceeds_normal_variation() -> None:
    """Dead zone then a ring at the drive train's mode, each cycle, well above the spread of
    normal cycles (warm-up drift, payload ±5 %, speed ±5 %), also on a 64-point cycle grid.

    Noise off, so the healthy current's sign changes mark the torque reversals exactly.
    """
    normal, run = backlash_twins(seed=5, axis=1, noise=False)
    healthy = normal.currents[:, 0].astype(np.float64)
    faulty = run.currents[:, 0].astype(np.float64)
    shift = faulty - healthy
    spread = rms(cycle_grid(healthy, normal.cycle_start, 4400).std(axis=0))
    starts = np.flatnonzero(normal.cycle_start)
    peaks = np.array([np.abs(shift[a:b]).max() for a, b in itertools.pairwise(starts.tolist())])
    assert peaks.min() > 10 * spread, f"{peaks.min():.2f} A vs normal spread {spread:.3f} A"
    # dead zone: just after a reversal the motor carries only its rotor, the current ≈ 0
    loaded = np.flatnonzero(np.abs(healthy) > 0.2)  # the 2 % preload band of J1, in amps
    flank = np.sign(healthy[loaded])
    reversals = loaded[1:][flank[1:] != flank[:-1]]
    assert 1.0 < len(reversals) / 120 < 3.0  # program 1: 1–2 torque reversals per second
    dead = np.median([np.abs(faulty[r + 3 : r + 20]).mean() for r in reversals])
    loaded_current = np.median([np.abs(healthy[r + 3 : r + 20]).mean() for r in reversals])
    assert dead < 0.25 * loaded_current
    # the ring sits at J1's first drive-train mode (12 Hz)
    spectrum = np.abs(np.fft.rfft(shift))
    frequency = np.fft.rfftfreq(shift.shape[0], 1.0 / normal.sample_rate_hz)
    assert 10.0 < frequency[np.argmax(spectrum[1:]) + 1] < 14.0
    # what the default recipe sees: cycles resampled to 64 points
    grid_normal = cycle_grid(healthy, normal.cycle_start, 64)
    grid_shift = cycle_grid(faulty, normal.cycle_start, 64) - grid_normal
    ratio = rms(grid_shift.ravel()) / rms((grid_normal - grid_normal.mean(axis=0)).ravel())
    assert ratio > 1.5, f"64-point shift {ratio:.2f}× the normal cycle-to-cycle spread"


@pytest.mark.parametrize("axis", [2, 3, 5])
@pytest.mark.parametrize("program", [1, 2, 3])
def test_backlash_is_invisible_where_the_torque_never_reverses(axis: int, program: int) -> None:
    """Gravity keeps these axes on one flank of the gap: the currents do not change at all
    (the fault is labelled all the same)."""
    base = SimulationConfig(seed=4, duration_s=30, schedule=((program, 1),))
    fault = FaultSpec("backlash", axis, 5.0)
    faulty = SimulationConfig(seed=4, duration_s=30, schedule=((program, 1),), faults=(fault,))
    normal, run = simulate(base), simulate(faulty)
    assert np.array_equal(run.raw, normal.raw)
    assert (run.fault[5000:] == FAULT_LABELS.index("backlash")).all()


def test_backlash_grows_with_severity() -> None:
    shifts = []
    for severity in (0.5, 1.0, 2.0):
        normal, run = backlash_twins(seed=2, axis=6, severity=severity)
        shifts.append(rms(run.currents[:, 5].astype(np.float64) - normal.currents[:, 5]))
    assert shifts[0] < shifts[1] < shifts[2]
    assert shifts[2] > 2.5 * shifts[0]


def test_backlash_streams_exactly_in_frame_sized_chunks() -> None:
    """The agent's simulator source pulls 10 samples at a time; the gap history must not
    depend on it."""
    faults = (FaultSpec("backlash", 1, 1.0), FaultSpec("backlash", 4, 2.0, severity=2.0))
    config = SimulationConfig(seed=8, duration_s=12, faults=faults)
    whole = simulate(config)
    streamed = concatenate(list(Simulator(config).chunks(10)))
    assert np.array_equal(streamed.raw, whole.raw)
    late = Simulator(config).chunk(9000, 1500)  # a fresh simulator, mid-run
    assert np.array_equal(late.raw, whole.raw[9000:10500])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("friction:J2:onset=60:severity=1.5", FaultSpec("friction", 2, 60.0, 1.5)),
        ("sensor:4:onset=1:mode=dropout", FaultSpec("sensor", 4, 1.0, mode="dropout")),
        ("collision:J3:duration=0.2", FaultSpec("collision", 3, 0.0, duration_s=0.2)),
        ("payload:j2:mode=gain:ramp=5", FaultSpec("payload", 2, 0.0, ramp_s=5.0, mode="gain")),
    ],
)
def test_parse_fault(text: str, expected: FaultSpec) -> None:
    assert parse_fault(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("friction", "expected KIND:AXIS"),
        ("wear:J2", "unknown; choose one of friction"),
        ("friction:J7", "must be 1–6"),
        ("friction:X2", "must be J1–J6"),
        ("friction:J2:onset=soon", "onset='soon' is not a number"),
        ("friction:J2:speed=2", "key in duration, mode, onset, ramp, severity"),
        ("friction:J2:severity=0", "severity 0.0: must be in (0, 10.0]"),
        ("sensor:J2:mode=flaky", "choose stuck or dropout"),
        ("ripple:J2:mode=stuck", "ripple takes no mode"),
    ],
)
def test_parse_fault_errors(text: str, message: str) -> None:
    with pytest.raises(SimulationError, match=message.replace("(", r"\(").replace("]", r"\]")):
        parse_fault(text)


def test_config_validation() -> None:
    assert parse_schedule(["1", "2:10"]) == ((1, 1), (2, 10))
    with pytest.raises(SimulationError, match="program 4: unknown"):
        SimulationConfig(schedule=((4, 1),))
    with pytest.raises(SimulationError, match="expected ID or ID:N_CYCLES"):
        parse_schedule(["x"])
    with pytest.raises(SimulationError, match="duration"):
        SimulationConfig(duration_s=-1)
    with pytest.raises(SimulationError, match="endless"):
        simulate(SimulationConfig(duration_s=None))


def test_endless_simulator_streams_chunks() -> None:
    chunks = Simulator(SimulationConfig(duration_s=None)).chunks(1000)
    first = [next(chunks) for _ in range(3)]
    assert [c.start_index for c in first] == [0, 1000, 2000]


def test_frames_carry_the_run(six_axis_map: ChannelMap) -> None:
    run = simulate(SimulationConfig(seed=1, duration_s=10))
    frames = run_to_frames(run, six_axis_map)
    assert len(frames) == 1000
    assert [f.seq for f in frames[:3]] == [0, 1, 2]
    assert frames[5].timestamp_us == 50_000
    assert np.array_equal(np.concatenate([f.samples for f in frames]), run.raw)
    mask = np.concatenate([f.cycle_mask() for f in frames])
    assert np.array_equal(mask, run.cycle_start)
    assert all(f.schema_hash == six_axis_map.schema_hash for f in frames)
    with pytest.raises(SimulationError, match="not whole frames"):
        run_to_frames(Simulator(SimulationConfig()).chunk(5, 100), six_axis_map)


def test_recording_csv_format(tmp_path: Path, six_axis_map: ChannelMap) -> None:
    config = SimulationConfig(seed=1, duration_s=3, faults=(FaultSpec("ripple", 3, 1.5),))
    run = simulate(config)
    path = tmp_path / "run.csv"
    assert write_csv([run], path, six_axis_map) == 3000
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [
        "time_s",
        "J1",
        "J2",
        "J3",
        "J4",
        "J5",
        "J6",
        "cycle_start",
        "program_id",
        "fault",
        "fault_axis",
    ]
    assert len(rows) == 3001
    assert rows[1][0] == "0.000000" and rows[1][7] == "1" and rows[1][8] == "1"
    assert rows[1][9:] == ["", ""]
    assert rows[1501][9:] == ["ripple", "3"]
    values = np.array([[float(v) for v in row[1:7]] for row in rows[1:]], dtype=np.float32)
    assert np.array_equal(values, run.currents)  # exact: counts × scale print exactly


def test_recording_csv_reads_with_the_agent_reader(
    tmp_path: Path, six_axis_map: ChannelMap
) -> None:
    recording = pytest.importorskip(
        "agent.core.recording", reason="agent.core.recording not present"
    )
    run = simulate(SimulationConfig(seed=1, duration_s=2, faults=(FaultSpec("payload", 2, 1.0),)))
    path = tmp_path / "run.csv"
    write_csv([run], path, six_axis_map)
    loaded = recording.read_recording(path, list(six_axis_map.names))
    assert np.array_equal(loaded.samples, run.currents)
    assert np.array_equal(loaded.cycle_start, run.cycle_start)
    assert list(loaded.labels[999:1001]) == ["", "payload"]
