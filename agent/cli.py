"""`rapp-agent`: the edge agent's command line (run the daemon; its status and installed
models; score a recording offline; the live demo).

Conventions shared with rapp-export and rapp-firmware (help with defaults, ``--version``,
``--log-level``/``-v``/``-q`` in any position, exit status 2 for bad input or configuration
and 1 for a runtime failure) live in :mod:`firmware_config.cli_conventions`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config import AgentConfig
from agent.core.backends import BACKEND_NAMES
from agent.core.errors import AgentError, ConfigError
from agent.core.errors import exit_code as agent_exit_code
from agent.install import add_install_unit_parser, run_install_unit
from agent.ota.hooks import OtaHooks
from firmware_config.cli_conventions import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_STATUS_EPILOG,
    CliParser,
    add_logging_flags,
    add_version_flag,
    configure_logging,
    describe_subcommands,
    report_error,
    subparsers,
)
from firmware_config.errors import FirmwareError
from firmware_config.errors import exit_code as firmware_exit_code

PROG = "rapp-agent"
DEFAULT_LEVEL = "warning"
STATUS_TIMEOUT_S = 3.0

DESCRIPTION = (
    "The rapp-edge agent: scores robot motor currents with RaPP autoencoder novelty scores "
    "and publishes alarms over MQTT."
)
DESCRIPTIONS = {
    "score": "Score a recorded CSV through the live code path (frame-sized chunks, streaming "
    "segmenter, scorer, alarm tracker) and write one row per window.",
    "run": "Run the agent daemon with a config file until SIGTERM/SIGINT (a systemd "
    "Type=notify service; SIGHUP reloads the config). --check only validates the config, "
    "with every preflight check, and exits.",
    "status": "Show what the agent last reported: by default its retained status, alarm "
    "states and OTA state on the broker of the config's [mqtt] table; with --state-dir or "
    "--local what it keeps on disk (queued messages, retained states, installed bundles).",
    "models": "List the bundles each robot of the config serves: the configured ones and "
    "those installed over the air (state, version, previous bundle, files).",
    "rollback": "Point a robot's over-the-air bundle back to the previous one; restart the "
    "agent to apply it.",
    "demo": "The whole chain live on this machine: simulated arm → serial pty → agent → "
    "alarms, with a fault injected mid-run; prints the broker address to subscribe to.",
}


def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score a recorded CSV through the live code path")
    p.add_argument("--bundle", required=True, type=Path, help="model bundle (.rapp)")
    p.add_argument("--input", required=True, type=Path, help="recording CSV")
    p.add_argument("--out", required=True, type=Path, help="per-window scores CSV to write")
    p.add_argument("--backend", choices=BACKEND_NAMES, default="auto", help="inference runtime")
    p.add_argument(
        "--precision",
        choices=["int8", "fp32"],
        default="int8",
        help="which of the bundle's artifacts to score with",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _add_admin(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="what the agent last reported (broker or state dir)")
    p.add_argument("--config", type=Path, help="agent.toml (its [mqtt] and [agent] tables)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--state-dir",
        type=Path,
        help="read this state directory instead of the broker (no --config needed)",
    )
    where.add_argument(
        "--local", action="store_true", help="read the config's [agent] state_dir, not the broker"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=STATUS_TIMEOUT_S,
        help="seconds to wait for the broker",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p = sub.add_parser("models", help="list installed (over-the-air) bundles per robot")
    p.add_argument("--config", required=True, type=Path, help="agent.toml")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p = sub.add_parser("rollback", help="go back to the previous bundle (restart to apply)")
    p.add_argument("--config", required=True, type=Path, help="agent.toml")
    p.add_argument("--robot", help="robot id (default: the only robot with installed bundles)")
    p.add_argument("--bundle-id", help="bundle id (default: the robot's only installed one)")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="simulator → serial pty → agent → alarms, live")
    p.add_argument("--duration", type=float, default=60.0, help="seconds to run")
    p.add_argument(
        "--fault",
        default="friction:J2",
        help="KIND:AXIS[:onset=S…] injected mid-run (onset: half the duration, if not given)",
    )
    p.add_argument("--mqtt", help="HOST:PORT of a broker (default: start mosquitto if installed)")
    p.add_argument("--no-broker", action="store_true", help="do not start a local mosquitto")
    p.add_argument("--out", type=Path, default=Path("rapp-demo.png"), help="plot file")
    p.add_argument("--seed", type=int, default=7, help="simulator seed")


def parser() -> argparse.ArgumentParser:
    ap = CliParser(prog=PROG, description=DESCRIPTION, epilog=EXIT_STATUS_EPILOG)
    add_version_flag(ap, PROG, __version__)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run the agent daemon (systemd: Type=notify)")
    p.add_argument("--config", required=True, type=Path, help="agent.toml")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    _add_admin(sub)
    _add_score(sub)
    _add_demo(sub)
    add_install_unit_parser(sub)
    describe_subcommands(ap, DESCRIPTIONS)
    add_logging_flags(ap, default=f"{DEFAULT_LEVEL}; for `run`, the config's log_level")
    return ap


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import run_demo

    configure_logging(args.log_level or "error")  # the live view is the demo's output
    return run_demo(
        duration=args.duration,
        fault=args.fault,
        mqtt=args.mqtt,
        use_broker=not args.no_broker,
        out=args.out,
        seed=args.seed,
    )


def cmd_run(args: argparse.Namespace) -> int:
    return run_daemon(args.config, check=args.check, log_level=args.log_level)


def run_daemon(
    config_path: Path,
    check: bool = False,
    ota_hooks: OtaHooks | None = None,
    log_level: str | None = None,
) -> int:
    """`rapp-agent run`: validate the config, then run the daemon until SIGTERM/SIGINT.

    SIGHUP reloads: the new config is validated first (every preflight check); if it is bad
    the running agent keeps serving and the problems are logged; if it is good the agent
    drains, stops and starts again with it (RELOADING=1 … READY=1 for systemd). SIGUSR1 and
    SIGUSR2 are ignored, so a stray `kill -USR1` cannot end the agent without draining.
    ``log_level`` (the command line's) overrides the config's ``log_level``.
    ``ota_hooks`` is for test launchers only (tests/support/failpoint_agent.py)."""
    import signal

    from agent.daemon import Agent

    # Configured before the preflight, which loads bundles and logs while it does.
    configure_logging(log_level or "info")
    config = _validated(config_path)
    configure_logging(log_level or config.agent.log_level)
    _log_config(config)
    if check:
        print(f"{config_path}: OK ({len(config.robots)} robot(s))")
        return 0
    agent = Agent(config, ota_hooks=ota_hooks)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: agent.request_reload())
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    log = logging.getLogger("agent")
    try:
        agent.start()
        while True:
            agent.run()
            if not agent.take_reload_request():
                break
            try:
                new = _validated(config_path)
            except AgentError as err:
                log.error("reload refused, still serving the previous configuration: %s", err)
                continue
            agent.stop(reloading=True)
            configure_logging(log_level or new.agent.log_level)
            _log_config(new)
            agent = Agent(new, ota_hooks=ota_hooks)
            agent.start()
            log.info("reloaded %s", config_path)
    finally:
        agent.stop()
    return 0


def _log_config(config: AgentConfig) -> None:
    """At debug level: what the validated config amounts to (one line per robot)."""
    log = logging.getLogger("agent.cli")
    if not log.isEnabledFor(logging.DEBUG):
        return
    a, mqtt = config.agent, config.mqtt
    broker = f"{mqtt.host}:{mqtt.port} (root {mqtt.topic_root})" if mqtt else "none"
    log.debug(
        "config %s: device %s, state_dir %s, backend %s, precision %s, %d thread(s), broker %s",
        config.source_path or "-", a.device_id, a.state_dir, a.backend, a.precision, a.threads,
        broker,
    )  # fmt: skip
    for robot in config.robots:
        log.debug(
            "robot %s: source %s, bundles %s", robot.id, robot.source.kind, ", ".join(robot.bundles)
        )


def _validated(config_path: Path) -> AgentConfig:
    """Load and preflight the config; every problem in one ConfigError."""
    from agent.config import load_config
    from agent.preflight import preflight

    config = load_config(config_path)
    problems = preflight(config)
    if problems:
        listed = "\n  - ".join(problems)
        raise ConfigError(f"{config_path}: {len(problems)} problem(s):\n  - {listed}")
    return config


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=1, ensure_ascii=False))


def cmd_score(args: argparse.Namespace) -> int:
    from agent.core.bundle import load_bundle
    from agent.core.scoring import open_scorer
    from agent.offline import not_scored, score_recording, write_scores
    from agent.progress import progress_bar

    bundle = load_bundle(args.bundle)
    scorer = open_scorer(bundle, args.backend, args.precision)
    with progress_bar(total=0, desc="scoring", unit="sample", quiet=args.quiet) as bar:
        result = score_recording(scorer, args.input, progress=bar.advance_to)
    write_scores(args.out, result)
    above = sum(int(r["above"]) for r in result.rows)
    summary = {
        "input": str(args.input),
        "out": str(args.out),
        "bundle": {
            "bundle_id": bundle.manifest.bundle_id,
            "version": bundle.manifest.bundle_version,
        },
        "artifact": scorer.artifact.id,
        "backend": scorer.backend.name,
        "score": bundle.manifest.alarm.score,
        "windows": len(result.rows),
        "above_threshold": above,
        "alarms_raised": result.alarms_raised,
        "segmenter": result.skipped,
    }
    if args.json:
        _print_json(summary)
        return 0
    print(
        f"{len(result.rows)} windows scored with {scorer.artifact.id} on {scorer.backend.name}; "
        f"{above} above the {bundle.manifest.alarm.score} threshold, {result.alarms_raised} "
        f"alarm(s) raised; {not_scored(result.skipped)}; wrote {args.out}"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.sinks.topics import Topics
    from agent.status_read import read_from_broker, read_from_state_dir
    from agent.status_table import format_status

    if args.state_dir is not None:
        status = read_from_state_dir(args.state_dir)
    else:
        config = load_config(args.config)
        if args.local or config.mqtt is None:
            status = read_from_state_dir(Path(config.agent.state_dir))
        else:
            topics = Topics.for_device(config.agent.device_id, config.mqtt.topic_root)
            status = read_from_broker(config.mqtt, topics, args.timeout)
    if args.json:
        _print_json(status.to_json())
    else:
        print(format_status(status))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.ota.admin import list_models, model_inventory

    config = load_config(args.config)
    robots = {r.id: r.bundles for r in config.robots}
    if args.json:
        _print_json(model_inventory(config.agent.state_dir, robots))
    else:
        print(list_models(config.agent.state_dir, robots))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.ota.admin import rollback

    config = load_config(args.config)
    print(rollback(config.agent.state_dir, args.robot, args.bundle_id))
    return 0


COMMANDS = {
    "score": cmd_score,
    "run": cmd_run,
    "status": cmd_status,
    "demo": cmd_demo,
    "models": cmd_models,
    "rollback": cmd_rollback,
    "install-unit": run_install_unit,
}


def _checked(ap: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    args = ap.parse_args(argv)
    if args.command == "status" and args.config is None and args.state_dir is None:
        status = dict(subparsers(ap))["status"]
        status.error("give --config (its broker; with --local its state_dir) or --state-dir DIR")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _checked(parser(), argv)
    configure_logging(args.log_level or DEFAULT_LEVEL)
    try:
        return COMMANDS[args.command](args)
    except (AgentError, FirmwareError) as err:
        # Bad input or configuration exits 2; the unit's RestartPreventExitStatus=2 keeps
        # systemd from restarting into the same error.
        code = agent_exit_code(err) if isinstance(err, AgentError) else firmware_exit_code(err)
        configured = args.command == "run" or isinstance(err, ConfigError)
        label = "configuration error" if configured else "bad input"
        report_error(PROG, args.command, err, code, label)
        return code
    except OSError as err:
        report_error(PROG, args.command, err, EXIT_FAILURE)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
