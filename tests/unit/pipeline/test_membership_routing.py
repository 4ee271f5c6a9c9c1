"""Candidate selection of the model archive for windows without a program id."""

from __future__ import annotations

import numpy as np

from agent.pipeline.membership import MembershipSettings, confidence, select_candidates

NAN = np.nan


def test_nearest_models_within_the_limit_are_candidates_nearest_first() -> None:
    settings = MembershipSettings(max_distance=10.0, max_candidates=2)
    rows = select_candidates(np.array([[3.0, 1.5, 2.0], [50.0, 20.0, 11.0]]), settings)
    assert rows[0][0] == [1, 2]  # two nearest, in order; model 0 is third
    assert rows[1][0] == []  # nothing near: unknown
    assert rows[0][1] == confidence([1.5, 2.0, 3.0], 10.0)
    assert rows[1][1] == 0.0


def test_a_model_without_statistics_is_always_a_candidate() -> None:
    settings = MembershipSettings(max_distance=10.0, max_candidates=1)
    (cands, conf), (cands_far, conf_far) = select_candidates(
        np.array([[1.0, NAN], [99.0, NAN]]), settings
    )
    assert cands == [0, 1] and conf == confidence([1.0], 10.0)
    assert cands_far == [1], "the unknown-statistics model cannot be ruled out"
    assert conf_far == 0.0


def test_no_statistics_at_all_gives_every_model_and_no_confidence() -> None:
    ((cands, conf),) = select_candidates(np.array([[NAN, NAN]]), MembershipSettings())
    assert cands == [0, 1] and conf is None
