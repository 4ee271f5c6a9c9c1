"""Test-only launcher: ``rapp-agent run`` with OTA failpoints (agent/ota/hooks.py).

    python -m tests.support.failpoint_agent \
        --failpoints "verifying=sleep:30,nan_after_activation=b@3" --config agent.toml

``--failpoints`` holds comma-separated ``name=action`` entries:

- ``<step>=sleep:S`` — the worker sleeps S seconds when it reaches ``<step>``
  (``downloading``, ``verifying``, ``staged``), so a test can SIGKILL it there;
- ``nan_after_activation=<bundle_id>[@<version>]`` — once that bundle (version) is
  *activated* over the air its scorer returns NaN for every window. The candidate's canary
  and recent-normal gate run on the real scorer before that, so this stands in for "a model
  that is fine on the data it was checked on and produces NaN on later live data" and
  exercises probation + rollback end to end.

Everything else is exactly ``rapp-agent run --config``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from agent.cli import run_daemon
from agent.core.errors import AgentError
from agent.core.errors import exit_code as agent_exit_code
from agent.core.scoring import Scorer, Scores
from agent.ota.hooks import STEPS, OtaHooks
from firmware_config.cli_conventions import report_error
from firmware_config.errors import FirmwareError
from firmware_config.errors import exit_code as firmware_exit_code

NAN_AFTER_ACTIVATION = "nan_after_activation"
log = logging.getLogger(__name__)


class _NanScorer(Scorer):
    """A scorer whose every score is NaN (see the module docstring)."""

    def score(self, features: np.ndarray) -> Scores:
        real = super().score(features)
        nan = np.full_like(real.nap, np.nan)
        return Scores(recon=nan, sap=nan, nap=nan, contributions=real.contributions)


class FailpointHooks(OtaHooks):
    """OTA hooks that sleep at install steps and poison one bundle after activation."""

    def __init__(self, sleeps: dict[str, float], nan_bundle: str | None = None) -> None:
        self.sleeps = dict(sleeps)
        self.nan_bundle = nan_bundle

    @classmethod
    def parse(cls, spec: str) -> FailpointHooks:
        """Hooks from ``name=action,…`` (see the module docstring); ValueError if malformed."""
        sleeps: dict[str, float] = {}
        nan_bundle = None
        for item in spec.split(","):
            name, _, action = item.strip().partition("=")
            if not name:
                continue
            if name == NAN_AFTER_ACTIVATION and action:
                nan_bundle = action
            elif name in STEPS and action.startswith("sleep:"):
                sleeps[name] = float(action.split(":", 1)[1])
            else:
                raise ValueError(
                    f"failpoint {item!r}: use <step>=sleep:S ({', '.join(STEPS)}) or "
                    f"{NAN_AFTER_ACTIVATION}=<bundle_id>[@<version>]"
                )
        return cls(sleeps, nan_bundle)

    def reach(self, step: str) -> None:
        seconds = self.sleeps.get(step)
        if seconds is not None:
            log.warning("failpoint %s: sleeping %.1f s", step, seconds)
            time.sleep(seconds)

    def on_activation(self, scorer: Scorer) -> Scorer:
        manifest = scorer.bundle.manifest
        wanted = (manifest.bundle_id, f"{manifest.bundle_id}@{manifest.bundle_version}")
        if self.nan_bundle not in wanted:
            return scorer
        log.warning("failpoint %s: %s now scores NaN", NAN_AFTER_ACTIVATION, manifest.bundle_id)
        poisoned = _NanScorer.__new__(_NanScorer)
        poisoned.__dict__.update(scorer.__dict__)
        return poisoned


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="failpoint_agent", description=__doc__)
    ap.add_argument("--failpoints", required=True, help="name=action,… (see above)")
    ap.add_argument("--config", required=True, type=Path, help="agent.toml")
    args = ap.parse_args(argv)
    try:
        hooks = FailpointHooks.parse(args.failpoints)
    except ValueError as err:
        ap.error(str(err))
    try:
        return run_daemon(args.config, ota_hooks=hooks)
    except (AgentError, FirmwareError) as err:  # as `rapp-agent run` reports them
        code = agent_exit_code(err) if isinstance(err, AgentError) else firmware_exit_code(err)
        report_error("rapp-agent", "run", err, code, "configuration error")
        return code


if __name__ == "__main__":
    sys.exit(main())
