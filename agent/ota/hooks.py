"""Seams in the install path where a test can hold the worker or poison a model.

Crash-safety claims ("a SIGKILL at any step leaves a loadable model") can only be tested if a
test can stop the agent *at* a step; races against a sub-second step would make the tests
flaky. Production runs the no-op :class:`OtaHooks`; the test launcher
(``tests/support/failpoint_agent.py``) passes a subclass to ``Agent(config, ota_hooks=...)``.
"""

from __future__ import annotations

from agent.core.scoring import Scorer

STEPS = ("downloading", "verifying", "staged")


class OtaHooks:
    """No-op hooks: what the agent runs with unless a test launcher passes others."""

    def reach(self, step: str) -> None:
        """The worker reached ``step`` (one of :data:`STEPS`), just after reporting it."""

    def on_activation(self, scorer: Scorer) -> Scorer:
        """The scorer to serve after the swap (the candidate itself)."""
        return scorer
