"""`rapp-agent`: the edge agent's command line (score offline; run the daemon; demo)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import __version__
from agent.config import ConfigError
from agent.core.backends import BACKEND_NAMES, BackendError
from agent.core.bundle import BundleError, load_bundle
from agent.core.features import FeatureError
from agent.core.recording import RecordingError
from agent.core.scoring import ScoringError, open_scorer
from agent.demo import DemoError
from agent.models import ModelLoadError
from agent.ota.errors import OtaError
from agent.sources.base import SourceError

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
    import logging
    import signal

    from agent.config import check_environment, load_config
    from agent.daemon import Agent

    config = load_config(args.config)
    check_environment(config)
    logging.basicConfig(
        level=config.agent.log_level.upper(),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.check:
        print(f"{args.config}: OK ({len(config.robots)} robot(s))")
        return 0
    agent = Agent(config)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.request_stop())
    try:
        agent.start()
        agent.run()
    finally:
        agent.stop()
    return 0


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

    print(list_models(load_config(args.config)))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from agent.config import load_config
    from agent.ota.admin import rollback

    print(rollback(load_config(args.config), args.robot, args.bundle_id))
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
    except (RecordingError, FeatureError) as err:
        print(f"rapp-agent {args.command}: bad input: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (ConfigError, ModelLoadError, SourceError) as err:
        # Configuration problems exit 2; the unit's RestartPreventExitStatus=2 keeps
        # systemd from restarting into the same error.
        print(f"rapp-agent {args.command}: configuration error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (BundleError, BackendError, ScoringError, DemoError, OtaError) as err:
        print(f"rapp-agent {args.command}: {err}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
