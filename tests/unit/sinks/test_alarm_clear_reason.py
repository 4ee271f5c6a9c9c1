"""The clear payload says why the alarm ended; the schema holds raises and clears to it."""

from __future__ import annotations

import jsonschema
import pytest

from agent.pipeline.alarms import AlarmSettings, AlarmTracker, ModelRef, WindowInfo
from agent.sinks.mqtt.payloads import build_alarm

MODEL = ModelRef("bundle-a", "3")


def _raise_and_clear():
    tr = AlarmTracker("r1", AlarmSettings(alpha=1.0, k=1, n=1, clear_windows=1))
    raised = tr.update(3.0, 1.0, WindowInfo(1_700_000_100.0, 1_700_000_101.0, 100, 199), MODEL)
    cleared = tr.update(0.1, 1.0, WindowInfo(1_700_000_102.0, 1_700_000_103.0, 200, 299), MODEL)
    assert raised is not None and cleared is not None
    return build_alarm(raised, device="ipc1"), build_alarm(cleared, device="ipc1")


def test_clear_payload_carries_the_reason_and_the_raise_none(validators) -> None:
    p_raise, p_clear = _raise_and_clear()
    assert p_clear["reason"] == "scores_normal" and "reason" not in p_raise
    validators["alarm"].validate(p_raise)
    validators["alarm"].validate(p_clear)


@pytest.mark.parametrize(
    "edit",
    [
        lambda r, c: {k: v for k, v in c.items() if k != "reason"},  # clear without reason
        lambda r, c: {**c, "reason": "because"},  # unknown reason
        lambda r, c: {**r, "reason": "scores_normal"},  # a raise with a reason
    ],
    ids=["clear-without-reason", "unknown-reason", "raise-with-reason"],
)
def test_schema_rejects_misplaced_or_missing_reasons(validators, edit) -> None:
    p_raise, p_clear = _raise_and_clear()
    with pytest.raises(jsonschema.ValidationError):
        validators["alarm"].validate(edit(p_raise, p_clear))
