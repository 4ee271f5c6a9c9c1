"""Test-only fault injection for the OTA install path (off unless an env variable says so).

Crash-safety claims ("a SIGKILL at any step leaves a loadable model") can only be tested if a
test can stop the agent *at* a step; races against a sub-second step would make the tests
flaky. ``RAPP_OTA_FAILPOINTS`` holds comma-separated ``name=action`` entries:

- ``<step>=sleep:S``   — the installer sleeps S seconds when it reaches ``<step>``
  (``downloading``, ``verifying``, ``staged``), so a test can SIGKILL it there;
- ``nan_after_activation=<bundle_id>[@<version>]`` — once that bundle (version) is
  *activated* over the air its
  scorer returns NaN for every window. The candidate's canary and recent-normal gate run on
  the real scorer before that, so this stands in for "a model that is fine on the data it was
  checked on and produces NaN on later live data" and exercises probation + rollback end to
  end.

Nothing here runs unless the variable is set; the unit file never sets it.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from agent.core.scoring import Scorer, Scores

ENV = "RAPP_OTA_FAILPOINTS"
log = logging.getLogger(__name__)


def _entries() -> dict[str, str]:
    out = {}
    for item in os.environ.get(ENV, "").split(","):
        name, _, action = item.strip().partition("=")
        if name:
            out[name] = action
    return out


def reach(step: str) -> None:
    """Run the failpoint of ``step`` if one is configured (only ``sleep:S`` is supported)."""
    action = _entries().get(step, "")
    if action.startswith("sleep:"):
        seconds = float(action.split(":", 1)[1])
        log.warning("failpoint %s: sleeping %.1f s (%s is set)", step, seconds, ENV)
        time.sleep(seconds)


class _NanScorer(Scorer):
    """A scorer whose every score is NaN (see the module docstring)."""

    def score(self, features: np.ndarray) -> Scores:
        real = super().score(features)
        nan = np.full_like(real.nap, np.nan)
        return Scores(recon=nan, sap=nan, nap=nan, contributions=real.contributions)


def on_activation(scorer: Scorer) -> Scorer:
    """The scorer to serve after the swap: the candidate itself unless a failpoint poisons it."""
    manifest = scorer.bundle.manifest
    wanted = _entries().get("nan_after_activation")
    if wanted not in (manifest.bundle_id, f"{manifest.bundle_id}@{manifest.bundle_version}"):
        return scorer
    log.warning("failpoint nan_after_activation: %s now scores NaN", scorer.bundle.bundle_id)
    poisoned = _NanScorer.__new__(_NanScorer)
    poisoned.__dict__.update(scorer.__dict__)
    return poisoned
