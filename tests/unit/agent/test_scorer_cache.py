"""One scorer per bundle: robots serving the same bundle file and settings share it."""

from __future__ import annotations

import pytest

from agent.core.bundle import TrustPolicy
from agent.models import (
    DEFAULT_BUNDLE,
    ModelLoadError,
    ScorerCache,
    ScorerSettings,
    load_robot_scorers,
)

POLICY = TrustPolicy(allow_unsigned=True)
SETTINGS = ScorerSettings()


def test_robots_with_the_same_bundle_and_settings_share_one_scorer() -> None:
    cache = ScorerCache()
    (first,) = load_robot_scorers([DEFAULT_BUNDLE], POLICY, 1000.0, SETTINGS, cache)
    (second,) = load_robot_scorers([DEFAULT_BUNDLE], POLICY, None, SETTINGS, cache)
    assert second is first and len(cache) == 1
    (other,) = load_robot_scorers([DEFAULT_BUNDLE], POLICY, None, ScorerSettings(threads=2), cache)
    assert other is not first and len(cache) == 2
    (alone,) = load_robot_scorers([DEFAULT_BUNDLE], POLICY, None, SETTINGS)
    assert alone is not first, "without a cache every call opens its own scorer"


def test_a_shared_scorer_is_still_checked_against_the_robots_rate() -> None:
    cache = ScorerCache()
    load_robot_scorers([DEFAULT_BUNDLE], POLICY, None, SETTINGS, cache)
    with pytest.raises(
        ModelLoadError, match="bundle expects 1000 Hz but the source samples at 500"
    ):
        load_robot_scorers([DEFAULT_BUNDLE], POLICY, 500.0, SETTINGS, cache)


def test_a_missing_file_is_reported_by_the_load_not_the_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cache = ScorerCache()
    with pytest.raises(ModelLoadError):
        load_robot_scorers([str(tmp_path / "none.rapp")], POLICY, None, SETTINGS, cache)
    assert len(cache) == 0
