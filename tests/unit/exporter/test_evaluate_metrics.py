"""The event and window bookkeeping of `rapp-export evaluate`, on hand-made episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.core.recording import Recording
from exporter.errors import ExportInputError
from exporter.evaluate import (
    EvalSettings,
    Interval,
    ScoredFile,
    alarm_episodes,
    event_metrics,
    fault_events,
    group_of,
    window_metrics,
)


def scored(events, episodes, duration=100.0, anomalous=(), scores=()) -> ScoredFile:
    return ScoredFile(
        path=Path("x.csv"),
        group="g",
        duration_s=duration,
        anomalous=np.array(anomalous, dtype=bool),
        scores={"nap": np.array(scores, dtype=float)},
        features=np.zeros((len(anomalous), 1)),
        events=[Interval(label, a, b) for label, a, b in events],
        episodes=[Interval("alarm", a, b) for a, b in episodes],
    )


def test_fault_events_are_runs_of_one_label() -> None:
    labels = np.array(["", "friction", "friction", "", "collision", "friction", ""])
    rec = Recording(Path("x.csv"), ("J1",), np.zeros((7, 1)), None, None, None, None, labels)
    events = fault_events(rec, np.arange(7) * 0.5)
    assert [(e.label, e.start, e.end) for e in events] == [
        ("friction", 0.5, 1.0),
        ("collision", 2.0, 2.0),
        ("friction", 2.5, 2.5),
    ]
    assert group_of(Path("d/x.csv"), events, "label") == "collision+friction"
    assert group_of(Path("d/x.csv"), [], "label") == "normal"
    assert group_of(Path("d/x.csv"), events, "dir") == "d"


def test_alarm_episodes_from_the_per_window_flags() -> None:
    flags = [0, 1, 1, 0, 0, 1, 1]
    rows = [{"alarm": a, "time_end_s": float(i)} for i, a in enumerate(flags)]
    episodes = alarm_episodes(rows, end_s=9.0)
    assert [(e.start, e.end, e.open) for e in episodes] == [(1.0, 3.0, False), (5.0, 9.0, True)]


def test_event_metrics_match_episodes_within_the_tolerance() -> None:
    fault = scored(
        events=[("friction", 10.0, 50.0), ("collision", 70.0, 70.1)],
        # a false alarm before the fault, one true alarm, a second (toggled) one, and a late
        # raise for the collision inside the tolerance
        episodes=[(2.0, 4.0), (12.0, 30.0), (35.0, 60.0), (75.0, 80.0)],
    )
    normal = scored(events=[], episodes=[(1.0, 2.0)], duration=1800.0)
    m = event_metrics([fault, normal], tolerance_s=10.0)
    assert (m["events"], m["detected"], m["recall"]) == (2, 2, 1.0)
    assert (m["episodes"], m["true_episodes"]) == (5, 3)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["alarms_per_detected_event"] == pytest.approx(3 / 2)
    assert m["delay_s"] == {"mean": 3.5, "median": 3.5, "max": 5.0}  # 12 − 10, 75 − 70
    assert m["false_alarms"] == 1 and m["false_alarms_per_hour"] == pytest.approx(2.0)
    strict = event_metrics([fault], tolerance_s=0.0)
    assert strict["detected"] == 1, "the late collision alarm needs the tolerance"


def test_an_alarm_already_up_at_the_onset_detects_with_zero_delay() -> None:
    m = event_metrics([scored([("payload", 10.0, 20.0)], [(5.0, 25.0)])], tolerance_s=0.0)
    assert m["detected"] == 1 and m["delay_s"]["max"] == 0.0


def test_window_metrics_leave_auroc_empty_without_both_classes() -> None:
    both = window_metrics([scored([], [], anomalous=[0, 1, 1], scores=[0.1, 0.9, 0.8])], ["nap"])
    assert both == {"windows": 3, "anomalous": 2, "auroc": {"nap": 1.0}}
    only_normal = window_metrics([scored([], [], anomalous=[0, 0], scores=[1, 2])], ["nap"])
    assert only_normal["auroc"]["nap"] is None


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"data": ()}, "no recordings to evaluate"),
        ({"group_by": "week"}, "group_by = 'week'"),
        ({"tolerance_s": -1.0}, "tolerance = -1.0"),
    ],
)
def test_settings_are_checked(kw, match) -> None:
    with pytest.raises(ExportInputError, match=match):
        EvalSettings(**{"data": (Path("x.csv"),), **kw})
