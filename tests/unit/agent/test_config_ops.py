"""[robots.alarm] threshold and [robots.drift]: parsed, validated, applied to the pipeline."""

from __future__ import annotations

import pytest

from agent.config import ConfigError, parse_config
from agent.daemon import pipeline_options


def config(robot_tables: dict) -> dict:
    return {
        "agent": {"device_id": "ipc1", "state_dir": "/tmp/rapp-ops-test"},
        "trust": {"allow_unsigned": True},
        "robots": [
            {
                "id": "arm1",
                "bundle": "default",
                "source": {"kind": "simulator"},
                **robot_tables,
            }
        ],
    }


def test_defaults_are_fixed_threshold_and_no_capture():
    parsed = parse_config(config({}))
    options = pipeline_options(parsed.robots[0])
    assert options.threshold == "fixed" and options.capture is None
    assert options.drift.ks_limit == 0.5


def test_dynamic_threshold_and_capture(tmp_path):
    parsed = parse_config(
        config(
            {
                "alarm": {"threshold": "dynamic"},
                "drift": {
                    "window": 256,
                    "min_windows": 32,
                    "ks_limit": 0.4,
                    "capture_dir": str(tmp_path / "cap"),
                    "capture_max_windows": 100,
                },
            }
        )
    )
    options = pipeline_options(parsed.robots[0])
    assert options.threshold == "dynamic"
    assert (options.drift.window, options.drift.min_windows, options.drift.ks_limit) == (
        256,
        32,
        0.4,
    )
    assert options.capture is not None and options.capture.max_windows == 100
    assert (tmp_path / "cap").is_dir()


@pytest.mark.parametrize(
    ("tables", "message"),
    [
        ({"alarm": {"threshold": "adaptive"}}, "robots[0].alarm.threshold"),
        ({"drift": {"window": 16, "min_windows": 32}}, "min_windows"),
        ({"drift": {"ks_limit": 2.0}}, "robots[0].drift.ks_limit"),
        ({"drift": {"capture": "yes"}}, "unknown key"),
    ],
)
def test_bad_values_name_the_key(tables, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_config(config(tables))


def test_an_unwritable_capture_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    parsed = parse_config(config({"drift": {"capture_dir": str(blocker / "cap")}}))
    with pytest.raises(ConfigError, match="capture_dir"):
        pipeline_options(parsed.robots[0])
