"""Hostile inputs: OTA commands, chunks, archives and URLs from anyone on the broker; broken
configurations an operator or attacker produced.

- **OTA**: the trust-boundary e2e tests (``tests/e2e/test_ota_trust_boundary.py``) already
  drive a real agent and mosquitto with every hostile command, chunk, archive and URL they
  generate, and each prints its tally (``hostile: N tried, model changed M, stalled S``).
  They are run as they are (pytest in a child process, JUnit XML with the captured output),
  so the figures are exactly what the suite checks.
- **Configs**: every broken configuration of ``tests/e2e/test_config_preflight.py`` (its
  ``CASES``, built on the shipped default bundle and a simulated recording instead of the
  session's trained one), plus a non-UTF-8 file, through ``rapp-agent run --check`` and plain
  ``rapp-agent run``: exit status (must be 2), the case's message in stderr, no traceback.
  A control (the same base config, unbroken) must pass ``--check``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.chaos_rig import fault_recording
from benchmarks.common import ROOT, BenchmarkError
from exporter.keys import keygen, load_private_key, sign_bundle
from tests.e2e.test_config_preflight import BASE, CASES

OTA_TESTS = ROOT / "tests" / "e2e" / "test_ota_trust_boundary.py"
DEFAULT_BUNDLE = ROOT / "agent" / "data" / "default.rapp"
_TALLY = re.compile(r"hostile: (\d+) tried, model changed (\d+), stalled (\d+)")
RUN_TIMEOUT_S = 60.0


# -- OTA ------------------------------------------------------------------------------------


def hostile_ota(work: Path, timeout_s: float = 900.0) -> dict[str, Any]:
    """Run the trust-boundary tests; per test: hostile inputs tried, model changed, stalled,
    and whether the test passed."""
    work.mkdir(parents=True, exist_ok=True)
    report = work / "ota.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(OTA_TESTS),
        "-q",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        "-o",
        "junit_logging=system-out",
        f"--basetemp={work / 'tmp'}",
    ]
    started = time.monotonic()
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise BenchmarkError(f"the OTA trust-boundary tests took over {timeout_s:.0f} s") from err
    if not report.exists():
        raise BenchmarkError(f"pytest wrote no report:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    tests = [_testcase(case) for case in ET.parse(report).getroot().iter("testcase")]
    return {
        "tests": tests,
        "tried": sum(t["tried"] for t in tests),
        "model_changed": sum(t["model_changed"] for t in tests),
        "stalled": sum(t["stalled"] for t in tests),
        "passed": sum(t["passed"] for t in tests),
        "pytest_exit_code": done.returncode,
        "seconds": round(time.monotonic() - started, 1),
    }


def _testcase(case: ET.Element) -> dict[str, Any]:
    out = "".join(node.text or "" for node in case.iter("system-out"))
    failure = next((n for n in case if n.tag in ("failure", "error", "skipped")), None)
    match = _TALLY.search(out)
    tried, changed, stalled = (int(g) for g in match.groups()) if match else (0, 0, 0)
    return {
        "test": case.get("name", "?"),
        "tried": tried,
        "model_changed": changed,
        "stalled": stalled,
        "passed": failure is None and match is not None,
        "problem": None if failure is None else (failure.get("message") or "")[:500],
        "seconds": round(float(case.get("time", 0.0)), 1),
    }


# -- configs --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigCase:
    name: str
    write: Callable[[Path], Path]  # case folder → config file
    needle: str  # what the message must contain ("" for the control)


def _files(root: Path) -> dict[str, str]:
    """The files the preflight cases refer to (as the test's fixture makes them)."""
    root.mkdir(parents=True)
    private, public = keygen(root / "release.key")
    bundle = root / "bundle.rapp"
    shutil.copyfile(DEFAULT_BUNDLE, bundle)
    signed = root / "signed.rapp"
    signed.write_bytes(sign_bundle(bundle.read_bytes(), load_private_key(private)))
    contents = {
        "garbage.bin": b"\x00\x01not a tar at all" * 100,
        "image.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
        "empty-password": b"",
        "ca.pem": b"-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
        "map.toml": b"robot = 3\n[[channels]]\nname = 1\n",
        "state-is-a-file": b"x",
        "garbage.pub": b"this is not a key\n",
    }
    for name, data in contents.items():
        (root / name).write_bytes(data)
    return {
        "bundle": str(bundle),
        "signed": str(signed),
        "replay": str(fault_recording(root / "replay.csv", seconds=12)),
        "garbage": str(root / "garbage.bin"),
        "not_csv": str(root / "image.png"),
        "empty": str(root / "empty-password"),
        "bad_ca": str(root / "ca.pem"),
        "bad_map": str(root / "map.toml"),
        "state_file": str(root / "state-is-a-file"),
        "garbage_key": str(root / "garbage.pub"),
        "private_key": str(private),
        "public_key": str(public),
    }


def _base_values(files: dict[str, str], folder: Path) -> dict[str, str]:
    return {
        "state": str(folder / "state"),
        "mqtt": "",
        "trust": "allow_unsigned = true",
        "robot": "arm1",
        "bundle": files["bundle"],
        "source": f'kind = "replay"\nfile = "{files["replay"]}"',
    }


def config_cases(files: dict[str, str]) -> list[ConfigCase]:
    """The control, every preflight ``CASES`` entry, and a non-UTF-8 config."""

    def writer(over: Callable[[dict[str, str]], dict[str, str]]) -> Callable[[Path], Path]:
        def write(folder: Path) -> Path:
            path = folder / "agent.toml"
            path.write_text(BASE.format(**{**_base_values(files, folder), **over(files)}))
            return path

        return write

    def non_utf8(folder: Path) -> Path:
        path = folder / "agent.toml"
        path.write_bytes(b'[agent]\ndevice_id = "\xff\xfe"\n')
        return path

    cases = [ConfigCase("control (nothing broken)", writer(lambda f: {}), "")]
    cases += [ConfigCase(name, writer(over), needle) for name, over, needle in CASES]
    cases.append(ConfigCase("non-UTF-8 config", non_utf8, "UTF-8"))
    return cases


def _agent(config: Path, *extra: str) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "agent.cli", "run", "--config", str(config), *extra]
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return {"rc": None, "stderr": f"still running after {RUN_TIMEOUT_S:.0f} s"}
    return {"rc": done.returncode, "stderr": done.stderr}


def _check_case(case: ConfigCase, folder: Path, with_run: bool) -> dict[str, Any]:
    folder.mkdir(parents=True)
    config = case.write(folder)
    row: dict[str, Any] = {"case": case.name}
    # the control would serve until stopped: only the broken ones go through plain `run`
    modes = [("check", ("--check",))] + ([("run", ())] if with_run and case.needle else [])
    for mode, extra in modes:
        result = _agent(config, *extra)
        expected = 0 if not case.needle else 2
        row[mode] = {
            "rc": result["rc"],
            "as_expected": result["rc"] == expected,
            "message": bool(case.needle) and case.needle in result["stderr"],
            "traceback": "Traceback" in result["stderr"],
            "stderr_tail": result["stderr"][-400:],
        }
    return row


def broken_configs(work: Path, with_run: bool) -> dict[str, Any]:
    """Every config case through ``--check`` (and plain ``run`` when ``with_run``), two at a
    time; the control must pass, every broken one exit 2 with its message."""
    started = time.monotonic()
    cases = config_cases(_files(work / "files"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        rows = list(
            pool.map(
                lambda ic: _check_case(ic[1], work / f"case{ic[0]:02d}", with_run),
                enumerate(cases),
            )
        )
    broken = rows[1:]

    def count(mode: str, key: str) -> int:
        return sum(1 for r in broken if mode in r and r[mode][key])

    return {
        "cases": rows,
        "broken": len(broken),
        "control_passes": rows[0]["check"]["as_expected"],
        "check_exit_2": count("check", "as_expected"),
        "check_message": count("check", "message"),
        "check_traceback": count("check", "traceback"),
        "run_tried": with_run,
        "run_exit_2": count("run", "as_expected"),
        "run_traceback": count("run", "traceback"),
        "seconds": round(time.monotonic() - started, 1),
    }
