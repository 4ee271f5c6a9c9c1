"""Sanity checks (issue 7 scope 1): bad models are flagged, a good one passes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from exporter.sanity import (
    FAIL,
    PASS,
    WARN,
    SanityError,
    SanityLimits,
    check_gradient_norm,
    check_overfit,
    check_underfit,
    enforce,
    run_sanity_checks,
)

LIMITS = SanityLimits()
CHECK_NAMES = ["underfit", "overfit", "gradient_norm", "identity", "pseudo_anomaly"]


def _halves(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    block = np.arange(len(segments)) // 16
    return segments[block % 2 == 0], segments[block % 2 == 1]


@pytest.fixture(scope="module")
def good_report(trained_model, calibration_segments):
    return run_sanity_checks(trained_model, *_halves(calibration_segments))


def test_good_model_passes_every_check(good_report):
    assert [c.name for c in good_report.checks] == CHECK_NAMES
    assert good_report.status == PASS, good_report.lines()
    assert good_report.by_name("pseudo_anomaly").value >= LIMITS.pseudo_auroc_warn
    assert good_report.by_name("identity").value <= LIMITS.identity_warn
    json.dumps(good_report.to_json(), allow_nan=False)  # plain, strict JSON for report.json


def test_one_epoch_model_is_flagged_as_under_trained(one_epoch_model, calibration_segments):
    report = run_sanity_checks(one_epoch_model, *_halves(calibration_segments))
    underfit = report.by_name("underfit")
    assert underfit.status == FAIL
    assert "train longer" in underfit.message
    assert report.status == FAIL
    with pytest.raises(SanityError, match="underfit"):
        enforce(report, strict=True)
    enforce(report, strict=False)  # without --strict a failure is only recorded


def test_identity_like_model_is_flagged(identity_like_model, row_calibration):
    report = run_sanity_checks(identity_like_model, *row_calibration)
    identity = report.by_name("identity")
    assert identity_like_model.model.sizes == [6, 6]
    assert identity.status == FAIL, identity.line()
    assert identity.value > LIMITS.identity_fail
    assert "smaller bottleneck" in identity.message
    per = identity.details["per_corruption"]
    assert set(per) == {"noise", "spike", "scale_window"}


def test_narrow_model_on_the_same_data_is_not_an_identity(narrow_row_model, row_calibration):
    identity = run_sanity_checks(narrow_row_model, *row_calibration).by_name("identity")
    assert identity.status == PASS, identity.line()


def test_pseudo_anomaly_kinds_that_change_nothing_are_not_applicable(
    narrow_row_model, row_calibration
):
    """A linear drift over a one-sample window is no change at all: not scored, not 0.5."""
    check = run_sanity_checks(narrow_row_model, *row_calibration).by_name("pseudo_anomaly")
    assert check.details["per_kind"]["drift"] is None
    assert "drift" in check.details["not_applicable"]
    assert check.details["per_kind"]["spike"] > 0.9


def test_training_records_gradient_norm_history(trained_model, tmp_path):
    from exporter.model import TrainedModel

    history = trained_model.history
    n = history["epochs_run"]
    assert len(history["grad_norm"]) == len(history["grad_norm_max"]) == n
    pairs = zip(history["grad_norm"], history["grad_norm_max"], strict=True)
    assert all(peak >= mean > 0 for mean, peak in pairs)
    trained_model.save(tmp_path)
    assert TrainedModel.load(tmp_path).history["grad_norm_max"] == history["grad_norm_max"]


def _history(train: list[float], val: list[float], limit: int | None = None, **extra) -> dict:
    epochs = len(val)
    return {
        "train_loss": train,
        "val_loss": val,
        "best_epoch": int(np.argmin(val)),
        "epochs_run": epochs,
        "settings": {"epochs": limit or epochs},
        **extra,
    }


def test_curve_still_falling_at_the_epoch_limit_is_under_trained():
    val = list(np.geomspace(1.0, 0.01, 40))
    check = check_underfit(_history(val, val), LIMITS)
    assert check.status == FAIL and check.value > LIMITS.still_falling_fail


def test_flat_curve_and_early_stopping_pass():
    val = [1.0, 0.2, 0.1] + [0.1] * 30
    assert check_underfit(_history(val, val), LIMITS).status == PASS
    assert check_underfit(_history(val, val, limit=200), LIMITS).status == PASS


def test_validation_far_above_training_is_overfit():
    train = list(np.geomspace(1.0, 0.01, 30))
    val = list(np.linspace(0.6, 0.5, 30))
    check = check_overfit(_history(train, val), LIMITS)
    assert check.status == FAIL and check.value > LIMITS.overfit_fail
    assert "more normal data" in check.message


def test_validation_rising_while_training_falls_is_reported():
    train = list(np.geomspace(1.0, 0.1, 30))
    val = list(np.geomspace(1.0, 0.1, 20)) + list(np.linspace(0.1, 0.15, 10))
    check = check_overfit(_history(train, val), LIMITS)
    assert check.details["diverging_after_best"]
    assert "rose" in check.message


def test_exploding_and_vanishing_gradients_are_flagged():
    def grade(mean: list[float], peak: list[float]):
        return check_gradient_norm({"grad_norm": mean, "grad_norm_max": peak}, LIMITS)

    steady = [0.5] * 20
    assert grade(steady, steady).status == PASS
    spiky = grade(steady, [*steady[:-1], 1e5])
    assert spiky.status == FAIL and "exploding" in spiky.message
    nan = [*steady[:-1], math.nan]
    assert grade(nan, nan).status == FAIL
    fading = list(np.geomspace(1.0, 1e-6, 20))
    vanishing = grade(fading, fading)
    assert vanishing.status == WARN and "vanishing" in vanishing.message


def test_model_without_history_warns_instead_of_guessing():
    for check in (
        check_underfit({}, LIMITS),
        check_overfit({}, LIMITS),
        check_gradient_norm({}, LIMITS),
    ):
        assert check.status == WARN and check.value is None and "retrain" in check.message
