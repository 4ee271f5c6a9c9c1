"""``rapp-firmware``: the firmware side of rapp-edge from the command line.

Subcommands:

- ``header``   C header for a channel map (protocol constants, layout, channel table, hash);
- ``simulate`` labelled simulated currents as a recording CSV;
- ``emulate``  stream simulated frames to a serial device, optionally with line faults;
- ``golden``   regenerate (or ``--check``) the golden codec vectors.

Exit codes: 0 success, 1 runtime failure, 2 bad arguments or configuration.
"""

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
from firmware_config.emulator import (
    DEFAULT_FRAMES_PER_MESSAGE,
    Emulator,
    FrameSource,
    Impairments,
)
from firmware_config.errors import FirmwareError, exit_code
from firmware_config.golden import check_golden, write_golden
from firmware_config.simulator import (
    SimulationConfig,
    SimulationError,
    Simulator,
    parse_fault,
    parse_schedule,
    write_csv,
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
CSV_CHUNK_SAMPLES = 60_000
DEFAULT_GOLDEN_DIR = Path("tests/golden/frames")


def _add_map(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--map",
        type=Path,
        required=required,
        help="channel map TOML (default: the built-in six_axis_arm map)",
    )


def _add_simulation(parser: argparse.ArgumentParser, duration: float | None) -> None:
    parser.add_argument(
        "--duration",
        type=float,
        default=duration,
        help="seconds to simulate" + ("" if duration else " (default: endless)"),
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
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
        "kinds: friction backlash collision payload ripple sensor",
    )
    parser.add_argument(
        "--no-nuisances",
        action="store_true",
        help="disable warm-up drift, payload variation and speed override",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rapp-firmware", description="rapp-edge serial protocol tools"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    header = sub.add_parser("header", help="generate the C header for a channel map")
    _add_map(header, required=True)
    header.add_argument("--out", type=Path, help="output file (default: stdout)")

    simulate = sub.add_parser("simulate", help="write simulated currents as a recording CSV")
    _add_map(simulate)
    _add_simulation(simulate, duration=600.0)
    simulate.add_argument("--rate", type=int, help="sample rate in Hz (default: the map's)")
    simulate.add_argument("--out", type=Path, required=True, help="output CSV file")

    emulate = sub.add_parser("emulate", help="stream simulated frames to a serial device")
    _add_map(emulate)
    _add_simulation(emulate, duration=None)
    emulate.add_argument("--port", required=True, help="serial device or pyserial URL")
    emulate.add_argument(
        "--speed", type=float, default=1.0, help="1.0 = real time, 0 = as fast as possible"
    )
    emulate.add_argument("--garbage", type=float, default=0.0, help="garbage burst rate/frame")
    emulate.add_argument("--bitflip", type=float, default=0.0, help="bit flip rate/frame")
    emulate.add_argument("--drop", type=float, default=0.0, help="frame drop rate")
    emulate.add_argument(
        "--frames-per-message",
        type=int,
        default=DEFAULT_FRAMES_PER_MESSAGE,
        help="frames written at once (a receiver decodes a write as one batch)",
    )

    golden = sub.add_parser("golden", help="regenerate the golden codec vectors")
    golden.add_argument("--out", type=Path, default=DEFAULT_GOLDEN_DIR, help="directory")
    golden.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
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


def _cmd_golden(args: argparse.Namespace) -> int:
    channel_map, _ = _load_map(None)
    if args.check:
        stale = check_golden(args.out, channel_map)
        if stale:
            print(f"golden files out of date in {args.out}: {', '.join(stale)}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"golden files in {args.out} are current", file=sys.stderr)
        return EXIT_OK
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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return COMMANDS[args.command](args)
    except FirmwareError as err:
        print(f"rapp-firmware {args.command}: error: {err}", file=sys.stderr)
        return exit_code(err)
    except OSError as err:
        print(f"rapp-firmware {args.command}: error: {err}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
