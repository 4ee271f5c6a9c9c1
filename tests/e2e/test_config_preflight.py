"""`run --check` does every check `run` does, reports every problem at once, exits 2 and never
prints a traceback — for each broken configuration an operator or attacker produced before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.keys import keygen, load_private_key, sign_bundle
from tests.support.fixtures.daemon import ROOT

BASE = """
[agent]
device_id = "ipc1"
state_dir = "{state}"
{mqtt}
[trust]
{trust}

[[robots]]
id = "{robot}"
bundle = "{bundle}"
[robots.source]
{source}
"""


def run_agent(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=180,
    )


@pytest.fixture
def files(tmp_path: Path, bundle_path: Path, recordings) -> dict[str, str]:
    private, public = keygen(tmp_path / "release.key")
    signed = tmp_path / "signed.rapp"
    signed.write_bytes(sign_bundle(bundle_path.read_bytes(), load_private_key(private)))
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01not a tar at all" * 100)
    not_csv = tmp_path / "image.png"
    not_csv.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    empty = tmp_path / "empty-password"
    empty.write_text("")
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n")
    bad_map = tmp_path / "map.toml"
    bad_map.write_text("robot = 3\n[[channels]]\nname = 1\n")
    state_file = tmp_path / "state-is-a-file"
    state_file.write_text("x")
    garbage_key = tmp_path / "garbage.pub"
    garbage_key.write_text("this is not a key\n")
    return {
        "state": str(tmp_path / "state"),
        "bundle": str(bundle_path),
        "signed": str(signed),
        "replay": str(recordings["test"]),
        "garbage": str(garbage),
        "not_csv": str(not_csv),
        "empty": str(empty),
        "bad_ca": str(bad_ca),
        "bad_map": str(bad_map),
        "state_file": str(state_file),
        "garbage_key": str(garbage_key),
        "private_key": str(private),
        "public_key": str(public),
    }


def _config(tmp_path: Path, files: dict[str, str], **over: str) -> Path:
    values = {
        "state": files["state"],
        "mqtt": "",
        "trust": "allow_unsigned = true",
        "robot": "arm1",
        "bundle": files["bundle"],
        "source": f'kind = "replay"\nfile = "{files["replay"]}"',
    }
    values.update(over)
    path = tmp_path / "agent.toml"
    path.write_text(BASE.format(**values))
    return path


MQTT = '[mqtt]\nhost = "127.0.0.1"\nport = 1\n'

# (name, overrides built from the files, text the error must contain)
CASES = [
    ("missing trust key file", lambda f: {"trust": 'keys = ["/nonexistent/release.pub"]'},
     "trust.keys[0]"),
    ("garbage trust key", lambda f: {"trust": f'keys = ["{f["garbage_key"]}"]'},
     "not a base64 Ed25519 public key"),
    ("private key as trust key", lambda f: {"trust": f'keys = ["{f["private_key"]}"]'},
     "this is a private key"),
    ("no keys for a signed bundle", lambda f: {"trust": "keys = []", "bundle": f["signed"]},
     "no trusted keys"),
    ("a non-tar bundle", lambda f: {"bundle": f["garbage"]}, "not a readable bundle archive"),
    ("unsigned default bundle, default policy", lambda f: {"trust": "", "bundle": "default"},
     "unsigned"),
    ("a non-CSV replay file", lambda f: {"source": f'kind = "replay"\nfile = "{f["not_csv"]}"'},
     "image.png"),
    ("robot id status", lambda f: {"robot": "status"}, "reserved"),
    ("robot id ota", lambda f: {"robot": "ota"}, "reserved"),
    ("state_dir is a file", lambda f: {"state": f["state_file"]}, "is a file"),
    ("empty password file", lambda f: {
        "mqtt": MQTT + f'username = "u"\npassword_file = "{f["empty"]}"\n'}, "is empty"),
    ("garbage CA", lambda f: {"mqtt": MQTT + f'[mqtt.tls]\nca_file = "{f["bad_ca"]}"\n'},
     "mqtt.tls"),
    ("mqtt source without [mqtt]", lambda f: {
        "source": f'kind = "mqtt"\ntopic = "t/frames"\nchannel_map = "{f["bad_map"]}"'},
     "channel_map"),
    ("garbage channel map", lambda f: {
        "source": f'kind = "serial"\nport = "/dev/null"\nchannel_map = "{f["bad_map"]}"'},
     "channel_map"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "over", "needle"), CASES, ids=[c[0] for c in CASES])
def test_broken_config_fails_check_with_exit_2_and_no_traceback(
    tmp_path, files, name, over, needle
) -> None:
    config = _config(tmp_path, files, **over(files))
    result = run_agent(config, "--check")
    assert result.returncode == 2, (name, result.stdout, result.stderr)
    assert needle in result.stderr, (name, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr


def test_every_problem_is_reported_at_once(tmp_path, files) -> None:
    config = _config(
        tmp_path,
        files,
        trust=f'keys = ["{files["garbage_key"]}"]',
        state=files["state_file"],
        mqtt=MQTT + f'[mqtt.tls]\nca_file = "{files["bad_ca"]}"\n',
    )
    result = run_agent(config, "--check")
    assert result.returncode == 2
    assert "3 problem(s)" in result.stderr, result.stderr
    for needle in ("trust.keys[0]", "is a file", "mqtt.tls"):
        assert needle in result.stderr


@pytest.mark.parametrize("case", ["a non-tar bundle", "garbage CA", "state_dir is a file"])
def test_run_refuses_the_same_configs_with_exit_2(tmp_path, files, case) -> None:
    over = next(c[1] for c in CASES if c[0] == case)
    result = run_agent(_config(tmp_path, files, **over(files)))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_relative_paths_resolve_against_the_config_file(tmp_path, files) -> None:
    """`--check` and `run` open the same files wherever they are started from."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "model.rapp").write_bytes(Path(files["bundle"]).read_bytes())
    config = folder / "agent.toml"
    config.write_text(
        BASE.format(
            state="state",
            mqtt="",
            trust="allow_unsigned = true",
            robot="arm1",
            bundle="model.rapp",
            source=f'kind = "replay"\nfile = "{files["replay"]}"',
        )
    )
    result = run_agent(config, "--check")  # cwd is the repository, not etc/
    assert result.returncode == 0, result.stderr


def test_non_utf8_config_is_a_config_error(tmp_path) -> None:
    config = tmp_path / "agent.toml"
    config.write_bytes(b'[agent]\ndevice_id = "\xff\xfe"\n')
    result = run_agent(config, "--check")
    assert result.returncode == 2 and "UTF-8" in result.stderr
    assert "Traceback" not in result.stderr
