"""Every class of configuration error: exit code 2 and a message naming key, value and fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fixtures.daemon import ROOT

GOOD = """
[agent]
device_id = "ipc1"
state_dir = "{state}"

[trust]
allow_unsigned = true

[[robots]]
id = "arm1"
bundle = "{bundle}"
[robots.source]
file = "{replay}"
kind = "replay"
"""


def with_source(text: str, source: str) -> str:
    return text.split("[robots.source]")[0] + "[robots.source]\n" + source + "\n"


def run_agent(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.fixture
def good_text(tmp_path, bundle_path, recordings) -> str:
    return GOOD.format(state=tmp_path / "state", bundle=bundle_path, replay=recordings["test"])


def test_good_config_checks_ok(tmp_path, good_text):
    config = tmp_path / "agent.toml"
    config.write_text(good_text)
    result = run_agent(config, "--check")
    assert result.returncode == 0, result.stderr
    assert "OK (1 robot(s))" in result.stdout


CASES = [
    ("unknown key", ('device_id = "ipc1"', 'device_id = "ipc1"\ndevise = 1'),
     "agent.devise: unknown key in agent; allowed keys"),
    ("wrong type", ('device_id = "ipc1"', "device_id = 7"),
     "agent.device_id = 7: must be a string"),
    ("impossible value", ('device_id = "ipc1"', 'device_id = "ipc1"\nthreads = 0'),
     "agent.threads = 0: must be between 1 and 64"),
    ("bad choice", ('kind = "replay"', 'kind = "usb"'),
     "robots[0].source.kind = 'usb': must be one of serial, mqtt, replay, simulator"),
    ("missing section", ("[[robots]]", "[[robotz]]"), "robots: missing"),
    ("missing file", ('bundle = "', 'bundle = "/nonexistent/x.rapp" #'),
     "robots[0].bundles[0] = '/nonexistent/x.rapp': no such file"),
    ("password in config", ("[trust]", '[mqtt]\nhost = "h"\npassword = "x"\n[trust]'),
     "mqtt.password: passwords are not accepted"),
    ("mqtt key", ("[trust]", '[mqtt]\nhost = "h"\nprot = 5\n[trust]'),
     "mqtt.prot: unknown key"),
    ("bad toml", ("[agent]", "[agent"), "not valid TOML"),
    ("key of another source", ('kind = "replay"', 'kind = "replay"\nbaudrate = 9600'),
     "robots[0].source.baudrate: not used by a replay source"),
    ("debounce", ('kind = "replay"', 'kind = "replay"\n[robots.alarm]\ndebounce_k = 5\n'
                  'debounce_n = 3'),
     "robots[0].alarm.debounce_k = 5: must not exceed debounce_n"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "edit", "message"), CASES, ids=[c[0] for c in CASES])
def test_config_error_exits_2_with_a_precise_message(tmp_path, good_text, name, edit, message):
    old, new = edit
    assert old in good_text, name
    config = tmp_path / "agent.toml"
    config.write_text(good_text.replace(old, new, 1))
    result = run_agent(config, "--check")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr, result.stderr


def test_serial_port_that_does_not_exist(tmp_path, good_text):
    from firmware_config.channel_map import builtin_map_path

    text = with_source(
        good_text, f'kind = "serial"\nport = "/dev/ttyNOPE"\nchannel_map = "{builtin_map_path()}"'
    )
    config = tmp_path / "agent.toml"
    config.write_text(text)
    result = run_agent(config, "--check")
    assert result.returncode == 2
    assert "robots[0].source.port = '/dev/ttyNOPE': no such device" in result.stderr


def test_unsigned_bundle_refused_unless_allowed(tmp_path, good_text):
    config = tmp_path / "agent.toml"
    config.write_text(good_text.replace("allow_unsigned = true", "allow_unsigned = false"))
    result = run_agent(config)
    assert result.returncode == 2
    assert "manifest.sig: missing" in result.stderr


def test_bundle_for_other_channels_is_refused(tmp_path, good_text, bundle_path):
    from firmware_config.channel_map import builtin_map_path

    other = tmp_path / "map.toml"
    other.write_text(builtin_map_path().read_text().replace('name = "J1"', 'name = "X1"'))
    text = with_source(good_text, f'kind = "simulator"\nspeed = 0\nchannel_map = "{other}"')
    config = tmp_path / "agent.toml"
    config.write_text(text)
    result = run_agent(config)
    assert result.returncode == 2
    assert "needs channels ['J1']" in result.stderr
