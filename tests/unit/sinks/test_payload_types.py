"""Number types in the published payloads: counts are JSON integers, program ids strings, every
other number at the documented precision (payloads.SIGNIFICANT_DIGITS), as a subscriber sees
them after JSON decoding."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.pipeline.alarms import (
    AlarmSettings,
    AlarmTracker,
    ChannelContribution,
    ModelRef,
    WindowInfo,
)
from agent.pipeline.drift import DriftSettings, RobotDrift
from agent.sinks.mqtt.errors import PayloadError
from agent.sinks.mqtt.payloads import (
    SIGNIFICANT_DIGITS,
    AgentIdentity,
    FrameCounters,
    RobotHealth,
    ScoreStream,
    build_alarm,
    build_alarm_active,
    build_status,
    dumps,
    rounded,
)
from agent.sinks.outbox import OutboxStats

Validators = dict[str, jsonschema.protocols.Validator]
MODEL = ModelRef("kr16-p12", "2024.05.1")
IDENT = AgentIdentity("cell7", "0.1.0", "01HZBOOTBOOTBOOTBOOTBOOTBO", 1_700_000_000.0)
LONG = 1.2345678912345678  # more digits than any payload may carry


def through_json(payload: dict[str, Any]) -> dict[str, Any]:
    return json.loads(dumps(payload))


def numbers(doc: Any, path: str = "") -> Iterator[tuple[str, int | float]]:
    """Every number in a decoded payload with its path (booleans are not numbers here)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from numbers(value, f"{path}.{key}")
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from numbers(value, f"{path}[{i}]")
    elif isinstance(doc, int | float) and not isinstance(doc, bool):
        yield path, doc


def assert_precision(doc: dict[str, Any]) -> None:
    for path, value in numbers(doc):
        if isinstance(value, float):
            assert value == float(f"{value:.{SIGNIFICANT_DIGITS}g}"), (path, value)


def drift_with_an_unknown_program() -> RobotDrift:
    drift = RobotDrift(DriftSettings(window=64, min_windows=8))
    levels = tuple(np.linspace(0.0, 1.0, 11))
    quantiles = tuple(np.linspace(0.1, 2.0, 11) * LONG)
    for i in range(40):
        drift.add_score("b", (levels, quantiles), LONG * (1 + i / 7))
        drift.scored(alarm_active=i % 3 == 0, confidence=LONG / 2)
    drift.unknown(3)
    drift.unknown(3)
    return drift


def test_drift_counts_are_integers_and_program_ids_strings(validators: Validators) -> None:
    indicators, advised = drift_with_an_unknown_program().summary()
    health = RobotHealth(
        FrameCounters(10, 0, 0, 0),
        windows={"scored": 40},
        drift=indicators,
        retraining_advised=advised,
    )
    status = through_json(build_status("online", IDENT, robots={"r1": health}, now=1.7e9))
    validators["status"].validate(status)
    drift = status["robots"]["r1"]["drift"]
    assert type(drift["recent_windows"]) is int and drift["recent_windows"] == 42
    assert drift["last_unknown_program"] == "3"
    for key in ("ks", "p50_ratio", "p90_ratio", "alarm_rate", "membership_confidence"):
        assert type(drift[key]) is float, key
    assert drift["membership_confidence"] == 0.617284  # LONG / 2 at 6 significant digits
    assert_precision(status)


def test_status_schema_refuses_the_old_types(validators: Validators) -> None:
    indicators, _ = drift_with_an_unknown_program().summary()
    status = through_json(
        build_status("online", IDENT, robots={"r1": RobotHealth(drift=indicators)}, now=1.7e9)
    )
    drift = status["robots"]["r1"]["drift"]
    for bad in ({"last_unknown_program": 3.0}, {"recent_windows": 42.5}):
        broken = {**status, "robots": {"r1": {**status["robots"]["r1"], "drift": {**drift, **bad}}}}
        with pytest.raises(jsonschema.ValidationError):
            validators["status"].validate(broken)


def test_no_unknown_program_is_null() -> None:
    drift = RobotDrift(DriftSettings(window=64, min_windows=8))
    drift.scored(alarm_active=False)
    indicators, _ = drift.summary()
    status = build_status("online", IDENT, robots={"r1": RobotHealth(drift=indicators)}, now=0)
    entry = through_json(status)["robots"]["r1"]["drift"]
    assert entry["last_unknown_program"] is None and entry["recent_windows"] == 1


def test_alarm_numbers_are_rounded_and_counts_integers(validators: Validators) -> None:
    tracker = AlarmTracker("r1", AlarmSettings(alpha=1.0, k=1, n=1, clear_windows=1))
    window = WindowInfo(1_700_000_100.0, 1_700_000_101.0, 100, 199, "3", {"J2": LONG, "J1": 0.1})
    event = tracker.update(np.float32(3 * LONG), LONG, window, MODEL)
    assert event is not None
    alarm = through_json(build_alarm(event, device="cell7"))
    validators["alarm"].validate(alarm)
    assert alarm["program"] == "3"
    assert alarm["threshold"] == 1.23457
    assert type(alarm["seq"]["first"]) is int and type(alarm["seq"]["last"]) is int
    assert alarm["contributions"][0]["channel"] == "J2"
    assert_precision(alarm)
    active = through_json(build_alarm_active("cell7", "r1", event))
    validators["alarm_active"].validate(active)
    assert type(active["alarm"]["seq_first"]) is int
    assert_precision(active)


def test_contribution_values_must_be_finite() -> None:
    tracker = AlarmTracker("r1", AlarmSettings(alpha=1.0, k=1, n=1))
    event = tracker.update(3.0, 1.0, WindowInfo(0.0, 1.0, 0, 9), MODEL)
    assert event is not None
    broken = dataclasses.replace(event, contributions=(ChannelContribution("J1", math.inf, 1.0),))
    with pytest.raises(PayloadError, match="contribution value"):
        build_alarm(broken, device="cell7")


def test_score_telemetry_rounds_scores_and_counts_windows(validators: Validators) -> None:
    stream = ScoreStream(IDENT, "r1", min_interval_s=0.0, clock=lambda: 0.0)
    payload = stream.offer(
        score=LONG * 10,
        smoothed=LONG,
        threshold=LONG / 3,
        window=WindowInfo(1.7e9, 1.7e9 + 0.5, 0, 9, None),
        model=MODEL,
        alarm_active=False,
    )
    assert payload is not None
    score = through_json(payload)
    validators["score"].validate(score)
    assert (score["score"], score["smoothed"], score["max_score"]) == (12.3457, 1.23457, 12.3457)
    assert score["threshold"] == 0.411523
    assert type(score["seq"]) is int and type(score["windows"]) is int
    assert_precision(score)


def test_status_outbox_age_is_rounded_and_counts_integers(validators: Validators) -> None:
    stats = OutboxStats(
        alarm=1,
        event=0,
        telemetry=3,
        telemetry_dropped=2,
        enqueued_total=9,
        acked_total=5,
        oldest_created=1_700_000_000.0 - LONG,
    )
    status = through_json(build_status("online", IDENT, outbox=stats, now=1_700_000_000.0))
    validators["status"].validate(status)
    assert status["outbox"]["oldest_age_s"] == pytest.approx(LONG, rel=1e-5)
    assert_precision(status)
    for path, value in numbers(status["outbox"]):
        if path != ".oldest_age_s":
            assert type(value) is int, path


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30))
def test_rounding_keeps_six_significant_digits(x: float) -> None:
    r = rounded(x)
    assert r == float(f"{r:.{SIGNIFICANT_DIGITS}g}")
    assert math.isclose(r, x, rel_tol=5.1e-6, abs_tol=1e-300)
    assert rounded(r) == r
