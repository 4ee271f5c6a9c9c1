"""`rapp-agent`: the edge agent's command line (score offline; run the daemon; demo)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import __version__
from agent.config import AgentConfig
from agent.core.backends import BACKEND_NAMES
from agent.core.bundle import load_bundle
from agent.core.errors import AgentError
from agent.core.errors import exit_code as agent_exit_code
from agent.core.scoring import open_scorer
from agent.ota.hooks import OtaHooks
from firmware_config.errors import FirmwareError
from firmware_config.errors import exit_code as firmware_exit_code

EXIT_FAILED = 1
EXIT_USAGE = 2


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rapp-agent", description=__doc__)
    ap.add_argument("--version", action="version", version=f"rapp-agent {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="score a recorded CSV through the live code path")
    p.add_argument("--bundle", required=True, type=Path, help="model bundle (.rapp)")
    p.add_argument("--input", required=True, type=Path, help="recording CSV")
    p.add_argument("--out", required=True, type=Path, help="per-window scores CSV")
    p.add_argument("--backend", choices=BACKEND_NAMES, default="auto")
    p.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    p = sub.add_parser("run", help="run the agent daemon (systemd: Type=notify)")
    p.add_argument("--config", required=True, type=Path, help="agent.toml")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    p = sub.add_parser("models", help="list installed (over-the-air) bundles per robot")
    p.add_argument("--config", required=True, type=Path, help="agent.toml")
    p = sub.add_parser("rollback", help="go back to the previous bundle (restart to apply)")
    p.add_argument("--config", required=True, type=Path, help="agent.toml")
    p.add_argument("--robot", help="robot id (default: the only robot with installed bundles)")
    p.add_argument("--bundle-id", help="bundle id (default: the robot's only installed one)")
    p = sub.add_parser("demo", help="simulator → serial pty → agent → alarms, live")
    p.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--fault", default="friction:J2", help="KIND:AXIS[:onset=S…], mid-run")
    p.add_argument("--mqtt", help="HOST:PORT of a broker (default: start mosquitto if installed)")
    p.add_argument("--no-broker", action="store_true", help="do not start a local mosquitto")
    p.add_argument("--out", type=Path, default=Path("rapp-demo.png"), help="plot file")
    p.add_argument("--seed", type=int, default=7)
    return ap


def cmd_demo(args: argparse.Namespace) -> int:
    import logging

    from agent.demo import run_demo

    logging.basicConfig(level="ERROR")
    return run_demo(
        duration=args.duration,
        fault=args.fault,
        mqtt=args.mqtt,
        use_broker=not args.no_broker,
        out=args.out,
        seed=args.seed,
    )


def cmd_run(args: argparse.Namespace) -> int:
    return run_daemon(args.config, check=args.check)


def run_daemon(config_path: Path, check: bool = False, ota_hooks: OtaHooks | None = None) -> int:
    """`rapp-agent run`: validate the config, then run the daemon until SIGTERM/SIGINT.

    SIGHUP reloads: the new config is validated first (every preflight check); if it is bad
    the running agent keeps serving and the problems are logged; if it is good the agent
    drains, stops and starts again with it (RELOADING=1 … READY=1 for systemd). SIGUSR1 and
    SIGUSR2 are ignored, so a stray `kill -USR1` cannot end the agent without draining.
    ``ota_hooks`` is for test launchers only (tests/support/failpoint_agent.py)."""
    import logging
    import signal

    from agent.daemon import Agent

    config = _validated(config_path)
    logging.basicConfig(
        level=config.agent.log_level.upper(),
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
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
            agent = Agent(new, ota_hooks=ota_hooks)
            agent.start()
            log.info("reloaded %s", config_path)
    finally:
        agent.stop()
    return 0


def _validated(config_path: Path) -> AgentConfig:
    """Load and preflight the config; every problem in one ConfigError."""
    from agent.config import load_config
    from agent.core.errors import ConfigError
    from agent.preflight import preflight

    config = load_config(config_path)
    problems = preflight(config)
    if problems:
        listed = "\n  - ".join(problems)
        raise ConfigError(f"{config_path}: {len(problems)} problem(s):\n  - {listed}")
    return config


def cmd_score(args: argparse.Namespace) -> int:
    from agent.offline import score_recording, write_scores

    bundle = load_bundle(args.bundle)
    scorer = open_scorer(bundle, args.backend, args.precision)
    result = score_recording(scorer, args.input)
    write_scores(args.out, result)
    above = sum(int(r["above"]) for r in result.rows)
    print(
        f"{len(result.rows)} windows scored with {scorer.artifact.id} on {scorer.backend.name}; "
        f"{above} above the {bundle.manifest.alarm.score} threshold, {result.alarms_raised} "
        f"alarm(s) raised; skipped {result.skipped}; wrote {args.out}"
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.ota.admin import list_models

    config = load_config(args.config)
    print(list_models(config.agent.state_dir, {r.id: r.bundles for r in config.robots}))
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
    "demo": cmd_demo,
    "models": cmd_models,
    "rollback": cmd_rollback,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (AgentError, FirmwareError) as err:
        # Bad input or configuration exits 2; the unit's RestartPreventExitStatus=2 keeps
        # systemd from restarting into the same error.
        code = agent_exit_code(err) if isinstance(err, AgentError) else firmware_exit_code(err)
        configured = args.command in ("run", "models", "rollback")
        what = ("configuration error: " if configured else "bad input: ") if code == 2 else ""
        print(f"rapp-agent {args.command}: {what}{err}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
