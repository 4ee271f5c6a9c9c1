from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
import numpy as np
import pytest

from agent.pipeline.alarms import AlarmSettings, AlarmTracker, ModelRef, WindowInfo
from agent.sinks.mqtt.errors import PayloadError
from agent.sinks.mqtt.payloads import (
    AgentIdentity,
    BundleInfo,
    ChannelMeta,
    FrameCounters,
    RobotHealth,
    RobotMeta,
    ScoreStream,
    alarm_from_active,
    build_alarm,
    build_alarm_active,
    build_meta,
    build_ota_status,
    build_status,
    dumps,
    iso_utc,
    load_schema,
)
from agent.sinks.outbox import OutboxStats

Validators = dict[str, jsonschema.protocols.Validator]
MODEL = ModelRef("kr16-p12", "2024.05.1")
IDENT = AgentIdentity("cell7", "0.1.0", "01HZBOOTBOOTBOOTBOOTBOOTBO", 1_700_000_000.0)


def raise_and_clear() -> tuple[Any, Any]:
    tr = AlarmTracker("r1", AlarmSettings(alpha=1.0, k=1, n=1, clear_windows=1))
    w = WindowInfo(1_700_000_100.0, 1_700_000_101.0, 100, 199, None, {"a1": 2.0, "a2": 1.0})
    raised = tr.update(3.0, 1.0, w, MODEL)
    cleared = tr.update(0.1, 1.0, WindowInfo(1_700_000_102.0, 1_700_000_103.0, 200, 299), MODEL)
    assert raised is not None and cleared is not None
    return raised, cleared


def check(validators: Validators, name: str, payload: dict[str, Any]) -> None:
    # through JSON, as a subscriber sees it
    validators[name].validate(json.loads(dumps(payload)))


def test_alarm_payloads_validate(validators: Validators) -> None:
    raised, cleared = raise_and_clear()
    p_raise = build_alarm(raised, device="cell7")
    p_clear = build_alarm(cleared, device="cell7")
    check(validators, "alarm", p_raise)
    check(validators, "alarm", p_clear)
    assert p_raise["id"] == raised.id and p_clear["raise_id"] == raised.id
    # shares at the payloads' 6 significant digits (2/3 -> 0.666667)
    assert p_raise["contributions"][0] == {"channel": "a1", "value": 2.0, "share": 0.666667}
    assert p_raise["window"]["start"] == "2023-11-14T22:15:00.000Z"
    # the schema is not vacuous: a clear without raise_id, or a raise with one, is invalid
    bad_clear = {k: v for k, v in p_clear.items() if k != "raise_id"}
    with pytest.raises(jsonschema.ValidationError):
        validators["alarm"].validate(bad_clear)
    with pytest.raises(jsonschema.ValidationError):
        validators["alarm"].validate({**p_raise, "raise_id": "x"})
    with pytest.raises(jsonschema.ValidationError):
        validators["alarm"].validate({**p_raise, "severity": "meh"})


def test_alarm_active_payloads_validate(validators: Validators) -> None:
    raised, cleared = raise_and_clear()
    active = build_alarm_active("cell7", "r1", raised)
    idle = build_alarm_active("cell7", "r1", cleared)
    initial = build_alarm_active("cell7", "r1", None)
    for p in (active, idle, initial):
        check(validators, "alarm_active", p)
    assert active["active"] and active["alarm"]["raise_id"] == raised.id
    assert not idle["active"] and idle["alarm"] is None and idle["event_id"] == cleared.id
    assert initial["event_id"] is None
    assert active["id"] != raised.id, "the retained state message needs its own outbox id"
    with pytest.raises(jsonschema.ValidationError):
        validators["alarm_active"].validate({**active, "alarm": None})
    with pytest.raises(PayloadError):
        build_alarm_active("cell7", "r2", raised)


def test_score_stream_rate_limits_numbers_and_validates(validators: Validators) -> None:
    clock = [0.0]
    stream = ScoreStream(IDENT, "r1", min_interval_s=1.0, clock=lambda: clock[0])
    out = []
    for i in range(25):
        clock[0] = i * 0.1
        score = math.nan if i == 3 else float(i)
        p = stream.offer(
            score=score,
            smoothed=score / 2,
            threshold=10.0,
            window=WindowInfo(1_700_000_000.0 + i, 1_700_000_000.5 + i, i * 10, i * 10 + 9),
            model=MODEL,
            alarm_active=False,
        )
        if p is not None:
            check(validators, "score", p)
            out.append(p)
    assert [p["seq"] for p in out] == [0, 1, 2]
    assert [p["windows"] for p in out] == [1, 10, 10]
    assert out[1]["max_score"] == 10.0 and out[1]["score"] == 10.0
    assert out[1]["window"]["start"] == iso_utc(1_700_000_001.0)
    # NaN score -> null, not invalid JSON
    clock[0] = 10.0
    p = stream.offer(
        score=math.nan,
        smoothed=None,
        threshold=1.0,
        window=WindowInfo(1.0, 2.0, 0, 1),
        model=MODEL,
        alarm_active=True,
    )
    assert p is not None and p["score"] is None
    check(validators, "score", p)


def test_status_payloads_validate(validators: Validators) -> None:
    stats = OutboxStats(
        alarm=2,
        event=0,
        telemetry=7,
        telemetry_dropped=3,
        enqueued_total=20,
        acked_total=11,
        oldest_created=1_699_999_990.0,
    )
    robots = {
        "r1": RobotHealth(
            FrameCounters(1000, 2, 1, 1),
            alarm_active=True,
            windows={"scored": 50, "skipped_nan": 1},
            drift={"p95_ratio": 1.4, "ks": math.nan},
            retraining_advised=True,
        ),
        "r2": RobotHealth(),
    }
    bundles = [BundleInfo("r1", "kr16-p12", "3", ("P12",))]
    for state in ("online", "stopped"):
        p = build_status(
            state, IDENT, bundles=bundles, outbox=stats, robots=robots, now=1_700_000_000.0
        )
        check(validators, "status", p)
        assert p["outbox"] == {
            "depth": {"alarm": 2, "event": 0, "telemetry": 7},
            "telemetry_dropped": 3,
            "oldest_age_s": 10.0,
            "held_in_memory": 0,
            "disk_full": None,
        }
        assert p["robots"]["r1"]["drift"] == {
            "p95_ratio": 1.4,
            "ks": None,
            "retraining_advised": True,
        }
    will = build_status("offline", IDENT)
    check(validators, "status", will)
    assert set(will) == {"schema", "id", "device", "ts", "state", "agent_version", "boot_id"}
    with pytest.raises(jsonschema.ValidationError):
        validators["status"].validate({**will, "state": "online"})  # online needs the details
    with pytest.raises(PayloadError):
        build_status("sleeping", IDENT)  # type: ignore[arg-type]


def test_meta_and_ota_payloads_validate(validators: Validators) -> None:
    meta = build_meta(
        IDENT,
        [
            RobotMeta(
                "r1",
                1000.0,
                [ChannelMeta("i1", "A", 1)],
                [BundleInfo("r1", "b", "1", ("P1",))],
                "serial",
            )
        ],
    )
    check(validators, "meta", meta)
    for state in ("received", "downloading", "verifying", "staged", "active", "committed"):
        check(
            validators,
            "ota_status",
            build_ota_status(
                "cell7",
                state,
                "push-1",
                robot="r1",
                bundle=MODEL,
                previous=ModelRef("old", "1"),
                received_bytes=10,
                total_bytes=100,
            ),
        )  # type: ignore[arg-type]
    check(validators, "ota_status", build_ota_status("cell7", "rejected", "p", reason="bad sig"))
    with pytest.raises(PayloadError):
        build_ota_status("cell7", "rolled_back", "p")
    with pytest.raises(jsonschema.ValidationError):
        validators["ota_status"].validate(
            {**build_ota_status("c", "staged", "p"), "state": "rejected"}
        )


def test_dumps_refuses_nan_and_load_schema_rejects_unknown() -> None:
    with pytest.raises(PayloadError):
        dumps({"x": math.inf})
    with pytest.raises(PayloadError):
        load_schema("nope")
    assert load_schema("alarm")["$schema"].endswith("2020-12/schema")


def test_numpy_scalars_from_the_pipeline_serialize(validators: Validators) -> None:
    tr = AlarmTracker("r1", AlarmSettings(alpha=1.0, k=1, n=1))
    w = WindowInfo(
        np.float64(1.7e9),
        np.float64(1.7e9 + 1),
        np.int64(5),
        np.int64(9),
        "P",
        {"a": np.float32(0.5)},
    )
    event = tr.update(np.float32(3.0), np.float64(1.0), w, MODEL)
    assert event is not None
    check(validators, "alarm", build_alarm(event, device="cell7"))
    check(validators, "alarm_active", build_alarm_active("cell7", "r1", event))


def test_alarm_active_reads_back_the_raise_it_describes() -> None:
    raised, cleared = raise_and_clear()
    through_json = json.loads(dumps(build_alarm_active("cell7", "r1", raised)))
    back = alarm_from_active(through_json, "r1")
    assert back is not None
    assert (back.id, back.kind, back.severity, back.robot, back.model, back.program) == (
        raised.id,
        "raise",
        raised.severity,
        "r1",
        raised.model,
        raised.program,
    )
    assert back.span_start == pytest.approx(raised.span_start, abs=1e-3)
    assert (back.smoothed, back.threshold, back.seq_first) == (3.0, 1.0, 100)
    assert [c.channel for c in back.contributions] == ["a1", "a2"]
    assert alarm_from_active(build_alarm_active("cell7", "r1", cleared), "r1") is None
    assert alarm_from_active(build_alarm_active("cell7", "r1", None), "r1") is None
    with pytest.raises(PayloadError, match="robot 'r2'"):
        alarm_from_active(through_json, "r2")
    broken = {**through_json, "alarm": {**through_json["alarm"], "threshold": "x"}}
    with pytest.raises(PayloadError, match="alarm_active payload of robot 'r1'"):
        alarm_from_active(broken, "r1")
