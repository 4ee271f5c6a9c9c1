from __future__ import annotations

import pytest

from agent.sinks.topics import TopicError, Topics, validate_id, validate_robot_id, validate_root


def test_layout() -> None:
    t = Topics.for_device("cell7-ipc")
    assert t.status == "rapp/v1/cell7-ipc/status"
    assert t.meta == "rapp/v1/cell7-ipc/meta"
    assert t.alarm("r1") == "rapp/v1/cell7-ipc/r1/alarm"
    assert t.alarm_active("r1") == "rapp/v1/cell7-ipc/r1/alarm/active"
    assert t.score("r1") == "rapp/v1/cell7-ipc/r1/score"
    assert t.alarm_filter == "rapp/v1/cell7-ipc/+/alarm"
    assert t.ota_cmd == "rapp/v1/cell7-ipc/ota/cmd"
    assert t.ota_status == "rapp/v1/cell7-ipc/ota/status"
    assert t.group_ota_cmd("line3") == "rapp/v1/group/line3/ota/cmd"
    assert Topics.for_device("d", root="plant/a/rapp").status == "plant/a/rapp/d/status"


@pytest.mark.parametrize(
    "bad", ["", "a/b", "a+", "#", "a b", "tab\t", "nul\x00", "$SYS", "x" * 65, 3, None]
)
def test_bad_ids_are_rejected_with_value_and_fix(bad: object) -> None:
    with pytest.raises(TopicError) as err:
        validate_id(bad, what="device id")
    assert "device id" in str(err.value)
    assert repr(bad)[:20] in str(err.value)
    assert "fix" in str(err.value)


@pytest.mark.parametrize("good", ["r1", "KR-16.axis_3", "robot:2", "x" * 64, "Ärm"])
def test_good_ids(good: str) -> None:
    assert validate_id(good) == good


def test_reserved_robot_ids_and_topic_methods_validate() -> None:
    with pytest.raises(TopicError, match="reserved"):
        validate_robot_id("status")
    t = Topics.for_device("d")
    with pytest.raises(TopicError):
        t.alarm("r/1")
    with pytest.raises(TopicError):
        Topics.for_device("d+")


@pytest.mark.parametrize("bad", ["", "/rapp", "rapp/", "rapp//v1", "rapp/+", "rapp/#"])
def test_bad_roots(bad: str) -> None:
    with pytest.raises(TopicError):
        validate_root(bad)
