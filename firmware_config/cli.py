"""``rapp-firmware``: the firmware side of rapp-edge from the command line (see
:data:`DESCRIPTION`; exit status 0 success, 1 runtime failure, 2 bad input or configuration)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from firmware_config.channel_map import (
    ChannelMap,
    builtin_map_path,
    load_channel_map,
)
from firmware_config.cheader import generate_header
from firmware_config.cli_conventions import (
    EXIT_FAILURE,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_STATUS_EPILOG,
    CliParser,
    add_logging_flags,
    add_version_flag,
    configure_logging,
    describe_subcommands,
    distribution_version,
    report_error,
)
from firmware_config.emulator import (
    DEFAULT_FRAMES_PER_MESSAGE,
    Emulator,
    FrameSource,
    Impairments,
)
from firmware_config.errors import FirmwareError, exit_code
from firmware_config.golden import FILES, check_golden, write_golden
from firmware_config.simulator import (
    SimulationConfig,
    SimulationError,
    Simulator,
    parse_fault,
    parse_schedule,
    write_csv,
)

PROG = "rapp-firmware"
EXIT_OK = 0
CSV_CHUNK_SAMPLES = 60_000
# The vectors live in the repository next to the C tests, not in the package; resolved from
# this file, so `golden --check` finds them from any working directory of a checkout.
DEFAULT_GOLDEN_DIR = Path(__file__).resolve().parent.parent / "tests" / "golden" / "frames"
DEFAULT_LEVEL = "warning"

DESCRIPTION = (
    "The firmware side of rapp-edge: the C header of a channel map, simulated currents as a "
    "recording, a firmware emulator on a serial port, and the golden codec vectors."
)
DESCRIPTIONS = {
    "header": "Write the C header of a channel map: protocol constants, frame layout, the "
    "channel table and the schema hash the firmware sends in its HELLO frame.",
    "simulate": "Simulate the six-axis arm's motor currents (programs, nuisances, injected "
    "faults) and write them as a labelled recording CSV that `rapp-agent score` and "
    "`rapp-export train` read.",
    "emulate": "Stream simulated frames to a serial device (or a pyserial URL) as the "
    "acquisition firmware would, optionally with garbage bursts, bit flips and dropped frames.",
    "golden": "Regenerate the golden codec vectors (frames, COBS, CRC) that the Python and C "
    "codecs are tested against, or with --check only compare them with the codec.",
}


def _add_map(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--map",
        type=Path,
        help="channel map TOML (default: the built-in six_axis_arm map)",
    )


def _add_simulation(parser: argparse.ArgumentParser, duration: float | None) -> None:
    parser.add_argument(
        "--duration",
        type=float,
        default=duration,
        help="seconds to simulate" + ("" if duration else " (default: endless)"),
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--program",
        action="append",
        metavar="ID[:N]",
        help="program schedule entry, repeatable: 1, 2:10 … (default: program 1 only)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="KIND:AXIS[:onset=S][:severity=X][:duration=S][:ramp=S][:mode=M], repeatable; "
        "kinds: friction backlash collision payload ripple sensor (default: none)",
    )
    parser.add_argument(
        "--no-nuisances",
        action="store_true",
        help="disable warm-up drift, payload variation and speed override",
    )


def _add_emulate(sub: argparse._SubParsersAction) -> None:
    emulate = sub.add_parser("emulate", help="stream simulated frames to a serial device")
    _add_map(emulate)
    _add_simulation(emulate, duration=None)
    emulate.add_argument("--port", required=True, help="serial device or pyserial URL")
    emulate.add_argument(
        "--speed", type=float, default=1.0, help="1.0 = real time, 0 = as fast as possible"
    )
    emulate.add_argument(
        "--garbage", type=float, default=0.0, help="probability of a garbage burst per frame"
    )
    emulate.add_argument(
        "--bitflip", type=float, default=0.0, help="probability of a bit flip per frame"
    )
    emulate.add_argument("--drop", type=float, default=0.0, help="probability of dropping a frame")
    emulate.add_argument(
        "--frames-per-message",
        type=int,
        default=DEFAULT_FRAMES_PER_MESSAGE,
        help="frames written at once (a receiver decodes a write as one batch)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog=PROG, description=DESCRIPTION, epilog=EXIT_STATUS_EPILOG)
    add_version_flag(parser, PROG, distribution_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    header = sub.add_parser("header", help="generate the C header for a channel map")
    _add_map(header)
    header.add_argument("--out", type=Path, help="output file (default: stdout)")

    simulate = sub.add_parser("simulate", help="write simulated currents as a recording CSV")
    _add_map(simulate)
    _add_simulation(simulate, duration=600.0)
    simulate.add_argument("--rate", type=int, help="sample rate in Hz (default: the map's)")
    simulate.add_argument("--out", type=Path, required=True, help="output CSV file")

    _add_emulate(sub)

    golden = sub.add_parser("golden", help="regenerate (or --check) the golden codec vectors")
    golden.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_GOLDEN_DIR,
        help="directory of the vectors (default: tests/golden/frames of this checkout)",
    )
    golden.add_argument(
        "--check",
        action="store_true",
        help="only compare: exit 1 if a file is missing or out of date, 2 if the directory "
        "holds none of them",
    )
    describe_subcommands(parser, DESCRIPTIONS)
    add_logging_flags(parser, default=DEFAULT_LEVEL)
    return parser


def _load_map(path: Path | None) -> tuple[ChannelMap, Path]:
    resolved = path if path is not None else builtin_map_path()
    return load_channel_map(resolved), resolved


def _simulation(args: argparse.Namespace, rate: int) -> SimulationConfig:
    nuisances = not args.no_nuisances
    return SimulationConfig(
        seed=args.seed,
        duration_s=args.duration,
        sample_rate_hz=rate,
        schedule=parse_schedule(args.program or ["1"]),
        faults=tuple(parse_fault(text) for text in args.fault),
        warmup=nuisances,
        payload_variation=nuisances,
        speed_override=nuisances,
    )


def _cmd_header(args: argparse.Namespace) -> int:
    channel_map, path = _load_map(args.map)
    text = generate_header(channel_map, source=path.name)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out} (schema hash {channel_map.schema_hash:#06x})", file=sys.stderr)
    return EXIT_OK


def _cmd_simulate(args: argparse.Namespace) -> int:
    channel_map, _ = _load_map(args.map)
    config = _simulation(args, args.rate or channel_map.sample_rate_hz)
    if config.duration_s is None:
        raise SimulationError("--duration is required for simulate")
    simulator = Simulator(config, channel_map)
    rows = write_csv(simulator.chunks(CSV_CHUNK_SAMPLES), args.out, channel_map)
    print(f"wrote {rows} samples to {args.out}", file=sys.stderr)
    return EXIT_OK


def _cmd_emulate(args: argparse.Namespace) -> int:
    channel_map, _ = _load_map(args.map)
    config = _simulation(args, channel_map.sample_rate_hz)
    impairments = Impairments(
        garbage_rate=args.garbage, bitflip_rate=args.bitflip, drop_rate=args.drop, seed=args.seed
    )
    emulator = Emulator(
        args.port,
        FrameSource(config, channel_map, impairments),
        speed=args.speed,
        frames_per_message=args.frames_per_message,
    )
    try:
        stats = emulator.run()
    except KeyboardInterrupt:
        emulator.stop_event.set()
        stats = emulator.stats
    print(f"emulator finished: {stats}", file=sys.stderr)
    return EXIT_OK


def _check_golden(directory: Path, channel_map: ChannelMap) -> int:
    missing = [name for name in FILES if not (directory / name).is_file()]
    if len(missing) == len(FILES):
        print(
            f"{PROG} golden: bad input: no golden files in {directory} (expected "
            f"{', '.join(FILES)}); point --out at the directory that holds them, or write "
            f"them with `{PROG} golden --out {directory}`",
            file=sys.stderr,
        )
        return EXIT_INPUT
    stale = [name for name in check_golden(directory, channel_map) if name not in missing]
    if missing or stale:
        problems = [f"missing {', '.join(missing)}"] * bool(missing)
        problems += [f"out of date {', '.join(stale)}"] * bool(stale)
        print(
            f"{PROG} golden: golden files in {directory}: {'; '.join(problems)}; if the codec "
            f"change is intended, run `{PROG} golden --out {directory}` and review the diff",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(f"golden files in {directory} are current", file=sys.stderr)
    return EXIT_OK


def _cmd_golden(args: argparse.Namespace) -> int:
    channel_map, _ = _load_map(None)
    if args.check:
        return _check_golden(args.out, channel_map)
    for path in write_golden(args.out, channel_map):
        print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


COMMANDS = {
    "header": _cmd_header,
    "simulate": _cmd_simulate,
    "emulate": _cmd_emulate,
    "golden": _cmd_golden,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level or DEFAULT_LEVEL)
    try:
        return COMMANDS[args.command](args)
    except FirmwareError as err:
        report_error(PROG, args.command, err, exit_code(err))
        return exit_code(err)
    except OSError as err:
        report_error(PROG, args.command, err, EXIT_FAILURE)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
