"""Fixtures of the firmware_config tests: channel maps, the C toolchain, socat pty pairs.

Tools the tests need (gcc, socat) are required, not optional: a missing tool makes the test
fail with the install command, never skip silently.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_config.channel_map import ChannelMap, load_builtin_map

FIRMWARE_TESTS = Path(__file__).parent
GOLDEN_DIR = FIRMWARE_TESTS / "golden"
C_SOURCE_DIR = Path(__file__).parents[2] / "firmware_config" / "c"
LINK_TIMEOUT_S = 5.0


@pytest.fixture(scope="session")
def six_axis_map() -> ChannelMap:
    return load_builtin_map()


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH; install it: {install_hint}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def gcc() -> str:
    return require_tool("gcc", "apt-get install gcc")


class SocatPair:
    """Two linked ptys made by socat; ``stop()``/``start()`` unplug and replug the "cable"."""

    def __init__(self, socat: str, directory: Path) -> None:
        self._socat = socat
        self.device = str(directory / "ttyDEVICE")  # the emulator (board) side
        self.host = str(directory / "ttyHOST")  # the agent side
        self._log = directory / "socat.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self._process is None, "socat already running"
        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(
                [
                    self._socat,
                    "-d",
                    "-d",
                    f"pty,raw,echo=0,link={self.device}",
                    f"pty,raw,echo=0,link={self.host}",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + LINK_TIMEOUT_S
        while not (os.path.exists(self.device) and os.path.exists(self.host)):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"socat did not create its ptys: {self._log.read_text()}")
            time.sleep(0.01)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        for link in (self.device, self.host):
            if os.path.islink(link):
                os.unlink(link)


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[SocatPair]:
    socat = require_tool("socat", "apt-get install socat")
    pair = SocatPair(socat, tmp_path)
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()
